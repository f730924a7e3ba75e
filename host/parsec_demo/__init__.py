"""parsec-demo: the toolkit that builds, boots and validates the Parsec-enabled TLS demo."""

__version__ = "0.1.0"
