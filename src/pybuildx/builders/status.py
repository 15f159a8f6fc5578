"""What ``builder ls`` and ``builder inspect`` report: each node's state, from driver and daemon.

Nodes are queried concurrently; a failure on one node becomes that node's error, a builder that
cannot even be instantiated (a driver-opt file gone) becomes the builder's error. Nothing raises.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

from pybuildx.builders.active import ActiveBuilder
from pybuildx.builders.model import BuilderSpec
from pybuildx.builders.parallel import Job, run_all
from pybuildx.builders.store import Store
from pybuildx.buildkit.control import ControlClient, GCPolicy
from pybuildx.drivers.base import Status
from pybuildx.drivers.spec import NodeSpec
from pybuildx.errors import redact

__all__ = ["BuilderStatus", "NodeStatus", "builder_status", "unreadable_status"]

_INFO_TIMEOUT = 10.0


@dataclass(frozen=True, kw_only=True)
class NodeStatus:
    spec: NodeSpec
    status: str = ""
    version: str = ""
    worker_ids: tuple[str, ...] = ()
    detected: tuple[str, ...] = ()
    gc_policies: tuple[GCPolicy, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    features: Mapping[str, bool] = field(default_factory=dict)
    error: str = ""

    @property
    def static(self) -> tuple[str, ...]:
        return tuple(str(p) for p in self.spec.platforms)

    @property
    def platforms(self) -> tuple[str, ...]:
        """Static platforms first (as pinned with --platform), then the detected ones."""
        return self.static + tuple(p for p in self.detected if p not in self.static)


@dataclass(frozen=True, kw_only=True)
class BuilderStatus:
    name: str
    driver: str
    nodes: tuple[NodeStatus, ...] = ()
    current: bool = False
    error: str = ""

    @property
    def errored(self) -> bool:
        return bool(self.error) or any(n.error for n in self.nodes)


def _node_status(active: ActiveBuilder, index: int) -> NodeStatus:
    node = active.spec.nodes[index]
    driver = active.driver(index)
    try:
        features = driver.features.as_labels()
        info = driver.info()
        if info.status != Status.RUNNING:
            return NodeStatus(spec=node, status=info.status.value, features=features)
        daemon = ControlClient(active.channel(index), target=node.name).info(timeout=_INFO_TIMEOUT)
        workers = active.workers(index)
    except Exception as exc:  # reported per node, as buildx's "Failed to get status"
        return NodeStatus(spec=node, status=Status.ERROR.value, error=redact(str(exc)))
    version = daemon.version if daemon else ""
    if not version:  # daemons before v0.11 have no Info; their workers may still say
        version = next((w.buildkit_version.version for w in workers if w.buildkit_version), "")
    labels: dict[str, str] = {}
    for worker in workers:
        labels.update(worker.labels)
    detected = dict.fromkeys(str(p) for w in workers for p in w.platforms)
    return NodeStatus(
        spec=node,
        status=Status.RUNNING.value,
        version=version,
        worker_ids=tuple(w.id for w in workers),
        detected=tuple(detected),
        gc_policies=tuple(p for w in workers for p in w.gc_policies),
        labels=labels,
        features=features,
    )


def builder_status(builder: BuilderSpec, store: Store) -> BuilderStatus:
    current = store.current() == builder.name
    try:
        active = ActiveBuilder(builder, ephemeral=False, store=store)
    except Exception as exc:
        return BuilderStatus(
            name=builder.name, driver=builder.driver, current=current, error=redact(str(exc))
        )
    try:
        jobs = [
            Job(f"status-{n.name}", functools.partial(_node_status, active, i))
            for i, n in enumerate(builder.nodes)
        ]
        nodes = run_all(jobs)
    finally:
        active.close()
    return BuilderStatus(
        name=builder.name, driver=builder.driver, nodes=tuple(nodes), current=current
    )


def unreadable_status(name: str, problem: Exception) -> BuilderStatus:
    return BuilderStatus(name=name, driver="", error=redact(str(problem)))
