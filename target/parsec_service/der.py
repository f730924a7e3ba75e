"""The few DER encodings the parsec-tool commands print, with the standard library only (the
target package must not need ``cryptography``): a SubjectPublicKeyInfo in PEM for the public
keys PSA exports (RSA as a DER RSAPublicKey, SECP-R1 curves as an uncompressed point), and an
ECDSA signature as the DER ``Ecdsa-Sig-Value`` parsec-tool prints instead of PSA's raw r || s.
"""

from __future__ import annotations

import base64
import textwrap

#: Named curves of the uncompressed point sizes PSA exports (RFC 5480).
_CURVE_OIDS = {65: "1.2.840.10045.3.1.7", 97: "1.3.132.0.34", 133: "1.3.132.0.35"}
_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
_RSA_ENCRYPTION = "1.2.840.113549.1.1.1"


def _length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    encoded = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(encoded)]) + encoded


def _tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _length(len(value)) + value


def _integer(value: int) -> bytes:
    encoded = value.to_bytes(value.bit_length() // 8 + 1, "big")  # a leading 0 keeps it positive
    return _tlv(0x02, encoded)


def _oid(dotted: str) -> bytes:
    numbers = [int(part) for part in dotted.split(".")]
    body = bytearray([40 * numbers[0] + numbers[1]])
    for number in numbers[2:]:
        chunk = [number & 0x7F]
        while number > 0x7F:
            number >>= 7
            chunk.append(0x80 | (number & 0x7F))
        body += bytes(reversed(chunk))
    return _tlv(0x06, bytes(body))


def ecdsa_signature(raw: bytes) -> bytes:
    """PSA's r || s as DER ``SEQUENCE { INTEGER r, INTEGER s }``."""
    if not raw or len(raw) % 2:
        raise ValueError(f"an ECDSA signature of {len(raw)} bytes")
    half = len(raw) // 2
    r, s = int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
    return _tlv(0x30, _integer(r) + _integer(s))


def public_key_pem(exported: bytes) -> str:
    """A PSA-exported public key as a PEM SubjectPublicKeyInfo."""
    if exported[:1] == b"\x04":
        if len(exported) not in _CURVE_OIDS:
            raise ValueError(f"an uncompressed point of {len(exported)} bytes names no curve")
        algorithm = _tlv(0x30, _oid(_EC_PUBLIC_KEY) + _oid(_CURVE_OIDS[len(exported)]))
    elif exported[:1] == b"\x30":
        algorithm = _tlv(0x30, _oid(_RSA_ENCRYPTION) + b"\x05\x00")
    else:
        raise ValueError("neither an uncompressed EC point nor a DER RSAPublicKey")
    info = _tlv(0x30, algorithm + _tlv(0x03, b"\x00" + exported))
    body = "\n".join(textwrap.wrap(base64.b64encode(info).decode(), 64))
    return f"-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n"
