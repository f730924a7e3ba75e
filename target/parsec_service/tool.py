"""``parsec-tool <command>`` (and ``parsec-demo parsec <command>``): parsec-tool's commands.

So that scripts and tests written for parsec-tool read this tool's output unchanged: ``ping``
prints ``1.0``; ``list-providers`` prints ``ID: 0x04 (Trusted Service provider)`` blocks;
``sign`` prints a base64 signature (ECDSA as DER); ``export-public-key`` prints PEM.
Messages for people go to standard error, results to standard output.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import sys
from typing import Any

from . import contracts as pb
from . import convert, der, psa
from .cli_help import add_command
from .client import SECP_R1, SHA_256, ParsecClient, ParsecError, key_attributes, sign_alg
from .constants import AuthType, Opcode, ProviderId


def add_tool_commands(commands: Any) -> None:
    """Register parsec-tool's sub-commands on an argparse sub-parser collection."""

    def command(name: str, help_text: str, *examples: str) -> argparse.ArgumentParser:
        parser = add_command(commands, name, help_text, examples or ("",))
        parser.add_argument("-p", "--provider", type=int, help="provider id (default: the first)")
        parser.add_argument("-t", "--timeout", type=float, default=10.0, help="seconds")
        parser.set_defaults(func=run_tool, tool_command=name)
        return parser

    command("ping", "print the service's wire protocol version")
    command("list-providers", "list the providers, in priority order")
    command("list-authenticators", "list the authenticators")
    command("list-opcodes", "list the opcodes of a provider", "", "-p 4")
    command("list-keys", "list the caller's keys")
    command("list-clients", "list the clients that hold keys (admin)")
    command("delete-client", "delete every key of a client (admin)", "--client 1000").add_argument(
        "--client", required=True, help="the client (application) name"
    )
    command("generate-random", "print random bytes in hex", "--nb-bytes 32").add_argument(
        "--nb-bytes", type=int, required=True, help="how many"
    )
    command("export-public-key", "print a public key as PEM", "-k mykey").add_argument(
        "-k", "--key-name", required=True, help="the key's name"
    )
    rsa = command("create-rsa-key", "create an RSA key pair", "-k myrsa", "-k myrsa -s --bits 3072")
    rsa.add_argument("-k", "--key-name", required=True, help="the key's name")
    rsa.add_argument("-s", "--for-signing", action="store_true", help="PKCS#1 v1.5 SHA-256 signing")
    rsa.add_argument("--bits", type=int, default=2048, help="modulus size")
    command(
        "create-ecc-key", "create an ECC SECP_R1 P-256 key pair for ECDSA SHA-256", "-k mykey"
    ).add_argument("-k", "--key-name", required=True, help="the key's name")
    sign = command("sign", "sign the SHA-256 of DATA, print base64", '-k mykey "hello"')
    sign.add_argument("-k", "--key-name", required=True, help="the key's name")
    sign.add_argument("data", help="the text whose SHA-256 is signed")
    command("delete-key", "destroy a key", "-k mykey").add_argument(
        "-k", "--key-name", required=True, help="the key's name"
    )


def run_tool(args: argparse.Namespace) -> int:
    client = ParsecClient(timeout=args.timeout, provider=args.provider)
    try:
        _COMMANDS[args.tool_command](client, args)
    except ParsecError as exc:
        print(f"[ERROR] {exc}", file=sys.stderr)
        return 1
    return 0


def _ping(client: ParsecClient, args: argparse.Namespace) -> None:
    major, minor = client.ping()
    print(f"{major}.{minor}")


def _provider_label(provider_id: int) -> str:
    try:
        return ProviderId(provider_id).label
    except ValueError:
        return "Unknown provider"


def _list_providers(client: ParsecClient, args: argparse.Namespace) -> None:
    for info in client.list_providers():
        print(f"ID: 0x{info.id:02x} ({_provider_label(info.id)})")
        print(f"Description: {info.description}")
        print(f"Version: {info.version_maj}.{info.version_min}.{info.version_rev}")
        print(f"Vendor: {info.vendor}")
        print(f"UUID: {info.uuid}")
        print()


def _list_authenticators(client: ParsecClient, args: argparse.Namespace) -> None:
    for info in client.list_authenticators():
        print(f"ID: 0x{info.id:02x} ({AuthType(info.id).label})")
        print(f"Description: {info.description}")
        print(f"Version: {info.version_maj}.{info.version_min}.{info.version_rev}")
        print()


