"""The secure side among hostile neighbours: clients that die mid-operation, other processes of
the same application, and whatever they leave behind.

Each test is an attack that succeeded before the service defended against it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from parsec_demo_evidence import LogWindow, event_calls

from parsec_demo.demo.host import TlsDemo
from parsec_demo.demo.results import ClientRun
from parsec_demo.native_build import HostBuild
from parsec_demo.services import parsec_config_text
from parsec_service import contracts as pb
from parsec_service.client import SHA_256, Auth, ParsecClient, ParsecError, key_attributes, sign_alg
from parsec_service.constants import Opcode, ResponseStatus
from support.handshake_checks import assert_handshake_ok
from support.parsec_load import (
    ECDSA_P256,
    SYSTEM_PYTHON,
    Sender,
    Signer,
    crypto_request,
    flood_statuses,
    import_request,
    kim_db,
    kim_rows,
    run_senders,
    start_flood,
    start_idle_connections,
)
from support.pki import make_pki

CIPHER_SUITE = "TLS-ECDHE-RSA-WITH-CHACHA20-POLY1305-SHA256"
#: A small quota, so that a few leaked keys would lock the application out.
QUOTA = 8


def _signal_at_an_import(
    demo: TlsDemo, argv: list[str], cwd: Path, signum: int, bits: int | None = None
) -> tuple[subprocess.Popen[bytes], int | None]:
    """Start ssl_client1 with ``argv`` and send it ``signum`` as soon as the RSE imported a key
    for it (of ``bits`` bits, if given). Returns the client (its output piped) and that key's
    RSE id; None, unsignalled, if the client ended first or 30 s passed."""
    with LogWindow(demo.rse_files.events_log) as rse:
        client = subprocess.Popen(
            demo.netns.command([str(demo.build.program("ssl_client1")), *argv]),
            env=demo.client_env(),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while client.poll() is None and time.monotonic() < deadline:
            # What the RSE logged since the window opened, so far.
            imported = [
                e.key_id
                for e in event_calls(rse.close())
                if e.function == "psa_import_key" and bits in (None, e.bits)
            ]
            if imported:
                client.send_signal(signum)
                return client, imported[0]
            time.sleep(0.0002)
    return client, None


def _kill_when_a_key_is_imported(demo: TlsDemo, workdir: Path) -> bool:
    """Start ssl_client1 and SIGKILL it as soon as the RSE imported a key for it; True if the
    kill came before the client finished (mid-handshake)."""
    client, key_id = _signal_at_an_import(demo, ["127.0.0.1"], workdir, signal.SIGKILL)
    client.kill()
    client.communicate()
    return key_id is not None


def test_clients_killed_mid_handshake_leave_nothing_behind(
    tmp_path: Path, host_build: HostBuild
) -> None:
    """100 clients SIGKILLed as their handshake began (a temporary key in Parsec and the RSE):
    the next handshake of the same uid passes, the dead clients' keys are reclaimed, and a
    persistent key of the same application is never touched."""
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "parsec-config.toml").write_text(
        parsec_config_text(
            extra_core=f"max_keys_per_application = {QUOTA}\ntemporary_key_check_interval = 1"
        )
    )
    with TlsDemo(tmp_path, host_build) as demo:
        assert demo.parsec is not None
        kept = ParsecClient(demo.parsec.socket_path)
        kept.import_key("kept", ECDSA_P256, Signer.make().point)
        killed_mid_handshake = 0
        for n in range(100):
            workdir = tmp_path / f"killed-{n}"
            workdir.mkdir()
            killed_mid_handshake += _kill_when_a_key_is_imported(demo, workdir)
        # Each kill follows an import: a key left behind. Where dead clients' keys lock their
        # application out, imports are refused after QUOTA kills and the clients end early.
        assert killed_mid_handshake >= 90, f"{killed_mid_handshake} of 100 died mid-handshake"

        run = demo.run_client(timeout=60)
        assert_handshake_ok(run, CIPHER_SUITE)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            rows = kim_rows(kim_db(tmp_path))
            if [name for _, name, _, _ in rows] == ["kept"]:
                break
            time.sleep(0.2)
        assert [(name, state) for _, name, _, state in rows] == [("kept", "active")]
        assert [key.name for key in kept.list_keys()] == ["kept"]
        log = (tmp_path / "parsec.log").read_text()
        assert log.count("reclaimed temporary key 'temporary/parsec-se-driver-key") >= 2 * QUOTA
    keys = list((tmp_path / "rse-store").glob("key-*.json"))
    assert len(keys) == 1, "only the persistent key is left in the RSE"


def test_another_process_of_the_application_cannot_touch_a_temporary_key(
    tmp_path: Path, host_build: HostBuild
) -> None:
    """A neighbour of the same uid that learns a temporary key's name can neither list, use,
    destroy nor replace it: the key belongs to the process that made it."""
    with TlsDemo(tmp_path, host_build) as demo:
        assert demo.parsec is not None
        socket_path = demo.parsec.socket_path
        signer = Signer.make()
        owner_script = (
            "import sys, time\n"
            "from parsec_service.client import ParsecClient\n"
            "from support.parsec_load import ECDSA_P256, Signer, DIGEST\n"
            "c = ParsecClient(sys.argv[1])\n"
            "c.import_key('temporary/victim', ECDSA_P256, bytes.fromhex(sys.argv[2]))\n"
            "print('imported', flush=True)\n"
            "sys.stdin.readline()\n"
            "print(len(c.list_keys()), flush=True)\n"
            "c.destroy_key('temporary/victim')\n"
            "print('destroyed', flush=True)\n"
        )
        tests_dir = Path(__file__).resolve().parents[1]
        owner = subprocess.Popen(
            [sys.executable, "-c", owner_script, str(socket_path), signer.point.hex()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(tests_dir)},
        )
        try:
            assert owner.stdout is not None and owner.stdin is not None
            assert owner.stdout.readline().strip() == "imported"
            neighbour = ParsecClient(socket_path)
            assert neighbour.list_keys() == [], "another process does not see it"
            for attempt in (
                lambda: neighbour.destroy_key("temporary/victim"),
                lambda: neighbour.export_public_key("temporary/victim"),
            ):
                with pytest.raises(ParsecError) as refused:
                    attempt()
                assert refused.value.status == ResponseStatus.PSA_ERROR_DOES_NOT_EXIST
            with pytest.raises(ParsecError) as taken:
                neighbour.import_key("temporary/victim", ECDSA_P256, Signer.make().point)
            assert taken.value.status == ResponseStatus.PSA_ERROR_ALREADY_EXISTS
            owner.stdin.write("\n")
            owner.stdin.flush()
            assert owner.stdout.readline().strip() == "1", "the owner sees its key"
            assert owner.stdout.readline().strip() == "destroyed"
        finally:
            owner.kill()
            owner.wait()


def test_a_client_refused_for_its_quota_says_so_before_mbed_tls_does(
    tmp_path: Path, host_build: HostBuild
) -> None:
    """An application at its quota: the handshake fails, and the client's first complaint is
    the service's refusal, not a certificate problem that is not there."""
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "parsec-config.toml").write_text(
        parsec_config_text(extra_core="max_keys_per_application = 2")
    )
    with TlsDemo(tmp_path, host_build) as demo:
        assert demo.parsec is not None
        owner = ParsecClient(demo.parsec.socket_path)
        for name in ("first", "second"):
            owner.import_key(name, ECDSA_P256, Signer.make().point)
        # Both streams in one, in the order a terminal shows them.
        run = demo.run_client(timeout=60, wrapper=["sh", "-c", 'exec "$0" "$@" 2>&1'])
    assert not run.ok
    refusals = re.findall(r"parsec-se-driver: .*", run.output)
    assert len(refusals) == 1, run.output
    assert re.fullmatch(
        r"parsec-se-driver: the Parsec service at \S+ refused PsaImportKey of "
        r"temporary/parsec-se-driver-key\d+: PsaErrorInsufficientStorage \(no room for another "
        r"key: the application's key quota or the RSE's capacity is used up\)",
        refusals[0],
    ), refusals[0]
    assert run.output.index("parsec-se-driver:") < run.output.index("Last error was"), run.output
    log = (tmp_path / "parsec.log").read_text()
    assert "application '0' has its quota of 2 keys" in log


