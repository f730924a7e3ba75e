"""A Parsec client library (wire protocol 1.0): the base of the CLI and of the tests.

It behaves like Parsec's basic clients: the endpoint comes from ``PARSEC_SERVICE_ENDPOINT``
(``unix:/path``) or defaults to ``/run/parsec/parsec.sock``; with no authenticator given it
asks the service which one is configured and uses it (the uid for Unix peer credentials, the
application name for Direct); crypto operations go to the first provider the service lists.
"""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from google.protobuf.message import Message

from . import contracts as pb
from .config import DEFAULT_SOCKET
from .constants import CORE_OPCODES, AuthType, Opcode, ProviderId, ResponseStatus
from .contracts import CONTRACTS
from .wire import HEADER, Header, encode_request

M = TypeVar("M", bound=Message)


class ParsecError(Exception):
    def __init__(self, status: int, detail: str = "") -> None:
        try:
            self.status: ResponseStatus | int = ResponseStatus(status)
            text = self.status.label
        except ValueError:
            self.status = status
            text = f"status {status}"
        self.detail = detail
        super().__init__(f"{text}: {detail}" if detail else text)


@dataclass(frozen=True)
class Auth:
    """How the client authenticates: ``Auth.direct("name")``, ``Auth.peer()``, ``Auth.none()``."""

    auth_type: AuthType
    data: bytes = b""

    @classmethod
    def direct(cls, app_name: str) -> Auth:
        return cls(AuthType.DIRECT, app_name.encode())

    @classmethod
    def peer(cls, uid: int | None = None) -> Auth:
        return cls(
            AuthType.UNIX_PEER_CREDENTIALS, struct.pack("<I", os.getuid() if uid is None else uid)
        )

    @classmethod
    def none(cls) -> Auth:
        return cls(AuthType.NO_AUTH)


def default_endpoint() -> Path:
    endpoint = os.environ.get("PARSEC_SERVICE_ENDPOINT")
    if not endpoint:
        return DEFAULT_SOCKET
    if not endpoint.startswith("unix:"):
        raise ValueError(f"PARSEC_SERVICE_ENDPOINT {endpoint!r}: only unix:/path is supported")
    return Path(endpoint.removeprefix("unix:"))


