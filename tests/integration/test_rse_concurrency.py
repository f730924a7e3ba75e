"""Many clients at once against one RSE model: the table, the disk and the clients agree.

Threads of this process and worker processes, with their own RSE comms client ids, import, use
and destroy persistent and volatile keys over the model's socket at the same time. Afterwards
the model's key table, the key files on disk and what each client believes it owns must be the
same set of keys, each holding the material its client gave it: nothing lost, nothing orphaned,
nothing extra. A variant kills the model with SIGKILL in the middle and starts it again:
acknowledged imports are there, acknowledged destroys are not, and the call each client had in
flight is either wholly done or not done at all. Last, the number of links is bounded.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from parsec_demo.services import start_rse_model
from parsec_rse_model.keystore import KeyStore
from parsec_service import psa
from parsec_service.psa import PsaError, Status
from parsec_service.rse_link.client import RseClient, RseUnavailable
from parsec_service.rse_link.tfm_crypto import KeyAttributes
from support.rse_store import key_files

if TYPE_CHECKING:
    from multiprocessing.pool import Pool

    from support.running import RunningRse

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
ALG = psa.ecdsa(psa.ALG_SHA_256)
VOLATILE_PER_WORKER = 6

Ref = tuple[int, int]  # (client id, key id)


# --- key material that can be told apart and checked by anyone who knows its tag --------------


def private_value(tag: str) -> int:
    return int.from_bytes(hashlib.sha256(tag.encode()).digest(), "big") % (P256_ORDER - 1) + 1


def scalar(tag: str) -> bytes:
    return private_value(tag).to_bytes(32, "big")


def public_point(tag: str) -> bytes:
    public = ec.derive_private_key(private_value(tag), ec.SECP256R1()).public_key()
    numbers = public.public_numbers()
    return b"\x04" + numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")


def key_attributes(key_id: int | None) -> KeyAttributes:
    return KeyAttributes(
        type=psa.KEY_TYPE_ECC_KEY_PAIR_SECP_R1,
        bits=256,
        lifetime=psa.LIFETIME_VOLATILE if key_id is None else psa.LIFETIME_PERSISTENT,
        usage=psa.USAGE_SIGN_HASH | psa.USAGE_VERIFY_HASH,
        alg=ALG,
        id=key_id or 0,
    )


def check_signature(tag: str, digest: bytes, raw: bytes) -> None:
    """The signature verifies under the public key of ``tag``: the key holds that material."""
    der = utils.encode_dss_signature(
        int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    )
    public = ec.derive_private_key(private_value(tag), ec.SECP256R1()).public_key()
    public.verify(der, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))


# --- one client worker: a random walk of imports, uses and destroys ---------------------------


@dataclass
class Plan:
    socket_path: str
    client_id: int
    name: str  # unique among all workers; part of every material tag
    first_id: int  # persistent ids first_id .. first_id + id_count - 1 are this worker's
    id_count: int
    iterations: int
    seed: int
    deadline: float  # time.time()
    owned: dict[int, str] = field(default_factory=dict)  # persistent keys held from before
    stop_on_link_loss: bool = False


def run_worker(plan: Plan) -> dict[str, Any]:
    """Run one plan; the result says what the worker believes it owns, and any surprise."""
    rng = random.Random(plan.seed)
    client = RseClient(plan.socket_path, client_id=plan.client_id, timeout=20)
    persistent = dict(plan.owned)
    volatile: dict[int, str] = {}
    in_doubt: dict[int, list[str | None]] = {}
    errors: list[str] = []
    counts: Counter[str] = Counter()
    my_ids = range(plan.first_id, plan.first_id + plan.id_count)
    link_lost = False
    try:
        for step in range(plan.iterations):
            if time.time() > plan.deadline:
                break
            owned = [(k, persistent[k]) for k in persistent] + [(k, v) for k, v in volatile.items()]
            free = [k for k in my_ids if k not in persistent]
            roll = rng.random()
            doubt: tuple[int, str | None, str | None] | None = None
            try:
                if roll < 0.35 and free:
                    key_id = rng.choice(free)
                    tag = f"{plan.name}/{key_id}/{step}"
                    doubt = (key_id, None, tag)
                    assert client.import_key(key_attributes(key_id), scalar(tag)) == key_id
                    persistent[key_id] = tag
                    counts["import_persistent"] += 1
                elif roll < 0.5 and len(volatile) < VOLATILE_PER_WORKER:
                    tag = f"{plan.name}/volatile/{step}"
                    key_id = client.import_key(key_attributes(None), scalar(tag))
                    assert key_id not in volatile, "a volatile id handed out twice"
                    volatile[key_id] = tag
                    counts["import_volatile"] += 1
                elif roll < 0.8 and owned:
                    key_id, tag = rng.choice(owned)
                    digest = hashlib.sha256(rng.randbytes(16)).digest()
                    signature = client.sign_hash(key_id, ALG, digest)
                    check_signature(tag, digest, signature)
                    client.verify_hash(key_id, ALG, digest, signature)
                    counts["use"] += 1
                elif owned:
                    key_id, tag = rng.choice(owned)
                    if key_id in persistent:
                        doubt = (key_id, tag, None)
                        client.destroy_key(key_id)
                        del persistent[key_id]
                    else:
                        client.destroy_key(key_id)
                        del volatile[key_id]
                    counts["destroy"] += 1
            except RseUnavailable as exc:
                if doubt is not None:
                    persistent.pop(doubt[0], None)
                    in_doubt[doubt[0]] = [doubt[1], doubt[2]]
                link_lost = True
                if not plan.stop_on_link_loss:
                    errors.append(f"step {step}: {exc}")
                break
            except (PsaError, InvalidSignature, AssertionError) as exc:
                errors.append(f"step {step}: {exc!r}")
                break
    finally:
        client.close()
    return {
        "client_id": plan.client_id,
        "name": plan.name,
        "persistent": persistent,
        "volatile": volatile,
        "in_doubt": in_doubt,
        "errors": errors,
        "counts": dict(counts),
        "link_lost": link_lost,
    }


def run_workers(plans: list[Plan]) -> list[dict[str, Any]]:
    """Several workers on threads of one process, each with its own link."""
    results: list[dict[str, Any]] = [{} for _ in plans]

    def one(index: int) -> None:
        results[index] = run_worker(plans[index])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(plans))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def warm_up(_: int) -> int:
    time.sleep(0.2)
    return 0


@pytest.fixture(scope="module")
def pool() -> Iterator[Pool]:
    """Worker processes, started once (fresh interpreters: no state shared with this one)."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(3) as workers:
        workers.map(warm_up, range(3), chunksize=1)
        yield workers


