"""Sorted record files for the upload ledger, read and written as streams.

A file holds records ``(key, size, mtime, ctime, inode, sent mtime, fresh)`` in ascending ``key``
order (the receiver's path order, :func:`pybuildx.buildkit.fswalk.compare_key`), so the ledger
joins them with a walk of the context without holding them in memory: memory stays flat whatever
the number of files.

Layout: length-prefixed ``marshal`` chunks of at most ``CHUNK`` records, then a fixed trailer
(magic and record count). A file without its trailer (a crash before the data reached the disk,
a truncation) is *not trusted*: the ledger then starts a new generation rather than miss records.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import secrets
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = ["CHUNK", "Record", "RecordWriter", "merge_newest", "read_records", "trusted"]

Record = tuple[bytes, int, int, int, int, int, bool]
"""(compare key, size, real mtime, ctime, inode, sent mtime, written by the transfer itself)."""

CHUNK = 4096
_MAGIC = b"PBXLEDG2"
_TRAILER = struct.Struct("<8sQ")
_LENGTH = struct.Struct("<I")


def trusted(path: Path) -> bool:
    """Whether ``path`` is absent or a complete record file (its trailer is in place)."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            if size < _TRAILER.size:
                return False
            handle.seek(size - _TRAILER.size)
            magic, _ = _TRAILER.unpack(handle.read(_TRAILER.size))
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return bool(magic == _MAGIC)


def read_records(path: Path) -> Iterator[Record]:
    """The records of ``path`` in key order; none when it is absent. Opened at the first step,
    so a later rename over ``path`` does not change what is read."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by the generator
    except FileNotFoundError:
        return
    with handle:
        end = handle.seek(0, os.SEEK_END) - _TRAILER.size
        handle.seek(0)
        while handle.tell() < end:
            (length,) = _LENGTH.unpack(handle.read(_LENGTH.size))
            chunk: list[Record] = marshal.loads(handle.read(length))
            yield from chunk


class RecordWriter:
    """Writes records (already in key order) to a private temporary file next to ``target``;
    :meth:`finish` completes it and returns its path, :meth:`discard` removes it."""

    def __init__(self, target: Path) -> None:
        self.path = target.with_name(f"{target.name}.{secrets.token_hex(6)}.tmp")
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self._file = os.fdopen(fd, "wb")
        self._chunk: list[Record] = []
        self._count = 0

    def add(self, record: Record) -> None:
        self._chunk.append(record)
        if len(self._chunk) >= CHUNK:
            self._flush()

    def extend(self, records: Iterable[Record]) -> None:
        for record in records:
            self.add(record)

    def _flush(self) -> None:
        if self._chunk:
            data = marshal.dumps(self._chunk)
            self._file.write(_LENGTH.pack(len(data)))
            self._file.write(data)
            self._count += len(self._chunk)
            self._chunk = []

    def finish(self) -> Path:
        self._flush()
        self._file.write(_TRAILER.pack(_MAGIC, self._count))
        self._file.close()
        return self.path

    def discard(self) -> None:
        with contextlib.suppress(OSError):  # closing flushes, which fails on a full disk
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def merge_newest(ours: Iterator[Record], theirs: Iterator[Record]) -> Iterator[Record]:
    """Both files' records in key order; for a key in both, ours wins where we wrote it
    (``fresh``), theirs otherwise (ours then only carries an older copy)."""
    mine, other = next(ours, None), next(theirs, None)
    while mine is not None or other is not None:
        if other is None or (mine is not None and mine[0] < other[0]):
            assert mine is not None
            yield mine
            mine = next(ours, None)
        elif mine is None or other[0] < mine[0]:
            yield other
            other = next(theirs, None)
        else:
            yield mine if mine[6] else other
            mine, other = next(ours, None), next(theirs, None)
