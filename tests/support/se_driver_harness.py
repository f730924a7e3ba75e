"""The Parsec SE driver under test: its harness program as a Python object, and a fake Parsec
service that answers it as each test scripts.

``parsec-se-driver-harness`` (built with ASan and UBSan by ``native_build``) calls the driver's
entry points one command line at a time and answers each with one line; ``DriverHarness`` runs
it, sends commands, reads answers with a timeout, and at the end checks that it exited cleanly
with no sanitizer report.

``FakeParsec`` listens on a Unix socket and serves each connection from its own thread. By
default it behaves like a small Parsec service with one crypto provider (id 4): it keeps the
keys it is given, signs, verifies and exports with ``cryptography``, and lists providers and
keys. A test replaces the answer to an opcode with a scripted one (a reply with any status and
body, raw bytes, bytes trickled one at a time, or silence); every request is recorded.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    Prehashed,
    decode_dss_signature,
    encode_dss_signature,
)

from parsec_service import contracts as pb
from parsec_service.constants import Opcode, ResponseStatus
from parsec_service.wire import HEADER, Header

# --- PSA values the tests use -----------------------------------------------------------------

PSA_SUCCESS = 0
PSA_ERROR_NOT_PERMITTED = -133
PSA_ERROR_NOT_SUPPORTED = -134
PSA_ERROR_INVALID_ARGUMENT = -135
PSA_ERROR_BUFFER_TOO_SMALL = -138
PSA_ERROR_ALREADY_EXISTS = -139
PSA_ERROR_DOES_NOT_EXIST = -140
PSA_ERROR_COMMUNICATION_FAILURE = -145
PSA_ERROR_INVALID_SIGNATURE = -149

KEY_TYPE_RSA_PUBLIC = 0x4001
KEY_TYPE_RSA_PAIR = 0x7001
KEY_TYPE_P256_PUBLIC = 0x4112  # PSA_KEY_TYPE_ECC_PUBLIC_KEY(PSA_ECC_FAMILY_SECP_R1)
KEY_TYPE_P256_PAIR = 0x7112
ALG_ECDSA_SHA256 = 0x06000609
ALG_RSA_PKCS1V15_SHA256 = 0x06000209
USAGE_EXPORT = 0x0001
USAGE_SIGN_HASH = 0x1000
USAGE_VERIFY_HASH = 0x2000

TRUSTED_SERVICE_PROVIDER = 4
KEY_NAME = re.compile(r"parsec-se-driver-key(\d+)")
#: A volatile key's name: a temporary key, the creating process's alone.
TEMPORARY_KEY_NAME = re.compile(r"temporary/parsec-se-driver-key(\d+)")

#: Any of these in the harness's stderr is a sanitizer finding.
SANITIZER_REPORTS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def sanitizer_env() -> dict[str, str]:
    return {
        "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:exitcode=86:strict_string_checks=1",
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1:exitcode=87",
    }


# --- the harness ------------------------------------------------------------------------------


@dataclass
class Answer:
    command: str
    status: int
    fields: dict[str, str]
    seconds: float
    line: str

    @property
    def slot(self) -> int:
        return int(self.fields["slot"])

    @property
    def data(self) -> bytes:
        value = self.fields.get("data", "-")
        return b"" if value == "-" else bytes.fromhex(value)

    @property
    def key_name(self) -> str:
        """The key's name in Parsec, as the driver said it (a persistent key's otherwise)."""
        return self.fields.get("name", f"parsec-se-driver-key{self.slot}")


class HarnessError(AssertionError):
    pass


def _hex(data: bytes) -> str:
    return data.hex() if data else "-"


class DriverHarness:
    """One ``parsec-se-driver-harness`` process; ``wrapper`` runs it inside another command
    (``unshare ...``)."""

    def __init__(
        self,
        binary: Path,
        env: Mapping[str, str],
        stderr_path: Path,
        wrapper: Sequence[str] = (),
    ) -> None:
        self.stderr_path = stderr_path
        full_env = dict(os.environ)
        full_env.update(sanitizer_env())
        full_env.update(env)
        with open(stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                [*wrapper, str(binary)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=full_env,
            )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self._lines.put(raw.decode(errors="replace").rstrip("\n"))
        self._lines.put(None)

    def call(self, command: str, timeout: float = 30.0) -> Answer:
        """Send one command and wait (at most ``timeout`` seconds) for its answer."""
        assert self.process.stdin is not None
        started = time.monotonic()
        self.process.stdin.write(command.encode() + b"\n")
        self.process.stdin.flush()
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise HarnessError(f"no answer to {command.split()[0]!r} in {timeout} s") from None
        seconds = time.monotonic() - started
        if line is None:
            raise HarnessError(f"the harness ended during {command.split()[0]!r}:\n{self.stderr()}")
        name, *pairs = line.split(" ")
        if name == "error":
            raise HarnessError(line)
        fields = dict(pair.partition("=")[::2] for pair in pairs)
        return Answer(name, int(fields["status"]), fields, seconds, line)

    # --- the commands -------------------------------------------------------------------------

    def init(self) -> Answer:
        return self.call("init")

    def persistent(self, persistent: bool = True) -> Answer:
        """Make the keys created next persistent (else volatile, as a handshake's are)."""
        return self.call(f"persistence {int(persistent)}")

    def import_key(
        self,
        key_type: int,
        alg: int,
        usage: int,
        data: bytes,
        bits: int = 0,
        slot: int | None = None,
    ) -> Answer:
        where = "import" if slot is None else f"import-at {slot}"
        return self.call(f"{where} {key_type:#x} {alg:#x} {usage:#x} {bits} {_hex(data)}")

    def generate(self, key_type: int, alg: int, usage: int, bits: int) -> Answer:
        return self.call(f"generate {key_type:#x} {alg:#x} {usage:#x} {bits}")

    def allocate(self) -> Answer:
        return self.call("allocate")

    def sign(self, slot: int, alg: int, digest: bytes, size: int | None = None) -> Answer:
        return self.call(
            f"sign {slot} {alg:#x} {_hex(digest)}" + ("" if size is None else f" {size}")
        )

    def verify(self, slot: int, alg: int, digest: bytes, signature: bytes) -> Answer:
        return self.call(f"verify {slot} {alg:#x} {_hex(digest)} {_hex(signature)}")

    def export(self, slot: int, size: int | None = None) -> Answer:
        return self.call(f"export {slot}" + ("" if size is None else f" {size}"))

    def destroy(self, slot: int) -> Answer:
        return self.call(f"destroy {slot}")

    def pid(self) -> int:
        return int(self.call("pid").fields["pid"])

    # --- the end --------------------------------------------------------------------------------

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def close(self, timeout: float = 30.0) -> int:
        """Ask the harness to quit and wait for it (killing it past ``timeout``)."""
        if self.process.poll() is None:
            assert self.process.stdin is not None
            try:
                self.process.stdin.write(b"quit\n")
                self.process.stdin.close()
            except BrokenPipeError:
                pass
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode

    def assert_clean_exit(self) -> None:
        """Exit status 0, and no sanitizer report (leaks are checked at exit)."""
        returncode = self.close()
        stderr = self.stderr()
        found = [r for r in SANITIZER_REPORTS if r in stderr]
        assert returncode == 0 and not found, f"exit {returncode}, {found}:\n{stderr}"

    def __enter__(self) -> DriverHarness:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


# --- the fake Parsec service --------------------------------------------------------------------


@dataclass
class Request:
    header: Header
    body: bytes
    auth: bytes

    @property
    def opcode(self) -> int:
        return self.header.opcode

    def operation(self) -> Any:
        message = pb.CONTRACTS[Opcode(self.opcode)][0]()
        message.ParseFromString(self.body)
        return message


@dataclass
class Connection:
    """What a behaviour gets: the request, the socket, and the service's stop event."""

    request: Request
    sock: socket.socket
    stopping: threading.Event

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def hold(self, limit: float = 30.0) -> None:
        """Keep the connection open until the client closes it (or the service stops)."""
        self.sock.settimeout(0.05)
        deadline = time.monotonic() + limit
        while not self.stopping.is_set() and time.monotonic() < deadline:
            try:
                if self.sock.recv(4096) == b"":
                    return
            except TimeoutError:
                continue
            except OSError:
                return


Behaviour = Callable[[Connection], None]


def response_bytes(
    request: Request, status: int = 0, body: bytes = b"", opcode: int | None = None
) -> bytes:
    header = Header(
        provider=request.header.provider,
        session=request.header.session,
        body_len=len(body),
        opcode=request.opcode if opcode is None else opcode,
        status=status,
    )
    return header.encode() + body


def reply(status: int = 0, body: bytes = b"", opcode: int | None = None) -> Behaviour:
    """A well-formed response with this status and body (and another opcode if given)."""

    def behave(conn: Connection) -> None:
        conn.send(response_bytes(conn.request, status, body, opcode))

    return behave


def raw(make: Callable[[Request], bytes], then_hold: bool = False) -> Behaviour:
    """Whatever bytes ``make`` returns for the request, then close (or keep the line open)."""

    def behave(conn: Connection) -> None:
        conn.send(make(conn.request))
        if then_hold:
            conn.hold()

    return behave


def trickle(make: Callable[[Request], bytes], interval: float) -> Behaviour:
    """The bytes one at a time, ``interval`` seconds apart, until sent or the client leaves."""

    def behave(conn: Connection) -> None:
        for byte in make(conn.request):
            if conn.stopping.wait(interval):
                return
            try:
                conn.send(bytes([byte]))
            except OSError:
                return  # the driver gave up: what the test expects

    return behave


def silence() -> Behaviour:
    """Read the request, answer nothing, keep the connection open."""
    return lambda conn: conn.hold()


@dataclass
class FakeKey:
    name: str
    attributes: Any
    private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None
    public: ec.EllipticCurvePublicKey | rsa.RSAPublicKey


def _hash_for(digest: bytes) -> hashes.HashAlgorithm:
    return {32: hashes.SHA256(), 48: hashes.SHA384(), 64: hashes.SHA512()}[len(digest)]


def public_bytes(public: ec.EllipticCurvePublicKey | rsa.RSAPublicKey) -> bytes:
    """The key as psa_export_public_key gives it."""
    if isinstance(public, ec.EllipticCurvePublicKey):
        return public.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)


