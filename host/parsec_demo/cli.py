"""``parsec-demo``: one command line for every job of the toolkit, one sub-command per job."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from parsec_service.rse_link import comms


def _rse_serve(args: argparse.Namespace) -> int:
    from .rse.server import ServerConfig, serve

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
        print(f"parsec-demo rse serve: {exc}", file=sys.stderr)
        return 1


def _demo(args: argparse.Namespace) -> int:
    from .machine.lifecycle import BootError
    from .native_build import BuildError
    from .services import ServiceError
    from .tls_demo import run_host_demo

    try:
        if args.host:
            return run_host_demo()
        from .vm_demo import run_vm_demo

        return run_vm_demo(args.arch)
    except (BuildError, ServiceError, BootError) as exc:
        print(f"parsec-demo demo: {exc}", file=sys.stderr)
        return 1


def _image_build(args: argparse.Namespace) -> int:
    from .image_build import main as image_main

    return image_main(["--arch", args.arch] + (["--force"] if args.force else []))


def _validate(args: argparse.Namespace) -> int:
    from .validate.command import main as validate_main

    return validate_main(args.rest)


def _rse_walkthrough(args: argparse.Namespace) -> int:
    from .rse.walkthrough import run_demo

    return run_demo()


def _build(args: argparse.Namespace) -> int:
    from .native_build import main as build_main

    return build_main(
        ["--check-patches"] if args.check_patches else (["--force"] if args.force else [])
    )


def _bench(args: argparse.Namespace) -> int:
    from .bench import run_bench

    return run_bench(args.what, args.seconds)


def _positive(text: str) -> int:
    value = int(text, 0)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="parsec-demo", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    rse = commands.add_parser("rse", help="the RSE crypto service model")
    rse_commands = rse.add_subparsers(dest="rse_command", required=True)
    serve = rse_commands.add_parser(
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
    serve.set_defaults(func=_rse_serve)
    walkthrough = rse_commands.add_parser(
        "demo", help="walk keys through an RSE model the way the SE driver does"
    )
    walkthrough.set_defaults(func=_rse_walkthrough)

    parsec = commands.add_parser(
        "parsec", help="the Parsec-wire-compatible service, and parsec-tool's commands"
    )
    parsec_commands = parsec.add_subparsers(dest="parsec_command", required=True)
    from parsec_service.cli import add_commands

    add_commands(parsec_commands)

    demo = commands.add_parser(
        "demo", help="the Parsec-enabled TLS handshake, with what the RSE served for it"
    )
    demo.add_argument(
        "--host", action="store_true", help="every process on this machine (default: a QEMU VM)"
    )
    demo.add_argument("--arch", default="amd64", help="dev image architecture (amd64, arm64)")

    image = commands.add_parser("image", help="the dev image (Debian packages, bootable)")
    image_commands = image.add_subparsers(dest="image_command", required=True)
    image_build = image_commands.add_parser("build", help="build it unless an identical one exists")
    image_build.add_argument("--arch", default="amd64", choices=["amd64", "arm64"])
    image_build.add_argument("--force", action="store_true", help="rebuild even if cached")
    image_build.set_defaults(func=_image_build)
    demo.set_defaults(func=_demo)

    validate = commands.add_parser(
        "validate",
        help="the layer's oeqa cases against the dev VM; reports (see validate --help)",
        add_help=False,
    )
    validate.add_argument("rest", nargs=argparse.REMAINDER)
    validate.set_defaults(func=_validate)

    build = commands.add_parser(
        "build", help="build ssl_client1, ssl_server and the Parsec SE driver for this machine"
    )
    build.add_argument("--force", action="store_true", help="rebuild even if nothing changed")
    build.add_argument(
        "--check-patches", action="store_true", help="only check the layer's patches apply"
    )
    build.set_defaults(func=_build)

    bench = commands.add_parser("bench", help="benchmarks with a baseline measured in the same run")
    bench.add_argument(
        "what", choices=["rse", "parsec", "handshake", "boot"], help="what to measure"
    )
    bench.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    bench.set_defaults(func=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["validate"]:  # its own options, its own parser
        from .validate.command import main as validate_main

        return validate_main(arguments[1:])
    args = build_parser().parse_args(arguments)
    result: int = args.func(args)
    return result
