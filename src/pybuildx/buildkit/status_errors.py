"""Turning gRPC errors from BuildKit into one-line ``PybuildxError``s.

BuildKit attaches typed details to its statuses (``grpc-status-details-bin``, a
``google.rpc.Status``) as ``google.protobuf.Any`` values whose payload is JSON, with type URLs
such as ``github.com/moby/buildkit/errdefs.Source+json``. The ``Source`` detail locates the failing
Dockerfile instruction, which we append to the message as ``Dockerfile:3: RUN exit 3``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from google.protobuf import json_format
from google.rpc import status_pb2

from pybuildx.buildkit._pb import errdefs_pb2
from pybuildx.errors import BuildFailed, ConnectError, DaemonError, PybuildxError

__all__ = ["SourceLocation", "describe_failure", "from_rpc_error", "source_locations"]

_DETAILS_KEY = "grpc-status-details-bin"
_SOURCE_TYPE_SUFFIX = "errdefs.Source+json"
_MAX_LINE_TEXT = 120


@dataclass(frozen=True)
class SourceLocation:
    """Where in a source file (a Dockerfile) an error happened; lines count from 1."""

    filename: str
    line: int
    text: str

    def __str__(self) -> str:
        return (
            f"{self.filename}:{self.line}: {self.text}"
            if self.text
            else f"{self.filename}:{self.line}"
        )


def _status_details(error: grpc.RpcError) -> status_pb2.Status | None:
    trailers = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    for key, value in trailers or ():
        if key == _DETAILS_KEY and isinstance(value, bytes):
            status = status_pb2.Status()
            try:
                status.ParseFromString(value)
            except Exception:  # a malformed detail must not hide the error itself
                return None
            return status
    return None


def _location(source: errdefs_pb2.Source) -> SourceLocation | None:
    if not source.ranges:
        return None
    line = source.ranges[0].start.line
    if line <= 0:
        return None
    lines = source.info.data.decode("utf-8", "replace").splitlines()
    text = lines[line - 1].strip() if line <= len(lines) else ""
    if len(text) > _MAX_LINE_TEXT:
        text = text[: _MAX_LINE_TEXT - 3] + "..."
    return SourceLocation(source.info.filename or "Dockerfile", line, text)


def source_locations(error: grpc.RpcError) -> list[SourceLocation]:
    """The source locations BuildKit attached to ``error`` (innermost error first)."""
    status = _status_details(error)
    if status is None:
        return []
    found: list[SourceLocation] = []
    for detail in status.details:
        if not detail.type_url.endswith(_SOURCE_TYPE_SUFFIX):
            continue
        source = errdefs_pb2.Source()
        try:
            json_format.Parse(detail.value, source, ignore_unknown_fields=True)
        except (json_format.ParseError, UnicodeDecodeError):
            continue
        location = _location(source)
        if location is not None and location not in found:
            found.append(location)
    return found


def _clean(message: str) -> str:
    # Nested BuildKit errors carry "rpc error: code = X desc = " prefixes that say nothing to users.
    for _ in range(3):
        head, sep, rest = message.partition(" desc = ")
        if sep and head.startswith("rpc error: code = "):
            message = rest
    return " ".join(message.split())


_CONNECT_HINTS: Sequence[tuple[str, str]] = (
    (
        "hostname verification",
        "the daemon's certificate does not name this host: set --tls-servername to a name in it",
    ),
    (
        "tsi_data_corrupted",
        "the daemon rejected our TLS session: it needs a client certificate signed by its CA "
        "(--tls-cert/--tls-key)",
    ),
    ("certificate verify failed", "the daemon's certificate is not signed by --tls-cacert"),
    ("certificate_verify_failed", "the daemon's certificate is not signed by --tls-cacert"),
    (
        "peer did not return a certificate",
        "the daemon requires a client certificate: pass --tls-cert and --tls-key",
    ),
    (
        "certificate required",
        "the daemon requires a client certificate: pass --tls-cert and --tls-key",
    ),
    ("handshake failed", "check --tls-cacert, --tls-cert, --tls-key and --tls-servername"),
    ("ssl", "check --tls-cacert, --tls-cert, --tls-key and --tls-servername"),
    ("no such file", "is buildkitd running, and is the socket path right?"),
    ("connection refused", "is buildkitd running and listening on that address?"),
    ("socket closed", "the daemon closed the connection: does it expect TLS (--tls-cacert ...)?"),
)


def _connect_hint(details: str) -> str:
    lowered = details.lower()
    for needle, hint in _CONNECT_HINTS:
        if needle in lowered:
            return hint
    return "check the address, that the daemon runs, and its TLS settings"


def connect_error(error: grpc.RpcError, target: str) -> ConnectError:
    details = error.details() if hasattr(error, "details") else str(error)
    details = _clean(details or "")
    return ConnectError(
        f"cannot reach the BuildKit daemon at {target}: {details}", hint=_connect_hint(details)
    )


def from_rpc_error(error: grpc.RpcError, *, action: str, target: str = "") -> PybuildxError:
    """Map a failed call: unreachable daemons → ConnectError, failed Solve → BuildFailed."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = _clean((error.details() if hasattr(error, "details") else "") or str(code))
    if code == grpc.StatusCode.UNAVAILABLE:
        return connect_error(error, target or "the given address")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DaemonError(f"{action} timed out: {details}")
    if code == grpc.StatusCode.CANCELLED:
        return DaemonError(f"{action} was cancelled: {details}")
    locations = source_locations(error)
    message = f"{action} failed: {details}"
    if locations:
        message += f" ({locations[0]})"
    if action == "build":
        return BuildFailed(message)
    return DaemonError(message)


def describe_failure(error: BaseException) -> str:
    """One line for a background thread's failure, kept instead of the exception itself: its
    traceback would hold the thread's frames (and a gRPC call in them) alive until exit."""
    if isinstance(error, grpc.RpcError) and hasattr(error, "code"):
        return f"{error.code().name}: {error.details()}"
    return f"{type(error).__name__}: {error}"
