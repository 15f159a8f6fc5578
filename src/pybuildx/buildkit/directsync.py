"""A session of its own for local directories, served straight on the ``Control.Session`` stream.

Why: in the general session (:mod:`pybuildx.buildkit.session`) every fsutil packet crosses the
grpcio server, a unix-socket relay and the outer gRPC stream, with several thread hand-offs
each. A context of 50,000 small files is 150,000 packets, and that path made uploads about four
times slower than buildctl. Here the inner HTTP/2 connection is spoken directly: packets are
framed into a buffer and leave as large ``BytesMessage`` chunks, in the handler's own thread.

The daemon addresses this session through the frontend attributes ``local-sessionid:<name>``
(see ``frontend_attrs``); everything else (outputs, credentials, secrets) stays in the general
session. Served methods: ``grpc.health.v1.Health/Check`` (the daemon drops sessions that do not
answer it) and ``moby.filesync.v1.FileSync/DiffCopy``; anything else gets UNIMPLEMENTED.

HTTP/2 subset (RFC 9113, server side of an h2c prior-knowledge connection): SETTINGS (window
size, frame size, header table size), PING acks (grpc-go probes bandwidth with them),
WINDOW_UPDATE flow control both ways, HEADERS/CONTINUATION (HPACK via the ``hpack`` package),
DATA, RST_STREAM, GOAWAY. gRPC messages are length-prefixed and never compressed.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from urllib.parse import quote

import grpc
from hpack import Decoder, Encoder

from pybuildx.buildkit._pb import control_pb2
from pybuildx.buildkit.control import control_stub
from pybuildx.buildkit.filesync import (
    DIFF_COPY_METHOD,
    PEER_EOF,
    FileSyncAttachable,
    LocalSource,
    TransferError,
    peer_item,
)
from pybuildx.buildkit.session import HEALTH_CHECK, new_id, session_metadata
from pybuildx.buildkit.status_errors import describe_failure
from pybuildx.buildkit.upload_ledger import UploadLedger

__all__ = ["DirectSyncSession"]

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DATA, _HEADERS, _PRIORITY, _RST, _SETTINGS, _PUSH, _PING, _GOAWAY, _WINDOW, _CONT = range(10)
_END_STREAM, _ACK, _END_HEADERS, _PADDED, _PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
_OUR_WINDOW = 1 << 24
_OUT_LIMIT = 4 << 20  # connection bytes waiting for the outer stream
_STREAM_LIMIT = 2 << 20  # a handler's unsent bytes before it waits
_FLUSH_AT = 256 << 10
_REPLENISH_AT = 4 << 20
_SERVING = b"\x08\x01"  # HealthCheckResponse{status: SERVING}
_DRAIN_TIMEOUT_S = 10.0
_GRACE_S = 5.0


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return (
        len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream.to_bytes(4, "big") + payload
    )


def _grpc_message(payload: bytes) -> bytes:
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


class _Stream:
    __slots__ = (
        "closed",
        "consumed",
        "headers_sent",
        "id",
        "inbound",
        "offset",
        "pending",
        "queue",
        "reset",
        "trailers",
        "window",
    )

    def __init__(self, stream_id: int, window: int) -> None:
        self.id = stream_id
        self.window = window
        self.pending = bytearray()
        self.offset = 0
        self.headers_sent = False
        self.trailers: list[tuple[str, str]] | None = None
        self.closed = False
        self.reset = False
        self.inbound = bytearray()
        self.consumed = 0
        self.queue: queue.SimpleQueue[int | str] = queue.SimpleQueue()

    def unsent(self) -> int:
        return len(self.pending) - self.offset


class _SessionEnded(Exception):
    """The daemon ended the session normally (GOAWAY with NO_ERROR)."""


class DirectSyncSession:
    """Serves ``dirs`` to the daemon in a session of their own; a context manager.

    Use ``frontend_attrs()`` in the SolveRequest so the frontend pulls those locals from here.
    """

    def __init__(
        self,
        channel: grpc.Channel,
        dirs: Mapping[str, LocalSource],
        *,
        ledger: UploadLedger | None = None,
        shared_key: str = "",
    ) -> None:
        self.id = new_id()
        self.files = FileSyncAttachable(dirs, ledger=ledger)
        self._dirs = tuple(dirs)
        self._channel = channel
        self._shared_key = ledger.shared_key if ledger is not None else shared_key
        self._lock = threading.Condition()
        self._out: list[bytes] = []
        self._out_size = 0
        self._closing = False
        self._streams: dict[int, _Stream] = {}
        self._order: list[int] = []
        self._conn_window = 65535
        self._peer_initial_window = 65535
        self._max_frame = 16384
        self._encoder = Encoder()
        self._decoder = Decoder()
        self._decoder.max_header_list_size = 16 << 20
        self._consumed = 0
        self._call: grpc.Future | None = None
        self._reader: threading.Thread | None = None
        self._workers: list[threading.Thread] = []
        self.error: str | None = None
        """Why the session ended early, if it did (a description: an exception kept here with
        its traceback would keep the call alive until interpreter exit, where finalizing it can
        deadlock against grpc's stopped threads)."""

    # -- what the Solve needs --------------------------------------------------------------------
    def frontend_attrs(self) -> dict[str, str]:
        return {f"local-sessionid:{name}": self.id for name in self._dirs}

    def metadata(self) -> list[tuple[str, str]]:
        methods = (HEALTH_CHECK, DIFF_COPY_METHOD)
        return session_metadata(self.id, "pybuildx-files", self._shared_key, methods)

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> DirectSyncSession:
        responses = control_stub(self._channel).Session(self._outgoing(), metadata=self.metadata())
        self._call = responses
        self._reader = threading.Thread(
            target=self._read, args=(responses,), name="bk-files-in", daemon=True
        )
        self._reader.start()
        return self

    def close(self) -> None:
        with self._lock:
            self._closing = True
            for stream in self._streams.values():
                stream.queue.put(PEER_EOF)
            self._lock.notify_all()
        for worker in self._workers:
            worker.join(_DRAIN_TIMEOUT_S)
        # Our half-close ends the daemon's side of the stream; if it does not, cancel. Either
        # way the reader must be gone before we return: a daemon thread frozen at interpreter
        # exit inside the call would deadlock grpc's finalizer (seen as a hang after Solve).
        if self._reader is not None:
            self._reader.join(_GRACE_S)
        if self._call is not None:
            self._call.cancel()
        if self._reader is not None:
            self._reader.join(_DRAIN_TIMEOUT_S)
        # The call and our request generator refer to each other: left to the cycle collector,
        # the call may be finalized at interpreter exit, when grpc's threads are frozen holding
        # its lock, and the process hangs. Drop it now, while those threads still run.
        self._call = None

    def __enter__(self) -> DirectSyncSession:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- outbound: connection buffer → outer stream ----------------------------------------------
    def _outgoing(self) -> Iterator[control_pb2.BytesMessage]:
        while True:
            with self._lock:
                while not self._out and not self._closing:
                    self._lock.wait()
                if not self._out:
                    return
                data = b"".join(self._out)
                self._out.clear()
                self._out_size = 0
                self._flush_locked()
                self._lock.notify_all()
            yield control_pb2.BytesMessage(data=data)

    def _emit_locked(self, data: bytes) -> None:
        self._out.append(data)
        self._out_size += len(data)

    def _flush_locked(self) -> None:
        """Move what the flow-control windows allow from the streams to the connection."""
        for stream_id in list(self._order):
            stream = self._streams[stream_id]
            if stream.reset:
                self._drop_locked(stream)
                continue
            if not stream.headers_sent and (stream.unsent() or stream.trailers is not None):
                headers = [(":status", "200"), ("content-type", "application/grpc")]
                self._emit_locked(_frame(_HEADERS, _END_HEADERS, stream.id, self._encode(headers)))
                stream.headers_sent = True
            while stream.unsent() and self._conn_window > 0 and stream.window > 0:
                if self._out_size >= _OUT_LIMIT:
                    return
                size = min(stream.unsent(), self._conn_window, stream.window, self._max_frame)
                start = stream.offset
                chunk = bytes(memoryview(stream.pending)[start : start + size])
                stream.offset += size
                self._conn_window -= size
                stream.window -= size
                self._emit_locked(_frame(_DATA, 0, stream.id, chunk))
            if stream.offset > (1 << 20) and stream.offset * 2 > len(stream.pending):
                del stream.pending[: stream.offset]
                stream.offset = 0
            if not stream.unsent() and stream.trailers is not None:
                block = self._encode(stream.trailers)
                self._emit_locked(_frame(_HEADERS, _END_HEADERS | _END_STREAM, stream.id, block))
                self._drop_locked(stream)

    def _drop_locked(self, stream: _Stream) -> None:
        stream.closed = True
        self._streams.pop(stream.id, None)
        with contextlib.suppress(ValueError):
            self._order.remove(stream.id)

    def _encode(self, headers: list[tuple[str, str]]) -> bytes:
        return bytes(self._encoder.encode(headers))

    def _write(self, stream: _Stream, message: bytes) -> None:
        """Queue one gRPC message on ``stream``; waits while too much is unsent."""
        with self._lock:
            if stream.reset or self._closing:
                raise TransferError(grpc.StatusCode.CANCELLED, "the daemon cancelled the call")
            stream.pending += message
            if stream.unsent() >= _FLUSH_AT:
                self._flush_locked()
                self._lock.notify_all()
                while stream.unsent() >= _STREAM_LIMIT and not stream.reset and not self._closing:
                    self._lock.wait()

    def _flush(self) -> None:
        with self._lock:
            self._flush_locked()
            self._lock.notify_all()

    def _finish(self, stream: _Stream, status: int, message: str = "") -> None:
        trailers = [("grpc-status", str(status))]
        if message:
            trailers.append(("grpc-message", quote(message, safe=" !#$&'()*+,/:;=?@[]~")))
        with self._lock:
            if stream.closed:
                return
            stream.trailers = trailers
            self._flush_locked()
            self._lock.notify_all()

    # -- inbound: outer stream → frames ----------------------------------------------------------
    def _read(self, responses: Iterator[control_pb2.BytesMessage]) -> None:
        buffer = bytearray()
        preface_seen = False
        header_block: tuple[int, int, bytearray] | None = None
        try:
            for message in responses:
                buffer += message.data
                if not preface_seen:
                    if len(buffer) < len(_PREFACE):
                        continue
                    if bytes(buffer[: len(_PREFACE)]) != _PREFACE:
                        raise ConnectionError("the daemon did not open HTTP/2")
                    del buffer[: len(_PREFACE)]
                    preface_seen = True
                    self._send_initial_settings()
                pos = 0
                while len(buffer) - pos >= 9:
                    length = int.from_bytes(buffer[pos : pos + 3], "big")
                    if len(buffer) - pos < 9 + length:
                        break
                    kind, flags = buffer[pos + 3], buffer[pos + 4]
                    stream_id = int.from_bytes(buffer[pos + 5 : pos + 9], "big") & 0x7FFFFFFF
                    payload = bytes(buffer[pos + 9 : pos + 9 + length])
                    pos += 9 + length
                    header_block = self._on_frame(kind, flags, stream_id, payload, header_block)
                del buffer[:pos]
        except _SessionEnded:
            pass
        except grpc.RpcError as exc:
            if not self._closing and exc.code() != grpc.StatusCode.CANCELLED:
                self.error = describe_failure(exc)
        except Exception as exc:  # protocol errors (ours or hpack's) end the session
            self.error = describe_failure(exc)
        finally:
            with self._lock:
                for stream in self._streams.values():
                    stream.reset = True
                    stream.queue.put(PEER_EOF)
                self._closing = True
                self._lock.notify_all()

    def _send_initial_settings(self) -> None:
        settings = (4).to_bytes(2, "big") + _OUR_WINDOW.to_bytes(4, "big")
        increment = _OUR_WINDOW - 65535
        with self._lock:
            self._emit_locked(_frame(_SETTINGS, 0, 0, settings))
            self._emit_locked(_frame(_WINDOW, 0, 0, increment.to_bytes(4, "big")))
            self._lock.notify_all()

    def _on_frame(
        self,
        kind: int,
        flags: int,
        stream_id: int,
        payload: bytes,
        header_block: tuple[int, int, bytearray] | None,
    ) -> tuple[int, int, bytearray] | None:
        if header_block is not None:
            if kind != _CONT or stream_id != header_block[0]:
                raise ValueError("HTTP/2 header block interrupted")
            header_block[2].extend(payload)
            if flags & _END_HEADERS:
                self._on_headers(header_block[0], header_block[1], bytes(header_block[2]))
                return None
            return header_block
        if kind == _DATA:
            self._on_data(stream_id, flags, _unpad(flags, payload))
        elif kind == _HEADERS:
            block = _unpad(flags, payload)
            if flags & _PRIORITY_FLAG:
                block = block[5:]
            if not flags & _END_HEADERS:
                return (stream_id, flags, bytearray(block))
            self._on_headers(stream_id, flags, block)
        elif kind == _SETTINGS and not flags & _ACK:
            self._on_settings(payload)
        elif kind == _PING and not flags & _ACK:
            with self._lock:
                self._emit_locked(_frame(_PING, _ACK, 0, payload))
                self._lock.notify_all()
        elif kind == _WINDOW:
            increment = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
            with self._lock:
                if stream_id == 0:
                    self._conn_window += increment
                elif stream_id in self._streams:
                    self._streams[stream_id].window += increment
                self._flush_locked()
                self._lock.notify_all()
        elif kind == _RST:
            with self._lock:
                stream = self._streams.get(stream_id)
                if stream is not None:
                    stream.reset = True
                    stream.queue.put(PEER_EOF)
                    self._lock.notify_all()
        elif kind == _GOAWAY:
            code = int.from_bytes(payload[4:8], "big")
            if code == 0:  # NO_ERROR: how the daemon ends every session
                raise _SessionEnded
            raise ConnectionError(f"the daemon closed the session (HTTP/2 error {code})")
        return None

    def _on_settings(self, payload: bytes) -> None:
        with self._lock:
            for pos in range(0, len(payload) - 5, 6):
                key = int.from_bytes(payload[pos : pos + 2], "big")
                value = int.from_bytes(payload[pos + 2 : pos + 6], "big")
                if key == 1:
                    self._encoder.header_table_size = value
                elif key == 4:
                    delta = value - self._peer_initial_window
                    self._peer_initial_window = value
                    for stream in self._streams.values():
                        stream.window += delta
                elif key == 5:
                    self._max_frame = value
            self._emit_locked(_frame(_SETTINGS, _ACK, 0))
            self._flush_locked()
            self._lock.notify_all()

    def _on_headers(self, stream_id: int, flags: int, block: bytes) -> None:
        headers = [(str(k), str(v)) for k, v in self._decoder.decode(block)]
        path = next((v for k, v in headers if k == ":path"), "")
        with self._lock:
            if stream_id in self._streams:
                return  # trailers of a request stream: nothing to do
            stream = _Stream(stream_id, self._peer_initial_window)
            self._streams[stream_id] = stream
            self._order.append(stream_id)
            if path == HEALTH_CHECK:
                # Answered at once: the request (an empty message) carries nothing we need.
                stream.pending += _grpc_message(_SERVING)
        if path == HEALTH_CHECK:
            self._finish(stream, 0)
        elif path == DIFF_COPY_METHOD:
            metadata = [(k, v) for k, v in headers if not k.startswith(":")]
            worker = threading.Thread(
                target=self._serve_diff_copy,
                args=(stream, metadata),
                name=f"bk-files-{stream_id}",
                daemon=True,
            )
            self._workers.append(worker)
            worker.start()
        else:
            self._finish(stream, grpc.StatusCode.UNIMPLEMENTED.value[0], f"{path} not served")
        if flags & _END_STREAM:
            stream.queue.put(PEER_EOF)

    def _on_data(self, stream_id: int, flags: int, data: bytes) -> None:
        stream = self._streams.get(stream_id)
        self._consumed += len(data)
        if self._consumed >= _REPLENISH_AT:
            with self._lock:
                self._emit_locked(_frame(_WINDOW, 0, 0, self._consumed.to_bytes(4, "big")))
                self._consumed = 0
                self._lock.notify_all()
        if stream is None:
            return
        stream.inbound += data
        stream.consumed += len(data)
        if stream.consumed >= _REPLENISH_AT:
            with self._lock:
                frame = _frame(_WINDOW, 0, stream_id, stream.consumed.to_bytes(4, "big"))
                self._emit_locked(frame)
                stream.consumed = 0
                self._lock.notify_all()
        while len(stream.inbound) >= 5:
            size = int.from_bytes(stream.inbound[1:5], "big")
            if len(stream.inbound) < 5 + size:
                break
            if stream.inbound[0]:
                raise ValueError("compressed gRPC message on the file session")
            message = bytes(stream.inbound[5 : 5 + size])
            del stream.inbound[: 5 + size]
            self._on_message(stream, message)
        if flags & _END_STREAM:
            stream.queue.put(PEER_EOF)

    @staticmethod
    def _on_message(stream: _Stream, message: bytes) -> None:
        item = peer_item(message)
        if item is not None:
            stream.queue.put(item)

    def _serve_diff_copy(self, stream: _Stream, metadata: Sequence[tuple[str, str]]) -> None:
        try:
            transfer = self.files.transfer(metadata)
            for packet in transfer(stream.queue, self._flush):
                self._write(stream, _grpc_message(packet))
        except TransferError as exc:
            self._finish(stream, exc.code.value[0], exc.message)
        except Exception as exc:  # a bug must end the call, not hang the build
            self._finish(stream, grpc.StatusCode.INTERNAL.value[0], f"file transfer failed: {exc}")
            raise
        else:
            self._finish(stream, 0)


def _unpad(flags: int, payload: bytes) -> bytes:
    if flags & _PADDED:
        pad = payload[0]
        return payload[1 : len(payload) - pad]
    return payload
