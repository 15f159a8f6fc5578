"""The files a transfer may still be asked for, by STAT id, in bounded memory.

The daemon asks for a file (REQ with the id of its STAT) at most once, usually soon after the
STAT, and never for files its copy already holds: in a no-change rebuild nothing is asked, so
every path would otherwise stay in memory until the transfer ends. The newest ``memory_slots``
paths stay in a dict; older ones move to two unlinked temporary files: the paths themselves,
back to back, and an index of (end offset + 1, length) pairs at ``16 * id`` (a sparse file:
0 = none).
"""

from __future__ import annotations

import os
import tempfile
from array import array
from itertools import accumulate, islice
from pathlib import Path

__all__ = ["PendingFiles"]

_SLOT = 16  # two little-endian uint64 per id


class PendingFiles:
    """``id -> path`` for requestable entries; ids must be added in increasing order."""

    def __init__(self, memory_slots: int = 65536) -> None:
        self._slots = memory_slots
        self._recent: dict[int, bytes] = {}
        self._index_fd = -1
        self._paths_fd = -1
        self._paths_end = 0

    def add(self, file_id: int, path: bytes) -> None:
        recent = self._recent
        recent[file_id] = path
        if len(recent) > self._slots:
            self._spill(self._slots // 2)

    def pop(self, file_id: int) -> bytes | None:
        """The path of ``file_id``, forgotten afterwards; None when unknown or already taken."""
        path = self._recent.pop(file_id, None)
        if path is not None or self._index_fd < 0:
            return path
        slot = array("Q", os.pread(self._index_fd, _SLOT, _SLOT * file_id))
        if len(slot) < 2 or slot[0] == 0:
            return None
        os.pwrite(self._index_fd, bytes(_SLOT), _SLOT * file_id)
        end, length = slot[0] - 1, slot[1]
        return os.pread(self._paths_fd, length, end - length)

    def _spill(self, count: int) -> None:
        if self._index_fd < 0:
            self._index_fd = _unlinked_file()
            self._paths_fd = _unlinked_file()
        ids = list(islice(self._recent, count))
        paths = [self._recent.pop(file_id) for file_id in ids]
        ends = list(accumulate(map(len, paths), initial=self._paths_end + 1))
        first = ids[0]
        index = array("Q", bytes(_SLOT * (ids[-1] - first + 1)))
        for position, file_id in enumerate(ids):
            slot = 2 * (file_id - first)
            index[slot] = ends[position + 1]
            index[slot + 1] = ends[position + 1] - ends[position]
        os.pwrite(self._paths_fd, b"".join(paths), self._paths_end)
        os.pwrite(self._index_fd, index.tobytes(), _SLOT * first)
        self._paths_end = ends[-1] - 1

    def close(self) -> None:
        self._recent.clear()
        for fd in (self._index_fd, self._paths_fd):
            if fd >= 0:
                os.close(fd)
        self._index_fd = self._paths_fd = -1


def _unlinked_file() -> int:
    fd, name = tempfile.mkstemp(prefix="pybuildx-pending-")
    Path(name).unlink()
    return fd
