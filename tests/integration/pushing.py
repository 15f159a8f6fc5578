"""Helpers for the push/auth/cache/secret tests: run the real CLI, read registries independently.

Registry reads use plain urllib (not pybuildx's registry client), so the code under test does
not check itself.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.integration.builders_help import ci_build
from tests.testbed import Daemon

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
# Variables that would let the developer's own credentials leak into a test.
_SCRUBBED = (
    "DOCKER_CONFIG",
    "CI_REGISTRY",
    "CI_REGISTRY_USER",
    "CI_REGISTRY_PASSWORD",
    "PYBUILDX_REGISTRY_AUTH",
    "PYBUILDX_REGISTRY",
    "BUILDKIT_HOST",
    "GITHUB_ACTIONS",
    "GITLAB_CI",
)


def unique_repo(prefix: str = "pybuildx-test") -> str:
    return f"{prefix}/{uuid.uuid4().hex[:12]}"


def scratch_context(directory: Path, content: str = "hello") -> Path:
    """A context whose Dockerfile needs no base image and no RUN (works for any platform)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "hello.txt").write_text(content)
    (directory / "Dockerfile").write_text("FROM scratch\nCOPY hello.txt /hello.txt\n")
    return directory


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    home.mkdir(parents=True, exist_ok=True)
    env["HOME"] = str(home)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2] / "src")
    env.update(extra)
    return env


def run_build(
    daemon: Daemon,
    *args: str,
    env: dict[str, str],
    progress: str = "plain",
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """``ci-build build --builder-addr <daemon> --progress plain ARGS`` as a user runs it."""
    return ci_build(
        "build", "--builder-addr", daemon.unix_addr, "--progress", progress, *args,
        env=env, timeout=timeout,
    )  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class RegistryReader:
    """Reads manifests and blobs back from a bed registry (Basic auth over TLS when given)."""

    host: str
    ca: Path | None = None
    username: str = ""
    password: str = ""

    def _get(self, path: str, accept: str = "") -> tuple[bytes, dict[str, str]]:
        scheme = "https" if self.ca else "http"
        request = urllib.request.Request(f"{scheme}://{self.host}{path}")
        if accept:
            request.add_header("Accept", accept)
        if self.username:
            token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        context = ssl.create_default_context(cafile=str(self.ca)) if self.ca else None
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            return response.read(), dict(response.headers.items())

    def manifest(self, repo: str, reference: str) -> tuple[str, dict[str, Any]]:
        """(digest of the bytes served, parsed manifest)."""
        body, _ = self._get(f"/v2/{repo}/manifests/{reference}", MANIFEST_TYPES)
        return "sha256:" + hashlib.sha256(body).hexdigest(), json.loads(body)

    def blob_json(self, repo: str, digest: str) -> dict[str, Any]:
        body, _ = self._get(f"/v2/{repo}/blobs/{digest}")
        loaded = json.loads(body)
        assert isinstance(loaded, dict)
        return loaded

    def exists(self, repo: str, reference: str) -> bool:
        try:
            self._get(f"/v2/{repo}/manifests/{reference}", MANIFEST_TYPES)
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return False
            raise
        return True

    def platforms(self, repo: str, reference: str) -> set[str]:
        """Platforms of an index (attestation manifests left out) or of a single manifest."""
        _, manifest = self.manifest(repo, reference)
        if "manifests" in manifest:
            found = set()
            for child in manifest["manifests"]:
                annotations = child.get("annotations") or {}
                if annotations.get("vnd.docker.reference.type") == "attestation-manifest":
                    continue
                platform = child["platform"]
                found.add(f"{platform['os']}/{platform['architecture']}")
            return found
        config = self.blob_json(repo, manifest["config"]["digest"])
        return {f"{config['os']}/{config['architecture']}"}
