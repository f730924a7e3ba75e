"""The Parsec-enabled TLS demo on this machine (host mode), and the harness tests use for it.

A run starts, each with its own log in a run directory: the RSE model, the Parsec service
(Trusted Service provider on the model), and ``ssl_server`` in a private network namespace;
then ``ssl_client1`` performs the handshake with its asymmetric operations going through the
Parsec SE driver. What the RSE served for the handshake is read from the model's JSON events,
between the client's start and its end.

``start_tls_server`` is the one way the toolkit starts a TLS server and waits until it listens
on port 4433, wherever the server runs (a ``ServerHost``): here in the demo's namespace
(``LocalServer``), or in a machine over SSH (``vm_demo.MachineServer``).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from parsec_demo_processes import failure_message, spawn, stop_group

from .native_build import HostBuild, build_host
from .netns import NetworkNamespace, port_free
from .paths import new_run_dir
from .services import (
    Service,
    ServiceError,
    start_parsec_service,
    start_rse_model,
)

TLS_PORT = 4433
#: What ssl_server and ssl_server2 print once they listen on ``TLS_PORT``.
SERVER_READY = "Waiting for a remote connection"
ASYMMETRIC_CALLS = ("psa_import_key", "psa_verify_hash", "psa_destroy_key")


@dataclass
class ClientRun:
    command: list[str]
    output: str
    returncode: int
    seconds: float
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def calls(self, function: str, status: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events
            if e["function"] == function and (status is None or e["status"] == status)
        ]


def read_events(path: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """The RSE calls logged after ``offset`` bytes of the events file, and the new offset."""
    with open(path, "rb") as events:
        events.seek(offset)
        data = events.read()
    complete = data[: data.rfind(b"\n") + 1]
    records = [json.loads(line) for line in complete.splitlines() if line.strip()]
    return [r for r in records if r.get("kind") == "call"], offset + len(complete)


def verdict(ok: bool, what: str, events: Sequence[Mapping[str, Any]], run_dir: Path) -> str:
    """The demo's last line: whether ``what`` (``the TLS 1.2 handshake``, say) passed, and
    what the RSE did for it; or where to look."""
    if not ok:
        return f"FAILED: {what} did not complete; the output is above, the logs in {run_dir}"

    def succeeded(function: str) -> int:
        return sum(1 for e in events if e["function"] == function and e["status"] == "PSA_SUCCESS")

    def count(number: int, noun: str) -> str:
        return f"{number} {noun}{'' if number == 1 else 's'}"

    generated, signed = succeeded("psa_generate_key"), succeeded("psa_sign_hash")
    done = [f"verified {count(succeeded('psa_verify_hash'), 'signature')}"]
    if generated:
        done.append(f"generated {count(generated, 'key pair')}")
    if signed:
        done.append(f"made {count(signed, 'signature')}")
    left = succeeded("psa_import_key") + generated - succeeded("psa_destroy_key")
    kept = "kept no key" if left == 0 else f"kept {count(left, 'key')}"
    return f"PASSED: {what}; the RSE {', '.join(done)} and {kept}"


def summary(events: Sequence[Mapping[str, Any]]) -> str:
    """``RSE served: psa_import_key x2, psa_verify_hash x2 (PSA_SUCCESS), ...`` and details."""
    order: list[str] = []
    statuses: dict[str, Counter[str]] = {}
    for event in events:
        name = event["function"]
        if name not in statuses:
            order.append(name)
            statuses[name] = Counter()
        statuses[name][event["status"]] += 1
    parts = []
    for name in order:
        counts = statuses[name]
        text = f"{name} x{sum(counts.values())}"
        if name == "psa_verify_hash" or set(counts) != {"PSA_SUCCESS"}:
            text += (
                " ("
                + ", ".join(f"{n} {s}" if len(counts) > 1 else s for s, n in counts.items())
                + ")"
            )
        parts.append(text)
    lines = ["RSE served: " + (", ".join(parts) if parts else "nothing")]
    for event in events:
        what = []
        if event["function"] in ("psa_import_key", "psa_generate_key"):
            what = [event.get("key_type", "?"), f"{event.get('bits', '?')} bits"]
        elif "alg" in event:
            what = [event["alg"]]
        key = f"key 0x{event['key_id']:08x}" if "key_id" in event else ""
        lines.append(f"  {event['function']:<16} {key:<15} {' '.join(what):<32} {event['status']}")
    return "\n".join(lines)


class ServerHost(Protocol):
    """Where a TLS server runs: how to start it in the background, see it, and stop it."""

    #: Where its output goes, as a failure names it.
    log: str

    def launch(self, argv: Sequence[str]) -> None:
        """Start ``argv`` in the background, its output going to ``log``."""

    def poll(self) -> tuple[str, bool]:
        """What the server has written since ``launch``, and whether it still runs."""
        ...

    def stop(self) -> None:
        """Stop the server, if it runs."""


def start_tls_server(
    host: ServerHost, argv: Sequence[str], timeout: float, interval: float
) -> None:
    """Start ``argv`` on ``host`` and wait until it prints ``SERVER_READY``, looking every
    ``interval`` seconds. A server that exits first or is not ready within ``timeout`` is
    stopped, and a ServiceError shows its last lines and its log."""
    name = Path(argv[0]).name
    host.launch(argv)
    deadline = time.monotonic() + timeout
    while True:
        output, running = host.poll()
        if SERVER_READY in output:
            return
        if not running or time.monotonic() > deadline:
            host.stop()
            why = "exited during start-up" if not running else f"not ready after {timeout:g} s"
            raise ServiceError(failure_message(f"{name} {why}", output, [host.log]))
        time.sleep(interval)


class LocalServer:
    """A ``ServerHost`` on this machine: the process is started with ``spawn`` (command line
    passed through ``wrap``, e.g. into a network namespace), its output appended to
    ``log_path``."""

    def __init__(
        self,
        log_path: Path,
        cwd: Path,
        wrap: Callable[[Sequence[str]], list[str]] = list,
    ) -> None:
        self.log_path = log_path
        self.log = str(log_path)
        self.cwd = cwd
        self.wrap = wrap
        self.process: subprocess.Popen[bytes] | None = None
        self._offset = 0

    def launch(self, argv: Sequence[str]) -> None:
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.process = spawn(self.wrap(argv), self.log_path, cwd=self.cwd)

    def poll(self) -> tuple[str, bool]:
        output = self.log_path.read_bytes()[self._offset :].decode(errors="replace")
        return output, self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        stop_group(self.process, grace=5)
        self.process = None


class TlsDemo:
    """RSE model + Parsec service + a TLS server, and a way to run the client against them."""

    def __init__(
        self,
        run_dir: Path,
        build: HostBuild,
        server: str = "ssl_server",
        server_args: Sequence[str] = (),
        services_of: TlsDemo | None = None,
    ) -> None:
        """``services_of``: use that demo's RSE model and Parsec service (started and stopped
        by it) instead of starting a pair; this demo brings its own namespace and server."""
        self.run_dir = run_dir
        self._services_of = services_of
        self.build = build
        self.server_name = server
        self.server_args = list(server_args)
        self.rse: Service | None = None
        self.parsec: Service | None = None
        self._stack = ExitStack()
        self._client_runs = itertools.count(1)
        self.netns = NetworkNamespace()
        self.server = LocalServer(run_dir / f"{server}.log", run_dir, wrap=self.netns.command)

    # --- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> TlsDemo:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self._services_of is not None:
            self.rse, self.parsec = self._services_of.rse, self._services_of.parsec
        else:
            self.start_rse()
            assert self.rse is not None
            self.parsec = start_parsec_service(self.run_dir, self.rse.socket_path)
        self._stack.enter_context(self.netns)
        if not self.netns.isolated and not port_free(TLS_PORT):
            raise ServiceError(
                f"port {TLS_PORT} is taken and no private network namespace can be made "
                "(run as root to isolate the demo)"
            )
        self.start_server()

    def start_rse(self) -> None:
        self.rse = start_rse_model(self.run_dir)

    def stop_rse(self) -> None:
        if self.rse is not None:
            self.rse.stop()

    def stop_parsec(self) -> None:
        if self.parsec is not None:
            self.parsec.stop()

    def start_server(self, timeout: float = 20.0) -> None:
        argv = [str(self.build.program(self.server_name)), *self.server_args]
        start_tls_server(self.server, argv, timeout, interval=0.02)

    def stop_server(self) -> None:
        self.server.stop()

    def close(self) -> None:
        self.stop_server()
        if self._services_of is None:
            for service in (self.parsec, self.rse):
                if service is not None:
                    service.stop()
        self._stack.close()

    # --- the client ---------------------------------------------------------------------------

    @property
    def events_path(self) -> Path:
        return (self._services_of or self).run_dir / "rse-events.jsonl"

    def client_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        assert self.parsec is not None
        env = dict(os.environ)
        env["PARSEC_SERVICE_ENDPOINT"] = f"unix:{self.parsec.socket_path}"
        env.update(extra or {})
        return env

    def run_client(
        self,
        address: str = "127.0.0.1",
        ca_file: Path | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 60.0,
        log_name: str = "ssl_client1.log",
        wrapper: Sequence[str] = (),
        options: Sequence[str] = (),
        workdir: Path | None = None,
    ) -> ClientRun:
        """Run ssl_client1 once (``options``: its NAME=VALUE arguments); its output also goes
        to the run directory.

        Each run gets a working directory of its own unless ``workdir`` names one: with
        MBEDTLS_PSA_CRYPTO_SE_C, Mbed TLS keeps the SE driver's state in PSA ITS files in the
        working directory, through a fixed temporary file name that clients running side by
        side would fight over. A client with a persistent key runs where its key was made.
        """
        if workdir is None:
            workdir = self.run_dir / f"client-{next(self._client_runs)}"
            workdir.mkdir(parents=True, exist_ok=True)
        argv = [str(self.build.program("ssl_client1")), address]
        if ca_file is not None:
            argv.append(str(ca_file))
        argv += options
        return self.run_program(argv, workdir, env, timeout, log_name, wrapper)

    def run_program(
        self,
        argv: Sequence[str],
        workdir: Path,
        env: Mapping[str, str] | None = None,
        timeout: float = 60.0,
        log_name: str = "ssl_client1.log",
        wrapper: Sequence[str] = (),
    ) -> ClientRun:
        """Run a client-side program (ssl_client1, parsec_client_key) once in ``workdir``
        with the client's environment, and collect what the RSE served meanwhile."""
        command = self.netns.command([*wrapper, *argv])
        _, offset = read_events(self.events_path)
        started = time.monotonic()
        try:
            result = subprocess.run(
                command,
                env=self.client_env(env),
                capture_output=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
                cwd=workdir,
            )
            output = result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
            returncode = result.returncode
        except subprocess.TimeoutExpired as exc:
            output = (exc.stdout or b"").decode(errors="replace") + "\n[timed out]\n"
            returncode = -1
        seconds = time.monotonic() - started
        with open(self.run_dir / log_name, "a") as log:
            log.write(f"$ {' '.join(command)}\n{output}\n[exit {returncode}, {seconds:.2f} s]\n")
        events, _ = read_events(self.events_path, offset)
        return ClientRun(command, output, returncode, seconds, events)


