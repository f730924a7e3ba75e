"""The Parsec-enabled TLS handshake in host mode: real ssl_server / ssl_client1, real driver,
real Parsec service and RSE model; the RSE's own log is the evidence."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from parsec_demo.demo.host import TlsDemo
from parsec_demo.demo.results import ClientRun
from parsec_demo.native_build import HostBuild
from parsec_service import contracts as pb
from parsec_service.client import Auth, ParsecClient
from parsec_service.constants import Opcode
from parsec_service.wire import HEADER, Header, encode_request
from support.handshake_checks import assert_handshake_ok, assert_rse_evidence
from support.pki import make_pki


@pytest.fixture
def demo(tmp_path: Path, host_build: HostBuild) -> Iterator[TlsDemo]:
    with TlsDemo(tmp_path, host_build) as running:
        yield running


def rse_key_files(demo: TlsDemo) -> list[Path]:
    return sorted((demo.run_dir / "rse-store").glob("key-*.json"))


def test_handshake_with_the_embedded_test_certificate(demo: TlsDemo) -> None:
    run = demo.run_client()
    assert_handshake_ok(run, "TLS-ECDHE-RSA-WITH-CHACHA20-POLY1305-SHA256")
    # The server certificate (signed by the test CA) and ServerKeyExchange: two signatures.
    assert_rse_evidence(run, signatures=2)
    assert run.served("psa_import_key")[0].key_type == "RSA_PUBLIC_KEY"
    assert run.served("psa_verify_hash")[0].alg == "RSA_PKCS1V15_SIGN(SHA_256)"
    assert rse_key_files(demo) == [], "no key is left in the RSE"
    assert ParsecClient(demo.parsec.socket_path if demo.parsec else "").list_keys() == []


@pytest.mark.parametrize(
    ("kind", "cipher_suite", "alg"),
    [
        ("rsa", "TLS-ECDHE-RSA-WITH-CHACHA20-POLY1305-SHA256", "RSA_PKCS1V15_SIGN(SHA_256)"),
        ("ecdsa", "TLS-ECDHE-ECDSA-WITH-CHACHA20-POLY1305-SHA256", "ECDSA_ANY"),
    ],
)
def test_handshake_with_a_generated_chain(
    tmp_path: Path, host_build: HostBuild, kind: str, cipher_suite: str, alg: str
) -> None:
    pki = make_pki(tmp_path / "pki", kind)
    with TlsDemo(tmp_path, host_build, "ssl_server2", pki.server_args()) as demo:
        run = demo.run_client(ca_file=pki.ca_file)
    assert run.ok, run.output
    assert ". Verifying peer X.509 certificate... ok" in run.output
    assert cipher_suite in (tmp_path / "ssl_server2.log").read_text()
    # Root -> intermediate, intermediate -> server, and ServerKeyExchange.
    assert_rse_evidence(run, signatures=pki.signatures_in_chain + 1)
    assert run.served("psa_verify_hash")[0].alg == alg
    expected_type = "RSA_PUBLIC_KEY" if kind == "rsa" else "ECC_PUBLIC_KEY(SECP_R1)"
    assert {e.key_type for e in run.served("psa_import_key")} == {expected_type}


def test_a_corrupted_certificate_signature_fails_in_the_rse(
    tmp_path: Path, host_build: HostBuild
) -> None:
    pki = make_pki(tmp_path / "pki", "rsa", corrupt_server_signature=True)
    with TlsDemo(tmp_path, host_build, "ssl_server2", pki.server_args()) as demo:
        run = demo.run_client(ca_file=pki.ca_file)
    assert not run.ok
    assert ". Performing the SSL/TLS handshake... failed" in run.output
    assert "X509 - Certificate verification failed" in run.output
    assert run.served("psa_verify_hash", "PSA_ERROR_INVALID_SIGNATURE"), run.calls
    assert len(run.served("psa_destroy_key")) == len(run.served("psa_import_key")), "no leak"


def test_a_key_exchange_signed_by_the_wrong_key_fails(
    tmp_path: Path, host_build: HostBuild
) -> None:
    pki = make_pki(tmp_path / "pki", "ecdsa", wrong_server_key=True)
    with TlsDemo(tmp_path, host_build, "ssl_server2", pki.server_args()) as demo:
        run = demo.run_client(ca_file=pki.ca_file)
    assert not run.ok
    assert ". Performing the SSL/TLS handshake... failed" in run.output
    verifies = run.served("psa_verify_hash")
    assert [e.status for e in verifies] == [
        "PSA_SUCCESS",
        "PSA_SUCCESS",
        "PSA_ERROR_INVALID_SIGNATURE",
    ]


def test_the_client_fails_closed_without_the_rse(demo: TlsDemo) -> None:
    demo.stop_rse()
    run = demo.run_client(timeout=30)
    assert not run.ok and run.seconds < 15
    assert ". Performing the SSL/TLS handshake... failed" in run.output
    assert "parsec-se-driver: the Parsec service cannot reach its crypto backend" in run.output
    assert ". Verifying peer X.509 certificate... ok" not in run.output


def test_the_client_fails_closed_without_parsec(demo: TlsDemo) -> None:
    demo.stop_parsec()
    run = demo.run_client(timeout=30)
    assert not run.ok and run.seconds < 15
    assert ". Performing the SSL/TLS handshake... failed" in run.output
    assert "parsec-se-driver: cannot reach the Parsec service at" in run.output
    assert run.calls == []


_GDB_SCRIPT = """
set pagination off
set breakpoint pending on
{breaks}
run
"""
_LOCAL_VERIFIERS = (
    "mbedtls_psa_rsa_verify_hash",
    "mbedtls_psa_ecdsa_verify_hash",
    "mbedtls_rsa_pkcs1_verify",
    "mbedtls_rsa_rsassa_pss_verify_ext",
    "mbedtls_ecdsa_verify",
)


def _count_local_verifications(
    demo: TlsDemo, tmp_path: Path, env: dict[str, str], options: list[str]
) -> tuple[int, ClientRun]:
    breaks = "\n".join(
        f"break {name}\ncommands\nsilent\necho LOCAL-VERIFICATION\\n\ncontinue\nend"
        for name in _LOCAL_VERIFIERS
    )
    script = tmp_path / "count.gdb"
    script.write_text(_GDB_SCRIPT.format(breaks=breaks))
    gdb = ["gdb", "-q", "-batch", "-x", str(script), "--args"]
    run = demo.run_client(env=env, wrapper=gdb, options=options)
    return run.output.count("LOCAL-VERIFICATION"), run


@pytest.mark.skipif(shutil.which("gdb") is None, reason="gdb counts the local verifications")
@pytest.mark.parametrize("options", [[], ["force_version=tls13"]], ids=["tls12", "tls13"])
def test_no_signature_is_verified_locally(
    demo: TlsDemo, tmp_path: Path, options: list[str]
) -> None:
    delegated, run = _count_local_verifications(demo, tmp_path, {}, options)
    assert "Verifying peer X.509 certificate... ok" in run.output, run.output
    assert delegated == 0, run.output
    assert len(run.served("psa_verify_hash", "PSA_SUCCESS")) == 2
    # The same breakpoints do fire when delegation is switched off: the count is meaningful.
    local_env = {"PARSEC_DEMO_LOCAL_VERIFY": "1"}
    local, run = _count_local_verifications(demo, tmp_path, local_env, options)
    assert "Verifying peer X.509 certificate... ok" in run.output, run.output
    assert local >= 2
    assert run.calls == [], "with delegation off the RSE sees nothing"


class CapturingProxy:
    """A Unix-socket proxy in front of the Parsec service that records each request."""

    def __init__(self, path: Path, upstream: Path) -> None:
        self.path = path
        self.upstream = upstream
        self.requests: list[bytes] = []
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen(8)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with client:
                request = self._read_request(client)
                self.requests.append(request)
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as service:
                    service.connect(str(self.upstream))
                    service.sendall(request)
                    while chunk := service.recv(65536):
                        client.sendall(chunk)

    @staticmethod
    def _read_request(sock: socket.socket) -> bytes:
        data = b""
        while len(data) < HEADER.size:
            data += sock.recv(HEADER.size - len(data))
        header = Header.decode(data)
        remaining = header.body_len + header.auth_len
        while remaining:
            chunk = sock.recv(remaining)
            data += chunk
            remaining -= len(chunk)
        return data

    def close(self) -> None:
        self._listener.close()


def test_driver_requests_are_parsec_wire_conformant(demo: TlsDemo, tmp_path: Path) -> None:
    assert demo.parsec is not None
    proxy = CapturingProxy(tmp_path / "proxy.sock", demo.parsec.socket_path)
    try:
        run = demo.run_client(env={"PARSEC_SERVICE_ENDPOINT": f"unix:{proxy.path}"})
    finally:
        proxy.close()
    assert run.ok, run.output
    headers = [Header.decode(r[: HEADER.size]) for r in proxy.requests]
    assert [h.opcode for h in headers] == [Opcode.LIST_PROVIDERS] + [
        Opcode.PSA_IMPORT_KEY,
        Opcode.PSA_VERIFY_HASH,
        Opcode.PSA_DESTROY_KEY,
    ] * 2
    assert all(h.provider == 4 and h.auth_type == 3 for h in headers[1:])
    uid = struct.pack("<I", os.getuid())
    assert all(r.endswith(uid) for r in proxy.requests[1:]), "Unix peer credentials"
    import_request = proxy.requests[1]
    operation = pb.psa_import_key.Operation()
    operation.ParseFromString(import_request[HEADER.size : HEADER.size + headers[1].body_len])
    # The CA's public key, imported for one verification, is a temporary key (the process's).
    assert operation.key_name.startswith("temporary/parsec-se-driver-key")
    assert operation.attributes.key_bits == 2048
    assert operation.attributes.key_policy.key_usage_flags.verify_hash
    # The Python client, given the same operation, produces the same bytes.
    python_bytes = encode_request(
        Header(provider=4, auth_type=3, opcode=Opcode.PSA_IMPORT_KEY),
        operation.SerializeToString(),
        Auth.peer().data,
    )
    assert python_bytes == import_request


def test_clients_side_by_side_do_not_collide(demo: TlsDemo) -> None:
    results: list[ClientRun] = []

    def client(index: int) -> None:
        results.append(demo.run_client(log_name=f"client-{index}.log"))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    # ssl_server takes one connection at a time; each client still completes.
    assert len(results) == 3 and all(r.ok for r in results), [r.output for r in results]
    assert rse_key_files(demo) == []


@pytest.mark.parametrize("sanitized", [False, True], ids=["plain", "asan-ubsan"])
def test_driver_unit_tests(host_build: HostBuild, sanitized: bool) -> None:
    """The driver's unit tests, as built for the demo and under ASan and UBSan (any sanitizer
    report ends the program with a non-zero status; leaks are checked at exit)."""
    import subprocess

    program = host_build.driver_tests_sanitized if sanitized else host_build.driver_tests
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1", UBSAN_OPTIONS="print_stacktrace=1")
    result = subprocess.run([str(program)], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Sanitizer" not in result.stderr and "runtime error" not in result.stderr
    passed, failed = result.stdout.strip().splitlines()[-1].split(", ")
    assert failed == "0 failed" and int(passed.split()[0]) >= 200
