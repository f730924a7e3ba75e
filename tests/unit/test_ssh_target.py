"""SSHTarget keeps poky's OESSHTarget contract (scarthgap, meta/lib/oeqa/core/target/ssh.py).

Each test states one rule of that contract and checks it against a real OpenSSH server: Debian's
``sshd`` started for this module on a loopback port, with a host key and an authorized key made
in a temporary directory. The "target" is therefore this machine, reached as root over SSH.

With ``PARSEC_DEMO_POKY`` naming a poky checkout, the last test also runs the same commands
through poky's own OESSHTarget (``ssh``/``scp``) and compares the results.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from parsec_demo.machine.ports import allocate_port
from parsec_demo.machine.ssh_banner import wait_for_banner
from parsec_demo.machine.ssh_target import DEFAULT_TIMEOUT, SSHTarget

SSHD = Path("/usr/sbin/sshd")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not SSHD.exists(),
    reason="needs root and Debian's openssh-server (/usr/sbin/sshd) for a loopback SSH server",
)


@dataclass
class Server:
    port: int
    client_key: Path
    host_key: str  # "ssh-ed25519 AAAA..." as SSHTarget takes it
    log: Path

    def target(self, **kwargs: float) -> SSHTarget:
        return SSHTarget("127.0.0.1", self.port, self.client_key, self.host_key, **kwargs)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """sshd on 127.0.0.1 for this module only: its own keys, configuration and log."""
    home = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "client_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(home / name)], check=True
        )
    shutil.copy(home / "client_key.pub", home / "authorized_keys")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    lease = allocate_port()
    config = home / "sshd_config"
    config.write_text(
        textwrap.dedent(
            f"""\
            ListenAddress 127.0.0.1
            Port {lease.port}
            HostKey {home / "host_key"}
            AuthorizedKeysFile {home / "authorized_keys"}
            PidFile {home / "sshd.pid"}
            PermitRootLogin prohibit-password
            PasswordAuthentication no
            KbdInteractiveAuthentication no
            UsePAM no
            StrictModes no
            UseDNS no
            PrintMotd no
            Subsystem sftp internal-sftp
            """
        )
    )
    log = home / "sshd.log"
    with log.open("wb") as log_file:
        daemon = subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for_banner("127.0.0.1", lease.port, 15)
        host_key = " ".join((home / "host_key.pub").read_text().split()[:2])
        yield Server(lease.port, home / "client_key", host_key, log)
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        lease.release()


@pytest.fixture(scope="module")
def target(server: Server) -> Iterator[SSHTarget]:
    with server.target().connect(timeout=30) as connected:
        yield connected


def _elapsed(since: float) -> float:
    return time.monotonic() - since


# --- run: what comes back ------------------------------------------------------------------------


def test_run_returns_status_and_stdout_and_stderr_merged(target: SSHTarget) -> None:
    assert target.run("echo out; echo err >&2; exit 3") == (3, "out\nerr")


def test_run_strips_trailing_whitespace_only(target: SSHTarget) -> None:
    assert target.run(r"printf '\n  lead \n\n \t\n'") == (0, "\n  lead")


def test_run_drops_bytes_that_are_not_utf8(target: SSHTarget) -> None:
    assert target.run(r"printf 'a\377b\303\251\n'") == (0, "ab\u00e9")


def test_run_sets_poky_s_path_and_gives_stdin_at_end_of_file(target: SSHTarget) -> None:
    assert target.run("echo $PATH") == (0, "/usr/sbin:/sbin:/usr/bin:/bin")
    started = time.monotonic()
    assert target.run("cat; echo after", timeout=10) == (0, "after")
    assert _elapsed(started) < 5


def test_a_command_killed_by_a_signal_has_status_255(target: SSHTarget) -> None:
    assert target.run("echo before; kill -9 $$") == (255, "before")
    assert target.run("exit 255") == (255, "")


def test_raw_returns_stdout_bytes_unstripped_without_stderr(
    target: SSHTarget, capfd: pytest.CaptureFixture[str]
) -> None:
    assert target.run(r"printf 'x\377\n\n'; echo to-stderr >&2", raw=True) == (0, b"x\xff\n\n")
    assert "to-stderr" in capfd.readouterr().err


# --- run: timeouts -------------------------------------------------------------------------------


def test_the_default_timeout_is_oesshtarget_s(server: Server) -> None:
    assert DEFAULT_TIMEOUT == 300
    assert server.target().timeout == 300


def test_it_tells_the_cases_where_the_rse_console_log_is() -> None:
    """``target.rse_log``, as the layer's testimage controllers have it: a path string or None."""
    assert SSHTarget("127.0.0.1", 2222).rse_log is None
    assert SSHTarget("127.0.0.1", 2222, rse_log=Path("/run/x/rse.log")).rse_log == "/run/x/rse.log"


