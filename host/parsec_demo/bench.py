"""Benchmarks (``parsec-demo bench``, ``./tools/bench``): throughput measured against a
baseline taken in the same run.

These machines are noisy, so no figure is compared with a constant: each benchmark measures
the project's path and a reference path back to back and reports both and their ratio. Each
benchmark is a generator of the lines of its table, yielded as they are measured (the command
line prints them); where its processes keep their logs is logged.

- ``rse``: psa_verify_hash calls per second through the RSE model over its socket, against
  ``cryptography`` verifying the same signature in-process (RSA-2048 PKCS#1 v1.5 and P-256 ECDSA).
- ``parsec``: PsaVerifyHash requests per second and p50/p99 latency through the Parsec service
  and the RSE model, with 1 and 8 concurrent client processes of two kinds, against the same
  in-process verification: Python processes sending one prepared request per connection, and
  ``parsec-se-driver-bench`` (C: psa_verify_hash through Mbed TLS's PSA core and the Parsec SE
  driver, as the demo's client does), with the CPU time each kind of client spends per call.
  Goal: at least 10% (RSA-2048) and 20% (P-256) of the in-process rate with 8 clients, p99
  under 5 ms.
- ``boot``: the dev image: build time cold and cached, image size, and seconds from QEMU's
  start to SSH answering (median of 3 boots).
- ``handshake``: full TLS handshakes per second (one ssl_client1 process each) with the
  asymmetric operations delegated to Parsec and the RSE model, against the same client with
  delegation switched off (PSA in-process), alternating. Goal: a ratio of at least 0.7.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import queue
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from multiprocessing.queues import Queue
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from parsec_service import psa
from parsec_service.rse_link.client import RseClient
from parsec_service.rse_link.tfm_crypto import KeyAttributes

from .errors import UserError
from .paths import new_run_dir
from .services import Service, parsec_config_text, start_rse_model

logger = logging.getLogger(__name__)


class BenchError(UserError):
    """A benchmark whose measured path stopped working (a failed verification or handshake)."""


def rate(operation: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``operation`` over about ``seconds`` (after a short warm-up)."""
    for _ in range(20):
        operation()
    count = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(50):
            operation()
        count += 50
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - started)


@dataclass
class VerifyCase:
    name: str
    key_type: int
    bits: int
    alg: int
    public_data: bytes
    digest: bytes
    signature: bytes
    local_verify: Callable[[], None]


def _cases() -> list[VerifyCase]:
    digest = hashlib.sha256(b"benchmark").digest()
    prehashed = utils.Prehashed(hashes.SHA256())
    rsa_key = rsa.generate_private_key(65537, 2048)
    rsa_sig = rsa_key.sign(digest, padding.PKCS1v15(), prehashed)
    rsa_pub = rsa_key.public_key()
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_der = ec_key.sign(digest, ec.ECDSA(prehashed))
    r, s = utils.decode_dss_signature(ec_der)
    ec_pub = ec_key.public_key()
    return [
        VerifyCase(
            "RSA-2048 PKCS#1 v1.5",
            psa.KEY_TYPE_RSA_PUBLIC_KEY,
            2048,
            psa.rsa_pkcs1v15_sign(psa.ALG_SHA_256),
            rsa_pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1),
            digest,
            rsa_sig,
            lambda: rsa_pub.verify(rsa_sig, digest, padding.PKCS1v15(), prehashed),
        ),
        VerifyCase(
            "P-256 ECDSA",
            psa.KEY_TYPE_ECC_PUBLIC_KEY_SECP_R1,
            256,
            psa.ecdsa(psa.ALG_SHA_256),
            ec_pub.public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            ),
            digest,
            r.to_bytes(32, "big") + s.to_bytes(32, "big"),
            lambda: ec_pub.verify(ec_der, digest, ec.ECDSA(prehashed)),
        ),
    ]


def bench_rse(seconds: float) -> Iterator[str]:
    run_dir = new_run_dir("bench-rse")
    rse = start_rse_model(run_dir)
    logger.info(f"RSE model: {run_dir}")
    yield f"{'psa_verify_hash':<22} {'RSE model /s':>14} {'in-process /s':>14} {'ratio':>8}"
    try:
        with RseClient(rse.socket_path) as client:
            for case in _cases():
                attributes = KeyAttributes(
                    type=case.key_type, bits=case.bits, usage=psa.USAGE_VERIFY_HASH, alg=case.alg
                )
                key_id = client.import_key(attributes, case.public_data)
                bound_id, bound_case = key_id, case

                def through_model(k: int = bound_id, c: VerifyCase = bound_case) -> None:
                    client.verify_hash(k, c.alg, c.digest, c.signature)

                model_rate = rate(through_model, seconds)
                local_rate = rate(case.local_verify, seconds)
                client.destroy_key(key_id)
                yield (
                    f"{case.name:<22} {model_rate:>14,.0f} {local_rate:>14,.0f} "
                    f"{model_rate / local_rate:>8.3f}"
                )
    finally:
        rse.stop()


