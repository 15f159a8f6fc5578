"""StreamBridge: every connection to its private socket is relayed, both ways, to a fresh stream;
docker's multiplexed exec output is split into the relayed stdout and the kept stderr."""

from __future__ import annotations

import socket
import stat
import struct
import threading
from pathlib import Path

from pybuildx.transport.bridge import (
    DockerMultiplexedStream,
    SocketStream,
    StreamBridge,
    SubprocessStream,
)


def _connect(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(address.removeprefix("unix://"))
    return sock


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_each_connection_gets_its_own_stream_and_half_close_ends_it() -> None:
    streams: list[SubprocessStream] = []

    def connect() -> SubprocessStream:
        streams.append(SubprocessStream(["cat"]))
        return streams[-1]

    bridge = StreamBridge(connect)
    address = bridge.start()
    directory = Path(address.removeprefix("unix://")).parent
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    try:
        first, second = _connect(address), _connect(address)
        payload = bytes(range(256)) * 1024  # binary, larger than one chunk
        first.sendall(payload)
        first.shutdown(socket.SHUT_WR)
        second.sendall(b"other")
        second.shutdown(socket.SHUT_WR)
        assert _read_all(first) == payload
        assert _read_all(second) == b"other"
        assert len(streams) == 2
    finally:
        bridge.close()
    assert not directory.exists()


def test_failed_connect_closes_the_client_and_is_reported() -> None:
    def connect() -> SubprocessStream:
        raise OSError("no such container")

    bridge = StreamBridge(connect)
    try:
        client = _connect(bridge.start())
        assert _read_all(client) == b""
        for _ in range(50):
            if bridge.last_error:
                break
            threading.Event().wait(0.05)
        assert "no such container" in bridge.last_error
    finally:
        bridge.close()


def _frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxI", stream, len(data)) + data


def test_docker_multiplexed_stream_keeps_stderr_apart() -> None:
    ours, engine = socket.socketpair()
    stream = DockerMultiplexedStream(SocketStream(ours, initial=_frame(1, b"he")))
    engine.sendall(_frame(2, b"warning\n") + _frame(1, b"llo") + _frame(1, b"!"))
    engine.shutdown(socket.SHUT_WR)
    received = b""
    while chunk := stream.recv(2):
        received += chunk
    assert received == b"hello!"
    assert stream.stderr == "warning\n"
    stream.sendall(b"stdin")
    stream.close_write()
    assert _read_all(engine) == b"stdin"
    stream.close()
    engine.close()
