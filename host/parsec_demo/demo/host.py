"""The Parsec-enabled TLS demo on this machine (host mode), and the harness tests use for it.

A run starts, each with its own log in a run directory: the RSE model, the Parsec service
(Trusted Service provider on the model), and ``ssl_server`` in a private network namespace;
then ``ssl_client1`` performs the handshake with its asymmetric operations going through the
Parsec SE driver. What the RSE served for the handshake is the part of the model's JSON events
written while the client ran.
"""

from __future__ import annotations

import itertools
import logging
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path

import parsec_demo_machine as machine
from parsec_demo_evidence import LogWindow, event_calls
from parsec_demo_rse import RseFiles

from ..native_build import HostBuild, build_host
from ..netns import NetworkNamespace, port_free
from ..paths import demo_pki_dir, new_run_dir
from ..services import Service, ServiceError, start_parsec_service, start_rse_model
from . import mutual_tls
from .local_server import LocalServer
from .results import ClientRun, summary, verdict

logger = logging.getLogger(__name__)


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
        self._stack = ExitStack()
        self._client_runs = itertools.count(1)
        self.netns = NetworkNamespace()
        self.server = LocalServer(run_dir / f"{server}.log", run_dir, wrap=self.netns.command)

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
        if not self.netns.isolated and not port_free(machine.TLS_PORT):
            raise ServiceError(
                f"port {machine.TLS_PORT} is taken and no private network namespace can be made "
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
        self.server.start([str(self.build.program(self.server_name)), *self.server_args], timeout)

    def stop_server(self) -> None:
        self.server.stop()

    def close(self) -> None:
        self.stop_server()
        if self._services_of is None:
            for service in (self.parsec, self.rse):
                if service is not None:
                    service.stop()
        self._stack.close()

    # --- the client ---------------------------------------------------------------------------

    @property
    def rse_files(self) -> RseFiles:
        """The files of the RSE model this demo uses (its own, or ``services_of``'s)."""
        return RseFiles((self._services_of or self).run_dir)

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
        options: Sequence[str] = (),
        workdir: Path | None = None,
    ) -> ClientRun:
        """Run ssl_client1 once (``options``: its NAME=VALUE arguments); its output also goes
        to the run directory.

        Each run gets a working directory of its own unless ``workdir`` names one: with
        MBEDTLS_PSA_CRYPTO_SE_C, Mbed TLS keeps the SE driver's state in PSA ITS files in the
        working directory, through a fixed temporary file name that clients running side by
        side would fight over. A client with a persistent key runs where its key was made.
        """
        if workdir is None:
            workdir = self.run_dir / f"client-{next(self._client_runs)}"
            workdir.mkdir(parents=True, exist_ok=True)
        argv = machine.client_command(address, options, str(ca_file) if ca_file else None)
        argv[0] = str(self.build.program(argv[0]))
        return self.run_program(argv, workdir, env, timeout, log_name, wrapper)

    def run_program(
        self,
        argv: Sequence[str],
        workdir: Path,
        env: Mapping[str, str] | None = None,
        timeout: float = 60.0,
        log_name: str = "ssl_client1.log",
        wrapper: Sequence[str] = (),
    ) -> ClientRun:
        """Run a client-side program (ssl_client1, parsec_client_key) once in ``workdir``
        with the client's environment, and collect what the RSE served meanwhile."""
        command = self.netns.command([*wrapper, *argv])
        started = time.monotonic()
        with LogWindow(self.rse_files.events_log) as rse:
            try:
                result = subprocess.run(
                    command,
                    env=self.client_env(env),
                    capture_output=True,
                    timeout=timeout,
                    stdin=subprocess.DEVNULL,
                    cwd=workdir,
                )
                output = result.stdout.decode(errors="replace")
                output += result.stderr.decode(errors="replace")
                returncode = result.returncode
            except subprocess.TimeoutExpired as exc:
                output = (exc.stdout or b"").decode(errors="replace") + "\n[timed out]\n"
                returncode = -1
        seconds = time.monotonic() - started
        with open(self.run_dir / log_name, "a") as log:
            log.write(f"$ {' '.join(command)}\n{output}\n[exit {returncode}, {seconds:.2f} s]\n")
        return ClientRun(command, output, returncode, seconds, event_calls(rse.text))


class HostClientSide:
    """A ``mutual_tls.ClientSide`` on this machine: the demo's programs from the host build,
    run with the demo's client environment in ``key_dir``."""

    def __init__(self, demo: TlsDemo, key_dir: Path) -> None:
        self.demo = demo
        self.key_dir = key_dir
        self.pki = str(demo_pki_dir())
        self.ca_file = f"{self.pki}/ca.pem"
        key_dir.mkdir(parents=True, exist_ok=True)

    def as_client(self, argv: Sequence[str]) -> ClientRun:
        program = str(self.demo.build.program(argv[0]))
        return self.demo.run_program([program, *argv[1:]], self.key_dir, log_name="mtls.log")

    as_ca = as_client


def run_host_demo(tls13: bool = False, mtls: bool = False) -> int:
    """``./tools/demo --host``: build what is missing, run one handshake, show the RSE's part.
    ``tls13``: the client speaks TLS 1.3 instead of 1.2. ``mtls``: the client authenticates
    with a key made in the RSE (``mutual_tls``), against ``ssl_server2`` requiring it.

    The client's output and the RSE's part are the result (standard output); what the demo is
    doing meanwhile is logged (the command line shows it on standard error)."""
    build = build_host()
    run_dir = new_run_dir("demo-host")
    logger.info(f"Run directory: {run_dir}")
    server, server_args = "ssl_server", []
    if mtls:
        server, *server_args = machine.mutual_tls_server(str(demo_pki_dir()))
    logger.info(f"Starting the RSE model, the Parsec service and {server} ...")
    with TlsDemo(run_dir, build, server, server_args) as demo:
        where = "a private network namespace" if demo.netns.isolated else "this host's network"
        version = "TLS 1.3" if tls13 else "TLS 1.2"
        logger.info(
            f"{server} listens on port {machine.TLS_PORT} in {where}; running the client "
            f"directly (the host mode runs no container), {version}"
            + (", with a client key made in the RSE:" if mtls else ":")
        )
        if mtls:
            result = mutual_tls.run_mutual_tls(HostClientSide(demo, run_dir / "client-key"), tls13)
            print(mutual_tls.describe(result), flush=True)
            ok, calls = mutual_tls.passed(result), result.calls
        else:
            run = demo.run_client(options=machine.version_options(tls13))
            print(run.output)
            print(summary(run.calls))
            imports = len(run.served("psa_import_key", "PSA_SUCCESS"))
            destroys = len(run.served("psa_destroy_key", "PSA_SUCCESS"))
            print(f"Keys left behind in the RSE by the handshake: {imports - destroys}", flush=True)
            ok, calls = run.ok, run.calls
    logger.info(f"Everything stopped; logs in {run_dir}")
    what = f"the {'mutual ' if mtls else ''}{version} handshake on this machine"
    print(verdict(ok, what, calls, run_dir), flush=True)
    return 0 if ok else 1
