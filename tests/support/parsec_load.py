"""Load for the Parsec service from many processes and users, and what its stores hold after.

Clients of other uids cannot import the toolkit (its generated contracts are the build's), so
the requests are made here, written one hex line each to a file, and sent by a small standard
library script run as the wanted uid: one connection per request, as the protocol has it, one
output line per request with its response status (-1: no answer) and how long it took.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature
from google.protobuf.message import Message

from parsec_service import contracts as pb
from parsec_service.client import SECP_R1, SHA_256, Auth, key_attributes, sign_alg
from parsec_service.constants import Opcode, ProviderId
from parsec_service.wire import Header, encode_request
from support.keyhelpers import ec_point
from support.rse_store import key_files

SYSTEM_PYTHON = Path("/usr/bin/python3")

#: One request and its whole reply over a connection of its own (the response's status, -1 for
#: none): what the scripts below share. A service restarting refuses connections for a moment,
#: so ``connect_tries`` tries again then (nothing was sent yet).
EXCHANGE = r"""
import socket, time

def exchange(path, request, timeout, connect_tries=1):
    reply = b""
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(timeout)
            for attempt in range(connect_tries):
                try:
                    s.connect(path)
                    break
                except (ConnectionRefusedError, FileNotFoundError):
                    if attempt == connect_tries - 1:
                        raise
                    time.sleep(0.05)
            s.sendall(request)
            while len(reply) < 36 or len(reply) < 36 + int.from_bytes(reply[22:26], "little"):
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                reply += chunk
    except OSError:
        pass
    return int.from_bytes(reply[32:34], "little") if len(reply) >= 36 else -1
"""

SENDER = (
    EXCHANGE
    + r"""
import sys
path = sys.argv[1]
for line in open(sys.argv[2]):
    request = bytes.fromhex(line.strip())
    started = time.monotonic()
    status = exchange(path, request, 15, connect_tries=100)
    print(status, round(time.monotonic() - started, 4), flush=True)
"""
)

#: Keeps ``count`` connections open for ``seconds``, each sending a Ping one byte every 150 ms;
#: prints how many connections were closed without an answer and how many were answered.
TRICKLE = r"""
import socket, sys, time
path, count, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
ping = bytes.fromhex("10a7c05e1e000100000000000000000000000000000000000000000001000000000000")
conns = {}
silent = answered = 0
print("attacking", flush=True)
end = time.monotonic() + seconds
while time.monotonic() < end:
    while len(conns) < count:  # keep `count` connections open, whatever the service does
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        s.setblocking(False)
        conns[s] = 0
    for s, sent in list(conns.items()):
        try:
            data = s.recv(4096)
        except BlockingIOError:
            try:
                s.send(ping[sent : sent + 1])
                conns[s] = sent + 1
                continue
            except OSError:
                data = b""
        except OSError:
            data = b""
        if data:
            answered += 1
        else:
            silent += 1
        del conns[s]
        s.close()
    time.sleep(0.15)
