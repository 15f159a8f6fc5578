"""Walking a local directory the way fsutil's sender does, and converting stats to its wire form.

The receiver (the daemon) validates what it gets: entries must arrive in its path order ('/' sorts
below every other byte, parents before children), a hard link must name an entry sent earlier,
and modes are Go ``os.FileMode`` values, not POSIX ``st_mode``. Filtering follows fsutil's
``filterFS``: include and exclude patterns with parent matching, whole directories skipped only
when no pattern could bring something inside back, and excluded directories emitted lazily just
before their first kept descendant.

Paths are bytes throughout (names are not always UTF-8); patterns see them decoded with
``surrogateescape``, which round-trips every byte.
"""

# Paths are bytes here for speed and exactness; pathlib has no bytes paths.
# ruff: noqa: PTH112, PTH115, PTH118, PTH120, PTH208
from __future__ import annotations

import errno
import os
import stat as pstat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from pybuildx.buildkit.dockerignore import MatchInfo, Pattern, PatternMatcher, go_clean

__all__ = [
    "GO_MODE_DEVICE",
    "GO_MODE_DIR",
    "GO_MODE_SYMLINK",
    "GO_MODE_TYPE",
    "Entry",
    "WalkFilter",
    "compare_key",
    "go_file_mode",
    "posix_mode",
    "read_xattrs",
    "resolve_follow_paths",
    "walk",
]

# Go os.FileMode bits (append, exclusive and temporary, bits 30-28, are never sent).
GO_MODE_DIR = 1 << 31
GO_MODE_SYMLINK = 1 << 27
GO_MODE_DEVICE = 1 << 26
GO_MODE_NAMED_PIPE = 1 << 25
GO_MODE_SOCKET = 1 << 24
GO_MODE_SETUID = 1 << 23
GO_MODE_SETGID = 1 << 22
GO_MODE_CHAR_DEVICE = 1 << 21
GO_MODE_STICKY = 1 << 20
GO_MODE_IRREGULAR = 1 << 19
GO_MODE_TYPE = (
    GO_MODE_DIR
    | GO_MODE_SYMLINK
    | GO_MODE_NAMED_PIPE
    | GO_MODE_SOCKET
    | GO_MODE_DEVICE
    | GO_MODE_CHAR_DEVICE
    | GO_MODE_IRREGULAR
)
# fsutil clears the socket bit (archive/tar cannot represent sockets): they travel as empty files.
_SENT_TYPE_BITS = {
    pstat.S_IFDIR: GO_MODE_DIR,
    pstat.S_IFLNK: GO_MODE_SYMLINK,
    pstat.S_IFBLK: GO_MODE_DEVICE,
    pstat.S_IFCHR: GO_MODE_DEVICE | GO_MODE_CHAR_DEVICE,
    pstat.S_IFIFO: GO_MODE_NAMED_PIPE,
    pstat.S_IFSOCK: 0,
    pstat.S_IFREG: 0,
}
_METADATA_ENTRY = b".fsutil-metadata"


def go_file_mode(st_mode: int) -> int:
    """The Go ``os.FileMode`` fsutil sends for a POSIX ``st_mode`` (socket bit cleared)."""
    mode = (st_mode & 0o777) | _SENT_TYPE_BITS.get(pstat.S_IFMT(st_mode), GO_MODE_IRREGULAR)
    if st_mode & pstat.S_ISUID:
        mode |= GO_MODE_SETUID
    if st_mode & pstat.S_ISGID:
        mode |= GO_MODE_SETGID
    if st_mode & pstat.S_ISVTX:
        mode |= GO_MODE_STICKY
    return mode


def posix_mode(go_mode: int) -> int:
    """The inverse: permission and special bits of a Go FileMode as POSIX mode bits."""
    mode = go_mode & 0o777
    if go_mode & GO_MODE_SETUID:
        mode |= pstat.S_ISUID
    if go_mode & GO_MODE_SETGID:
        mode |= pstat.S_ISGID
    if go_mode & GO_MODE_STICKY:
        mode |= pstat.S_ISVTX
    return mode


def compare_key(path: bytes) -> bytes:
    """The receiver's path order as a sort key: bytewise with '/' below every other byte."""
    return path.replace(b"/", b"\x00")


@dataclass(slots=True)
class Entry:
    """One walked entry, ready to become a fsutil ``Stat`` (uid/gid are always sent as 0)."""

    path: bytes
    mode: int
    size: int
    mtime_ns: int
    linkname: bytes
    devmajor: int
    devminor: int
    abspath: bytes
    ino: int
    dev: int
    ctime_ns: int
    nlink: int
    xattrs: tuple[tuple[bytes, bytes], ...]
    """Extended attributes as (name, value) pairs sorted by name; ``()`` when there are none."""

    @property
    def requestable(self) -> bool:
        """Whether the receiver may ask for content (regular files, hard links included)."""
        return self.mode & GO_MODE_TYPE == 0


