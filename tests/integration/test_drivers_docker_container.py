"""The docker-container driver on the bed's dockerd: a privileged buildkitd container made with the
docker SDK, reached through docker exec + ``buildctl dial-stdio``; --load into the engine;
``rm`` removes container and volume (``--keep-state`` keeps the volume)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.builders_help import (
    EXAMPLE,
    INDEX_TYPES,
    ci_build,
    cli_env,
    fetch_manifest,
    index_platforms,
    leftovers,
    unique_ref,
)
from tests.testbed import BuildkitImage

pytestmark = pytest.mark.integration


@pytest.fixture
def engine(dockerd: str) -> Iterator[Any]:
    import docker

    client = docker.DockerClient(base_url=dockerd)
    yield client
    client.close()


def _container(builder: str) -> str:
    """The container the driver makes for the builder's only node."""
    return f"pybuildx_buildkit_{builder}0"


def _exists(collection: Any, name: str) -> bool:
    import docker.errors

    try:
        collection.get(name)
    except docker.errors.NotFound:
        return False
    return True


@pytest.fixture
def builder_name(engine: Any) -> Iterator[str]:
    name = f"dc{uuid.uuid4().hex[:8]}"
    yield name
    # Safety net only: the tests assert that rm removed these.
    container = _container(name)
    for collection, item in (
        (engine.containers, container),
        (engine.volumes, f"{container}_state"),
    ):
        if _exists(collection, item):
            collection.get(item).remove(force=True)


