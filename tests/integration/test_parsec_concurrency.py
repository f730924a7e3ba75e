"""The Parsec service under overlapping clients: many threads, processes and users at once,
crashes in the middle, slow and hostile local users, quotas, and operational faults.

After every load the key info database and the RSE's store are compared: no acknowledged key
lost, no orphan, nothing extra.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from parsec_demo.services import (
    Service,
    parsec_config_text,
    start_parsec_service,
    start_rse_model,
)
from parsec_service.client import SHA_256, Auth, ParsecClient, ParsecError, sign_alg
from parsec_service.constants import Opcode, ResponseStatus
from parsec_service.wire import HEADER, Header, encode_request
from support.parsec_load import (
    DIGEST,
    ECDSA_P256,
    SYSTEM_PYTHON,
    Sender,
    Signer,
    assert_stores_agree,
    destroy_request,
    import_request,
    kim_db,
    kim_rows,
    run_senders,
    start_trickle_attack,
    verify_request,
)
from support.tmpfs import tmpfs
from support.toolkit_cli import python_command

OK = ResponseStatus.SUCCESS
EXISTS = ResponseStatus.PSA_ERROR_ALREADY_EXISTS
GONE = ResponseStatus.PSA_ERROR_DOES_NOT_EXIST
FULL = ResponseStatus.PSA_ERROR_INSUFFICIENT_STORAGE
#: These loads keep more keys per application than the default quota allows.
LOAD_CONFIG = parsec_config_text(extra_core="max_keys_per_application = 1000")


def needs_other_users() -> None:
    if os.geteuid() != 0 or not SYSTEM_PYTHON.exists():
        pytest.skip("needs root (to run clients as other uids) and /usr/bin/python3")


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A run directory that processes of other uids can reach (tmp_path is root's only)."""
    path = Path(tempfile.mkdtemp(prefix="parsec-concurrency-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def rse(shared_dir: Path) -> Iterator[Service]:
    service = start_rse_model(shared_dir)
    yield service
    service.stop()


def rse_store(rse: Service) -> Path:
    return rse.socket_path.parent / "rse-store"


def test_overlapping_threads_of_one_application_lose_no_key(shared_dir: Path, rse: Service) -> None:
    """8 threads create, use and destroy keys at once, and fight over shared names."""
    parsec = start_parsec_service(shared_dir, rse.socket_path, LOAD_CONFIG)
    signer = Signer.make()
    alg = sign_alg("ecdsa", SHA_256)
    created: list[set[str]] = [set() for _ in range(8)]
    destroyed: list[set[str]] = [set() for _ in range(8)]
    contested: dict[str, list[int]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(index: int) -> None:
        client = ParsecClient(parsec.socket_path, auth=Auth.peer(), timeout=20)
        try:
            barrier.wait()
            for n in range(24):
                name = f"t{index}-k{n}"
                client.import_key(name, ECDSA_P256, signer.point)
                created[index].add(name)
                client.verify_hash(name, alg, DIGEST, signer.signature)
                if n % 2:
                    client.destroy_key(name)
                    destroyed[index].add(name)
                shared = f"contested-{n % 6}"
                try:
                    client.import_key(shared, ECDSA_P256, signer.point)
                    contested.setdefault(shared, []).append(index)
                except ParsecError as exc:
                    assert exc.status == EXISTS, exc
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    try:
        assert not errors, errors
        assert all(len(winners) == 1 for winners in contested.values()), contested
        expected = set().union(*created) - set().union(*destroyed) | set(contested)
        client = ParsecClient(parsec.socket_path, auth=Auth.peer())
        assert {k.name for k in client.list_keys()} == expected
        # Everybody destroys the contested names at once: one destruction each.
        outcomes: list[int] = []

        def destroy_all() -> None:
            for name in sorted(contested):
                try:
                    ParsecClient(parsec.socket_path, auth=Auth.peer()).destroy_key(name)
                    outcomes.append(OK)
                except ParsecError as exc:
                    outcomes.append(exc.status)

        racers = [threading.Thread(target=destroy_all) for _ in range(6)]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join(timeout=60)
        assert outcomes.count(OK) == len(contested)
        assert set(outcomes) == {OK, GONE}
    finally:
        parsec.stop()
    rows = assert_stores_agree(kim_db(shared_dir), shared_dir / "rse-store")
    assert {name for _, name, _, _ in rows} == expected - set(contested)


def _workload(uid: int, tag: str, signers: list[Signer], keys: int) -> list[bytes]:
    """Import, verify, and every third key destroy, for one process."""
    auth = Auth.peer(uid)
    requests = []
    for n in range(keys):
        name = f"{tag}-{n}"
        requests.append(import_request(name, signers[n % len(signers)], auth))
        requests.append(verify_request(name, signers[n % len(signers)], auth))
        if n % 3 == 0:
            requests.append(destroy_request(name, auth))
    return requests


def _expected_names(tag: str, keys: int) -> set[str]:
    return {f"{tag}-{n}" for n in range(keys) if n % 3}


def test_processes_of_several_users_at_once(shared_dir: Path, rse: Service) -> None:
    needs_other_users()
    parsec = start_parsec_service(shared_dir, rse.socket_path, LOAD_CONFIG)
    signers = [Signer.make() for _ in range(3)]
    plan = [(uid, f"p{i}") for i, uid in enumerate((0, 0, 1000, 1000, 1001, 1001))]
    senders = [Sender(uid, _workload(uid, tag, signers, 30)) for uid, tag in plan]
    try:
        results = run_senders(parsec.socket_path, shared_dir / "load", senders)
        # Another user's key of the same name is not this user's: 1001 cannot destroy 1000's.
        (intruder,) = run_senders(
            parsec.socket_path,
            shared_dir / "intruder",
            [Sender(1001, [destroy_request("p2-1", Auth.peer(1001))])],
        )
    finally:
        parsec.stop()
    for (uid, tag), outcome in zip(plan, results, strict=True):
        assert [status for status, _ in outcome] == [OK] * len(outcome), (uid, tag, outcome)
    assert intruder == [(GONE, intruder[0][1])]
    rows = assert_stores_agree(kim_db(shared_dir), shared_dir / "rse-store")
    for uid in (0, 1000, 1001):
        tags = [tag for u, tag in plan if u == uid]
        held = {name for app, name, _, _ in rows if app == str(uid)}
        assert held == set().union(*(_expected_names(tag, 30) for tag in tags)), uid


@pytest.mark.slow
def test_sigkill_of_the_service_and_the_rse_in_the_middle(shared_dir: Path) -> None:
    """Kill -9 the service twice and the RSE model once while four processes work: every
    acknowledged key is there after, every acknowledged destruction stays done, nothing
    orphaned."""
    needs_other_users()
    rse = start_rse_model(shared_dir)
    parsec = start_parsec_service(shared_dir, rse.socket_path, LOAD_CONFIG)
    signers = [Signer.make() for _ in range(2)]
    plan = [(uid, f"k{i}") for i, uid in enumerate((0, 1000, 1001, 1000))]
    senders = [Sender(uid, _workload(uid, tag, signers, 60)) for uid, tag in plan]
    rng = random.Random(7)
    outcomes: list[list[tuple[int, float]]] = []
    load = threading.Thread(
        target=lambda: outcomes.extend(
            run_senders(parsec.socket_path, shared_dir / "load", senders, timeout=300)
        )
    )
    load.start()
    try:
        for victim in ("parsec", "rse", "parsec"):
            time.sleep(rng.uniform(0.3, 0.8))
            if victim == "parsec":
                parsec.kill()
                parsec = start_parsec_service(shared_dir, rse.socket_path, LOAD_CONFIG)
            else:
                rse.process.send_signal(signal.SIGKILL)
                rse.process.wait()
                rse = start_rse_model(shared_dir)
        load.join(timeout=300)
        assert not load.is_alive()
        parsec.stop()  # a clean restart settles whatever is left
        parsec = start_parsec_service(shared_dir, rse.socket_path, LOAD_CONFIG)
    finally:
        parsec.stop()
        rse.stop()
    rows = assert_stores_agree(kim_db(shared_dir), shared_dir / "rse-store")
    present = {(app, name) for app, name, _, _ in rows}
    failures = 0
    for (uid, _tag), sender, outcome in zip(plan, senders, outcomes, strict=True):
        imported: dict[str, int] = {}
        destroyed: dict[str, int] = {}
        for request, (status, _) in zip(sender.requests, outcome, strict=True):
            opcode = Header.decode(request[: HEADER.size]).opcode
            if opcode == Opcode.PSA_IMPORT_KEY:
                imported[_key_name(request)] = status
            elif opcode == Opcode.PSA_DESTROY_KEY:
                destroyed[_key_name(request)] = status
            failures += status != OK
        for name, status in imported.items():
            if status == OK and name not in destroyed:
                assert (str(uid), name) in present, f"acknowledged key {name} of {uid} lost"
            if destroyed.get(name) == OK:
                assert (str(uid), name) not in present, f"destroyed key {name} of {uid} is back"
    assert failures > 0, "the kills hit no request: the test proved nothing"


def _key_name(request: bytes) -> str:
    header = Header.decode(request[: HEADER.size])
    body = request[HEADER.size : HEADER.size + header.body_len]
    # key_name is field 1 (length-delimited) in every operation used here.
    assert body[0] == 0x0A
    return body[2 : 2 + body[1]].decode()


def test_slow_clients_of_another_user_do_not_delay_the_others(
    shared_dir: Path, rse: Service
) -> None:
    """Uid 1000 opens 96 connections that each trickle a byte every 150 ms; root's requests
    meanwhile are answered well within a second, and its key operations succeed."""
    needs_other_users()
    parsec = start_parsec_service(shared_dir, rse.socket_path, LOAD_CONFIG)
    attacker: subprocess.Popen[str] | None = None
    try:
        attacker = start_trickle_attack(parsec.socket_path, shared_dir, uid=1000, seconds=4)
        client = ParsecClient(parsec.socket_path, auth=Auth.peer(), timeout=10)
        signer = Signer.make()
        latencies = []
        for n in range(20):
            started = time.monotonic()
            assert client.ping() == (1, 0)
            client.import_key(f"during-attack-{n}", ECDSA_P256, signer.point)
            client.verify_hash(
                f"during-attack-{n}", sign_alg("ecdsa", SHA_256), DIGEST, signer.signature
            )
            client.destroy_key(f"during-attack-{n}")
            latencies.append(time.monotonic() - started)
            time.sleep(0.1)
        attacker_out, _ = attacker.communicate(timeout=30)
    finally:
        if attacker is not None:
            attacker.kill()
            attacker.wait()
        parsec.stop()
    assert max(latencies) < 1.0, latencies
    silent, answered = (int(v) for v in attacker_out.split())
    assert answered > 0, "the request deadline cut the attack's connections off"
    assert silent > 0, "the per-peer connection limit turned some of them away"
    log = (shared_dir / "parsec.log").read_text()
    assert "refusing connections from uid 1000" in log
    assert "max_connections_per_peer" in log


def test_a_request_must_arrive_whole_within_the_listener_timeout(
    tmp_path: Path, rse: Service
) -> None:
    """A client that trickles its request gets ConnectionError after ``timeout`` (200 ms) for
    the whole request, not after 200 ms of silence per byte."""
    parsec = start_parsec_service(tmp_path, rse.socket_path)
    try:
        ping = encode_request(Header(opcode=1), b"", b"")
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(parsec.socket_path))
            started = time.monotonic()
            sock.settimeout(0.1)
            reply = b""
            for byte in ping:
                try:
                    sock.send(bytes([byte]))
                    reply = sock.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if reply:
                    break
            elapsed = time.monotonic() - started
        assert Header.decode(reply[: HEADER.size]).status == ResponseStatus.CONNECTION_ERROR
        assert 0.15 < elapsed < 1.0, elapsed
        assert ParsecClient(parsec.socket_path).ping() == (1, 0)
    finally:
        parsec.stop()


def test_per_application_quota(tmp_path: Path, rse: Service) -> None:
    """Overlapping creations cannot pass the quota together; another application is not
    affected; a destruction frees a place."""
    config = parsec_config_text(extra_core="max_keys_per_application = 5")
    parsec = start_parsec_service(tmp_path, rse.socket_path, config_text=config)
    signer = Signer.make()
    statuses: list[int] = []

    def create(index: int) -> None:
        client = ParsecClient(parsec.socket_path, auth=Auth.peer())
        for n in range(3):
            try:
                client.import_key(f"q{index}-{n}", ECDSA_P256, signer.point)
                statuses.append(OK)
            except ParsecError as exc:
                statuses.append(exc.status)

    try:
        threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert statuses.count(OK) == 5 and statuses.count(FULL) == 19, statuses
        client = ParsecClient(parsec.socket_path, auth=Auth.peer())
        names = sorted(k.name for k in client.list_keys())
        assert len(names) == 5
        client.destroy_key(names[0])
        client.import_key("after-a-destroy", ECDSA_P256, signer.point)
        log = (tmp_path / "parsec.log").read_text()
        assert "application '0' has its quota of 5 keys" in log
        assert "max_keys_per_application" in log
    finally:
        parsec.stop()


def test_the_key_info_database_is_the_service_users_alone(tmp_path: Path, rse: Service) -> None:
    """A directory the service makes is 0700; one it is given is never changed, only checked:
    another user's, or one others may write to (``/tmp``), is refused with one line."""
    made = tmp_path / "made" / "store"
    given = tmp_path / "given"
    given.mkdir(mode=0o755)
    for store in (made, given):
        config = parsec_config_text().replace(
            'manager_type = "SQLite"',
            f'manager_type = "SQLite"\nsqlite_db_path = "{store}/kim.sqlite3"',
        )
        parsec = start_parsec_service(tmp_path, rse.socket_path, config)
        try:
            ParsecClient(parsec.socket_path).import_key("k", ECDSA_P256, Signer.make().point)
        finally:
            parsec.stop()
        for path in store.glob("kim.sqlite3*"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    assert stat.S_IMODE(given.stat().st_mode) == 0o755, "a directory it did not make is kept"

    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # as /tmp
    config_path = tmp_path / "refused.toml"
    config_path.write_text(parsec_config_text())
    result = subprocess.run(
        python_command(
            "parsec",
            "serve",
            "--socket",
            str(tmp_path / "refused.sock"),
            "--rse",
            str(rse.socket_path),
            "--store",
            str(shared),
            "--config",
            str(config_path),
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr == (
        f"parsec-demo parsec serve: key info directory {shared} is writable by others "
        "(mode 1777): give the service a directory of its own\n"
    )
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert list(shared.iterdir()) == []


def test_reload_refuses_to_drop_allow_root_while_root(tmp_path: Path, rse: Service) -> None:
    if os.geteuid() != 0:
        pytest.skip("runs the service as root")
    parsec = start_parsec_service(tmp_path, rse.socket_path)
    config = tmp_path / "parsec-config.toml"
    try:
        config.write_text(config.read_text().replace("allow_root = true", "allow_root = false"))
        parsec.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        log = tmp_path / "parsec.log"
        while "configuration not reloaded" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        assert "allow_root = false and the service runs as root" in log.read_text()
        assert ParsecClient(parsec.socket_path).ping() == (1, 0)
    finally:
        parsec.stop()


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "tiny", "256k") as mount_point:
        yield mount_point


def test_a_full_disk_under_the_key_info_database(
    tmp_path: Path, rse: Service, tiny_tmpfs: Path
) -> None:
    """Creations answer InsufficientStorage with a log line; keys already there still work;
    room made again, creations work again. Nothing is orphaned in the RSE."""
    db_path = tiny_tmpfs / "kim.sqlite3"
    config = parsec_config_text().replace(
        'manager_type = "SQLite"', f'manager_type = "SQLite"\nsqlite_db_path = "{db_path}"'
    )
    parsec = start_parsec_service(tmp_path, rse.socket_path, config_text=config)
    signer = Signer.make()
    alg = sign_alg("ecdsa", SHA_256)
    client = ParsecClient(parsec.socket_path, auth=Auth.peer(), timeout=10)
    try:
        client.import_key("before", ECDSA_P256, signer.point)
        filler = tiny_tmpfs / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass  # the disk is full
        finally:
            os.close(fd)
        failures = []
        for n in range(40):
            try:
                client.import_key(f"while-full-{n}", ECDSA_P256, signer.point)
            except ParsecError as exc:
                failures.append(exc.status)
        assert failures and set(failures) <= {FULL, ResponseStatus.PSA_ERROR_STORAGE_FAILURE}
        assert FULL in failures
        client.verify_hash("before", alg, DIGEST, signer.signature)  # still served
        assert "before" in {k.name for k in client.list_keys()}
        filler.unlink()
        client.import_key("after", ECDSA_P256, signer.point)
        client.destroy_key("after")
    finally:
        parsec.stop()
    assert "key info database" in (tmp_path / "parsec.log").read_text()
    assert_stores_agree(db_path, rse_store(rse))
    assert "before" in {name for _, name, _, _ in kim_rows(db_path)}


def test_an_orphaned_rse_key_does_not_block_creations(tmp_path: Path, rse: Service) -> None:
    """An RSE key the key info database does not know (its database was reset) holds the id
    the next creation gets: the orphan is destroyed and the creation succeeds."""
    parsec = start_parsec_service(tmp_path, rse.socket_path)
    signer = Signer.make()
    client = ParsecClient(parsec.socket_path, auth=Auth.peer())
    try:
        client.import_key("first", ECDSA_P256, signer.point)
    finally:
        parsec.stop()
    for path in (tmp_path / "parsec-store").glob("kim.sqlite3*"):
        path.unlink()  # the database is lost; the RSE key of "first" is now an orphan
    parsec = start_parsec_service(tmp_path, rse.socket_path)
    try:
        for n in range(3):
            client.import_key(f"again-{n}", ECDSA_P256, signer.point)
    finally:
        parsec.stop()
    assert "has no key info (an orphan); destroying it" in (tmp_path / "parsec.log").read_text()
    assert_stores_agree(kim_db(tmp_path), rse_store(rse))


def test_a_regular_file_at_the_socket_path_is_never_removed(tmp_path: Path) -> None:
    from parsec_service.unix_socket import listen_unix

    path = tmp_path / "parsec.sock"
    path.write_text("precious")
    with pytest.raises(RuntimeError, match="exists and is not a socket"):
        listen_unix(path, "service", 4)
    assert path.read_text() == "precious"