@dataclass(frozen=True)
class WalkFilter:
    """The three filter lists a FileSync request carries."""

    include_patterns: tuple[str, ...] = ()
    exclude_patterns: tuple[str, ...] = ()
    follow_paths: tuple[str, ...] = ()


def _dedupe_sorted(paths: Sequence[str]) -> list[str] | None:
    """fsutil's dedupePaths: drop paths below an earlier one; '.' means no filter (None)."""
    out: list[str] = []
    last: str | None = None
    for path in paths:
        if path == ".":
            return None
        if last is not None and path.startswith(last + "/"):
            continue
        out.append(path)
        last = path
    return out


def _has_wildcards(name: str) -> bool:
    i = 0
    while i < len(name):
        if name[i] == "\\":
            i += 2
            continue
        if name[i] in "*?[":
            return True
        i += 1
    return False


def _join(*parts: str) -> str:
    return go_clean("/".join(p for p in parts if p))


def resolve_follow_paths(root: bytes, paths: Sequence[str]) -> list[str] | None:
    """fsutil's FollowLinks: the given paths plus every symlink target along them.

    Symlink targets are taken relative to ``root`` (absolute ones too: the context is the root).
    Returns None when the result would include the whole directory.
    """
    resolved: set[str] = set()

    def read_links(rel: str, allow_wildcard: bool) -> list[str] | None:
        real = os.path.join(root, os.fsencode(rel))
        parent, base = rel.rpartition("/")[0], rel.rpartition("/")[2]
        if allow_wildcard and _has_wildcards(base):
            try:
                names = sorted(os.listdir(os.path.dirname(real)))
            except (FileNotFoundError, NotADirectoryError):
                return None
            matcher = Pattern(base, False)
            out: list[str] = []
            for name in names:
                text = os.fsdecode(name)
                if matcher.match(text):
                    out.extend(read_links(_join(parent, text), False) or [])
            return out
        try:
            st = os.lstat(real)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not pstat.S_ISLNK(st.st_mode):
            return None
        link = go_clean(os.fsdecode(os.readlink(real)))
        if link.startswith("/"):
            return [link]
        return ["/" + _join(parent, link)]

    def append(path: str, depth: int = 0) -> None:
        if depth > 255:
            return  # a symlink loop; Go would recurse until the stack ends
        rest = path.lstrip("/") if path.startswith("/") else path
        current = "."
        while True:
            first, _, rest = rest.partition("/")
            current = _join(current, first)
            targets = read_links(current, True) if current != "." else None
            if (not rest or targets is not None) and current in resolved:
                return
            if targets is not None:
                resolved.add(current)
                for target in targets:
                    append(_join(target, rest), depth + 1)
                return
            if not rest:
                resolved.add(current)
                return

    for p in paths:
        append(p)
    return _dedupe_sorted(sorted(resolved))


class _Dir:
    __slots__ = ("emitted", "entry", "exclude_info", "include_info")

    def __init__(self, entry: Entry) -> None:
        self.entry = entry
        self.emitted = False
        self.include_info = MatchInfo()
        self.exclude_info = MatchInfo()


_UNSUPPORTED = (errno.ENOTSUP, errno.EOPNOTSUPP)
_SKIPPED_XATTR_PREFIX = b"com.apple."
_XATTRS = hasattr(os, "listxattr")  # Python has xattr calls on Linux only


def read_xattrs(path: bytes) -> tuple[tuple[bytes, bytes], ...]:
    """The extended attributes of ``path`` itself (symlinks not followed), as fsutil sends them.

    Like fsutil: a file system without xattr support means none, a value that cannot be read
    (removed meanwhile, no permission) is left out, ``com.apple.*`` names are skipped, and any
    other failure to list them is an error. An entry that vanished has none (the walk tolerates
    vanished entries). One ``llistxattr`` per entry: the common no-xattr case costs nothing more.
    """
    if not _XATTRS:
        return ()
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except FileNotFoundError:
        return ()
    except OSError as exc:
        if exc.errno in _UNSUPPORTED:
            return ()
        raise
    if not names:
        return ()
    pairs = []
    for name in names:
        key = os.fsencode(name)
        if key.startswith(_SKIPPED_XATTR_PREFIX):
            continue
        try:
            pairs.append((key, os.getxattr(path, name, follow_symlinks=False)))
        except OSError:
            continue
    return tuple(sorted(pairs))


def _make_entry(rel: bytes, abspath: bytes, st: os.stat_result) -> Entry:
    mode = go_file_mode(st.st_mode)
    fmt = pstat.S_IFMT(st.st_mode)
    linkname = b""
    size = 0 if fmt == pstat.S_IFDIR else st.st_size
    devmajor = devminor = 0
    if fmt == pstat.S_IFLNK:
        linkname = os.readlink(abspath)
    elif fmt in (pstat.S_IFBLK, pstat.S_IFCHR):
        devmajor, devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    return Entry(
        rel,
        mode,
        size,
        st.st_mtime_ns,
        linkname,
        devmajor,
        devminor,
        abspath,
        st.st_ino,
        st.st_dev,
        st.st_ctime_ns,
        st.st_nlink,
        read_xattrs(abspath),
    )


