"""How every command line of the project explains itself: a description, the options with their
defaults, and examples of use.

``add_command`` makes a sub-command's parser with the description as it is written, an
``examples:`` epilog whose lines begin with the parser's own program name (so they read right
whatever name the user typed), and ``HelpFormatter``, which shows each option's default unless
its help already speaks of it or it has none worth showing. ``set_examples`` gives a top-level
parser the same epilog.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs as written; ``(default: X)`` after an option's help where X is
    a value (not None, False or suppressed) and the help does not already mention it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default is None
            or default is False
            or default in ("", [], ())
            or default == argparse.SUPPRESS
            or (not action.option_strings and action.nargs not in ("?", "*"))
        ):
            return action.help
        value = str(default).replace("%", "%%")
        return f"{text} (default: {value})".lstrip()


def set_examples(parser: argparse.ArgumentParser, examples: Sequence[str]) -> None:
    """``examples:`` as the parser's epilog, each line ``<prog> <example>``."""
    lines = [f"  {parser.prog} {example}".rstrip() for example in examples]
    parser.epilog = "examples:\n" + "\n".join(lines)
    parser.formatter_class = HelpFormatter


def add_command(
    commands: Any,
    name: str,
    help_text: str,
    examples: Sequence[str],
    description: str | None = None,
) -> argparse.ArgumentParser:
    """A sub-command's parser: ``help_text`` in the list of commands, ``description`` (else
    ``help_text`` as a sentence) at the top of its help, ``examples`` at the bottom."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=help_text,
        description=description or sentence(help_text),
        formatter_class=HelpFormatter,
    )
    set_examples(parser, examples)
    return parser


def sentence(text: str) -> str:
    """``text`` with a capital first letter and a full stop."""
    text = text.strip()
    if not text:
        return text
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")
