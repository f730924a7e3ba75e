"""The software of the Parsec TLS demo that runs on the machine: the Parsec-wire-compatible
service (wire protocol, authenticators, key info manager, providers), its link to the RSE (RSE
comms framing, TF-M crypto packing, PSA numbers), the parsec-tool commands and the Parsec
contracts. Protobuf and the standard library are all it needs."""

__version__ = "0.1.0"
