"""The build session: our gRPC server (context, outputs, credentials) tunnelled to the daemon.

BuildKit calls back into the client over the ``Control.Session`` bidi stream: the daemon is the
HTTP/2 *client* inside that stream and writes the connection preface, we are the *server*.
grpcio cannot serve on a byte stream, so the server listens on a unix socket in a private 0700
directory and this module connects to it and relays bytes both ways::

    daemon ──Control.Session──► _relay_inbound ──sendall──► socket ──► grpcio server
    daemon ◄─request iterator── _BytePipe ◄──recv──── _relay_outbound ◄── socket

Back-pressure: the outbound pipe is bounded (bytes); inbound, ``sendall`` blocks and grpcio then
stops reading the stream, so HTTP/2 flow control holds the daemon back.

Coalescing: our server writes each fsutil packet separately (often ~60 bytes), and grpcio sends
one stream message at a time, waiting for each. The pipe hands the request iterator everything
buffered so far as one message, so thousands of tiny writes do not become thousands of messages.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Protocol

import grpc
from grpc_health.v1 import health, health_pb2_grpc

from pybuildx.buildkit._pb import control_pb2
from pybuildx.buildkit.control import control_stub
from pybuildx.buildkit.limits import MESSAGE_LIMIT
from pybuildx.buildkit.status_errors import describe_failure

__all__ = [
    "HEALTH_CHECK",
    "HEALTH_METHODS",
    "Attachable",
    "Session",
    "new_id",
    "register_bytes_method",
    "session_metadata",
]

HEALTH_CHECK = "/grpc.health.v1.Health/Check"
HEALTH_METHODS = (HEALTH_CHECK, "/grpc.health.v1.Health/Watch")
_CHUNK = 256 * 1024
_PIPE_LIMIT = 4 << 20
_MESSAGE_MAX = 1 << 20
# Daemon calls run concurrently (two or more FileSync.DiffCopy, a FileSend per platform, health
# checks, auth) and every streaming handler holds a worker thread for its whole lifetime.
_SERVER_THREADS = 64
_DRAIN_TIMEOUT_S = 10.0
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


class Attachable(Protocol):
    """A service the daemon may call during a build (FileSync, FileSend, Auth, Secrets, ...)."""

    def register(self, server: grpc.Server) -> None: ...

    def method_names(self) -> Sequence[str]:
        """Full method paths, e.g. ``/moby.filesync.v1.FileSync/DiffCopy``."""
        ...


def register_bytes_method(
    server: grpc.Server,
    method: str,
    behavior: Callable[[Iterator[bytes], grpc.ServicerContext], Iterator[bytes]],
) -> None:
    """Serve the full ``method`` path as a bidi stream of raw (unparsed) messages."""
    service, _, name = method.lstrip("/").partition("/")
    handler = grpc.stream_stream_rpc_method_handler(behavior)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service, {name: handler}),)
    )


def session_metadata(
    session_id: str, name: str, shared_key: str, methods: Iterable[str]
) -> list[tuple[str, str]]:
    """The headers of a ``Control.Session`` call: who we are and the methods we serve."""
    headers = [
        ("x-docker-expose-session-uuid", session_id),
        ("x-docker-expose-session-name", name),
        ("x-docker-expose-session-sharedkey", shared_key),
    ]
    return headers + [("x-docker-expose-session-grpc-method", m) for m in methods]


def new_id() -> str:
    """A random 25-character base-36 id, the shape BuildKit's own client uses."""
    number = secrets.randbits(128)
    chars = []
    for _ in range(25):
        number, digit = divmod(number, 36)
        chars.append(_ALPHABET[digit])
    return "".join(chars)


