"""A Parsec-wire-compatible service (protocol 1.0) and a parsec-tool-style client."""
