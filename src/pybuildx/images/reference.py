"""Image references (``[registry/]repository[:tag][@digest]``), normalised as docker does."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pybuildx.errors import ConfigError

__all__ = ["ImageRef", "is_local_registry"]

_DOCKER_HUB = "docker.io"
_DOCKER_HUB_API = "registry-1.docker.io"
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-fA-F0-9]{32,}$")


def is_local_registry(host: str) -> bool:
    """Hosts that get plain HTTP without asking (as BuildKit and containerd do)."""
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    return name in ("localhost", "127.0.0.1", "[::1]") or name.startswith("127.")


@dataclass(frozen=True)
class ImageRef:
    registry: str
    repository: str
    tag: str = ""
    digest: str = ""

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        raw = text.strip()
        name, digest = raw, ""
        if "@" in raw:
            name, _, digest = raw.partition("@")
            if not _DIGEST.match(digest):
                raise ConfigError(f"invalid image reference {text!r}: bad digest {digest!r}")
        tag = ""
        last = name.rsplit("/", 1)[-1]
        if ":" in last:
            name, _, tag = name.rpartition(":")
            if not _TAG.match(tag):
                raise ConfigError(f"invalid image reference {text!r}: bad tag {tag!r}")
        first, sep, rest = name.partition("/")
        if sep and ("." in first or ":" in first or first == "localhost"):
            registry, path = first, rest
        else:
            registry, path = _DOCKER_HUB, name
        if registry in ("index.docker.io", _DOCKER_HUB_API):
            registry = _DOCKER_HUB
        if registry == _DOCKER_HUB and "/" not in path:
            path = f"library/{path}"
        if not path or not all(_COMPONENT.match(c) for c in path.split("/")):
            raise ConfigError(
                f"invalid image reference {text!r}",
                hint="repository names are lowercase: registry/name[:tag][@digest]",
            )
        return cls(registry, path, tag, digest)

    @property
    def api_host(self) -> str:
        """Where the registry API lives (Docker Hub's differs from its name)."""
        return _DOCKER_HUB_API if self.registry == _DOCKER_HUB else self.registry

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    def with_digest(self, digest: str) -> ImageRef:
        return ImageRef(self.registry, self.repository, "", digest)

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text
