"""Builds on Docker Engine 20.10's embedded BuildKit (v0.8 era) through its /grpc endpoint:
the oldest daemon we meet. It has no Info call and reads only the legacy exporter fields."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from pybuildx.buildkit.build import build
from pybuildx.buildkit.control import ControlClient
from pybuildx.buildspec import parse_build_flags
from pybuildx.errors import BuildFailed, ConfigError
from tests.integration.buildhelp import make_context

pytestmark = pytest.mark.integration


@pytest.fixture
def engine_channel(dockerd: str) -> Iterator[grpc.Channel]:
    from pybuildx.drivers.docker import DockerDriver
    from pybuildx.drivers.spec import NodeSpec

    driver = DockerDriver(NodeSpec(name="engine0", driver="docker", endpoint=dockerd))
    driver.bootstrap()
    channel = driver.dial()
    try:
        yield channel
    finally:
        channel.close()
        driver.teardown()


def test_old_engine_has_no_info_but_lists_workers(engine_channel: grpc.Channel) -> None:
    client = ControlClient(engine_channel)
    assert client.info() is None
    workers = client.list_workers()
    assert [w.id for w in workers] == ["moby"]


def test_local_and_tar_exports(engine_channel: grpc.Channel, tmp_path: Path) -> None:
    context = make_context(tmp_path / "ctx", "FROM scratch\nCOPY f /\n", {"f": "engine"})
    out, tar_path = tmp_path / "out", tmp_path / "fs.tar"
    for output in (f"type=local,dest={out}", f"type=tar,dest={tar_path}"):
        spec = parse_build_flags(context=str(context), outputs=[output], provenance="false")
        build(engine_channel, spec)
    assert (out / "f").read_text() == "engine"
    assert tar_path.stat().st_size > 0


def test_two_outputs_are_refused_instead_of_dropping_one(
    engine_channel: grpc.Channel, tmp_path: Path
) -> None:
    context = make_context(tmp_path / "ctx", "FROM scratch\nCOPY f /\n", {"f": "x"})
    spec = parse_build_flags(
        context=str(context),
        outputs=[f"type=local,dest={tmp_path}/a", f"type=tar,dest={tmp_path}/b.tar"],
        provenance="false",
    )
    with pytest.raises(ConfigError, match="one output per build"):
        build(engine_channel, spec)


def test_dockerfile_errors_keep_the_line(engine_channel: grpc.Channel, tmp_path: Path) -> None:
    context = make_context(tmp_path / "ctx", "FROM scratch\nBOGUS x\n")
    with pytest.raises(BuildFailed, match="line 2"):
        build(engine_channel, parse_build_flags(context=str(context), provenance="false"))
