"""The service's providers: Core (administration) and Trusted Service (crypto in the RSE).

The Trusted Service provider plays the part of upstream's provider 4 plus the SE proxy: every
PSA operation becomes a TF-M crypto call to the RSE over RSE comms, on a small pool of persistent
links that reconnect by themselves. Keys are persistent RSE keys whose ids the key info manager
hands out; a key's name, owner and attributes live in the key info manager.

Temporary keys. A key whose name begins with ``TEMPORARY_KEY_PREFIX`` belongs to the process
that created it, not only to its application: the service records that process (``processes``)
and no other process, not even one of the same application, can list, use or destroy it. Once
the process is gone the key is reclaimed: at start, every ``temporary_key_check_interval``
seconds, and at once when its application reaches its quota. The SE driver names the volatile
keys Mbed TLS imports for one verification this way, so a client that dies mid-handshake locks
nobody out, and a neighbour cannot swap the key between its import and its use.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf.message import Message

from . import __version__, convert, processes, psa
from . import contracts as pb
from .admission import QuotaExceeded
from .auth import Peer
from .auth import description as auth_description
from .config import ServiceConfig
from .constants import (
    CORE_ADVERTISED,
    CORE_PROVIDER_UUID,
    TRUSTED_SERVICE_PROVIDER_UUID,
    AuthType,
    Opcode,
    ProviderId,
    ResponseStatus,
)
from .kim import KeyEntry, KeyExists, KeyInfoManager, StorageError
from .psa import PsaError, Status
from .rse_link.client import RseClient, is_serial_port
from .rse_link.tfm_crypto import KeyAttributes
from .wire import WireError

log = logging.getLogger("parsec")

#: The RSE comms client id the service uses, as the SE proxy does for the application cores.
RSE_CLIENT_ID = 0x0001
#: Largest single psa_generate_random the RSE answers; bigger requests are split.
RSE_RANDOM_CHUNK = 1024
#: Keys with names that begin so are temporary: their creating process's alone.
TEMPORARY_KEY_PREFIX = "temporary/"
VERSION = tuple(int(part) for part in __version__.split("."))


@dataclass(frozen=True)
class Application:
    auth_type: AuthType
    name: str
    #: The connection's peer: a temporary key's owner is its process.
    peer: Peer | None = field(default=None, compare=False)

    def process(self) -> str | None:
        """The calling process's identity (``processes.identity``), if the service sees it."""
        return processes.identity(self.peer.pid) if self.peer is not None else None

    def is_process(self, name: str) -> bool:
        """Whether the caller is the process ``name`` (a ``processes.identity``)."""
        return self.peer is not None and processes.is_process(name, self.peer.pid)


class GenerationGate:
    """Key generation is the one operation whose cost the requester does not bound (an
    RSA-4096 key takes the RSE seconds): at most ``total()`` generations run at once, one per
    peer, so that generations never hold every RSE link and one peer's queue of them waits
    behind itself alone."""

    def __init__(self, total: Callable[[], int]) -> None:
        self._total = total
        self._turn = threading.Condition(threading.Lock())
        self._running: set[Hashable] = set()

    @contextlib.contextmanager
    def held(self, peer: Hashable) -> Iterator[None]:
        with self._turn:
            while peer in self._running or len(self._running) >= self._total():
                self._turn.wait()
            self._running.add(peer)
        try:
            yield
        finally:
            with self._turn:
                self._running.discard(peer)
                self._turn.notify_all()


def is_temporary(name: str) -> bool:
    return name.startswith(TEMPORARY_KEY_PREFIX)


def require(app: Application | None) -> Application:
    if app is None:
        raise WireError(ResponseStatus.NOT_AUTHENTICATED, "the operation needs an application")
    return app


def _info(uuid: str, description: str, vendor: str, provider_id: ProviderId) -> Message:
    return pb.list_providers.ProviderInfo(
        uuid=uuid,
        description=description,
        vendor=vendor,
        version_maj=VERSION[0],
        version_min=VERSION[1],
        version_rev=VERSION[2],
        id=int(provider_id),
    )


Handler = Callable[[Application | None, Any], Message]


