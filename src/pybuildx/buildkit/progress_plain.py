"""``--progress=plain``: BuildKit's plain printer layout, which is what CI logs show.

    #3 [2/2] RUN echo hello
    #3 0.212 hello
    #3 DONE 0.3s

Each vertex is a block headed ``#N name``; blocks are separated by a blank line. When output moves
to another vertex while one is still running, the unfinished block ends with ``#N ...`` and its
header is printed again when it continues. In-progress status rows appear only for transfers
slower than a second (then once per second of daemon time); the final row ends in ``done``.

buildx's printer redraws on a timer and so merges quick state changes; printing per message instead,
two rules keep the output as calm: a vertex that starts while its inputs still run gets its header
when they end (or when it prints something), and a vertex's end line is held back until other output
follows, so a vertex that the daemon completes and restarts at once stays one block.
"""

from __future__ import annotations

from typing import Any

from pybuildx.buildkit.progress import ProgressWriter
from pybuildx.buildkit.progress_state import (
    Event,
    LogLine,
    StatusChanged,
    StatusState,
    VertexChanged,
    VertexState,
    WarningAdded,
)

__all__ = ["PlainWriter"]

_STATUS_INTERVAL = 1.0


class PlainWriter(ProgressWriter):
    def __init__(self, out: Any, *, prefix: str = "") -> None:
        super().__init__(out, prefix=prefix)
        self._current: VertexState | None = None
        # The current vertex's end line waits until other output needs the screen: the daemon
        # often completes a vertex and restarts it at once, and buildx shows that as one block.
        self._pending_end: VertexState | None = None
        self._printed_any = False
        self._finished: set[str] = set()
        self._status_last: dict[tuple[str, str], float | None] = {}
        self._status_done: set[tuple[str, str]] = set()
        self._waiting: dict[str, VertexState] = {}  # started, header held back until inputs end
        self._lines: list[str] = []

    def _render(self, response: Any, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, VertexChanged):
                self._vertex(event.vertex)
            elif isinstance(event, StatusChanged):
                self._status(event.vertex, event.status)
            elif isinstance(event, LogLine):
                self._log(event)
            elif isinstance(event, WarningAdded):
                self._warning(event)
        for vertex in sorted(self._waiting.values(), key=lambda v: v.index):
            if vertex.done or not self.tracker.waits_for_inputs(vertex):
                del self._waiting[vertex.digest]
                if not vertex.done:
                    self._switch_to(vertex)
        self._flush_lines()

    def _finish(self) -> None:
        with self._lock:
            for line in self.tracker.flush_all():
                self._log(line)
            self._end_pending()
            summary = self.warnings_summary()
            if summary:
                self._blank()
                self._lines += [self.prefix + line for line in summary]
            self._flush_lines()

    def _flush_lines(self) -> None:
        if self._lines:
            self._emit("".join(line + "\n" for line in self._lines))
            self._lines = []

    def _blank(self) -> None:
        if self._printed_any:
            self._lines.append("")

    def _end_pending(self) -> None:
        vertex = self._pending_end
        if vertex is None:
            return
        self._pending_end = None
        if vertex.error:
            text = "CANCELED" if vertex.canceled else f"ERROR: {vertex.error}"
        elif vertex.cached:
            text = "CACHED"
        else:
            text = f"DONE {vertex.duration:.1f}s"
        self._lines.append(f"{self.prefix}#{vertex.index} {text}")
        self._finished.add(vertex.digest)

    def _switch_to(self, vertex: VertexState) -> None:
        self._waiting.pop(vertex.digest, None)
        if self._current is vertex:
            return
        self._end_pending()
        previous = self._current
        if previous is not None and previous.digest not in self._finished:
            self._lines.append(f"{self.prefix}#{previous.index} ...")
        self._blank()
        self._current = vertex
        self._printed_any = True
        self._lines.append(f"{self.prefix}#{vertex.index} {vertex.name}")

    def _line(self, vertex: VertexState, text: str) -> None:
        self._switch_to(vertex)
        self._lines.append(f"{self.prefix}#{vertex.index} {text}")

    def _vertex(self, vertex: VertexState) -> None:
        if vertex.started is None and not vertex.done:
            return  # announced, not running yet
        if not vertex.done:
            if self._pending_end is vertex:  # restarted before its end was shown
                self._pending_end = None
            elif vertex.digest in self._finished:  # runs again: its statuses start over
                self._finished.discard(vertex.digest)
                self._status_done = {k for k in self._status_done if k[0] != vertex.digest}
            if self._current is not vertex and self.tracker.waits_for_inputs(vertex):
                self._waiting[vertex.digest] = vertex
                return
            self._switch_to(vertex)
            return
        if vertex.digest in self._finished:
            return
        self._switch_to(vertex)
        self._pending_end = vertex

    def _status(self, vertex: VertexState, status: StatusState) -> None:
        key = (vertex.digest, status.id)
        if key in self._status_done:
            return
        if status.completed is not None:
            self._status_done.add(key)
        else:
            # In-progress rows only for slow transfers, at most once per interval (daemon time).
            last = self._status_last.get(key, status.started)
            if last is None or status.timestamp is None:
                return
            if status.timestamp - last < _STATUS_INTERVAL:
                return
        self._status_last[key] = status.timestamp
        self._line(vertex, status.describe())

    def _log(self, line: LogLine) -> None:
        vertex = line.vertex
        if line.timestamp is not None and vertex.started is not None:
            self._line(vertex, f"{max(0.0, line.timestamp - vertex.started):.3f} {line.text}")
        else:
            self._line(vertex, line.text)

    def _warning(self, event: WarningAdded) -> None:
        if event.vertex is not None:
            self._line(event.vertex, f"WARN: {event.warning.summary()}")
        else:
            self._end_pending()
            self._blank()
            self._printed_any = True
            self._current = None
            self._lines.append(f"{self.prefix}WARN: {event.warning.summary()}")