class _BytePipe:
    """A bounded byte buffer between one writer thread and one reader (the request iterator)."""

    def __init__(self, limit: int) -> None:
        self._buffer = bytearray()
        self._limit = limit
        self._cond = threading.Condition()
        self._closed = False
        self._abandoned = False

    def write(self, data: bytes) -> bool:
        """Append ``data``, waiting while the buffer is full; False once the reader is gone."""
        with self._cond:
            while len(self._buffer) >= self._limit and not self._abandoned:
                self._cond.wait()
            if self._abandoned:
                return False
            self._buffer += data
            self._cond.notify_all()
            return True

    def read(self, limit: int) -> bytes | None:
        """Everything buffered (up to ``limit``), waiting for data; None after close and drain."""
        with self._cond:
            while not self._buffer and not self._closed:
                self._cond.wait()
            if not self._buffer:
                return None
            chunk = bytes(self._buffer[:limit])
            del self._buffer[:limit]
            self._cond.notify_all()
            return chunk

    def close(self) -> None:
        """No more writes: the reader drains what is left, then gets None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def abandon(self) -> None:
        """The reader is gone (the call ended): unblock and refuse writers."""
        with self._cond:
            self._abandoned = self._closed = True
            self._buffer.clear()
            self._cond.notify_all()


class Session:
    """One session tunnel; use as a context manager around the Solve that references ``id``.

    ``start()`` opens the ``Control.Session`` stream (call it before Solve: the daemon only waits
    a few seconds for the session to appear); ``close()`` half-closes the stream, drains it, stops
    the server and wipes the private socket directory.
    """

    def __init__(
        self,
        channel: grpc.Channel,
        attachables: Sequence[Attachable] = (),
        *,
        shared_key: str = "",
        name: str = "pybuildx",
    ) -> None:
        self.id = new_id()
        self._channel = channel
        self._attachables = tuple(attachables)
        self._shared_key = shared_key
        self._name = name
        self._dir: Path | None = None
        self._server: grpc.Server | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._sock: socket.socket | None = None
        self._call: grpc.Future | None = None
        self._outbound = _BytePipe(_PIPE_LIMIT)
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.error: str | None = None  # see DirectSyncSession.error

    @property
    def socket_path(self) -> Path | None:
        """Where the session's gRPC server listens while the session is open."""
        return self._dir / "session.sock" if self._dir is not None else None

    def method_names(self) -> list[str]:
        names = list(HEALTH_METHODS)
        for attachable in self._attachables:
            names.extend(m for m in attachable.method_names() if m not in names)
        return names

    def metadata(self) -> list[tuple[str, str]]:
        return session_metadata(self.id, self._name, self._shared_key, self.method_names())

    def _serve(self) -> Path:
        self._dir = Path(tempfile.mkdtemp(prefix="pybuildx-session-"))
        self._dir.chmod(0o700)
        path = self._dir / "session.sock"
        self._executor = ThreadPoolExecutor(
            max_workers=_SERVER_THREADS, thread_name_prefix="bk-session"
        )
        server = grpc.server(
            self._executor,
            options=[
                ("grpc.max_receive_message_length", MESSAGE_LIMIT),
                ("grpc.max_send_message_length", MESSAGE_LIMIT),
                ("grpc.http2.max_ping_strikes", 0),
            ],
        )
        health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
        for attachable in self._attachables:
            attachable.register(server)
        server.add_insecure_port(f"unix:{path}")
        server.start()
        self._server = server
        return path

    def start(self) -> Session:
        try:
            path = self._serve()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(str(path))
            self._sock = sock
            responses = control_stub(self._channel).Session(
                self._requests(), metadata=self.metadata()
            )
            self._call = responses
            self._spawn(self._relay_outbound, "bk-session-out")
            self._spawn(lambda: self._relay_inbound(responses), "bk-session-in")
        except BaseException:
            self.close()
            raise
        return self

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _requests(self) -> Iterator[control_pb2.BytesMessage]:
        while True:
            data = self._outbound.read(_MESSAGE_MAX)
            if data is None:
                return
            yield control_pb2.BytesMessage(data=data)

    def _relay_outbound(self) -> None:
        """Server → daemon: socket bytes into the request stream; EOF ends the stream."""
        assert self._sock is not None
        try:
            while True:
                data = self._sock.recv(_CHUNK)
                if not data or not self._outbound.write(data):
                    break
        except OSError as exc:
            if not self._stopping.is_set():
                self.error = describe_failure(exc)
        finally:
            self._outbound.close()

    def _relay_inbound(self, responses: Iterator[control_pb2.BytesMessage]) -> None:
        """Daemon → server: stream payloads into the socket (the daemon's preface comes first)."""
        assert self._sock is not None
        try:
            for message in responses:
                self._sock.sendall(message.data)
        except grpc.RpcError as exc:
            if not self._stopping.is_set() and exc.code() != grpc.StatusCode.CANCELLED:
                self.error = describe_failure(exc)
        except OSError as exc:
            if not self._stopping.is_set():
                self.error = describe_failure(exc)
        finally:
            # The daemon reads no more: unblock the outbound relay.
            self._outbound.abandon()
            # Tell the local server the daemon is gone, so its handlers end.
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        """CloseSend, drain the daemon's side, stop the server, wipe the socket directory."""
        self._stopping.set()
        if self._sock is not None:
            # Ends the outbound relay (recv returns EOF), which ends the request stream.
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RD)
        for thread in self._threads:
            thread.join(timeout=_DRAIN_TIMEOUT_S)
            if thread.is_alive() and self._call is not None:
                self._call.cancel()
                self._outbound.abandon()
                thread.join(timeout=_DRAIN_TIMEOUT_S)
        self._outbound.abandon()
        if self._call is not None:
            self._call.cancel()
        # Break the call <-> request-generator cycle now: finalized at interpreter exit, the
        # call can deadlock on a lock held by a frozen grpc thread (hang after the build).
        self._call = None
        if self._sock is not None:
            self._sock.close()
        if self._server is not None:
            self._server.stop(grace=1.0).wait(timeout=5.0)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
        self._threads.clear()

    def __enter__(self) -> Session:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