class ParsecClient:
    def __init__(
        self,
        endpoint: str | Path | None = None,
        auth: Auth | None = None,
        app_name: str = "parsec-tool",
        timeout: float = 10.0,
        provider: int | None = None,
    ) -> None:
        self.endpoint = Path(endpoint) if endpoint is not None else default_endpoint()
        self.timeout = timeout
        self.app_name = app_name
        self._auth = auth
        self._provider = provider
        self.session = 0

    # --- transport ----------------------------------------------------------------------------

    def exchange(self, request: bytes) -> tuple[Header, bytes]:
        """Send raw request bytes on a fresh connection; return the response header and body."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout)
            try:
                sock.connect(str(self.endpoint))
                sock.sendall(request)
                raw = _recv_exact(sock, HEADER.size)
                header = Header.decode(raw)
                body = _recv_exact(sock, header.body_len)
            except OSError as exc:
                raise ParsecError(
                    ResponseStatus.CONNECTION_ERROR, f"{self.endpoint}: {exc}"
                ) from exc
        return header, body

    def request(
        self,
        opcode: Opcode,
        operation: Message,
        provider: int | None = None,
        auth: Auth | None = None,
    ) -> Message:
        if provider is None:
            provider = ProviderId.CORE if opcode in CORE_OPCODES else self.crypto_provider()
        auth = auth if auth is not None else self.auth()
        header = Header(
            provider=provider, session=self.session, auth_type=auth.auth_type, opcode=opcode
        )
        reply, body = self.exchange(
            encode_request(header, operation.SerializeToString(), auth.data)
        )
        if reply.status != ResponseStatus.SUCCESS:
            raise ParsecError(reply.status, f"{Opcode(opcode).label}")
        result = CONTRACTS[opcode][1]()
        result.ParseFromString(body)
        return result

    def auth(self) -> Auth:
        if self._auth is None:
            self._auth = self._discover_auth()
        return self._auth

    def _discover_auth(self) -> Auth:
        authenticators = self.list_authenticators()
        if not authenticators:
            return Auth.none()
        auth_type = AuthType(authenticators[0].id)
        if auth_type == AuthType.UNIX_PEER_CREDENTIALS:
            return Auth.peer()
        if auth_type == AuthType.DIRECT:
            return Auth.direct(self.app_name)
        raise ParsecError(ResponseStatus.AUTHENTICATOR_NOT_REGISTERED, auth_type.label)

    def crypto_provider(self) -> int:
        if self._provider is None:
            providers = [p for p in self.list_providers() if p.id != ProviderId.CORE]
            if not providers:
                raise ParsecError(ResponseStatus.PROVIDER_NOT_REGISTERED, "no crypto provider")
            self._provider = providers[0].id
        return self._provider

    # --- core operations ----------------------------------------------------------------------

    def ping(self) -> tuple[int, int]:
        result: Any = self.request(Opcode.PING, pb.ping.Operation(), auth=Auth.none())
        return result.wire_protocol_version_maj, result.wire_protocol_version_min

    def list_providers(self) -> list[Any]:
        result: Any = self.request(
            Opcode.LIST_PROVIDERS, pb.list_providers.Operation(), auth=Auth.none()
        )
        return list(result.providers)

    def list_opcodes(self, provider_id: int) -> list[int]:
        op = pb.list_opcodes.Operation(provider_id=provider_id)
        result: Any = self.request(Opcode.LIST_OPCODES, op, auth=Auth.none())
        return list(result.opcodes)

    def list_authenticators(self) -> list[Any]:
        op = pb.list_authenticators.Operation()
        result: Any = self.request(Opcode.LIST_AUTHENTICATORS, op, auth=Auth.none())
        return list(result.authenticators)

    def list_keys(self) -> list[Any]:
        result: Any = self.request(Opcode.LIST_KEYS, pb.list_keys.Operation())
        return list(result.keys)

    def list_clients(self) -> list[str]:
        result: Any = self.request(Opcode.LIST_CLIENTS, pb.list_clients.Operation())
        return list(result.clients)

    def delete_client(self, client: str) -> None:
        self.request(Opcode.DELETE_CLIENT, pb.delete_client.Operation(client=client))

    # --- crypto operations --------------------------------------------------------------------

    def import_key(self, name: str, attributes: Message, data: bytes) -> None:
        op = pb.psa_import_key.Operation(key_name=name, attributes=attributes, data=data)
        self.request(Opcode.PSA_IMPORT_KEY, op)

    def generate_key(self, name: str, attributes: Message) -> None:
        self.request(
            Opcode.PSA_GENERATE_KEY,
            pb.psa_generate_key.Operation(key_name=name, attributes=attributes),
        )

    def destroy_key(self, name: str) -> None:
        self.request(Opcode.PSA_DESTROY_KEY, pb.psa_destroy_key.Operation(key_name=name))

    def export_public_key(self, name: str) -> bytes:
        op = pb.psa_export_public_key.Operation(key_name=name)
        result: Any = self.request(Opcode.PSA_EXPORT_PUBLIC_KEY, op)
        return bytes(result.data)

    def sign_hash(self, name: str, alg: Message, hash_value: bytes) -> bytes:
        op = pb.psa_sign_hash.Operation(key_name=name, alg=alg, hash=hash_value)
        result: Any = self.request(Opcode.PSA_SIGN_HASH, op)
        return bytes(result.signature)

    def verify_hash(self, name: str, alg: Message, hash_value: bytes, signature: bytes) -> None:
        op = pb.psa_verify_hash.Operation(
            key_name=name, alg=alg, hash=hash_value, signature=signature
        )
        self.request(Opcode.PSA_VERIFY_HASH, op)

    def generate_random(self, size: int) -> bytes:
        result: Any = self.request(
            Opcode.PSA_GENERATE_RANDOM, pb.psa_generate_random.Operation(size=size)
        )
        return bytes(result.random_bytes)

    def hash_compute(self, hash_value: int, data: bytes) -> bytes:
        op = pb.psa_hash_compute.Operation(alg=hash_value, input=data)
        result: Any = self.request(Opcode.PSA_HASH_COMPUTE, op)
        return bytes(result.hash)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = []
    remaining = size
    while remaining:
        chunk = sock.recv(min(remaining, 65536))
        if not chunk:
            raise ConnectionError("the service closed the connection early")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


# --- attribute builders, as parsec-tool creates keys ----------------------------------------------


def sign_alg(scheme: str, hash_value: int | None) -> Any:
    """``Algorithm.AsymmetricSignature`` for ``scheme`` (rsa_pkcs1v15_sign, rsa_pss, ecdsa,
    deterministic_ecdsa) with a specific hash, or the ANY wildcard when ``hash_value`` is None."""
    alg = pb.psa_algorithm.Algorithm.AsymmetricSignature()
    sign_hash = getattr(alg, scheme).hash_alg
    if hash_value is None:
        sign_hash.any.SetInParent()
    else:
        sign_hash.specific = hash_value
    return alg


def key_attributes(
    key_type: str,
    bits: int,
    alg: Any,
    curve_family: int | None = None,
    **usage: bool,
) -> Any:
    """``KeyAttributes`` for ``key_type`` (a KeyType variant name) with a signature policy."""
    attributes = pb.psa_key_attributes.KeyAttributes(key_bits=bits)
    variant = getattr(attributes.key_type, key_type)
    variant.SetInParent()
    if curve_family is not None:
        variant.curve_family = curve_family
    attributes.key_policy.key_usage_flags.CopyFrom(pb.psa_key_attributes.UsageFlags(**usage))
    attributes.key_policy.key_algorithm.asymmetric_signature.CopyFrom(alg)
    return attributes


SHA_256 = pb.psa_algorithm.Algorithm.SHA_256
SHA_384 = pb.psa_algorithm.Algorithm.SHA_384
SHA_512 = pb.psa_algorithm.Algorithm.SHA_512
SECP_R1 = pb.psa_key_attributes.KeyType.SECP_R1
