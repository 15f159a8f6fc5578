"""The fsutil *receiver*: writing a ``type=local`` export from the daemon into a directory.

The daemon (sender) streams a STAT per entry, an empty STAT to end the listing, and DATA for the
files we REQ; we answer FIN once every requested file is complete, then read its FIN and EOF.

The stream comes from a daemon we do not control, so nothing it says is trusted: paths must be
clean and relative, every write happens through directory file descriptors opened with
``O_NOFOLLOW`` (a symlink in the stream can never redirect a later write, inside or outside the
destination), hard links may only point at files this stream created, and entries must come in
the receiver's order with their parent directory first. Files and symlinks get the sender's
mode and mtime, directories too once their contents are written; ownership stays the local user.
Extended attributes are applied as fsutil's receiver does, best effort (a name the file system or
our privileges refuse is skipped), but on the entry itself through a descriptor, never through a
symlink, and on files after their content: writing a file drops ``security.capability``.
Several streams may write into one destination concurrently (one per platform, each below its own
``<os>_<arch>/`` directory): existing directories are merged, other existing entries replaced.
"""

from __future__ import annotations

import contextlib
import os
import stat as pstat
from collections.abc import Iterator, Mapping
from pathlib import Path

from pybuildx.buildkit import fsutil_wire as wire
from pybuildx.buildkit.dockerignore import go_clean
from pybuildx.buildkit.fswalk import (
    GO_MODE_CHAR_DEVICE,
    GO_MODE_DEVICE,
    GO_MODE_DIR,
    GO_MODE_NAMED_PIPE,
    GO_MODE_SYMLINK,
    GO_MODE_TYPE,
    compare_key,
    posix_mode,
)
from pybuildx.errors import BuildFailed

