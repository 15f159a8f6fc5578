"""The docker driver: the Docker Engine's own BuildKit through its /grpc upgrade endpoint; images
land in the engine without a separate load, and nothing is left behind."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.integration.builders_help import EXAMPLE, ci_build, cli_env, leftovers

pytestmark = pytest.mark.integration


def test_builds_the_example_into_the_engine(tmp_path: Path, dockerd: str, busybox: str) -> None:
    import docker
    import docker.errors

    env = cli_env(tmp_path, DOCKER_HOST=dockerd)
    created = ci_build(
        "builder", "create", "--name", "eng", "--driver", "docker", "--bootstrap", env=env
    )
    assert created.returncode == 0, created.stderr
    tag = f"pybuildx-docker-driver:{uuid.uuid4().hex[:8]}"
    client = docker.DockerClient(base_url=dockerd)
    try:
        # The bed's dockerd has no bridge network: RUN steps use the host's.
        built = ci_build(
            "build", "--builder", "eng", "--network", "host", "--load", "-t", tag, EXAMPLE, env=env
        )
        assert built.returncode == 0, built.stderr
        image = client.images.get(tag)
        assert image.attrs["Architecture"] == "amd64"
    finally:
        try:
            client.images.remove(tag, force=True)
        except docker.errors.NotFound:
            pass
        client.close()
    assert ci_build("builder", "rm", "eng", env=env).returncode == 0
    assert leftovers(tmp_path) == []


def test_multi_platform_is_refused_before_building(tmp_path: Path, dockerd: str) -> None:
    env = cli_env(tmp_path, DOCKER_HOST=dockerd)
    assert (
        ci_build("builder", "create", "--name", "eng", "--driver", "docker", env=env).returncode
        == 0
    )
    built = ci_build(
        "build", "--builder", "eng", "--platform", "linux/amd64,linux/arm64", EXAMPLE, env=env
    )
    assert built.returncode == 2
    assert "cannot build several platforms" in built.stderr