@pytest.mark.slow
def test_timeout_none_means_the_target_s_timeout(server: Server) -> None:
    with server.target(timeout=1).connect(timeout=30) as short:
        started = time.monotonic()
        assert short.run("echo started; sleep 4") == (255, "started")
        assert 1 <= _elapsed(started) < 3


@pytest.mark.slow
def test_timeout_zero_means_no_limit(server: Server) -> None:
    with server.target(timeout=1).connect(timeout=30) as short:
        assert short.run("sleep 2.5; echo done", timeout=0) == (0, "done")


@pytest.mark.slow
def test_a_positive_timeout_limits_inactivity_not_the_running_time(target: SSHTarget) -> None:
    started = time.monotonic()
    status, output = target.run("for i in 1 2 3 4 5; do echo $i; sleep 0.6; done", timeout=1.5)
    assert (status, output) == (0, "1\n2\n3\n4\n5") and _elapsed(started) > 2.5


@pytest.mark.slow
def test_a_command_silent_for_longer_than_the_timeout_ends_with_255(target: SSHTarget) -> None:
    started = time.monotonic()
    # scarthgap's "Process killed - no output ..." note never reaches the caller (poky builds it,
    # then overwrites it with the decoded output): what came before the silence is all there is.
    assert target.run("echo started; sleep 4", timeout=1) == (255, "started")
    assert 1 <= _elapsed(started) < 3


@pytest.mark.slow
def test_run_waits_while_a_background_child_holds_the_output(target: SSHTarget) -> None:
    started = time.monotonic()
    assert target.run("sleep 2 & echo x", timeout=0) == (0, "x")
    assert _elapsed(started) >= 2
    started = time.monotonic()
    assert target.run("sleep 2 > /dev/null 2>&1 < /dev/null & echo x") == (0, "x")
    assert _elapsed(started) < 1.5


# --- run: ignore_status --------------------------------------------------------------------------


@pytest.mark.slow
def test_ignore_status_false_raises_assertion_error_naming_command_status_output(
    target: SSHTarget,
) -> None:
    assert target.run("echo fine", ignore_status=False) == (0, "fine")
    with pytest.raises(AssertionError) as raised:
        target.run("echo boom; exit 4", ignore_status=False)
    assert str(raised.value) == (
        "Command 'echo boom; exit 4' returned non-zero exit status 4:\nboom"
    )
    with pytest.raises(AssertionError, match=r"returned non-zero exit status 255:\nquiet$"):
        target.run("echo quiet; sleep 3", timeout=1, ignore_status=False)


def test_a_connection_that_fails_gives_255_and_says_why(tmp_path: Path) -> None:
    with allocate_port() as nobody:  # nothing listens on a leased port
        unreachable = SSHTarget("127.0.0.1", nobody.port)
        status, output = unreachable.run("true")
        assert status == 255 and output.startswith(f"ssh: 127.0.0.1 port {nobody.port}: ")
        with pytest.raises(AssertionError, match="'true' returned non-zero exit status 255"):
            unreachable.run("true", ignore_status=False)
        assert unreachable.copyFrom("/etc/hostname", tmp_path, warn_on_failure=True)[0] == 255


def test_a_dropped_connection_is_opened_again(server: Server) -> None:
    with server.target().connect(timeout=30) as target:
        transport = target.client.get_transport()
        assert transport is not None
        transport.close()
        assert target.run("echo again") == (0, "again")


# --- copies --------------------------------------------------------------------------------------


def test_copy_to_and_from_return_status_and_output(target: SSHTarget, tmp_path: Path) -> None:
    local = tmp_path / "local.txt"
    local.write_text("parsec demo\n")
    remote = tmp_path / "remote.txt"
    assert target.copyTo(local, str(remote)) == (0, "")
    assert remote.read_text() == "parsec demo\n"
    back = tmp_path / "back.txt"
    assert target.copyFrom(str(remote), back) == (0, "")
    assert back.read_text() == "parsec demo\n"