def _list_opcodes(client: ParsecClient, args: argparse.Namespace) -> None:
    provider = args.provider if args.provider is not None else client.crypto_provider()
    print(f"Opcodes of {_provider_label(provider)}:", file=sys.stderr)
    for opcode in client.list_opcodes(provider):
        try:
            name = Opcode(opcode).label
        except ValueError:
            name = f"0x{opcode:x}"
        print(f"* {name}")


def _describe(attributes: Any) -> str:
    summary = convert.attributes_to_psa(attributes)
    return (
        f"{psa.key_type_name(summary.type)}, {summary.bits} bits, "
        f"permitted algorithm: {psa.alg_name(summary.alg)}"
    )


def _list_keys(client: ParsecClient, args: argparse.Namespace) -> None:
    keys = client.list_keys()
    if not keys:
        print("No keys currently available.", file=sys.stderr)
    for key in keys:
        print(f"* {key.name} ({_provider_label(key.provider_id)}, {_describe(key.attributes)})")


def _list_clients(client: ParsecClient, args: argparse.Namespace) -> None:
    for name in client.list_clients():
        print(f"* {name}")


def _delete_client(client: ParsecClient, args: argparse.Namespace) -> None:
    client.delete_client(args.client)
    print(f"Client {args.client!r} deleted.", file=sys.stderr)


def _generate_random(client: ParsecClient, args: argparse.Namespace) -> None:
    print(client.generate_random(args.nb_bytes).hex())


def _export_public_key(client: ParsecClient, args: argparse.Namespace) -> None:
    print(der.public_key_pem(client.export_public_key(args.key_name)), end="")


def _create_rsa_key(client: ParsecClient, args: argparse.Namespace) -> None:
    if args.for_signing:
        attributes = key_attributes(
            "rsa_key_pair",
            args.bits,
            sign_alg("rsa_pkcs1v15_sign", SHA_256),
            sign_hash=True,
            verify_hash=True,
        )
    else:
        attributes = pb.psa_key_attributes.KeyAttributes(key_bits=args.bits)
        attributes.key_type.rsa_key_pair.SetInParent()
        attributes.key_policy.key_usage_flags.CopyFrom(
            pb.psa_key_attributes.UsageFlags(encrypt=True, decrypt=True)
        )
        attributes.key_policy.key_algorithm.asymmetric_encryption.rsa_pkcs1v15_crypt.SetInParent()
    client.generate_key(args.key_name, attributes)
    print(f"Key {args.key_name!r} created.", file=sys.stderr)


def _create_ecc_key(client: ParsecClient, args: argparse.Namespace) -> None:
    attributes = key_attributes(
        "ecc_key_pair",
        256,
        sign_alg("ecdsa", SHA_256),
        curve_family=SECP_R1,
        sign_hash=True,
        verify_hash=True,
    )
    client.generate_key(args.key_name, attributes)
    print(f"Key {args.key_name!r} created.", file=sys.stderr)


def _sign(client: ParsecClient, args: argparse.Namespace) -> None:
    keys = {key.name: key for key in client.list_keys()}
    if args.key_name not in keys:
        raise ParsecError(1140, f"no key {args.key_name!r}")
    policy = keys[args.key_name].attributes.key_policy.key_algorithm.asymmetric_signature
    scheme = policy.WhichOneof("variant")
    if scheme is None:
        raise ParsecError(1133, "the key is not a signing key")
    alg = sign_alg(scheme, SHA_256)
    digest = hashlib.sha256(args.data.encode()).digest()
    signature = client.sign_hash(args.key_name, alg, digest)
    if scheme in ("ecdsa", "deterministic_ecdsa"):
        signature = der.ecdsa_signature(signature)
    print(base64.b64encode(signature).decode())


def _delete_key(client: ParsecClient, args: argparse.Namespace) -> None:
    client.destroy_key(args.key_name)
    print(f"Key {args.key_name!r} deleted.", file=sys.stderr)


_COMMANDS = {
    "ping": _ping,
    "list-providers": _list_providers,
    "list-authenticators": _list_authenticators,
    "list-opcodes": _list_opcodes,
    "list-keys": _list_keys,
    "list-clients": _list_clients,
    "delete-client": _delete_client,
    "generate-random": _generate_random,
    "export-public-key": _export_public_key,
    "create-rsa-key": _create_rsa_key,
    "create-ecc-key": _create_ecc_key,
    "sign": _sign,
    "delete-key": _delete_key,
}
