"""Test PKIs made with ``cryptography``: a root, an intermediate and a server for "localhost".

Mbed TLS's embedded EC test certificate has expired, so the tests make their own chains, RSA
or ECDSA, and can damage them on purpose (a corrupted signature, a server key that does not
match its certificate).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _key(kind: str, curve: ec.EllipticCurve | None = None) -> PrivateKey:
    if kind == "rsa":
        return rsa.generate_private_key(65537, 2048)
    return ec.generate_private_key(curve or ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str, key: PrivateKey, issuer: str, issuer_key: PrivateKey, ca: bool
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def corrupt_signature(certificate: x509.Certificate) -> bytes:
    """The certificate's DER with one bit of its signature flipped (the body stays intact)."""
    der = bytearray(certificate.public_bytes(serialization.Encoding.DER))
    der[-10] ^= 0x01
    return bytes(der)


@dataclass(frozen=True)
class Pki:
    """Files for ssl_server2 (``crt_file``, ``key_file``) and ssl_client1 (the CA file)."""

    ca_file: Path
    chain_file: Path
    key_file: Path
    signatures_in_chain: int

    def server_args(self) -> list[str]:
        return [f"crt_file={self.chain_file}", f"key_file={self.key_file}", "server_port=4433"]


def make_pki(
    directory: Path,
    kind: str,
    corrupt_server_signature: bool = False,
    wrong_server_key: bool = False,
) -> Pki:
    """Root -> intermediate -> "localhost" server, all ``kind`` ("rsa" or "ecdsa")."""
    directory.mkdir(parents=True, exist_ok=True)
    root_key = _key(kind)
    root = _certificate("Parsec demo test root", root_key, "Parsec demo test root", root_key, True)
    intermediate_key = _key(kind, ec.SECP384R1())
    intermediate = _certificate(
        "Parsec demo test intermediate", intermediate_key, "Parsec demo test root", root_key, True
    )
    server_key = _key(kind)
    server = _certificate(
        "localhost", server_key, "Parsec demo test intermediate", intermediate_key, False
    )
    server_pem = _pem(server)
    if corrupt_server_signature:
        damaged = x509.load_der_x509_certificate(corrupt_signature(server))
        server_pem = damaged.public_bytes(serialization.Encoding.PEM)
    ca_file = directory / "ca.pem"
    chain_file = directory / "chain.pem"
    key_file = directory / "server.key"
    ca_file.write_bytes(_pem(root))
    chain_file.write_bytes(server_pem + _pem(intermediate))
    key_file.write_bytes(_key_pem(_key(kind) if wrong_server_key else server_key))
    return Pki(ca_file, chain_file, key_file, signatures_in_chain=2)
