"""The one place that builds gRPC channels to BuildKit daemons (``unix://`` and ``tcp://``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import grpc

from pybuildx.buildkit.limits import MESSAGE_LIMIT
from pybuildx.errors import ConfigError, UsageError, register_secret

__all__ = [
    "MESSAGE_LIMIT",
    "TLSFiles",
    "channel_options",
    "describe_target",
    "open_channel",
    "split_address",
]

# BuildKit's error details (grpc-status-details-bin) outgrow grpcio's 8 KiB metadata default.
_METADATA_LIMIT = 1 << 20
# buildkitd enforces grpc-go's default keepalive policy (pings at most every 5 min, else GOAWAY
# "too_many_pings"); 6 min keeps idle long builds alive behind NATs without tripping it.
_KEEPALIVE_MS = 6 * 60 * 1000


@dataclass(frozen=True)
class TLSFiles:
    """PEM files for a TLS connection: the CA that signed the daemon, our client pair (mTLS)."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ConfigError(
                "a TLS client certificate needs its key and the key its certificate",
                hint="pass both --tls-cert and --tls-key",
            )


def split_address(address: str) -> tuple[str, str]:
    """Return ``(scheme, target)``: the grpcio target for ``unix://`` or ``tcp://`` addresses."""
    parts = urlsplit(address)
    if parts.scheme == "unix":
        path = parts.path or parts.netloc
        if not path.startswith("/"):
            raise UsageError(
                f"invalid builder address {address!r}: the socket path must be absolute",
                hint="write unix:///run/buildkit/buildkitd.sock",
            )
        return "unix", f"unix://{path}"
    if parts.scheme == "tcp":
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None or parts.path not in ("", "/"):
            raise UsageError(
                f"invalid builder address {address!r}",
                hint="write tcp://HOST:PORT, for example tcp://127.0.0.1:1234",
            )
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        return "tcp", f"{host}:{port}"
    raise UsageError(
        f"unsupported builder address {address!r}",
        hint="use unix:///path/to/buildkitd.sock or tcp://HOST:PORT (other drivers: --builder)",
    )


def channel_options(servername: str | None = None) -> list[tuple[str, str | int]]:
    options: list[tuple[str, str | int]] = [
        ("grpc.max_receive_message_length", MESSAGE_LIMIT),
        ("grpc.max_send_message_length", MESSAGE_LIMIT),
        ("grpc.keepalive_time_ms", _KEEPALIVE_MS),
        ("grpc.keepalive_permit_without_calls", 0),
        # BuildKit's error trailers carry stack traces (grpc-status-details-bin); past grpcio's
        # 8 KiB default the call fails with "metadata size exceeds soft limit" instead.
        ("grpc.max_metadata_size", _METADATA_LIMIT),
        ("grpc.absolute_max_metadata_size", _METADATA_LIMIT),
    ]
    if servername:
        options += [
            ("grpc.ssl_target_name_override", servername),
            ("grpc.default_authority", servername),
        ]
    return options


def _read_pem(path: Path | None, what: str, *, secret: bool = False) -> bytes | None:
    if path is None:
        return None
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the TLS {what} {str(path)!r}: {exc.strerror}") from None
    if b"-----BEGIN" not in data:
        raise UsageError(f"the TLS {what} {str(path)!r} is not a PEM file")
    if secret:
        register_secret(data)
    return data


def open_channel(
    address: str, tls: TLSFiles | None = None, servername: str | None = None
) -> grpc.Channel:
    """Open a lazy channel; nothing is dialled until the first call (see ``control.wait_ready``).

    With ``tls`` the connection is verified against ``tls.ca`` (the system roots when absent) and
    presents the client pair when given. ``servername`` is the name checked in the daemon's
    certificate, defaulting to the address's host.
    """
    scheme, target = split_address(address)
    if tls is None:
        return grpc.insecure_channel(target, options=channel_options())
    if scheme != "tcp":
        raise ConfigError(
            f"TLS is only possible with tcp:// addresses, not {address!r}",
            hint="drop the --tls-* options for unix sockets",
        )
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read_pem(tls.ca, "CA certificate"),
        private_key=_read_pem(tls.key, "client key", secret=True),
        certificate_chain=_read_pem(tls.cert, "client certificate"),
    )
    name = servername or urlsplit(address).hostname
    return grpc.secure_channel(target, credentials, options=channel_options(name))


def describe_target(address: str) -> str:
    """A short name for messages: the address without credentials or query."""
    parts = urlsplit(address)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"
