"""The Parsec-enabled TLS demo on this machine (host mode), and the harness tests use for it.

A run starts, each with its own log in a run directory: the RSE model, the Parsec service
(Trusted Service provider on the model), and ``ssl_server`` in a private network namespace;
then ``ssl_client1`` performs the handshake with its asymmetric operations going through the
Parsec SE driver. What the RSE served for the handshake is read from the model's JSON events,
between the client's start and its end.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .machine.lifecycle import stop_group
from .native_build import HostBuild, build_host
from .netns import NetworkNamespace, port_free
from .paths import new_run_dir
from .services import Service, ServiceError, start_parsec_service, start_rse_model, tail

TLS_PORT = 4433
ASYMMETRIC_CALLS = ("psa_import_key", "psa_verify_hash", "psa_destroy_key")


@dataclass
class ClientRun:
    command: list[str]
    output: str
    returncode: int
    seconds: float
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def calls(self, function: str, status: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events
            if e["function"] == function and (status is None or e["status"] == status)
        ]


def read_events(path: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """The RSE calls logged after ``offset`` bytes of the events file, and the new offset."""
    with open(path, "rb") as events:
        events.seek(offset)
        data = events.read()
    complete = data[: data.rfind(b"\n") + 1]
    records = [json.loads(line) for line in complete.splitlines() if line.strip()]
    return [r for r in records if r.get("kind") == "call"], offset + len(complete)


def summary(events: Sequence[Mapping[str, Any]]) -> str:
    """``RSE served: psa_import_key x2, psa_verify_hash x2 (PSA_SUCCESS), ...`` and details."""
    order: list[str] = []
    statuses: dict[str, Counter[str]] = {}
    for event in events:
        name = event["function"]
        if name not in statuses:
            order.append(name)
            statuses[name] = Counter()
        statuses[name][event["status"]] += 1
    parts = []
    for name in order:
        counts = statuses[name]
        text = f"{name} x{sum(counts.values())}"
        if name == "psa_verify_hash" or set(counts) != {"PSA_SUCCESS"}:
            text += (
                " ("
                + ", ".join(f"{n} {s}" if len(counts) > 1 else s for s, n in counts.items())
                + ")"
            )
        parts.append(text)
    lines = ["RSE served: " + (", ".join(parts) if parts else "nothing")]
    for event in events:
        what = []
        if event["function"] == "psa_import_key":
            what = [event.get("key_type", "?"), f"{event.get('bits', '?')} bits"]
        elif "alg" in event:
            what = [event["alg"]]
        key = f"key 0x{event['key_id']:08x}" if "key_id" in event else ""
        lines.append(f"  {event['function']:<16} {key:<15} {' '.join(what):<32} {event['status']}")
    return "\n".join(lines)


class TlsDemo:
    """RSE model + Parsec service + a TLS server, and a way to run the client against them."""

    def __init__(
        self,
        run_dir: Path,
        build: HostBuild,
        server: str = "ssl_server",
        server_args: Sequence[str] = (),
        services_of: TlsDemo | None = None,
    ) -> None:
        """``services_of``: use that demo's RSE model and Parsec service (started and stopped
        by it) instead of starting a pair; this demo brings its own namespace and server."""
        self.run_dir = run_dir
        self._services_of = services_of
        self.build = build
        self.server_name = server
        self.server_args = list(server_args)
        self.rse: Service | None = None
        self.parsec: Service | None = None
        self.server: subprocess.Popen[bytes] | None = None
        self._stack = ExitStack()
        self._client_runs = itertools.count(1)
        self.netns = NetworkNamespace()

    # --- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> TlsDemo:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self._services_of is not None:
            self.rse, self.parsec = self._services_of.rse, self._services_of.parsec
        else:
            self.start_rse()
            assert self.rse is not None
            self.parsec = start_parsec_service(self.run_dir, self.rse.socket_path)
        self._stack.enter_context(self.netns)
        if not self.netns.isolated and not port_free(TLS_PORT):
            raise ServiceError(
                f"port {TLS_PORT} is taken and no private network namespace can be made "
                "(run as root to isolate the demo)"
            )
        self.start_server()

    def start_rse(self) -> None:
        self.rse = start_rse_model(self.run_dir)

    def stop_rse(self) -> None:
        if self.rse is not None:
            self.rse.stop()

    def stop_parsec(self) -> None:
        if self.parsec is not None:
            self.parsec.stop()

    def start_server(self, timeout: float = 20.0) -> None:
        log_path = self.run_dir / f"{self.server_name}.log"
        command = self.netns.command([str(self.build.program(self.server_name)), *self.server_args])
        with open(log_path, "ab") as log:
            offset = log.tell()
            self.server = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.run_dir,
            )
        deadline = time.monotonic() + timeout
        while b"Waiting for a remote connection" not in log_path.read_bytes()[offset:]:
            if self.server.poll() is not None or time.monotonic() > deadline:
                self.stop_server()
                raise ServiceError(
                    f"{self.server_name} did not start; log {log_path}:\n{tail(log_path)}"
                )
            time.sleep(0.02)

    def stop_server(self) -> None:
        stop_group(self.server, grace=5)
        self.server = None

    def close(self) -> None:
        self.stop_server()
        if self._services_of is None:
            for service in (self.parsec, self.rse):
                if service is not None:
                    service.stop()
        self._stack.close()

    # --- the client ---------------------------------------------------------------------------

    @property
    def events_path(self) -> Path:
        return (self._services_of or self).run_dir / "rse-events.jsonl"

    def client_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        assert self.parsec is not None
        env = dict(os.environ)
        env["PARSEC_SERVICE_ENDPOINT"] = f"unix:{self.parsec.socket_path}"
        env.update(extra or {})
        return env

    def run_client(
        self,
        address: str = "127.0.0.1",
        ca_file: Path | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 60.0,
        log_name: str = "ssl_client1.log",
        wrapper: Sequence[str] = (),
    ) -> ClientRun:
        """Run ssl_client1 once; its output also goes to the run directory.

        Each run gets a working directory of its own: with MBEDTLS_PSA_CRYPTO_SE_C, Mbed TLS
        keeps the SE driver's state in PSA ITS files in the working directory, through a
        fixed temporary file name that clients running side by side would fight over.
        """
        workdir = self.run_dir / f"client-{next(self._client_runs)}"
        workdir.mkdir(parents=True, exist_ok=True)
        argv = [str(self.build.program("ssl_client1")), address]
        if ca_file is not None:
            argv.append(str(ca_file))
        command = self.netns.command([*wrapper, *argv])
        _, offset = read_events(self.events_path)
        started = time.monotonic()
        try:
            result = subprocess.run(
                command,
                env=self.client_env(env),
                capture_output=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
                cwd=workdir,
            )
            output = result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
            returncode = result.returncode
        except subprocess.TimeoutExpired as exc:
            output = (exc.stdout or b"").decode(errors="replace") + "\n[timed out]\n"
            returncode = -1
        seconds = time.monotonic() - started
        with open(self.run_dir / log_name, "a") as log:
            log.write(f"$ {' '.join(command)}\n{output}\n[exit {returncode}, {seconds:.2f} s]\n")
        events, _ = read_events(self.events_path, offset)
        return ClientRun(command, output, returncode, seconds, events)


def run_host_demo() -> int:
    """``./tools/demo --host``: build what is missing, run one handshake, show the RSE's part."""
    build = build_host()
    run_dir = new_run_dir("demo-host")
    print(f"Run directory: {run_dir}")
    print("Starting the RSE model, the Parsec service and ssl_server ...")
    with TlsDemo(run_dir, build) as demo:
        where = "a private network namespace" if demo.netns.isolated else "this host's network"
        print(f"ssl_server listens on port {TLS_PORT} in {where}; running ssl_client1:\n")
        run = demo.run_client()
        print(run.output)
        print(summary(run.events))
        imports = len(run.calls("psa_import_key", "PSA_SUCCESS"))
        destroys = len(run.calls("psa_destroy_key", "PSA_SUCCESS"))
        print(f"Keys left behind in the RSE by the handshake: {imports - destroys}")
    print(f"\nEverything stopped; logs in {run_dir}")
    return 0 if run.ok else 1
