"""Which node builds which platform (drivers.md §3.2, buildx ``build/resolver``).

1. No platform requested: node 0 builds the default (its own) platform.
2. Strict pass over the platforms pinned with ``create --platform``: first node that pins a platform
   builds it. When every platform is pinned, only those nodes need to start.
3. Otherwise every node is started and asked for its workers' platforms; a platform goes to the
   first node that pins it, else the first node that can run it (exactly or compatibly, e.g. an
   arm64 worker runs arm/v7), else node 0.
4. One solve per node with its subset, in node order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pybuildx.config import Platform
from pybuildx.drivers.spec import NodeSpec

__all__ = ["NodePlan", "needs_detection", "plan", "runs"]


@dataclass(frozen=True)
class NodePlan:
    node: int
    platforms: tuple[Platform, ...]


def _level(variant: str) -> int:
    digits = variant.lstrip("v")
    return int(digits) if digits.isdigit() else 0


def runs(worker: Platform, wanted: Platform) -> bool:
    """Whether a worker of platform ``worker`` can build ``wanted`` without emulation."""
    if worker.os != wanted.os:
        return False
    if worker.architecture == wanted.architecture:
        if worker.architecture == "amd64":  # amd64/v3 runs v2 and v1 code
            return _level(wanted.variant or "v1") <= _level(worker.variant or "v1")
        if worker.architecture == "arm":  # arm/v7 runs v6 and v5 code
            return _level(wanted.variant) <= _level(worker.variant)
        return not wanted.variant or worker.variant == wanted.variant
    if worker.architecture == "amd64":
        return wanted.architecture == "386"
    if worker.architecture == "arm64":
        return wanted.architecture == "arm" and _level(wanted.variant) <= 8
    return False


def _strict(requested: Sequence[Platform], nodes: Sequence[NodeSpec]) -> dict[Platform, int]:
    pinned: dict[Platform, int] = {}
    for platform in requested:
        for index, node in enumerate(nodes):
            if platform in node.platforms:
                pinned[platform] = index
                break
    return pinned


def needs_detection(requested: Sequence[Platform], nodes: Sequence[NodeSpec]) -> bool:
    """True when some requested platform is not pinned to a node and more than one node exists."""
    if not requested or len(nodes) <= 1:
        return False
    return len(_strict(requested, nodes)) < len(requested)


def plan(
    requested: Sequence[Platform],
    nodes: Sequence[NodeSpec],
    detected: Callable[[int], Sequence[Platform]] | None = None,
) -> list[NodePlan]:
    """Assign every requested platform to a node.

    ``detected(i)`` lists the platforms of node i's workers; it is called only when needed.
    """
    if not nodes:
        raise ValueError("a builder needs at least one node")
    if not requested:
        return [NodePlan(0, ())]
    chosen = _strict(requested, nodes)
    if len(chosen) < len(requested) and len(nodes) > 1 and detected is not None:
        available = [list(node.platforms) + list(detected(i)) for i, node in enumerate(nodes)]
        for platform in requested:
            if platform in chosen:
                continue
            for index, platforms in enumerate(available):
                if platform in platforms or any(runs(w, platform) for w in platforms):
                    chosen[platform] = index
                    break
    groups: dict[int, list[Platform]] = {}
    for platform in requested:
        groups.setdefault(chosen.get(platform, 0), []).append(platform)
    return [NodePlan(index, tuple(groups[index])) for index in sorted(groups)]
