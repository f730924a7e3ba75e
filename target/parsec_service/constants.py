"""Parsec wire protocol 1.0 numbers: response statuses, opcodes, providers, authenticators.

These are the published contract: a client that only knows upstream Parsec must understand
every number this service sends, so only the values listed here are ever sent.
"""

from __future__ import annotations

import enum

from . import psa


class ResponseStatus(enum.IntEnum):
    SUCCESS = 0
    WRONG_PROVIDER_ID = 1
    CONTENT_TYPE_NOT_SUPPORTED = 2
    ACCEPT_TYPE_NOT_SUPPORTED = 3
    WIRE_PROTOCOL_VERSION_NOT_SUPPORTED = 4
    PROVIDER_NOT_REGISTERED = 5
    PROVIDER_DOES_NOT_EXIST = 6
    DESERIALIZING_BODY_FAILED = 7
    SERIALIZING_BODY_FAILED = 8
    OPCODE_DOES_NOT_EXIST = 9
    RESPONSE_TOO_LARGE = 10
    AUTHENTICATION_ERROR = 11
    AUTHENTICATOR_DOES_NOT_EXIST = 12
    AUTHENTICATOR_NOT_REGISTERED = 13
    KEY_INFO_MANAGER_ERROR = 14
    CONNECTION_ERROR = 15
    INVALID_ENCODING = 16
    INVALID_HEADER = 17
    WRONG_PROVIDER_UUID = 18
    NOT_AUTHENTICATED = 19
    BODY_SIZE_EXCEEDS_LIMIT = 20
    ADMIN_OPERATION = 21
    DEPRECATED_PRIMITIVE = 22
    PSA_ERROR_GENERIC_ERROR = 1132
    PSA_ERROR_NOT_PERMITTED = 1133
    PSA_ERROR_NOT_SUPPORTED = 1134
    PSA_ERROR_INVALID_ARGUMENT = 1135
    PSA_ERROR_INVALID_HANDLE = 1136
    PSA_ERROR_BAD_STATE = 1137
    PSA_ERROR_BUFFER_TOO_SMALL = 1138
    PSA_ERROR_ALREADY_EXISTS = 1139
    PSA_ERROR_DOES_NOT_EXIST = 1140
    PSA_ERROR_INSUFFICIENT_MEMORY = 1141
    PSA_ERROR_INSUFFICIENT_STORAGE = 1142
    PSA_ERROR_INSUFFICIENT_DATA = 1143
    PSA_ERROR_COMMUNICATION_FAILURE = 1145
    PSA_ERROR_STORAGE_FAILURE = 1146
    PSA_ERROR_HARDWARE_FAILURE = 1147
    PSA_ERROR_INSUFFICIENT_ENTROPY = 1148
    PSA_ERROR_INVALID_SIGNATURE = 1149
    PSA_ERROR_INVALID_PADDING = 1150
    PSA_ERROR_CORRUPTION_DETECTED = 1151
    PSA_ERROR_DATA_CORRUPT = 1152
    PSA_ERROR_DATA_INVALID = 1153

    @property
    def label(self) -> str:
        """Upstream's CamelCase name, e.g. ``PsaErrorInvalidSignature``."""
        return "".join(part.capitalize() for part in self.name.split("_"))


def status_from_psa(status: int) -> ResponseStatus:
    """``1000 - psa_status``; PSA values Parsec does not define become GenericError."""
    if status == psa.Status.SUCCESS:
        return ResponseStatus.SUCCESS
    try:
        return ResponseStatus(1000 - status)
    except ValueError:
        return ResponseStatus.PSA_ERROR_GENERIC_ERROR


def psa_from_status(status: int) -> int:
    """The PSA status a client library returns for a Parsec response status."""
    if status == ResponseStatus.SUCCESS:
        return psa.Status.SUCCESS
    if status >= 1000:
        return 1000 - status
    if status == ResponseStatus.NOT_AUTHENTICATED or status == ResponseStatus.AUTHENTICATION_ERROR:
        return psa.Status.NOT_PERMITTED
    return psa.Status.COMMUNICATION_FAILURE