def test_five_users_at_their_limits_leave_room_for_a_sixth(host_build: HostBuild) -> None:
    """Five uids each try to make 64 persistent keys (their quota) at once; the RSE holds 256.
    The admission rules keep the last keys for applications that hold few, so a sixth uid
    with no key of its own still completes its handshake."""
    if os.geteuid() != 0 or not SYSTEM_PYTHON.exists():
        pytest.skip("needs root (to run clients as other uids) and /usr/bin/python3")
    run_dir = Path(tempfile.mkdtemp(prefix="parsec-capacity-"))
    os.chmod(run_dir, 0o755)  # the other uids must reach the service's socket
    try:
        with TlsDemo(run_dir, host_build) as demo:
            assert demo.parsec is not None
            signer = Signer.make()
            uids = range(1000, 1005)
            senders = [
                Sender(uid, [import_request(f"k{n}", signer, Auth.peer(uid)) for n in range(64)])
                for uid in uids
            ]
            results = run_senders(demo.parsec.socket_path, run_dir / "load", senders)
            held = {
                uid: sum(s == ResponseStatus.SUCCESS for s, _ in r)
                for uid, r in zip(uids, results, strict=True)
            }
            refused = {
                uid: {s for s, _ in r} - {ResponseStatus.SUCCESS}
                for uid, r in zip(uids, results, strict=True)
            }
            assert sum(held.values()) == 256 - 32, held
            assert all(
                r <= {ResponseStatus.PSA_ERROR_INSUFFICIENT_STORAGE} for r in refused.values()
            )

            run = demo.run_client(timeout=60)  # uid 0: no key of its own
            assert_handshake_ok(run, CIPHER_SUITE)
        log = (run_dir / "parsec.log").read_text()
        assert "([core_settings] key_reserve): PsaErrorInsufficientStorage" in log
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def _generate_rsa_4096(uid: int) -> bytes:
    attributes = key_attributes(
        "rsa_key_pair", 4096, sign_alg("rsa_pkcs1v15_sign", SHA_256), sign_hash=True
    )
    operation = pb.psa_generate_key.Operation(key_name="flood-000000", attributes=attributes)
    return crypto_request(Opcode.PSA_GENERATE_KEY, operation, Auth.peer(uid))


