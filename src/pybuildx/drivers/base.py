"""The contract every driver fulfils, modelled on buildx's driver interface.

A driver handles one node of a builder: it can start what the node needs (``bootstrap``), hand out
a gRPC channel to its BuildKit daemon (``dial``), report its state (``info``) and remove what it
started (``teardown``). Drivers never solve; the pipeline does, through the channel.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import grpc

__all__ = ["DEFAULT_BOOT_TIMEOUT", "Driver", "DriverInfo", "Features", "Status"]

DEFAULT_BOOT_TIMEOUT = 60.0


class Status(str, enum.Enum):
    INACTIVE = "inactive"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    ERROR = "error"


@dataclass(frozen=True)
class DriverInfo:
    status: Status
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class Features:
    """What the node can do, as in buildx's feature table (drivers.md §5.1)."""

    oci_exporter: bool = True
    docker_exporter: bool = True
    cache_export: bool = True
    multi_platform: bool = True
    direct_push: bool = True
    default_load: bool = False

    def as_labels(self) -> dict[str, bool]:
        return {
            "OCI exporter": self.oci_exporter,
            "Docker exporter": self.docker_exporter,
            "Cache export": self.cache_export,
            "Multi-platform build": self.multi_platform,
            "Direct push": self.direct_push,
            "Automatically load images to the Docker Engine image store": self.default_load,
        }


class Driver(Protocol):
    """One node's way to a BuildKit daemon."""

    @property
    def features(self) -> Features: ...

    def bootstrap(self, timeout: float = DEFAULT_BOOT_TIMEOUT) -> None:
        """Start whatever the node needs and wait until the daemon answers ``Info``."""

    def dial(self) -> grpc.Channel:
        """A new channel to the daemon; the caller closes it."""

    def info(self) -> DriverInfo: ...

    def teardown(self, keep_state: bool = False) -> None:
        """Remove what ``bootstrap`` created; idempotent, safe after a failed bootstrap."""

    def release(self) -> None:
        """Drop client-side resources (relays); the daemon keeps running for later runs."""

    def stop(self) -> str:
        """Stop the daemon but keep its state (a later ``bootstrap`` restarts it); says what it did.

        Drivers that do not own their daemon (remote, docker) do nothing and say so.
        """

    def detach(self) -> str | None:
        """Forget the daemon but leave it running (``rm --keep-daemon``); how to stop it by hand."""
