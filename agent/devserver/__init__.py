"""The reference basket backend: the contract's endpoints on SQLite, for development and tests."""

from agent.devserver.server import Call, ReferenceBackend

__all__ = ["Call", "ReferenceBackend"]
