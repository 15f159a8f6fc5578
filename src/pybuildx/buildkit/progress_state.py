"""The state behind every progress mode: what BuildKit's ``Control.Status`` stream said so far.

``StatusResponse`` messages are incremental: a vertex digest recurs whenever its state changes,
statuses recur with new byte counts, logs arrive in arbitrary chunks. ``Tracker.update`` folds one
message into per-vertex state (numbered in order of first appearance, as buildx numbers ``#N``) and
returns the events a renderer prints, with log chunks already cut into redacted lines.

Messages are read duck-typed (generated ``control_pb2`` classes or anything with the same
attributes), so timestamps may be protobuf ``Timestamp`` messages, floats, or unset.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pybuildx.errors import redact

__all__ = [
    "BuildWarning",
    "Event",
    "LogLine",
    "StatusChanged",
    "StatusState",
    "Tracker",
    "VertexChanged",
    "VertexState",
    "WarningAdded",
    "format_bytes",
    "timestamp",
]

LOG_TAIL_LINES = 6
# A line without newline longer than this is shown anyway (progress bars, binary output).
_MAX_PARTIAL = 64 * 1024


def timestamp(message: Any, name: str) -> float | None:
    """Seconds since the epoch of a timestamp field, or None when it is unset."""
    has_field = getattr(message, "HasField", None)
    if has_field is not None:
        try:
            if not has_field(name):
                return None
        except ValueError:
            pass
    value = getattr(message, name, None)
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value) or None
    seconds = getattr(value, "seconds", 0) or 0
    nanos = getattr(value, "nanos", 0) or 0
    if not seconds and not nanos:
        return None
    return float(seconds) + nanos / 1e9


def format_bytes(size: int) -> str:
    """Decimal units with two decimals, as BuildKit's progress output prints sizes."""
    if size < 1000:
        return f"{size}B"
    value = float(size)
    units = ("kB", "MB", "GB", "TB", "PB")
    for unit in units:
        value /= 1000
        if value < 1000 or unit == units[-1]:
            return f"{value:.2f}{unit}"
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class BuildWarning:
    """A build check warning (for example a Dockerfile lint finding), decoded and redacted."""

    vertex: str
    level: int
    short: str
    detail: tuple[str, ...] = ()
    url: str = ""
    filename: str = ""
    line: int | None = None

    def summary(self) -> str:
        """The short text; BuildKit already ends it with ``(line N)`` where it has a line."""
        return self.short


@dataclass
class StatusState:
    id: str
    name: str = ""
    current: int = 0
    total: int = 0
    timestamp: float | None = None
    started: float | None = None
    completed: float | None = None

    def describe(self) -> str:
        """``<id>[ <current>[ / <total>]][ <seconds>s][ done]`` like BuildKit's plain printer."""
        text = self.id
        if self.total:
            text += f" {format_bytes(self.current)} / {format_bytes(self.total)}"
        elif self.current:
            text += f" {format_bytes(self.current)}"
        end = self.completed if self.completed is not None else self.timestamp
        if self.started is not None and end is not None and end - self.started >= 0.05:
            text += f" {end - self.started:.1f}s"
        if self.completed is not None:
            text += " done"
        return text


@dataclass
class VertexState:
    digest: str
    index: int
    name: str = ""
    started: float | None = None
    completed: float | None = None
    cached: bool = False
    error: str = ""
    inputs: tuple[str, ...] = ()
    statuses: dict[str, StatusState] = field(default_factory=dict)
    log_tail: collections.deque[str] = field(
        default_factory=lambda: collections.deque(maxlen=LOG_TAIL_LINES)
    )
    error_logs: collections.deque[str] = field(
        default_factory=lambda: collections.deque(maxlen=200)
    )
    partial: dict[int, bytes] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.completed is not None

    @property
    def canceled(self) -> bool:
        return "context canceled" in self.error

    @property
    def duration(self) -> float:
        if self.started is None or self.completed is None:
            return 0.0
        return max(0.0, self.completed - self.started)


@dataclass(frozen=True)
class LogLine:
    vertex: VertexState
    text: str
    timestamp: float | None


@dataclass(frozen=True)
class VertexChanged:
    vertex: VertexState


@dataclass(frozen=True)
class StatusChanged:
    vertex: VertexState
    status: StatusState


@dataclass(frozen=True)
class WarningAdded:
    vertex: VertexState | None
    warning: BuildWarning


Event = VertexChanged | StatusChanged | LogLine | WarningAdded


def _text(data: bytes | str) -> str:
    if isinstance(data, str):
        return data
    return data.decode("utf-8", "replace")


