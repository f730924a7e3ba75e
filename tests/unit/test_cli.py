"""The command line: one parser for every sub-command; every user mistake is one line on
standard error with the right exit status and no traceback (``--verbose`` adds it); library
progress shows as log lines; ``run-fvp`` describes the machine it booted in ``machine.json``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from parsec_demo import cli, native_build
from parsec_demo.cli import debian
from parsec_demo.services import parsec_config_text
from parsec_service.directory_lock import DirectoryLock
from support.toolkit_cli import python_command

STANDIN = Path(__file__).parents[1] / "support" / "fvp_standin.py"
RUN_FVP = Path(sys.executable).with_name("run-fvp")  # the console script of this venv
PROJECT_ROOT = Path(__file__).resolve().parents[2]

COMMANDS = (
    "run-fvp", "image", "validate", "report", "lava", "bench", "rse", "parsec", "demo", "build",
    "setup",
)  # fmt: skip
#: The keys of machine.json, as README's run-fvp section documents them.
MACHINE_JSON_KEYS = {
    "kind", "config", "run_dir", "pid", "emulator_pid", "ssh_host", "ssh_port", "ssh_user",
    "ssh_key", "consoles", "emulator_log", "rse_console_log", "rse_events_log",
}  # fmt: skip


pytestmark = pytest.mark.usefixtures("restore_toolkit_logging")


def run_cli(
    *args: str, command: list[str] | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ)
    environment.update(env)
    return subprocess.run(
        [*(command or python_command()), *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_line_error(result: subprocess.CompletedProcess[str], status: int) -> str:
    """The only line on standard error, after checking the status and that no traceback shows."""
    assert "Traceback" not in result.stderr + result.stdout
    assert result.returncode == status, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# --- one parser ---------------------------------------------------------------------------


def test_the_parser_has_every_sub_command(capsys: pytest.CaptureFixture[str]) -> None:
    parser = cli.build_parser()
    nested = [
        ("rse", "serve"), ("rse", "demo"), ("image", "build"), ("parsec", "serve"),
        ("parsec", "ping"), ("parsec", "list-providers"), ("parsec", "create-ecc-key"),
        ("parsec", "sign"), ("parsec", "delete-key"), ("report", "junit"), ("report", "html"),
        ("lava", "job"), ("lava", "check"),
    ]  # fmt: skip
    for words in [(name,) for name in COMMANDS] + nested:
        with pytest.raises(SystemExit) as done:
            parser.parse_args([*words, "--help"])
        assert done.value.code == 0
        assert capsys.readouterr().out.startswith(f"usage: parsec-demo {' '.join(words)} ")
    assert {module.NAME for module in cli.COMMANDS} == set(COMMANDS)
    listing = run_cli("--help")
    assert listing.returncode == 0
    for name in COMMANDS:
        assert f"\n    {name} " in listing.stdout, f"--help does not list {name}"


def _every_parser(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _every_parser(sub)


def test_the_command_line_loads_no_ssh_client_until_it_reaches_a_machine() -> None:
    """Every command's parser, and LAVA's job writer with the machine runners it reads configs
    with, load without paramiko: only a machine's ``target()`` loads it."""
    check = (
        "import sys\n"
        "from parsec_demo.cli import build_parser\n"
        "from parsec_demo.lava import jobs\n"
        "from parsec_demo.machine import fvp, qemu\n"
        "build_parser()\n"
        "print('paramiko' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_every_help_has_a_description_and_examples_under_its_own_name() -> None:
    parsers = list(_every_parser(cli.build_parser()))
    assert len(parsers) > 30, "every command and sub-command"
    for parser in parsers:
        text = parser.format_help()
        assert parser.description, f"{parser.prog} has no description"
        assert f"\nexamples:\n  {parser.prog}" in text, f"{parser.prog} has no examples"
    # Defaults are shown where they are values.
    bench_help = next(p for p in parsers if p.prog == "parsec-demo bench").format_help()
    assert "time per measurement (default: 3.0)" in bench_help


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "example"), [("demo", "--host --tls13 --mtls"), ("bench", "parsec")]
)
def test_the_tools_scripts_say_their_own_names(script: str, example: str) -> None:
    path = f"./tools/{script}"
    result = subprocess.run(
        [path, "--help"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {path} ")
    assert f"\n  {path} {example}\n" in result.stdout
    mistake = subprocess.run(
        [path, *example.split(), "--bogus"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert mistake.returncode == 2
    assert mistake.stderr.splitlines()[-1] == f"{path}: unrecognized arguments: --bogus"


@pytest.mark.parametrize("command", [python_command("run-fvp"), [str(RUN_FVP)]])
def test_run_fvp_help_says_what_it_boots(command: list[str]) -> None:
    result = run_cli("--help", command=command)
    assert result.returncode == 0
    description = result.stdout.split("\n\n")[1]
    assert description.startswith(
        "Boot an Arm FVP from a .fvpconf, or QEMU from a qemuboot.conf or the dev image "
        "(the default)."
    )


# --- user mistakes ------------------------------------------------------------------------


def _fvpconf(tmp_path: Path, bindir: Path) -> Path:
    path = tmp_path / "machine.fvpconf"
    path.write_text(json.dumps({"fvp-bindir": str(bindir), "exe": "FVP_RD_1_AE"}))
    return path


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _manifest_dir(tmp_path: Path, text: str) -> Path:
    image = tmp_path / "image"
    image.mkdir()
    (image / "manifest.json").write_text(text)
    return image


def _qemuboot_without_rootfs(tmp_path: Path) -> Path:
    (tmp_path / "bzImage").write_bytes(b"")
    return _write(
        tmp_path / "img.qemuboot.conf",
        "[config_bsp]\nqb_default_kernel = bzImage\nimage_link_name = img\n"
        "qb_default_fstype = ext4\n",
    )


def _listening_socket(path: Path) -> socket.socket:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    return listener


MISTAKES: dict[str, tuple[Callable[[Path], list[str]], int, str]] = {
    "missing machine configuration": (
        lambda t: ["run-fvp", "/missing.conf"],
        1,
        "parsec-demo run-fvp: /missing.conf: no such file or directory",
    ),
    "missing dev image": (
        lambda t: ["validate", "--image", "/missing"],
        1,
        "parsec-demo validate: no dev image at /missing "
        "(a directory with manifest.json, or the manifest)",
    ),
    "bad --arch for validate": (
        lambda t: ["validate", "--arch", "sparc"],
        2,
        "parsec-demo validate: argument --arch: invalid choice: 'sparc' "
        "(choose from 'amd64', 'arm64')",
    ),
    "unknown case module for validate (before anything is built or booted)": (
        lambda t: ["validate", "--module", "parsec_tls_dem"],
        1,
        "parsec-demo validate: no case module 'parsec_tls_dem' in ",
    ),
    "bad --arch for image build": (
        lambda t: ["image", "build", "--arch", "sparc"],
        2,
        "parsec-demo image build: argument --arch: invalid choice: 'sparc' "
        "(choose from 'amd64', 'arm64')",
    ),
    "bad --arch for demo": (lambda t: ["demo", "--arch", "sparc"], 2, "invalid choice: 'sparc'"),
    "bad --arch for run-fvp": (
        lambda t: ["run-fvp", "--arch", "sparc"],
        2,
        "invalid choice: 'sparc'",
    ),
    "missing FVP binary": (
        lambda t: ["run-fvp", "--run-dir", str(t / "run"), str(_fvpconf(t, t / "no-bin"))],
        1,
        "no such program (check the .fvpconf's fvp-bindir and exe, or PATH)",
    ),
    "an .fvpconf that is no JSON": (
        lambda t: ["run-fvp", str(_write(t / "x.fvpconf", "exe = FVP"))],
        1,
        "x.fvpconf: cannot read it as an .fvpconf: Expecting value: line 1 column 1",
    ),
    "corrupted image manifest": (
        lambda t: ["validate", "--image", str(_manifest_dir(t, '{"arch": "amd64", "kern'))],
        1,
        "parsec-demo validate: cannot read the image manifest ",
    ),
    "image manifest with missing keys": (
        lambda t: ["run-fvp", str(_manifest_dir(t, '{"arch": "amd64"}') / "manifest.json")],
        1,
        "is not a dev image manifest (no built, cmdline, console, cpu, initrd, inputs, kernel",
    ),
    "qemuboot.conf without its section": (
        lambda t: ["run-fvp", str(_write(t / "x.qemuboot.conf", "[other]\n"))],
        1,
        "x.qemuboot.conf: not a qemuboot.conf (no config_bsp)",
    ),
    "qemuboot.conf whose rootfs is missing": (
        lambda t: ["run-fvp", "--run-dir", str(t / "run"), str(_qemuboot_without_rootfs(t))],
        1,
        "img.qemuboot.conf: the image's img.ext4 is not there (",
    ),
    "qemuboot.conf that is no INI file (a JSON one)": (
        lambda t: [
            "lava",
            "job",
            "qemu",
            str(_write(t / "x.qemuboot.conf", '{"a": 1}\n')),
            "--set",
            "images_url=https://images.lab.internal/deploy",
            "--set",
            "testdef_repository=https://git.lab.internal/parsec-demo.git",
        ],
        1,
        "x.qemuboot.conf: cannot read it as a qemuboot.conf: File contains no section headers.",
    ),
    "emulator arguments without a CONFIG": (
        lambda t: ["run-fvp", "--", "-cpu", "max"],
        2,
        "parsec-demo run-fvp: -cpu is no CONFIG: emulator arguments after -- need a CONFIG first",
    ),
    "RSE model socket in use": (
        lambda t: [
            "rse",
            "serve",
            "--socket",
            str(t / "held.sock"),
            "--store",
            str(t / "store"),
        ],
        1,
        "is in use by another RSE model",
    ),
    "Parsec service socket in use": (
        lambda t: [
            "parsec",
            "serve",
            "--socket",
            str(t / "held.sock"),
            "--rse",
            str(t / "rse.sock"),
            "--store",
            str(t / "store"),
            "--config",
            str(_write(t / "c.toml", parsec_config_text())),
        ],
        1,
        "is in use by another",
    ),
    "bad Parsec configuration": (
        lambda t: [
            "parsec",
            "serve",
            "--rse",
            str(t / "rse.sock"),
            "--store",
            str(t / "store"),
            "--config",
            str(_write(t / "c.toml", '[core_settings]\nlog_level = "x"\n')),
        ],
        1,
        "parsec-demo parsec serve: core_settings.log_level must be one of",
    ),
    "unknown option": (
        lambda t: ["bench", "rse", "--bogus"],
        2,
        "parsec-demo: unrecognized arguments: --bogus",
    ),
    "missing sub-command": (
        lambda t: ["rse"],
        2,
        "parsec-demo rse: the following arguments are required: COMMAND",
    ),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_a_user_mistake_is_one_line_and_an_exit_status(mistake: str, tmp_path: Path) -> None:
    make_args, status, expected = MISTAKES[mistake]
    args = make_args(tmp_path)
    listener = _listening_socket(tmp_path / "held.sock") if "held.sock" in str(args) else None
    try:
        line = one_line_error(run_cli(*args), status)
    finally:
        if listener is not None:
            listener.close()
    assert line.startswith("parsec-demo")
    assert expected in line


def test_two_rse_models_on_one_store_are_refused(tmp_path: Path) -> None:
    """The second model is refused in one line naming the first one's pid, and the store is
    left as the first one keeps it."""
    store = tmp_path / "store"
    store.mkdir()
    held = DirectoryLock(store, "RSE model")
    try:
        args = ["rse", "serve", "--socket", str(tmp_path / "second.sock"), "--store", str(store)]
        line = one_line_error(run_cli(*args), 1)
    finally:
        held.release()
    assert line == (
        f"parsec-demo rse serve: {store} is in use by another RSE model (pid {os.getpid()}): "
        "give each its own"
    )
    assert sorted(p.name for p in store.iterdir()) == [".lock"], "nothing else touched"
    assert not (tmp_path / "second.sock").exists()


def test_the_run_fvp_script_names_itself_in_its_errors() -> None:
    line = one_line_error(run_cli("/missing.conf", command=[str(RUN_FVP)]), 1)
    assert line == "run-fvp: /missing.conf: no such file or directory"
    line = one_line_error(run_cli("--arch", "sparc", command=[str(RUN_FVP)]), 2)
    assert line.startswith("run-fvp: argument --arch: invalid choice: 'sparc'")


@pytest.mark.parametrize("command", ["validate", "build", "image", "demo"])
def test_a_job_that_needs_the_checkout_says_so(command: str, tmp_path: Path) -> None:
    args = [command, "build"] if command == "image" else [command]
    line = one_line_error(run_cli(*args, PARSEC_DEMO_ROOT=str(tmp_path)), 1)
    assert line == (
        f"parsec-demo {' '.join(args)}: PARSEC_DEMO_ROOT={tmp_path} is not a parsec-demo "
        "checkout (it has no meta-parsec-demo/conf/layer.conf)"
    )


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_shows_the_traceback_too(where: str) -> None:
    args = ["validate", "--image", "/missing"]
    result = run_cli(*(["-v", *args] if where == "before" else [*args, "--verbose"]))
    assert result.returncode == 1
    assert result.stderr.startswith("Traceback (most recent call last):\n")
    assert "parsec_demo.image_build.ManifestError: no dev image at /missing" in result.stderr
    assert result.stderr.splitlines()[-1] == (
        "parsec-demo validate: no dev image at /missing "
        "(a directory with manifest.json, or the manifest)"
    )


def test_missing_debian_packages_are_named_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not root: a job's missing packages are named, not installed (as root they would be)."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(debian.MissingPackagesError) as caught:
        debian.ensure(["dpkg", "parsec-demo-no-such-package"])
    assert str(caught.value) == (
        "needs Debian packages that are not installed: parsec-demo-no-such-package "
        "(run as root, or: apt-get install parsec-demo-no-such-package)"
    )
    # What a fresh machine lacks for the other architecture's image (the arch-test).
    foreign = "arm64" if debian.host_arch() != "arm64" else "amd64"
    absent = debian.missing(debian.JOBS["image"](foreign))
    assert set(debian.FOREIGN_ARCH) <= set(debian.JOBS["image"](foreign))
    status = cli.main(["setup", "image", "--arch", foreign])
    err = capsys.readouterr().err
    if absent:
        assert status == 1
        assert err.splitlines() == [
            f"parsec-demo setup: needs Debian packages that are not installed: {' '.join(absent)} "
            f"(run as root, or: apt-get install {' '.join(absent)})"
        ]
    else:
        assert (status, err) == (0, "")


# --- library progress as log lines --------------------------------------------------------


def test_library_progress_shows_on_stderr_and_debug_with_verbose(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cli.configure_logging(verbose=False)
    native_build.logger.info("building the Parsec SE driver")
    native_build.logger.debug("$ cmake ...")
    logging.getLogger("parsec_demo.validate.runner").info("PASSED a.B.test_c (1.0 s)")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "[build] building the Parsec SE driver\nPASSED a.B.test_c (1.0 s)\n"
    cli.configure_logging(verbose=True)
    native_build.logger.debug("$ cmake ...")
    assert capsys.readouterr().err == "[build] $ cmake ...\n"


# --- run-fvp: machine.json ----------------------------------------------------------------


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell starts a background job


@pytest.mark.parametrize(
    ("stop", "start_with_sigint_ignored"),
    [(signal.SIGTERM, False), (signal.SIGINT, True)],
    ids=["SIGTERM", "SIGINT-in-the-background"],
)
def test_run_fvp_describes_the_machine_in_machine_json(
    tmp_path: Path, stop: signal.Signals, start_with_sigint_ignored: bool
) -> None:
    bindir = tmp_path / "fvp-bin"
    bindir.mkdir()
    model = bindir / "FVP_RD_1_AE"
    model.write_text(f'#!/bin/sh\nexec {sys.executable} {STANDIN} "$@"\n')
    model.chmod(0o755)
    fvpconf = tmp_path / "deploy" / "image.fvpconf"
    fvpconf.parent.mkdir()
    fvpconf.write_text(
        json.dumps(
            {
                "fvp-bindir": str(bindir),
                "exe": "FVP_RD_1_AE",
                "parameters": {"ros.board.virtio_net.hostbridge.userNetPorts": "2222=22"},
                "terminals": {
                    "css.ap_periph.terminal_ns_uart0": "PC Console",
                    "css.sysctrl.terminal_rse_uart": "RSE",
                },
                "consoles": {"default": "terminal_ns_uart0", "rse": "terminal_rse_uart"},
            }
        )
    )
    run_dir = tmp_path / "run"
    info_path = run_dir / "machine.json"
    runner = subprocess.Popen(
        [str(RUN_FVP), "--run-dir", str(run_dir), "--timeout", "30", str(fvpconf)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_ignore_sigint if start_with_sigint_ignored else None,
    )
    try:
        deadline = time.monotonic() + 60
        while not info_path.exists():
            assert runner.poll() is None, runner.communicate()
            assert time.monotonic() < deadline, "no machine.json within 60 s"
            time.sleep(0.1)
        info = json.loads(info_path.read_text())
        assert set(info) == MACHINE_JSON_KEYS
        assert info["kind"] == "fvp" and info["config"] == str(fvpconf)
        assert info["run_dir"] == str(run_dir) and info["pid"] == runner.pid
        assert (info["ssh_host"], info["ssh_user"], info["ssh_key"]) == ("127.0.0.1", "root", None)
        with socket.create_connection((info["ssh_host"], info["ssh_port"]), timeout=5) as ssh:
            assert ssh.recv(64).startswith(b"SSH-2.0-FVP-standin"), "the SSH forward answers"
        os.kill(info["emulator_pid"], 0)  # the emulator runs
        assert info["consoles"] == {
            "default": str(run_dir / "default.log"),
            "rse": str(run_dir / "rse.log"),
        }
        assert "parsec-demo login:" in Path(info["consoles"]["default"]).read_text()
        assert info["rse_console_log"] == info["consoles"]["rse"]
        assert info["rse_events_log"] is None, "no RSE model runs beside an FVP"
        assert info["emulator_log"] == str(run_dir / "fvp.log")
    finally:
        runner.send_signal(stop)
        out, err = runner.communicate(timeout=60)
    assert runner.returncode == 0, err
    assert f"Machine up. SSH: ssh -p {info['ssh_port']} " in out
    assert "Traceback" not in err and "Machine stopped." in err
    assert not info_path.exists(), "machine.json exists only while the machine is up"
    with pytest.raises(ProcessLookupError):
        os.kill(info["emulator_pid"], 0)


def test_no_install_lists_the_packages_and_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARSEC_DEMO_NO_INSTALL", "1")
    monkeypatch.setattr(debian, "_apt_get", lambda *a: pytest.fail(f"apt-get {a} ran"))
    with pytest.raises(debian.MissingPackagesError) as refused:
        debian.ensure(["parsec-demo-no-such-package"])
    assert str(refused.value) == (
        "needs Debian packages that are not installed: parsec-demo-no-such-package "
        "(PARSEC_DEMO_NO_INSTALL=1: install them with apt-get install --no-install-recommends "
        "parsec-demo-no-such-package, then run again)"
    )


def test_services_are_held_while_packages_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A policy-rc.d that says "not now" exists for the install only; one the machine has of
    its own is left as it is."""
    policy = tmp_path / "policy-rc.d"
    monkeypatch.setattr(debian, "POLICY_RC_D", policy)
    with debian.services_held():
        assert subprocess.run([str(policy), "ssh", "start"]).returncode == 101
    assert not policy.exists()
    policy.write_text("#!/bin/sh\nexit 0\n")
    with debian.services_held():
        pass
    assert policy.read_text() == "#!/bin/sh\nexit 0\n"
