"""``./tools/bench``: throughput measured against a baseline taken in the same run.

These machines are noisy, so no figure is compared with a constant: each benchmark measures
the project's path and a reference path back to back and prints both and their ratio.

- ``rse``: psa_verify_hash calls per second through the RSE model over its socket, against
  ``cryptography`` verifying the same signature in-process (RSA-2048 PKCS#1 v1.5 and P-256 ECDSA).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from . import psa
from .paths import new_run_dir
from .rse.client import RseClient
from .rse.tfm_crypto import KeyAttributes
from .services import start_rse_model


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


def bench_rse(seconds: float) -> None:
    run_dir = new_run_dir("bench-rse")
    rse = start_rse_model(run_dir)
    print(f"RSE model: {run_dir}")
    print(f"{'psa_verify_hash':<22} {'RSE model /s':>14} {'in-process /s':>14} {'ratio':>8}")
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
                print(
                    f"{case.name:<22} {model_rate:>14,.0f} {local_rate:>14,.0f} "
                    f"{model_rate / local_rate:>8.3f}"
                )
    finally:
        rse.stop()


def run_bench(what: str, seconds: float) -> int:
    if what == "rse":
        bench_rse(seconds)
        return 0
    raise ValueError(f"unknown benchmark {what}")