class TrustedServiceProvider:
    id = ProviderId.TRUSTED_SERVICE

    def __init__(
        self,
        rse_socket: Path,
        kim: KeyInfoManager,
        settings: Callable[[], ServiceConfig],
        pool_size: int = 4,
        rse_timeout: float = 3.0,
    ) -> None:
        self.kim = kim
        self.rse_socket = rse_socket
        self._settings = settings  # the configuration in force (it may be reloaded)
        self._generations = GenerationGate(lambda: self._settings().max_key_generations_in_flight)
        self._pool: queue.LifoQueue[RseClient] = queue.LifoQueue()
        if is_serial_port(rse_socket):
            pool_size = 1  # a serial port is one stream: calls take turns on it
        for _ in range(pool_size):
            self._pool.put(RseClient(rse_socket, client_id=RSE_CLIENT_ID, timeout=rse_timeout))
        self.handlers: dict[Opcode, Handler] = {
            Opcode.PSA_IMPORT_KEY: self.import_key,
            Opcode.PSA_GENERATE_KEY: self.generate_key,
            Opcode.PSA_DESTROY_KEY: self.destroy_key,
            Opcode.PSA_EXPORT_PUBLIC_KEY: self.export_public_key,
            Opcode.PSA_SIGN_HASH: self.sign_hash,
            Opcode.PSA_VERIFY_HASH: self.verify_hash,
            Opcode.PSA_GENERATE_RANDOM: self.generate_random,
            Opcode.PSA_HASH_COMPUTE: self.hash_compute,
        }

    def info(self) -> Message:
        return _info(
            TRUSTED_SERVICE_PROVIDER_UUID,
            "Trusted Service provider: PSA Crypto in the RSE (TF-M), reached through the SE proxy",
            "Arm",
            self.id,
        )

    def close(self) -> None:
        while not self._pool.empty():
            self._pool.get_nowait().close()

    @contextlib.contextmanager
    def rse(self) -> Iterator[RseClient]:
        client = self._pool.get()
        try:
            yield client
        finally:
            self._pool.put(client)

    # --- reconciliation -----------------------------------------------------------------------

    def reconcile(self) -> int:
        """Settle the leftovers: pending rows no request holds (a crash, or an RSE call whose
        outcome is unknown), and reclaim the temporary keys of processes that are gone.
        Destroys their RSE keys if present; returns how many rows it settled."""
        settled = self.reclaim_temporary()
        for entry in self.kim.claim_leftovers():
            try:
                with self.rse() as rse:
                    _destroy_if_present(rse, entry.key_id)
                self.kim.remove(entry)
            except (PsaError, StorageError) as exc:
                self.kim.abandon(entry)
                log.warning("cannot settle key %r of %s yet: %s", entry.name, entry.app, exc)
                continue
            log.info("settled interrupted %s of key %r of %s", entry.state, entry.name, entry.app)
            settled += 1
        return settled

    def reclaim_temporary(self) -> int:
        """Destroy the temporary keys whose processes are gone; returns how many."""
        reclaimed = 0
        for entry in self.kim.temporary():
            assert entry.process is not None
            if processes.alive(entry.process):
                continue
            try:
                self.destroy_entry(entry)
            except PsaError as exc:
                if exc.status != Status.DOES_NOT_EXIST:  # else destroyed meanwhile
                    log.warning("cannot reclaim key %r of %s yet: %s", entry.name, entry.app, exc)
                continue
            log.info(
                "reclaimed temporary key %r of %s: process %s is gone",
                entry.name,
                entry.app,
                entry.process.split(":", 1)[1],
            )
            reclaimed += 1
        return reclaimed

    def _settle_leftovers(self) -> None:
        if self.kim.has_leftovers():
            self.reconcile()

    # --- key management -----------------------------------------------------------------------

    def _lookup(self, app: Application, name: str) -> KeyEntry:
        entry = self.kim.get(app.auth_type, app.name, name)
        if entry is None:
            raise PsaError(Status.DOES_NOT_EXIST, f"no key {name!r} for {app.name}")
        if entry.process is not None and not app.is_process(entry.process):
            raise PsaError(
                Status.DOES_NOT_EXIST, f"key {name!r} of {app.name} is another process's"
            )
        return entry

    def visible_keys(self, app: Application) -> list[KeyEntry]:
        """The application's keys, less the temporary keys of its other processes."""
        entries = self.kim.keys_of(app.auth_type, app.name)
        if not any(entry.process is not None for entry in entries):
            return entries
        process = app.process()
        return [e for e in entries if e.process is None or e.process == process]

    def _owner_process(self, app: Application, name: str) -> str | None:
        """The process a new key of this name belongs to: None for an ordinary key."""
        if not is_temporary(name):
            return None
        process = app.process()
        if process is None:
            raise PsaError(
                Status.NOT_PERMITTED,
                f"temporary key {name!r}: the service cannot see the client's process "
                "(a PID namespace that is not below the service's)",
            )
        return process

    def _reserve(self, app: Application, name: str, message: Any) -> KeyEntry:
        process = self._owner_process(app, name)
        for attempt in range(2):
            try:
                return self.kim.reserve(
                    app.auth_type,
                    app.name,
                    name,
                    int(self.id),
                    message.SerializeToString(),
                    admission=self._settings().admission,
                    process=process,
                )
            except KeyExists:
                raise PsaError(Status.ALREADY_EXISTS, f"key {name!r} exists") from None
            except QuotaExceeded as exc:
                if attempt == 0 and self.reclaim_temporary():
                    continue  # keys of dead processes made room
                log.warning(
                    "%s ([core_settings] %s): PsaErrorInsufficientStorage", exc, exc.setting
                )
                raise PsaError(Status.INSUFFICIENT_STORAGE, str(exc)) from None
            except StorageError as exc:
                raise PsaError(exc.status, str(exc)) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _create(
        self,
        app: Application,
        name: str,
        message: Any,
        rse_call: Callable[[RseClient, KeyAttributes], int],
    ) -> None:
        attributes = convert.attributes_to_psa(message)
        settings = self._settings()
        if len(name.encode()) > settings.max_key_name_length:
            raise PsaError(
                Status.INVALID_ARGUMENT,
                f"a key name of {len(name.encode())} bytes "
                f"(at most {settings.max_key_name_length}: [core_settings] max_key_name_length)",
            )
        if attributes.bits > settings.max_key_bits:
            raise PsaError(
                Status.NOT_SUPPORTED,
                f"a key of {attributes.bits} bits "
                f"(at most {settings.max_key_bits}: [core_settings] max_key_bits)",
            )
        self._settle_leftovers()
        entry = self._reserve(app, name, message)
        try:
            with self.rse() as rse:
                bits = self._make_rse_key(rse, entry, attributes, rse_call)
        except PsaError as exc:
            if exc.status == Status.COMMUNICATION_FAILURE:
                self.kim.abandon(entry)  # outcome unknown: settled as a leftover
            else:
                self._drop_reservation(entry)
            raise
        except BaseException:
            self.kim.abandon(entry)
            raise
        stored = type(message)()
        stored.CopyFrom(message)
        stored.key_bits = bits
        try:
            self.kim.activate(entry, stored.SerializeToString())
        except StorageError as exc:
            # The RSE key exists but its name could not be committed: take the key back.
            try:
                with self.rse() as rse:
                    _destroy_if_present(rse, entry.key_id)
            except PsaError:
                self.kim.abandon(entry)
            else:
                self._drop_reservation(entry)
            raise PsaError(exc.status, str(exc)) from None

    def _make_rse_key(
        self,
        rse: RseClient,
        entry: KeyEntry,
        attributes: convert.PsaKeyAttributes,
        rse_call: Callable[[RseClient, KeyAttributes], int],
    ) -> int:
        """Create the RSE key for a reserved row; returns the key's size."""
        rse_attributes = KeyAttributes(
            type=attributes.type,
            bits=attributes.bits,
            lifetime=psa.LIFETIME_PERSISTENT,
            usage=attributes.usage,
            alg=attributes.alg,
            id=entry.key_id,
        )
        for _attempt in range(2):
            try:
                rse_call(rse, rse_attributes)
                break
            except PsaError as exc:
                if exc.status != Status.ALREADY_EXISTS:
                    raise
            # Ids are never handed out twice and every RSE key gets its row first, so an RSE
            # key with a fresh id is an orphan (a key info database that was reset): remove it.
            log.error("RSE key 0x%08x has no key info (an orphan); destroying it", entry.key_id)
            _destroy_if_present(rse, entry.key_id)
        else:
            raise PsaError(Status.ALREADY_EXISTS, f"RSE key 0x{entry.key_id:08x} keeps existing")
        try:
            bits = attributes.bits or rse.get_key_attributes(entry.key_id).bits
        except PsaError as exc:
            if exc.status != Status.COMMUNICATION_FAILURE:
                # The key exists but its size could not be read back: take it back.
                with contextlib.suppress(PsaError):
                    _destroy_if_present(rse, entry.key_id)
            raise
        limit = self._settings().max_key_bits
        if bits > limit:  # an imported key that did not state its size
            _destroy_if_present(rse, entry.key_id)
            raise PsaError(
                Status.NOT_SUPPORTED,
                f"a key of {bits} bits (at most {limit}: [core_settings] max_key_bits)",
            )
        return bits

    def _drop_reservation(self, entry: KeyEntry) -> None:
        try:
            self.kim.remove(entry)
        except StorageError:
            self.kim.abandon(entry)

    def import_key(self, app: Application | None, op: Any) -> Message:
        if not op.HasField("attributes"):
            raise convert.invalid("import without attributes")
        convert.attributes_to_psa(op.attributes)
        owner = require(app)
        self._create(
            owner, op.key_name, op.attributes, lambda rse, attrs: rse.import_key(attrs, op.data)
        )
        return pb.psa_import_key.Result()

    def generate_key(self, app: Application | None, op: Any) -> Message:
        if not op.HasField("attributes"):
            raise convert.invalid("generation without attributes")
        convert.attributes_to_psa(op.attributes)
        owner = require(app)
        peer = owner.peer.uid if owner.peer is not None else owner.name
        with self._generations.held(peer):
            self._create(
                owner, op.key_name, op.attributes, lambda rse, attrs: rse.generate_key(attrs)
            )
        return pb.psa_generate_key.Result()

    def destroy_key(self, app: Application | None, op: Any) -> Message:
        owner = require(app)
        self._settle_leftovers()
        self.destroy_entry(self._lookup(owner, op.key_name))
        return pb.psa_destroy_key.Result()

    def destroy_entry(self, entry: KeyEntry) -> None:
        """Destroy an active key; DOES_NOT_EXIST if another request destroyed it first."""
        try:
            claimed = self.kim.claim_destroy(entry)
        except StorageError as exc:
            raise PsaError(exc.status, str(exc)) from None
        if claimed is None:
            raise PsaError(Status.DOES_NOT_EXIST, f"key {entry.name!r} is being destroyed")
        try:
            with self.rse() as rse:
                _destroy_if_present(rse, claimed.key_id)
        except BaseException:
            self.kim.abandon(claimed)
            raise
        try:
            self.kim.remove(claimed)
        except StorageError:
            # The key is gone from the RSE; its row is deleted when leftovers are next settled.
            self.kim.abandon(claimed)

    # --- using keys ---------------------------------------------------------------------------

    def export_public_key(self, app: Application | None, op: Any) -> Message:
        entry = self._lookup(require(app), op.key_name)
        with self.rse() as rse:
            data = rse.export_public_key(entry.key_id, size=2048)
        return pb.psa_export_public_key.Result(data=data)

    def sign_hash(self, app: Application | None, op: Any) -> Message:
        alg = self._signature_alg(op)
        entry = self._lookup(require(app), op.key_name)
        with self.rse() as rse:
            signature = rse.sign_hash(entry.key_id, alg, op.hash, size=1024)
        return pb.psa_sign_hash.Result(signature=signature)

    def verify_hash(self, app: Application | None, op: Any) -> Message:
        alg = self._signature_alg(op)
        entry = self._lookup(require(app), op.key_name)
        with self.rse() as rse:
            rse.verify_hash(entry.key_id, alg, op.hash, op.signature)
        return pb.psa_verify_hash.Result()

    @staticmethod
    def _signature_alg(op: Any) -> int:
        if not op.HasField("alg"):
            raise convert.invalid("signature operation without an algorithm")
        return convert.sign_alg_to_psa(op.alg)

    def generate_random(self, app: Application | None, op: Any) -> Message:
        require(app)
        settings = self._settings()
        if op.size > settings.buffer_size_limit:
            raise WireError(ResponseStatus.RESPONSE_TOO_LARGE, f"{op.size} random bytes")
        if op.size > settings.max_random_bytes:
            raise PsaError(
                Status.INVALID_ARGUMENT,
                f"{op.size} random bytes in one request "
                f"(at most {settings.max_random_bytes}: [core_settings] max_random_bytes)",
            )
        chunks = []
        remaining = op.size
        with self.rse() as rse:
            while remaining:
                chunk = min(remaining, RSE_RANDOM_CHUNK)
                chunks.append(rse.generate_random(chunk))
                remaining -= chunk
        return pb.psa_generate_random.Result(random_bytes=b"".join(chunks))

    def hash_compute(self, app: Application | None, op: Any) -> Message:
        hash_alg = convert.hash_to_psa(op.alg)
        require(app)
        with self.rse() as rse:
            digest = rse.hash_compute(hash_alg, op.input)
        return pb.psa_hash_compute.Result(hash=digest)


