"""Platform → node planning: which node builds which platform (buildx's resolver rules)."""

from __future__ import annotations

from pybuildx.builders.resolve import NodePlan, needs_detection, plan, runs
from pybuildx.config import Platform, parse_platforms
from pybuildx.drivers.spec import NodeSpec

AMD64 = Platform.parse("linux/amd64")
ARM64 = Platform.parse("linux/arm64")
ARMV7 = Platform.parse("linux/arm/v7")
I386 = Platform.parse("linux/386")


def _node(name: str, *platforms: str) -> NodeSpec:
    return NodeSpec(name=name, driver="remote", platforms=parse_platforms(platforms))


def test_no_platform_goes_to_the_first_node() -> None:
    assert plan([], [_node("a"), _node("b")]) == [NodePlan(0, ())]


def test_single_node_builds_everything_in_one_solve() -> None:
    assert plan([AMD64, ARM64], [_node("a")]) == [NodePlan(0, (AMD64, ARM64))]


def test_pinned_platforms_split_across_nodes_without_detection() -> None:
    nodes = [_node("amd", "linux/amd64"), _node("arm", "linux/arm64")]

    def detect(index: int) -> list[Platform]:
        raise AssertionError("pinned platforms must not need ListWorkers")

    assert not needs_detection([AMD64, ARM64], nodes)
    assert plan([ARM64, AMD64], nodes, detect) == [NodePlan(0, (AMD64,)), NodePlan(1, (ARM64,))]


def test_first_node_pinning_a_platform_wins() -> None:
    nodes = [_node("a", "linux/arm64"), _node("b", "linux/arm64")]
    assert plan([ARM64], nodes) == [NodePlan(0, (ARM64,))]


def test_unpinned_platform_goes_to_the_node_whose_workers_run_it() -> None:
    nodes = [_node("amd", "linux/amd64"), _node("other")]
    detected = {0: [AMD64], 1: [ARM64]}
    assert needs_detection([AMD64, ARM64], nodes)
    assert plan([AMD64, ARM64], nodes, detected.__getitem__) == [
        NodePlan(0, (AMD64,)),
        NodePlan(1, (ARM64,)),
    ]


def test_compatible_worker_is_used_when_no_exact_match() -> None:
    nodes = [_node("amd"), _node("arm")]
    detected = {0: [AMD64], 1: [ARM64]}
    assert plan([ARMV7, I386], nodes, detected.__getitem__) == [
        NodePlan(0, (I386,)),
        NodePlan(1, (ARMV7,)),
    ]


def test_platform_no_node_runs_falls_back_to_node_zero() -> None:
    nodes = [_node("amd"), _node("arm")]
    detected = {0: [AMD64], 1: [ARM64]}
    s390x = Platform.parse("linux/s390x")
    assert plan([s390x, ARM64], nodes, detected.__getitem__) == [
        NodePlan(0, (s390x,)),
        NodePlan(1, (ARM64,)),
    ]


def test_compatibility_rules() -> None:
    assert runs(AMD64, I386)
    assert not runs(I386, AMD64)
    assert runs(ARM64, ARMV7)
    assert not runs(ARMV7, ARM64)
    assert runs(Platform.parse("linux/amd64/v3"), Platform.parse("linux/amd64/v2"))
    assert not runs(AMD64, Platform.parse("linux/amd64/v3"))
    assert runs(ARMV7, Platform.parse("linux/arm/v6"))
    assert not runs(AMD64, Platform.parse("windows/amd64"))
