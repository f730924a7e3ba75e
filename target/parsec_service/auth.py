"""Authenticators: who is asking, as an application name the key store is namespaced by.

- Direct (1): the authentication bytes are the application's name in UTF-8. It trusts the
  client, as upstream's Direct authenticator does; fit for demos and containers.
- UnixPeerCredentials (3): the bytes are the caller's uid (u32, little-endian), which must equal
  the uid the kernel reports for the socket peer (SO_PEERCRED); the application is that uid.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from .constants import AuthType, ResponseStatus
from .wire import WireError

_PEERCRED = struct.Struct("3i")


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int


def peer_of(sock: socket.socket) -> Peer:
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    return Peer(*_PEERCRED.unpack(raw))


def authenticate(auth_type: AuthType, auth: bytes, peer: Peer) -> str:
    """The application name for these authentication bytes, or AuthenticationError."""
    if auth_type == AuthType.DIRECT:
        try:
            name = auth.decode("utf-8")
        except UnicodeDecodeError:
            raise WireError(ResponseStatus.AUTHENTICATION_ERROR, "name is not UTF-8") from None
        if not name:
            raise WireError(ResponseStatus.AUTHENTICATION_ERROR, "empty application name")
        return name
    if auth_type == AuthType.UNIX_PEER_CREDENTIALS:
        if len(auth) != 4:
            raise WireError(ResponseStatus.AUTHENTICATION_ERROR, f"{len(auth)} bytes, not a uid")
        (uid,) = struct.unpack("<I", auth)
        if uid != peer.uid:
            raise WireError(
                ResponseStatus.AUTHENTICATION_ERROR, f"uid {uid} claimed, peer is uid {peer.uid}"
            )
        return str(uid)
    raise WireError(ResponseStatus.AUTHENTICATOR_NOT_REGISTERED, auth_type.label)


def description(auth_type: AuthType) -> str:
    if auth_type == AuthType.DIRECT:
        return "Direct authenticator: the client states its application name"
    return "Unix Peer Credentials authenticator: the application is the caller's uid"
