"""The target's command line: ``parsec-demo-service serve`` runs the Parsec-wire-compatible
service, the other sub-commands are parsec-tool's (``parsec-tool`` has just those). The host
toolkit offers the same sub-commands as ``parsec-demo parsec ...``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import ConfigError
from .tool import add_tool_commands


def _serve(args: argparse.Namespace) -> int:
    from .server import serve

    try:
        return serve(args.config, args.rse, args.store, args.socket)
    except (ConfigError, RuntimeError, OSError) as exc:
        print(f"parsec serve: {exc}", file=sys.stderr)
        return 1


def add_commands(commands: Any) -> None:
    """``serve`` and parsec-tool's sub-commands, on an argparse sub-parser collection."""
    serve = commands.add_parser(
        "serve",
        help="run the service in the foreground (SIGTERM stops, SIGHUP reloads the config)",
    )
    serve.add_argument(
        "--socket",
        type=Path,
        help="socket path (default: [listener] socket_path, else /run/parsec/parsec.sock)",
    )
    serve.add_argument("--rse", type=Path, required=True, help="the RSE link: socket or port")
    serve.add_argument("--store", type=Path, required=True, help="key info manager directory")
    serve.add_argument("--config", type=Path, help="Parsec config.toml")
    serve.set_defaults(func=_serve)
    add_tool_commands(commands)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="parsec-demo-service", description="The Parsec-wire-compatible service and its tool"
    )
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


def tool_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="parsec-tool", description="parsec-tool's commands")
    add_tool_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result
