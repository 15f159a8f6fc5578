"""The sender's walk: receiver order, filtering as fsutil does it, Go modes, wire bytes."""

from __future__ import annotations

import os
import queue
import stat
from pathlib import Path

import pytest

from pybuildx.buildkit import fsutil_wire as wire
from pybuildx.buildkit._pb import fsutil_pb2
from pybuildx.buildkit.filesync import (
    PEER_FIN,
    FileSyncAttachable,
    LocalSource,
    walk_filter_from_metadata,
)
from pybuildx.buildkit.fswalk import (
    GO_MODE_CHAR_DEVICE,
    GO_MODE_DEVICE,
    GO_MODE_DIR,
    GO_MODE_NAMED_PIPE,
    GO_MODE_SETGID,
    GO_MODE_SETUID,
    GO_MODE_STICKY,
    GO_MODE_SYMLINK,
    WalkFilter,
    compare_key,
    go_file_mode,
    posix_mode,
    walk,
)
from tests.testbed import need
from tests.xattrs import NET_BIND_SERVICE_EP, need_user_xattrs


def paths(root: Path, **filters: tuple[str, ...]) -> list[str]:
    return [os.fsdecode(e.path) for e in walk(root, WalkFilter(**filters))]


def make(root: Path, *names: str) -> None:
    for name in names:
        target = root / name
        if name.endswith("/"):
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(name)


def test_order_puts_slash_below_every_other_byte(tmp_path: Path) -> None:
    make(tmp_path, "a/x", "a-b", "a.txt", "B", "a0")
    assert paths(tmp_path) == ["B", "a", "a/x", "a-b", "a.txt", "a0"]


def test_order_is_the_receivers_compare_path_order(tmp_path: Path) -> None:
    make(tmp_path, "a/b/c", "a/b-c/d", "a/b.c", "ab/c", "a b/x", "z/", "é/x", "e/x")
    walked = [e.path for e in walk(tmp_path)]
    assert walked == sorted(walked, key=compare_key)


def test_root_metadata_entry_is_never_sent(tmp_path: Path) -> None:
    make(tmp_path, ".fsutil-metadata", "sub/.fsutil-metadata")
    assert paths(tmp_path) == ["sub", "sub/.fsutil-metadata"]


def test_excluded_directory_is_not_walked(tmp_path: Path) -> None:
    make(tmp_path, "node_modules/a/b", "src/main.c")
    assert paths(tmp_path, exclude_patterns=("node_modules",)) == ["src", "src/main.c"]


def test_literal_exception_reincludes_inside_excluded_directory(tmp_path: Path) -> None:
    make(tmp_path, "dir/keep", "dir/other", "dir/sub/x")
    got = paths(tmp_path, exclude_patterns=("dir", "!dir/keep"))
    assert got == ["dir", "dir/keep"]


def test_glob_exception_walks_excluded_directories_and_emits_parents_lazily(
    tmp_path: Path,
) -> None:
    make(tmp_path, "a/keep", "a/drop", "b/drop", "c/d/keep")
    got = paths(tmp_path, exclude_patterns=("*", "!*/keep"))
    # c/d/keep is two levels down: "*/keep" does not match it, and c is excluded.
    assert got == ["a", "a/keep"]


def test_exception_for_a_nested_file_brings_its_parents(tmp_path: Path) -> None:
    make(tmp_path, "x/y/z.txt", "x/y/other", "x/top")
    got = paths(tmp_path, exclude_patterns=("**", "!x/y/z.txt"))
    assert got == ["x", "x/y", "x/y/z.txt"]


def test_include_patterns_keep_only_matches_and_their_parents(tmp_path: Path) -> None:
    make(tmp_path, "sub/keep", "sub/drop", "other/keep", "top")
    assert paths(tmp_path, include_patterns=("sub/keep",)) == ["sub", "sub/keep"]


def test_include_directory_sends_its_whole_tree(tmp_path: Path) -> None:
    make(tmp_path, "sub/a/b", "sub/c", "nope")
    assert paths(tmp_path, include_patterns=("sub",)) == ["sub", "sub/a", "sub/a/b", "sub/c"]


