"""The Parsec-wire-compatible service and parsec-tool's commands.

parsec serve runs the service in the foreground (SIGTERM or SIGINT stop it after in-flight
requests, SIGHUP reloads its configuration); every other sub-command is parsec-tool's, with its
options and output (PARSEC_SERVICE_ENDPOINT=unix:/path selects the service). The arguments
are the target package's own (parsec_service.cli), so both command lines stay one.
"""

from __future__ import annotations

import argparse

from parsec_service.cli import add_commands
from parsec_service.config import ConfigError

from ..errors import UserError

NAME = "parsec"
HELP = "the Parsec-wire-compatible service (parsec serve), and parsec-tool's commands"
EXAMPLES = (
    "serve --rse /tmp/rse.sock --store /tmp/parsec-store --socket /tmp/parsec.sock",
    "ping",
    "create-ecc-key -k mykey",
)


def setup_parser(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="parsec_command", required=True, metavar="COMMAND")
    add_commands(commands)
    # Serving runs here, so that its errors reach the user the way every command's do.
    commands.choices["serve"].set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from parsec_service.server import serve

    try:
        return serve(args.config, args.rse, args.store, args.socket)
    except (RuntimeError, OSError) as exc:
        # The socket path in use or not a socket, a store that cannot be opened.
        raise UserError(str(exc)) from exc


def run(args: argparse.Namespace) -> int:
    try:
        result: int = args.func(args)
    except ConfigError as exc:
        raise UserError(str(exc)) from exc
    return result
