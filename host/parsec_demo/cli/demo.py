"""The Parsec-enabled TLS handshake, and what the RSE served for it.

By default in the dev image under QEMU, with the RSE model on this machine attached as the
machine's virtio-serial port (the image is built first if needed): ssl_server runs in the
machine over SSH, and ssl_client1 in the image's client container (podman, the host's network,
/run/parsec bind-mounted; the `podman run` line is printed), or directly in the machine with
--no-container. With --host every process runs on this machine instead, the client directly
(no podman): the RSE model, the Parsec service, ssl_server (in a private network namespace when
root) and ssl_client1. Either way the client's output is printed, then the RSE's part read from
the model's JSON events; the logs stay in the run directory it names.
"""

from __future__ import annotations

import argparse

from ..paths import project_root
from . import debian

NAME = "demo"
HELP = "the Parsec-enabled TLS handshake, with what the RSE served for it"
EXAMPLES = ("", "--host", "--host --tls13 --mtls", "--no-container --arch arm64")
ARCHITECTURES = ("amd64", "arm64")


def setup_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", action="store_true", help="every process on this machine (default: a QEMU VM)"
    )
    parser.add_argument(
        "--no-container",
        dest="container",
        action="store_false",
        help="in the VM, run ssl_client1 directly instead of in its container",
    )
    parser.add_argument(
        "--arch", default="amd64", choices=ARCHITECTURES, help="dev image architecture"
    )
    parser.add_argument(
        "--tls13", action="store_true", help="the client speaks TLS 1.3 (default: TLS 1.2)"
    )
    parser.add_argument(
        "--mtls",
        action="store_true",
        help="mutual TLS: the client's key pair is generated in the RSE, its certificate issued "
        "from a CSR signed there, and its handshake signature made there (then the key is "
        "destroyed)",
    )


def run(args: argparse.Namespace) -> int:
    project_root()  # both modes build from the checkout: before any package is installed
    if args.host:
        from ..demo.host import run_host_demo

        debian.ensure(debian.BUILD + debian.HOST_DEMO)
        return run_host_demo(tls13=args.tls13, mtls=args.mtls)
    from ..demo.vm import run_vm_demo

    debian.ensure(debian.dev_machine(args.arch))
    return run_vm_demo(args.arch, in_container=args.container, tls13=args.tls13, mtls=args.mtls)
