"""The Parsec service as a real process: signals, durability, crash recovery, real uids."""

from __future__ import annotations

import base64
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from parsec_demo.services import (
    Service,
    parsec_config_text,
    start_parsec_service,
    start_rse_model,
)
from parsec_service import contracts as pb
from parsec_service import psa
from parsec_service.client import (
    SECP_R1,
    SHA_256,
    Auth,
    ParsecClient,
    ParsecError,
    key_attributes,
    sign_alg,
)
from parsec_service.constants import Opcode, ResponseStatus
from parsec_service.providers import RSE_CLIENT_ID
from parsec_service.psa import PsaError, Status
from parsec_service.rse_link.client import RseClient
from parsec_service.rse_link.tfm_crypto import KeyAttributes
from parsec_service.wire import HEADER, Header, encode_request
from support.keyhelpers import ec_point
from support.parsec_load import assert_stores_agree, kim_db, kim_rows
from support.toolkit_cli import python_command

ATTRS = key_attributes(
    "ecc_public_key", 256, sign_alg("ecdsa", SHA_256), curve_family=SECP_R1, verify_hash=True
)


@pytest.fixture
def rse(tmp_path: Path) -> Iterator[Service]:
    service = start_rse_model(tmp_path)
    yield service
    service.stop()


def test_sigterm_stops_cleanly_and_removes_the_socket(tmp_path: Path, rse: Service) -> None:
    parsec = start_parsec_service(tmp_path, rse.socket_path)
    assert ParsecClient(parsec.socket_path).ping() == (1, 0)
    assert parsec.stop() == 0
    assert not parsec.socket_path.exists()
    assert "Parsec service stopped" in (tmp_path / "parsec.log").read_text()


