"""The RSE model as a real process: start-up, SIGTERM, kill -9, damaged and full stores."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from parsec_demo.paths import PROJECT_ROOT
from parsec_demo.services import Service, start_rse_model
from parsec_service import psa
from parsec_service.psa import PsaError, Status
from parsec_service.rse_link.client import RseClient, RseUnavailable
from parsec_service.rse_link.tfm_crypto import KeyAttributes
from support.keyhelpers import ec_point
from support.tmpfs import tmpfs
from support.toolkit_cli import python_command

ECDSA_SHA256 = psa.ecdsa(psa.ALG_SHA_256)


def persistent_point_attrs(key_id: int) -> KeyAttributes:
    return KeyAttributes(
        type=psa.KEY_TYPE_ECC_PUBLIC_KEY_SECP_R1,
        bits=256,
        lifetime=psa.LIFETIME_PERSISTENT,
        usage=psa.USAGE_VERIFY_HASH,
        alg=ECDSA_SHA256,
        id=key_id,
    )


@pytest.fixture
def model(tmp_path: Path) -> Iterator[Service]:
    service = start_rse_model(tmp_path)
    yield service
    service.stop()


def test_sigterm_stops_cleanly_even_with_a_client_connected(tmp_path: Path, model: Service) -> None:
    with RseClient(model.socket_path) as client:
        assert len(client.generate_random(8)) == 8
        started = time.monotonic()
        model.process.send_signal(signal.SIGTERM)
        assert model.process.wait(timeout=10) == 0
        assert time.monotonic() - started < 5
    assert not model.socket_path.exists(), "the socket file is removed on exit"
    console = (tmp_path / "rse-console.log").read_text().splitlines()
    assert console[-1] == "[RSE] Stopped: 0 volatile keys dropped"
    with pytest.raises(RseUnavailable):
        RseClient(model.socket_path).generate_random(1)


def test_a_second_model_refuses_a_socket_in_use(tmp_path: Path, model: Service) -> None:
    result = subprocess.run(
        python_command(
            "rse", "serve", "--socket", str(model.socket_path), "--store", str(tmp_path / "s2")
        ),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "is in use by another RSE model" in result.stderr
    assert model.alive()


def test_a_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "rse.sock"))
    stale.close()  # the file stays, nobody listens: what a crashed model leaves
    with start_rse_model(tmp_path) as service, RseClient(service.socket_path) as client:
        assert len(client.generate_random(4)) == 4


def test_cli_rejects_bad_arguments_clearly() -> None:
    result = subprocess.run(
        python_command(
            "rse", "serve", "--socket", "/tmp/x.sock", "--store", "/tmp/x", "--slots", "0"
        ),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "--slots: must be at least 1" in result.stderr


def _import_until_killed(
    socket_path: Path, acknowledged: list[int], point: bytes, first_id: int
) -> None:
    client = RseClient(socket_path, client_id=9, timeout=5)
    key_id = first_id
    try:
        while True:
            client.import_key(persistent_point_attrs(key_id), point)
            acknowledged.append(key_id)
            key_id += 1
    except PsaError:
        pass  # the model was killed
    finally:
        client.close()


@pytest.mark.slow
def test_acknowledged_persistent_keys_survive_kill_9(tmp_path: Path) -> None:
    """Kill -9 the model at random moments while keys are imported; no acknowledged key is lost."""
    point = ec_point(ec.generate_private_key(ec.SECP256R1()))
    rng = random.Random(1234)
    acknowledged: list[int] = []
    next_id = 1
    for _round in range(6):
        service = start_rse_model(tmp_path)
        worker = threading.Thread(
            target=_import_until_killed, args=(service.socket_path, acknowledged, point, next_id)
        )
        worker.start()
        time.sleep(rng.uniform(0.05, 0.4))
        service.kill()
        worker.join(timeout=10)
        assert not worker.is_alive()
        next_id = (acknowledged[-1] if acknowledged else next_id) + 2  # skip the one in flight
    assert len(acknowledged) > 20, "the loop should have imported keys before each kill"

    with (
        start_rse_model(tmp_path) as service,
        RseClient(service.socket_path, client_id=9) as client,
    ):
        for key_id in acknowledged:
            assert client.export_public_key(key_id) == point, f"acknowledged key {key_id} lost"
    store = tmp_path / "rse-store"
    assert not list(store.glob(".tmp-*")), "unfinished writes are cleaned up at start"
    console = (tmp_path / "rse-console.log").read_text()
    assert "Ignoring" not in console


def test_damaged_and_unfinished_key_files_are_never_loaded(tmp_path: Path) -> None:
    point = ec_point(ec.generate_private_key(ec.SECP256R1()))
    with (
        start_rse_model(tmp_path) as service,
        RseClient(service.socket_path, client_id=1) as client,
    ):
        for key_id in (1, 2, 3):
            client.import_key(persistent_point_attrs(key_id), point)
    store = tmp_path / "rse-store"
    truncated = store / "key-0001-00000002.json"
    truncated.write_bytes(truncated.read_bytes()[:40])
    tampered = store / "key-0001-00000003.json"
    text = tampered.read_text()
    assert '"bits": 256' in text
    tampered.write_text(text.replace('"bits": 256', '"bits": 384'))
    (store / ".tmp-key-0001-00000004.json").write_text('{"partial": ')

    with (
        start_rse_model(tmp_path) as service,
        RseClient(service.socket_path, client_id=1) as client,
    ):
        assert client.export_public_key(1) == point
        for key_id in (2, 3, 4):
            with pytest.raises(PsaError) as caught:
                client.export_public_key(key_id)
            assert caught.value.status == Status.INVALID_HANDLE
    console = (tmp_path / "rse-console.log").read_text()
    assert "[ITS] Ignoring damaged key file key-0001-00000002.json: not JSON" in console
    assert (
        "[ITS] Ignoring damaged key file key-0001-00000003.json: authentication failed "
        "(altered, or not made with this store's secret)"
    ) in console
    assert "Removing unfinished write .tmp-key-0001-00000004.json" in console
    assert not (store / ".tmp-key-0001-00000004.json").exists()


@pytest.fixture
def tiny_filesystem(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "tiny", "48k") as mount_point:
        yield mount_point


def test_a_really_full_disk_is_reported_and_loses_nothing(
    tmp_path: Path, tiny_filesystem: Path
) -> None:
    point = ec_point(ec.generate_private_key(ec.SECP256R1()))
    command = python_command(
        "rse",
        "serve",
        "--socket",
        str(tmp_path / "rse.sock"),
        "--store",
        str(tiny_filesystem / "store"),
        "--log",
        str(tmp_path / "rse-console.log"),
    )
    stored: list[int] = []
    with subprocess.Popen(command) as process:
        client = RseClient(tmp_path / "rse.sock", client_id=4)
        client.wait_ready()
        status = Status.SUCCESS
        for key_id in range(1, 500):
            try:
                client.import_key(persistent_point_attrs(key_id), point)
            except PsaError as exc:
                status = Status(exc.status)
                break
            stored.append(key_id)
        assert status == Status.INSUFFICIENT_STORAGE
        assert len(client.generate_random(4)) == 4, "the model keeps serving with a full disk"
        client.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    command[command.index("--socket") + 1] = str(tmp_path / "rse2.sock")
    with subprocess.Popen(command) as process:
        with RseClient(tmp_path / "rse2.sock", client_id=4) as client:
            client.wait_ready()
            for key_id in stored:
                assert client.export_public_key(key_id) == point
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    assert not list((tiny_filesystem / "store").glob(".tmp-*"))


def expect_status(status: Status, operation: Callable[[], object]) -> None:
    with pytest.raises(PsaError) as caught:
        operation()
    assert caught.value.status == status, f"got {psa.status_name(caught.value.status)}"


def store_names(store: Path) -> list[str]:
    return sorted(path.name for path in store.iterdir())


def test_a_key_file_copied_over_a_destroyed_id_is_not_loaded(tmp_path: Path) -> None:
    """Write access to the store is not enough to bring a destroyed key back."""
    point = ec_point(ec.generate_private_key(ec.SECP256R1()))
    with (
        start_rse_model(tmp_path) as service,
        RseClient(service.socket_path, client_id=1) as client,
    ):
        for key_id in (4, 5, 6):
            client.import_key(persistent_point_attrs(key_id), point)
        client.destroy_key(5)
        client.destroy_key(6)
    store = tmp_path / "rse-store"
    shutil.copy(store / "key-0001-00000004.json", store / "key-0001-00000005.json")
    # The attack on format 1: rewrite the id inside and recompute a plain SHA-256.
    record = json.loads((store / "key-0001-00000004.json").read_text())
    record["id"] = 6
    del record["hmac_sha256"]
    digest = hashlib.sha256(json.dumps(record, sort_keys=True, separators=(",", ":")).encode())
    record["hmac_sha256"] = record["sha256"] = digest.hexdigest()
    (store / "key-0001-00000006.json").write_text(json.dumps(record, sort_keys=True))

    with (
        start_rse_model(tmp_path) as service,
        RseClient(service.socket_path, client_id=1) as client,
    ):
        assert client.export_public_key(4) == point
        for key_id in (5, 6):
            with pytest.raises(PsaError) as caught:
                client.export_public_key(key_id)
            assert caught.value.status == Status.INVALID_HANDLE
    console = (tmp_path / "rse-console.log").read_text()
    assert (
        "[ITS] Ignoring key file key-0001-00000005.json: it holds key 0x00000004 of client "
        "0x0001, not the key its name says (a copied or renamed file)"
    ) in console
    assert (
        "[ITS] Ignoring damaged key file key-0001-00000006.json: authentication failed "
        "(altered, or not made with this store's secret)"
    ) in console
    ready = [line for line in console.splitlines() if "model ready" in line]
    assert "persistent_keys=1 " in ready[-1]


def serve_command(socket_path: Path, store: Path, *extra: str) -> list[str]:
    return python_command(
        "rse", "serve", "--socket", str(socket_path), "--store", str(store), *extra
    )


def serve_and_fail(socket_path: Path, store: Path) -> list[str]:
    """Start the model where it must refuse to start: exit status 1; its stderr lines."""
    result = subprocess.run(
        serve_command(socket_path, store),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1, result.stderr
    return result.stderr.splitlines()


def test_a_bad_store_secret_is_a_one_line_error_at_start(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / "store.key").write_bytes(b"short")
    assert serve_and_fail(tmp_path / "rse.sock", store) == [
        f"parsec-demo rse serve: the store secret {store / 'store.key'} is damaged "
        "(5 bytes, not 32); restore it, or move the store aside to start empty"
    ]
    assert not (tmp_path / "rse.sock").exists()


#: The model as its program starts (``serve_as_program``), stopped by a SIGTERM that arrives as
#: soon as its socket listens, before the loop has put its handlers in place: what a starter
#: that waits for the socket to accept and then stops it at once can do.
_STOPPED_AS_SOON_AS_IT_LISTENS = """
import os, signal, sys
from pathlib import Path
from parsec_rse_model.server import RseServer, ServerConfig
from parsec_service.daemon import serve_as_program
run = Path(sys.argv[1])