def _random_megabyte(uid: int) -> bytes:
    operation = pb.psa_generate_random.Operation(size=1 << 20)
    return crypto_request(Opcode.PSA_GENERATE_RANDOM, operation, Auth.peer(uid))


def _shared_run_dir(prefix: str) -> Path:
    if os.geteuid() != 0 or not SYSTEM_PYTHON.exists():
        pytest.skip("needs root (to attack as other uids) and /usr/bin/python3")
    run_dir = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(run_dir, 0o755)  # the attackers must reach the service's socket
    return run_dir


def _serve_meanwhile(demo: TlsDemo, seconds: float) -> tuple[list[float], list[ClientRun]]:
    """Root's pings (their times) and handshakes during ``seconds``."""
    assert demo.parsec is not None
    pings: list[float] = []
    handshakes: list[ClientRun] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(10):
            started = time.monotonic()
            assert ParsecClient(demo.parsec.socket_path, timeout=10).ping() == (1, 0)
            pings.append(time.monotonic() - started)
            time.sleep(0.02)
        handshakes.append(demo.run_client(timeout=60))
    return pings, handshakes


@pytest.mark.parametrize("expensive", [_generate_rsa_4096, _random_megabyte])
def test_one_users_flood_of_expensive_requests_starves_no_one(
    expensive: Callable[[int], bytes], host_build: HostBuild
) -> None:
    """32 threads of uid 1000 asking for RSA-4096 keys, or a megabyte of random bytes each:
    root's pings stay under 100 ms (p99) and its handshakes pass. When the flooder hangs up,
    the keys it still had queued are not made."""
    run_dir = _shared_run_dir("parsec-flood-")
    try:
        with TlsDemo(run_dir, host_build) as demo:
            assert demo.parsec is not None
            flood = start_flood(
                demo.parsec.socket_path, run_dir, 1000, expensive(1000), threads=32, seconds=10
            )
            try:
                time.sleep(1)  # the flood is under way
                pings, handshakes = _serve_meanwhile(demo, seconds=6)
                statuses = flood_statuses(flood)
            finally:
                flood.kill()
                flood.wait()
        for run in handshakes:
            assert_handshake_ok(run, CIPHER_SUITE)
        pings.sort()
        p99 = pings[int(len(pings) * 0.99)]
        assert p99 < 0.1, f"p99 {p99 * 1000:.0f} ms of {len(pings)} pings; flood {statuses}"
        # More requests than threads: each thread asks again only once answered.
        assert sum(statuses.values()) > 32, f"the flood ran: {statuses}"
        if expensive is _generate_rsa_4096:
            # The keys still queued when the flooder hung up were never made.
            log = (run_dir / "parsec.log").read_text()
            assert "request of uid 1000 dropped: its client hung up" in log, statuses
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def test_many_users_holding_idle_connections_cannot_lock_a_new_one_out(
    host_build: HostBuild,
) -> None:
    """Eight uids keep 32 idle connections each (as many as one peer may hold; 256 in all is
    the listener's limit): root still gets its pings answered and its handshakes done."""
    run_dir = _shared_run_dir("parsec-idle-")
    attackers: list[subprocess.Popen[str]] = []
    try:
        with TlsDemo(run_dir, host_build) as demo:
            assert demo.parsec is not None
            for uid in range(1000, 1008):
                attackers.append(
                    start_idle_connections(demo.parsec.socket_path, run_dir, uid, 8, count=32)
                )
            pings, handshakes = _serve_meanwhile(demo, seconds=5)
            closed = [int(attacker.communicate(timeout=30)[0]) for attacker in attackers]
        for run in handshakes:
            assert_handshake_ok(run, CIPHER_SUITE)
        assert len(pings) >= 50
        log = (run_dir / "parsec.log").read_text()
        assert "([listener] connection_reserve)" in log, "the attack reached the reserve"
        assert all(count > 0 for count in closed), f"the service closed them: {closed}"
    finally:
        for attacker in attackers:
            attacker.kill()
            attacker.wait()
        shutil.rmtree(run_dir, ignore_errors=True)


