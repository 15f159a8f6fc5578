"""The local-export receiver against well-formed and hostile packet streams from a fake sender."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pybuildx.buildkit import fsutil_wire as wire
from pybuildx.buildkit.fsreceive import LocalReceiver, UnsafeStream
from pybuildx.buildkit.fswalk import (
    GO_MODE_DIR,
    GO_MODE_NAMED_PIPE,
    GO_MODE_SETGID,
    GO_MODE_STICKY,
    GO_MODE_SYMLINK,
)
from pybuildx.errors import BuildFailed
from tests.xattrs import NET_BIND_SERVICE_EP, need_user_xattrs, xattrs_of

MTIME = 1_600_000_000_987_654_321


@dataclass
class Item:
    path: bytes
    mode: int
    content: bytes = b""
    linkname: bytes = b""
    mtime: int = MTIME
    xattrs: dict[bytes, bytes] = field(default_factory=dict)


def d(path: str, mode: int = 0o755) -> Item:
    return Item(path.encode(), GO_MODE_DIR | mode)


def f(path: str, content: bytes = b"", mode: int = 0o644) -> Item:
    return Item(path.encode(), mode, content)


class FakeSender:
    """Plays the daemon's side: STATs, end of listing, DATA for every REQ, FIN, then EOF."""

    def __init__(self, items: list[Item], *, chunk: int = 3) -> None:
        self.items = items
        self.chunk = chunk
        self.requests: list[int] = []
        self.got_fin = False

    def packets(self) -> Iterator[bytes]:
        for item in self.items:
            yield wire.stat_packet(
                wire.encode_stat(
                    item.path,
                    item.mode,
                    len(item.content),
                    item.mtime,
                    item.linkname,
                    uid=4242,
                    xattrs=tuple(item.xattrs.items()),
                )
            )
        yield b""
        for index in list(self.requests):
            content = self.items[index].content
            for start in range(0, len(content), self.chunk):
                yield wire.data_packet(index, content[start : start + self.chunk])
            yield wire.data_packet(index)
        yield wire.fin_packet()

    def run(self, dest: Path) -> None:
        receiver = LocalReceiver(dest)
        incoming = self.packets()
        for raw in receiver.run(incoming):
            packet = wire.decode_packet(raw)
            if packet.type == wire.REQ:
                self.requests.append(packet.id)
            elif packet.type == wire.FIN:
                self.got_fin = True


def test_writes_tree_contents_modes_links_and_mtimes(tmp_path: Path) -> None:
    items = [
        d("bin", 0o755 | GO_MODE_SETGID),
        f("bin/tool", b"#!/bin/sh\necho hi\n", 0o755),
        f("bin/tool-hard", mode=0o755),
        d("empty", 0o1777 | GO_MODE_STICKY),
        Item(b"fifo", GO_MODE_NAMED_PIPE | 0o640),
        Item(b"link", GO_MODE_SYMLINK | 0o777, linkname=b"bin/tool"),
        Item("résumé-\udcff".encode("utf-8", "surrogateescape"), 0o600, b"raw name"),
    ]
    items[2].linkname = b"bin/tool"
    sender = FakeSender(items)
    # Requests are answered after the listing; the fake feeds them from its REQ list, so the
    # receiver must send them while reading STATs.
    sender.run(tmp_path / "out")
    out = tmp_path / "out"

    assert sender.got_fin
    assert (out / "bin/tool").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert (out / "bin/tool").stat().st_ino == (out / "bin/tool-hard").stat().st_ino
    assert stat.S_IMODE((out / "bin/tool").stat().st_mode) == 0o755
    assert (out / "bin").stat().st_mode & stat.S_ISGID
    assert stat.S_IMODE((out / "empty").stat().st_mode) == 0o1777
    assert stat.S_ISFIFO((out / "fifo").lstat().st_mode)
    assert str((out / "link").readlink()) == "bin/tool"
    for name in ("bin", "bin/tool", "empty", "fifo"):
        assert (out / name).lstat().st_mtime_ns == MTIME, name
    assert (out / "link").lstat().st_mtime_ns == MTIME
    assert (out / "bin/tool").stat().st_uid == os.getuid()  # never the sender's uid
    assert (out / "résumé-\udcff").read_bytes() == b"raw name"
    assert sorted(sender.requests) == [1, 6]  # regular files only, hard links are linked


def test_concurrent_platform_streams_merge_into_one_directory(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    (dest / "linux_amd64").mkdir(parents=True)
    (dest / "linux_amd64" / "stale").write_text("old")  # merged, not emptied
    errors: list[BaseException] = []

    def stream(platform: str) -> None:
        try:
            FakeSender(
                [d(platform), d(f"{platform}/etc"), f(f"{platform}/etc/arch", platform.encode())]
            ).run(dest)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=stream, args=(p,)) for p in ("linux_amd64", "linux_arm64")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert (dest / "linux_amd64/etc/arch").read_text() == "linux_amd64"
    assert (dest / "linux_arm64/etc/arch").read_text() == "linux_arm64"
    assert (dest / "linux_amd64/stale").read_text() == "old"