def make():
    server = RseServer(ServerConfig(run / "rse.sock", run / "store", run / "console.log"))
    os.kill(os.getpid(), signal.SIGTERM)
    return server

serve_as_program(make)
print("stopped cleanly")
"""


def test_a_stop_as_soon_as_the_socket_listens_is_a_clean_stop(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _STOPPED_AS_SOON_AS_IT_LISTENS, str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, f"status {result.returncode}: {result.stderr}"
    assert result.stdout.strip() == "stopped cleanly"
    assert "[RSE] Crypto service model ready:" in (tmp_path / "console.log").read_text()
    assert not (tmp_path / "rse.sock").exists()


def test_limits_reach_the_model_and_bad_ones_are_refused(tmp_path: Path) -> None:
    from parsec_demo.cli import build_parser
    from parsec_rse_model.server import ServerConfig

    args = build_parser().parse_args(["rse", "serve", "--socket", "s", "--store", "d"])
    defaults = ServerConfig(Path("s"), Path("d"))
    assert (args.slots, args.max_keys, args.max_connections, args.max_payload) == (
        defaults.slots,
        defaults.max_keys,
        defaults.max_connections,
        defaults.max_payload,
    )
    assert (defaults.max_keys, defaults.max_connections) == (256, 64)
    with start_rse_model(tmp_path, slots=8, max_keys=5, max_connections=7):
        pass
    console = (tmp_path / "rse-console.log").read_text()
    assert "slots=8 persistent_keys=0 max_keys=5 max_connections=7 socket=" in console
    for option in ("--max-keys", "--max-connections"):
        result = subprocess.run(
            serve_command(tmp_path / "x.sock", tmp_path / "x", option, "0"),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 2
        assert f"{option}: must be at least 1" in result.stderr


@pytest.fixture
def own_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs the test can remount read-only."""
    with tmpfs(tmp_path / "fs", "1m") as mount_point:
        yield mount_point