@dataclass(frozen=True)
class LoadResult:
    """What a load run measured: calls, their aggregate rate, p50 and p99 latency (ms), and the
    CPU time (user + system) the client processes used while measuring."""

    count: int
    rate_per_s: float
    p50_ms: float
    p99_ms: float
    client_cpu_s: float

    @property
    def client_cpu_us_per_call(self) -> float:
        return self.client_cpu_s / self.count * 1e6


def _parsec_worker(
    socket_path: str, request: bytes, seconds: float, out: Queue[tuple[list[float], float] | str]
) -> None:
    """One client process: the same PsaVerifyHash request, each on a new connection; its
    latencies and the CPU time it used measuring them, or what went wrong, go to ``out``."""
    import socket

    from parsec_service.wire import HEADER, Header

    def one() -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(socket_path)
            sock.sendall(request)
            reply = sock.recv(65536)
        if len(reply) < HEADER.size or Header.decode(reply[: HEADER.size]).status != 0:
            raise BenchError("a verification failed during the benchmark")

    try:
        for _ in range(10):
            one()
        latencies = []
        cpu_started = time.process_time()
        deadline = time.perf_counter() + seconds
        while (started := time.perf_counter()) < deadline:
            one()
            latencies.append(time.perf_counter() - started)
        cpu = time.process_time() - cpu_started
    except (BenchError, OSError) as exc:
        out.put(f"a client process failed: {exc}")
        return
    out.put((latencies, cpu))


def _parsec_rate(socket_path: Path, request: bytes, clients: int, seconds: float) -> LoadResult:
    """Requests per second, p50 and p99 latency (ms) with ``clients`` Python processes."""
    context = multiprocessing.get_context("fork")
    results: Queue[tuple[list[float], float] | str] = context.Queue()
    workers = [
        context.Process(target=_parsec_worker, args=(str(socket_path), request, seconds, results))
        for _ in range(clients)
    ]
    for worker in workers:
        worker.start()
    latencies: list[float] = []
    cpu = 0.0
    failures: list[str] = []
    try:
        for _ in workers:
            result = results.get(timeout=seconds + 60)
            if isinstance(result, str):
                failures.append(result)
            else:
                latencies.extend(result[0])
                cpu += result[1]
    except queue.Empty:
        failures.append(f"a client process gave no result within {seconds + 60:.0f} s")
    for worker in workers:
        worker.join(timeout=10)
        if worker.is_alive():
            worker.kill()
            worker.join()
    if failures:
        raise BenchError(failures[0])
    if not latencies:
        raise BenchError("the Python clients made no call in their time")
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    return LoadResult(len(latencies), len(latencies) / seconds, p50, p99, cpu)


#: ``parsec-se-driver-bench --key`` for each benchmark case, by PSA key type.
C_CLIENT_KEYS = {
    psa.KEY_TYPE_RSA_PUBLIC_KEY: "rsa2048",
    psa.KEY_TYPE_ECC_PUBLIC_KEY_SECP_R1: "p256",
}


def c_client_command(
    program: Path, socket_path: Path, key: str, processes: int, seconds: float
) -> list[str]:
    return [
        str(program), "--socket", str(socket_path), "--seconds", f"{seconds:g}",
        "--key", key, "--processes", str(processes),
    ]  # fmt: skip


