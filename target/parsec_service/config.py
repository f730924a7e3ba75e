"""The service configuration: Parsec's own ``config.toml`` sections and keys, where they apply.

Recognised (with upstream's defaults)::

    [core_settings]  log_level = "warn", body_len_limit = 1048576, buffer_size_limit = 1048576,
                     allow_root = false, log_error_details = false, thread_pool_size = 8
    [listener]       listener_type = "DomainSocket", timeout = 200 (ms), socket_path
    [authenticator]  auth_type = "Direct" | "UnixPeerCredentials", admins = [{ name = "..." }]
    [[key_manager]]  name, manager_type = "SQLite", sqlite_db_path
    [[provider]]     provider_type = "TrustedService", key_info_manager, name

and this service's own limits (not upstream keys; see the README)::

    [core_settings]  max_keys_per_application = 64, max_key_info_bytes_per_application = 65536,
                     rse_key_capacity = 256, key_reserve = 32,
                     keys_guaranteed_per_application = 4, max_key_name_length = 256 (bytes),
                     max_key_bits = 4096, max_random_bytes = 4096,
                     max_requests_in_flight_per_peer = 4, max_key_generations_in_flight = 2,
                     temporary_key_check_interval = 5 (s)
    [listener]       max_connections = 256, max_connections_per_peer = 32,
                     connection_reserve = 64, connections_guaranteed_per_peer = 4

Anything else upstream accepts but this service cannot honour (another provider or key manager
type, the JWT-SVID authenticator) is refused with a message that says so, rather than ignored.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .admission import Admission
from .constants import AUTH_TYPE_NAMES, AuthType

DEFAULT_SOCKET = Path("/run/parsec/parsec.sock")
LOG_LEVELS = {"error": 40, "warn": 30, "info": 20, "debug": 10, "trace": 5}


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class ServiceConfig:
    log_level: str = "warn"
    body_len_limit: int = 1 << 20
    buffer_size_limit: int = 1 << 20
    allow_root: bool = False
    log_error_details: bool = False
    thread_pool_size: int = 8
    max_requests_in_flight_per_peer: int = 4
    max_key_generations_in_flight: int = 2
    listener_timeout_ms: int = 200
    admission: Admission = field(default_factory=Admission)
    max_key_name_length: int = 256
    max_key_bits: int = 4096
    max_random_bytes: int = 4096
    temporary_key_check_interval: int = 5
    max_connections: int = 256
    max_connections_per_peer: int = 32
    connection_reserve: int = 64
    connections_guaranteed_per_peer: int = 4
    socket_path: Path = DEFAULT_SOCKET
    auth_type: AuthType = AuthType.UNIX_PEER_CREDENTIALS
    admins: frozenset[str] = frozenset()
    kim_db_path: Path | None = None
    provider_name: str = "trusted-service-provider"


def _get(table: dict[str, Any], key: str, kind: type, default: Any, where: str) -> Any:
    value = table.get(key, default)
    if kind is int and isinstance(value, bool):
        raise ConfigError(f"{where}.{key} must be an integer")
    if not isinstance(value, kind):
        raise ConfigError(f"{where}.{key} must be a {kind.__name__}, not {value!r}")
    return value


def load(path: Path | None) -> ServiceConfig:
    """The configuration in ``path``, or the defaults when there is none."""
    if path is None:
        return ServiceConfig()
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    return parse(data)


def parse(data: dict[str, Any]) -> ServiceConfig:
    defaults = ServiceConfig()
    core = data.get("core_settings", {})
    listener = data.get("listener", {})
    auth = data.get("authenticator", {})
    log_level = _get(core, "log_level", str, defaults.log_level, "core_settings")
    if log_level not in LOG_LEVELS:
        raise ConfigError(f"core_settings.log_level must be one of {', '.join(LOG_LEVELS)}")
    listener_type = _get(listener, "listener_type", str, "DomainSocket", "listener")
    if listener_type != "DomainSocket":
        raise ConfigError(f"listener.listener_type {listener_type!r}: only DomainSocket exists")
    auth_name = _get(auth, "auth_type", str, "UnixPeerCredentials", "authenticator")
    if auth_name not in AUTH_TYPE_NAMES or AUTH_TYPE_NAMES[auth_name] == AuthType.JWT_SVID:
        raise ConfigError(
            f"authenticator.auth_type {auth_name!r}: this service offers Direct and "
            "UnixPeerCredentials"
        )
    admins = auth.get("admins", [])
    if not isinstance(admins, list) or not all(
        isinstance(a, dict) and isinstance(a.get("name"), str) for a in admins
    ):
        raise ConfigError('authenticator.admins must be a list like [{ name = "admin" }]')
    config = ServiceConfig(
        log_level=log_level,
        body_len_limit=_positive(core, "body_len_limit", defaults.body_len_limit),
        buffer_size_limit=_positive(core, "buffer_size_limit", defaults.buffer_size_limit),
        allow_root=_get(core, "allow_root", bool, defaults.allow_root, "core_settings"),
        log_error_details=_get(core, "log_error_details", bool, False, "core_settings"),
        thread_pool_size=_positive(core, "thread_pool_size", defaults.thread_pool_size),
        max_requests_in_flight_per_peer=_positive(
            core, "max_requests_in_flight_per_peer", defaults.max_requests_in_flight_per_peer
        ),
        max_key_generations_in_flight=_positive(
            core, "max_key_generations_in_flight", defaults.max_key_generations_in_flight
        ),
        listener_timeout_ms=_positive(
            listener, "timeout", defaults.listener_timeout_ms, "listener"
        ),
        admission=_admission(core),
        max_key_name_length=_positive(core, "max_key_name_length", defaults.max_key_name_length),
        max_key_bits=_positive(core, "max_key_bits", defaults.max_key_bits),
        max_random_bytes=_positive(core, "max_random_bytes", defaults.max_random_bytes),
        temporary_key_check_interval=_positive(
            core, "temporary_key_check_interval", defaults.temporary_key_check_interval
        ),
        max_connections=_positive(
            listener, "max_connections", defaults.max_connections, "listener"
        ),
        max_connections_per_peer=_positive(
            listener, "max_connections_per_peer", defaults.max_connections_per_peer, "listener"
        ),
        connection_reserve=_positive(
            listener, "connection_reserve", defaults.connection_reserve, "listener"
        ),
        connections_guaranteed_per_peer=_positive(
            listener,
            "connections_guaranteed_per_peer",
            defaults.connections_guaranteed_per_peer,
            "listener",
        ),
        socket_path=Path(_get(listener, "socket_path", str, str(DEFAULT_SOCKET), "listener")),
        auth_type=AUTH_TYPE_NAMES[auth_name],
        admins=frozenset(a["name"] for a in admins),
    )
    if config.connection_reserve >= config.max_connections:
        raise ConfigError("listener.connection_reserve must be less than max_connections")
    managers = _tables(data, "key_manager")
    providers = _tables(data, "provider")
    kim_path: Path | None = None
    manager_names = set()
    for manager in managers:
        kind = _get(manager, "manager_type", str, "", "key_manager")
        if kind != "SQLite":
            raise ConfigError(f"key_manager.manager_type {kind!r}: only SQLite is available here")
        manager_names.add(_get(manager, "name", str, "", "key_manager"))
        if "sqlite_db_path" in manager and kim_path is None:
            kim_path = Path(_get(manager, "sqlite_db_path", str, "", "key_manager"))
    provider_name = defaults.provider_name
    for provider in providers:
        kind = _get(provider, "provider_type", str, "", "provider")
        if kind != "TrustedService":
            raise ConfigError(
                f"provider.provider_type {kind!r}: only TrustedService (the RSE) is available here"
            )
        kim = provider.get("key_info_manager")
        if kim is not None and kim not in manager_names:
            raise ConfigError(f"provider.key_info_manager {kim!r} names no [[key_manager]]")
        provider_name = _get(provider, "name", str, provider_name, "provider")
    if len(providers) > 1:
        raise ConfigError("only one TrustedService provider can be configured")
    return replace(config, kim_db_path=kim_path, provider_name=provider_name)


def _admission(core: dict[str, Any]) -> Admission:
    defaults = Admission()
    admission = Admission(
        **{
            name: _positive(core, name, getattr(defaults, name))
            for name in (
                "max_keys_per_application",
                "max_key_info_bytes_per_application",
                "rse_key_capacity",
                "key_reserve",
                "keys_guaranteed_per_application",
            )
        }
    )
    if admission.key_reserve >= admission.rse_key_capacity:
        raise ConfigError("core_settings.key_reserve must be less than rse_key_capacity")
    if admission.keys_guaranteed_per_application > admission.key_reserve:
        raise ConfigError(
            "core_settings.keys_guaranteed_per_application must not exceed key_reserve"
        )
    return admission


def _positive(table: dict[str, Any], key: str, default: int, where: str = "core_settings") -> int:
    value = _get(table, key, int, default, where)
    if value < 1:
        raise ConfigError(f"{where}.{key} must be positive")
    return int(value)


def _tables(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    tables = data.get(key, [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(f"[[{key}]] must be an array of tables")
    return tables