def walk(root: str | os.PathLike[str], filters: WalkFilter = WalkFilter()) -> Iterator[Entry]:
    """Yield the entries of ``root`` in the order the fsutil receiver requires.

    Hard links (a second path to an inode already sent) come with ``linkname`` set to the first
    path. The root itself is never yielded.
    """
    base = os.fsencode(os.path.realpath(root))
    if not os.path.isdir(base):
        raise NotADirectoryError(f"not a directory: {os.fsdecode(base)}")
    includes: list[str] | None = list(filters.include_patterns)
    if filters.follow_paths:
        targets = resolve_follow_paths(base, filters.follow_paths)
        if targets is not None:
            includes = _dedupe_sorted([*includes, *targets]) if includes is not None else None
    include = PatternMatcher(includes) if includes else None
    exclude = PatternMatcher(filters.exclude_patterns) if filters.exclude_patterns else None
    if include is not None and not include.patterns:
        include = None
    if exclude is not None and not exclude.patterns:
        exclude = None
    yield from _Walker(base, include, exclude).run()


class _Walker:
    def __init__(
        self, base: bytes, include: PatternMatcher | None, exclude: PatternMatcher | None
    ) -> None:
        self.base = base
        self.include = include
        self.exclude = exclude
        self.prefix_includes = include is None or include.only_literal(exclusions=False)
        self.prefix_exceptions = exclude is None or exclude.only_literal(exclusions=True)
        self.links: dict[tuple[int, int], bytes] = {}
        self.parents: list[_Dir] = []

    def run(self) -> Iterator[Entry]:
        filtering = self.include is not None or self.exclude is not None
        if not filtering:
            yield from self._walk_plain(self.base, b"")
            return
        yield from self._walk_filtered(self.base, b"")

    def _entry(self, rel: bytes, abspath: bytes, st: os.stat_result) -> Entry:
        entry = _make_entry(rel, abspath, st)
        fmt = pstat.S_IFMT(st.st_mode)
        if st.st_nlink > 1 and fmt not in (pstat.S_IFDIR, pstat.S_IFLNK):
            key = (st.st_dev, st.st_ino)
            first = self.links.get(key)
            if first is None:
                self.links[key] = rel
            else:
                # The size stays real, as current fsutil sends it: with size 0 the daemon's
                # incremental diff sees an unchanged link as modified, re-links it over a name
                # of the same inode, and rename(2) then leaves a stray ".tmp.*" in the context.
                entry.linkname = first
        return entry

    @staticmethod
    def _listing(directory: bytes) -> list[bytes]:
        # Names, not DirEntry objects: those keep their stat results, ~800 bytes per entry of
        # the largest directory (160 MB for 200,000 files) against ~70 for a name.
        return sorted(os.listdir(directory))

    def _walk_plain(self, directory: bytes, rel_dir: bytes) -> Iterator[Entry]:
        for name in self._listing(directory):
            if not rel_dir and name == _METADATA_ENTRY:
                continue
            rel = rel_dir + name
            path = directory + b"/" + name
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue  # vanished during the walk, as fsutil skips it
            yield self._entry(rel, path, st)
            if pstat.S_ISDIR(st.st_mode):
                yield from self._walk_plain(path, rel + b"/")

    def _walk_filtered(self, directory: bytes, rel_dir: bytes) -> Iterator[Entry]:
        parent = self.parents[-1] if self.parents else None
        for name in self._listing(directory):
            if not rel_dir and name == _METADATA_ENTRY:
                continue
            rel = rel_dir + name
            path = directory + b"/" + name
            text = os.fsdecode(rel)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            is_dir = pstat.S_ISDIR(st.st_mode)
            skip = False
            include_info = exclude_info = MatchInfo()
            if self.include is not None:
                matched, include_info = self.include.matches_using_parent_results(
                    text, parent.include_info if parent else MatchInfo()
                )
                if not matched:
                    if (
                        is_dir
                        and self.prefix_includes
                        and not self.include.could_reinclude_below(text, exclusions=False)
                    ):
                        continue
                    skip = True
            if self.exclude is not None:
                matched, exclude_info = self.exclude.matches_using_parent_results(
                    text, parent.exclude_info if parent else MatchInfo()
                )
                if matched:
                    if (
                        is_dir
                        and self.prefix_exceptions
                        and (
                            not self.exclude.exclusions
                            or not self.exclude.could_reinclude_below(text, exclusions=True)
                        )
                    ):
                        continue
                    skip = True
            if not skip:
                for pending in self.parents:
                    if not pending.emitted:
                        pending.emitted = True
                        yield pending.entry
                entry = self._entry(rel, path, st)
                yield entry
            if is_dir:
                node = _Dir(_make_entry(rel, path, st))
                node.emitted = not skip
                node.include_info = include_info
                node.exclude_info = exclude_info
                self.parents.append(node)
                try:
                    yield from self._walk_filtered(path, rel + b"/")
                finally:
                    self.parents.pop()