def run_c_clients(command: list[str], seconds: float) -> LoadResult:
    """Run ``parsec-se-driver-bench`` (``c_client_command``) and read its JSON line."""
    logger.debug("$ %s", shlex.join(command))
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(
            f"parsec-se-driver-bench gave no result within {seconds + 120:.0f} s"
        ) from exc
    errors = result.stderr.strip().splitlines()
    if result.returncode != 0:
        raise BenchError(
            errors[-1] if errors else f"parsec-se-driver-bench: exit {result.returncode}"
        )
    try:
        report = json.loads(result.stdout)
        measured = LoadResult(
            int(report["count"]),
            float(report["rate_per_s"]),
            float(report["p50_ms"]),
            float(report["p99_ms"]),
            float(report["client_cpu_s"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise BenchError(f"parsec-se-driver-bench printed {result.stdout!r}: {exc}") from exc
    if measured.count == 0:
        raise BenchError("parsec-se-driver-bench made no call in its time")
    return measured


def _verify_request(client: object, case: VerifyCase, alg: object) -> bytes:
    """The wire bytes of one PsaVerifyHash request, as the client library encodes them."""
    from parsec_service import contracts as pb
    from parsec_service.client import ParsecClient
    from parsec_service.constants import Opcode
    from parsec_service.wire import Header, encode_request

    assert isinstance(client, ParsecClient)
    auth = client.auth()
    operation = pb.psa_verify_hash.Operation(
        key_name=case.name, alg=alg, hash=case.digest, signature=case.signature
    )
    header = Header(
        provider=client.crypto_provider(), auth_type=auth.auth_type, opcode=Opcode.PSA_VERIFY_HASH
    )
    return encode_request(header, operation.SerializeToString(), auth.data)


#: The client process counts of ``bench_parsec``.
PARSEC_CLIENT_COUNTS = (1, 8)
#: The client kinds of ``bench_parsec``, as its ``client`` column names them.
PYTHON_CLIENT = "python"
C_CLIENT = "C"


def bench_parsec(seconds: float, profile_dir: Path | None = None) -> Iterator[str]:
    """The rows of ``parsec``; with ``profile_dir``, then for each case one more run of 8 C
    clients with py-spy recording both daemons (not one of the measured rows: the profiler
    slows what it samples), its stacks written there and its top functions printed."""
    from parsec_service.client import SECP_R1, SHA_256, ParsecClient, key_attributes, sign_alg

    from .native_build import build_host
    from .services import start_parsec_service

    c_program = build_host().driver_bench
    run_dir = new_run_dir("bench-parsec")
    rse = start_rse_model(run_dir)
    parsec = start_parsec_service(run_dir, rse.socket_path, parsec_config_text(log_level="warn"))
    logger.info(f"Parsec service and RSE model: {run_dir}")
    template = c_client_command(c_program, parsec.socket_path, "KEY", 0, seconds)
    yield f"{C_CLIENT} clients: {shlex.join(template[:-4])} --key rsa2048|p256 --processes 1|8"
    yield (
        f"{'PsaVerifyHash':<22} {'client':>6} {'clients':>7} {'calls':>7} {'Parsec /s':>10} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'client CPU us/call':>18} {'in-process /s':>14} "
        f"{'ratio':>7}"
    )
    try:
        client = ParsecClient(parsec.socket_path)
        for case in _cases():
            rsa_case = case.key_type == psa.KEY_TYPE_RSA_PUBLIC_KEY
            alg = sign_alg("rsa_pkcs1v15_sign" if rsa_case else "ecdsa", SHA_256)
            if rsa_case:
                attributes = key_attributes("rsa_public_key", 2048, alg, verify_hash=True)
            else:
                attributes = key_attributes(
                    "ecc_public_key", 256, alg, curve_family=SECP_R1, verify_hash=True
                )
            client.import_key(case.name, attributes, case.public_data)
            client.verify_hash(case.name, alg, case.digest, case.signature)
            request = _verify_request(client, case, alg)
            local_rate = rate(case.local_verify, seconds)
            c_key = C_CLIENT_KEYS[case.key_type]
            for kind in (PYTHON_CLIENT, C_CLIENT):
                for clients in PARSEC_CLIENT_COUNTS:
                    if kind == PYTHON_CLIENT:
                        result = _parsec_rate(parsec.socket_path, request, clients, seconds)
                    else:
                        command = c_client_command(
                            c_program, parsec.socket_path, c_key, clients, seconds
                        )
                        result = run_c_clients(command, seconds)
                    yield (
                        f"{case.name:<22} {kind:>6} {clients:>7} {result.count:>7} "
                        f"{result.rate_per_s:>10,.0f} {result.p50_ms:>7.2f} "
                        f"{result.p99_ms:>7.2f} {result.client_cpu_us_per_call:>18.0f} "
                        f"{local_rate:>14,.0f} "
                        f"{result.rate_per_s / local_rate:>7.3f}"
                    )
            if profile_dir is not None:
                command = c_client_command(c_program, parsec.socket_path, c_key, 8, seconds)
                yield from _profile_daemons(profile_dir, case.name, command, seconds, parsec, rse)
            client.destroy_key(case.name)
    finally:
        parsec.stop()
        rse.stop()


def _profile_daemons(
    directory: Path, case: str, command: list[str], seconds: float, *daemons: Service
) -> Iterator[str]:
    """One C-client run with py-spy on each daemon: the top functions of each, per call."""
    from . import profiling

    directory.mkdir(parents=True, exist_ok=True)
    slug = case.split()[0].lower()
    outputs = [directory / f"{daemon.name}-{slug}.txt" for daemon in daemons]
    with ExitStack() as stack:
        for daemon, output in zip(daemons, outputs, strict=True):
            stack.enter_context(profiling.recording(daemon.pid, output))
        result = run_c_clients(command, seconds)
    for daemon, output in zip(daemons, outputs, strict=True):
        profile = profiling.top_functions(output, result.count, profiling.DEFAULT_RATE)
        yield (
            f"profile of {daemon.name} ({case}, 8 C clients, {result.count} calls under py-spy): "
            f"{profile.total_us:.0f} us of Python CPU per call; stacks: {output}"
        )
        yield from profiling.table(profile)


def bench_handshake(seconds: float) -> Iterator[str]:
    from .demo.host import TlsDemo
    from .native_build import build_host

    build = build_host()
    run_dir = new_run_dir("bench-handshake")
    logger.info(f"TLS demo: {run_dir}")
    durations: dict[str, list[float]] = {"delegated": [], "local": []}
    environments = {"delegated": {}, "local": {"PARSEC_DEMO_LOCAL_VERIFY": "1"}}
    with TlsDemo(run_dir, build) as demo:
        for mode, env in environments.items():  # warm-up, and a check that both work
            run = demo.run_client(env=env, log_name="warm-up.log")
            if not run.ok:
                raise BenchError(f"the {mode} handshake failed:\n{run.output}")
        deadline = time.perf_counter() + 2 * seconds
        while time.perf_counter() < deadline:
            for mode, env in environments.items():  # alternate, so noise hits both alike
                started = time.perf_counter()
                run = demo.run_client(env=env, log_name=f"{mode}.log")
                durations[mode].append(time.perf_counter() - started)
                if not run.ok:
                    raise BenchError(f"a {mode} handshake failed:\n{run.output}")
    rates = {mode: len(d) / sum(d) for mode, d in durations.items()}
    yield f"{'handshakes':<34} {'count':>6} {'per second':>11} {'median ms':>10}"
    for mode, label in (
        ("delegated", "delegated (Parsec + RSE model)"),
        ("local", "local (PSA in-process)"),
    ):
        values = sorted(durations[mode])
        median_ms = values[len(values) // 2] * 1000
        yield f"{label:<34} {len(values):>6} {rates[mode]:>11.1f} {median_ms:>10.1f}"
    yield f"ratio delegated/local: {rates['delegated'] / rates['local']:.3f}"


def bench_boot(seconds: float) -> Iterator[str]:
    from .image_build import build_image
    from .machine.qemu import QemuMachine, load_config

    del seconds  # boots take what they take
    started = time.perf_counter()
    image = build_image("amd64")
    cached_or_cold = time.perf_counter() - started
    started = time.perf_counter()
    build_image("amd64")
    cached = time.perf_counter() - started
    built = json_load(image / "manifest.json")["built"]
    yield f"image: {image}"
    yield f"build: cold {built} (this run: {cached_or_cold:.1f} s), cached {cached:.2f} s"
    for name in ("rootfs.ext4", "vmlinuz", "initrd.img"):
        path = image / name
        used = path.stat().st_blocks * 512  # the disk image is sparse
        yield f"{name}: {path.stat().st_size / 1e6:.1f} MB apparent, {used / 1e6:.1f} MB used"
    boots = []
    for n in range(3):
        run_dir = new_run_dir(f"bench-boot-{n}")
        started = time.perf_counter()
        with QemuMachine(load_config(image), run_dir) as machine, machine.target() as target:
            boots.append(time.perf_counter() - started)
            target.run("true")
    boots.sort()
    times = ", ".join(f"{b:.1f}" for b in boots)
    yield f"boot to SSH-ready: {times} s; median {boots[1]:.1f} s"


def json_load(path: Path) -> dict[str, object]:
    import json

    data: dict[str, object] = json.loads(path.read_text())
    return data


#: Each benchmark by the name the command line gives it.
BENCHMARKS: dict[str, Callable[[float], Iterator[str]]] = {
    "rse": bench_rse,
    "parsec": bench_parsec,
    "handshake": bench_handshake,
    "boot": bench_boot,
}
