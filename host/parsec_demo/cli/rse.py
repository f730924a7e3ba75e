"""The RSE crypto service model: rse serve runs it in the foreground (SIGTERM or SIGINT stop
it and remove its socket), rse demo walks keys through a model the way the SE driver does.

``rse serve`` is the model's own program, ``parsec-demo-rse-model``, with the same options
(``parsec_rse_model.command`` defines them for both).
"""

from __future__ import annotations

import argparse

from parsec_rse_model import command as model_command
from parsec_service.cli_help import add_command

from ..errors import UserError

NAME = "rse"
HELP = "the RSE crypto service model: rse serve, rse demo"
EXAMPLES = ("serve --socket /tmp/rse.sock --store /tmp/rse-store", "demo")


def setup_parser(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="rse_command", required=True, metavar="COMMAND")
    serve = add_command(
        commands,
        "serve",
        "run the model in the foreground (SIGTERM stops it)",
        [
            "--socket /tmp/rse.sock --store /tmp/rse-store",
            "--socket /tmp/rse.sock --store /tmp/rse-store --log rse-console.log --max-keys 512",
        ],
        model_command.DESCRIPTION,
    )
    model_command.add_serve_arguments(serve)
    add_command(
        commands,
        "demo",
        "walk keys through an RSE model the way the SE driver does",
        [""],
        "Start an RSE model and walk keys through it the way the SE driver does, "
        "printing the model's console lines for each step.",
    )


def run(args: argparse.Namespace) -> int:
    if args.rse_command == "serve":
        try:
            return model_command.serve(args)
        except model_command.ServeError as exc:
            raise UserError(str(exc)) from exc
    from ..demo.rse_walkthrough import run_demo

    return run_demo()
