"""StreamBridge: hand grpcio a unix socket whose connections are relayed to a byte stream.

grpcio can only dial addresses, not take an already open stream. For daemons reached through
``buildctl dial-stdio`` (in a container or a pod), a docker exec socket, or the Docker Engine's
``/grpc`` upgrade, we listen on a private unix socket (0700 directory) and, for every connection
grpcio makes, open a fresh stream and pump bytes both ways.
"""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

__all__ = [
    "ByteStream",
    "DemuxedStream",
    "DockerMultiplexedStream",
    "SocketStream",
    "StderrTail",
    "StreamBridge",
    "SubprocessStream",
]

_CHUNK = 64 * 1024
_STDERR_KEEP = 4096
_STDERR_CHUNKS = 64


class StderrTail:
    """The last few KiB a stream wrote to stderr, kept to explain why it failed."""

    def __init__(self) -> None:
        self._chunks: collections.deque[bytes] = collections.deque(maxlen=_STDERR_CHUNKS)

    def append(self, data: bytes) -> None:
        self._chunks.append(data)

    @property
    def text(self) -> str:
        return b"".join(self._chunks).decode("utf-8", "replace")[-_STDERR_KEEP:]


class ByteStream(Protocol):
    def recv(self, size: int) -> bytes:
        """Up to ``size`` bytes; ``b""`` at the end of the stream."""

    def sendall(self, data: bytes) -> None: ...

    def close_write(self) -> None:
        """Signal end of input (half-close), keep reading."""

    def close(self) -> None: ...


class SubprocessStream:
    """stdin/stdout of a child process, e.g. ``kubectl exec -i POD -- buildctl dial-stdio``."""

    def __init__(self, argv: Sequence[str], *, env: dict[str, str] | None = None) -> None:
        self._process = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        self._stderr = StderrTail()
        threading.Thread(target=self._drain_stderr, daemon=True).start()

    def _drain_stderr(self) -> None:
        assert self._process.stderr is not None
        for line in self._process.stderr:
            self._stderr.append(line)

    @property
    def stderr(self) -> str:
        return self._stderr.text

    def recv(self, size: int) -> bytes:
        assert self._process.stdout is not None
        return os.read(self._process.stdout.fileno(), size)

    def sendall(self, data: bytes) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(data)
        self._process.stdin.flush()

    def close_write(self) -> None:
        assert self._process.stdin is not None
        with contextlib.suppress(OSError):
            self._process.stdin.close()

    def close(self) -> None:
        self.close_write()
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()


class SocketStream:
    """A connected socket, e.g. the Docker Engine connection after the ``/grpc`` upgrade."""

    def __init__(self, sock: socket.socket, initial: bytes = b"") -> None:
        self._sock = sock
        self._pending = initial

    def recv(self, size: int) -> bytes:
        if self._pending:
            data, self._pending = self._pending[:size], self._pending[size:]
            return data
        return self._sock.recv(size)

    def sendall(self, data: bytes) -> None:
        self._sock.sendall(data)

    def close_write(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()


class DemuxedStream:
    """A stream whose frames carry stdout (the relayed payload) or stderr (kept for errors).

    Subclasses read one frame per ``_read_frame`` call into ``_stdout`` or ``_stderr``.
    """

    def __init__(self) -> None:
        self._stdout = b""
        self._stderr = StderrTail()
        self._eof = False

    @property
    def stderr(self) -> str:
        return self._stderr.text

    def _read_frame(self) -> bool:
        """Take in one frame; False at the end of the stream."""
        raise NotImplementedError

    def recv(self, size: int) -> bytes:
        while not self._stdout and not self._eof:
            self._eof = not self._read_frame()
        data, self._stdout = self._stdout[:size], self._stdout[size:]
        return data


class DockerMultiplexedStream(DemuxedStream):
    """A docker exec/attach socket without TTY: output frames carry a stream id and a length.

    Frame header: 1 byte stream (1 stdout, 2 stderr), 3 zero bytes, 4 bytes big-endian size.
    """

    def __init__(self, inner: SocketStream) -> None:
        super().__init__()
        self._inner = inner
        self._buffer = b""

    def _fill(self, count: int) -> bool:
        while len(self._buffer) < count:
            data = self._inner.recv(_CHUNK)
            if not data:
                return False
            self._buffer += data
        return True

    def _read_frame(self) -> bool:
        if not self._fill(8):
            return False
        stream, length = self._buffer[0], struct.unpack(">I", self._buffer[4:8])[0]
        if not self._fill(8 + length):
            return False
        payload, self._buffer = self._buffer[8 : 8 + length], self._buffer[8 + length :]
        if stream == 2:
            self._stderr.append(payload)
        else:
            self._stdout += payload
        return True

    def sendall(self, data: bytes) -> None:
        self._inner.sendall(data)

    def close_write(self) -> None:
        self._inner.close_write()

    def close(self) -> None:
        self._inner.close()


class StreamBridge:
    """Listen on a private unix socket; relay each accepted connection to ``connect()``."""

    def __init__(self, connect: Callable[[], ByteStream], *, name: str = "bridge") -> None:
        self._connect = connect
        self._name = name
        self._dir: Path | None = None
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self._streams: set[ByteStream] = set()
        self._lock = threading.Lock()
        self.last_error: str = ""
        self.last_exception: Exception | None = None

    @property
    def address(self) -> str:
        if self._dir is None:
            raise RuntimeError("bridge not started")
        return f"unix://{self._dir / 'relay.sock'}"

    def start(self) -> str:
        if self._dir is not None:
            return self.address
        self._dir = Path(tempfile.mkdtemp(prefix="pybuildx-bridge-"))
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self._dir / "relay.sock"))
        listener.listen(16)
        listener.settimeout(0.2)
        self._listener = listener
        threading.Thread(target=self._accept_loop, name=f"{self._name}-accept", daemon=True).start()
        return self.address

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            stream = self._connect()
        except Exception as exc:  # reported through last_error; grpcio sees a closed connection
            self.last_error = str(exc)
            self.last_exception = exc
            client.close()
            return
        with self._lock:
            self._streams.add(stream)
        upstream = threading.Thread(target=self._pump_to_stream, args=(client, stream), daemon=True)
        upstream.start()
        try:
            _copy(stream.recv, client.sendall)
        finally:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_WR)
        upstream.join()
        client.close()
        stream.close()
        with self._lock:
            self._streams.discard(stream)

    @staticmethod
    def _pump_to_stream(client: socket.socket, stream: ByteStream) -> None:
        try:
            _copy(client.recv, stream.sendall)
        finally:
            stream.close_write()

    def close(self) -> None:
        """Stop accepting, end every relayed stream, remove the socket directory."""
        self._stop.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
            self._listener = None
        with self._lock:
            streams = list(self._streams)
            self._streams.clear()
        for stream in streams:
            stream.close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def _copy(read: Callable[[int], bytes], write: Callable[[bytes], None]) -> None:
    """Copy until ``read`` reaches the end; a broken connection on either side ends it too."""
    try:
        while True:
            data = read(_CHUNK)
            if not data:
                return
            write(data)
    except OSError:
        pass