def remount(mount_point: Path, mode: str) -> None:
    subprocess.run(
        ["mount", "-o", f"remount,{mode}", str(mount_point)], check=True, capture_output=True
    )


def test_a_read_only_store_answers_storage_failure_and_loses_nothing(
    tmp_path: Path, own_tmpfs: Path
) -> None:
    point = ec_point(ec.generate_private_key(ec.SECP256R1()))
    store = own_tmpfs / "store"
    empty = own_tmpfs / "empty"
    empty.mkdir()
    console_log = tmp_path / "rse-console.log"
    command = serve_command(tmp_path / "rse.sock", store, "--log", str(console_log))
    with subprocess.Popen(command) as process:
        with RseClient(tmp_path / "rse.sock", client_id=4) as client:
            client.wait_ready()
            for key_id in (1, 2):
                client.import_key(persistent_point_attrs(key_id), point)
            remount(own_tmpfs, "ro")
            try:
                with pytest.raises(OSError) as probe:
                    (store / "probe").write_bytes(b"")
                assert probe.value.errno == errno.EROFS, "the store must really be read-only"
                failure = Status.STORAGE_FAILURE
                expect_status(failure, lambda: client.import_key(persistent_point_attrs(3), point))
                expect_status(failure, lambda: client.destroy_key(1))
                assert client.export_public_key(1) == point, "a key that stayed is usable"
                volatile = replace(persistent_point_attrs(0), lifetime=psa.LIFETIME_VOLATILE)
                client.destroy_key(client.import_key(volatile, point))
                assert store_names(store) == [
                    ".lock",
                    "key-0004-00000001.json",
                    "key-0004-00000002.json",
                    "store.key",
                ]
            finally:
                remount(own_tmpfs, "rw")
            client.destroy_key(1)
            client.import_key(persistent_point_attrs(3), point)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    console = console_log.read_text()
    assert (
        "[ITS] Cannot write key file key-0004-00000003.json: Read-only file system "
        "-> PSA_ERROR_STORAGE_FAILURE"
    ) in console
    assert (
        "[ITS] Cannot remove key file key-0004-00000001.json: Read-only file system "
        "-> PSA_ERROR_STORAGE_FAILURE"
    ) in console
    assert "Internal error" not in console and "INVALID_ARGUMENT" not in console

    # A model started on a read-only store serves the keys it holds.
    remount(own_tmpfs, "ro")
    command[command.index("--socket") + 1] = str(tmp_path / "rse2.sock")
    with subprocess.Popen(command) as process:
        with RseClient(tmp_path / "rse2.sock", client_id=4) as client:
            client.wait_ready()
            assert [client.export_public_key(k) for k in (2, 3)] == [point, point]
            expect_status(Status.INVALID_HANDLE, lambda: client.export_public_key(1))
            expect_status(
                Status.STORAGE_FAILURE,
                lambda: client.import_key(persistent_point_attrs(9), point),
            )
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    assert store_names(store) == [
        ".lock",
        "key-0004-00000002.json",
        "key-0004-00000003.json",
        "store.key",
    ]
    # A read-only store that has no secret yet cannot get one: the model says so and stops.
    assert serve_and_fail(tmp_path / "rse3.sock", empty) == [
        f"parsec-demo rse serve: cannot create the store secret {empty / 'store.key'}: "
        "Read-only file system"
    ]


