"""Each machine-side step and check is written once: in the layer's ``parsec_demo_machine``.

The oeqa cases, the toolkit and the LAVA test definition use that module (the LAVA script is
generated from it); these tests fail when a second copy of the lines of a good handshake or of
the wait for the Parsec unit appears anywhere in the repository, or when the LAVA script no
longer is what the module generates.
"""

from __future__ import annotations

import re
import subprocess

import parsec_demo_machine as machine

from parsec_demo.lava import testdef_script
from parsec_demo.paths import PROJECT_ROOT

#: Where the definitions live, and the script written from them.
DEFINITION = "meta-parsec-demo/lib/parsec_demo_machine.py"
GENERATED = testdef_script.SCRIPT
#: Files that quote a real client's output (data, not a definition of what it must be).
TRANSCRIPTS = {
    "docs/demo.md": "the demo's output, shown to the reader",
    "tests/unit/test_validate_runner.py": "a recorded ssl_client1 run, fed to the cases",
}
#: A wait on a unit's "activating" state: a comparison with it, in shell or Python.
UNIT_WAIT = re.compile(r"""[!=]=?\s*["']?activating\b""")


def tracked_texts() -> dict[str, str]:
    names = subprocess.run(
        ["git", "ls-files"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    texts = {}
    for name in names:
        try:
            texts[name] = (PROJECT_ROOT / name).read_text()
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue
    return texts


def test_the_lines_of_a_good_handshake_are_written_once() -> None:
    copies = {
        name
        for name, text in tracked_texts().items()
        if sum(line in text for line in machine.EXPECTED_LINES) >= 3
    }
    assert copies - set(TRANSCRIPTS) == {DEFINITION, GENERATED}


def test_the_wait_for_the_parsec_unit_is_written_once() -> None:
    copies = {name for name, text in tracked_texts().items() if UNIT_WAIT.search(text)}
    assert copies == {DEFINITION, GENERATED}


def test_the_lava_script_is_what_the_steps_generate() -> None:
    committed = (PROJECT_ROOT / GENERATED).read_text()
    assert committed == testdef_script.script(), (
        f"{GENERATED} is not what the layer's steps generate: write it again with "
        f"python3 -m parsec_demo.lava.testdef_script > {GENERATED}"
    )
    assert (PROJECT_ROOT / GENERATED).stat().st_mode & 0o111, "it stays executable"


def test_the_lava_script_runs_under_a_posix_shell() -> None:
    subprocess.run(["sh", "-n", str(PROJECT_ROOT / GENERATED)], check=True)
