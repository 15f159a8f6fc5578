"""Outputs the daemon sends back over FileSend: tar/oci/docker streams, stdout, local dirs."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from pybuildx.buildkit.filesend import LocalDirTarget, OutputTarget, StreamTarget
from pybuildx.buildspec import OutputSpec
from pybuildx.config import Platform
from tests.integration.localbuild import buildctl_local_export, snapshot, solve
from tests.testbed import Daemon

pytestmark = pytest.mark.integration


def project(tmp_path: Path, dockerfile: str = "FROM scratch\nCOPY . /\n") -> tuple[Path, Path]:
    context = tmp_path / "ctx"
    (context / "etc").mkdir(parents=True)
    (context / "etc/hello").write_text("hello\n")
    (context / "nonce").write_bytes(os.urandom(8).hex().encode())
    (context / "run.sh").write_text("#!/bin/sh\n")
    (context / "run.sh").chmod(0o755)
    (context / "link").symlink_to("etc/hello")
    holder = tmp_path / "df"
    holder.mkdir()
    (holder / "Dockerfile").write_text(dockerfile)
    return context, holder


def run(
    daemon: Daemon,
    tmp_path: Path,
    outputs: list[OutputSpec],
    targets: list[OutputTarget | None],
    **kw: object,
) -> dict[str, str]:
    context, holder = project(tmp_path)
    result = solve(daemon, context, holder, outputs, targets, **kw)  # type: ignore[arg-type]
    return result.exporter_response


def test_tar_output_is_written_whole_and_atomically(daemon: Daemon, tmp_path: Path) -> None:
    dest = tmp_path / "out" / "rootfs.tar"
    target = StreamTarget(dest)
    run(daemon, tmp_path, [OutputSpec(type="tar", dest=str(dest))], [target])
    with tarfile.open(dest) as archive:
        names = set(archive.getnames())
        assert {"etc/hello", "run.sh", "link", "nonce"} <= names
        hello = archive.extractfile("etc/hello")
        assert hello is not None and hello.read() == b"hello\n"
        assert archive.getmember("link").linkname == "etc/hello"
        assert archive.getmember("run.sh").mode & 0o777 == 0o755
    assert target.completed and target.bytes_written == dest.stat().st_size
    assert [p.name for p in dest.parent.iterdir()] == ["rootfs.tar"]  # no temp file left


@pytest.mark.parametrize("kind", ["oci", "docker"])
def test_image_tarballs_and_their_metadata(daemon: Daemon, tmp_path: Path, kind: str) -> None:
    dest = tmp_path / f"image-{kind}.tar"
    target = StreamTarget(dest)
    attrs = {"name": "example.test/out:latest"}
    response = run(daemon, tmp_path, [OutputSpec(type=kind, attrs=attrs, dest=str(dest))], [target])
    with tarfile.open(dest) as archive:
        names = set(archive.getnames())
        if kind == "oci":
            assert {"index.json", "oci-layout"} <= names
        else:
            manifest = archive.extractfile("manifest.json")
            assert manifest is not None
            assert json.load(manifest)[0]["RepoTags"] == ["example.test/out:latest"]
    digest = target.metadata.get("containerimage.digest")
    assert digest and digest.startswith("sha256:")
    assert digest == response.get("containerimage.digest")


def test_tar_to_stdout(daemon: Daemon, tmp_path: Path) -> None:
    # A child process with stdout on a pipe, as in `ci-build build -o type=tar,dest=- | tar t`.
    context, holder = project(tmp_path)
    script = f"""
import sys
from pathlib import Path
from pybuildx.buildkit.filesend import StreamTarget
from pybuildx.buildspec import OutputSpec
from tests.integration.localbuild import solve
from tests.testbed import Daemon, BedTLS
daemon = Daemon("{daemon.name}", "", "{daemon.unix_addr}", "", BedTLS(Path(), Path(), Path()),
                "", "", Path())
solve(daemon, Path("{context}"), Path("{holder}"), [OutputSpec(type="tar", dest="-")],
      [StreamTarget(None)])
"""
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    (tmp_path / "stdout.tar").write_bytes(proc.stdout)
    with tarfile.open(tmp_path / "stdout.tar") as archive:
        assert "etc/hello" in archive.getnames()


def test_failed_build_writes_no_output_file(daemon: Daemon, tmp_path: Path) -> None:
    context, holder = project(tmp_path, dockerfile="FROM scratch\nCOPY missing-file /\n")
    dest = tmp_path / "out" / "never.tar"
    dest.parent.mkdir()
    with pytest.raises(Exception, match="missing-file"):
        solve(
            daemon, context, holder, [OutputSpec(type="tar", dest=str(dest))], [StreamTarget(dest)]
        )
    assert list(dest.parent.iterdir()) == []


def test_local_output_equals_buildctl(daemon: Daemon, tmp_path: Path) -> None:
    context, holder = project(tmp_path)
    with contextlib.suppress(OSError):  # compared too where the file system has user xattrs
        os.setxattr(context / "etc/hello", "user.origin", b"context")
        os.setxattr(context / "etc", "user.dir", b"")
    os.link(context / "etc/hello", context / "hello-hardlink")
    os.mkfifo(context / "pipe")
    (context / "empty").mkdir()
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    solve(
        daemon, context, holder, [OutputSpec(type="local", dest=str(ours))], [LocalDirTarget(ours)]
    )
    buildctl_local_export(daemon, context, holder, theirs)
    assert snapshot(ours) == snapshot(theirs)
    assert (ours / "hello-hardlink").stat().st_ino == (ours / "etc/hello").stat().st_ino


def test_multi_platform_local_export_is_merged(daemon: Daemon, tmp_path: Path) -> None:
    dest = tmp_path / "out"
    (dest / "keep-me").parent.mkdir(parents=True)
    (dest / "keep-me").write_text("existing")
    target = LocalDirTarget(dest)
    run(
        daemon,
        tmp_path,
        [OutputSpec(type="local", dest=str(dest))],
        [target],
        platforms=[Platform("linux", "amd64"), Platform("linux", "arm64")],
    )
    assert sorted(p.name for p in dest.iterdir()) == ["keep-me", "linux_amd64", "linux_arm64"]
    for platform in ("linux_amd64", "linux_arm64"):
        assert (dest / platform / "etc/hello").read_text() == "hello\n"
        assert (dest / platform / "link").readlink() == Path("etc/hello")
    assert target.streams == 2 and target.completed