def _active_row(database: Path, key_id: int) -> tuple[str, bytes] | None:
    """The name and attributes of the active key with RSE id ``key_id``, within 5 s."""
    deadline = time.monotonic() + 5
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        while time.monotonic() < deadline:
            row = db.execute(
                "SELECT key_name, attributes FROM keys WHERE key_id = ? AND state = 'active'",
                (key_id,),
            ).fetchone()
            if row is not None:
                return row[0], bytes(row[1])
            time.sleep(0.001)
    return None


def test_a_neighbour_swapping_the_ca_key_never_gets_a_rogue_server_accepted(
    tmp_path: Path, host_build: HostBuild
) -> None:
    """The server's chain is a rogue's, made with the same names as the CA the client trusts.
    Another process of the same application learns the name of the client's CA key (from the
    key info database itself, which root can read) and swaps it for the rogue root's public
    key while the client is descheduled between its import and its verification. In 200
    handshakes the client never accepts the server: it verifies with the key it imported."""
    real = make_pki(tmp_path / "real", "ecdsa")
    rogue = make_pki(tmp_path / "rogue", "ecdsa")
    rogue_root = x509.load_pem_x509_certificate(rogue.ca_file.read_bytes()).public_key()
    assert isinstance(rogue_root, ec.EllipticCurvePublicKey)
    rogue_point = rogue_root.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    outcomes: Counter[str] = Counter()
    with TlsDemo(tmp_path, host_build, "ssl_server2", rogue.server_args()) as demo:
        assert demo.parsec is not None
        attacker = ParsecClient(demo.parsec.socket_path, timeout=10)
        for _ in range(200):
            # Frozen right after its CA key's import: a loaded CPU's worst moment for it.
            argv = ["127.0.0.1", str(real.ca_file)]
            client, key_id = _signal_at_an_import(demo, argv, demo.run_dir, signal.SIGSTOP, 256)
            try:
                row = _active_row(kim_db(tmp_path), key_id) if key_id is not None else None
                if row is not None:
                    outcomes["frozen with its CA key imported"] += 1
                    name, blob = row
                    attributes = pb.psa_key_attributes.KeyAttributes()
                    attributes.ParseFromString(blob)
                    try:
                        attacker.destroy_key(name)
                        attacker.import_key(name, attributes, rogue_point)
                        outcomes["swapped"] += 1
                    except ParsecError as refused:
                        outcomes[refused.status.label] += 1
            finally:
                client.send_signal(signal.SIGCONT)
                output, _ = client.communicate(timeout=60)
            if client.returncode == 0:
                outcomes["rogue server accepted"] += 1
            else:
                assert b"Certificate verification failed" in output, output.decode()
    assert outcomes["rogue server accepted"] == 0, outcomes
    assert outcomes["swapped"] == 0, outcomes
    assert outcomes["frozen with its CA key imported"] >= 150, outcomes