def test_replaces_existing_files_and_symlinks(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    outside = tmp_path / "outside"
    outside.write_text("keep me")
    (dest / "f").symlink_to(outside)
    FakeSender([f("f", b"new")]).run(dest)
    assert not (dest / "f").is_symlink()
    assert (dest / "f").read_text() == "new"
    assert outside.read_text() == "keep me"


HOSTILE = [
    pytest.param([f("/etc/passwd", b"x")], id="absolute path"),
    pytest.param([f("../escape", b"x")], id="dot-dot"),
    pytest.param([d("a"), f("a/../../escape", b"x")], id="unclean dot-dot"),
    pytest.param([f("a//b", b"x")], id="unclean slashes"),
    pytest.param([f("", b"x")], id="empty path"),
    pytest.param(
        [Item(b"evil", GO_MODE_SYMLINK | 0o777, linkname=b"OUTSIDE"), f("evil/x", b"pwned")],
        id="write through symlink to outside",
    ),
    pytest.param(
        [d("in"), Item(b"lnk", GO_MODE_SYMLINK | 0o777, linkname=b"in"), f("lnk/x", b"x")],
        id="write through symlink to inside",
    ),
    pytest.param([Item(b"h", 0o644, linkname=b"../outside-file")], id="hard link outside"),
    pytest.param([Item(b"h", 0o644, linkname=b"never-sent")], id="hard link to unsent"),
    pytest.param([f("b"), f("a")], id="out of order"),
    pytest.param([f("a"), f("a")], id="duplicate"),
    pytest.param([f("dir/file", b"x")], id="file before its directory"),
]


@pytest.mark.parametrize("items", HOSTILE)
def test_hostile_streams_are_refused_without_writing_outside(
    tmp_path: Path, items: list[Item]
) -> None:
    dest = tmp_path / "out"
    outside = tmp_path / "outside-file"
    outside.write_text("original")
    for item in items:
        if item.linkname == b"OUTSIDE":
            item.linkname = os.fsencode(tmp_path)
    with pytest.raises(UnsafeStream):
        FakeSender(items).run(dest)
    assert outside.read_text() == "original"
    assert not (tmp_path / "escape").exists()
    assert not (tmp_path / "x").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "outside-file"]


def test_data_for_a_file_never_requested_is_refused(tmp_path: Path) -> None:
    packets = iter(
        [wire.stat_packet(wire.encode_stat(b"a", 0o644, 1, MTIME)), wire.data_packet(9, b"x")]
    )
    with pytest.raises(UnsafeStream, match="invalid file request 9"):
        list(LocalReceiver(tmp_path / "out").run(packets))


def test_sender_error_and_early_end_fail_the_export(tmp_path: Path) -> None:
    with pytest.raises(BuildFailed, match="disk full"):
        list(LocalReceiver(tmp_path / "a").run(iter([wire.err_packet("disk full")])))
    early = iter([wire.stat_packet(wire.encode_stat(b"a", 0o644, 1, MTIME)), b""])
    with pytest.raises(BuildFailed, match="ended early"):
        list(LocalReceiver(tmp_path / "b").run(early))


def test_xattrs_land_on_the_entries_themselves(tmp_path: Path) -> None:
    need_user_xattrs(tmp_path)
    root = os.geteuid() == 0
    cap = NET_BIND_SERVICE_EP
    items = [
        Item(b"d", GO_MODE_DIR | 0o555, xattrs={b"user.dir": b"1"}),
        Item(
            b"d/tool",
            0o555,  # read-only: the attributes go on before the mode
            b"#!/bin/sh\n",
            xattrs={b"user.file": b"2", b"security.capability": cap, b"user.bad\x00name": b"x"},
        ),
        Item(b"d/tool-link", 0o555, linkname=b"d/tool"),
        Item(
            b"link",
            GO_MODE_SYMLINK | 0o777,
            linkname=b"d/tool",
            xattrs={b"user.link": b"3", b"trusted.link": b"4"},
        ),
        Item(b"pipe", GO_MODE_NAMED_PIPE | 0o600, xattrs={b"trusted.pipe": b"5"}),
    ]
    dest = tmp_path / "out"
    FakeSender(items).run(dest)
    assert xattrs_of(dest / "d") == {b"user.dir": b"1"}
    # Set after the content (a write drops a file capability); the NUL name is skipped.
    tool = {b"user.file": b"2", **({b"security.capability": cap} if root else {})}
    assert xattrs_of(dest / "d/tool") == tool
    assert (dest / "d/tool").read_bytes() == b"#!/bin/sh\n"
    assert xattrs_of(dest / "d/tool-link") == tool  # the same inode
    # On the symlink itself, never its target; user.* is refused on symlinks and FIFOs.
    assert xattrs_of(dest / "link") == ({b"trusted.link": b"4"} if root else {})
    assert xattrs_of(dest / "pipe") == ({b"trusted.pipe": b"5"} if root else {})
