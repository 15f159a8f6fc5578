"""Client-side index merge of per-node pushes, against the bed registries.

Two builds stand in for two nodes: each pushes one platform by digest (no tag), as the pipeline
asks every node to; ``merge_index`` must then tag one index holding both platforms.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pybuildx.errors import RegistryError
from pybuildx.images import merge_index
from tests.integration.builders_help import ci_build
from tests.integration.pushing import (
    RegistryReader,
    cli_env,
    run_build,
    scratch_context,
    unique_repo,
)
from tests.testbed import AuthRegistry, Daemon, bed_daemon

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Pushed:
    digest: str | None
    image_names: tuple[str, ...]


def _push_by_digest(
    daemon: Daemon, repo_name: str, platform: str, tmp_path: Path, env: dict[str, str]
) -> Pushed:
    work = tmp_path / platform.replace("/", "_")
    metadata = work / "meta.json"
    result = run_build(
        daemon,
        str(scratch_context(work / "ctx", content=platform)),
        "--platform",
        platform,
        "-o",
        f"type=image,name={repo_name},push=true,push-by-digest=true",
        "--metadata-file",
        str(metadata),
        env=env,
    )
    assert result.returncode == 0, result.stderr
    written = json.loads(metadata.read_text())
    return Pushed(written["containerimage.digest"], (repo_name,))


def test_merge_two_nodes_on_the_plain_registry(
    daemon: Daemon, registry: str, tmp_path: Path
) -> None:
    repo = unique_repo()
    name = f"{registry}/{repo}"
    env = cli_env(tmp_path / "home")
    pushed = [
        _push_by_digest(daemon, name, p, tmp_path, env) for p in ("linux/amd64", "linux/arm64")
    ]
    reader = RegistryReader(registry)
    assert not reader.exists(repo, "latest")  # push-by-digest left no tag

    digest = merge_index(pushed, [f"{name}:latest", f"{name}:v2"])

    for tag in ("latest", "v2"):
        served, index = reader.manifest(repo, tag)
        assert served == digest
        assert reader.platforms(repo, tag) == {"linux/amd64", "linux/arm64"}
    # The nodes' attestation manifests come along, still pointing at their images.
    children = index["manifests"]
    images = {c["digest"] for c in children if "platform" in c and c["platform"]["os"] != "unknown"}
    subjects = [(c.get("annotations") or {}).get("vnd.docker.reference.digest") for c in children]
    attested = [ref for ref in subjects if ref]
    assert attested and set(attested) <= images, children


def test_merge_on_the_auth_registry_uses_the_credentials(
    daemon: Daemon,
    auth_registry: AuthRegistry,
    docker_config: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Docker's per-registry CA location, under DOCKER_CONFIG.
    certs = docker_config / "certs.d" / auth_registry.host
    certs.mkdir(parents=True)
    shutil.copy(auth_registry.ca, certs / "ca.crt")
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config))
    for variable in ("CI_REGISTRY", "PYBUILDX_REGISTRY_AUTH"):
        monkeypatch.delenv(variable, raising=False)
    repo = unique_repo()
    name = f"{auth_registry.host}/{repo}"
    env = cli_env(tmp_path / "home", DOCKER_CONFIG=str(docker_config))
    pushed = [
        _push_by_digest(daemon, name, p, tmp_path, env) for p in ("linux/amd64", "linux/arm64")
    ]

    digest = merge_index(pushed, [f"{name}:multi"])

    reader = RegistryReader(
        auth_registry.host, auth_registry.ca, auth_registry.username, auth_registry.password
    )
    assert reader.manifest(repo, "multi")[0] == digest
    assert reader.platforms(repo, "multi") == {"linux/amd64", "linux/arm64"}


def test_merge_of_an_unknown_digest_fails_clearly(registry: str) -> None:
    missing = Pushed("sha256:" + "0" * 64, (f"{registry}/{unique_repo()}",))
    with pytest.raises(RegistryError, match="not found"):
        merge_index([missing], [f"{missing.image_names[0]}:latest"])


def _two_node_builder(bed: dict[str, Any], env: dict[str, str]) -> None:
    """Builder "two": the two bed daemons as remote nodes, one pinned platform each."""
    nodes = [bed_daemon(bed, name) for name in ("current", "v0.18")]
    for index, (node, platform) in enumerate(
        zip(nodes, ("linux/amd64", "linux/arm64"), strict=True)
    ):
        created = ci_build(
            "builder", "create", "--name", "two", "--driver", "remote", "--node", f"n{index}",
            "--platform", platform, *(["--append"] if index else []), node.unix_addr,
            env=env, timeout=120,
        )  # fmt: skip
        assert created.returncode == 0, created.stderr


def _push_on_two_nodes(
    ref: str, tmp_path: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return ci_build(
        "build", "--builder", "two", "--progress", "plain", "--platform", "linux/amd64,linux/arm64",
        "--push", "-t", ref, "--metadata-file", tmp_path / "meta.json",
        scratch_context(tmp_path / "ctx"), env=env, timeout=600,
    )  # fmt: skip


def test_two_node_builder_pushes_one_index(
    bed: dict[str, Any], registry: str, tmp_path: Path
) -> None:
    """The whole path: a builder whose two nodes are the two bed daemons, one platform each."""
    env = cli_env(tmp_path / "home", PYBUILDX_CONFIG=str(tmp_path / "builders"))
    _two_node_builder(bed, env)
    repo = unique_repo()
    built = _push_on_two_nodes(f"{registry}/{repo}:v1", tmp_path, env)
    assert built.returncode == 0, built.stderr
    reader = RegistryReader(registry)
    digest, _ = reader.manifest(repo, "v1")
    assert built.stdout.strip().splitlines()[-1] == digest
    assert json.loads((tmp_path / "meta.json").read_text())["containerimage.digest"] == digest
    assert reader.platforms(repo, "v1") == {"linux/amd64", "linux/arm64"}


def test_two_node_push_with_gitlab_registry_variables(
    bed: dict[str, Any], auth_registry: AuthRegistry, tmp_path: Path
) -> None:
    """The job's CI_REGISTRY_* login reaches both the nodes' pushes and the client's index PUT."""
    # A docker config with the registry's CA and no credentials: only the CI login can push.
    docker_config = tmp_path / "docker-config"
    (docker_config / "certs.d" / auth_registry.host).mkdir(parents=True)
    shutil.copy(auth_registry.ca, docker_config / "certs.d" / auth_registry.host / "ca.crt")
    env = cli_env(
        tmp_path / "home",
        PYBUILDX_CONFIG=str(tmp_path / "builders"),
        DOCKER_CONFIG=str(docker_config),
        GITLAB_CI="true",
        CI_REGISTRY=auth_registry.host,
        CI_REGISTRY_USER=auth_registry.username,
        CI_REGISTRY_PASSWORD=auth_registry.password,
    )
    _two_node_builder(bed, env)
    repo = unique_repo()
    built = _push_on_two_nodes(f"{auth_registry.host}/{repo}:v1", tmp_path, env)
    assert built.returncode == 0, built.stderr
    assert auth_registry.password not in built.stdout + built.stderr
    reader = RegistryReader(
        auth_registry.host, auth_registry.ca, auth_registry.username, auth_registry.password
    )
    digest, _ = reader.manifest(repo, "v1")
    assert built.stdout.strip().splitlines()[-1] == digest
    assert reader.platforms(repo, "v1") == {"linux/amd64", "linux/arm64"}