def run_host_demo(tls13: bool = False, mtls: bool = False) -> int:
    """``./tools/demo --host``: build what is missing, run one handshake, show the RSE's part.
    ``tls13``: the client speaks TLS 1.3 instead of 1.2. ``mtls``: the client authenticates
    with a key made in the RSE (``mutual_tls``), against ``ssl_server2`` requiring it.

    The client's output and the RSE's part are the result (standard output); what the demo is
    doing meanwhile is logged (the command line shows it on standard error)."""
    import logging

    from . import mutual_tls

    progress = logging.getLogger(__name__)
    build = build_host()
    run_dir = new_run_dir("demo-host")
    progress.info(f"Run directory: {run_dir}")
    server, server_args = "ssl_server", []
    if mtls:
        server, *server_args = mutual_tls.server_argv(str(mutual_tls.pki_dir()))
    progress.info(f"Starting the RSE model, the Parsec service and {server} ...")
    with TlsDemo(run_dir, build, server, server_args) as demo:
        where = "a private network namespace" if demo.netns.isolated else "this host's network"
        version = "TLS 1.3" if tls13 else "TLS 1.2"
        progress.info(
            f"{server} listens on port {TLS_PORT} in {where}; running the client directly "
            f"(the host mode runs no container), {version}"
            + (", with a client key made in the RSE:" if mtls else ":")
        )
        if mtls:
            result = mutual_tls.run_mutual_tls(
                mutual_tls.HostClientSide(demo, run_dir / "client-key"), tls13
            )
            print(mutual_tls.describe(result), flush=True)
            ok = mutual_tls.passed(result)
            events = [e for _, step in result.steps for e in step.events]
        else:
            run = demo.run_client(options=mutual_tls.version_options(tls13))
            print(run.output)
            print(summary(run.events))
            imports = len(run.calls("psa_import_key", "PSA_SUCCESS"))
            destroys = len(run.calls("psa_destroy_key", "PSA_SUCCESS"))
            print(f"Keys left behind in the RSE by the handshake: {imports - destroys}", flush=True)
            ok, events = run.ok, run.events
    progress.info(f"Everything stopped; logs in {run_dir}")
    what = f"the {'mutual ' if mtls else ''}{version} handshake on this machine"
    print(verdict(ok, what, events, run_dir), flush=True)
    return 0 if ok else 1
