"""Context upload (FileSync sender) against the bed's buildkitd daemons.

Each build copies the context into a ``FROM scratch`` image and exports it ``type=local``, so
what the daemon received is visible file by file.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import weakref
from pathlib import Path

import pytest

from pybuildx.buildkit.directsync import DirectSyncSession
from pybuildx.buildkit.filesend import LocalDirTarget
from pybuildx.buildkit.pending_files import PendingFiles
from pybuildx.buildkit.upload_ledger import UploadLedger
from pybuildx.buildspec import OutputSpec
from tests.integration.localbuild import snapshot, solve
from tests.testbed import Daemon

pytestmark = pytest.mark.integration

COPY_ALL = "FROM scratch\nCOPY . /\n"


def dockerfile(tmp_path: Path, text: str = COPY_ALL, name: str = "Dockerfile") -> Path:
    holder = tmp_path / "dockerfile"
    holder.mkdir(exist_ok=True)
    (holder / name).write_text(text)
    return holder


def export(daemon: Daemon, context: Path, dockerfile_dir: Path, dest: Path, **kw: object) -> int:
    """Build and export to ``dest``; returns the context bytes the daemon asked for."""
    result = solve(
        daemon,
        context,
        dockerfile_dir,
        [OutputSpec(type="local", dest=str(dest))],
        [LocalDirTarget(dest)],
        **kw,  # type: ignore[arg-type]
    )
    return result.context_bytes


def rich_tree(root: Path) -> None:
    # Unique content: the daemon caches COPY by content (not mtime), so an identical tree from
    # an earlier run would come back with that run's mtimes.
    (root / "nonce").write_bytes(os.urandom(16))
    (root / "empty/deeper").mkdir(parents=True)
    (root / "bin").mkdir()
    tool = root / "bin/tool"
    tool.write_bytes(b"#!/bin/sh\n" + bytes(range(256)) * 300)
    tool.chmod(0o4755)
    (root / "shared").mkdir()
    (root / "shared").chmod(0o3777)
    os.link(tool, root / "bin/tool-hardlink")
    (root / "rel-link").symlink_to("bin/tool")
    (root / "dangling").symlink_to("../../nowhere")
    (root / "Ünïcödé ✓.txt").write_text("non-ascii")
    (root / os.fsdecode(b"latin1-\xe9")).write_bytes(b"not utf-8 name")
    (root / "a-b").write_text("x")
    (root / "a.c").write_text("x")
    (root / "a").mkdir()
    (root / "a/inner").write_text("x")
    (root / "readonly").write_text("ro")
    (root / "readonly").chmod(0o444)
    with contextlib.suppress(OSError):  # compared too where the file system has user xattrs
        os.setxattr(tool, "user.origin", bytes(range(256)))
        os.setxattr(root / "a", "user.dir", b"")
    for path in [tool, root / "a/inner", root / "readonly"]:
        os.utime(path, ns=(1_500_000_000_123_456_789, 1_500_000_000_123_456_789))


@pytest.mark.parametrize("via", ["direct", "grpc"])
def test_tree_arrives_intact(daemon: Daemon, tmp_path: Path, via: str) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    rich_tree(context)
    out = tmp_path / "out"
    export(daemon, context, dockerfile(tmp_path), out, via=via)
    assert snapshot(out) == snapshot(context)


def test_dockerignore_rules_apply(daemon: Daemon, tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    files = [
        "keep.txt",
        "drop.log",
        "logs/a.log",
        "logs/important.log",
        "node_modules/x/index.js",
        "src/main.go",
        "src/gen/out.go",
        "deep/a/b/secret.pem",
        "[literal].txt",
        "build/tmp/x",
        "build/keep/y",
    ]
    for name in files:
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        (context / name).write_text(name)
    (context / ".dockerignore").write_text(
        "\n".join(
            [
                "# a comment",
                "*.log",
                "!logs/important.log",
                "/node_modules",
                "src/**/*.go",
                "!src/main.go",
                "**/*.pem",
                "\\[literal].txt",
                "build",
                "!build/keep",
                ".dockerignore",
            ]
        )
    )
    out = tmp_path / "out"
    export(daemon, context, dockerfile(tmp_path), out)
    got = sorted(str(p.relative_to(out)) for p in out.rglob("*") if not p.is_dir())
    # "*.log" stops at "/" (logs/a.log stays); directories only lose what matched.
    assert got == [
        "build/keep/y",
        "keep.txt",
        "logs/a.log",
        "logs/important.log",
        "src/main.go",
    ]
    assert (out / "deep/a/b").is_dir()
    assert not (out / "node_modules").exists()
    assert not (out / "src/gen/out.go").exists() and (out / "src/gen").is_dir()


def test_dockerfile_specific_ignore_file_wins(daemon: Daemon, tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    for name in ("a.txt", "b.txt", "c.txt"):
        (context / name).write_text(name)
    (context / ".dockerignore").write_text("a.txt\n")
    holder = dockerfile(tmp_path, name="app.Dockerfile")
    (holder / "app.Dockerfile.dockerignore").write_text("b.txt\n")
    out = tmp_path / "out"
    export(daemon, context, holder, out, dockerfile_name="app.Dockerfile")
    assert sorted(p.name for p in out.iterdir()) == [".dockerignore", "a.txt", "c.txt"]


@pytest.mark.parametrize("via", ["direct", "grpc"])
def test_reused_shared_key_never_serves_stale_content(
    daemon: Daemon, tmp_path: Path, via: str
) -> None:
    """A file rewritten with the same size and mtime must reach the daemon anyway."""
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "big").write_bytes(os.urandom(1 << 20))
    target = context / "f"
    target.write_text("AAAA")
    before = target.stat()
    holder = dockerfile(tmp_path)
    ledger = UploadLedger.open(tmp_path / "ledger", f"{daemon.name}:{context}")
    assert ledger is not None
    try:
        export(daemon, context, holder, tmp_path / "out1", ledger=ledger, via=via)
        assert (tmp_path / "out1/f").read_text() == "AAAA"

        # Nothing changed: incremental, the daemon asks for no context file at all.
        assert export(daemon, context, holder, tmp_path / "out2", ledger=ledger, via=via) == 0

        target.write_text("BBBB")
        os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert target.stat().st_mtime_ns == before.st_mtime_ns
        sent = export(daemon, context, holder, tmp_path / "out3", ledger=ledger, via=via)
        assert (tmp_path / "out3/f").read_text() == "BBBB"
        assert sent == 4  # only the changed file, not the 1 MiB one
    finally:
        ledger.close()


def test_plain_key_reuse_is_stale_without_the_ledger(daemon: Daemon, tmp_path: Path) -> None:
    """The hazard the ledger removes is real on this daemon (so the test above can fail)."""
    context = tmp_path / "ctx"
    context.mkdir()
    target = context / "f"
    target.write_text("AAAA")
    before = target.stat()
    holder = dockerfile(tmp_path)
    key = f"plain-{os.getpid()}-{tmp_path.name}"
    export(daemon, context, holder, tmp_path / "out1", shared_key=key)
    target.write_text("BBBB")
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    export(daemon, context, holder, tmp_path / "out2", shared_key=key)
    assert (tmp_path / "out2/f").read_text() == "AAAA"


@pytest.mark.parametrize("via", ["direct", "grpc"])
def test_files_asked_for_late_are_served_from_disk(
    daemon: Daemon, tmp_path: Path, via: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a tiny in-memory window, most requested paths come from the spill files: cold and
    incremental uploads still deliver every file, and only the changed ones the second time."""
    monkeypatch.setattr(
        "pybuildx.buildkit.filesync.PendingFiles", functools.partial(PendingFiles, memory_slots=4)
    )
    context = tmp_path / "ctx"
    for index in range(120):
        path = context / f"d{index % 6}" / f"f{index:03d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{index} {os.urandom(4).hex()}\n")
    holder = dockerfile(tmp_path)
    ledger = UploadLedger.open(tmp_path / "ledger", f"{daemon.name}:{context}")
    assert ledger is not None
    try:
        export(daemon, context, holder, tmp_path / "out1", ledger=ledger, via=via)
        assert snapshot(tmp_path / "out1") == snapshot(context)

        changed = [context / "d0" / "f000.txt", context / "d5" / "f119.txt"]
        for path in changed:
            path.write_text("changed!\n")
        sent = export(daemon, context, holder, tmp_path / "out2", ledger=ledger, via=via)
        assert snapshot(tmp_path / "out2") == snapshot(context)
        assert sent == sum(p.stat().st_size for p in changed)
    finally:
        ledger.close()


def test_the_file_session_ends_cleanly_and_releases_its_call(
    daemon: Daemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon's normal GOAWAY is not an error, and nothing keeps the session's gRPC call
    alive after close: a call left to the collector at interpreter exit can deadlock there."""
    closed: list[tuple[DirectSyncSession, weakref.ref[object]]] = []
    original = DirectSyncSession.close

    def close(self: DirectSyncSession) -> None:
        call = weakref.ref(self._call)
        original(self)
        closed.append((self, call))

    monkeypatch.setattr(DirectSyncSession, "close", close)
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "f").write_bytes(os.urandom(1 << 20))
    gc.disable()  # a reference cycle must not be hidden by a collection
    try:
        export(daemon, context, dockerfile(tmp_path), tmp_path / "out", via="direct")
        ((session, call),) = closed
        assert session.error is None
        del session
        closed.clear()
        assert call() is None
    finally:
        gc.enable()
