"""How the main job rewrites outputs per node: push by digest on multi-node builds, --load into
a private tarball, and the combinations it refuses before starting anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from pybuildx.builders.model import BuilderSpec
from pybuildx.builders.resolve import NodePlan
from pybuildx.buildspec import OutputSpec, parse_build_flags
from pybuildx.config import Platform
from pybuildx.drivers.spec import NodeSpec
from pybuildx.errors import ConfigError
from pybuildx.pipeline import _check_outputs, _node_outputs, _push_names, default_builder

AMD64 = Platform.parse("linux/amd64")
ARM64 = Platform.parse("linux/arm64")


@pytest.fixture
def context(tmp_path: Path) -> Path:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    return tmp_path


def _builder(driver: str = "local", nodes: int = 2) -> BuilderSpec:
    return BuilderSpec(
        name="b",
        driver=driver,
        nodes=tuple(NodeSpec(name=f"b{i}", driver=driver) for i in range(nodes)),
    )


def test_default_builder_is_one_local_node() -> None:
    builder = default_builder()
    assert builder.driver == "local" and [n.driver for n in builder.nodes] == ["local"]


def test_multi_node_push_goes_by_digest_to_the_repositories(context: Path, tmp_path: Path) -> None:
    spec = parse_build_flags(
        context=str(context), push=True, tags=["127.0.0.1:5000/a/b:1", "127.0.0.1:5000/a/b:2"]
    )
    assert _push_names(spec.outputs) == ["127.0.0.1:5000/a/b:1", "127.0.0.1:5000/a/b:2"]
    (output,), load = _node_outputs(spec.outputs, multi_node=True, driver="local", scratch=tmp_path)
    assert load is None
    assert output.attrs["name"] == "127.0.0.1:5000/a/b"
    assert output.attrs["push-by-digest"] == "true"
    single, _ = _node_outputs(spec.outputs, multi_node=False, driver="local", scratch=tmp_path)
    assert single == spec.outputs


def test_load_becomes_a_private_tarball_except_on_the_docker_driver(
    context: Path, tmp_path: Path
) -> None:
    spec = parse_build_flags(context=str(context), load=True, tags=["hello:1"])
    (output,), load = _node_outputs(
        spec.outputs, multi_node=False, driver="local", scratch=tmp_path
    )
    assert output.type == "docker" and output.dest == str(tmp_path / "load.tar") == str(load)
    (engine,), none = _node_outputs(
        spec.outputs, multi_node=False, driver="docker", scratch=tmp_path
    )
    assert none is None and engine.type == "moby" and engine.attrs["name"] == "hello:1"


def test_load_of_several_platforms_or_nodes_is_refused(context: Path) -> None:
    spec = parse_build_flags(context=str(context), load=True, tags=["hello:1"])
    with pytest.raises(ConfigError, match="single-platform"):
        _check_outputs(spec, [NodePlan(0, (AMD64, ARM64))], _builder(nodes=1))
    with pytest.raises(ConfigError, match="several nodes"):
        _check_outputs(spec, [NodePlan(0, (AMD64,)), NodePlan(1, (ARM64,))], _builder())
    _check_outputs(spec, [NodePlan(0, (AMD64,))], _builder(nodes=1))


def test_local_output_of_a_multi_node_build_is_refused(context: Path, tmp_path: Path) -> None:
    spec = parse_build_flags(context=str(context), outputs=[f"type=local,dest={tmp_path}/out"])
    with pytest.raises(ConfigError, match="several nodes"):
        _check_outputs(spec, [NodePlan(0, (AMD64,)), NodePlan(1, (ARM64,))], _builder())
    assert isinstance(spec.outputs[0], OutputSpec)
