"""Clients of one application in separate PID namespaces, each PID 1 in its own, with the real
RSE model and Parsec service: their keys must stay apart.

Parsec gives every application one key namespace (here: uid 0, Unix peer credentials), and
two containers of the same application see the same process ids. A driver that named keys
after the process id would give both clients the same key name, and the second one's import
would meet (and once did destroy) the first one's live key.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from parsec_demo_evidence import event_calls
from parsec_demo_rse import RseFiles

from parsec_demo.demo.host import TlsDemo
from parsec_demo.demo.results import ClientRun
from parsec_demo.native_build import HostBuild
from parsec_demo.services import Service, start_parsec_service, start_rse_model
from parsec_service.client import ParsecClient
from parsec_service.constants import Opcode
from support.se_driver_harness import (
    ALG_ECDSA_SHA256,
    KEY_NAME,
    KEY_TYPE_P256_PAIR,
    PSA_ERROR_INVALID_SIGNATURE,
    PSA_SUCCESS,
    USAGE_EXPORT,
    USAGE_SIGN_HASH,
    USAGE_VERIFY_HASH,
    DriverHarness,
    RecordingProxy,
    ec_pair_data,
    public_bytes,
    verify_digest,
)

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="PID namespaces need root and unshare(1)",
)

#: A new PID namespace (the command is its PID 1) with its own /proc.
PID_NAMESPACE = ["unshare", "--pid", "--fork", "--mount-proc"]
DIGEST = bytes(range(32))


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Service, Service]]:
    """The RSE model and the Parsec service, as real processes."""
    rse = start_rse_model(tmp_path)
    try:
        parsec = start_parsec_service(tmp_path, rse.socket_path)
    except BaseException:
        rse.stop()
        raise
    try:
        yield rse, parsec
    finally:
        parsec.stop()
        rse.stop()


def test_driver_clients_that_are_both_pid_1_keep_their_keys_apart(
    tmp_path: Path, host_build: HostBuild, stack: tuple[Service, Service]
) -> None:
    _, parsec = stack
    env = {"PARSEC_SERVICE_ENDPOINT": f"unix:{parsec.socket_path}"}
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(2)]
    usage = USAGE_SIGN_HASH | USAGE_VERIFY_HASH | USAGE_EXPORT
    harnesses = [
        DriverHarness(
            host_build.driver_harness, env, tmp_path / f"client-{n}.stderr", PID_NAMESPACE
        )
        for n in range(2)
    ]
    try:
        assert [h.pid() for h in harnesses] == [1, 1], "each client is PID 1 in its namespace"
        assert all(h.init().status == PSA_SUCCESS for h in harnesses)
        # Persistent keys: the service lists them to every process of the application.
        assert all(h.persistent().status == PSA_SUCCESS for h in harnesses)
        # Both keys are created before either is used, so that both are live at once.
        created = [
            h.import_key(KEY_TYPE_P256_PAIR, ALG_ECDSA_SHA256, usage, ec_pair_data(k))
            for h, k in zip(harnesses, keys, strict=True)
        ]
        assert [c.status for c in created] == [PSA_SUCCESS] * 2, [c.line for c in created]
        names = sorted(key.name for key in ParsecClient(parsec.socket_path).list_keys())
        assert names == sorted(c.key_name for c in created)
        assert len(set(names)) == 2 and all(KEY_NAME.fullmatch(n) for n in names)

        signatures = []
        for harness, key, made in zip(harnesses, keys, created, strict=True):
            signed = harness.sign(made.slot, ALG_ECDSA_SHA256, DIGEST)
            assert signed.status == PSA_SUCCESS
            assert verify_digest(key.public_key(), DIGEST, signed.data), "signed by its own key"
            assert harness.export(made.slot).data == public_bytes(key.public_key())
            signatures.append(signed.data)
        # Each client's key verifies its own signature and refuses the other's.
        for index, (harness, made) in enumerate(zip(harnesses, created, strict=True)):
            own, other = signatures[index], signatures[1 - index]
            assert harness.verify(made.slot, ALG_ECDSA_SHA256, DIGEST, own).status == (PSA_SUCCESS)
            assert harness.verify(made.slot, ALG_ECDSA_SHA256, DIGEST, other).status == (
                PSA_ERROR_INVALID_SIGNATURE
            )
        assert [h.destroy(c.slot).status for h, c in zip(harnesses, created, strict=True)] == [
            PSA_SUCCESS
        ] * 2
        assert ParsecClient(parsec.socket_path).list_keys() == []
    finally:
        for harness in harnesses:
            harness.close()
    for harness in harnesses:
        harness.assert_clean_exit()

    # The RSE held two different keys, each destroyed by its own client.
    events = event_calls(Path(RseFiles(tmp_path).events_log).read_text())
    imported = [e.key_id for e in events if e.function == "psa_import_key"]
    destroyed = [e.key_id for e in events if e.function == "psa_destroy_key"]
    assert len(imported) == 2 and len(set(imported)) == 2
    assert sorted(destroyed) == sorted(imported)
    assert all(e.status == "PSA_SUCCESS" for e in events if e.function != "psa_verify_hash")


def test_two_tls_clients_as_pid_1_side_by_side(tmp_path: Path, host_build: HostBuild) -> None:
    """The demo's client twice at once, each PID 1 in its own PID namespace (as in two
    containers), same uid: both handshakes succeed and no key name is shared."""
    # `sh` prints its PID (1 in the new namespace) and becomes the client.
    wrapper = [*PID_NAMESPACE, "sh", "-c", 'echo "client pid=$$"; exec "$0" "$@"']
    with TlsDemo(tmp_path, host_build) as demo:
        assert demo.parsec is not None
        with RecordingProxy(tmp_path / "proxy.sock", demo.parsec.socket_path) as proxy:
            runs: list[ClientRun] = []
            env = {"PARSEC_SERVICE_ENDPOINT": f"unix:{proxy.path}"}

            def client(index: int) -> None:
                runs.append(
                    demo.run_client(env=env, wrapper=wrapper, log_name=f"client-{index}.log")
                )

            threads = [threading.Thread(target=client, args=(n,)) for n in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=120)
            names = proxy.key_names(Opcode.PSA_IMPORT_KEY)
        events = event_calls(Path(demo.rse_files.events_log).read_text())
    assert len(runs) == 2 and all(r.ok for r in runs), [r.output for r in runs]
    assert all("client pid=1\n" in r.output for r in runs)
    assert all(". Verifying peer X.509 certificate... ok" in r.output for r in runs)
    # Two signatures per handshake, each with its own key and name.
    assert len(names) == 4 and len(set(names)) == 4, names
    functions = [e.function for e in events]
    assert functions.count("psa_import_key") == functions.count("psa_destroy_key") == 4
    assert all(e.status == "PSA_SUCCESS" for e in events)
    assert sorted((tmp_path / "rse-store").glob("key-*.json")) == []