def test_followpaths_adds_symlink_targets(tmp_path: Path) -> None:
    make(tmp_path, "real/Dockerfile", "unrelated")
    (tmp_path / "Dockerfile").symlink_to("real/Dockerfile")
    got = paths(tmp_path, follow_paths=("Dockerfile", "Dockerfile.dockerignore"))
    assert got == ["Dockerfile", "real", "real/Dockerfile"]


def test_followpaths_resolve_absolute_links_inside_the_directory(tmp_path: Path) -> None:
    make(tmp_path, "conf/app.ignore", "x")
    (tmp_path / ".dockerignore").symlink_to("/conf/app.ignore")
    assert paths(tmp_path, follow_paths=(".dockerignore",)) == [
        ".dockerignore",
        "conf",
        "conf/app.ignore",
    ]


def test_stats_modes_links_and_sizes(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir").chmod(0o1755)
    exe = tmp_path / "exe"
    exe.write_bytes(b"12345")
    exe.chmod(0o6755)
    os.mkfifo(tmp_path / "fifo", 0o640)
    (tmp_path / "link").symlink_to("exe")
    os.link(exe, tmp_path / "z-hard")
    mtime = 1_700_000_000_123_456_789
    os.utime(exe, ns=(mtime, mtime))
    entries = {os.fsdecode(e.path): e for e in walk(tmp_path)}

    assert entries["dir"].mode == GO_MODE_DIR | GO_MODE_STICKY | 0o755
    assert entries["dir"].size == 0
    assert entries["exe"].mode == GO_MODE_SETUID | GO_MODE_SETGID | 0o755
    assert entries["exe"].mtime_ns == mtime
    assert entries["exe"].size == 5 and entries["exe"].linkname == b""
    assert entries["fifo"].mode == GO_MODE_NAMED_PIPE | 0o640
    assert entries["link"].mode == GO_MODE_SYMLINK | 0o777
    assert entries["link"].linkname == b"exe" and entries["link"].size == 3
    assert entries["z-hard"].linkname == b"exe" and entries["z-hard"].size == 5
    assert entries["exe"].requestable and entries["z-hard"].requestable
    assert not entries["link"].requestable and not entries["fifo"].requestable


def test_hard_link_target_is_the_first_kept_path(tmp_path: Path) -> None:
    make(tmp_path, "a-excluded")
    os.link(tmp_path / "a-excluded", tmp_path / "b")
    os.link(tmp_path / "a-excluded", tmp_path / "c")
    entries = list(walk(tmp_path, WalkFilter(exclude_patterns=("a-excluded",))))
    assert [(e.path, e.linkname) for e in entries] == [(b"b", b""), (b"c", b"b")]


def test_non_utf8_names_survive_as_bytes(tmp_path: Path) -> None:
    name = b"caf\xe9-\xff.bin"
    (tmp_path / os.fsdecode(name)).write_bytes(b"x")
    entries = list(walk(tmp_path, WalkFilter(exclude_patterns=("nothing",))))
    assert [e.path for e in entries] == [name]


@pytest.mark.parametrize(
    ("st_mode", "go_mode"),
    [
        (stat.S_IFREG | 0o644, 0o644),
        (stat.S_IFDIR | 0o2775, GO_MODE_DIR | GO_MODE_SETGID | 0o775),
        (stat.S_IFLNK | 0o777, GO_MODE_SYMLINK | 0o777),
        (stat.S_IFCHR | 0o666, GO_MODE_DEVICE | GO_MODE_CHAR_DEVICE | 0o666),
        (stat.S_IFBLK | 0o660, GO_MODE_DEVICE | 0o660),
        (stat.S_IFIFO | 0o600, GO_MODE_NAMED_PIPE | 0o600),
        (stat.S_IFSOCK | 0o755, 0o755),  # fsutil clears the socket bit
    ],
)
def test_go_file_mode(st_mode: int, go_mode: int) -> None:
    assert go_file_mode(st_mode) == go_mode
    assert posix_mode(go_mode) == stat.S_IMODE(st_mode)


def test_hand_encoded_packets_equal_the_generated_protobuf() -> None:
    encoded = wire.encode_stat(
        b"dir/file", 0o755 | GO_MODE_SETUID, 123456789012, -5, b"target", 8, 1
    )
    reference = fsutil_pb2.Stat(
        path="dir/file",
        mode=0o755 | GO_MODE_SETUID,
        size=123456789012,
        modTime=-5,
        linkname="target",
        devmajor=8,
        devminor=1,
    )
    assert encoded == reference.SerializeToString()
    assert wire.stat_packet(encoded) == fsutil_pb2.Packet(stat=reference).SerializeToString()
    data = fsutil_pb2.Packet(type=fsutil_pb2.Packet.PACKET_DATA, ID=300, data=b"x" * 200)
    assert wire.data_packet(300, b"x" * 200) == data.SerializeToString()
    empty = fsutil_pb2.Packet(type=fsutil_pb2.Packet.PACKET_DATA, ID=0)
    assert wire.data_packet(0) == empty.SerializeToString()
    req = fsutil_pb2.Packet(type=fsutil_pb2.Packet.PACKET_REQ, ID=7)
    assert wire.req_packet(7) == req.SerializeToString()
    assert (
        wire.fin_packet()
        == fsutil_pb2.Packet(type=fsutil_pb2.Packet.PACKET_FIN).SerializeToString()
    )


def test_end_of_listing_has_no_stat() -> None:
    # Packet(type=STAT) with stat unset is b""; with an empty Stat it would be a real entry.
    assert fsutil_pb2.Packet(type=fsutil_pb2.Packet.PACKET_STAT).SerializeToString() == b""
    assert wire.decode_packet(b"").stat is None
    assert wire.decode_packet(b"\x12\x00").stat is not None


def test_decoding_round_trips_generated_messages() -> None:
    packet = fsutil_pb2.Packet(
        type=fsutil_pb2.Packet.PACKET_STAT,
        stat=fsutil_pb2.Stat(
            path="ü/x",
            mode=GO_MODE_DIR | 0o700,
            uid=1000,
            gid=5,
            size=0,
            modTime=-1,
            xattrs={"user.a": b"v"},
        ),
    )
    decoded = wire.decode_packet(packet.SerializeToString())
    assert decoded.stat is not None
    assert decoded.stat.path == "ü/x".encode()
    assert decoded.stat.mode == GO_MODE_DIR | 0o700
    assert (decoded.stat.uid, decoded.stat.gid, decoded.stat.mod_time) == (1000, 5, -1)
    assert decoded.stat.xattrs == {b"user.a": b"v"}


def test_request_metadata_is_decoded_as_the_daemon_sends_it() -> None:
    # Captured from buildkitd v0.18 for a .dockerignore of "*.log", "!keep.log", "/abs", "été*".
    metadata = [
        ("exclude-patterns", "%2A.log"),
        ("exclude-patterns", "%21keep.log"),
        ("exclude-patterns", "abs"),
        ("exclude-patterns", "%C3%A9t%C3%A9%2A"),
        ("exclude-patterns-encoded", "1"),
        ("dir-name", "context"),
        ("followpaths", "a+b"),  # not encoded: taken literally
    ]
    name, filters = walk_filter_from_metadata(metadata)
    assert name == "context"
    assert filters.exclude_patterns == ("*.log", "!keep.log", "abs", "été*")
    assert filters.follow_paths == ("a+b",)
    assert filters.include_patterns == ()


def test_client_ignore_patterns_combine_with_the_daemons(tmp_path: Path) -> None:
    from pybuildx.buildkit.filesync import FileSyncAttachable, LocalSource

    make(tmp_path, "keep", "secret.env", "logs/x.log", "src/a")
    os.link(tmp_path / "secret.env", tmp_path / "z-link-to-secret")
    files = FileSyncAttachable({"c": LocalSource(path=tmp_path, ignore_patterns=("*.env",))})
    entries = list(files._entries(files._dirs["c"], WalkFilter(exclude_patterns=("logs",))))
    assert [e.path for e in entries] == [b"keep", b"src", b"src/a", b"z-link-to-secret"]
    # Its first path was dropped by our patterns: sent as a plain file, never a dangling link.
    assert entries[-1].linkname == b"" and entries[-1].size == len("secret.env")


def test_entries_carry_their_own_xattrs_sorted(tmp_path: Path) -> None:
    need_user_xattrs(tmp_path)
    make(tmp_path, "d/", "d/f", "plain")
    os.setxattr(tmp_path / "d/f", "user.b", b"2")
    os.setxattr(tmp_path / "d/f", "user.a", b"\x00\xff")
    os.setxattr(tmp_path / "d", "user.dir", b"")
    (tmp_path / "link").symlink_to("d/f")  # the target's attributes are not the link's
    expected = {
        b"d": ((b"user.dir", b""),),
        b"d/f": ((b"user.a", b"\x00\xff"), (b"user.b", b"2")),
        b"link": (),
        b"plain": (),
    }
    assert {e.path: e.xattrs for e in walk(tmp_path)} == expected
    # A directory emitted late (excluded, but with a file brought back) keeps them too.
    filtered = walk(tmp_path, WalkFilter(exclude_patterns=("d", "!d/f", "plain", "link")))
    assert {e.path: e.xattrs for e in filtered} == {b"d": expected[b"d"], b"d/f": expected[b"d/f"]}


def sent_stats(root: Path) -> list[fsutil_pb2.Stat]:
    """The STATs our sender streams for ``root``, parsed by protobuf itself."""
    transfer = FileSyncAttachable({"context": LocalSource(path=root)}).transfer(
        [("dir-name", "context")]
    )
    pending: queue.SimpleQueue[int | str] = queue.SimpleQueue()
    stats = []
    for raw in transfer(pending, None):
        if raw == b"":  # end of the listing: ask for nothing
            pending.put(PEER_FIN)
            continue
        packet = fsutil_pb2.Packet.FromString(raw)
        if packet.type == fsutil_pb2.Packet.PACKET_STAT:
            stats.append(packet.stat)
    return stats


def test_file_capabilities_and_user_xattrs_are_sent(tmp_path: Path) -> None:
    need(os.geteuid() == 0, "setting security.capability needs CAP_SETFCAP")
    need_user_xattrs(tmp_path)
    make(tmp_path, "tool", "plain")
    os.setxattr(tmp_path / "tool", "security.capability", NET_BIND_SERVICE_EP)
    os.setxattr(tmp_path / "tool", "user.pybuildx.test", b"hello")
    stats = {s.path: dict(s.xattrs) for s in sent_stats(tmp_path)}
    assert stats == {
        "plain": {},
        "tool": {"security.capability": NET_BIND_SERVICE_EP, "user.pybuildx.test": b"hello"},
    }


def test_xattrs_encode_as_protobuf_does_in_key_order() -> None:
    xattrs = {
        "user.b": b"",
        "security.capability": NET_BIND_SERVICE_EP,
        "user.big": bytes(range(256)) * 300,  # multi-byte lengths
        "user.a": b"v",
    }
    pairs = [(key.encode(), value) for key, value in xattrs.items()]
    encoded = wire.encode_stat(b"f", 0o644, 1, 2, xattrs=pairs)
    # protobuf's own bytes for each map entry, in key order (protobuf's "deterministic" order
    # is an implementation detail, and Go's sender uses none: receivers read a map).
    plain = fsutil_pb2.Stat(path="f", mode=0o644, size=1, modTime=2).SerializeToString()
    entries = [
        fsutil_pb2.Stat(xattrs={key: xattrs[key]}).SerializeToString() for key in sorted(xattrs)
    ]
    assert encoded == plain + b"".join(entries)
    assert wire.encode_stat(b"f", 0o644, 1, 2, xattrs=pairs[::-1]) == encoded
    assert dict(fsutil_pb2.Stat.FromString(encoded).xattrs) == xattrs
    assert wire.decode_stat(encoded).xattrs == dict(pairs)
    assert wire.encode_stat(b"f", 0o644, 1, 2) == plain
