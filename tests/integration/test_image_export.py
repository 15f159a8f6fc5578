"""Image exporter options (push to the plain bed registry), read back from the registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.pushing import (
    RegistryReader,
    cli_env,
    run_build,
    scratch_context,
    unique_repo,
)
from tests.testbed import Daemon

pytestmark = pytest.mark.integration


def _push(
    daemon: Daemon, registry: str, tmp_path: Path, *args: str
) -> tuple[str, dict[str, Any], RegistryReader]:
    repo = unique_repo()
    metadata = tmp_path / "meta.json"
    result = run_build(
        daemon,
        str(scratch_context(tmp_path / "ctx")),
        "--metadata-file",
        str(metadata),
        *[a.replace("{name}", f"{registry}/{repo}") for a in args],
        env=cli_env(tmp_path / "home"),
    )
    assert result.returncode == 0, result.stderr
    return repo, json.loads(metadata.read_text()), RegistryReader(registry)


def _image_manifest(reader: RegistryReader, repo: str, reference: str) -> dict[str, Any]:
    _, manifest = reader.manifest(repo, reference)
    if "manifests" in manifest:
        child = next(c for c in manifest["manifests"] if c["platform"]["os"] != "unknown")
        _, manifest = reader.manifest(repo, child["digest"])
    return manifest


def test_multi_platform_push_is_one_index(daemon: Daemon, registry: str, tmp_path: Path) -> None:
    repo, meta, reader = _push(
        daemon,
        registry,
        tmp_path,
        "-t",
        "{name}:v1",
        "--push",
        "--platform",
        "linux/amd64,linux/arm64",
    )
    assert reader.manifest(repo, "v1")[0] == meta["containerimage.digest"]
    assert reader.platforms(repo, "v1") == {"linux/amd64", "linux/arm64"}


def test_repeated_tags_all_point_at_the_image(
    daemon: Daemon, registry: str, tmp_path: Path
) -> None:
    repo, meta, reader = _push(
        daemon, registry, tmp_path, "-t", "{name}:a", "-t", "{name}:b", "--push"
    )
    assert reader.manifest(repo, "a")[0] == reader.manifest(repo, "b")[0]
    assert meta["image.name"] == f"{registry}/{repo}:a,{registry}/{repo}:b"


def test_push_by_digest_leaves_no_tag(daemon: Daemon, registry: str, tmp_path: Path) -> None:
    repo, meta, reader = _push(
        daemon,
        registry,
        tmp_path,
        "-o",
        "type=image,name={name},push=true,push-by-digest=true,name-canonical=true",
    )
    digest = meta["containerimage.digest"]
    assert not reader.exists(repo, "latest")
    assert reader.exists(repo, digest)
    # name-canonical names the image in a daemon image store; the OCI worker has none, so the
    # test only checks that the attribute is accepted.
    assert meta["image.name"] == f"{registry}/{repo}"


def test_docker_media_types_without_attestations(
    daemon: Daemon, registry: str, tmp_path: Path
) -> None:
    repo, _, reader = _push(
        daemon,
        registry,
        tmp_path,
        "-o",
        "type=registry,name={name}:v1,oci-mediatypes=false",
        "--provenance",
        "false",
    )
    _, manifest = reader.manifest(repo, "v1")
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"


def test_zstd_compression(daemon: Daemon, registry: str, tmp_path: Path) -> None:
    repo, _, reader = _push(
        daemon,
        registry,
        tmp_path,
        "-o",
        "type=registry,name={name}:v1,compression=zstd,force-compression=true,oci-mediatypes=true",
    )
    layers = _image_manifest(reader, repo, "v1")["layers"]
    assert layers and all(layer["mediaType"].endswith("+zstd") for layer in layers)


def test_annotations_reach_manifest_and_index(
    daemon: Daemon, registry: str, tmp_path: Path
) -> None:
    repo, _, reader = _push(
        daemon,
        registry,
        tmp_path,
        "-t",
        "{name}:v1",
        "--push",
        "--annotation",
        "org.example.team=builders",
        "--annotation",
        "index:org.opencontainers.image.description=pybuildx test",
    )
    _, index = reader.manifest(repo, "v1")
    assert index["annotations"]["org.opencontainers.image.description"] == "pybuildx test"
    assert _image_manifest(reader, repo, "v1")["annotations"]["org.example.team"] == "builders"


def test_bad_compression_is_a_usage_error(daemon: Daemon, registry: str, tmp_path: Path) -> None:
    result = run_build(
        daemon,
        str(scratch_context(tmp_path / "ctx")),
        "-o",
        f"type=registry,name={registry}/{unique_repo()},compression=zstandard",
        env=cli_env(tmp_path / "home"),
    )
    assert result.returncode == 2
    assert "did you mean 'zstd'" in result.stderr
