"""The RSE crypto service model: rse serve runs it in the foreground (SIGTERM or SIGINT stop
it and remove its socket), rse demo walks keys through a model the way the SE driver does.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from parsec_service.rse_link import comms

from ..errors import UserError

NAME = "rse"
HELP = "the RSE crypto service model: rse serve, rse demo"


def _positive(text: str) -> int:
    value = int(text, 0)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def setup_parser(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="rse_command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the model in the foreground (SIGTERM stops it)",
        description="Answer RSE comms embed messages on a Unix stream socket (also the path "
        "a QEMU chardev socket connects to).",
    )
    serve.add_argument("--socket", type=Path, required=True, help="Unix socket to listen on")
    serve.add_argument("--store", type=Path, required=True, help="directory for persistent keys")
    serve.add_argument("--log", type=Path, help="console log file (default: standard output)")
    serve.add_argument(
        "--events", type=Path, help="JSON lines of calls (default: --log with .jsonl)"
    )
    serve.add_argument(
        "--slots", type=_positive, default=32, help="volatile key slots (default 32)"
    )
    serve.add_argument(
        "--max-payload",
        type=_positive,
        default=comms.DEFAULT_MAX_PAYLOAD,
        help=f"largest embed payload in bytes (default 0x{comms.DEFAULT_MAX_PAYLOAD:x})",
    )
    serve.add_argument(
        "--max-keys",
        type=_positive,
        default=256,
        help="persistent keys the store holds, all clients together (default 256)",
    )
    serve.add_argument(
        "--max-connections",
        type=_positive,
        default=64,
        help="links open at once; more are closed on arrival (default 64)",
    )
    commands.add_parser(
        "demo",
        help="walk keys through an RSE model the way the SE driver does",
        description="Start an RSE model and walk keys through it the way the SE driver does, "
        "printing the model's console lines for each step.",
    )


def _serve(args: argparse.Namespace) -> int:
    from ..rse.server import ServerConfig, serve

    events = args.events
    if events is None and args.log is not None:
        events = args.log.with_suffix(".jsonl")
    config = ServerConfig(
        socket_path=args.socket,
        store_dir=args.store,
        console_log=args.log,
        events_log=events,
        slots=args.slots,
        max_payload=args.max_payload,
        max_keys=args.max_keys,
        max_connections=args.max_connections,
    )
    try:
        return serve(config)
    except (RuntimeError, OSError, ValueError) as exc:
        # A socket in use, a damaged or read-only key store, a bad limit: said in one line.
        raise UserError(str(exc)) from exc


def run(args: argparse.Namespace) -> int:
    if args.rse_command == "serve":
        return _serve(args)
    from ..rse.walkthrough import run_demo

    return run_demo()
