"""Key material in PSA formats, and the asymmetric operations on it, done by ``cryptography``.

PSA fixes an export format for every key type; the RSE model keeps keys in exactly that form:

- RSA public key: PKCS#1 ``RSAPublicKey`` DER; RSA key pair: PKCS#1 ``RSAPrivateKey`` DER.
- ECC public key (Weierstrass): the uncompressed point ``04 || X || Y``; ECC key pair: the
  private scalar, big-endian, ``ceil(bits / 8)`` bytes.
- ECDSA signatures: raw ``r || s``, each ``ceil(bits / 8)`` bytes.

Import accepts only the canonical encoding of these formats (what export would give back), so a
key can never be stored in a form the model would later export differently.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from parsec_service import psa
from parsec_service.psa import PsaError, Status

RSA_SIZES = (2048, 3072, 4096)
RSA_PUBLIC_EXPONENT = 65537
ECC_CURVES: dict[int, type[ec.EllipticCurve]] = {
    256: ec.SECP256R1,
    384: ec.SECP384R1,
    521: ec.SECP521R1,
}

_HASHES: dict[int, type[hashes.HashAlgorithm]] = {
    psa.ALG_SHA_256: hashes.SHA256,
    psa.ALG_SHA_384: hashes.SHA384,
    psa.ALG_SHA_512: hashes.SHA512,
}

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class KeyMaterial:
    """A key's bits, its parsed objects and its canonical PSA encoding."""

    key_type: int
    bits: int
    data: bytes
    public: PublicKey
    private: PrivateKey | None
    #: Whether it is an RSA key: asked on every signature, and an ABC isinstance is not free.
    is_rsa: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "is_rsa", isinstance(self.public, rsa.RSAPublicKey))

    def export_public(self) -> bytes:
        return encode_public(self.public)


def _coordinate_bytes(bits: int) -> int:
    return (bits + 7) // 8


def _ecc_curve(key_type: int, bits: int) -> ec.EllipticCurve:
    if psa.ecc_family(key_type) != psa.ECC_FAMILY_SECP_R1 or bits not in ECC_CURVES:
        raise PsaError(Status.NOT_SUPPORTED, f"{psa.key_type_name(key_type)} with {bits} bits")
    return ECC_CURVES[bits]()


def encode_public(public: PublicKey) -> bytes:
    if isinstance(public, rsa.RSAPublicKey):
        return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    return public.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def _check_bits(declared: int, actual: int, what: str) -> None:
    if declared not in (0, actual):
        raise PsaError(
            Status.INVALID_ARGUMENT, f"{what} has {actual} bits, attributes say {declared}"
        )


def load_material(key_type: int, declared_bits: int, data: bytes) -> KeyMaterial:
    """Parse ``data`` in the PSA format of ``key_type``; ``declared_bits`` 0 means 'any'."""
    if key_type == psa.KEY_TYPE_NONE:
        raise PsaError(Status.INVALID_ARGUMENT, "key type NONE")
    if key_type in (psa.KEY_TYPE_RSA_PUBLIC_KEY, psa.KEY_TYPE_RSA_KEY_PAIR):
        return _load_rsa(key_type, declared_bits, data)
    if psa.key_type_is_ecc(key_type):
        return _load_ecc(key_type, declared_bits, data)
    raise PsaError(Status.NOT_SUPPORTED, f"key type {psa.key_type_name(key_type)}")


def _load_rsa(key_type: int, declared_bits: int, data: bytes) -> KeyMaterial:
    private: rsa.RSAPrivateKey | None = None
    try:
        if key_type == psa.KEY_TYPE_RSA_PUBLIC_KEY:
            loaded_public = serialization.load_der_public_key(data)
            if not isinstance(loaded_public, rsa.RSAPublicKey):
                raise ValueError("not an RSA public key")
            public = loaded_public
            canonical = encode_public(public)
        else:
            loaded_private = serialization.load_der_private_key(data, password=None)
            if not isinstance(loaded_private, rsa.RSAPrivateKey):
                raise ValueError("not an RSA private key")
            private = loaded_private
            public = private.public_key()
            canonical = private.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise PsaError(
            Status.INVALID_ARGUMENT, f"bad {psa.key_type_name(key_type)} data: {exc}"
        ) from None
    if canonical != data:
        raise PsaError(Status.INVALID_ARGUMENT, "key data is not canonical PKCS#1 DER")
    bits = public.key_size
    _check_bits(declared_bits, bits, "RSA key")
    if bits not in RSA_SIZES:
        raise PsaError(Status.NOT_SUPPORTED, f"RSA key of {bits} bits")
    return KeyMaterial(key_type, bits, data, public, private)


