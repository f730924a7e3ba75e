"""The README is a guide a user can follow: at most 300 lines, every page it links exists, and
every command of its paths is one the toolkit accepts (its options parse) or names files this
repository has (kas configurations, the layer, LAVA's example settings). The suite runs what
the commands do elsewhere: the host and VM demos, validate, run-fvp, the LAVA actions, kas."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from parsec_demo import cli
from parsec_demo.paths import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"


def _commands() -> list[list[str]]:
    """The commands of the README's shell blocks, continuation lines joined, comments and
    leading environment assignments dropped."""
    text = README.read_text()
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                words = words[1:]
            if words:
                commands.append(words)
    return commands


def test_the_readme_is_a_guide_of_at_most_300_lines() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= 300, len(lines)
    for target in re.findall(r"\]\(((?!https?:)[^)#]+)\)", README.read_text()):
        assert (PROJECT_ROOT / target).exists(), f"the README links to {target}, which is not there"


def test_every_command_of_the_readme_is_one_the_toolkit_accepts() -> None:
    commands = _commands()
    programs = {words[0] for words in commands}
    assert {"./tools/demo", "./tools/test", "./tools/parsec-demo", "./tools/run-fvp", "kas"} <= (
        programs
    )
    for words in commands:
        program, args = words[0], words[1:]
        if program == "./tools/demo":
            cli.build_command_parser("demo", program).parse_args(args)
        elif program == "./tools/run-fvp":
            cli.build_command_parser("run-fvp", program).parse_args(args)
        elif program == "./tools/parsec-demo":
            parsed = cli.build_parser().parse_args(args)
            for name in ("settings", "config"):
                value = getattr(parsed, name, None)
                if isinstance(value, Path) and not str(value).startswith("build/"):
                    assert (PROJECT_ROOT / value).exists(), f"{' '.join(words)}: no {value}"
        elif program == "kas":
            assert args[0] == "build", words
            for config in args[1].split(":"):
                assert (PROJECT_ROOT / config).is_file(), f"{' '.join(words)}: no {config}"
        elif program == "bitbake-layers":
            assert args[:1] == ["add-layer"]
            assert (PROJECT_ROOT / Path(args[1]).name / "conf/layer.conf").is_file()
        elif program != "./tools/test":
            pytest.fail(f"the README runs {program}, which this test does not know")
