"""``parsec-demo-rse-model``: the RSE crypto service model's program.

Its options are defined here once; the toolkit's ``parsec-demo rse serve`` takes the same ones.
It needs ``cryptography``, the standard library and the target package's RSE link (no
protobuf): that is what lets a Yocto build install it from the layer's
``parsec-demo-rse-model-native``, for testimage's QEMU controller to start beside the machine.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from parsec_service.rse_link import comms

PROG = "parsec-demo-rse-model"
DESCRIPTION = (
    "Answer RSE comms embed messages on a Unix stream socket (also the path a QEMU chardev "
    "socket connects to). SIGTERM or SIGINT stop it and remove its socket."
)


class ServeError(Exception):
    """The model could not serve: a socket in use, a damaged or read-only key store, a bad
    limit. Its message is one line for the user."""


def _positive(text: str) -> int:
    value = int(text, 0)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The model's options: those of ``parsec-demo rse serve`` and of this program."""
    parser.add_argument("--socket", type=Path, required=True, help="Unix socket to listen on")
    parser.add_argument("--store", type=Path, required=True, help="directory for persistent keys")
    parser.add_argument("--log", type=Path, help="console log file (default: standard output)")
    parser.add_argument(
        "--events", type=Path, help="JSON lines of calls (default: --log with .jsonl)"
    )
    parser.add_argument(
        "--slots", type=_positive, default=32, help="volatile key slots (default 32)"
    )
    parser.add_argument(
        "--max-payload",
        type=_positive,
        default=comms.DEFAULT_MAX_PAYLOAD,
        help=f"largest embed payload in bytes (default 0x{comms.DEFAULT_MAX_PAYLOAD:x})",
    )
    parser.add_argument(
        "--max-keys",
        type=_positive,
        default=256,
        help="persistent keys the store holds, all clients together (default 256)",
    )
    parser.add_argument(
        "--max-connections",
        type=_positive,
        default=64,
        help="links open at once; more are closed on arrival (default 64)",
    )


def serve(args: argparse.Namespace) -> int:
    """Run the model the parsed options describe until SIGTERM or SIGINT; ``ServeError`` when
    it cannot."""
    from .server import ServerConfig
    from .server import serve as serve_config

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
        return serve_config(config)
    except (RuntimeError, OSError, ValueError) as exc:
        raise ServeError(str(exc)) from exc


class _Parser(argparse.ArgumentParser):
    """A command line that does not parse is one line and exit status 2, as with parsec-demo."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=DESCRIPTION)
    add_serve_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The ``parsec-demo-rse-model`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return serve(args)
    except ServeError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
