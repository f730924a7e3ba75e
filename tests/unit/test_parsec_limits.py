"""The service's limits on what one application may ask for: key names, key information,
key sizes, random bytes, and its share of the RSE's keys."""

from __future__ import annotations

import hashlib
import sqlite3
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from parsec_demo.services import parsec_config_text
from parsec_service.admission import Admission
from parsec_service.client import (
    SECP_R1,
    SHA_256,
    ParsecError,
    key_attributes,
    sign_alg,
)
from parsec_service.config import ConfigError, parse
from parsec_service.constants import ResponseStatus
from parsec_service.kim import KeyInfoManager
from support.keyhelpers import ec_point, rsa_public_der
from support.running import RunningParsec

DIGEST = hashlib.sha256(b"limits").digest()


def ecc_public() -> object:
    return key_attributes(
        "ecc_public_key", 256, sign_alg("ecdsa", SHA_256), curve_family=SECP_R1, verify_hash=True
    )


def expect(status: ResponseStatus, operation: Callable[[], object]) -> None:
    with pytest.raises(ParsecError) as caught:
        operation()
    assert caught.value.status == status, f"got {caught.value}"


@pytest.fixture
def point() -> bytes:
    return ec_point(ec.generate_private_key(ec.SECP256R1()))


def kim_names(parsec: RunningParsec) -> list[str]:
    with sqlite3.connect(parsec.service.kim.db_path) as db:
        return [name for (name,) in db.execute("SELECT key_name FROM keys ORDER BY key_name")]


def test_key_names_are_bounded(parsec_factory: Callable[..., RunningParsec], point: bytes) -> None:
    """256 bytes of name is the default limit (UTF-8 bytes, not characters); a name of 1 MiB
    is refused before anything is stored, by this rule even where requests that large are
    allowed."""
    parsec = parsec_factory(config_text=parsec_config_text(extra_core="body_len_limit = 4194304"))
    client = parsec.client()
    client.import_key("n" * 256, ecc_public(), point)
    for name in ("n" * 257, "é" * 129, "x" * (1 << 20)):
        expect(
            ResponseStatus.PSA_ERROR_INVALID_ARGUMENT,
            lambda name=name: client.import_key(name, ecc_public(), point),  # type: ignore[misc]
        )
    assert kim_names(parsec) == ["n" * 256]


def test_key_information_per_application_is_bounded(
    parsec_factory: Callable[..., RunningParsec], point: bytes
) -> None:
    parsec = parsec_factory(
        config_text=parsec_config_text(extra_core="max_key_info_bytes_per_application = 1000")
    )
    client = parsec.client()
    made = 0
    with pytest.raises(ParsecError) as refused:
        for n in range(100):
            client.import_key(f"{n:03d}" + "k" * 200, ecc_public(), point)
            made += 1
    assert refused.value.status == ResponseStatus.PSA_ERROR_INSUFFICIENT_STORAGE
    assert made == 4, "each key costs its 203-byte name and its attributes"
    assert len(kim_names(parsec)) == 4


def test_random_bytes_per_request_are_bounded(parsec: RunningParsec) -> None:
    client = parsec.client()
    assert len(client.generate_random(4096)) == 4096
    expect(ResponseStatus.PSA_ERROR_INVALID_ARGUMENT, lambda: client.generate_random(4097))


def test_key_sizes_are_bounded(
    parsec_factory: Callable[..., RunningParsec], rsa_keys: dict[int, rsa.RSAPrivateKey]
) -> None:
    """A key larger than max_key_bits is refused, whether its attributes state the size or
    the RSE reads it from the key data."""
    parsec = parsec_factory(config_text=parsec_config_text(extra_core="max_key_bits = 3072"))
    client = parsec.client()
    rsa_alg = sign_alg("rsa_pkcs1v15_sign", SHA_256)
    for bits in (4096, 0):
        attributes = key_attributes("rsa_public_key", bits, rsa_alg, verify_hash=True)
        expect(
            ResponseStatus.PSA_ERROR_NOT_SUPPORTED,
            lambda a=attributes: client.import_key(  # type: ignore[misc]
                "big", a, rsa_public_der(rsa_keys[4096])
            ),
        )
    generated = key_attributes("rsa_key_pair", 4096, rsa_alg, sign_hash=True)
    expect(ResponseStatus.PSA_ERROR_NOT_SUPPORTED, lambda: client.generate_key("big", generated))
    assert kim_names(parsec) == []
    assert list((parsec.rse.config.store_dir).glob("key-*.json")) == []
    attributes = key_attributes("rsa_public_key", 0, rsa_alg, verify_hash=True)
    client.import_key("fits", attributes, rsa_public_der(rsa_keys[3072]))


# --- admission: the RSE's capacity shared -------------------------------------------------------


def test_admission_keeps_a_reserve_for_small_applications() -> None:
    rules = Admission(
        max_keys_per_application=64,
        rse_key_capacity=256,
        key_reserve=32,
        keys_guaranteed_per_application=4,
    )
    assert rules.refusal("a", 10, 0, 10, 223) is None
    big = rules.refusal("a", 10, 0, 10, 224)
    assert big is not None and big.setting == "key_reserve"
    assert "the last 32 of the RSE's 256 are kept for applications holding fewer than 4" in str(big)
    assert rules.refusal("b", 3, 0, 10, 255) is None, "below its guarantee: the reserve is its"
    full = rules.refusal("b", 0, 0, 10, 256)
    assert full is not None and full.setting == "rse_key_capacity"
    quota = rules.refusal("a", 64, 0, 10, 0)
    assert quota is not None and str(quota) == "application 'a' has its quota of 64 keys"


def test_admission_counts_every_application_and_survives_a_restart(tmp_path: Path) -> None:
    rules = Admission(
        max_keys_per_application=10,
        rse_key_capacity=12,
        key_reserve=4,
        keys_guaranteed_per_application=2,
    )
    kim = KeyInfoManager(tmp_path / "store" / "kim.sqlite3")
    for n in range(8):
        kim.activate(kim.reserve(1, "big", f"k{n}", 4, b"a", rules), b"a")
    with pytest.raises(Exception, match="kept for applications holding fewer than 2"):
        kim.reserve(1, "big", "k8", 4, b"a", rules)
    kim.close()
    reopened = KeyInfoManager(tmp_path / "store" / "kim.sqlite3")
    with pytest.raises(Exception, match="kept for applications"):
        reopened.reserve(1, "big", "k8", 4, b"a", rules)
    for app in ("small-1", "small-2"):
        for n in range(2):
            reopened.reserve(1, app, f"k{n}", 4, b"a", rules)
    with pytest.raises(Exception, match="all in use"):
        reopened.reserve(1, "small-3", "k0", 4, b"a", rules)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("key_reserve = 256", "key_reserve must be less than rse_key_capacity"),
        ("keys_guaranteed_per_application = 33", "must not exceed key_reserve"),
        ("max_key_name_length = 0", "max_key_name_length must be positive"),
        ("max_random_bytes = -1", "max_random_bytes must be positive"),
    ],
)
def test_limits_are_checked_settings(setting: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(tomllib.loads(f"[core_settings]\n{setting}\n"))


def test_limit_defaults() -> None:
    config = parse({})
    assert config.admission == Admission()
    assert (config.max_key_name_length, config.max_key_bits, config.max_random_bytes) == (
        256,
        4096,
        4096,
    )
    assert config.temporary_key_check_interval == 5
