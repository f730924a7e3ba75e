"""The RSE crypto service model: rse serve runs it in the foreground (SIGTERM or SIGINT stop
it and remove its socket), rse demo walks keys through a model the way the SE driver does.

``rse serve`` is also a program of its own, ``parsec-demo-rse-model``, with the same options
(``parsec_demo.rse.model_command`` defines them for both).
"""

from __future__ import annotations

import argparse

from ..rse import model_command

NAME = "rse"
HELP = "the RSE crypto service model: rse serve, rse demo"


def setup_parser(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="rse_command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the model in the foreground (SIGTERM stops it)",
        description=model_command.DESCRIPTION,
    )
    model_command.add_serve_arguments(serve)
    commands.add_parser(
        "demo",
        help="walk keys through an RSE model the way the SE driver does",
        description="Start an RSE model and walk keys through it the way the SE driver does, "
        "printing the model's console lines for each step.",
    )


def run(args: argparse.Namespace) -> int:
    if args.rse_command == "serve":
        return model_command.serve(args)
    from ..rse.walkthrough import run_demo

    return run_demo()
