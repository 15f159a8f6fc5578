"""Incremental context uploads that are never stale.

The daemon keeps the last transferred copy of a local directory per shared key and asks only
for files whose size, mtime, mode (...) differ from that copy. A file rewritten with the same
size and mtime (tools that restore mtimes, edits within the clock's granularity, ``touch -r``)
therefore keeps its old content in the daemon's cache: Go clients have this bug.

The ledger records, per local directory name, what this machine last sent for every regular file
(size and the mtime we sent) together with the file's identity at that moment (mtime, ctime,
inode). ctime changes whenever content is written and cannot be set by users, so:

- identity unchanged: send the recorded mtime again; the daemon's copy is current;
- identity changed, but size and real mtime equal what the daemon holds: send the mtime plus one
  nanosecond (different from what the daemon holds), so the daemon asks for the content;
- otherwise: send the real mtime.

The shared key names this ledger (a random node id, like buildx's) and a generation. A transfer
that did not finish leaves the daemon's copy unknown: the ledger then moves to a new generation
(a new shared key, hence a full upload) the next time it is opened, also after a crash. Two
processes never share a ledger: the second one gets a throwaway key (``None`` ledger).

Records live on disk in the walk's order (:mod:`pybuildx.buildkit.ledger_records`): a transfer
reads the previous records alongside its walk and writes the new ones as it goes, so memory does
not grow with the number of files.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc

from pybuildx.buildkit.control import ControlClient
from pybuildx.buildkit.fswalk import Entry, compare_key
from pybuildx.buildkit.ledger_records import (
    Record,
    RecordWriter,
    merge_newest,
    read_records,
    trusted,
)
from pybuildx.errors import PybuildxError

__all__ = ["LedgerTransfer", "UploadLedger", "default_ledger_dir", "upload_ledger"]

_DIRTY = "dirty"
_NODE = "node"
_LOCK = "lock"


def default_ledger_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "pybuildx" / "uploads"


@contextlib.contextmanager
def upload_ledger(
    channel: grpc.Channel, context: Path, directory: Path | None = None
) -> Iterator[UploadLedger | None]:
    """The ledger for uploads of ``context`` to the daemon behind ``channel``, held for a build.

    The daemon is identified by its worker ids (random per daemon state directory), so a wiped
    or different daemon gets its own ledger. None (use a throwaway shared key) when the daemon
    cannot say or another build holds the ledger.
    """
    try:
        workers = ControlClient(channel).list_workers()
    except PybuildxError:
        yield None
        return
    daemon = ",".join(sorted(w.id for w in workers))
    scope = f"{daemon}\0{context.resolve()}"
    try:
        ledger = UploadLedger.open(directory or default_ledger_dir(), scope)
    except OSError:
        ledger = None
    try:
        yield ledger
    finally:
        if ledger is not None:
            ledger.close()


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    tmp.replace(path)


def _copied(record: Record) -> Record:
    """``record`` carried over unchanged by a transfer that did not walk its path."""
    return (*record[:6], False)


class UploadLedger:
    """What this machine sent under one shared key; see the module docstring."""

    def __init__(self, directory: Path, node: str, generation: int, lock_fd: int) -> None:
        self._dir = directory
        self._node = node
        self._generation = generation
        self._lock_fd = lock_fd
        self._mutex = threading.Lock()
        self._active = 0
        self._failed = False
        self._versions: dict[str, int] = {}

    @classmethod
    def open(cls, directory: Path, scope: str) -> UploadLedger | None:
        """The ledger for ``scope`` (e.g. daemon address + context path) or None when busy."""
        digest = hashlib.sha256(scope.encode("utf-8", "surrogateescape")).hexdigest()[:32]
        path = directory / digest
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.chmod(0o700)
        lock_fd = os.open(path / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            return None
        node_file = path / _NODE
        node, generation = "", 0
        with contextlib.suppress(OSError, ValueError):
            node_text, gen_text = node_file.read_text().split()
            node, generation = node_text, int(gen_text)
        for stray in path.glob("*.tmp"):
            stray.unlink()
        states = list(path.glob("*.state"))
        # An incomplete record file would hide what the daemon holds: start afresh instead.
        damaged = not all(trusted(state) for state in states)
        if not node or damaged or (path / _DIRTY).exists():
            for old in states:
                old.unlink()
            node = node or secrets.token_hex(12)
            generation += 1
            _write_private(node_file, f"{node} {generation}\n".encode())
            with contextlib.suppress(FileNotFoundError):
                (path / _DIRTY).unlink()
        return cls(path, node, generation, lock_fd)

    @property
    def shared_key(self) -> str:
        return f"pybuildx-{self._node}-{self._generation}"

    def begin(self, dir_name: str) -> LedgerTransfer:
        """A transfer of ``dir_name``. When the ledger cannot be written (a full disk), the
        transfer still decides from the previous records but records nothing, and the next
        build starts a new generation."""
        state = self._state_path(dir_name)
        with self._mutex:
            self._active += 1
            version = self._versions.get(dir_name, 0)
            writer: RecordWriter | None = None
            try:
                if self._active == 1 and not self._failed:
                    _write_private(self._dir / _DIRTY, b"")
                writer = RecordWriter(state)
            except OSError:
                self._failed = True
        return LedgerTransfer(self, dir_name, read_records(state), writer, version)

    def _state_path(self, dir_name: str) -> Path:
        digest = hashlib.sha256(dir_name.encode("utf-8", "surrogateescape")).hexdigest()[:32]
        return self._dir / f"{digest}.state"

    def _finish(self, dir_name: str, written: Path | None, version: int) -> None:
        with self._mutex:
            if written is None:
                self._failed = True
            else:
                state = self._state_path(dir_name)
                if self._versions.get(dir_name, 0) != version:
                    # Another transfer of this name committed meanwhile (filtered and
                    # unfiltered ones overlap): keep its records where ours are only copies.
                    merged = RecordWriter(state)
                    merged.extend(merge_newest(read_records(written), read_records(state)))
                    written.unlink()
                    written = merged.finish()
                written.replace(state)
                self._versions[dir_name] = self._versions.get(dir_name, 0) + 1
            self._active -= 1
            if self._active == 0 and not self._failed:
                with contextlib.suppress(FileNotFoundError):
                    (self._dir / _DIRTY).unlink()

    def close(self) -> None:
        os.close(self._lock_fd)


class LedgerTransfer:
    """One FileSync transfer: picks the mtime to send per file, then commits or fails.

    Entries must come in the walk's order. The previous records are read alongside; every record
    this transfer passes (or never reaches) is copied, so the new file replaces the old one.
    """

    def __init__(
        self,
        ledger: UploadLedger,
        dir_name: str,
        old: Iterator[Record],
        writer: RecordWriter | None,
        version: int,
    ) -> None:
        self._ledger = ledger
        self._dir_name = dir_name
        self._old = old
        self._next_old = next(old, None)
        self._writer = writer
        self._version = version
        self._last_key = b""
        self._done = False

    def _record(self, record: Record) -> None:
        if self._writer is None:
            return
        try:
            self._writer.add(record)
        except OSError:  # e.g. a full disk: the commit becomes a failure, the build goes on
            self._writer.discard()
            self._writer = None

    def mtime_to_send(self, entry: Entry) -> int:
        if entry.linkname or not entry.requestable:
            return entry.mtime_ns
        size, mtime = entry.size, entry.mtime_ns
        key = compare_key(entry.path)
        if key <= self._last_key:  # never expected: stop recording, the commit becomes a failure
            if self._writer is not None:
                self._writer.discard()
                self._writer = None
            return mtime
        self._last_key = key
        old = self._next_old
        while old is not None and old[0] < key:
            self._record(_copied(old))
            old = next(self._old, None)
        sent = mtime
        if old is not None and old[0] == key:
            if old[1:5] == (size, mtime, entry.ctime_ns, entry.ino):
                sent = old[5]
            elif old[1] == size and old[5] == mtime:
                sent = mtime + 1
            old = next(self._old, None)
        self._next_old = old
        self._record((key, size, mtime, entry.ctime_ns, entry.ino, sent, True))
        return sent

    def commit(self) -> None:
        if self._done:
            return
        if self._next_old is not None:
            self._record(_copied(self._next_old))
        for old in self._old:
            self._record(_copied(old))
        written: Path | None = None
        if self._writer is not None:
            try:
                written = self._writer.finish()
            except OSError:
                self._writer.discard()
        self._writer = None
        self._done = True
        self._ledger._finish(self._dir_name, written, self._version)

    def fail(self) -> None:
        if not self._done:
            self._done = True
            if self._writer is not None:
                self._writer.discard()
                self._writer = None
            self._ledger._finish(self._dir_name, None, self._version)
