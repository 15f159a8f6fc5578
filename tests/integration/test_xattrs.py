"""Extended attributes through context uploads and exports, against the bed's daemons.

Facts these tests stand on (both daemons, and buildctl as the Go client): the daemon keeps the
``user.*`` attributes of uploaded files, but not ``security.capability``: its fsutil receiver sets
attributes before it chowns and writes the file, and either drops file capabilities. Image files
that carry capabilities (here from an ``ADD``ed tar) keep them in the tar export, and our
``type=local`` receiver writes them too (it applies attributes after the content; buildctl's
receiver loses them).
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from pybuildx.buildkit.filesend import LocalDirTarget, StreamTarget
from pybuildx.buildkit.upload_ledger import UploadLedger
from pybuildx.buildspec import OutputSpec
from tests.integration.localbuild import Solved, buildctl_export, solve
from tests.testbed import Daemon, need
from tests.xattrs import NET_BIND_SERVICE_EP, need_user_xattrs, xattrs_of

pytestmark = pytest.mark.integration

USER_KEY = "user.pybuildx.test"
CAP_KEY = "security.capability"
DOCKERFILE = "FROM scratch\nCOPY plain capable /\nADD caps.tar /fromtar/\n"


def pax_xattrs(member: tarfile.TarInfo) -> dict[str, bytes]:
    prefix = "SCHILY.xattr."
    return {
        key[len(prefix) :]: value.encode("utf-8", "surrogateescape")
        for key, value in member.pax_headers.items()
        if key.startswith(prefix)
    }


def capability_tar() -> bytes:
    """A tar with one executable carrying a file capability and a user attribute."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        member = tarfile.TarInfo("tarcap")
        data = b"#!/bin/sh\n"
        member.size, member.mode = len(data), 0o755
        # The capability bytes are all ASCII, so they survive tarfile's UTF-8 PAX values.
        member.pax_headers = {
            f"SCHILY.xattr.{CAP_KEY}": NET_BIND_SERVICE_EP.decode("ascii"),
            "SCHILY.xattr.user.fromtar": "v",
        }
        archive.addfile(member, io.BytesIO(data))
    return buffer.getvalue()


def project(tmp_path: Path) -> tuple[Path, Path]:
    need(os.geteuid() == 0, "setting security.capability needs CAP_SETFCAP")
    need_user_xattrs(tmp_path)
    context = tmp_path / "ctx"
    context.mkdir()
    plain = context / "plain"
    plain.write_bytes(os.urandom(8).hex().encode())  # unique: no cache hit from another run
    os.setxattr(plain, USER_KEY, b"hello")
    (context / "capable").write_bytes(b"\x7fELF-ish")
    os.setxattr(context / "capable", CAP_KEY, NET_BIND_SERVICE_EP)
    (context / "caps.tar").write_bytes(capability_tar())
    holder = tmp_path / "df"
    holder.mkdir()
    (holder / "Dockerfile").write_text(DOCKERFILE)
    return context, holder


def local_export(daemon: Daemon, context: Path, holder: Path, dest: Path, **kw: object) -> Solved:
    outputs = [OutputSpec(type="local", dest=str(dest))]
    return solve(daemon, context, holder, outputs, [LocalDirTarget(dest)], **kw)  # type: ignore[arg-type]


def test_tar_export_carries_xattrs_as_buildctl_builds_do(daemon: Daemon, tmp_path: Path) -> None:
    context, holder = project(tmp_path)
    ours, theirs = tmp_path / "ours.tar", tmp_path / "theirs.tar"
    outputs = [OutputSpec(type="tar", dest=str(ours))]
    # A key of our own: buildctl's upload must not be an incremental one on top of ours.
    key = f"xattrs-{os.getpid()}-{tmp_path.name}"
    solve(daemon, context, holder, outputs, [StreamTarget(ours)], shared_key=key)
    buildctl_export(daemon, context, holder, f"type=tar,dest={theirs}")

    def members(path: Path) -> dict[str, dict[str, bytes]]:
        with tarfile.open(path) as archive:
            return {member.name: pax_xattrs(member) for member in archive}

    got = members(ours)
    assert got["plain"] == {USER_KEY: b"hello"}
    assert got["fromtar/tarcap"] == {CAP_KEY: NET_BIND_SERVICE_EP, "user.fromtar": b"v"}
    assert got == members(theirs)  # the uploaded capability fares no better with Go's client


def test_local_export_writes_xattrs_and_file_capabilities(daemon: Daemon, tmp_path: Path) -> None:
    context, holder = project(tmp_path)
    out = tmp_path / "out"
    local_export(daemon, context, holder, out)
    assert xattrs_of(out / "plain") == {USER_KEY.encode(): b"hello"}
    assert xattrs_of(out / "fromtar/tarcap") == {
        CAP_KEY.encode(): NET_BIND_SERVICE_EP,
        b"user.fromtar": b"v",
    }
    assert (out / "fromtar/tarcap").read_bytes() == b"#!/bin/sh\n"


def test_a_changed_xattr_alone_reaches_the_daemon(daemon: Daemon, tmp_path: Path) -> None:
    """setxattr changes neither size nor mtime, and the daemon's diff ignores xattrs: only the
    ledger (which sees the new ctime) makes the daemon fetch the file again."""
    context, holder = project(tmp_path)
    plain = context / "plain"
    ledger = UploadLedger.open(tmp_path / "ledger", f"{daemon.name}:{context}")
    assert ledger is not None
    try:
        local_export(daemon, context, holder, tmp_path / "out1", ledger=ledger)
        assert os.getxattr(tmp_path / "out1/plain", USER_KEY) == b"hello"

        before = plain.stat()
        os.setxattr(plain, USER_KEY, b"world")
        assert (plain.stat().st_size, plain.stat().st_mtime_ns) == (
            before.st_size,
            before.st_mtime_ns,
        )
        result = local_export(daemon, context, holder, tmp_path / "out2", ledger=ledger)
        assert os.getxattr(tmp_path / "out2/plain", USER_KEY) == b"world"
        assert result.context_bytes == before.st_size  # that file only, not caps.tar
    finally:
        ledger.close()


def test_a_changed_xattr_alone_is_stale_without_the_ledger(daemon: Daemon, tmp_path: Path) -> None:
    """The hazard is real on this daemon (so the test above can fail)."""
    context, holder = project(tmp_path)
    key = f"plain-{os.getpid()}-{tmp_path.name}"
    local_export(daemon, context, holder, tmp_path / "out1", shared_key=key)
    os.setxattr(context / "plain", USER_KEY, b"world")
    local_export(daemon, context, holder, tmp_path / "out2", shared_key=key)
    assert os.getxattr(tmp_path / "out2/plain", USER_KEY) == b"hello"
