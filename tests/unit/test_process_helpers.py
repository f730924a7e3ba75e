"""The process helpers the toolkit and the layer share: the one shape of a failure (headline, the
last console lines, the logs), and where a socket goes when its path would be too long."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest
from parsec_demo_processes import (
    MAX_TAIL_LINES,
    PANIC_CONTEXT,
    SOCKET_PATH_MAX,
    TAIL_LINES,
    last_lines,
    log_failure,
    release_socket,
    socket_path,
    wait_until,
)

PANIC_REPORT = [
    "[   12.711186] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100",
    *(f"[   12.714638] trace line {n}" for n in range(40)),
    "[   12.714638] Rebooting in 1 seconds..",
]


def test_a_failure_shows_the_last_lines_and_every_log(tmp_path: Path) -> None:
    console = tmp_path / "console.log"
    console.write_text("".join(f"line {n}\n" for n in range(100)))
    other = tmp_path / "rse.log"
    message = log_failure("boot failed: QEMU exited with status 1", console, [other])
    headline, rest = message.split("\n", 1)
    assert headline == "boot failed: QEMU exited with status 1"
    shown, logs = rest.removeprefix("last console lines:\n").split("\nlogs:\n")
    assert shown.splitlines() == [f"line {n}" for n in range(100 - TAIL_LINES, 100)]
    assert logs.split() == [str(console), str(other)]


def test_a_missing_console_shows_none(tmp_path: Path) -> None:
    message = log_failure("rse exited", tmp_path / "absent.log")
    assert "last console lines:\n(none)\nlogs:" in message


def test_a_kernel_panic_s_tail_starts_with_what_made_the_kernel_panic() -> None:
    why = ["initramfs: No working init found.", "initramfs: Will cause kernel panic in 10s..."]
    text = "\n".join(["booting"] * 50 + why + PANIC_REPORT)
    shown = last_lines(text).splitlines()
    assert PANIC_CONTEXT == 3
    assert shown == ["booting", *why, *PANIC_REPORT]  # PANIC_CONTEXT lines before the panic


def test_a_panic_at_the_top_of_the_tail_still_shows_what_made_it() -> None:
    """A quiet boot's whole console can be the panic's cause, the panic and its report."""
    why = ["initramfs: No working init found.", "initramfs: Will cause kernel panic in 10s..."]
    report = PANIC_REPORT[:1] + PANIC_REPORT[-(TAIL_LINES - 2) :]
    assert last_lines("\n".join(why + report)).splitlines() == why + report


def test_the_panic_tail_is_bounded() -> None:
    report = [PANIC_REPORT[0], *(f"trace {n}" for n in range(200))]
    assert len(last_lines("\n".join(["why", *report])).splitlines()) == MAX_TAIL_LINES


def test_a_panic_inside_the_ordinary_tail_changes_nothing() -> None:
    text = "\n".join([f"line {n}" for n in range(100)] + PANIC_REPORT[:1] + ["after"] * 5)
    assert last_lines(text).splitlines() == text.splitlines()[-TAIL_LINES:]


# --- sockets whose path would be too long -----------------------------------------------------


def test_a_socket_stays_in_a_directory_whose_path_is_short(tmp_path: Path) -> None:
    assert socket_path(tmp_path, "rse.sock") == str(tmp_path / "rse.sock")


def test_a_socket_too_deep_goes_to_a_private_directory_found_again(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120)
    path = socket_path(deep, "rse.sock")
    assert len(path) <= SOCKET_PATH_MAX and path.endswith("/rse.sock")
    private = Path(path).parent
    assert stat.S_IMODE(private.stat().st_mode) == 0o700 and private.stat().st_uid == os.geteuid()
    # The same place each time (a restarted service is found where it was), one per directory.
    assert socket_path(deep, "rse.sock") == path
    elsewhere = socket_path(tmp_path / ("e" * 120), "rse.sock")
    assert Path(elsewhere).parent != private
    release_socket(elsewhere)
    assert not Path(elsewhere).parent.exists()
    # Released once its service stopped: the socket, then the directory once empty.
    other = socket_path(deep, "parsec.sock")
    Path(path).touch()
    Path(other).touch()
    release_socket(path)
    assert not Path(path).exists() and private.is_dir()
    release_socket(other)
    assert not private.exists()


def test_a_private_socket_directory_open_to_others_is_refused(tmp_path: Path) -> None:
    deep = tmp_path / ("f" * 120)
    private = Path(socket_path(deep, "rse.sock")).parent
    private.chmod(0o777)
    try:
        with pytest.raises(OSError, match="open to other users"):
            socket_path(deep, "rse.sock")
    finally:
        private.rmdir()


def test_releasing_a_socket_in_a_run_directory_leaves_it_alone(tmp_path: Path) -> None:
    sock = tmp_path / "rse.sock"
    sock.touch()
    release_socket(sock)
    assert sock.exists()


# --- the one wait ------------------------------------------------------------------------------


def test_wait_until_returns_as_soon_as_the_condition_holds() -> None:
    answers = iter([False, False, True])
    started = time.monotonic()
    assert wait_until(lambda: next(answers), timeout=5, interval=0.01)
    assert time.monotonic() - started < 1


def test_wait_until_gives_up_after_its_timeout_asking_once_more() -> None:
    asked: list[float] = []

    def never() -> bool:
        asked.append(time.monotonic())
        return False

    started = time.monotonic()
    assert not wait_until(never, timeout=0.2, interval=0.05)
    assert 0.2 <= asked[-1] - started < 1 and len(asked) >= 3
