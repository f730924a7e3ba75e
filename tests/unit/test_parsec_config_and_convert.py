"""Configuration parsing and protobuf <-> PSA conversion: pure logic, no processes."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from parsec_demo.services import parsec_config_text
from parsec_service import contracts as pb
from parsec_service import convert, psa
from parsec_service.client import SECP_R1, SHA_256, SHA_384, key_attributes, sign_alg
from parsec_service.config import DEFAULT_SOCKET, ConfigError, load, parse
from parsec_service.constants import AuthType, ResponseStatus, status_from_psa
from parsec_service.wire import WireError


def test_defaults_are_upstreams() -> None:
    config = load(None)
    assert config.socket_path == DEFAULT_SOCKET == Path("/run/parsec/parsec.sock")
    assert (config.body_len_limit, config.listener_timeout_ms, config.allow_root) == (
        1 << 20,
        200,
        False,
    )
    assert config.auth_type == AuthType.UNIX_PEER_CREDENTIALS and config.log_level == "warn"


def test_the_projects_config_parses() -> None:
    config = parse(tomllib.loads(parsec_config_text(auth_type="Direct", admins=("a", "b"))))
    assert config.auth_type == AuthType.DIRECT
    assert config.admins == {"a", "b"}
    assert config.allow_root and config.log_level == "info"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[core_settings]\nlog_level = "loud"', "log_level must be one of"),
        ("[core_settings]\nbody_len_limit = 0", "body_len_limit must be positive"),
        ('[core_settings]\nallow_root = "yes"', "allow_root must be a bool"),
        ("[core_settings]\nthread_pool_size = true", "thread_pool_size must be an integer"),
        ('[listener]\nlistener_type = "TCP"', "only DomainSocket"),
        ('[authenticator]\nauth_type = "JwtSvid"', "offers Direct and UnixPeerCredentials"),
        ('[authenticator]\nadmins = ["root"]', "admins must be a list like"),
        ('[[key_manager]]\nname = "k"\nmanager_type = "OnDisk"', "only SQLite"),
        ('[[provider]]\nprovider_type = "MbedCrypto"', "only TrustedService"),
        (
            '[[provider]]\nprovider_type = "TrustedService"\nkey_info_manager = "x"',
            "names no [[key_manager]]",
        ),
    ],
)
def test_bad_configurations_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse(tomllib.loads(text))


def test_unreadable_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[core_settings\n")
    with pytest.raises(ConfigError, match="cannot read"):
        load(bad)


@pytest.mark.parametrize(
    ("scheme", "hash_value", "expected"),
    [
        ("rsa_pkcs1v15_sign", SHA_256, 0x06000209),
        ("rsa_pss", SHA_384, 0x0600030A),
        ("ecdsa", SHA_256, 0x06000609),
        ("deterministic_ecdsa", SHA_384, 0x0600070A),
        ("ecdsa", None, 0x060006FF),
    ],
)
def test_signature_algorithms_round_trip(
    scheme: str, hash_value: int | None, expected: int
) -> None:
    message = sign_alg(scheme, hash_value)
    assert convert.sign_alg_to_psa(message) == expected
    assert convert.sign_alg_from_psa(expected) == message


def test_raw_signature_variants() -> None:
    raw = pb.psa_algorithm.Algorithm.AsymmetricSignature()
    raw.rsa_pkcs1v15_sign_raw.SetInParent()
    assert convert.sign_alg_to_psa(raw) == 0x06000200
    assert convert.sign_alg_from_psa(0x06000200) == raw


def test_every_hash_maps_to_its_psa_value() -> None:
    assert len(convert.HASH_TO_PSA) == 15
    assert convert.hash_to_psa(SHA_256) == psa.ALG_SHA_256
    with pytest.raises(WireError) as caught:
        convert.hash_to_psa(0)
    assert caught.value.status == ResponseStatus.INVALID_ENCODING


def test_key_attributes_to_psa() -> None:
    ecc = key_attributes(
        "ecc_key_pair",
        384,
        sign_alg("ecdsa", SHA_384),
        curve_family=SECP_R1,
        sign_hash=True,
        export=True,
    )
    summary = convert.attributes_to_psa(ecc)
    assert (summary.type, summary.bits, summary.alg) == (0x7112, 384, 0x0600060A)
    assert summary.usage == psa.USAGE_SIGN_HASH | psa.USAGE_EXPORT
    assert convert.usage_to_psa(convert.usage_from_psa(0x3C03)) == 0x3C03


def test_policy_algorithms_of_every_family() -> None:
    algorithm = pb.psa_algorithm.Algorithm
    message = algorithm()
    message.none.SetInParent()
    assert convert.algorithm_to_psa(message) == 0
    message = algorithm(hash=SHA_256)
    assert convert.algorithm_to_psa(message) == psa.ALG_SHA_256
    message = algorithm(cipher=algorithm.CBC_NO_PADDING)
    assert convert.algorithm_to_psa(message) == 0x04404000
    message = algorithm()
    message.aead.aead_with_default_length_tag = algorithm.Aead.GCM
    assert convert.algorithm_to_psa(message) == 0x05500200
    message = algorithm()
    message.aead.aead_with_shortened_tag.aead_alg = algorithm.Aead.CCM
    message.aead.aead_with_shortened_tag.tag_length = 8
    assert convert.algorithm_to_psa(message) == 0x05480100
    message = algorithm()
    message.mac.full_length.hmac.hash_alg = SHA_256
    assert convert.algorithm_to_psa(message) == 0x03800009
    message = algorithm()
    message.asymmetric_encryption.rsa_oaep.hash_alg = SHA_256
    assert convert.algorithm_to_psa(message) == 0x07000309
    message = algorithm()
    message.key_agreement.with_key_derivation.ka_alg = algorithm.KeyAgreement.ECDH
    message.key_agreement.with_key_derivation.kdf_alg.hkdf.hash_alg = SHA_256
    assert convert.algorithm_to_psa(message) == 0x09020109
    with pytest.raises(WireError):
        convert.algorithm_to_psa(algorithm())


def test_psa_statuses_map_to_parsec() -> None:
    assert status_from_psa(-149) == ResponseStatus.PSA_ERROR_INVALID_SIGNATURE == 1149
    assert (
        status_from_psa(-140) == 1140
        and status_from_psa(-139) == 1139
        and status_from_psa(-133) == 1133
    )
    assert status_from_psa(0) == ResponseStatus.SUCCESS
    assert status_from_psa(-129) == ResponseStatus.PSA_ERROR_GENERIC_ERROR, (
        "FF-M errors are not Parsec's"
    )
    assert ResponseStatus.PSA_ERROR_INVALID_SIGNATURE.label == "PsaErrorInvalidSignature"
