"""One exception tree for every expected failure.

Each foreign library's errors are translated once, at its boundary, with
``raise ... from``. Only the CLI turns these into exit codes and one-line
messages; everything below it raises.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_OPERATIONAL = 1
EXIT_BAD_INPUT = 2
EXIT_HARDWARE = 3


class AgentError(Exception):
    """An expected failure with a message a person can act on.

    ``message`` says what is wrong, ``fix`` says what to do about it. The CLI
    prints ``str(error)`` as one line.
    """

    exit_code = EXIT_OPERATIONAL

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        if self.fix:
            return f"{self.message} ({self.fix})"
        return self.message


class OperationalError(AgentError):
    """Something failed while running: disk, backend, a timeout. Exit 1."""

    exit_code = EXIT_OPERATIONAL


class BackendError(OperationalError):
    """The backend could not be reached or refused us in a way we cannot fix alone."""


class BackendConfigFault(BackendError):
    """The backend refuses a call even after a fresh registration: a wrong path or URL."""


class JournalError(OperationalError):
    """The on-disk journal could not be written or read."""


class JournalBusyError(JournalError):
    """Another process (usually the running service) holds the journal."""


class BadInputError(AgentError):
    """Bad input from a person: config, arguments, files. Exit 2."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(BadInputError):
    """A config file, environment variable or flag is wrong."""


class ModelError(BadInputError):
    """A model, label or catalog file is missing, damaged or of the wrong kind."""


class CameraInputError(BadInputError):
    """A camera source spec or file source is wrong (bad path, unknown scheme)."""


class HardwareError(AgentError):
    """Hardware is missing or busy: camera, Edge TPU. Exit 3."""

    exit_code = EXIT_HARDWARE


class CameraError(HardwareError):
    """The camera is missing, busy or stopped delivering frames."""


class AcceleratorError(HardwareError):
    """The Edge TPU or its runtime library is missing."""
