"""What `builder create` (with --append, --node, --leave) does to the store, as pure functions.

Rules follow buildx (drivers.md §3.1): an existing builder changes only with ``--node`` or
``--append``; a node named again is replaced; new nodes are named ``<builder><i>``; an endpoint may
appear once; a platform pinned by a new node is unpinned from every other node.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, replace

from pybuildx import drivers
from pybuildx.builders.model import BuilderSpec, check_name
from pybuildx.config import Platform
from pybuildx.drivers.spec import NodeSpec
from pybuildx.errors import ConfigError, UsageError

__all__ = ["CreateRequest", "apply_create", "default_driver", "generated_name", "leave_node"]


@dataclass(frozen=True, kw_only=True)
class CreateRequest:
    name: str | None = None
    driver: str | None = None
    node: str | None = None
    endpoint: str = ""
    platforms: tuple[Platform, ...] = ()
    driver_opts: dict[str, str] = field(default_factory=dict)
    buildkitd_flags: tuple[str, ...] = ()
    buildkitd_config: str | None = None
    append: bool = False


def generated_name() -> str:
    return f"builder-{secrets.token_hex(4)}"


def default_driver(existing: BuilderSpec | None, endpoint: str) -> str:
    if existing is not None:
        return existing.driver
    if endpoint or os.environ.get("BUILDKIT_HOST"):
        return "remote"
    return "local"


def _next_node_name(builder: str, nodes: tuple[NodeSpec, ...]) -> str:
    taken = {n.name for n in nodes}
    index = 0
    while f"{builder}{index}" in taken:
        index += 1
    return f"{builder}{index}"


def apply_create(existing: BuilderSpec | None, request: CreateRequest) -> BuilderSpec:
    """The builder after ``create``; validates the new node's driver, opts and endpoint."""
    if request.append and not request.name:
        raise UsageError("--append needs --name: the builder to add a node to")
    name = check_name(request.name) if request.name else generated_name()
    driver = request.driver or default_driver(existing, request.endpoint)
    if existing is not None:
        if not request.append and not request.node:
            raise UsageError(
                f"builder {name!r} already exists",
                hint="pass --append to add a node, --node NAME to change one, or another --name",
            )
        if driver != existing.driver:
            raise ConfigError(
                f"builder {name!r} uses the {existing.driver} driver, not {driver}",
                hint="all nodes of a builder share one driver; create another builder",
            )
    nodes = existing.nodes if existing is not None else ()
    node_name = (
        check_name(request.node, what="node name") if request.node else _next_node_name(name, nodes)
    )
    node = NodeSpec(
        name=node_name,
        driver=driver,
        endpoint=request.endpoint,
        platforms=request.platforms,
        driver_opts=dict(request.driver_opts),
        buildkitd_flags=request.buildkitd_flags,
        buildkitd_config=request.buildkitd_config,
    )
    drivers.validate(node)
    if node.endpoint and any(n.endpoint == node.endpoint and n.name != node.name for n in nodes):
        raise ConfigError(f"invalid duplicate endpoint {node.endpoint!r} in builder {name!r}")
    pinned = set(node.platforms)
    updated = [
        replace(n, platforms=tuple(p for p in n.platforms if p not in pinned))
        for n in nodes
        if n.name != node.name
    ]
    position = next((i for i, n in enumerate(nodes) if n.name == node.name), len(updated))
    updated.insert(position, node)
    return BuilderSpec(name=name, driver=driver, nodes=tuple(updated))


def leave_node(existing: BuilderSpec, node: str) -> BuilderSpec:
    name = check_name(node, what="node name")
    if existing.node(name) is None:
        raise UsageError(f"builder {existing.name!r} has no node {name!r}")
    if len(existing.nodes) == 1:
        raise UsageError(
            f"node {name!r} is the last node of {existing.name!r}",
            hint=f"remove the builder instead: ci-build builder rm {existing.name}",
        )
    return existing.with_nodes(tuple(n for n in existing.nodes if n.name != name))