def _destroy_if_present(rse: RseClient, key_id: int) -> None:
    try:
        rse.destroy_key(key_id)
    except PsaError as exc:
        if exc.status != Status.INVALID_HANDLE:
            raise


class CoreProvider:
    """Administrative operations; it knows the other providers and the key info manager."""

    id = ProviderId.CORE

    def __init__(
        self,
        crypto: TrustedServiceProvider,
        auth_type: Callable[[], AuthType],
    ) -> None:
        self.crypto = crypto
        self._auth_type = auth_type
        self.handlers: dict[Opcode, Handler] = {
            Opcode.PING: self.ping,
            Opcode.LIST_PROVIDERS: self.list_providers,
            Opcode.LIST_OPCODES: self.list_opcodes,
            Opcode.LIST_AUTHENTICATORS: self.list_authenticators,
            Opcode.LIST_KEYS: self.list_keys,
            Opcode.LIST_CLIENTS: self.list_clients,
            Opcode.DELETE_CLIENT: self.delete_client,
        }

    def info(self) -> Message:
        return _info(
            CORE_PROVIDER_UUID,
            "Core provider: administrative operations of the service, no cryptography",
            "parsec-demo",
            self.id,
        )

    def ping(self, app: Application | None, op: Any) -> Message:
        return pb.ping.Result(wire_protocol_version_maj=1, wire_protocol_version_min=0)

    def list_providers(self, app: Application | None, op: Any) -> Message:
        return pb.list_providers.Result(providers=[self.crypto.info(), self.info()])

    def list_opcodes(self, app: Application | None, op: Any) -> Message:
        if op.provider_id == ProviderId.CORE:
            opcodes = [int(o) for o in CORE_ADVERTISED]
        elif op.provider_id == self.crypto.id:
            opcodes = sorted(int(o) for o in self.crypto.handlers)
        else:
            raise WireError(ResponseStatus.PROVIDER_DOES_NOT_EXIST, f"provider {op.provider_id}")
        return pb.list_opcodes.Result(opcodes=opcodes)

    def list_authenticators(self, app: Application | None, op: Any) -> Message:
        auth_type = self._auth_type()
        info = pb.list_authenticators.AuthenticatorInfo(
            description=auth_description(auth_type),
            version_maj=VERSION[0],
            version_min=VERSION[1],
            version_rev=VERSION[2],
            id=int(auth_type),
        )
        return pb.list_authenticators.Result(authenticators=[info])

    def list_keys(self, app: Application | None, op: Any) -> Message:
        owner = require(app)
        keys = []
        for entry in self.crypto.visible_keys(owner):
            attributes = pb.psa_key_attributes.KeyAttributes()
            attributes.ParseFromString(entry.attributes)
            keys.append(
                pb.list_keys.KeyInfo(
                    provider_id=entry.provider_id, name=entry.name, attributes=attributes
                )
            )
        return pb.list_keys.Result(keys=keys)

    def list_clients(self, app: Application | None, op: Any) -> Message:
        return pb.list_clients.Result(clients=self.crypto.kim.clients(self._auth_type()))

    def delete_client(self, app: Application | None, op: Any) -> Message:
        require(app)
        for entry in self.crypto.kim.keys_of(self._auth_type(), op.client):
            try:
                self.crypto.destroy_entry(entry)
            except PsaError as exc:
                if exc.status != Status.DOES_NOT_EXIST:  # not destroyed by a request meanwhile
                    raise
        return pb.delete_client.Result()
