"""The one error tree of pybuildx, and secret redaction.

Every failure a user can cause or meet is a ``PybuildxError``; the CLI boundary turns it into
one line (``error: message`` plus ``hint: ...``) and its exit code. Anything else is a bug and
only shows a traceback with ``--debug``.

    PybuildxError (exit 1)
    ├── UsageError (exit 2): bad input the user can fix: flags, files, addresses, certificates
    │   ├── ConfigError: option values and their combinations
    │   └── ConnectError: a builder that cannot be reached or whose TLS does not match
    ├── DaemonError: BuildKit answered with an error (solve failed, RPC failed)
    │   └── BuildFailed: the build itself failed (a Dockerfile step, a missing base image)
    ├── DriverError: bootstrapping or tearing down a builder failed
    └── RegistryError: talking to a registry failed (push, index merge, credentials)

This module must not import anything else from pybuildx: every layer imports it.
"""

from __future__ import annotations

import threading

__all__ = [
    "BuildFailed",
    "ConfigError",
    "ConnectError",
    "DaemonError",
    "DriverError",
    "PybuildxError",
    "RegistryError",
    "UsageError",
    "redact",
    "register_secret",
]

_REDACTED = "***"
_MIN_SECRET_LENGTH = 4
_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(value: str | bytes | None) -> None:
    """Remember a secret so that ``redact`` removes it from every message and log line."""
    if value is None:
        return
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    # Multi-line secrets (PEM keys) are also masked line by line, as GitHub's ::add-mask:: needs.
    parts = {text.strip(), *(line.strip() for line in text.splitlines())}
    with _secrets_lock:
        _secrets.update(p for p in parts if len(p) >= _MIN_SECRET_LENGTH)


def redact(text: str) -> str:
    """Replace every registered secret in ``text`` (longest first, so substrings cannot leak)."""
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, _REDACTED)
    return text


class PybuildxError(Exception):
    """Base of all expected failures: a message, an optional hint and an exit code."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return redact(self.message)

    def render(self) -> str:
        """The message as the CLI prints it: one line, then the hint on its own line."""
        first = redact(" ".join(self.message.split()))
        if self.hint:
            return f"error: {first}\nhint: {redact(self.hint)}"
        return f"error: {first}"


class UsageError(PybuildxError):
    """Bad input the user can fix: a flag, a path, an address, a certificate."""

    exit_code = 2


class ConfigError(UsageError):
    """An option value or a combination of options that cannot work."""


class ConnectError(UsageError):
    """A builder that cannot be reached, or whose TLS setup does not match the daemon's."""


class DaemonError(PybuildxError):
    """BuildKit answered with an error."""


class BuildFailed(DaemonError):
    """The build itself failed: a Dockerfile step, a missing base image, an export."""


class DriverError(PybuildxError):
    """Bootstrapping, reaching or tearing down a builder failed."""


class RegistryError(PybuildxError):
    """A registry refused or failed a request (push, index merge, credentials)."""
