"""Fixtures shared by the test suite: an RSE model on a real socket, and key material."""

from __future__ import annotations

import logging
import threading
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from parsec_demo import services
from parsec_demo.native_build import HostBuild, build_host
from parsec_demo.services import parsec_config_text
from parsec_rse_model.server import ServerConfig
from parsec_service.config import parse as parse_config
from parsec_service.rse_link.client import RseClient
from parsec_service.server import ParsecServer, ParsecService, configure_logging
from support.running import RunningParsec, RunningRse, start_in_thread

#: Test modules one worker runs one after another, by the name of their chain:
#: - the dev VM's modules: that worker boots the session's dev VM once for all of them
#:   (tests/vm/conftest.py);
#: - the LAVA run, then the hostile-neighbour tests, which measure the Parsec service's latency
#:   while it is attacked: they never share the machine with the LAVA run's guest and its
#:   libguestfs appliance (with those and a second machine booting beside the dev VM, root's
#:   pings stalled past the tests' bound).
WORKER_CHAINS = {
    "the dev VM": ("tests/vm/test_dev_vm.py", "tests/vm/test_validation.py"),
    "the LAVA run, then the latency measures": (
        "tests/vm/test_lava_run.py",
        "tests/integration/test_hostile_neighbours.py",
    ),
}
#: The work handed out first, longest first (``--durations``), so that the suite ends on short
#: modules and no core idles while another finishes a long one: the work of minutes (each Debian
#: root is a unit of its own: they share nothing), then the modules of ten seconds or more.
LONG_WORK = (
    *WORKER_CHAINS["the dev VM"],
    "tests/packaging/test_debian_roots.py",
    "tests/vm/test_lava_run.py",
    "tests/integration/test_parsec_process.py",
    "tests/offline/test_ci_pipelines.py",
    "tests/integration/test_parsec_concurrency.py",
    "tests/unit/test_ssh_target.py",
    "tests/offline/test_lava_jobs.py",
    "tests/packaging/test_bootstrap.py",
    "tests/unit/test_banner_wait.py",
    "tests/integration/test_tls13_and_mutual_tls.py",
    "tests/packaging/test_pip_install.py",
    "tests/integration/test_tls_host.py",
)
SCOPE_PER_TEST = ("tests/packaging/test_debian_roots.py",)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadscope`` (./tools/test): each test module on one worker, the modules of a
    chain (``WORKER_CHAINS``) all on the same one, in the order of collection (the long work
    first)."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    chain_of = {module: name for name, modules in WORKER_CHAINS.items() for module in modules}

    class LongWorkFirst(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            scope: str = super()._split_scope(nodeid)
            if scope in chain_of:
                return chain_of[scope]
            return nodeid if scope in SCOPE_PER_TEST else scope

    config.option.loadscopereorder = False
    return LongWorkFirst(config, log)


def long_work_rank(item: pytest.Item) -> int:
    """Where ``item``'s module is in LONG_WORK; after all of them if it is not there."""
    module = item.nodeid.split("::")[0]
    return LONG_WORK.index(module) if module in LONG_WORK else len(LONG_WORK)


#: The tiers the suite is run in: ``-m quick`` between edits (about a minute), everything in CI.
QUICK_DIRECTORIES = ("unit", "offline")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long work first (``LONG_WORK``; otherwise the order of collection), and ``quick`` on
    every test of tests/unit and tests/offline that is not marked ``slow`` (they need no
    machine, no root file system and no daemon of their own beyond threads)."""
    items.sort(key=long_work_rank)
    for item in items:
        if item.path.parent.name in QUICK_DIRECTORIES and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.quick)


@pytest.fixture
def restore_toolkit_logging() -> Iterator[None]:
    """For tests that call the CLI's main() in this process: it points the toolkit's log
    handler at the test's captured stderr; afterwards the handlers and level are as before."""
    logger = logging.getLogger("parsec_demo")
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)


@pytest.fixture
def rse_factory(tmp_path: Path) -> Iterator[Callable[..., RunningRse]]:
    """Start RSE models (keyword arguments go to ServerConfig); all are stopped at the end."""
    running: list[RunningRse] = []

    def start(name: str = "rse", **overrides: object) -> RunningRse:
        settings: dict[str, object] = {
            "socket_path": tmp_path / f"{name}.sock",
            "store_dir": tmp_path / f"{name}-store",
            "console_log": tmp_path / f"{name}-console.log",
            "events_log": tmp_path / f"{name}-events.jsonl",
        }
        settings.update(overrides)
        rse = start_in_thread(ServerConfig(**settings))  # type: ignore[arg-type]
        running.append(rse)
        return rse

    yield start
    for rse in running:
        if rse.thread.is_alive():
            rse.stop()


@pytest.fixture
def rse(rse_factory: Callable[..., RunningRse]) -> RunningRse:
    return rse_factory()


@pytest.fixture
def client(rse: RunningRse) -> Iterator[RseClient]:
    with rse.client(client_id=0x0100) as c:
        yield c


# --- key material, made once per session (RSA generation is slow) -----------------------------


@pytest.fixture(scope="session")
def rsa_keys() -> dict[int, rsa.RSAPrivateKey]:
    return {bits: rsa.generate_private_key(65537, bits) for bits in (2048, 3072, 4096)}


@pytest.fixture(scope="session")
def ec_keys() -> dict[int, ec.EllipticCurvePrivateKey]:
    curves: dict[int, ec.EllipticCurve] = {
        256: ec.SECP256R1(),
        384: ec.SECP384R1(),
        521: ec.SECP521R1(),
    }
    return {bits: ec.generate_private_key(curve) for bits, curve in curves.items()}


# --- the Parsec service, served from a thread over a real socket ------------------------------


@pytest.fixture
def parsec_factory(
    tmp_path: Path, rse_factory: Callable[..., RunningRse]
) -> Iterator[Callable[..., RunningParsec]]:
    """Start Parsec services (config_text= a TOML configuration; rse= an RSE to use)."""
    running: list[RunningParsec] = []

    def start(
        name: str = "parsec", config_text: str | None = None, rse: RunningRse | None = None
    ) -> RunningParsec:
        rse = rse or rse_factory(f"{name}-rse")
        config = parse_config(tomllib.loads(config_text or parsec_config_text()))
        config = replace(config, socket_path=tmp_path / f"{name}.sock")
        configure_logging(config)
        service = ParsecService(config, rse.socket_path, tmp_path / f"{name}-store")
        server = ParsecServer(service)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        parsec = RunningParsec(server, thread, config.socket_path, rse, service)
        running.append(parsec)
        return parsec

    yield start
    for parsec in running:
        if parsec.thread.is_alive():
            parsec.stop()


@pytest.fixture
def parsec(parsec_factory: Callable[..., RunningParsec]) -> RunningParsec:
    return parsec_factory()


# --- the demo's C programs, built once per session --------------------------------------------


@pytest.fixture(scope="session")
def host_build() -> HostBuild:
    return build_host()


@pytest.fixture(autouse=True)
def _no_daemon_outlives_its_test(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every service a test starts as a process is stopped when the test ends, failed or not."""
    started: list[services.Service] = []
    start = services.start_service

    def start_and_track(*args: Any, **kwargs: Any) -> services.Service:
        service = start(*args, **kwargs)
        started.append(service)
        return service

    monkeypatch.setattr(services, "start_service", start_and_track)
    yield
    for service in started:
        if service.alive():
            service.stop(grace=5)