def _load_ecc(key_type: int, declared_bits: int, data: bytes) -> KeyMaterial:
    if psa.ecc_family(key_type) != psa.ECC_FAMILY_SECP_R1:
        raise PsaError(Status.NOT_SUPPORTED, f"key type {psa.key_type_name(key_type)}")
    if psa.key_type_is_key_pair(key_type):
        by_length = {_coordinate_bytes(b): b for b in ECC_CURVES}
    else:
        by_length = {1 + 2 * _coordinate_bytes(b): b for b in ECC_CURVES}
    if len(data) not in by_length:
        raise PsaError(Status.INVALID_ARGUMENT, f"{len(data)} bytes is no SECP_R1 key length")
    bits = by_length[len(data)]
    _check_bits(declared_bits, bits, "ECC key")
    curve = _ecc_curve(key_type, bits)
    private: ec.EllipticCurvePrivateKey | None = None
    try:
        if psa.key_type_is_key_pair(key_type):
            private = ec.derive_private_key(int.from_bytes(data, "big"), curve)
            public = private.public_key()
        else:
            if data[0] != 0x04:
                raise ValueError("not an uncompressed point")
            public = ec.EllipticCurvePublicKey.from_encoded_point(curve, data)
    except ValueError as exc:
        raise PsaError(
            Status.INVALID_ARGUMENT, f"bad {psa.key_type_name(key_type)} data: {exc}"
        ) from None
    return KeyMaterial(key_type, bits, data, public, private)


def generate_material(key_type: int, bits: int) -> KeyMaterial:
    if not psa.key_type_is_key_pair(key_type):
        raise PsaError(Status.INVALID_ARGUMENT, "only key pairs can be generated")
    if key_type == psa.KEY_TYPE_RSA_KEY_PAIR:
        if bits not in RSA_SIZES:
            raise PsaError(Status.NOT_SUPPORTED, f"RSA key of {bits} bits")
        rsa_key = rsa.generate_private_key(RSA_PUBLIC_EXPONENT, bits)
        data = rsa_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        return KeyMaterial(key_type, bits, data, rsa_key.public_key(), rsa_key)
    if psa.key_type_is_ecc(key_type):
        ec_key = ec.generate_private_key(_ecc_curve(key_type, bits))
        data = ec_key.private_numbers().private_value.to_bytes(_coordinate_bytes(bits), "big")
        return KeyMaterial(key_type, bits, data, ec_key.public_key(), ec_key)
    raise PsaError(Status.NOT_SUPPORTED, f"key type {psa.key_type_name(key_type)}")


# --- signatures -------------------------------------------------------------------------------


def _hash_of(alg: int) -> hashes.HashAlgorithm:
    hash_alg = psa.sign_hash_alg(alg)
    if hash_alg not in _HASHES:
        raise PsaError(Status.NOT_SUPPORTED, f"algorithm {psa.alg_name(alg)}")
    return _HASHES[hash_alg]()


def hash_message(alg: int, message: bytes) -> bytes:
    """The digest a hash-and-sign algorithm signs for ``message`` (for psa_sign_message)."""
    return hashlib.new(_hash_of(alg).name, message).digest()


def hash_compute(hash_alg: int, message: bytes) -> bytes:
    """``psa_hash_compute``: SHA-256/384/512 here; other hashes are not supported."""
    if not psa.alg_is_hash(hash_alg) or hash_alg == psa.ALG_ANY_HASH:
        raise PsaError(Status.INVALID_ARGUMENT, f"{psa.alg_name(hash_alg)} is not a hash")
    if hash_alg not in _HASHES:
        raise PsaError(Status.NOT_SUPPORTED, f"hash {psa.alg_name(hash_alg)}")
    return hashlib.new(_HASHES[hash_alg]().name, message).digest()