def sign_digest(private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, digest: bytes) -> bytes:
    """A signature as PSA gives it: r || s for ECDSA, PKCS#1 v1.5 for RSA."""
    algorithm = Prehashed(_hash_for(digest))
    if isinstance(private, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(private.sign(digest, ec.ECDSA(algorithm)))
        size = (private.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    return private.sign(digest, padding.PKCS1v15(), algorithm)


def verify_digest(
    public: ec.EllipticCurvePublicKey | rsa.RSAPublicKey, digest: bytes, signature: bytes
) -> bool:
    algorithm = Prehashed(_hash_for(digest))
    try:
        if isinstance(public, ec.EllipticCurvePublicKey):
            size = (public.curve.key_size + 7) // 8
            if len(signature) != 2 * size:
                return False
            r = int.from_bytes(signature[:size], "big")
            s = int.from_bytes(signature[size:], "big")
            public.verify(encode_dss_signature(r, s), digest, ec.ECDSA(algorithm))
        else:
            public.verify(signature, digest, padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        return False
    return True


def _load_key(
    attributes: Any, data: bytes
) -> tuple[ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None, Any]:
    variant = attributes.key_type.WhichOneof("variant")
    if variant == "ecc_key_pair":
        private_ec = ec.derive_private_key(int.from_bytes(data, "big"), ec.SECP256R1())
        return private_ec, private_ec.public_key()
    if variant == "ecc_public_key":
        return None, ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), data)
    if variant == "rsa_key_pair":
        private = serialization.load_der_private_key(data, password=None)
        assert isinstance(private, rsa.RSAPrivateKey)
        return private, private.public_key()
    if variant == "rsa_public_key":
        return None, serialization.load_der_public_key(data)
    raise ValueError(f"the fake service does not take {variant} keys")


class _ThreadedUnixServer:
    """A listener on ``path`` that serves each connection from a thread of its own
    (``_handle``), so clients side by side are not serialised; ``close`` ends it all."""

    def __init__(self, path: Path, connection_grace: float) -> None:
        self.path = path
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._grace = connection_grace
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen(16)
        self._listener.settimeout(0.1)
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _handle(self, sock: socket.socket) -> None:
        raise NotImplementedError

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._handle, args=(sock,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def close(self) -> None:
        self._stopping.set()
        self._listener.close()
        self._acceptor.join(timeout=5)
        for thread in self._threads:
            thread.join(timeout=self._grace)
        assert not any(t.is_alive() for t in self._threads), "a connection did not end"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class FakeParsec(_ThreadedUnixServer):
    """A Parsec service on ``path`` whose answers tests choose (see the module's docstring)."""

    def __init__(self, path: Path) -> None:
        self.keys: dict[str, FakeKey] = {}
        self.behaviours: dict[int, Behaviour] = {}
        super().__init__(path, connection_grace=5)

    @property
    def endpoint(self) -> str:
        return f"unix:{self.path}"

    def on(self, opcode: Opcode, behaviour: Behaviour) -> None:
        """Answer every later request of ``opcode`` with ``behaviour``."""
        self.behaviours[int(opcode)] = behaviour

    def opcodes(self) -> list[int]:
        with self._lock:
            return [r.opcode for r in self.requests]

    def requests_of(self, opcode: Opcode) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.opcode == opcode]

    # --- serving ----------------------------------------------------------------------------

    def _handle(self, sock: socket.socket) -> None:
        with sock:
            sock.settimeout(10)
            try:
                request = self._read_request(sock)
            except (OSError, ValueError):
                return
            with self._lock:
                self.requests.append(request)
            behaviour = self.behaviours.get(request.opcode, self._parsec)
            with contextlib.suppress(OSError):  # the driver may hang up first
                behaviour(Connection(request, sock, self._stopping))

    @staticmethod
    def _read_exact(sock: socket.socket, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = sock.recv(size - len(data))
            if not chunk:
                raise ValueError("the client closed the connection early")
            data += chunk
        return data

    def _read_request(self, sock: socket.socket) -> Request:
        header = Header.decode(self._read_exact(sock, HEADER.size))
        body = self._read_exact(sock, header.body_len)
        auth = self._read_exact(sock, header.auth_len)
        return Request(header, body, auth)

    # --- the default answers: a small Parsec service ------------------------------------------

    def _parsec(self, conn: Connection) -> None:
        request = conn.request
        status, result = self.handle(request)
        body = b"" if result is None else result.SerializeToString()
        conn.send(response_bytes(request, int(status), body))

    def handle(self, request: Request) -> tuple[int, Any]:
        """The status and result message a Parsec service would give."""
        opcode = Opcode(request.opcode)
        op = request.operation()
        result_type: Any = pb.CONTRACTS[opcode][1]
        with self._lock:
            if opcode == Opcode.LIST_PROVIDERS:
                result = result_type()
                result.providers.add(id=0, description="core")
                result.providers.add(id=TRUSTED_SERVICE_PROVIDER, description="fake TS")
                return ResponseStatus.SUCCESS, result
            if opcode == Opcode.LIST_KEYS:
                result = result_type()
                for stored in self.keys.values():
                    info = result.keys.add(provider_id=TRUSTED_SERVICE_PROVIDER, name=stored.name)
                    info.attributes.CopyFrom(stored.attributes)
                return ResponseStatus.SUCCESS, result
            if opcode == Opcode.PSA_IMPORT_KEY:
                if op.key_name in self.keys:
                    return ResponseStatus.PSA_ERROR_ALREADY_EXISTS, None
                private, public = _load_key(op.attributes, op.data)
                self.keys[op.key_name] = FakeKey(op.key_name, op.attributes, private, public)
                return ResponseStatus.SUCCESS, result_type()
            if opcode == Opcode.PSA_GENERATE_KEY:
                if op.key_name in self.keys:
                    return ResponseStatus.PSA_ERROR_ALREADY_EXISTS, None
                generated: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
                if op.attributes.key_type.WhichOneof("variant") == "ecc_key_pair":
                    generated = ec.generate_private_key(ec.SECP256R1())
                else:
                    generated = rsa.generate_private_key(65537, op.attributes.key_bits)
                self.keys[op.key_name] = FakeKey(
                    op.key_name, op.attributes, generated, generated.public_key()
                )
                return ResponseStatus.SUCCESS, result_type()
            key = self.keys.get(op.key_name)
            if key is None:
                return ResponseStatus.PSA_ERROR_DOES_NOT_EXIST, None
            if opcode == Opcode.PSA_DESTROY_KEY:
                del self.keys[op.key_name]
                return ResponseStatus.SUCCESS, result_type()
            if opcode == Opcode.PSA_EXPORT_PUBLIC_KEY:
                return ResponseStatus.SUCCESS, result_type(data=public_bytes(key.public))
            if opcode == Opcode.PSA_SIGN_HASH:
                if key.private is None:
                    return ResponseStatus.PSA_ERROR_NOT_PERMITTED, None
                return ResponseStatus.SUCCESS, result_type(
                    signature=sign_digest(key.private, op.hash)
                )
            if opcode == Opcode.PSA_VERIFY_HASH:
                if verify_digest(key.public, op.hash, op.signature):
                    return ResponseStatus.SUCCESS, result_type()
                return ResponseStatus.PSA_ERROR_INVALID_SIGNATURE, None
        return ResponseStatus.OPCODE_DOES_NOT_EXIST, None


def ec_pair_data(private: ec.EllipticCurvePrivateKey) -> bytes:
    """A P-256 key pair as PSA imports it: the private scalar."""
    return private.private_numbers().private_value.to_bytes(32, "big")


def rsa_pair_data(private: rsa.RSAPrivateKey) -> bytes:
    """An RSA key pair as PSA imports it: PKCS#1 RSAPrivateKey, DER."""
    return private.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


class RecordingProxy(_ThreadedUnixServer):
    """A Unix-socket proxy in front of a Parsec service that records every request; each
    connection is relayed from its own thread, so clients running side by side are not
    serialised by the proxy."""

    def __init__(self, path: Path, upstream: Path) -> None:
        self.upstream = upstream
        super().__init__(path, connection_grace=35)

    def key_names(self, opcode: Opcode) -> list[str]:
        with self._lock:
            return [r.operation().key_name for r in self.requests if r.opcode == opcode]

    def _handle(self, client: socket.socket) -> None:
        with client, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as service:
            client.settimeout(30)
            service.settimeout(30)
            try:
                header = Header.decode(FakeParsec._read_exact(client, HEADER.size))
                body = FakeParsec._read_exact(client, header.body_len)
                auth = FakeParsec._read_exact(client, header.auth_len)
                with self._lock:
                    self.requests.append(Request(header, body, auth))
                service.connect(str(self.upstream))
                service.sendall(header.encode() + body + auth)
                while chunk := service.recv(65536):
                    client.sendall(chunk)
            except (OSError, ValueError):
                return
