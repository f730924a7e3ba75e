"""The protobuf messages of each Parsec operation, from the code generated out of the contracts.

Importing this module generates the code first if a contract changed (see ``protogen``).
"""

# ruff: noqa: E402 - the generated modules are importable only after ensure_importable()

from __future__ import annotations

from google.protobuf.message import Message

from ..protogen import ensure_importable
from .constants import Opcode

ensure_importable()

import delete_client_pb2 as delete_client
import list_authenticators_pb2 as list_authenticators
import list_clients_pb2 as list_clients
import list_keys_pb2 as list_keys
import list_opcodes_pb2 as list_opcodes
import list_providers_pb2 as list_providers
import ping_pb2 as ping
import psa_algorithm_pb2 as psa_algorithm
import psa_destroy_key_pb2 as psa_destroy_key
import psa_export_public_key_pb2 as psa_export_public_key
import psa_generate_key_pb2 as psa_generate_key
import psa_generate_random_pb2 as psa_generate_random
import psa_hash_compute_pb2 as psa_hash_compute
import psa_import_key_pb2 as psa_import_key
import psa_key_attributes_pb2 as psa_key_attributes
import psa_sign_hash_pb2 as psa_sign_hash
import psa_verify_hash_pb2 as psa_verify_hash

__all__ = [
    "delete_client",
    "list_authenticators",
    "list_clients",
    "list_keys",
    "list_opcodes",
    "list_providers",
    "ping",
    "psa_algorithm",
    "psa_destroy_key",
    "psa_export_public_key",
    "psa_generate_key",
    "psa_generate_random",
    "psa_hash_compute",
    "psa_import_key",
    "psa_key_attributes",
    "psa_sign_hash",
    "psa_verify_hash",
]

#: opcode -> (Operation message, Result message) of every operation this project implements.
CONTRACTS: dict[Opcode, tuple[type[Message], type[Message]]] = {
    Opcode.PING: (ping.Operation, ping.Result),
    Opcode.LIST_PROVIDERS: (list_providers.Operation, list_providers.Result),
    Opcode.LIST_OPCODES: (list_opcodes.Operation, list_opcodes.Result),
    Opcode.LIST_AUTHENTICATORS: (list_authenticators.Operation, list_authenticators.Result),
    Opcode.LIST_KEYS: (list_keys.Operation, list_keys.Result),
    Opcode.LIST_CLIENTS: (list_clients.Operation, list_clients.Result),
    Opcode.DELETE_CLIENT: (delete_client.Operation, delete_client.Result),
    Opcode.PSA_IMPORT_KEY: (psa_import_key.Operation, psa_import_key.Result),
    Opcode.PSA_GENERATE_KEY: (psa_generate_key.Operation, psa_generate_key.Result),
    Opcode.PSA_DESTROY_KEY: (psa_destroy_key.Operation, psa_destroy_key.Result),
    Opcode.PSA_EXPORT_PUBLIC_KEY: (psa_export_public_key.Operation, psa_export_public_key.Result),
    Opcode.PSA_SIGN_HASH: (psa_sign_hash.Operation, psa_sign_hash.Result),
    Opcode.PSA_VERIFY_HASH: (psa_verify_hash.Operation, psa_verify_hash.Result),
    Opcode.PSA_GENERATE_RANDOM: (psa_generate_random.Operation, psa_generate_random.Result),
    Opcode.PSA_HASH_COMPUTE: (psa_hash_compute.Operation, psa_hash_compute.Result),
}
