"""Helpers for the context-upload and output tests: a Solve driven with our own attachables,
buildctl for comparison, and a snapshot of a directory tree that can be compared exactly."""

# Bytes paths: names in these trees need not be UTF-8.
# ruff: noqa: PTH115, PTH118
from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pybuildx.buildkit.control import control_stub
from pybuildx.buildkit.directsync import DirectSyncSession
from pybuildx.buildkit.filesend import FileSendAttachable, OutputTarget
from pybuildx.buildkit.filesync import FileSyncAttachable, LocalSource
from pybuildx.buildkit.session import Session
from pybuildx.buildkit.solve import solve_request
from pybuildx.buildkit.upload_ledger import UploadLedger
from pybuildx.buildspec import BuildSpec, OutputSpec
from pybuildx.config import Platform
from pybuildx.transport.channel import open_channel
from tests.testbed import Daemon
from tests.xattrs import xattrs_of


@dataclass
class Solved:
    exporter_response: dict[str, str]
    context_bytes: int
    targets: Sequence[OutputTarget | None]


def solve(
    daemon: Daemon,
    context: Path,
    dockerfile_dir: Path,
    outputs: Sequence[OutputSpec],
    targets: Sequence[OutputTarget | None],
    *,
    dockerfile_name: str = "Dockerfile",
    platforms: Sequence[Platform] = (),
    ledger: UploadLedger | None = None,
    shared_key: str = "",
    via: str = "direct",
) -> Solved:
    """One Dockerfile Solve with our FileSync sender and FileSend receiver, nothing else.

    ``via="direct"`` serves the locals from a DirectSyncSession (what ``build()`` does),
    ``via="grpc"`` from the FileSync attachable of the general session (the fallback).
    """
    spec = BuildSpec(
        context=context,
        dockerfile=dockerfile_dir / dockerfile_name,
        platforms=tuple(platforms),
        outputs=tuple(outputs),
    )
    dirs = {"context": LocalSource(path=context), "dockerfile": LocalSource(path=dockerfile_dir)}
    send = FileSendAttachable(targets)
    channel = open_channel(daemon.unix_addr)
    key = ledger.shared_key if ledger is not None else shared_key
    try:
        if via == "direct":
            direct = DirectSyncSession(channel, dirs, ledger=ledger, shared_key=key)
            with direct, Session(channel, [send], shared_key=key) as session:
                request = solve_request(
                    spec,
                    ref=session.id + "r",
                    session_id=session.id,
                    extra_frontend_attrs=direct.frontend_attrs(),
                )
                response = control_stub(channel).Solve(request, timeout=300)
            sent = direct.files.bytes_sent
        else:
            sync = FileSyncAttachable(dirs, ledger=ledger)
            with Session(channel, [sync, send], shared_key=key) as session:
                request = solve_request(spec, ref=session.id + "r", session_id=session.id)
                response = control_stub(channel).Solve(request, timeout=300)
            sent = sync.bytes_sent
    finally:
        channel.close()
    return Solved(dict(response.ExporterResponse), sent.get("context", 0), targets)


def buildctl_local_export(daemon: Daemon, context: Path, dockerfile_dir: Path, dest: Path) -> None:
    buildctl_export(daemon, context, dockerfile_dir, f"type=local,dest={dest}")


def buildctl_export(daemon: Daemon, context: Path, dockerfile_dir: Path, output: str) -> None:
    """A Dockerfile build by buildctl (the Go client) with one ``--output``."""
    result = subprocess.run(
        [
            daemon.buildctl,
            "--addr",
            daemon.unix_addr,
            "build",
            "--frontend",
            "dockerfile.v0",
            "--local",
            f"context={context}",
            "--local",
            f"dockerfile={dockerfile_dir}",
            "--output",
            output,
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr


def snapshot(root: Path) -> dict[bytes, tuple[object, ...]]:
    """Every entry below ``root``: type, mode bits, content digest or link, hard-link group,
    extended attributes, and the mtime of all but directories."""
    base = os.fsencode(root)
    first_path: dict[tuple[int, int], bytes] = {}
    out: dict[bytes, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, base)
            st = os.lstat(full)
            kind = stat.S_IFMT(st.st_mode)
            detail: object = None
            if kind == stat.S_IFREG:
                with open(full, "rb") as handle:
                    detail = hashlib.sha256(handle.read()).hexdigest()
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1:
                    detail = (detail, first_path.setdefault(key, rel))
            elif kind == stat.S_IFLNK:
                detail = os.readlink(full)
            entry: tuple[object, ...] = (kind, stat.S_IMODE(st.st_mode), detail, xattrs_of(full))
            if kind != stat.S_IFDIR:
                entry += (st.st_mtime_ns,)
            out[rel] = entry
    return out
