"""The target's command line: ``parsec-demo-service serve`` runs the Parsec-wire-compatible
service, the other sub-commands are parsec-tool's (``parsec-tool`` has just those). The host
toolkit offers the same sub-commands as ``parsec-demo parsec ...``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .cli_help import add_command, set_examples
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
    serve = add_command(
        commands,
        "serve",
        "run the service in the foreground (SIGTERM stops, SIGHUP reloads the config)",
        [
            "--rse /run/parsec-demo/rse.sock --store /var/lib/parsec --config "
            "/etc/parsec/config.toml",
            "--rse /tmp/rse.sock --store /tmp/parsec-store --socket /tmp/parsec.sock",
        ],
        "Run the Parsec-wire-compatible service in the foreground, with the RSE link and key "
        "info directory given: SIGTERM or SIGINT stop it after in-flight requests, SIGHUP "
        "reloads its configuration (a bad file is reported and the old one kept).",
    )
    serve.add_argument(
        "--socket",
        type=Path,
        help="socket path (default: [listener] socket_path, else /run/parsec/parsec.sock)",
    )
    serve.add_argument("--rse", type=Path, required=True, help="the RSE link: socket or port")
    serve.add_argument("--store", type=Path, required=True, help="key info manager directory")
    serve.add_argument(
        "--config", type=Path, help="Parsec config.toml (default: the built-in settings)"
    )
    serve.set_defaults(func=_serve)
    add_tool_commands(commands)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="parsec-demo-service", description="The Parsec-wire-compatible service and its tool."
    )
    set_examples(parser, ["serve --rse /run/parsec-demo/rse.sock --store /var/lib/parsec", "ping"])
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


def tool_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="parsec-tool", description="parsec-tool's commands.")
    set_examples(parser, ["ping", "list-keys", "create-ecc-key -k mykey"])
    add_tool_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result
