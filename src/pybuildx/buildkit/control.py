"""Calls on BuildKit's Control service that are not a build: Info, ListWorkers, DiskUsage, Prune."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from pybuildx.buildkit._pb import control_pb2, control_pb2_grpc, worker_pb2
from pybuildx.buildkit.status_errors import connect_error, from_rpc_error
from pybuildx.config import Platform
from pybuildx.errors import PybuildxError

__all__ = [
    "ControlClient",
    "DaemonInfo",
    "GCPolicy",
    "UsageRecord",
    "WorkerInfo",
    "control_stub",
    "wait_ready",
]

_CALL_TIMEOUT_S = 60.0
_PRUNE_TIMEOUT_S = 30 * 60.0


@dataclass(frozen=True)
class DaemonInfo:
    """What ``Info`` says about the daemon (BuildKit v0.11+)."""

    package: str
    version: str
    revision: str
    dockerfile_version: str = ""


@dataclass(frozen=True)
class GCPolicy:
    all: bool
    keep_duration_s: float
    reserved_space: int
    max_used_space: int
    min_free_space: int
    filters: tuple[str, ...]


@dataclass(frozen=True)
class WorkerInfo:
    id: str
    labels: Mapping[str, str]
    platforms: tuple[Platform, ...]
    gc_policies: tuple[GCPolicy, ...] = ()
    buildkit_version: DaemonInfo | None = None


@dataclass(frozen=True)
class UsageRecord:
    """One cache record as DiskUsage and Prune report it."""

    id: str
    size: int
    mutable: bool = False
    in_use: bool = False
    shared: bool = False
    record_type: str = ""
    description: str = ""
    usage_count: int = 0
    created_at: datetime | None = None
    last_used_at: datetime | None = None
    parents: tuple[str, ...] = field(default=())


def _time(ts: Timestamp, present: bool) -> datetime | None:
    if not present:
        return None
    return datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, tz=timezone.utc)


def _usage_record(record: control_pb2.UsageRecord) -> UsageRecord:
    parents = tuple(record.Parents) or ((record.Parent,) if record.Parent else ())
    return UsageRecord(
        id=record.ID,
        size=record.Size,
        mutable=record.Mutable,
        in_use=record.InUse,
        shared=record.Shared,
        record_type=record.RecordType,
        description=record.Description,
        usage_count=record.UsageCount,
        created_at=_time(record.CreatedAt, record.HasField("CreatedAt")),
        last_used_at=_time(record.LastUsedAt, record.HasField("LastUsedAt")),
        parents=parents,
    )


def _daemon_info(version: worker_pb2.BuildkitVersion) -> DaemonInfo:
    return DaemonInfo(
        package=version.package,
        version=version.version,
        revision=version.revision,
        dockerfile_version=version.dockerfileVersion,
    )


def _platform(p: object) -> Platform:
    os_name = getattr(p, "OS", "") or "linux"
    arch = getattr(p, "Architecture", "")
    variant = getattr(p, "Variant", "")
    return Platform.parse("/".join(x for x in (os_name, arch, variant) if x))


def _worker(record: worker_pb2.WorkerRecord) -> WorkerInfo:
    policies = tuple(
        GCPolicy(
            all=p.all,
            keep_duration_s=p.keepDuration / 1e9,
            reserved_space=p.reservedSpace,
            max_used_space=p.maxUsedSpace,
            min_free_space=p.minFreeSpace,
            filters=tuple(p.filters),
        )
        for p in record.GCPolicy
    )
    version = record.BuildkitVersion
    return WorkerInfo(
        id=record.ID,
        labels=dict(record.Labels),
        platforms=tuple(_platform(p) for p in record.platforms),
        gc_policies=policies,
        buildkit_version=_daemon_info(version) if version.version else None,
    )


def control_stub(channel: grpc.Channel) -> control_pb2_grpc.ControlStub:
    return control_pb2_grpc.ControlStub(channel)  # type: ignore[no-untyped-call]


class ControlClient:
    """Typed wrappers around ``moby.buildkit.v1.Control``; errors become ``PybuildxError``."""

    def __init__(self, channel: grpc.Channel, *, target: str = "") -> None:
        self.channel = channel
        self.target = target
        self.stub = control_stub(channel)

    def _fail(self, error: grpc.RpcError, action: str) -> PybuildxError:
        return from_rpc_error(error, action=action, target=self.target)

    def info(self, *, timeout: float = _CALL_TIMEOUT_S) -> DaemonInfo | None:
        """The daemon's version, or None when it predates the Info call (BuildKit < v0.11)."""
        try:
            response = self.stub.Info(control_pb2.InfoRequest(), timeout=timeout)
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.UNIMPLEMENTED:
                return None
            raise self._fail(error, "info") from None
        return _daemon_info(response.buildkitVersion)

    def list_workers(self, filters: Iterable[str] = ()) -> list[WorkerInfo]:
        request = control_pb2.ListWorkersRequest(filter=list(filters))
        try:
            response = self.stub.ListWorkers(request, timeout=_CALL_TIMEOUT_S)
        except grpc.RpcError as error:
            raise self._fail(error, "listing workers") from None
        return [_worker(r) for r in response.record]

    def disk_usage(self, filters: Iterable[str] = ()) -> list[UsageRecord]:
        request = control_pb2.DiskUsageRequest(filter=list(filters))
        try:
            response = self.stub.DiskUsage(request, timeout=_CALL_TIMEOUT_S)
        except grpc.RpcError as error:
            raise self._fail(error, "disk usage") from None
        return [_usage_record(r) for r in response.record]

    def prune(
        self,
        filters: Iterable[str] = (),
        *,
        all: bool = False,
        keep_duration_s: float = 0,
        reserved_space: int = 0,
        max_used_space: int = 0,
        min_free_space: int = 0,
    ) -> list[UsageRecord]:
        """Remove build cache; returns the records the daemon deleted."""
        request = control_pb2.PruneRequest(
            filter=list(filters),
            all=all,
            keepDuration=int(keep_duration_s * 1e9),
            reservedSpace=reserved_space,
            maxUsedSpace=max_used_space,
            minFreeSpace=min_free_space,
        )
        try:
            return [_usage_record(r) for r in self.stub.Prune(request, timeout=_PRUNE_TIMEOUT_S)]
        except grpc.RpcError as error:
            raise self._fail(error, "prune") from None


_RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
# Errors no amount of waiting fixes: the TLS setup does not match the daemon's.
_FATAL_FRAGMENTS = ("ssl", "handshake", "certificate", "tls", "tsi_", "verification")


def wait_ready(
    channel: grpc.Channel, timeout: float = 30.0, *, target: str = ""
) -> DaemonInfo | None:
    """Wait until the daemon answers (``Info``; UNIMPLEMENTED counts as up, as in Go's client).

    Returns what ``Info`` said (None for daemons older than v0.11). Raises ``ConnectError`` with a
    hint when the daemon is unreachable after ``timeout`` seconds or the TLS setup does not match.
    """
    stub = control_stub(channel)
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        remaining = deadline - time.monotonic()
        try:
            response = stub.Info(control_pb2.InfoRequest(), timeout=max(0.5, min(remaining, 10.0)))
        except grpc.RpcError as error:
            code = error.code()
            if code == grpc.StatusCode.UNIMPLEMENTED:
                return None
            if code not in _RETRYABLE:
                raise from_rpc_error(error, action="info", target=target) from None
            details = (error.details() or "").lower()
            if any(f in details for f in _FATAL_FRAGMENTS) or time.monotonic() >= deadline:
                raise connect_error(error, target or "the given address") from None
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 1.0)
            continue
        return _daemon_info(response.buildkitVersion)
