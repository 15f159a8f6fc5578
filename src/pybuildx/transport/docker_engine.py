"""Raw connections to the Docker Engine API that the docker SDK cannot give us cleanly.

Two endpoints switch the HTTP connection to another protocol: ``POST /grpc`` with
``Upgrade: h2c`` (then HTTP/2 prior knowledge to the engine's embedded BuildKit, buildkit-protocol
§2.7) and ``POST /exec/{id}/start`` with ``Upgrade: tcp`` (then the exec's multiplexed stdio). We
speak the HTTP/1.1 request ourselves so no byte that follows the response header is lost in a
library's read buffer.
"""

from __future__ import annotations

import json
import os
import socket
from urllib.parse import urlsplit

from pybuildx.errors import ConnectError, DriverError
from pybuildx.transport.bridge import DockerMultiplexedStream, SocketStream

__all__ = ["engine_address", "exec_stdio", "grpc_stream", "hijack"]

_DEFAULT_HOST = "unix:///var/run/docker.sock"
_MAX_HEADER = 64 * 1024
_CONNECT_TIMEOUT = 10.0


def engine_address(docker_host: str | None = None) -> str:
    """``DOCKER_HOST`` (unix:// or plain tcp://) or the default engine socket."""
    host = docker_host or os.environ.get("DOCKER_HOST") or _DEFAULT_HOST
    scheme = urlsplit(host).scheme
    if scheme not in ("unix", "tcp"):
        raise ConnectError(
            f"unsupported Docker host {host!r}", hint="use unix:///path/to/docker.sock or tcp://"
        )
    if scheme == "tcp" and os.environ.get("DOCKER_TLS_VERIFY"):
        raise ConnectError(
            "a TLS-protected tcp:// Docker host is not supported for BuildKit connections",
            hint="use the engine's unix socket",
        )
    return host


def _connect(host: str) -> socket.socket:
    parts = urlsplit(host)
    try:
        if parts.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(_CONNECT_TIMEOUT)
            sock.connect(parts.path)
        else:
            sock = socket.create_connection(
                (parts.hostname or "127.0.0.1", parts.port or 2375), timeout=_CONNECT_TIMEOUT
            )
    except OSError as exc:
        raise ConnectError(
            f"cannot reach the Docker Engine at {host}: {exc.strerror or exc}",
            hint="start dockerd or set DOCKER_HOST to its socket",
        ) from None
    return sock


def hijack(
    path: str,
    *,
    upgrade: str,
    body: dict[str, object] | None = None,
    docker_host: str | None = None,
) -> SocketStream:
    """POST ``path`` asking to switch protocols; return the raw connection after the header."""
    host = engine_address(docker_host)
    sock = _connect(host)
    payload = json.dumps(body).encode() if body is not None else b""
    request = (
        f"POST {path} HTTP/1.1\r\n"
        "Host: docker\r\n"
        "Connection: Upgrade\r\n"
        f"Upgrade: {upgrade}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload
    try:
        sock.sendall(request)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(4096)
            if not chunk or len(received) > _MAX_HEADER:
                raise DriverError(f"the Docker Engine closed the connection on POST {path}")
            received += chunk
    except OSError as exc:
        sock.close()
        raise DriverError(f"POST {path} to the Docker Engine failed: {exc}") from None
    header, _, rest = received.partition(b"\r\n\r\n")
    status_line = header.split(b"\r\n", 1)[0].decode("latin-1")
    fields = status_line.split(" ", 2)
    status = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0
    if status not in (101, 200):
        sock.close()
        message = rest.decode("utf-8", "replace").strip()
        try:
            message = str(json.loads(message).get("message", message))
        except ValueError:
            pass
        raise DriverError(f"the Docker Engine refused POST {path}: {status_line} {message}")
    sock.settimeout(None)
    return SocketStream(sock, rest)


def grpc_stream(docker_host: str | None = None) -> SocketStream:
    """An HTTP/2 connection to the engine's embedded BuildKit Control API."""
    return hijack("/grpc", upgrade="h2c", docker_host=docker_host)


def exec_stdio(exec_id: str, docker_host: str | None = None) -> DockerMultiplexedStream:
    """Start a created exec (no TTY) and return its stdin/stdout as one stream."""
    raw = hijack(
        f"/exec/{exec_id}/start",
        upgrade="tcp",
        body={"Detach": False, "Tty": False},
        docker_host=docker_host,
    )
    return DockerMultiplexedStream(raw)