def test_under_systemd_the_service_says_ready_once_it_answers(
    tmp_path: Path, rse: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unit's contract (Type=notify): READY=1 only when a client gets an answer, then
    STOPPING=1 at SIGTERM; and a service the toolkit spawns never speaks to the manager of
    whatever runs the toolkit (NOTIFY_SOCKET is not passed on)."""
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    manager.bind(str(tmp_path / "notify"))
    manager.settimeout(30)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    with manager:
        spawned = start_parsec_service(tmp_path, rse.socket_path)
        assert ParsecClient(spawned.socket_path).ping() == (1, 0)
        assert spawned.stop() == 0
        manager.setblocking(False)
        with pytest.raises(BlockingIOError):
            manager.recv(4096)  # nothing from the spawned service
        manager.settimeout(30)

        socket_path = tmp_path / "unit.sock"
        command = python_command(
            "parsec", "serve", "--socket", str(socket_path), "--rse", str(rse.socket_path),
            "--store", str(tmp_path / "unit-store"),
            "--config", str(tmp_path / "parsec-config.toml"),
        )  # fmt: skip
        with open(tmp_path / "unit.log", "wb") as log:
            unit = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            assert manager.recv(4096) == b"READY=1"
            assert ParsecClient(socket_path).ping() == (1, 0), "ready means it answers"
            unit.send_signal(signal.SIGTERM)
            assert manager.recv(4096) == b"STOPPING=1"
            assert unit.wait(30) == 0
        finally:
            if unit.poll() is None:
                unit.kill()
                unit.wait()


def test_sighup_reloads_the_configuration(tmp_path: Path, rse: Service) -> None:
    parsec = start_parsec_service(tmp_path, rse.socket_path, parsec_config_text(auth_type="Direct"))
    try:
        client = ParsecClient(parsec.socket_path, auth=Auth.none())
        assert [a.id for a in client.list_authenticators()] == [1]
        config = tmp_path / "parsec-config.toml"
        config.write_text(parsec_config_text(auth_type="UnixPeerCredentials"))
        parsec.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while [a.id for a in client.list_authenticators()] != [3]:
            assert time.monotonic() < deadline, "the configuration was not reloaded"
            time.sleep(0.05)
        config.write_text("[core_settings]\nlog_level = 12\n")
        parsec.process.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert [a.id for a in client.list_authenticators()] == [3], "a bad file changes nothing"
        log = (tmp_path / "parsec.log").read_text()
        assert "configuration reloaded" in log
        assert "configuration not reloaded: core_settings.log_level must be a str" in log
    finally:
        assert parsec.stop() == 0


def test_refuses_to_run_as_root_unless_allowed(tmp_path: Path, rse: Service) -> None:
    if os.geteuid() != 0:
        pytest.skip("the check is about running as root")
    config = tmp_path / "strict.toml"
    config.write_text(parsec_config_text().replace("allow_root = true", "allow_root = false"))
    result = subprocess.run(
        python_command(
            "parsec",
            "serve",
            "--socket",
            str(tmp_path / "p.sock"),
            "--rse",
            str(rse.socket_path),
            "--store",
            str(tmp_path / "s"),
            "--config",
            str(config),
        ),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "refusing to run as root: set [core_settings] allow_root = true" in result.stderr


def _import_until_killed(
    socket_path: Path, acknowledged: list[str], data: bytes, start: int
) -> None:
    client = ParsecClient(socket_path, auth=Auth.peer(), timeout=5)
    index = start
    try:
        while True:
            name = f"key-{index}"
            client.import_key(name, ATTRS, data)
            acknowledged.append(name)
            index += 1
    except ParsecError:
        pass


@pytest.mark.slow
def test_acknowledged_keys_survive_kill_9_and_no_rse_key_is_orphaned(
    tmp_path: Path, rse: Service
) -> None:
    point = ec_point(ec.generate_private_key(ec.SECP256R1()))
    rng = random.Random(99)
    acknowledged: list[str] = []
    for round_number in range(5):
        parsec = start_parsec_service(tmp_path, rse.socket_path)
        worker = threading.Thread(
            target=_import_until_killed,
            args=(parsec.socket_path, acknowledged, point, round_number * 10_000),
        )
        worker.start()
        time.sleep(rng.uniform(0.1, 0.5))
        parsec.kill()
        worker.join(timeout=15)
        assert not worker.is_alive()
    assert len(acknowledged) > 10

    parsec = start_parsec_service(tmp_path, rse.socket_path)
    try:
        client = ParsecClient(parsec.socket_path, auth=Auth.peer())
        names = {k.name for k in client.list_keys()}
        assert set(acknowledged) <= names, "an acknowledged key was lost"
        for name in acknowledged:
            assert client.export_public_key(name) == point
    finally:
        parsec.stop()
    rows = assert_stores_agree(kim_db(tmp_path), tmp_path / "rse-store")
    assert {state for *_, state in rows} == {"active"}, "interrupted operations were settled"


def test_reconciliation_finishes_what_a_crash_interrupted(tmp_path: Path, rse: Service) -> None:
    point = ec_point(ec.generate_private_key(ec.SECP256R1()))
    parsec = start_parsec_service(tmp_path, rse.socket_path)
    client = ParsecClient(parsec.socket_path, auth=Auth.peer())
    client.import_key("kept", ATTRS, point)
    client.import_key("being-destroyed", ATTRS, point)
    parsec.kill()
    # The state a crash leaves: the RSE created key 50 but the service never committed its
    # name; and the service had marked key "being-destroyed" but never removed it.
    with RseClient(rse.socket_path, client_id=RSE_CLIENT_ID) as rse_client:
        rse_attrs = KeyAttributes(
            type=psa.KEY_TYPE_ECC_PUBLIC_KEY_SECP_R1,
            bits=256,
            lifetime=psa.LIFETIME_PERSISTENT,
            usage=psa.USAGE_VERIFY_HASH,
            alg=psa.ecdsa(psa.ALG_SHA_256),
            id=50,
        )
        rse_client.import_key(rse_attrs, point)
    with sqlite3.connect(kim_db(tmp_path)) as db:
        db.execute(
            "INSERT INTO keys (auth_type, app, key_name, provider_id, key_id, attributes, state)"
            " VALUES (3, '0', 'half-made', 4, 50, x'', 'creating')"
        )
        db.execute("UPDATE keys SET state = 'destroying' WHERE key_name = 'being-destroyed'")
    destroyed_id = next(
        k for _, name, k, _ in kim_rows(kim_db(tmp_path)) if name == "being-destroyed"
    )

    parsec = start_parsec_service(tmp_path, rse.socket_path)
    try:
        assert [k.name for k in client.list_keys()] == ["kept"]
        assert "2 interrupted key operations settled" in (tmp_path / "parsec.log").read_text()
        with RseClient(rse.socket_path, client_id=RSE_CLIENT_ID) as rse_client:
            for key_id in (50, destroyed_id):
                with pytest.raises(PsaError) as caught:
                    rse_client.get_key_attributes(key_id)
                assert caught.value.status == Status.INVALID_HANDLE
        client.import_key("half-made", ATTRS, point)  # the name is free again
    finally:
        parsec.stop()
    assert [(name, state) for _, name, _, state in kim_rows(kim_db(tmp_path))] == [
        ("kept", "active"),
        ("half-made", "active"),
    ]


_SEND_AS_OTHER_USER = """
import socket, sys
for request in sys.argv[2:]:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(sys.argv[1]); s.sendall(bytes.fromhex(request)); s.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    print(reply.hex())
"""


def test_unix_peer_credentials_separate_real_users(tmp_path: Path, rse: Service) -> None:
    """A process of uid 1000 sees none of root's keys and cannot claim to be root."""
    if os.geteuid() != 0 or not Path("/usr/bin/python3").exists():
        pytest.skip("needs root (to switch uid) and /usr/bin/python3")
    shared = Path(tempfile.mkdtemp(prefix="parsec-uid-test-"))  # reachable by uid 1000
    os.chmod(shared, 0o755)
    parsec = start_parsec_service(shared, rse.socket_path)
    point = ec_point(ec.generate_private_key(ec.SECP256R1()))
    try:
        ParsecClient(parsec.socket_path).import_key("mine", ATTRS, point)
        export = pb.psa_export_public_key.Operation(key_name="mine").SerializeToString()
        requests = [
            encode_request(Header(opcode=Opcode.LIST_KEYS, auth_type=3), b"", Auth.peer(1000).data),
            encode_request(
                Header(provider=4, opcode=Opcode.PSA_EXPORT_PUBLIC_KEY, auth_type=3),
                export,
                Auth.peer(1000).data,
            ),
            encode_request(
                Header(provider=4, opcode=Opcode.PSA_EXPORT_PUBLIC_KEY, auth_type=3),
                export,
                Auth.peer(0).data,
            ),
        ]
        result = subprocess.run(
            ["/usr/bin/python3", "-I", "-c", _SEND_AS_OTHER_USER, str(parsec.socket_path)]
            + [r.hex() for r in requests],
            capture_output=True,
            text=True,
            timeout=60,
            user=1000,
            group=1000,
        )
        assert result.returncode == 0, result.stderr
        replies = [bytes.fromhex(line) for line in result.stdout.split()]
        statuses = [Header.decode(r[: HEADER.size]).status for r in replies]
        assert statuses == [
            ResponseStatus.SUCCESS,  # uid 1000 lists its keys: none
            ResponseStatus.PSA_ERROR_DOES_NOT_EXIST,  # root's key is not uid 1000's
            ResponseStatus.AUTHENTICATION_ERROR,  # claiming uid 0 from uid 1000
        ]
        assert replies[0][HEADER.size :] == b"", "an empty key list"
        assert [k.name for k in ParsecClient(parsec.socket_path).list_keys()] == ["mine"]
    finally:
        parsec.stop()
        shutil.rmtree(shared, ignore_errors=True)


def test_a_dead_rse_at_start_is_tolerated(tmp_path: Path) -> None:
    parsec = start_parsec_service(tmp_path, tmp_path / "no-rse.sock")
    try:
        client = ParsecClient(parsec.socket_path)
        assert client.ping() == (1, 0)
        with pytest.raises(ParsecError) as caught:
            client.generate_random(4)
        assert caught.value.status == ResponseStatus.PSA_ERROR_COMMUNICATION_FAILURE
    finally:
        assert parsec.stop() == 0


def _tool(socket_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PARSEC_SERVICE_ENDPOINT"] = f"unix:{socket_path}"
    return subprocess.run(
        python_command("parsec", *args), env=env, capture_output=True, text=True, timeout=60
    )


def test_the_cli_speaks_like_parsec_tool(tmp_path: Path, rse: Service) -> None:
    parsec = start_parsec_service(tmp_path, rse.socket_path)
    try:
        assert _tool(parsec.socket_path, "ping").stdout == "1.0\n"
        providers = _tool(parsec.socket_path, "list-providers").stdout
        assert providers.startswith("ID: 0x04 (Trusted Service provider)\nDescription: ")
        assert "UUID: 71129441-508a-4da6-b6e8-7b98a777e4c0\n\nID: 0x00 (Core provider)" in providers
        assert _tool(parsec.socket_path, "create-ecc-key", "-k", "tool-key").returncode == 0
        assert _tool(parsec.socket_path, "create-rsa-key", "-s", "-k", "tool-rsa").returncode == 0
        keys = _tool(parsec.socket_path, "list-keys").stdout
        assert "* tool-key (Trusted Service provider, ECC_KEY_PAIR(SECP_R1), 256 bits, " in keys
        assert "permitted algorithm: RSA_PKCS1V15_SIGN(SHA_256)" in keys
        pem = _tool(parsec.socket_path, "export-public-key", "-k", "tool-key").stdout
        public = serialization.load_pem_public_key(pem.encode())
        signed = _tool(parsec.socket_path, "sign", "-k", "tool-key", "hello").stdout
        assert isinstance(public, ec.EllipticCurvePublicKey)
        public.verify(base64.b64decode(signed), b"hello", ec.ECDSA(hashes.SHA256()))
        assert (
            len(
                bytes.fromhex(
                    _tool(parsec.socket_path, "generate-random", "--nb-bytes", "12").stdout
                )
            )
            == 12
        )
        assert _tool(parsec.socket_path, "list-clients").stdout == "* 0\n"
        assert _tool(parsec.socket_path, "delete-key", "-k", "tool-key").returncode == 0
        missing = _tool(parsec.socket_path, "delete-key", "-k", "tool-key")
        assert missing.returncode == 1 and "PsaErrorDoesNotExist" in missing.stderr
        opcodes = _tool(parsec.socket_path, "list-opcodes").stdout.split()
        assert "PsaVerifyHash" in opcodes and "PsaImportKey" in opcodes
        dead = _tool(tmp_path / "nothing.sock", "ping")
        assert dead.returncode == 1 and "ConnectionError" in dead.stderr
    finally:
        parsec.stop()


def test_a_hung_rse_costs_a_bounded_wait_not_a_hang(tmp_path: Path, rse: Service) -> None:
    parsec = start_parsec_service(tmp_path, rse.socket_path)
    try:
        point = ec_point(ec.generate_private_key(ec.SECP256R1()))
        client = ParsecClient(parsec.socket_path)
        client.import_key("k", ATTRS, point)
        os.kill(rse.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(ParsecError) as caught:
                client.export_public_key("k")
            assert caught.value.status == ResponseStatus.PSA_ERROR_COMMUNICATION_FAILURE
            assert time.monotonic() - started < 6
            assert client.ping() == (1, 0)
        finally:
            os.kill(rse.pid, signal.SIGCONT)
        assert client.export_public_key("k") == point
    finally:
        parsec.stop()