# --- what the clients believe, against the table and the disk ---------------------------------


def beliefs(results: list[dict[str, Any]]) -> tuple[dict[Ref, str], dict[Ref, str]]:
    persistent: dict[Ref, str] = {}
    volatile: dict[Ref, str] = {}
    for result in results:
        assert not result["errors"], f"{result['name']}: {result['errors']}"
        for kind, into in (("persistent", persistent), ("volatile", volatile)):
            for key_id, tag in result[kind].items():
                ref = (result["client_id"], int(key_id))
                assert ref not in into, f"two workers believe they own {ref}"
                into[ref] = tag
    return persistent, volatile


def assert_agreement(
    table: dict[Ref, Any], store_dir: Path, persistent: dict[Ref, str], volatile: dict[Ref, str]
) -> None:
    """Table, disk and beliefs are the same keys, each with the material its owner gave it."""
    table_persistent = {ref for ref, key in table.items() if key.persistent}
    assert key_files(store_dir) == table_persistent, "the table and the files disagree"
    lost = set(persistent) - table_persistent
    extra = table_persistent - set(persistent)
    assert not lost and not extra, f"lost {sorted(lost)}, orphaned {sorted(extra)}"
    assert {ref for ref, key in table.items() if not key.persistent} == set(volatile)
    for ref, tag in {**persistent, **volatile}.items():
        assert table[ref].material.data == scalar(tag), f"{ref} holds the wrong material"


def assert_stopped_cleanly(rse: RunningRse) -> None:
    console = rse.console()
    assert "Internal error" not in console and "Invalid message" not in console


# --- the tests --------------------------------------------------------------------------------


