"""``FileSend.DiffCopy``: the daemon pushes exporter output (tar/oci/docker/local) to us.

The exporter's index in ``SolveRequest.Exporters`` arrives as metadata
``buildkit-attachable-exporter-id`` (absent on old daemons: 0) and selects the target:

- :class:`StreamTarget`: the tar/oci/docker exporters send ``BytesMessage`` chunks of one file.
  They are written as they come (constant memory) to a temporary file next to ``dest``, which is
  fsynced and renamed into place only when the stream ends cleanly, and deleted otherwise; or to
  stdout. The ``exporter-md-*`` metadata (image digest, name) is kept on the target.
- :class:`LocalDirTarget`: the local exporter sends fsutil packets on this same method; we are the
  fsutil receiver (:mod:`pybuildx.buildkit.fsreceive`). Multi-platform exports make one call per
  platform with the same exporter id, concurrently, merged into one directory.

The method is registered with identity (bytes) serializers: local packets are not BytesMessages.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import grpc

from pybuildx.buildkit.fsreceive import LocalReceiver, UnsafeStream
from pybuildx.buildkit.session import register_bytes_method
from pybuildx.buildspec import OutputSpec
from pybuildx.errors import BuildFailed, ConfigError

__all__ = [
    "DIFF_COPY_METHOD",
    "FileSendAttachable",
    "LocalDirTarget",
    "OutputTarget",
    "StreamTarget",
    "output_targets",
]

DIFF_COPY_METHOD = "/moby.filesync.v1.FileSend/DiffCopy"
_EXPORTER_ID = "buildkit-attachable-exporter-id"
_METADATA_PREFIX = "exporter-md-"


@dataclass(eq=False)
class StreamTarget:
    """One tar/oci/docker stream written to ``dest``, or to stdout when ``dest`` is None."""

    dest: Path | None
    metadata: dict[str, str] = field(default_factory=dict)
    bytes_written: int = 0
    completed: bool = False


@dataclass(eq=False)
class LocalDirTarget:
    """A directory the local exporter's files are written into (merged, never emptied).

    Multi-platform exports arrive as one stream per platform: ``streams`` counts them and
    ``finished`` those written completely.
    """

    dest: Path
    streams: int = 0
    finished: int = 0

    @property
    def completed(self) -> bool:
        return 0 < self.streams == self.finished


OutputTarget = StreamTarget | LocalDirTarget


@contextlib.contextmanager
def output_targets(outputs: Sequence[OutputSpec]) -> Iterator[list[OutputTarget | None]]:
    """One target per exporter, by exporter index (None for outputs the daemon keeps)."""
    targets: list[OutputTarget | None] = []
    for output in outputs:
        if not output.to_client or output.dest is None:
            targets.append(None)
        elif output.type == "local":
            targets.append(LocalDirTarget(Path(output.dest)))
        elif output.dest == "-":
            if sys.stdout.isatty():
                raise ConfigError(
                    f"refusing to write the {output.type} output to a terminal",
                    hint="redirect stdout to a file or pipe, or give dest=FILE",
                )
            targets.append(StreamTarget(None))
        else:
            targets.append(StreamTarget(Path(output.dest)))
    yield targets


def _payload(raw: bytes) -> memoryview:
    """The ``data`` field of a serialized BytesMessage, without copying it."""
    view = memoryview(raw)
    if not raw:
        return view[:0]
    if raw[0] != 0x0A:
        raise BuildFailed("unexpected message on the output stream")
    length = shift = 0
    pos = 1
    while True:
        byte = raw[pos]
        pos += 1
        length |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
    if pos + length != len(raw):
        raise BuildFailed("malformed message on the output stream")
    return view[pos:]


def _write_all(out: BinaryIO, data: memoryview) -> None:
    while data:
        written = out.write(data)
        data = data[written:] if written is not None else data[len(data) :]


class _AtomicFile:
    """A temp file in dest's directory: renamed onto dest on success, removed on failure."""

    def __init__(self, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        self.dest = dest
        self.tmp = Path(name)
        self.file: BinaryIO = os.fdopen(fd, "wb", buffering=0)

    def commit(self) -> None:
        os.fsync(self.file.fileno())
        self.file.close()
        # mkstemp creates 0600; an export is as readable as any file the user creates.
        umask = os.umask(0)
        os.umask(umask)
        self.tmp.chmod(0o666 & ~umask)
        self.tmp.replace(self.dest)
        with contextlib.suppress(OSError):
            dir_fd = os.open(self.dest.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()


class FileSendAttachable:
    """Receives exporter output; ``targets[i]`` serves the exporter with index ``i``."""

    def __init__(self, targets: Sequence[OutputTarget | None]) -> None:
        self.targets = tuple(targets)
        self._lock = threading.Lock()
        self._stdout_lock = threading.Lock()

    def method_names(self) -> Sequence[str]:
        return (DIFF_COPY_METHOD,)

    def register(self, server: grpc.Server) -> None:
        register_bytes_method(server, DIFF_COPY_METHOD, self._diff_copy)

    def _target(self, metadata: Sequence[tuple[str, Any]]) -> OutputTarget | None:
        index = 0
        for key, value in metadata:
            if key == _EXPORTER_ID:
                try:
                    index = int(value)
                except ValueError:
                    return None
        return self.targets[index] if 0 <= index < len(self.targets) else None

    def _diff_copy(
        self, requests: Iterator[bytes], context: grpc.ServicerContext
    ) -> Iterator[bytes]:
        metadata = tuple(context.invocation_metadata())
        target = self._target(metadata)
        if target is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "no output target for this exporter")
            return
        try:
            if isinstance(target, LocalDirTarget):
                with self._lock:
                    target.streams += 1
                receiver = LocalReceiver(target.dest)
                try:
                    yield from receiver.run(requests)
                finally:
                    if receiver.complete:
                        with self._lock:
                            target.finished += 1
            else:
                self._receive_stream(target, metadata, requests)
        except UnsafeStream as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except (BuildFailed, OSError) as exc:
            context.abort(grpc.StatusCode.UNKNOWN, f"writing the build output failed: {exc}")

    def _receive_stream(
        self, target: StreamTarget, metadata: Sequence[tuple[str, Any]], requests: Iterator[bytes]
    ) -> None:
        for key, value in metadata:
            if key.startswith(_METADATA_PREFIX):
                target.metadata[key[len(_METADATA_PREFIX) :]] = str(value)
        if target.dest is None:
            with self._stdout_lock:
                out = sys.stdout.buffer
                for raw in requests:
                    data = _payload(raw)
                    target.bytes_written += len(data)
                    _write_all(out, data)
                out.flush()
            target.completed = True
            return
        sink = _AtomicFile(target.dest)
        try:
            for raw in requests:
                data = _payload(raw)
                target.bytes_written += len(data)
                _write_all(sink.file, data)
            sink.commit()
            target.completed = True
        except BaseException:
            sink.discard()
            raise
