"""Helpers for the test_build_* tests: run ``build()`` on a bed daemon and read what it exported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc

from pybuildx.buildkit.build import BuildResult, build
from pybuildx.buildspec import BuildSpec, parse_build_flags
from pybuildx.config import Platform
from pybuildx.transport.channel import TLSFiles, open_channel
from tests.testbed import Daemon

__all__ = [
    "build_on",
    "channel_to",
    "ci_build_bytes",
    "image_config",
    "make_context",
    "oci_index",
]


@contextmanager
def channel_to(daemon: Daemon, *, tcp: bool = False) -> Iterator[grpc.Channel]:
    if tcp:
        tls = TLSFiles(ca=daemon.tls.ca, cert=daemon.tls.cert, key=daemon.tls.key)
        channel = open_channel(daemon.tcp_addr, tls, daemon.servername)
    else:
        channel = open_channel(daemon.unix_addr)
    try:
        yield channel
    finally:
        channel.close()


def ci_build_bytes(
    *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """The real ``ci-build ARGS``, output as bytes (stdout may be a tar); ``env`` is added to this
    process's environment."""
    return subprocess.run(
        [sys.executable, "-m", "pybuildx", *args],
        input=stdin,
        env=None if env is None else {**os.environ, **env},
        capture_output=True,
        timeout=300,
        check=False,
    )


def make_context(root: Path, dockerfile: str, files: dict[str, str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "Dockerfile").write_text(dockerfile)
    for name, content in (files or {}).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


def build_on(
    daemon: Daemon,
    *,
    node_platforms: tuple[Platform, ...] | None = None,
    tcp: bool = False,
    **flags: Any,
) -> tuple[BuildSpec, BuildResult]:
    """Parse flags as ``ci-build build`` does and run one Solve on ``daemon`` (``node_platforms``
    overrides the spec's platforms, as the pipeline does per node)."""
    flags.setdefault("provenance", "false")
    spec = parse_build_flags(**flags)
    with channel_to(daemon, tcp=tcp) as channel:
        result = build(channel, spec, platforms=node_platforms)
    return spec, result


def _blob(tar: tarfile.TarFile, digest: str) -> Any:
    member = tar.extractfile(f"blobs/{digest.replace(':', '/')}")
    assert member is not None
    return json.load(member)


def oci_index(path: Path) -> dict[str, Any]:
    with tarfile.open(path) as tar:
        member = tar.extractfile("index.json")
        assert member is not None
        return dict(json.load(member))


def image_config(path: Path, architecture: str | None = None) -> dict[str, Any]:
    """The image config inside an OCI tarball (for ``architecture`` when it holds an index)."""
    with tarfile.open(path) as tar:
        index = oci_index(path)
        descriptor = index["manifests"][0]
        document = _blob(tar, descriptor["digest"])
        if "manifests" in document:
            candidates = [
                m
                for m in document["manifests"]
                if m.get("platform", {}).get("architecture") not in (None, "unknown")
            ]
            if architecture:
                candidates = [
                    m for m in candidates if m["platform"]["architecture"] == architecture
                ]
            document = _blob(tar, candidates[0]["digest"])
        return dict(_blob(tar, document["config"]["digest"]))