class Tracker:
    """Per-build state of a Status stream. Not thread-safe: writers serialise calls."""

    def __init__(self) -> None:
        self.vertexes: dict[str, VertexState] = {}
        self.warnings: list[BuildWarning] = []

    def vertex(self, digest: str) -> VertexState:
        state = self.vertexes.get(digest)
        if state is None:
            state = VertexState(digest=digest, index=len(self.vertexes) + 1)
            self.vertexes[digest] = state
        return state

    def ordered(self) -> list[VertexState]:
        return sorted(self.vertexes.values(), key=lambda v: v.index)

    def update(self, response: Any) -> list[Event]:
        # A message may carry several states of one vertex: only the last one counts, at the
        # place of its last appearance (a dependant often starts in the message its input ends).
        touched: dict[str, VertexState] = {}
        for message in getattr(response, "vertexes", ()):
            state = self._vertex(message)
            touched.pop(state.digest, None)
            touched[state.digest] = state
        events: list[Event] = [VertexChanged(state) for state in touched.values()]
        for status in getattr(response, "statuses", ()):
            events.append(self._status(status))
        for log in getattr(response, "logs", ()):
            events += self._log(log)
        for state in touched.values():
            if state.done:
                events += self.flush(state)
        for warning in getattr(response, "warnings", ()):
            events.append(self._warning(warning))
        return events

    def flush(self, state: VertexState) -> list[LogLine]:
        """Lines still waiting for their newline, e.g. when the vertex ends or the stream closes."""
        lines: list[LogLine] = []
        for stream in sorted(state.partial):
            rest = state.partial.pop(stream)
            if rest:
                lines.append(self._line(state, rest, None))
        return lines

    def flush_all(self) -> list[LogLine]:
        lines: list[LogLine] = []
        for state in self.ordered():
            lines += self.flush(state)
        return lines

    def _vertex(self, message: Any) -> VertexState:
        state = self.vertex(str(message.digest))
        started = timestamp(message, "started")
        completed = timestamp(message, "completed")
        if state.completed is not None and completed is None and started is not None:
            # The same vertex runs again (e.g. a retried or shared step): start a fresh block.
            state.statuses.clear()
        state.name = redact(str(message.name)) or state.name
        state.started = started
        state.completed = completed
        state.cached = bool(message.cached)
        state.error = redact(str(message.error))
        state.inputs = tuple(str(i) for i in getattr(message, "inputs", ())) or state.inputs
        return state

    def waits_for_inputs(self, state: VertexState) -> bool:
        """Started, but an input vertex is still unfinished (the daemon starts dependants early)."""
        return any(
            digest in self.vertexes and not self.vertexes[digest].done for digest in state.inputs
        )

    def _status(self, message: Any) -> StatusChanged:
        state = self.vertex(str(message.vertex))
        status_id = redact(str(message.ID))
        status = state.statuses.get(status_id)
        if status is None:
            status = StatusState(id=status_id)
            state.statuses[status_id] = status
        status.name = str(message.name)
        status.current = int(message.current)
        status.total = int(message.total)
        status.timestamp = timestamp(message, "timestamp")
        status.started = timestamp(message, "started")
        status.completed = timestamp(message, "completed")
        return StatusChanged(state, status)

    def _log(self, message: Any) -> list[LogLine]:
        state = self.vertex(str(message.vertex))
        stream = int(getattr(message, "stream", 0))
        data = state.partial.pop(stream, b"") + bytes(message.msg)
        at = timestamp(message, "timestamp")
        *complete, rest = data.split(b"\n")
        lines = [self._line(state, chunk, at) for chunk in complete]
        if len(rest) > _MAX_PARTIAL:
            lines.append(self._line(state, rest, at))
        elif rest:
            state.partial[stream] = rest
        return lines

    def _line(self, state: VertexState, chunk: bytes, at: float | None) -> LogLine:
        text = redact(_text(chunk).rstrip("\r"))
        state.log_tail.append(text)
        state.error_logs.append(text)
        return LogLine(state, text, at)

    def _warning(self, message: Any) -> WarningAdded:
        digest = str(getattr(message, "vertex", ""))
        state = self.vertexes.get(digest) if digest else None
        ranges: Iterable[Any] = getattr(message, "ranges", ())
        first = next(iter(ranges), None)
        line = int(first.start.line) if first is not None and first.start.line else None
        info = getattr(message, "info", None)
        warning = BuildWarning(
            vertex=digest,
            level=int(getattr(message, "level", 0)),
            short=redact(_text(message.short)),
            detail=tuple(redact(_text(d)) for d in getattr(message, "detail", ())),
            url=str(getattr(message, "url", "")),
            filename=str(getattr(info, "filename", "") or ""),
            line=line,
        )
        self.warnings.append(warning)
        return WarningAdded(state, warning)
