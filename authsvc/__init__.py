"""authsvc: a key-value-backed authentication and identity service."""

__version__ = "0.1.0"
