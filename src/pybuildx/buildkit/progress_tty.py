"""``--progress=tty``: a live view redrawn in place (rich), like buildx's terminal mode.

    [+] Building 4.2s (5/7)
     => [internal] load build definition from Dockerfile        0.0s
     => CACHED [1/3] FROM 127.0.0.1:5000/busybox                0.0s
     => [2/3] RUN make                                           3.1s
     => => # compiling foo.c

Running steps show a timer and the last lines of their logs; finished steps collapse into one line,
and the oldest finished ones are folded away when the terminal is short. Several writers (one per
node) share one live display per output stream, because a terminal can only host one. On close the
final list of steps is printed once, followed by the logs of failed steps and the warnings.
"""

from __future__ import annotations

import threading
import time
from typing import Any, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from pybuildx.buildkit.progress import OUTPUT_LOCK, ProgressWriter
from pybuildx.buildkit.progress_state import Event, VertexState

__all__ = ["TtyWriter"]

_REFRESH_PER_SECOND = 6
_ERROR_LOG_LINES = 20


class _Board:
    """The one live display of an output stream, stacking the views of its writers."""

    _boards: dict[int, _Board] = {}
    _boards_lock = threading.Lock()

    def __init__(self, console: Console) -> None:
        self.console = console
        self.writers: list[TtyWriter] = []
        self.live = Live(
            console=console,
            auto_refresh=True,
            refresh_per_second=_REFRESH_PER_SECOND,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
            get_renderable=self.render,
        )

    @classmethod
    def join(cls, writer: TtyWriter, console: Console) -> _Board:
        with cls._boards_lock:
            board = cls._boards.get(id(console.file))
            if board is None:
                board = cls(console)
                cls._boards[id(console.file)] = board
            board.writers.append(writer)
            if len(board.writers) == 1:
                board.live.start()
            return board

    def leave(self, writer: TtyWriter) -> None:
        """Called without the writer's lock: stopping joins the refresh thread, which takes it."""
        with self._boards_lock:
            self.writers.remove(writer)
            if not self.writers:
                del self._boards[id(self.console.file)]
                self.live.stop()

    def render(self) -> RenderableType:
        writers = list(self.writers)
        if not writers:
            return Text("")
        budget = max(4, (self.console.height - 1) // len(writers))
        return Group(*(w.view(budget) for w in writers))


def _duration(seconds: float) -> str:
    return f"{seconds:.1f}s"


class TtyWriter(ProgressWriter):
    def __init__(self, out: TextIO, *, prefix: str = "", console: Console | None = None) -> None:
        super().__init__(out, prefix=prefix)
        self._began = time.monotonic()
        self._seen_running: dict[str, float] = {}
        own = console or Console(file=out, highlight=False, soft_wrap=False)
        self._board = _Board.join(self, own)
        # Writers of one stream print through the board's console, which knows about the live area.
        self.console = self._board.console

    def _render(self, response: Any, events: list[Event]) -> None:
        now = time.monotonic()
        for vertex in self.tracker.vertexes.values():
            if vertex.started is not None and not vertex.done:
                self._seen_running.setdefault(vertex.digest, now)

    def _finish(self) -> None:
        self._board.leave(self)
        with self._lock:
            final = self._final_view()
        # Printed without our lock: while other nodes' writers are live, printing redraws their
        # views under the live display's lock, and its refresh thread takes writer locks.
        with OUTPUT_LOCK:
            self.console.print(final)

    def _elapsed(self, vertex: VertexState, now: float) -> float:
        if vertex.done:
            return vertex.duration
        return now - self._seen_running.get(vertex.digest, now)

    def _row(self, table: Table, vertex: VertexState, now: float) -> None:
        name = Text(" => ")
        if vertex.error:
            name.append("CANCELED " if vertex.canceled else "ERROR ", style="bold red")
        elif vertex.cached:
            name.append("CACHED ", style="blue")
        name.append(vertex.name, style="" if vertex.done else "bold")
        timer = Text(_duration(self._elapsed(vertex, now)), style="dim" if vertex.done else "")
        table.add_row(name, timer)

    def _table(self) -> Table:
        table = Table.grid(expand=True, padding=(0, 1))
        table.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
        table.add_column(justify="right", no_wrap=True)
        return table

    def _header(self, now: float, visible: list[VertexState]) -> Text:
        done = sum(1 for v in visible if v.done)
        word = "Finished" if self._closed else "Building"
        return Text(
            f"{self.prefix}[+] {word} {now - self._began:.1f}s ({done}/{len(visible)})",
            style="bold blue" if not self._closed else "bold",
        )

    def view(self, budget: int) -> RenderableType:
        """The live part: running steps with statuses and log tails, then recent finished ones."""
        now = time.monotonic()
        with self._lock:
            visible = [v for v in self.tracker.ordered() if v.started is not None or v.done]
            running = [v for v in visible if not v.done]
            extra_lines: dict[str, list[Text]] = {}
            for vertex in running:
                lines = [
                    Text(f" => => {s.describe()}", style="dim")
                    for s in vertex.statuses.values()
                    if s.completed is None
                ]
                lines += [Text(f" => => # {line}", style="dim") for line in vertex.log_tail]
                extra_lines[vertex.digest] = lines
            used = 1 + len(running) + sum(len(x) for x in extra_lines.values())
            room = max(0, budget - used)
            finished = [v for v in visible if v.done]
            shown_finished = finished[-room:] if room else []
            hidden = len(finished) - len(shown_finished)
            table = self._table()
            if hidden:
                table.add_row(Text(f" => ... {hidden} finished steps", style="dim"), Text(""))
            keep = {v.digest for v in shown_finished} | {v.digest for v in running}
            for vertex in visible:
                if vertex.digest not in keep:
                    continue
                self._row(table, vertex, now)
                for line in extra_lines.get(vertex.digest, []):
                    table.add_row(line, Text(""))
            return Group(self._header(now, visible), table)

    def _final_view(self) -> RenderableType:
        now = time.monotonic()
        visible = [v for v in self.tracker.ordered() if v.started is not None or v.done]
        table = self._table()
        for vertex in visible:
            self._row(table, vertex, now)
        parts: list[RenderableType] = [self._header(now, visible), table]
        for vertex in visible:
            if vertex.error and not vertex.canceled:
                parts.append(Text("------", style="red"))
                parts.append(Text(f" > {vertex.name}:", style="bold red"))
                for line in list(vertex.error_logs)[-_ERROR_LOG_LINES:]:
                    parts.append(Text(line))
                parts.append(Text("------", style="red"))
        summary = self.warnings_summary()
        if summary:
            parts.append(Text(""))
            parts += [Text(self.prefix + line, style="yellow") for line in summary]
        return Group(*parts)
