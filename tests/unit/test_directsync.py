"""The direct file session's HTTP/2 side, driven by a fake daemon that speaks raw frames."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from hpack import Decoder, Encoder

from pybuildx.buildkit import fsutil_wire as wire
from pybuildx.buildkit._pb import control_pb2
from pybuildx.buildkit.directsync import DirectSyncSession
from pybuildx.buildkit.filesync import LocalSource

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return (
        len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream.to_bytes(4, "big") + payload
    )


def grpc_message(payload: bytes) -> bytes:
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def parse_frames(data: bytes) -> list[tuple[int, int, int, bytes]]:
    frames, pos = [], 0
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 3], "big")
        kind, flags = data[pos + 3], data[pos + 4]
        stream = int.from_bytes(data[pos + 5 : pos + 9], "big")
        frames.append((kind, flags, stream, data[pos + 9 : pos + 9 + length]))
        pos += 9 + length
    return frames


class FakeDaemon:
    """Feeds frames into the session's reader and collects what the session sends back."""

    def __init__(self, session: DirectSyncSession) -> None:
        self.session = session
        self.inbound: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.encoder = Encoder()
        self.decoder = Decoder()
        self.sent = bytearray()
        self.reader = threading.Thread(target=session._read, args=(self._messages(),))
        self.writer = threading.Thread(target=self._collect)

    def _messages(self) -> Iterator[control_pb2.BytesMessage]:
        while (data := self.inbound.get()) is not None:
            yield control_pb2.BytesMessage(data=data)

    def _collect(self) -> None:
        for message in self.session._outgoing():
            self.sent += message.data

    def start(self) -> None:
        self.reader.start()
        self.writer.start()

    def send(self, data: bytes) -> None:
        self.inbound.put(data)

    def request(self, stream: int, path: str, metadata: list[tuple[str, str]]) -> None:
        headers = [(":method", "POST"), (":path", path), (":scheme", "http")]
        block = self.encoder.encode([*headers, ("content-type", "application/grpc"), *metadata])
        # Split the header block to exercise CONTINUATION.
        half = len(block) // 2
        self.send(frame(1, 0, stream, block[:half]) + frame(9, 0x4, stream, block[half:]))

    def wait_for_stream_ends(self, count: int, timeout: float = 30.0) -> None:
        """Until ``count`` HEADERS frames with END_STREAM (trailers) went out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            frames = parse_frames(bytes(self.sent))
            if sum(1 for k, f, _, _ in frames if k == 1 and f & 0x1) >= count:
                return
            time.sleep(0.01)
        raise AssertionError("the session did not finish its streams")

    def wait_for_data(self, stream: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(k == 0 and s == stream for k, _, s, _ in parse_frames(bytes(self.sent))):
                return
            time.sleep(0.01)
        raise AssertionError(f"no data on stream {stream}")

    def finish(self) -> list[tuple[int, int, int, bytes]]:
        self.inbound.put(None)
        self.reader.join(10)
        self.session.close()
        self.writer.join(10)
        return parse_frames(bytes(self.sent))


def test_health_settings_ping_and_a_full_diff_copy(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir/file").write_bytes(b"x" * 40000)  # several DATA frames at 16 KiB
    session = DirectSyncSession(object(), {"context": LocalSource(path=tmp_path)})  # type: ignore[arg-type]
    daemon = FakeDaemon(session)
    daemon.start()
    # Preface split across messages, then SETTINGS (initial window 1 MiB) and a PING.
    daemon.send(PREFACE[:10])
    daemon.send(
        PREFACE[10:] + frame(4, 0, 0, (4).to_bytes(2, "big") + (1 << 20).to_bytes(4, "big"))
    )
    daemon.send(frame(6, 0, 0, b"12345678"))
    daemon.send(frame(8, 0, 0, (1 << 24).to_bytes(4, "big")))  # connection window
    daemon.request(1, "/grpc.health.v1.Health/Check", [])
    daemon.send(frame(0, 0x1, 1, grpc_message(b"")))
    daemon.request(3, "/moby.filesync.v1.FileSync/DiffCopy", [("dir-name", "context")])
    daemon.request(5, "/moby.filesync.v1.Nope/Nope", [])
    # Like the real receiver, ask only after the listing arrived: entry 1 ("dir" is 0), then FIN.
    daemon.wait_for_data(3)
    daemon.send(frame(0, 0, 3, grpc_message(wire.req_packet(1))))
    daemon.send(frame(0, 0, 3, grpc_message(wire.fin_packet())))
    daemon.wait_for_stream_ends(3)
    frames = daemon.finish()

    kinds = [(k, f, s) for k, f, s, _ in frames]
    assert (4, 0, 0) in kinds and (4, 1, 0) in kinds  # our SETTINGS and the ACK of theirs
    assert (6, 1, 0, b"12345678") in frames  # PING answered with the same payload

    def body(stream: int) -> bytes:
        return b"".join(p for k, _, s, p in frames if k == 0 and s == stream)

    decoded: dict[int, list[dict[str, str]]] = {}
    for kind, _flags, stream, payload in frames:
        if kind == 1:
            decoded.setdefault(stream, []).append(dict(daemon.decoder.decode(payload)))
    assert decoded[1][0][":status"] == "200" and decoded[1][-1]["grpc-status"] == "0"
    assert body(1) == grpc_message(b"\x08\x01")  # SERVING
    assert decoded[3][-1]["grpc-status"] == "0"
    assert decoded[5][-1]["grpc-status"] == "12"  # UNIMPLEMENTED

    raw, packets = body(3), []
    while raw:
        size = int.from_bytes(raw[1:5], "big")
        packets.append(wire.decode_packet(raw[5 : 5 + size]))
        raw = raw[5 + size :]
    stats = [p.stat.path for p in packets if p.type == wire.STAT and p.stat is not None]
    assert stats == [b"dir", b"dir/file"]
    data = b"".join(p.data for p in packets if p.type == wire.DATA and p.id == 1)
    assert data == b"x" * 40000
    assert packets[-1].type == wire.FIN
    assert max(len(p) for k, _, _, p in frames if k == 0) <= 16384  # peer's max frame size
    assert session.files.bytes_sent == {"context": 40000}