def _create(env: dict[str, str], name: str, image: BuildkitImage) -> None:
    created = ci_build(
        "builder", "create", "--name", name, "--driver", "docker-container",
        "--driver-opt", f"image={image.ref},network=host", "--bootstrap", env=env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr


def test_builds_the_example_and_rm_removes_container_and_volume(
    tmp_path: Path,
    dockerd: str,
    engine: Any,
    buildkit_image: BuildkitImage,
    registry: str,
    busybox: str,
    builder_name: str,
) -> None:
    env = cli_env(tmp_path, DOCKER_HOST=dockerd)
    _create(env, builder_name, buildkit_image)
    container = _container(builder_name)
    assert engine.containers.get(container).status == "running"
    assert engine.containers.get(container).labels["pybuildx.io/builder"] == builder_name
    ref = unique_ref(registry)
    built = ci_build(
        "build", "--builder", builder_name, "--platform", "linux/amd64,linux/arm64", "--push",
        "-t", ref, EXAMPLE, env=env,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    manifest, digest = fetch_manifest(ref)
    assert manifest["mediaType"] in INDEX_TYPES
    assert index_platforms(manifest) == {"linux/amd64", "linux/arm64"}
    assert digest in built.stdout + built.stderr
    # The same container answers through a remote builder's docker-container:// endpoint.
    remote = ci_build(
        "builder", "create", "--name", "viaexec", "--driver", "remote", "--bootstrap",
        f"docker-container://{container}", env=env,
    )  # fmt: skip
    assert remote.returncode == 0, remote.stderr
    assert ci_build("builder", "rm", "viaexec", env=env).returncode == 0
    assert engine.containers.get(container).status == "running"  # remote never removes
    removed = ci_build("builder", "rm", builder_name, env=env)
    assert removed.returncode == 0, removed.stderr
    assert not _exists(engine.containers, container)
    assert not _exists(engine.volumes, f"{container}_state")
    assert leftovers(tmp_path) == []


def test_load_puts_the_image_into_the_engine_and_keep_state_keeps_the_volume(
    tmp_path: Path,
    dockerd: str,
    engine: Any,
    buildkit_image: BuildkitImage,
    busybox: str,
    builder_name: str,
) -> None:
    env = cli_env(tmp_path, DOCKER_HOST=dockerd)
    _create(env, builder_name, buildkit_image)
    tag = f"pybuildx-load-test:{uuid.uuid4().hex[:8]}"
    try:
        built = ci_build(
            "build", "--builder", builder_name, "--platform", "linux/amd64", "--load",
            "-t", tag, EXAMPLE, env=env,
        )  # fmt: skip
        assert built.returncode == 0, built.stderr
        assert _exists(engine.images, tag)
    finally:
        if _exists(engine.images, tag):
            engine.images.remove(tag, force=True)
    removed = ci_build("builder", "rm", "--keep-state", builder_name, env=env)
    assert removed.returncode == 0, removed.stderr
    container = _container(builder_name)
    assert not _exists(engine.containers, container)
    assert _exists(engine.volumes, f"{container}_state")


def test_missing_image_fails_with_a_hint_and_keeps_no_builder(
    tmp_path: Path, dockerd: str, engine: Any, builder_name: str
) -> None:
    env = cli_env(tmp_path, DOCKER_HOST=dockerd)
    created = ci_build(
        "builder", "create", "--name", builder_name, "--driver", "docker-container",
        "--driver-opt", "image=127.0.0.1:5000/pybuildx/missing:nope", "--bootstrap", env=env,
    )  # fmt: skip
    assert created.returncode == 1
    assert "cannot pull the buildkit image" in created.stderr and "hint:" in created.stderr
    assert ci_build("builder", "ls", "--format", "json", env=env).stdout.strip() == ""


def test_default_load_loads_a_build_without_outputs(
    tmp_path: Path,
    dockerd: str,
    engine: Any,
    buildkit_image: BuildkitImage,
    busybox: str,
    builder_name: str,
) -> None:
    env = cli_env(tmp_path, DOCKER_HOST=dockerd)
    created = ci_build(
        "builder", "create", "--name", builder_name, "--driver", "docker-container",
        "--driver-opt", f"image={buildkit_image.ref},network=host,default-load=true", env=env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    tag = f"pybuildx-default-load:{uuid.uuid4().hex[:8]}"
    try:
        built = ci_build("build", "--builder", builder_name, "-t", tag, EXAMPLE, env=env)
        assert built.returncode == 0, built.stderr
        assert _exists(engine.images, tag)
    finally:
        if _exists(engine.images, tag):
            engine.images.remove(tag, force=True)
        assert ci_build("builder", "rm", builder_name, env=env).returncode == 0
    assert leftovers(tmp_path) == []


def test_stop_stops_the_container_and_inspect_bootstrap_starts_it_again(
    tmp_path: Path, dockerd: str, engine: Any, buildkit_image: BuildkitImage, builder_name: str
) -> None:
    env = cli_env(tmp_path, DOCKER_HOST=dockerd)
    _create(env, builder_name, buildkit_image)
    container = _container(builder_name)
    stopped = ci_build("builder", "stop", builder_name, env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert f"stopped container {container}" in stopped.stderr
    assert engine.containers.get(container).status == "exited"
    assert _exists(engine.volumes, f"{container}_state")
    restarted = ci_build("builder", "inspect", "--bootstrap", builder_name, env=env)
    assert restarted.returncode == 0, restarted.stderr
    assert "BuildKit version:" in restarted.stdout
    assert engine.containers.get(container).status == "running"
    removed = ci_build("builder", "rm", builder_name, env=env)
    assert removed.returncode == 0, removed.stderr
    assert not _exists(engine.containers, container)


def test_rm_keep_daemon_keeps_the_running_container(
    tmp_path: Path, dockerd: str, engine: Any, buildkit_image: BuildkitImage, builder_name: str
) -> None:
    env = cli_env(tmp_path, DOCKER_HOST=dockerd)
    _create(env, builder_name, buildkit_image)
    container = _container(builder_name)
    removed = ci_build("builder", "rm", "--keep-daemon", builder_name, env=env)
    assert removed.returncode == 0, removed.stderr
    assert f"{builder_name} removed" in removed.stderr
    assert f"docker rm -f {container}" in removed.stderr
    assert engine.containers.get(container).status == "running"
    assert ci_build("builder", "ls", "--format", "json", env=env).stdout.strip() == ""
    assert leftovers(tmp_path) == []
