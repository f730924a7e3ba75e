"""Mutual TLS with a client key that never leaves the RSE, wherever the client runs.

The flow, the same in host mode, in the dev VM, in the layer's oeqa case and in the LAVA test
definition (each step's command line is ``parsec_demo_machine``'s):

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
from typing import Protocol

import parsec_demo_evidence as evidence
import parsec_demo_machine as machine

from .results import ClientRun, summary


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

    @property
    def handshakes(self) -> list[ClientRun]:
        return [run for name, run in self.steps if name.startswith("handshake")]

    @property
    def calls(self) -> list[evidence.RseCall]:
        return [call for _, run in self.steps for call in run.calls]


def run_mutual_tls(side: ClientSide, tls13: bool = False, handshakes: int = 1) -> MutualTlsRun:
    """Provision the client's key and certificate, run ``handshakes`` handshakes with them,
    then destroy the key (also after a failed handshake). Stops at a failed provisioning."""
    result = MutualTlsRun()
    for name, argv, runner in (
        ("provision", machine.provision_command(), side.as_client),
        ("issue", machine.issue_command(side.pki), side.as_ca),
    ):
        result.steps.append((name, runner(argv)))
        if not result.steps[-1][1].ok:
            if name == "issue":
                result.steps.append(("destroy", side.as_client(machine.destroy_command())))
            return result
    for number in range(1, handshakes + 1):
        argv = machine.mutual_tls_client(side.ca_file, tls13=tls13)
        result.steps.append((f"handshake {number}", side.as_client(argv)))
    result.steps.append(("destroy", side.as_client(machine.destroy_command())))
    return result


def client_key_problem(run: MutualTlsRun) -> str | None:
    """What keeps the RSE's record from showing a key that never left it, or None: the whole
    run's calls as the layer's case checks them (``evidence.client_key_problem``), the key made
    and the CSR signed at provisioning, and each handshake with exactly one signature by that
    key and no key made."""
    problem = evidence.client_key_problem(run.calls, len(run.handshakes))
    if problem is not None:
        return problem
    provision = run.step("provision")
    if not provision.served("psa_generate_key", evidence.SUCCESS):
        return "the key was not generated at provisioning"
    if len(provision.served("psa_sign_hash", evidence.SUCCESS)) != 1:
        return "the CSR was not signed once by the generated key in the RSE"
    for name, step in run.steps:
        if name.startswith("handshake"):
            if len(step.served("psa_sign_hash")) != 1:
                return f"{name}: {len(step.served('psa_sign_hash'))} RSE signatures, expected 1"
            if step.served("psa_generate_key"):
                return f"{name}: a key was generated during the handshake"
    return None


def passed(run: MutualTlsRun) -> bool:
    """Every step succeeded, and the RSE's record shows a key that never left it."""
    return run.ok and client_key_problem(run) is None


def describe(run: MutualTlsRun) -> str:
    """Each step's command line, output and RSE part, then whether the key stayed in the RSE."""
    parts = []
    for name, step in run.steps:
        parts.append(f"--- {name}: $ {' '.join(step.command)}\n{step.output.rstrip()}")
        parts.append(summary(step.calls))
    if run.ok:
        verdict = client_key_problem(run)
        if verdict is None:
            key = run.step("provision").served("psa_generate_key")[0].key_id or 0
            verdict = (
                f"RSE key 0x{key:08x}, generated once, signed the CSR and {len(run.handshakes)} "
                "handshake(s), destroyed at the end"
            )
        parts.append(f"Client key: {verdict}")
    return "\n".join(parts)
