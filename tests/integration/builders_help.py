"""Helpers for the builder/driver tests: run the real ``ci-build``, read the registry with urllib,
and look for what a run may have left behind (processes, temp dirs, mounts)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.testbed import need

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "examples" / "hello"
INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
_ACCEPT = ", ".join(
    [
        *INDEX_TYPES,
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
_SCRUBBED = ("BUILDKIT_HOST", "PYBUILDX_BUILDER", "BUILDX_BUILDER", "DOCKER_CONFIG")


def require_buildkitd() -> str:
    path = shutil.which("buildkitd")
    need(path, "buildkitd is not on PATH (the test bed installs it to /usr/local/bin)")
    assert path is not None
    return path


def cli_env(tmp: Path, **extra: str) -> dict[str, str]:
    """A private store and TMPDIR, so leftovers of this run are easy to see."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    (tmp / "tmp").mkdir(mode=0o700, exist_ok=True)
    env.update(
        PYBUILDX_CONFIG=str(tmp / "config"),
        TMPDIR=str(tmp / "tmp"),
        GRPC_VERBOSITY="NONE",
        **extra,
    )
    return env


def ci_build(
    *args: str | Path, env: dict[str, str] | None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """The real ``ci-build ARGS`` (``env=None``: this process's environment)."""
    return subprocess.run(
        [sys.executable, "-m", "pybuildx", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


def wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until a daemon started with its output in ``log`` accepts on 127.0.0.1:``port``."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"buildkitd exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"buildkitd did not listen on 127.0.0.1:{port}:\n{log.read_text()[-3000:]}")


def unique_ref(registry: str, name: str = "hello") -> str:
    return f"{registry}/pybuildx-builders/{name}-{uuid.uuid4().hex[:10]}:latest"


def fetch_manifest(ref: str) -> tuple[dict[str, Any], str]:
    """(manifest JSON, its sha256 digest) for ``host/repo:tag`` from a plain-HTTP registry."""
    host, _, rest = ref.partition("/")
    repo, _, tag = rest.rpartition(":")
    request = urllib.request.Request(
        f"http://{host}/v2/{repo}/manifests/{tag}", headers={"Accept": _ACCEPT}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = response.read()
    return json.loads(body), "sha256:" + hashlib.sha256(body).hexdigest()


def index_platforms(manifest: dict[str, Any]) -> set[str]:
    return {
        f"{m['platform']['os']}/{m['platform']['architecture']}"
        for m in manifest.get("manifests", [])
        if m.get("platform", {}).get("architecture") not in (None, "unknown")
    }


def processes_mentioning(text: str) -> list[str]:
    """Command lines of running processes that mention ``text`` (e.g. a private TMPDIR)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{proc.name}: {cmdline.strip()}")
    return found


def mounts_below(path: Path) -> list[str]:
    prefix = str(path) + "/"
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return [f.split()[4] for f in lines if f.split()[4].startswith(prefix)]


def leftovers(tmp: Path) -> list[str]:
    """Everything a finished ci-build run left in its TMPDIR, and processes/mounts using it."""
    scratch = tmp / "tmp"
    return (
        [str(p) for p in scratch.iterdir()]
        + processes_mentioning(str(scratch))
        + mounts_below(scratch)
    )