class Opcode(enum.IntEnum):
    PING = 0x01
    PSA_GENERATE_KEY = 0x02
    PSA_DESTROY_KEY = 0x03
    PSA_SIGN_HASH = 0x04
    PSA_VERIFY_HASH = 0x05
    PSA_IMPORT_KEY = 0x06
    PSA_EXPORT_PUBLIC_KEY = 0x07
    LIST_PROVIDERS = 0x08
    LIST_OPCODES = 0x09
    PSA_ASYMMETRIC_ENCRYPT = 0x0A
    PSA_ASYMMETRIC_DECRYPT = 0x0B
    PSA_EXPORT_KEY = 0x0C
    PSA_GENERATE_RANDOM = 0x0D
    LIST_AUTHENTICATORS = 0x0E
    PSA_HASH_COMPUTE = 0x0F
    PSA_HASH_COMPARE = 0x10
    PSA_AEAD_ENCRYPT = 0x11
    PSA_AEAD_DECRYPT = 0x12
    PSA_RAW_KEY_AGREEMENT = 0x13
    PSA_CIPHER_ENCRYPT = 0x14
    PSA_CIPHER_DECRYPT = 0x15
    PSA_MAC_COMPUTE = 0x16
    PSA_MAC_VERIFY = 0x17
    PSA_SIGN_MESSAGE = 0x18
    PSA_VERIFY_MESSAGE = 0x19
    LIST_KEYS = 0x1A
    LIST_CLIENTS = 0x1B
    DELETE_CLIENT = 0x1C
    ATTEST_KEY = 0x1E
    PREPARE_KEY_ATTESTATION = 0x1F
    CAN_DO_CRYPTO = 0x20

    @property
    def label(self) -> str:
        """Upstream's name, e.g. ``PsaVerifyHash``."""
        return "".join(part.capitalize() for part in self.name.split("_"))


CORE_OPCODES = frozenset(
    {
        Opcode.PING,
        Opcode.LIST_PROVIDERS,
        Opcode.LIST_OPCODES,
        Opcode.LIST_AUTHENTICATORS,
        Opcode.LIST_KEYS,
        Opcode.LIST_CLIENTS,
        Opcode.DELETE_CLIENT,
    }
)
ADMIN_OPCODES = frozenset({Opcode.LIST_CLIENTS, Opcode.DELETE_CLIENT})
#: What ListOpcodes reports for the core provider (the admin operations are not advertised).
CORE_ADVERTISED = (
    Opcode.LIST_PROVIDERS,
    Opcode.LIST_OPCODES,
    Opcode.PING,
    Opcode.LIST_AUTHENTICATORS,
    Opcode.LIST_KEYS,
)


class ProviderId(enum.IntEnum):
    CORE = 0
    MBED_CRYPTO = 1
    PKCS11 = 2
    TPM = 3
    TRUSTED_SERVICE = 4
    CRYPTO_AUTH_LIB = 5

    @property
    def label(self) -> str:
        """parsec-tool's display name, e.g. ``Trusted Service provider``."""
        return _PROVIDER_LABELS[self]


_PROVIDER_LABELS = {
    ProviderId.CORE: "Core provider",
    ProviderId.MBED_CRYPTO: "Mbed Crypto provider",
    ProviderId.PKCS11: "PKCS #11 provider",
    ProviderId.TPM: "TPM provider",
    ProviderId.TRUSTED_SERVICE: "Trusted Service provider",
    ProviderId.CRYPTO_AUTH_LIB: "CryptoAuthentication Library provider",
}


class AuthType(enum.IntEnum):
    NO_AUTH = 0
    DIRECT = 1
    JWT = 2
    UNIX_PEER_CREDENTIALS = 3
    JWT_SVID = 4

    @property
    def label(self) -> str:
        return _AUTH_LABELS[self]


_AUTH_LABELS = {
    AuthType.NO_AUTH: "No authentication",
    AuthType.DIRECT: "Direct authenticator",
    AuthType.JWT: "JSON Web Token authenticator",
    AuthType.UNIX_PEER_CREDENTIALS: "Unix Peer Credentials authenticator",
    AuthType.JWT_SVID: "JWT SPIFFE Verifiable Identity Document authenticator",
}

#: Config file names of the authenticators ([authenticator] auth_type).
AUTH_TYPE_NAMES = {
    "Direct": AuthType.DIRECT,
    "UnixPeerCredentials": AuthType.UNIX_PEER_CREDENTIALS,
    "JwtSvid": AuthType.JWT_SVID,
}

CORE_PROVIDER_UUID = "47049873-2a43-4845-9d72-831eab668784"
TRUSTED_SERVICE_PROVIDER_UUID = "71129441-508a-4da6-b6e8-7b98a777e4c0"