def test_demo_walks_keys_through_the_model_and_summarises(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PARSEC_DEMO_RUNS"] = str(tmp_path / "runs")
    result = subprocess.run(
        [sys.executable, "-m", "parsec_demo", "rse", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PROJECT_ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert (
        "rse | [Crypto] psa_import_key: type=RSA_PUBLIC_KEY bits=2048 lifetime=volatile -> key 0x"
        in out
    )
    assert "refused as expected: PSA_ERROR_INVALID_SIGNATURE" in out
    assert (
        "RSE served: psa_import_key x1, "
        "psa_verify_hash x2 (1 PSA_SUCCESS, 1 PSA_ERROR_INVALID_SIGNATURE), "
        "psa_destroy_key x2, psa_generate_key x1, psa_sign_hash x1, psa_export_public_key x1"
    ) in out
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1
    assert {p.name for p in runs[0].iterdir()} >= {
        "rse-console.log",
        "rse-events.jsonl",
        "rse-process.log",
    }


def test_bench_prints_both_rates_and_their_ratio(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PARSEC_DEMO_RUNS"] = str(tmp_path / "runs")
    result = subprocess.run(
        [sys.executable, "-m", "parsec_demo", "bench", "rse", "--seconds", "0.2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    rows = [
        line.split()
        for line in result.stdout.splitlines()
        if line.startswith(("RSA-2048", "P-256"))
    ]
    assert len(rows) == 2
    for row in rows:
        model_rate, local_rate, ratio = (float(v.replace(",", "")) for v in row[-3:])
        assert model_rate > 0 and local_rate > 0
        assert ratio == pytest.approx(model_rate / local_rate, rel=0.05, abs=0.002)