print(silent, answered, flush=True)
"""


ECDSA_P256 = key_attributes(
    "ecc_public_key", 256, sign_alg("ecdsa", SHA_256), curve_family=SECP_R1, verify_hash=True
)
DIGEST = bytes(range(32))


@dataclass(frozen=True)
class Signer:
    """A P-256 key's public point and a raw (r || s) signature of ``DIGEST``."""

    point: bytes
    signature: bytes

    @classmethod
    def make(cls) -> Signer:
        key = ec.generate_private_key(ec.SECP256R1())
        der = key.sign(DIGEST, ec.ECDSA(Prehashed(hashes.SHA256())))
        r, s = decode_dss_signature(der)
        return cls(ec_point(key), r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def crypto_request(opcode: Opcode, operation: Message, auth: Auth) -> bytes:
    header = Header(
        provider=int(ProviderId.TRUSTED_SERVICE), auth_type=auth.auth_type, opcode=opcode
    )
    return encode_request(header, operation.SerializeToString(), auth.data)


def import_request(name: str, signer: Signer, auth: Auth) -> bytes:
    op = pb.psa_import_key.Operation(key_name=name, attributes=ECDSA_P256, data=signer.point)
    return crypto_request(Opcode.PSA_IMPORT_KEY, op, auth)


def verify_request(name: str, signer: Signer, auth: Auth) -> bytes:
    op = pb.psa_verify_hash.Operation(
        key_name=name, alg=sign_alg("ecdsa", SHA_256), hash=DIGEST, signature=signer.signature
    )
    return crypto_request(Opcode.PSA_VERIFY_HASH, op, auth)


def destroy_request(name: str, auth: Auth) -> bytes:
    op = pb.psa_destroy_key.Operation(key_name=name)
    return crypto_request(Opcode.PSA_DESTROY_KEY, op, auth)


@dataclass
class Sender:
    """One process of uid ``uid`` sending ``requests`` in order."""

    uid: int
    requests: list[bytes]
    process: subprocess.Popen[str] | None = None

    def start(self, socket_path: Path, script: Path, index: int) -> None:
        requests = script.parent / f"requests-{index}.hex"
        requests.write_text("".join(r.hex() + "\n" for r in self.requests))
        os.chmod(requests, 0o644)
        self.process = subprocess.Popen(
            [str(SYSTEM_PYTHON), "-I", str(script), str(socket_path), str(requests)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            user=self.uid,
            group=self.uid,
        )

    def results(self, timeout: float) -> list[tuple[int, float]]:
        assert self.process is not None
        out, err = self.process.communicate(timeout=timeout)
        assert self.process.returncode == 0, err
        results = [(int(s), float(t)) for s, t in (line.split() for line in out.splitlines())]
        assert len(results) == len(self.requests)
        return results


def run_senders(
    socket_path: Path, work_dir: Path, senders: Sequence[Sender], timeout: float = 120
) -> list[list[tuple[int, float]]]:
    """Start every sender at once, then collect each one's results."""
    work_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(work_dir, 0o755)
    script = work_dir / "sender.py"  # written once: a running sender reads it
    script.write_text(SENDER)
    os.chmod(script, 0o644)
    for index, sender in enumerate(senders):
        sender.start(socket_path, script, index)
    return [sender.results(timeout) for sender in senders]


def kim_db(run_dir: Path) -> Path:
    """The key info database of the service ``start_parsec_service`` started in ``run_dir``."""
    return run_dir / "parsec-store" / "kim.sqlite3"


def kim_rows(db_path: Path) -> list[tuple[str, str, int, str]]:
    """(application, key name, key id, state) of every row of the key info database."""
    with sqlite3.connect(db_path) as db:
        return db.execute(
            "SELECT app, key_name, key_id, state FROM keys ORDER BY key_id"
        ).fetchall()


def rse_key_ids(store: Path) -> set[int]:
    """The persistent key ids the RSE model holds on disk (``key-<owner>-<id>.json``)."""
    return {key_id for _, key_id in key_files(store)}


def assert_stores_agree(db_path: Path, rse_store: Path) -> list[tuple[str, str, int, str]]:
    """Every key info row is settled and names an RSE key, and every RSE key has a row."""
    rows = kim_rows(db_path)
    assert {state for *_, state in rows} <= {"active"}, f"unsettled rows: {rows}"
    ids = [key_id for _, _, key_id, _ in rows]
    assert len(ids) == len(set(ids)), "two names for one RSE key"
    assert rse_key_ids(rse_store) == set(ids), "an RSE key without a name, or a name without one"
    return rows


#: ``threads`` threads sending one request after another for ``seconds``, each on a connection
#: of its own; ``000000`` in the request becomes a number of the request's own (key names that
#: do not repeat). When the time is up each thread stops waiting and hangs up, as a client that
#: goes away: what it asked for last is unanswered (-1). Prints "flooding", then how many
#: requests got each response status.
FLOOD = (
    EXCHANGE
    + r"""
import collections, sys, threading
path, template = sys.argv[1], bytes.fromhex(sys.argv[2])
threads, seconds = int(sys.argv[3]), float(sys.argv[4])
statuses = collections.Counter()
lock = threading.Lock()
numbers = iter(range(10**6))
end = time.monotonic() + seconds

def flood():
    while time.monotonic() < end:
        with lock:
            number = next(numbers)
        request = template.replace(b"000000", b"%06d" % number)
        status = exchange(path, request, max(0.05, end - time.monotonic()))
        with lock:
            statuses[status] += 1

print("flooding", flush=True)
workers = [threading.Thread(target=flood) for _ in range(threads)]
for w in workers:
    w.start()
for w in workers:
    w.join()
print(" ".join(f"{k}:{v}" for k, v in sorted(statuses.items())), flush=True)
"""
)


def start_flood(
    socket_path: Path, work_dir: Path, uid: int, template: bytes, threads: int, seconds: float
) -> subprocess.Popen[str]:
    """``threads`` threads of ``uid`` sending ``template`` requests for ``seconds``."""
    args = [str(socket_path), template.hex(), str(threads), str(seconds)]
    return start_load_script(work_dir / "flood.py", FLOOD, args, uid, "flooding")


def flood_statuses(flood: subprocess.Popen[str], timeout: float = 120) -> dict[int, int]:
    """How many of the flood's requests got each status (-1: no answer)."""
    out, _ = flood.communicate(timeout=timeout)
    return {int(k): int(v) for k, v in (pair.split(":") for pair in out.split())}


#: Keeps ``count`` idle connections open for ``seconds``: each one the service closes is
#: replaced at once. Prints "holding", then how many connections the service closed.
HOLD = r"""
import selectors, socket, sys, time
path, count, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
selector = selectors.DefaultSelector()
closed = 0

def connect():
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
    except OSError:
        s.close()
        return
    selector.register(s, selectors.EVENT_READ)

print("holding", flush=True)
end = time.monotonic() + seconds
while time.monotonic() < end:
    while len(selector.get_map()) < count:
        connect()
    for key, _ in selector.select(timeout=0.05):
        if not key.fileobj.recv(4096):
            selector.unregister(key.fileobj)
            key.fileobj.close()
            closed += 1
print(closed, flush=True)
"""


def start_idle_connections(
    socket_path: Path, work_dir: Path, uid: int, seconds: float, count: int
) -> subprocess.Popen[str]:
    """``count`` idle connections of ``uid``, each replaced as soon as the service closes it."""
    args = [str(socket_path), str(count), str(seconds)]
    return start_load_script(work_dir / "hold.py", HOLD, args, uid, "holding")


def start_trickle_attack(
    socket_path: Path, work_dir: Path, uid: int, seconds: float, count: int = 96
) -> subprocess.Popen[str]:
    """The slow-client attack, as ``uid``; returns once its connections are open."""
    args = [str(socket_path), str(count), str(seconds)]
    return start_load_script(work_dir / "trickle.py", TRICKLE, args, uid, "attacking")


def start_load_script(
    script: Path, text: str, args: list[str], uid: int, ready: str
) -> subprocess.Popen[str]:
    """``text`` written to ``script`` and run by the system's python3 as ``uid`` with ``args``;
    returns once it has printed its ``ready`` line."""
    script.write_text(text)
    os.chmod(script, 0o644)
    process = subprocess.Popen(
        [str(SYSTEM_PYTHON), "-I", str(script), *args],
        stdout=subprocess.PIPE,
        text=True,
        user=uid,
        group=uid,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == ready
    return process