#: ECDSA_ANY signs or verifies a hash of any length: the digest size picks the hash to name.
_BY_DIGEST_SIZE: dict[int, type[hashes.HashAlgorithm]] = {
    20: hashes.SHA1,
    28: hashes.SHA224,
    32: hashes.SHA256,
    48: hashes.SHA384,
    64: hashes.SHA512,
}


def _check_compatible(material: KeyMaterial, alg: int, hash_value: bytes) -> hashes.HashAlgorithm:
    base = psa.sign_base(alg)
    is_rsa = material.is_rsa
    rsa_algs = (psa.ALG_RSA_PKCS1V15_SIGN_BASE, psa.ALG_RSA_PSS_BASE)
    ecc_algs = (psa.ALG_ECDSA_BASE, psa.ALG_DETERMINISTIC_ECDSA_BASE)
    if base not in (rsa_algs if is_rsa else ecc_algs):
        raise PsaError(
            Status.INVALID_ARGUMENT,
            f"{psa.alg_name(alg)} does not apply to {psa.key_type_name(material.key_type)}",
        )
    if base == psa.ALG_ECDSA_BASE and psa.sign_hash_alg(alg) == psa.ALG_NONE:  # ECDSA_ANY
        if len(hash_value) not in _BY_DIGEST_SIZE:
            raise PsaError(Status.INVALID_ARGUMENT, f"hash of {len(hash_value)} bytes")
        return _BY_DIGEST_SIZE[len(hash_value)]()
    algorithm = _hash_of(alg)
    if len(hash_value) != algorithm.digest_size:
        raise PsaError(
            Status.INVALID_ARGUMENT,
            f"hash of {len(hash_value)} bytes for {psa.alg_name(alg)}",
        )
    return algorithm


def signature_size(material: KeyMaterial) -> int:
    if material.is_rsa:
        return _coordinate_bytes(material.bits)
    return 2 * _coordinate_bytes(material.bits)


def sign_hash(material: KeyMaterial, alg: int, hash_value: bytes) -> bytes:
    if material.private is None:
        raise PsaError(Status.INVALID_ARGUMENT, "cannot sign with a public key")
    algorithm = _check_compatible(material, alg, hash_value)
    prehashed = utils.Prehashed(algorithm)
    if isinstance(material.private, rsa.RSAPrivateKey):
        return material.private.sign(hash_value, _rsa_padding(alg, algorithm), prehashed)
    if psa.sign_base(alg) == psa.ALG_DETERMINISTIC_ECDSA_BASE:
        signer = ec.ECDSA(prehashed, deterministic_signing=True)
    else:
        # No keyword: cryptography before 44 (Yocto scarthgap's python3-cryptography-native,
        # which the layer's native model runs on, is 42) has none, and signs randomized.
        signer = ec.ECDSA(prehashed)
    der = material.private.sign(hash_value, signer)
    r, s = utils.decode_dss_signature(der)
    size = _coordinate_bytes(material.bits)
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def verify_hash(material: KeyMaterial, alg: int, hash_value: bytes, signature: bytes) -> None:
    """Return if ``signature`` is valid; raise ``PSA_ERROR_INVALID_SIGNATURE`` otherwise."""
    algorithm = _check_compatible(material, alg, hash_value)
    prehashed = utils.Prehashed(algorithm)
    if len(signature) != signature_size(material):
        raise PsaError(Status.INVALID_SIGNATURE, f"signature of {len(signature)} bytes")
    try:
        if isinstance(material.public, rsa.RSAPublicKey):
            material.public.verify(signature, hash_value, _rsa_padding(alg, algorithm), prehashed)
        else:
            size = _coordinate_bytes(material.bits)
            r = int.from_bytes(signature[:size], "big")
            s = int.from_bytes(signature[size:], "big")
            der = utils.encode_dss_signature(r, s)
            material.public.verify(der, hash_value, ec.ECDSA(prehashed))
    except InvalidSignature:
        raise PsaError(Status.INVALID_SIGNATURE, "signature does not verify") from None


def _rsa_padding(alg: int, algorithm: hashes.HashAlgorithm) -> padding.AsymmetricPadding:
    if psa.sign_base(alg) == psa.ALG_RSA_PSS_BASE:
        return padding.PSS(mgf=padding.MGF1(algorithm), salt_length=algorithm.digest_size)
    return padding.PKCS1v15()
