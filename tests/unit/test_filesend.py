"""Stream outputs: chunks land in dest only when the stream ends cleanly; routing by exporter id."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from pybuildx.buildkit._pb import filesync_pb2
from pybuildx.buildkit.filesend import (
    FileSendAttachable,
    LocalDirTarget,
    StreamTarget,
    output_targets,
)
from pybuildx.buildspec import OutputSpec


def messages(*chunks: bytes) -> list[bytes]:
    return [filesync_pb2.BytesMessage(data=c).SerializeToString() for c in chunks]


class FakeBrokenStream(grpc.RpcError):
    """What grpcio raises from the request iterator when the daemon cancels the call."""


def broken_after(chunks: list[bytes]) -> Iterator[bytes]:
    yield from chunks
    raise FakeBrokenStream()


def test_stream_written_in_chunks_then_renamed(tmp_path: Path) -> None:
    dest = tmp_path / "sub" / "image.tar"
    target = StreamTarget(dest)
    metadata = [("exporter-md-containerimage.digest", "sha256:abc"), ("other", "x")]
    big = b"y" * (3 << 20)
    FileSendAttachable([target])._receive_stream(target, metadata, iter(messages(b"abc", b"", big)))
    assert dest.read_bytes() == b"abc" + big
    assert target.completed and target.bytes_written == 3 + len(big)
    assert target.metadata == {"containerimage.digest": "sha256:abc"}
    assert [p.name for p in dest.parent.iterdir()] == ["image.tar"]


def test_interrupted_stream_leaves_nothing_and_keeps_old_file(tmp_path: Path) -> None:
    dest = tmp_path / "image.tar"
    dest.write_bytes(b"previous build")
    target = StreamTarget(dest)
    with pytest.raises(FakeBrokenStream):
        FileSendAttachable([target])._receive_stream(target, [], broken_after(messages(b"partial")))
    assert dest.read_bytes() == b"previous build"
    assert [p.name for p in tmp_path.iterdir()] == ["image.tar"]
    assert not target.completed


def test_targets_follow_exporter_indexes(tmp_path: Path) -> None:
    outputs = [
        OutputSpec(type="image", attrs={"push": "true"}),
        OutputSpec(type="local", dest=str(tmp_path / "dir")),
        OutputSpec(type="oci", dest=str(tmp_path / "x.tar")),
    ]
    with output_targets(outputs) as targets:
        attachable = FileSendAttachable(targets)
    assert targets[0] is None
    assert isinstance(targets[1], LocalDirTarget)
    assert isinstance(targets[2], StreamTarget) and targets[2].dest == tmp_path / "x.tar"
    assert attachable._target([("buildkit-attachable-exporter-id", "2")]) is targets[2]
    assert attachable._target([]) is None  # exporter 0 keeps its output in the daemon
    assert attachable._target([("buildkit-attachable-exporter-id", "7")]) is None
