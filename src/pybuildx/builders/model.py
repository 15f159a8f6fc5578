"""A builder: a named, ordered group of nodes that all use one driver."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from pybuildx.drivers.spec import NodeSpec
from pybuildx.errors import ConfigError

__all__ = ["BuilderSpec", "check_name"]

_NAME = re.compile(r"^[a-z][a-z0-9._-]*$")
_MAX_NAME = 63


def check_name(name: str, *, what: str = "builder name") -> str:
    """Builder and node names: lower-cased, DNS-ish (they end up in container and pod names)."""
    lowered = name.strip().lower()
    if not _NAME.match(lowered) or len(lowered) > _MAX_NAME:
        raise ConfigError(
            f"invalid {what} {name!r}",
            hint="start with a letter; use letters, digits, '.', '-' or '_' (at most 63)",
        )
    return lowered


@dataclass(frozen=True, kw_only=True)
class BuilderSpec:
    name: str
    driver: str
    nodes: tuple[NodeSpec, ...]

    def node(self, name: str) -> NodeSpec | None:
        return next((n for n in self.nodes if n.name == name), None)

    def with_nodes(self, nodes: tuple[NodeSpec, ...]) -> BuilderSpec:
        return replace(self, nodes=nodes)

    def to_json(self) -> dict[str, Any]:
        return {
            "Name": self.name,
            "Driver": self.driver,
            "Nodes": [n.to_json() for n in self.nodes],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BuilderSpec:
        return cls(
            name=str(data["Name"]),
            driver=str(data["Driver"]),
            nodes=tuple(NodeSpec.from_json(n) for n in data.get("Nodes") or ()),
        )