def test_a_new_file_keeps_the_source_s_mode_less_the_umask(
    target: SSHTarget, tmp_path: Path
) -> None:
    umask = int(target.run("umask")[1], 8)
    program = tmp_path / "program"
    program.write_text("#!/bin/sh\necho ran\n")
    program.chmod(0o775)
    assert target.copyTo(program, str(tmp_path / "copied"))[0] == 0
    assert stat.S_IMODE((tmp_path / "copied").stat().st_mode) == 0o775 & ~umask
    assert target.run(f"{tmp_path / 'copied'}") == (0, "ran")
    existing = tmp_path / "existing"
    existing.write_text("old")
    existing.chmod(0o600)
    assert target.copyTo(program, str(existing))[0] == 0
    assert stat.S_IMODE(existing.stat().st_mode) == 0o600 and "echo ran" in existing.read_text()


def test_copying_onto_a_directory_puts_the_file_inside(target: SSHTarget, tmp_path: Path) -> None:
    local = tmp_path / "inside.txt"
    local.write_text("x")
    (tmp_path / "there").mkdir()
    assert target.copyTo(local, str(tmp_path / "there")) == (0, "")
    assert (tmp_path / "there/inside.txt").read_text() == "x"
    (tmp_path / "here").mkdir()
    assert target.copyFrom(str(local), tmp_path / "here") == (0, "")
    assert (tmp_path / "here/inside.txt").read_text() == "x"


def test_directories_copy_recursively_both_ways(target: SSHTarget, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "a/b").mkdir(parents=True)
    (tree / "top.txt").write_text("top")
    (tree / "a/b/deep.txt").write_text("deep")
    assert target.copyTo(tree, str(tmp_path / "up")) == (0, "")
    assert (tmp_path / "up/a/b/deep.txt").read_text() == "deep"
    assert target.copyFrom(str(tmp_path / "up"), tmp_path / "down") == (0, "")
    assert (tmp_path / "down/top.txt").read_text() == "top"
    assert (tmp_path / "down/a/b/deep.txt").read_text() == "deep"


def test_a_local_symlink_is_recreated_with_ln_through_run(
    target: SSHTarget, tmp_path: Path
) -> None:
    link = tmp_path / "link"
    link.symlink_to("points-nowhere")
    remote = tmp_path / "remote-link"
    assert target.copyTo(link, str(remote)) == (0, "")
    assert os.readlink(remote) == "points-nowhere"
    # A second time ln fails; copyTo returns run's result and does not raise.
    status, output = target.copyTo(link, str(remote))
    assert status == 1 and "File exists" in output


def test_a_failed_copy_raises_assertion_error(target: SSHTarget, tmp_path: Path) -> None:
    local = tmp_path / "f.txt"
    local.write_text("x")
    with pytest.raises(AssertionError) as raised:
        target.copyTo(local, str(tmp_path / "missing-dir/f.txt"))
    message = str(raised.value)
    assert message.startswith(f"Command 'copy {local} to root@127.0.0.1:{tmp_path}/missing-dir")
    assert "returned non-zero exit status 1:\n" in message and "No such file" in message
    with pytest.raises(AssertionError, match=r"returned non-zero exit status 1:\n.*No such file"):
        target.copyFrom(str(tmp_path / "absent"), tmp_path / "absent-copy")


def test_copy_from_with_warn_on_failure_returns_the_status_and_warns(
    target: SSHTarget, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        status, output = target.copyFrom(
            str(tmp_path / "absent"), tmp_path / "copy", warn_on_failure=True
        )
    assert status == 1 and str(tmp_path / "absent") in output
    assert f"Copy returned non-zero exit status 1:\n{output}" in caplog.text


# --- poky's directory helpers --------------------------------------------------------------------


def test_copy_dir_to_makes_each_sub_directory_and_copies_each_file(
    target: SSHTarget, tmp_path: Path
) -> None:
    tree = tmp_path / "tree"
    (tree / "sub/inner").mkdir(parents=True)
    (tree / "sub/inner/leaf.txt").write_text("leaf")
    (tree / "root.txt").write_text("root")
    (tree / "sub/link").symlink_to("inner/leaf.txt")
    assert target.copyDirTo(str(tree), str(tmp_path / "copy")) is None
    assert (tmp_path / "copy/root.txt").read_text() == "root"
    assert (tmp_path / "copy/sub/inner/leaf.txt").read_text() == "leaf"
    assert os.readlink(tmp_path / "copy/sub/link") == "inner/leaf.txt"


def test_copy_dir_to_does_not_create_the_destination_itself(
    target: SSHTarget, tmp_path: Path
) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "only.txt").write_text("x")
    with pytest.raises(AssertionError, match="returned non-zero exit status 1"):
        target.copyDirTo(str(flat), str(tmp_path / "not-there"))


