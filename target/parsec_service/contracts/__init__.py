"""The protobuf messages of each Parsec operation, from the modules generated out of the
contracts in ``contracts/parsec/`` (see ``build_contracts.py`` beside the package)."""

from __future__ import annotations

from google.protobuf.message import Message

from ..constants import Opcode
from . import delete_client_pb2 as delete_client
from . import list_authenticators_pb2 as list_authenticators
from . import list_clients_pb2 as list_clients
from . import list_keys_pb2 as list_keys
from . import list_opcodes_pb2 as list_opcodes
from . import list_providers_pb2 as list_providers
from . import ping_pb2 as ping
from . import psa_algorithm_pb2 as psa_algorithm
from . import psa_destroy_key_pb2 as psa_destroy_key
from . import psa_export_public_key_pb2 as psa_export_public_key
from . import psa_generate_key_pb2 as psa_generate_key
from . import psa_generate_random_pb2 as psa_generate_random
from . import psa_hash_compute_pb2 as psa_hash_compute
from . import psa_import_key_pb2 as psa_import_key
from . import psa_key_attributes_pb2 as psa_key_attributes
from . import psa_sign_hash_pb2 as psa_sign_hash
from . import psa_verify_hash_pb2 as psa_verify_hash

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
