"""``parsec-demo rse demo``: the RSE model on its own, for a newcomer.

This walks keys through the RSE model the way the TLS client's secure-element driver does: a
server's RSA public key is imported, a signature made by the "server" is verified inside the
RSE, a tampered one is rejected, the key is destroyed; then an ECC key pair is generated inside
the RSE, signs, and its public key verifies outside. The RSE console lines of each step are
printed as the model wrote them, and a summary is read from the model's JSON events.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from parsec_demo_evidence import event_calls
from parsec_demo_rse import RseFiles

from parsec_service import psa
from parsec_service.psa import PsaError
from parsec_service.rse_link.client import RseClient
from parsec_service.rse_link.tfm_crypto import KeyAttributes

from ..paths import new_run_dir
from ..services import start_rse_model
from .results import summary


class ConsoleFollower:
    """Prints the lines a log file gained since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def show(self) -> None:
        with open(self.path, encoding="utf-8") as log:
            log.seek(self.offset)
            text = log.read()
            self.offset = log.tell()
        for line in text.splitlines():
            print(f"    rse | {line}")


def run_demo() -> int:
    run_dir = new_run_dir("demo")
    print(f"Run directory: {run_dir}")
    print("Starting the RSE crypto service model ...")
    rse = start_rse_model(run_dir)
    files = RseFiles(run_dir)
    console = ConsoleFollower(Path(files.console_log))
    try:
        console.show()
        with RseClient(rse.socket_path, client_id=0x0100) as client:
            _walk_rsa_verification(client, console)
            _walk_ecc_signing(client, console)
    finally:
        status = rse.stop()
    console.show()
    calls = event_calls(Path(files.events_log).read_text())
    print(summary(calls).splitlines()[0])
    print(f"RSE model stopped (exit status {status}); logs in {run_dir}")
    return 0 if status == 0 else 1


def _step(text: str) -> None:
    print(f"\n. {text}")


def _walk_rsa_verification(client: RseClient, console: ConsoleFollower) -> None:
    server_key = rsa.generate_private_key(65537, 2048)
    public_der = server_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.PKCS1
    )
    digest = hashlib.sha256(b"ServerKeyExchange parameters").digest()
    signature = server_key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    alg = psa.rsa_pkcs1v15_sign(psa.ALG_SHA_256)

    _step("Importing a server's RSA-2048 public key into the RSE (psa_import_key)")
    attributes = KeyAttributes(
        type=psa.KEY_TYPE_RSA_PUBLIC_KEY, bits=2048, usage=psa.USAGE_VERIFY_HASH, alg=alg
    )
    key_id = client.import_key(attributes, public_der)
    console.show()
    _step("Verifying the server's signature inside the RSE (psa_verify_hash)")
    client.verify_hash(key_id, alg, digest, signature)
    console.show()
    _step("Verifying a tampered signature: the RSE must refuse it")
    try:
        client.verify_hash(key_id, alg, digest, bytes([signature[0] ^ 1]) + signature[1:])
    except PsaError as exc:
        console.show()
        print(f"  refused as expected: {psa.status_name(exc.status)}")
    else:
        raise RuntimeError("the RSE accepted a tampered signature")
    _step("Destroying the key (psa_destroy_key)")
    client.destroy_key(key_id)
    console.show()


def _walk_ecc_signing(client: RseClient, console: ConsoleFollower) -> None:
    alg = psa.ecdsa(psa.ALG_SHA_256)
    digest = hashlib.sha256(b"a message signed by a key that never leaves the RSE").digest()
    _step("Generating an ECC P-256 key pair inside the RSE (psa_generate_key)")
    attributes = KeyAttributes(
        type=psa.KEY_TYPE_ECC_KEY_PAIR_SECP_R1,
        bits=256,
        usage=psa.USAGE_SIGN_HASH | psa.USAGE_VERIFY_HASH,
        alg=alg,
    )
    key_id = client.generate_key(attributes)
    console.show()
    _step("Signing inside the RSE (psa_sign_hash) and exporting the public key")
    signature = client.sign_hash(key_id, alg, digest)
    point = client.export_public_key(key_id)
    console.show()
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    half = len(signature) // 2
    der = utils.encode_dss_signature(
        int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
    )
    public.verify(der, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    print("  the RSE's signature verifies outside the RSE with its exported public key")
    _step("Destroying the key pair (psa_destroy_key)")
    client.destroy_key(key_id)
    console.show()