__all__ = ["LocalReceiver", "UnsafeStream"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_PATH_FLAGS = getattr(os, "O_PATH", 0) | os.O_NOFOLLOW | os.O_CLOEXEC
# Python has xattr calls on Linux only: elsewhere exports come without them.
_XATTRS = hasattr(os, "setxattr") and hasattr(os, "O_PATH")


class UnsafeStream(BuildFailed):
    """The daemon's local export stream broke a rule (bad path, link escape, bad order)."""


def _check_path(path: bytes, what: str = "path") -> bytes:
    text = path.decode("utf-8", "surrogateescape")
    if (
        not path
        or b"\x00" in path
        or path.startswith(b"/")
        or go_clean(text) != text
        or text == ".."
        or text.startswith("../")
    ):
        raise UnsafeStream(f"refusing local export entry with unsafe {what} {text!r}")
    return path


def _set_xattrs(target: int | str, xattrs: Mapping[bytes, bytes]) -> None:
    if not _XATTRS:
        return
    for key, value in sorted(xattrs.items()):
        # Skipped like fsutil does: EPERM (security.*, trusted.* unprivileged; user.* on
        # symlinks), ENOTSUP, ENOSPC, and names no kernel accepts (ValueError: a NUL byte).
        with contextlib.suppress(OSError, ValueError):
            os.setxattr(target, key, value)


def _set_xattrs_at(parent_fd: int, name: bytes, xattrs: Mapping[bytes, bytes]) -> None:
    """Set them on the entry ``name`` itself, a symlink included, never on what it points to.

    xattr calls have no ``*at`` form before Linux 6.13 and refuse O_PATH descriptors, but the
    ``/proc/self/fd`` link of one resolves to exactly its inode without following it further.
    """
    if not _XATTRS:
        return
    try:
        fd = os.open(name, _PATH_FLAGS, dir_fd=parent_fd)
    except OSError:
        return
    try:
        _set_xattrs(f"/proc/self/fd/{fd}", xattrs)
    finally:
        os.close(fd)


class _File:
    __slots__ = ("fd", "mode", "mtime", "path", "xattrs")

    def __init__(self, path: bytes, mode: int, mtime: int, xattrs: Mapping[bytes, bytes]) -> None:
        self.path = path
        self.mode = mode
        self.mtime = mtime
        self.xattrs = xattrs
        self.fd = -1


class LocalReceiver:
    """Receives one DiffCopy stream into ``dest``; ``run`` maps incoming to outgoing packets."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self._root_fd = -1
        self._dir_fds: dict[bytes, int] = {}
        self._created: set[bytes] = set()
        self._dir_paths: set[bytes] = set()
        self._dirs: list[tuple[bytes, int, int]] = []
        self._files: dict[int, _File] = {}
        self._last_key: bytes | None = None
        self.complete = False
        """Every file is written and every mode and mtime applied (set before our FIN)."""

    # -- safe path operations ----------------------------------------------------------------
    def _parent_fd(self, path: bytes) -> tuple[int, bytes]:
        """An fd for the parent directory of ``path`` (opened without following symlinks)."""
        parent, _, name = path.rpartition(b"/")
        if not parent:
            return self._root_fd, name
        fd = self._dir_fds.get(parent)
        if fd is not None:
            return fd, name
        base_fd, base_name = self._parent_fd(parent)
        try:
            fd = os.open(base_name, _DIR_FLAGS, dir_fd=base_fd)
        except OSError as exc:
            raise UnsafeStream(
                f"refusing local export entry {os.fsdecode(path)!r}: its parent is not a "
                f"directory of the export ({exc.strerror})"
            ) from None
        self._dir_fds[parent] = fd
        return fd, name

    def _clear(self, parent_fd: int, name: bytes, *, keep_dir: bool) -> bool:
        """Remove what is at ``name`` unless it is a directory we may keep; True if kept."""
        try:
            st = os.lstat(name, dir_fd=parent_fd)
        except FileNotFoundError:
            return False
        if pstat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            _remove_tree(parent_fd, name)
            return False
        os.unlink(name, dir_fd=parent_fd)
        return False

    # -- entries -------------------------------------------------------------------------------
    def _on_stat(self, stat: wire.WireStat, index: int) -> bytes | None:
        path = _check_path(stat.path)
        key = compare_key(path)
        if self._last_key is not None and key <= self._last_key:
            raise UnsafeStream(f"local export entries out of order at {os.fsdecode(path)!r}")
        self._last_key = key
        parent = path.rpartition(b"/")[0]
        if parent and parent not in self._dir_paths:
            raise UnsafeStream(f"local export entry {os.fsdecode(path)!r} before its directory")
        parent_fd, name = self._parent_fd(path)
        mode = stat.mode
        if mode & GO_MODE_DIR:
            if not self._clear(parent_fd, name, keep_dir=True):
                os.mkdir(name, 0o700, dir_fd=parent_fd)
            os.chmod(name, 0o700 | posix_mode(mode), dir_fd=parent_fd)
            if stat.xattrs:
                _set_xattrs_at(parent_fd, name, stat.xattrs)
            self._dirs.append((path, mode, stat.mod_time))
            self._dir_paths.add(path)
            return None
        self._clear(parent_fd, name, keep_dir=False)
        if mode & GO_MODE_SYMLINK:
            os.symlink(stat.linkname, name, dir_fd=parent_fd)
            os.utime(
                name, ns=(stat.mod_time, stat.mod_time), dir_fd=parent_fd, follow_symlinks=False
            )
        elif stat.linkname:
            target = _check_path(stat.linkname, "hard link target")
            if target not in self._created:
                raise UnsafeStream(
                    f"refusing hard link {os.fsdecode(path)!r} to {os.fsdecode(target)!r}: "
                    "not a file of this export"
                )
            target_fd, target_name = self._parent_fd(target)
            os.link(
                target_name,
                name,
                src_dir_fd=target_fd,
                dst_dir_fd=parent_fd,
                follow_symlinks=False,
            )
        elif mode & GO_MODE_TYPE == 0:
            fd = os.open(
                name,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
                dir_fd=parent_fd,
            )
            os.close(fd)
            self._files[index] = _File(path, mode, stat.mod_time, stat.xattrs)
            self._created.add(path)
            return wire.req_packet(index)
        elif mode & GO_MODE_NAMED_PIPE:
            os.mkfifo(name, 0o600, dir_fd=parent_fd)
        elif mode & GO_MODE_DEVICE:
            kind = pstat.S_IFCHR if mode & GO_MODE_CHAR_DEVICE else pstat.S_IFBLK
            try:
                os.mknod(
                    name, kind | 0o600, os.makedev(stat.devmajor, stat.devminor), dir_fd=parent_fd
                )
            except PermissionError:
                raise UnsafeStream(
                    f"cannot create device {os.fsdecode(path)!r} without root privileges"
                ) from None
        else:
            raise UnsafeStream(f"unsupported file type in local export: {os.fsdecode(path)!r}")
        # A hard link shares its target's inode, which gets the attributes with its content.
        if stat.xattrs and (mode & GO_MODE_SYMLINK or not stat.linkname):
            _set_xattrs_at(parent_fd, name, stat.xattrs)
        if not mode & GO_MODE_SYMLINK:
            os.chmod(name, posix_mode(mode), dir_fd=parent_fd, follow_symlinks=True)
            if not stat.linkname:
                os.utime(name, ns=(stat.mod_time, stat.mod_time), dir_fd=parent_fd)
        self._created.add(path)
        return None

    def _on_data(self, file_id: int, data: bytes) -> bool:
        """Write a chunk; True when the file is complete (empty DATA)."""
        file = self._files.get(file_id)
        if file is None:
            raise UnsafeStream(f"invalid file request {file_id} in local export")
        if file.fd < 0:
            parent_fd, name = self._parent_fd(file.path)
            file.fd = os.open(
                name, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd
            )
        if data:
            view = memoryview(data)
            while view:
                view = view[os.write(file.fd, view) :]
            return False
        if file.xattrs:  # after the content, before a mode that may deny us writing user.*
            _set_xattrs(file.fd, file.xattrs)
        os.fchmod(file.fd, posix_mode(file.mode))
        os.utime(file.fd, ns=(file.mtime, file.mtime))
        os.close(file.fd)
        del self._files[file_id]
        return True

    def _finish_dirs(self) -> None:
        for path, mode, mtime in reversed(self._dirs):
            parent_fd, name = self._parent_fd(path)
            os.chmod(name, posix_mode(mode), dir_fd=parent_fd, follow_symlinks=True)
            os.utime(name, ns=(mtime, mtime), dir_fd=parent_fd, follow_symlinks=False)

    # -- protocol ------------------------------------------------------------------------------
    def run(self, incoming: Iterator[bytes]) -> Iterator[bytes]:
        """Consume the sender's packets, yield ours (REQs, then FIN)."""
        self.dest.mkdir(parents=True, exist_ok=True)
        self._root_fd = os.open(self.dest, _DIR_FLAGS)
        try:
            yield from self._exchange(incoming)
        finally:
            self._close()

    def _exchange(self, incoming: Iterator[bytes]) -> Iterator[bytes]:
        index = 0
        listing_done = False
        for raw in incoming:
            packet = wire.decode_packet(raw)
            if packet.type == wire.STAT:
                if packet.stat is None:
                    listing_done = True
                else:
                    if listing_done:
                        raise UnsafeStream("local export sent entries after its listing ended")
                    request = self._on_stat(packet.stat, index)
                    index += 1
                    if request is not None:
                        yield request
            elif packet.type == wire.DATA:
                self._on_data(packet.id, packet.data)
            elif packet.type == wire.ERR:
                raise BuildFailed(
                    "local export failed on the daemon: " + packet.data.decode("utf-8", "replace")
                )
            elif packet.type == wire.FIN:
                raise UnsafeStream("local export ended before the transfer completed")
            if listing_done and not self._files:
                break
        else:
            raise BuildFailed("local export stream ended early")
        self._finish_dirs()
        self.complete = True
        # Newer daemons may cancel the call as soon as they have our FIN: nothing is left to do.
        yield wire.fin_packet()
        for raw in incoming:
            if wire.decode_packet(raw).type == wire.FIN:
                break
        for _ in incoming:
            pass

    def _close(self) -> None:
        for file in self._files.values():
            if file.fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(file.fd)
        for fd in self._dir_fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._dir_fds.clear()
        if self._root_fd >= 0:
            os.close(self._root_fd)
            self._root_fd = -1


def _remove_tree(parent_fd: int, name: bytes) -> None:
    """Remove a directory tree without following symlinks (``shutil.rmtree`` needs 3.11)."""
    fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    try:
        for child in os.scandir(fd):
            if child.is_dir(follow_symlinks=False):
                _remove_tree(fd, os.fsencode(child.name))
            else:
                os.unlink(child.name, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent_fd)
