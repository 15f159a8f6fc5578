"""What the store remembers about one node: enough to recreate its driver in a later process."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pybuildx.config import Platform

__all__ = ["NodeSpec"]


@dataclass(frozen=True, kw_only=True)
class NodeSpec:
    name: str
    driver: str
    endpoint: str = ""
    platforms: tuple[Platform, ...] = ()
    driver_opts: dict[str, str] = field(default_factory=dict)
    buildkitd_flags: tuple[str, ...] = ()
    buildkitd_config: str | None = None  # the file's content, not its path: the file may go away

    def to_json(self) -> dict[str, Any]:
        return {
            "Name": self.name,
            "Driver": self.driver,
            "Endpoint": self.endpoint,
            "Platforms": [str(p) for p in self.platforms],
            "DriverOpts": dict(self.driver_opts),
            "Flags": list(self.buildkitd_flags),
            "Config": self.buildkitd_config,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NodeSpec:
        return cls(
            name=str(data["Name"]),
            driver=str(data["Driver"]),
            endpoint=str(data.get("Endpoint") or ""),
            platforms=tuple(Platform.parse(p) for p in data.get("Platforms") or ()),
            driver_opts={str(k): str(v) for k, v in (data.get("DriverOpts") or {}).items()},
            buildkitd_flags=tuple(str(f) for f in data.get("Flags") or ()),
            buildkitd_config=data.get("Config"),
        )
