"""``FileSync.DiffCopy``: the daemon pulls local directories (context, Dockerfile) from us.

We are the fsutil *sender*. One handler call streams, in order: a STAT per entry (the order and
filtering of :mod:`pybuildx.buildkit.fswalk`), an empty STAT ending the listing, and for every
``REQ{id}`` the file's bytes as ``DATA{id}`` chunks closed by an empty ``DATA{id}``; the daemon
ends with ``FIN``, we answer ``FIN`` and return OK. REQs may arrive while the listing is still
going: they are served between STATs, so the daemon starts writing files early.

Lean per-packet path: the method is registered with identity (bytes) serializers, packets are
built by :mod:`pybuildx.buildkit.fsutil_wire`, and everything runs in the handler's own thread
except one reader thread that turns the daemon's packets into a queue.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import grpc

from pybuildx.buildkit import fsutil_wire as wire
from pybuildx.buildkit.fswalk import Entry, WalkFilter, compare_key, walk
from pybuildx.buildkit.pending_files import PendingFiles
from pybuildx.buildkit.session import register_bytes_method
from pybuildx.buildkit.upload_ledger import LedgerTransfer, UploadLedger
from pybuildx.errors import PybuildxError

__all__ = [
    "DIFF_COPY_METHOD",
    "PEER_EOF",
    "PEER_FIN",
    "FileSyncAttachable",
    "LocalSource",
    "Transfer",
    "TransferError",
    "peer_item",
    "walk_filter_from_metadata",
]

DIFF_COPY_METHOD = "/moby.filesync.v1.FileSync/DiffCopy"
# Bigger than fsutil's 32 KiB: fewer messages through the Python layers for large files, well
# under the daemon's 16 MiB message limit.
_CHUNK = 1 << 20
PEER_FIN = -1
"""Queue marker: the daemon sent FIN."""
PEER_EOF = -2
"""Queue marker: the daemon closed its side without FIN."""


@dataclass(frozen=True, kw_only=True)
class LocalSource:
    """A local directory served under a name (``context``, ``dockerfile``, named contexts).

    ``ignore_patterns`` are applied by the client on top of what the daemon asks for (the
    Dockerfile frontend forwards ``.dockerignore`` itself as exclude patterns): a path is sent
    only if neither set excludes it.
    """

    path: Path
    ignore_patterns: tuple[str, ...] = ()


def _metadata_values(metadata: Sequence[tuple[str, Any]], key: str) -> list[str]:
    values = [str(v) for k, v in metadata if k == key]
    encoded = any(k == key + "-encoded" and str(v) == "1" for k, v in metadata)
    return [unquote_plus(v) for v in values] if encoded else values


def walk_filter_from_metadata(metadata: Sequence[tuple[str, Any]]) -> tuple[str, WalkFilter]:
    """The dir name and filters of a DiffCopy call, ``-encoded`` values URL-unescaped."""
    names = _metadata_values(metadata, "dir-name")
    return names[0] if names else "", WalkFilter(
        include_patterns=tuple(_metadata_values(metadata, "include-patterns")),
        exclude_patterns=tuple(_metadata_values(metadata, "exclude-patterns")),
        follow_paths=tuple(_metadata_values(metadata, "followpaths")),
    )


def peer_item(raw: bytes) -> int | str | None:
    """The sender-queue item for one of the daemon's packets (None: the sender ignores it).

    A REQ's file id (never negative), ``PEER_FIN``, or the text of an ERR.
    """
    packet = wire.decode_packet(raw)
    if packet.type == wire.REQ:
        return packet.id
    if packet.type == wire.FIN:
        return PEER_FIN
    if packet.type == wire.ERR:
        return "error from receiver: " + packet.data.decode("utf-8", "replace")
    return None


class _Receiver(threading.Thread):
    """Reads the daemon's packets into a queue: REQ ids, then FIN/EOF or an error string."""

    def __init__(self, requests: Iterator[bytes]) -> None:
        super().__init__(name="filesync-recv", daemon=True)
        self.requests = requests
        self.queue: queue.SimpleQueue[int | str] = queue.SimpleQueue()

    def run(self) -> None:
        try:
            for raw in self.requests:
                item = peer_item(raw)
                if item is None:
                    continue
                self.queue.put(item)
                if isinstance(item, str) or item == PEER_FIN:
                    return
            self.queue.put(PEER_EOF)
        except grpc.RpcError:
            self.queue.put(PEER_EOF)
        except ValueError as exc:
            self.queue.put(f"bad packet from receiver: {exc}")