def test_many_clients_at_once_leave_table_disk_and_clients_in_agreement(
    rse_factory: Callable[..., RunningRse], pool: Pool
) -> None:
    rse = rse_factory(slots=128, max_keys=1024)
    deadline = time.time() + 120
    socket_path = str(rse.socket_path)

    def plan(client_id: int, name: str, first_id: int, seed: int) -> Plan:
        return Plan(socket_path, client_id, name, first_id, 8, 60, seed, deadline)

    # Two threads share each client id here (distinct id ranges, one key namespace); each
    # process has its own client id, shared by its three threads.
    local = [plan(0x11 + n // 2, f"local{n}", 1 + 100 * n, n) for n in range(6)]
    remote = [
        [plan(0x21 + p, f"proc{p}.{t}", 1 + 100 * t, 100 + 10 * p + t) for t in range(3)]
        for p in range(3)
    ]
    pending = [pool.apply_async(run_workers, (plans,)) for plans in remote]
    results = run_workers(local)
    for job in pending:
        results += job.get(timeout=180)
    assert len(results) == 15
    totals: Counter[str] = Counter()
    for result in results:
        totals.update(result["counts"])
    assert min(totals[k] for k in ("import_persistent", "import_volatile", "use", "destroy")) > 20

    persistent, volatile = beliefs(results)
    assert persistent and volatile
    store = rse.server.model.store
    assert_agreement(store.snapshot(), store.store_dir, persistent, volatile)
    assert len({owner for owner, _ in persistent}) == 6, "all six clients hold keys"
    rse.stop()
    assert_stopped_cleanly(rse)

    again = rse_factory(slots=128, max_keys=1024)
    reloaded = again.server.model.store
    assert_agreement(reloaded.snapshot(), reloaded.store_dir, persistent, {})


def test_racing_for_one_key_id_has_exactly_one_winner(rse: RunningRse) -> None:
    contenders = 8
    barrier = threading.Barrier(contenders)
    outcomes: list[list[int]] = [[] for _ in range(contenders)]

    def contend(index: int) -> None:
        with rse.client(client_id=0x31) as client:
            for key_id in range(1, 6):
                for action in ("import", "destroy"):
                    barrier.wait(timeout=30)
                    try:
                        if action == "import":
                            client.import_key(key_attributes(key_id), scalar(f"{key_id}/{index}"))
                        else:
                            client.destroy_key(key_id)
                        outcomes[index].append(Status.SUCCESS)
                    except PsaError as exc:
                        outcomes[index].append(exc.status)

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    for step in range(10):
        statuses = Counter(outcome[step] for outcome in outcomes)
        loser = Status.ALREADY_EXISTS if step % 2 == 0 else Status.INVALID_HANDLE
        assert statuses == {Status.SUCCESS: 1, loser: contenders - 1}, f"step {step}: {statuses}"
    store = rse.server.model.store
    assert store.snapshot() == {} and key_files(store.store_dir) == set()

    # And the winner's material is the one stored.
    barrier = threading.Barrier(contenders)
    winners: list[int] = []
    losers: list[int] = []

    def import_once(index: int) -> None:
        with rse.client(client_id=0x31) as client:
            barrier.wait(timeout=30)
            try:
                client.import_key(key_attributes(9), scalar(f"9/{index}"))
                winners.append(index)
            except PsaError as exc:
                losers.append(exc.status)

    threads = [threading.Thread(target=import_once, args=(i,)) for i in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(winners) == 1 and losers == [Status.ALREADY_EXISTS] * (contenders - 1)
    assert_agreement(store.snapshot(), store.store_dir, {(0x31, 9): f"9/{winners[0]}"}, {})


def events_so_far(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_sigkill_in_the_middle_loses_no_acknowledged_change(tmp_path: Path, pool: Pool) -> None:
    rng = random.Random(77)
    store_dir = tmp_path / "rse-store"
    events = tmp_path / "rse-events.jsonl"
    # Three processes (client ids 0x41..0x43), two threads each; persistent keys carry over.
    workers = [(0x41 + p, f"p{p}t{t}", 1 + 1000 * t) for p in range(3) for t in range(2)]
    owned: dict[str, dict[int, str]] = {name: {} for _, name, _ in workers}
    settled = {"imports": 0, "destroys": 0, "in_doubt": 0}
    for round_no in range(4):
        service = start_rse_model(tmp_path, slots=64, max_keys=1024)
        deadline = time.time() + 60
        before = events_so_far(events)
        plans = [
            Plan(
                str(service.socket_path),
                client_id,
                f"{name}r{round_no}",
                first_id,
                12,
                100_000,
                rng.randrange(1 << 30),
                deadline,
                owned=owned[name],
                stop_on_link_loss=True,
            )
            for client_id, name, first_id in workers
        ]
        pending = [pool.apply_async(run_workers, (plans[p * 2 : p * 2 + 2],)) for p in range(3)]
        # Kill while the clients are busy: after some calls, at a random moment.
        wanted = before + rng.randrange(60, 200)
        while events_so_far(events) < wanted and time.time() < deadline:
            time.sleep(0.01)
        assert events_so_far(events) >= wanted, "the clients did not get going"
        time.sleep(rng.uniform(0, 0.1))
        service.kill()
        results = [result for job in pending for result in job.get(timeout=90)]
        assert all(result["link_lost"] for result in results), "every client was cut off"

        # The table a restarted model loads, against the disk and the clients' beliefs.
        persistent, _volatile = beliefs(results)
        warnings: list[str] = []
        table = KeyStore(store_dir, warn=warnings.append).snapshot()
        assert not [line for line in warnings if "Removing unfinished write" not in line]
        assert not any(not key.persistent for key in table.values())
        for (_, name, _), result in zip(workers, results, strict=True):
            assert result["name"] == f"{name}r{round_no}"
            owned[name] = dict(result["persistent"])
            for key_id, (before_tag, after_tag) in result["in_doubt"].items():
                ref = (result["client_id"], int(key_id))
                settled["in_doubt"] += 1
                if ref in table:  # done, or not done: either way with the right material
                    held = table[ref].material.data
                    assert held in {scalar(t) for t in (before_tag, after_tag) if t}, ref
                    tag = after_tag if held == scalar(after_tag or "") else before_tag
                    assert tag is not None
                    owned[name][int(key_id)] = tag
                    persistent[ref] = tag
            settled["imports"] += result["counts"].get("import_persistent", 0)
            settled["destroys"] += result["counts"].get("destroy", 0)
        assert_agreement(table, store_dir, persistent, {})

    assert settled["imports"] > 50 and settled["destroys"] > 20, settled
    assert settled["in_doubt"] > 0, "some kill should have caught a change in flight"
    # The model itself, started once more, serves exactly the believed keys.
    with start_rse_model(tmp_path, slots=64, max_keys=1024) as service:
        for client_id, name, first_id in workers:
            with RseClient(service.socket_path, client_id=client_id) as client:
                for key_id in range(first_id, first_id + 12):
                    if key_id in owned[name]:
                        point = client.export_public_key(key_id)
                        assert point == public_point(owned[name][key_id])
                    else:
                        with pytest.raises(PsaError) as caught:
                            client.export_public_key(key_id)
                        assert caught.value.status == Status.INVALID_HANDLE
    console = (tmp_path / "rse-console.log").read_text()
    assert "Ignoring" not in console and "Internal error" not in console
    lines = [json.loads(line) for line in events.read_text().splitlines() if line.strip()]
    assert not [e for e in lines if e.get("status") == "PSA_ERROR_STORAGE_FAILURE"]


def test_connections_over_the_limit_are_closed_at_once(
    rse_factory: Callable[..., RunningRse],
) -> None:
    rse = rse_factory(max_connections=4)
    clients = [rse.client(client_id=n) for n in range(4)]
    try:
        for client in clients:
            assert len(client.generate_random(4)) == 4
        assert rse.server.open_connections() == 4
        threads_before = threading.active_count()

        extra = []
        started = time.monotonic()
        for _ in range(40):  # kept open on this side: they must still cost the model nothing
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(5)
            sock.connect(str(rse.socket_path))
            assert sock.recv(1) == b"", "a link over the limit is closed, not served"
            extra.append(sock)
        assert time.monotonic() - started < 5
        assert threading.active_count() == threads_before, "no thread for a refused link"
        for sock in extra:
            sock.close()
        with rse.client(client_id=9) as late, pytest.raises(RseUnavailable):
            late.generate_random(4)
        assert rse.server.open_connections() == 4

        for client in clients:
            assert len(client.generate_random(4)) == 4, "the links within the limit still work"
        clients.pop().close()
        wait_until = time.monotonic() + 5
        while rse.server.open_connections() > 3 and time.monotonic() < wait_until:
            time.sleep(0.01)
        with rse.client(client_id=9) as late:
            assert len(late.generate_random(4)) == 4, "a freed place can be taken"
    finally:
        for client in clients:
            client.close()
    console = rse.console()
    refused = "[RSE-COMMS] Connection refused: 4 links already open (--max-connections)"
    assert console.count(refused) == 41
    assert "max_connections=4" in console
    assert rse.config.events_log is not None
    kinds = Counter(
        json.loads(line).get("kind") for line in rse.config.events_log.read_text().splitlines()
    )
    assert kinds["connection_refused"] == 41