def test_delete_helpers_remove_files_then_empty_directories(
    target: SSHTarget, tmp_path: Path
) -> None:
    remote = tmp_path / "remote"
    (remote / "keep").mkdir(parents=True)
    (remote / "a.txt").write_text("a")
    (remote / "b.txt").write_text("b")
    target.deleteFiles(str(remote), ["a.txt", "b.txt"])
    assert not (remote / "a.txt").exists() and not (remote / "b.txt").exists()
    target.deleteDir(str(remote / "keep"))
    assert not (remote / "keep").exists()

    local = tmp_path / "local"
    (local / "d1").mkdir(parents=True)
    (local / "d2").mkdir()
    (local / "d1/file1").write_text("1")
    (local / "top").write_text("t")
    (remote / "d1").mkdir()
    (remote / "d2").mkdir()
    (remote / "d1/file1").write_text("1")
    (remote / "d1/extra").write_text("not in the local tree")
    (remote / "top").write_text("t")
    assert target.deleteDirStructure(str(local), str(remote)) is None
    assert sorted(p.relative_to(remote).as_posix() for p in remote.rglob("*")) == [
        "d1",
        "d1/extra",
    ], "files of the local tree removed, d2 (empty) removed, d1 (not empty) kept"


# --- against poky's own OESSHTarget --------------------------------------------------------------

POKY_SCRIPT = """
import json, logging, re, sys
sys.path.insert(0, sys.argv[1])
from oeqa.core.target.ssh import OESSHTarget
FAILURE = sys.argv[5]
target = OESSHTarget(logging.getLogger("poky"), "127.0.0.1", None, port=sys.argv[2])
target.ssh += ["-i", sys.argv[3]]
target.scp += ["-i", sys.argv[3]]
results = []
for command, kwargs in json.loads(sys.argv[4]):
    try:
        results.append(list(target.run(command, **kwargs)))
    except AssertionError as exc:
        results.append(["AssertionError", *re.search(FAILURE, str(exc), re.S).groups()])
print(json.dumps(results))
"""
#: What both messages say after naming the command (poky names its ssh command line).
FAILURE = r"returned non-zero exit status (\d+):\n(.*)\Z"
COMPARED: list[tuple[str, dict[str, object]]] = [
    ("echo out; echo err >&2; exit 3", {}),
    (r"printf '\n  lead \n\n \t\n'", {}),
    (r"printf 'a\377b\n'", {}),
    ("echo $PATH", {}),
    ("kill -9 $$", {}),
    ("sleep 2 & echo x", {"timeout": 0}),
    ("echo boom; exit 4", {"ignore_status": False}),
    ("echo started; sleep 7", {"timeout": 2}),
]


@pytest.mark.skipif(
    not os.environ.get("PARSEC_DEMO_POKY"), reason="PARSEC_DEMO_POKY names no poky checkout"
)
def test_the_same_commands_give_the_same_results_as_poky_s_oesshtarget(
    server: Server, target: SSHTarget
) -> None:
    poky_lib = Path(os.environ["PARSEC_DEMO_POKY"]) / "meta/lib"
    assert (poky_lib / "oeqa/core/target/ssh.py").exists(), poky_lib
    result = subprocess.run(
        [
            sys.executable, "-c", POKY_SCRIPT, str(poky_lib), str(server.port),
            str(server.client_key), json.dumps(COMPARED), FAILURE,
        ],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    theirs = json.loads(result.stdout)
    ours: list[list[object]] = []
    for command, kwargs in COMPARED:
        try:
            ours.append(list(target.run(command, **kwargs)))  # type: ignore[call-overload]
        except AssertionError as exc:
            match = re.search(FAILURE, str(exc), re.S)
            assert match is not None, exc
            ours.append(["AssertionError", *match.groups()])
    assert ours == theirs
