"""Builders of ``StatusResponse`` messages for the progress tests (times are offsets from T0)."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from pybuildx.buildkit._pb import control_pb2, ops_pb2

T0 = 1_700_000_000  # 2023-11-14T22:13:20Z


def ts(offset: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(T0 * 1_000_000_000 + round(offset * 1e9))
    return stamp


def vertex(
    digest: str,
    name: str,
    *,
    started: float | None = None,
    completed: float | None = None,
    cached: bool = False,
    error: str = "",
    inputs: tuple[str, ...] = (),
) -> control_pb2.Vertex:
    message = control_pb2.Vertex(
        digest=digest, name=name, cached=cached, error=error, inputs=list(inputs)
    )
    if started is not None:
        message.started.CopyFrom(ts(started))
    if completed is not None:
        message.completed.CopyFrom(ts(completed))
    return message


def status(
    digest: str,
    status_id: str,
    *,
    current: int = 0,
    total: int = 0,
    at: float = 0.0,
    started: float | None = None,
    completed: float | None = None,
) -> control_pb2.VertexStatus:
    message = control_pb2.VertexStatus(ID=status_id, vertex=digest, current=current, total=total)
    message.timestamp.CopyFrom(ts(at))
    if started is not None:
        message.started.CopyFrom(ts(started))
    if completed is not None:
        message.completed.CopyFrom(ts(completed))
    return message


def log(digest: str, data: bytes, *, at: float, stream: int = 1) -> control_pb2.VertexLog:
    return control_pb2.VertexLog(vertex=digest, msg=data, stream=stream, timestamp=ts(at))


def warning(digest: str, short: bytes, *, line: int = 0) -> control_pb2.VertexWarning:
    message = control_pb2.VertexWarning(vertex=digest, level=1, short=short, url="https://x.test")
    message.detail.append(b"the detail")
    message.info.CopyFrom(ops_pb2.SourceInfo(filename="Dockerfile", data=b"FROM x as y\n"))
    if line:
        message.ranges.append(
            ops_pb2.Range(start=ops_pb2.Position(line=line), end=ops_pb2.Position(line=line))
        )
    return message


def response(
    *,
    vertexes: list[control_pb2.Vertex] | None = None,
    statuses: list[control_pb2.VertexStatus] | None = None,
    logs: list[control_pb2.VertexLog] | None = None,
    warnings: list[control_pb2.VertexWarning] | None = None,
) -> control_pb2.StatusResponse:
    return control_pb2.StatusResponse(
        vertexes=vertexes or [],
        statuses=statuses or [],
        logs=logs or [],
        warnings=warnings or [],
    )
