"""Handshakes side by side: several ssl_client1 processes, each with its own ssl_server in its
own network namespace, all through one Parsec service and one RSE model at the same time."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from parsec_demo_evidence import LogWindow, event_calls

from parsec_demo.demo.host import TlsDemo
from parsec_demo.demo.results import ClientRun
from parsec_demo.native_build import HostBuild
from parsec_demo.netns import NetworkNamespace
from parsec_service.client import ParsecClient
from support.handshake_checks import assert_handshake_ok
from support.parsec_load import SYSTEM_PYTHON, start_trickle_attack

CIPHER_SUITE = "TLS-ECDHE-RSA-WITH-CHACHA20-POLY1305-SHA256"


@pytest.fixture
def demos(tmp_path: Path, host_build: HostBuild) -> Iterator[list[TlsDemo]]:
    if not NetworkNamespace.available():
        pytest.skip("each server needs its own network namespace (root, unshare, nsenter, ip)")
    with ExitStack() as stack:
        first = stack.enter_context(TlsDemo(tmp_path, host_build))
        others = [
            stack.enter_context(TlsDemo(tmp_path / f"server-{n}", host_build, services_of=first))
            for n in range(1, 4)
        ]
        yield [first, *others]


def _run_together(demos: list[TlsDemo], rounds: int) -> list[ClientRun]:
    runs: list[ClientRun] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(demos))

    def client(demo: TlsDemo) -> None:
        for _ in range(rounds):
            barrier.wait(timeout=60)
            run = demo.run_client(timeout=60)
            with lock:
                runs.append(run)

    threads = [threading.Thread(target=client, args=(demo,)) for demo in demos]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return runs


def test_concurrent_handshakes_all_succeed_with_their_rse_evidence(
    demos: list[TlsDemo],
) -> None:
    first = demos[0]
    with LogWindow(first.rse_files.events_log) as rse:
        runs = _run_together(demos, rounds=3)
    assert len(runs) == 12
    for run in runs:
        assert_handshake_ok(run, CIPHER_SUITE)
        assert "parsec-se-driver:" not in run.output
    events = event_calls(rse.text)
    # Every key the clients imported was used for one successful verification and destroyed,
    # in that order, whatever the interleaving: two signatures per handshake.
    by_key: dict[int, list[str]] = defaultdict(list)
    for event in events:
        assert event.status == "PSA_SUCCESS", event
        by_key[event.key_id].append(event.function)
    assert len(by_key) == 2 * len(runs), "each signature got a key of its own"
    assert all(
        calls == ["psa_import_key", "psa_verify_hash", "psa_destroy_key"]
        for calls in by_key.values()
    ), by_key
    assert first.parsec is not None
    assert ParsecClient(first.parsec.socket_path).list_keys() == []
    assert list((first.run_dir / "rse-store").glob("key-*.json")) == [], "no key left behind"
    log = (first.run_dir / "parsec.log").read_text()
    assert "Traceback" not in log and "ERROR" not in log, log[-3000:]
    assert os.path.getsize(first.rse_files.events_log) > 0


def test_handshakes_go_through_while_another_user_attacks_the_service(
    host_build: HostBuild,
) -> None:
    """Uid 1000 holds as many connections as it may, trickling bytes; root's handshakes meanwhile
    succeed, none slower than a second more than without the attack."""
    if os.geteuid() != 0 or not SYSTEM_PYTHON.exists():
        pytest.skip("needs root (to attack as another uid) and /usr/bin/python3")
    run_dir = Path(tempfile.mkdtemp(prefix="parsec-attack-"))
    os.chmod(run_dir, 0o755)  # the attacker must reach the service's socket
    try:
        with TlsDemo(run_dir, host_build) as demo:
            assert demo.parsec is not None
            quiet = [demo.run_client(timeout=60) for _ in range(2)]
            attacker = start_trickle_attack(demo.parsec.socket_path, run_dir, 1000, seconds=6)
            try:
                started = time.monotonic()
                attacked = []
                while time.monotonic() - started < 4:
                    attacked.append(demo.run_client(timeout=60))
                attacker_out, _ = attacker.communicate(timeout=30)
            finally:
                attacker.kill()
                attacker.wait()
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    for run in quiet + attacked:
        assert_handshake_ok(run, CIPHER_SUITE)
    slowest_quiet = max(run.seconds for run in quiet)
    assert max(run.seconds for run in attacked) < slowest_quiet + 1.0
    silent, answered = (int(v) for v in attacker_out.split())
    assert silent > 0 and answered > 0, "the attack met the per-peer limit and the deadline"