class _Sender:
    def __init__(self, entries: Iterator[Entry], transfer: LedgerTransfer | None) -> None:
        self.entries = entries
        self.transfer = transfer
        self.files = PendingFiles()
        self.sent_bytes = 0

    def file_packets(self, file_id: int) -> Iterator[bytes]:
        path = self.files.pop(file_id)
        if path is None:
            raise _Abort(f"invalid file request {file_id}")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            # Vanished, or a socket/unreadable file: fsutil then sends it empty.
            yield wire.data_packet(file_id)
            return
        try:
            while True:
                chunk = os.read(fd, _CHUNK)
                if not chunk:
                    break
                self.sent_bytes += len(chunk)
                yield wire.data_header(file_id, len(chunk)) + chunk
        except OSError as exc:
            raise _Abort(f"read {os.fsdecode(path)}: {exc.strerror}") from None
        finally:
            os.close(fd)
        yield wire.data_packet(file_id)

    def packets(
        self, pending: queue.SimpleQueue[int | str], before_wait: Callable[[], None] | None = None
    ) -> Iterator[bytes]:
        """Our packets; ``pending`` holds the daemon's REQ ids, then FIN/EOF or an error.

        ``before_wait`` runs before blocking on ``pending`` (a buffering writer flushes there).
        """
        mtime = self.transfer.mtime_to_send if self.transfer else None
        for index, entry in enumerate(self.entries):
            sent_mtime = mtime(entry) if mtime else entry.mtime_ns
            if entry.requestable:
                self.files.add(index, entry.abspath)  # before the STAT leaves, as fsutil does
            yield wire.stat_packet(
                wire.encode_stat(
                    entry.path,
                    entry.mode,
                    entry.size,
                    sent_mtime,
                    entry.linkname,
                    entry.devmajor,
                    entry.devminor,
                    xattrs=entry.xattrs,
                )
            )
            while not pending.empty():
                if (yield from self._answer(pending.get())):
                    return
        yield b""  # end of listing: a STAT packet without a stat
        while True:
            if before_wait is not None and pending.empty():
                before_wait()
            if (yield from self._answer(pending.get())):
                return

    def _answer(self, item: int | str) -> Generator[bytes, None, bool]:
        """Serve one queue item: a REQ id's file, or the end; returns True at the end."""
        if isinstance(item, int) and item >= 0:
            yield from self.file_packets(item)
            return False
        if item == PEER_FIN:
            yield wire.fin_packet()
            if self.transfer is not None:
                self.transfer.commit()
            return True
        if item == PEER_EOF:
            raise _Abort("the daemon closed the transfer before it finished")
        raise _Abort(str(item))


class _Abort(Exception):
    pass


class TransferError(Exception):
    """A DiffCopy call that must end with this gRPC status."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


Transfer = Callable[[queue.SimpleQueue[int | str], Callable[[], None] | None], Iterator[bytes]]


class FileSyncAttachable:
    """Serves local directories to the daemon; ``dirs`` maps local names to sources."""

    def __init__(
        self, dirs: Mapping[str, LocalSource], *, ledger: UploadLedger | None = None
    ) -> None:
        self._dirs = dict(dirs)
        self._ledger = ledger
        self.bytes_sent: dict[str, int] = {}
        """File bytes the daemon asked for, per local name (0: an incremental no-op)."""
        self._lock = threading.Lock()

    def method_names(self) -> Sequence[str]:
        return (DIFF_COPY_METHOD,)

    def register(self, server: grpc.Server) -> None:
        register_bytes_method(server, DIFF_COPY_METHOD, self._diff_copy)

    def _diff_copy(
        self, requests: Iterator[bytes], context: grpc.ServicerContext
    ) -> Iterator[bytes]:
        try:
            transfer = self.transfer(context.invocation_metadata())
        except TransferError as exc:
            context.abort(exc.code, exc.message)
            return
        receiver = _Receiver(requests)
        receiver.start()
        try:
            yield from transfer(receiver.queue, None)
        except TransferError as exc:
            context.abort(exc.code, exc.message)

    def transfer(self, metadata: Sequence[tuple[str, Any]]) -> Transfer:
        """The packet stream for one DiffCopy call with this request ``metadata``.

        Calling the result with the queue of the daemon's packets (REQ ids, then FIN/EOF or an
        error text) yields our packets; it raises ``TransferError`` when the call must fail.
        """
        dir_name, filters = walk_filter_from_metadata(metadata)
        source = self._dirs.get(dir_name)
        if source is None:
            raise TransferError(grpc.StatusCode.NOT_FOUND, f"no access allowed to dir {dir_name!r}")

        def run(
            pending: queue.SimpleQueue[int | str], before_wait: Callable[[], None] | None
        ) -> Iterator[bytes]:
            ledger = self._ledger.begin(dir_name) if self._ledger is not None else None
            sender = _Sender(self._entries(source, filters), ledger)
            try:
                yield from sender.packets(pending, before_wait)
            except _Abort as exc:
                raise TransferError(grpc.StatusCode.CANCELLED, str(exc)) from None
            except (OSError, PybuildxError) as exc:
                yield wire.err_packet(str(exc))
                raise TransferError(grpc.StatusCode.UNKNOWN, str(exc)) from None
            finally:
                sender.files.close()
                if ledger is not None:
                    ledger.fail()  # no-op after a commit
                with self._lock:
                    self.bytes_sent[dir_name] = self.bytes_sent.get(dir_name, 0) + sender.sent_bytes

        return run

    @staticmethod
    def _entries(source: LocalSource, filters: WalkFilter) -> Iterator[Entry]:
        if not source.ignore_patterns:
            return walk(source.path, filters)
        ours = walk(source.path, WalkFilter(exclude_patterns=source.ignore_patterns))
        theirs = walk(source.path, filters)
        return _intersect(theirs, ours)


def _intersect(theirs: Iterator[Entry], ours: Iterator[Entry]) -> Iterator[Entry]:
    """Entries present in both walks (both are in receiver order, so a merge-join works).

    A hard link whose first path only our patterns dropped becomes a plain file (its size is
    real, and its content is read from its own path).
    """
    sent: set[bytes] = set()  # multi-link files only: the first path of a link
    mine = next(ours, None)
    for entry in theirs:
        key = compare_key(entry.path)
        while mine is not None and compare_key(mine.path) < key:
            mine = next(ours, None)
        if mine is None or mine.path != entry.path:
            continue
        if entry.requestable:
            if entry.linkname and entry.linkname not in sent:
                entry.linkname = b""
            if entry.nlink > 1:
                sent.add(entry.path)
        yield entry
