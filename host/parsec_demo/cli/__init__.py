"""``parsec-demo``: one command line for every job of the toolkit, one sub-command per job.

Each sub-command is a module of this package with ``NAME``, ``HELP`` (one line),
``setup_parser(parser)`` and ``run(args) -> int``; :func:`build_parser` puts them under one
parser. :func:`main` runs the chosen one and is the only place that turns errors into output:
a :class:`~parsec_demo.errors.UserError` becomes ``parsec-demo <command>: <message>`` on
standard error and its exit code (``--verbose`` adds the traceback); a command line that does
not parse becomes one such line with exit code 2. Library code logs; this module shows the
``parsec_demo`` loggers' records on standard error (progress at INFO, ``--verbose`` adds DEBUG).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, NoReturn

from parsec_service.cli_help import add_command, set_examples

from ..errors import UsageError, UserError
from . import (
    bench,
    build,
    demo,
    image,
    lava,
    parsec,
    report,
    rse,
    run_fvp,
    setup_host,
    validate,
)

EXAMPLES = ("demo --host", "validate", "run-fvp --console", "parsec ping")
DESCRIPTION = (
    "The Parsec-enabled TLS demo's toolkit: boot machines, build the dev image and the demo, "
    "validate, benchmark, and run the RSE model and the Parsec service. "
    "See parsec-demo COMMAND --help."
)
#: The sub-commands, in the order ``--help`` lists them.
COMMANDS: tuple[ModuleType, ...] = (
    run_fvp, image, validate, report, lava, demo, bench, rse, parsec, build, setup_host,
)  # fmt: skip


class Parser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are one line (a UsageError), and which records
    in the parsed arguments which (sub-)command they are for (``command_prog``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Sub-parsers are of the same class; the innermost one's defaults win, so after
        # parsing ``command_prog`` names the sub-command that runs.
        self.set_defaults(command_prog=self.prog)
        self.add_argument(
            "-v",
            "--verbose",
            action="store_true",
            default=argparse.SUPPRESS,
            help="show debug lines, and the traceback of an error",
        )

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self.prog)


def _add_command(commands: Any, module: ModuleType) -> None:
    parser = add_command(commands, module.NAME, module.HELP, module.EXAMPLES, module.__doc__)
    module.setup_parser(parser)
    parser.set_defaults(run=module.run)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="parsec-demo", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        _add_command(commands, module)
    set_examples(parser, EXAMPLES)
    return parser


def build_command_parser(name: str, prog: str) -> argparse.ArgumentParser:
    """The sub-command ``name``'s parser as a top-level one named ``prog``: the ``run-fvp``
    console script, and the tools/ scripts (``./tools/demo`` is ``parsec-demo demo``)."""
    module = next(m for m in COMMANDS if name == m.NAME)
    parser = Parser(prog=prog, description=module.__doc__)
    set_examples(parser, module.EXAMPLES)
    module.setup_parser(parser)
    parser.set_defaults(run=module.run)
    return parser


class _Formatter(logging.Formatter):
    """``[tag] message`` for records that carry a tag (``[image] mmdebstrap ...``), else the
    message as it is."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        tag = getattr(record, "tag", None)
        text = f"[{tag}] {message}" if tag else message
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


_handler: logging.Handler | None = None


def configure_logging(verbose: bool) -> None:
    """The toolkit's log records on standard error: INFO and above, DEBUG with ``verbose``."""
    global _handler
    logger = logging.getLogger("parsec_demo")
    if _handler is not None:
        logger.removeHandler(_handler)
    _handler = logging.StreamHandler(sys.stderr)
    _handler.setFormatter(_Formatter())
    logger.addHandler(_handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)


def _report(prog: str, error: UserError, verbose: bool) -> int:
    if verbose:
        traceback.print_exception(error, file=sys.stderr)
    first, _, details = str(error).partition("\n")
    print(f"{prog}: {first or type(error).__name__}", file=sys.stderr)
    if details:
        print(details, file=sys.stderr)
    return error.exit_code


def _execute(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        return _report(exc.prog, exc, verbose=False)
    verbose: bool = getattr(args, "verbose", False)
    configure_logging(verbose)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except UserError as exc:
        return _report(args.command_prog, exc, verbose)
    except KeyboardInterrupt:
        print(f"{args.command_prog}: interrupted", file=sys.stderr)
        return 130
    finally:
        sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """``parsec-demo``: the console script and ``python -m parsec_demo``. A tools/ script that
    stands for one sub-command sets ``PARSEC_DEMO_AS=<sub-command>:<its own name>``, so that
    its help, usage and errors carry the name the user typed."""
    stands_for = os.environ.pop("PARSEC_DEMO_AS", "")
    name, _, prog = stands_for.partition(":")
    if prog and any(name == m.NAME for m in COMMANDS):
        return _execute(build_command_parser(name, prog), argv)
    return _execute(build_parser(), argv)


def run_fvp_main(argv: Sequence[str] | None = None) -> int:
    """``run-fvp``: the console script for the ``run-fvp`` sub-command alone."""
    return _execute(build_command_parser("run-fvp", "run-fvp"), argv)
