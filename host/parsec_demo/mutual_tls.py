"""Mutual TLS with a client key that never leaves the RSE, wherever the client runs.

The flow, the same in host mode, in the dev VM and (stated for itself) in the layer's oeqa case:

1. ``parsec_client_key generate``: the client's ECC P-256 key pair is generated as a persistent
   PSA key in the secure element (the Parsec SE driver: PsaGenerateKey, which the Parsec
   service turns into psa_generate_key in the RSE), and a CSR for it is signed there
   (psa_export_public_key, psa_sign_hash).
2. Mbed TLS's ``cert_write`` issues the client's certificate from that CSR with the demo's
   client CA (the layer's test PKI).
3. ``ssl_client1 ... crt_file=client.pem key_id=N``: the handshake with ``ssl_server2
   auth_mode=required``; the client's CertificateVerify is signed by psa_sign_hash in the RSE.
4. ``parsec_client_key destroy``: the key is destroyed in the RSE.

Every step runs in the client's key directory: Mbed TLS keeps what it knows of the persistent
key (never key material: its type, size and the driver's slot number) in PSA storage files in
the working directory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .paths import layer_dir
from .tls_demo import TLS_PORT, ClientRun, TlsDemo, summary

#: The client's persistent PSA key id.
CLIENT_KEY_ID = 1
CSR_FILE = "client.csr"
CERT_FILE = "client.pem"
#: The client certificate's validity, as the test PKI's.
NOT_BEFORE, NOT_AFTER = "20261101000000", "20461027000000"


def pki_dir() -> Path:
    """The layer's test PKI: the server's certificate and key and the CA that issued them, and
    the client CA with its (public, test-only) key."""
    return layer_dir() / "lib/oeqa/runtime/files/parsec_tls_demo"


#: The files of the test PKI a machine needs for mutual TLS.
PKI_FILES = ("ca.pem", "server.pem", "server.key", "client-ca.pem", "client-ca.key")


def server_argv(pki: str) -> list[str]:
    """``ssl_server2`` requiring a client certificate from the client CA (``pki``: the test
    PKI's directory where the server runs)."""
    return [
        "ssl_server2",
        f"server_port={TLS_PORT}",
        "auth_mode=required",
        f"ca_file={pki}/client-ca.pem",
        f"crt_file={pki}/server.pem",
        f"key_file={pki}/server.key",
    ]


def provision_argv(key_id: int = CLIENT_KEY_ID) -> list[str]:
    return ["parsec_client_key", "generate", f"key_id={key_id}", f"csr_file={CSR_FILE}"]


def issue_argv(pki: str, serial: int = 1) -> list[str]:
    """``cert_write`` issuing the client's certificate from its CSR with the client CA."""
    return [
        "cert_write",
        f"request_file={CSR_FILE}",
        f"issuer_crt={pki}/client-ca.pem",
        f"issuer_key={pki}/client-ca.key",
        f"output_file={CERT_FILE}",
        f"serial={serial}",
        f"not_before={NOT_BEFORE}",
        f"not_after={NOT_AFTER}",
    ]


def client_argv(
    ca_file: str, key_id: int = CLIENT_KEY_ID, tls13: bool = False, address: str = "127.0.0.1"
) -> list[str]:
    """``ssl_client1`` authenticating with the client certificate and the key in the RSE,
    checking the server against ``ca_file`` (the test PKI's root, as the client sees it)."""
    argv = ["ssl_client1", address, ca_file, f"crt_file={CERT_FILE}", f"key_id={key_id}"]
    return [*argv, *version_options(tls13)]


def version_options(tls13: bool) -> list[str]:
    """ssl_client1's protocol choice: TLS 1.2 (its default, as the upstream demo) or 1.3."""
    return ["force_version=tls13"] if tls13 else []


def destroy_argv(key_id: int = CLIENT_KEY_ID) -> list[str]:
    return ["parsec_client_key", "destroy", f"key_id={key_id}"]


class ClientSide(Protocol):
    """Where the client's programs run, each in the client's key directory."""

    #: The test PKI's directory as the CA's programs see it.
    pki: str
    #: The test PKI's root certificate as the client sees it (the server's issuer).
    ca_file: str

    def as_client(self, argv: Sequence[str]) -> ClientRun:
        """Run ``argv`` as the client application (its container, if it has one)."""
        ...

    def as_ca(self, argv: Sequence[str]) -> ClientRun:
        """Run ``argv`` as the CA, outside any container."""
        ...


@dataclass
class MutualTlsRun:
    """Each step's run, in order: provision, issue, handshake 1..N, destroy (after a failed
    provisioning nothing follows it; after a failed issue only the destruction does)."""

    steps: list[tuple[str, ClientRun]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(run.ok for _, run in self.steps)

    def step(self, name: str) -> ClientRun:
        return dict(self.steps)[name]


def run_mutual_tls(side: ClientSide, tls13: bool = False, handshakes: int = 1) -> MutualTlsRun:
    """Provision the client's key and certificate, run ``handshakes`` handshakes with them,
    then destroy the key (also after a failed handshake). Stops at a failed provisioning."""
    result = MutualTlsRun()
    for name, argv, runner in (
        ("provision", provision_argv(), side.as_client),
        ("issue", issue_argv(side.pki), side.as_ca),
    ):
        result.steps.append((name, runner(argv)))
        if not result.steps[-1][1].ok:
            if name == "issue":
                result.steps.append(("destroy", side.as_client(destroy_argv())))
            return result
    for number in range(1, handshakes + 1):
        result.steps.append(
            (f"handshake {number}", side.as_client(client_argv(side.ca_file, tls13=tls13)))
        )
    result.steps.append(("destroy", side.as_client(destroy_argv())))
    return result


def client_key_problem(run: MutualTlsRun) -> str | None:
    """What keeps the RSE's record from showing a key that never left it, or None: one
    psa_generate_key at provisioning, that key signing the CSR, then exactly one psa_sign_hash
    with it per handshake, and its destruction at the end."""
    provision = run.step("provision").calls("psa_generate_key", "PSA_SUCCESS")
    if len(provision) != 1:
        return f"{len(provision)} successful psa_generate_key at provisioning, expected 1"
    key = provision[0].get("key_id")
    csr_signatures = run.step("provision").calls("psa_sign_hash", "PSA_SUCCESS")
    if [e.get("key_id") for e in csr_signatures] != [key]:
        return "the CSR was not signed once by the generated key in the RSE"
    for name, step in run.steps:
        if not name.startswith("handshake"):
            continue
        signs = step.calls("psa_sign_hash")
        if [(e.get("key_id"), e["status"]) for e in signs] != [(key, "PSA_SUCCESS")]:
            return f"{name}: RSE signatures {signs}, expected one with key {key}"
        if step.calls("psa_generate_key"):
            return f"{name}: a key was generated during the handshake"
    destroyed = [e.get("key_id") for e in run.step("destroy").calls("psa_destroy_key")]
    if destroyed != [key]:
        return f"the key was not destroyed once at the end: {destroyed}"
    return None


def passed(run: MutualTlsRun) -> bool:
    """Every step succeeded, and the RSE's record shows a key that never left it."""
    return run.ok and client_key_problem(run) is None


def describe(run: MutualTlsRun) -> str:
    """Each step's command line, output and RSE part, then whether the key stayed in the RSE."""
    parts = []
    for name, step in run.steps:
        parts.append(f"--- {name}: $ {' '.join(step.command)}\n{step.output.rstrip()}")
        parts.append(summary(step.events))
    if run.ok:
        verdict = client_key_problem(run)
        if verdict is None:
            key = run.step("provision").calls("psa_generate_key")[0].get("key_id", 0)
            handshakes = sum(1 for name, _ in run.steps if name.startswith("handshake"))
            verdict = (
                f"RSE key 0x{key:08x}, generated once, signed the CSR and {handshakes} "
                "handshake(s), destroyed at the end"
            )
        parts.append(f"Client key: {verdict}")
    return "\n".join(parts)


class HostClientSide:
    """A ``ClientSide`` on this machine: the demo's programs from the host build, run with the
    demo's client environment in ``key_dir``."""

    def __init__(self, demo: TlsDemo, key_dir: Path) -> None:
        self.demo = demo
        self.key_dir = key_dir
        self.pki = str(pki_dir())
        self.ca_file = f"{self.pki}/ca.pem"
        key_dir.mkdir(parents=True, exist_ok=True)

    def as_client(self, argv: Sequence[str]) -> ClientRun:
        program = str(self.demo.build.program(argv[0]))
        return self.demo.run_program([program, *argv[1:]], self.key_dir, log_name="mtls.log")

    as_ca = as_client
