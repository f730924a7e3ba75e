"""Services of the test process: an RSE model and a Parsec service served from threads over
real Unix sockets (the fixtures of tests/conftest.py start them)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from parsec_rse_model.server import RseServer, ServerConfig
from parsec_service.client import Auth, ParsecClient
from parsec_service.rse_link.client import RseClient
from parsec_service.server import ParsecServer, ParsecService


@dataclass
class RunningRse:
    """An RSE model served from a thread of the test process, over a real Unix socket."""

    server: RseServer
    thread: threading.Thread
    config: ServerConfig

    @property
    def socket_path(self) -> Path:
        return self.config.socket_path

    def client(self, client_id: int = 0) -> RseClient:
        return RseClient(self.socket_path, client_id=client_id)

    def console(self) -> str:
        assert self.config.console_log is not None
        return self.config.console_log.read_text()

    def stop(self) -> None:
        self.server.request_stop()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive(), "RSE server thread did not stop"


def start_in_thread(config: ServerConfig) -> RunningRse:
    server = RseServer(config)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return RunningRse(server, thread, config)


@dataclass
class RunningParsec:
    server: ParsecServer
    thread: threading.Thread
    socket_path: Path
    rse: RunningRse
    service: ParsecService

    def client(self, auth: Auth | None = None, **kwargs: object) -> ParsecClient:
        return ParsecClient(self.socket_path, auth=auth, **kwargs)  # type: ignore[arg-type]

    def stop(self) -> None:
        self.server.request_stop()
        self.thread.join(timeout=15)
        assert not self.thread.is_alive(), "Parsec server thread did not stop"
