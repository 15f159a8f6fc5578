"""Build progress from BuildKit's ``Control.Status`` stream, in buildx's ``--progress`` modes.

    writer = make_progress("auto", sys.stderr, prefix="[amd64] ")
    for response in control.Status(StatusRequest(Ref=ref)):
        writer.write(response)
    writer.close()            # final state and "N warnings found"
    writer.warnings           # BuildWarning tuple, for CI annotations

Modes: ``plain`` (``#N`` blocks, what CI logs get), ``tty`` (live redraw with rich; ``plain`` when
the output is not a terminal), ``auto`` (``tty`` on a terminal, else ``plain``), ``rawjson`` (one
JSON object per StatusResponse) and ``quiet`` (nothing; errors still reach the caller via Solve).
Writers are thread-safe, and several writers may share one output (one per node of a builder).
Every log line, vertex name and error is passed through ``pybuildx.errors.redact``.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, TextIO

from pybuildx.buildkit.progress_state import BuildWarning, Event, Tracker
from pybuildx.config import reject_unknown

__all__ = ["PROGRESS_MODES", "BuildWarning", "ProgressWriter", "is_terminal", "make_progress"]

PROGRESS_MODES: tuple[str, ...] = ("auto", "tty", "plain", "rawjson", "quiet")

# One lock for all writers: lines of concurrent nodes never interleave mid-block.
OUTPUT_LOCK = threading.RLock()


class ProgressWriter:
    """Base of all modes: folds messages into a ``Tracker`` under a lock, renders the events."""

    def __init__(self, out: TextIO, *, prefix: str = "") -> None:
        self.out = out
        self.prefix = prefix
        self.tracker = Tracker()
        self._lock = threading.RLock()
        self._closed = False

    @property
    def warnings(self) -> tuple[BuildWarning, ...]:
        with self._lock:
            return tuple(self.tracker.warnings)

    def write(self, response: Any) -> None:
        """Render one ``StatusResponse``."""
        with self._lock:
            if self._closed:
                return
            events = self.tracker.update(response)
            self._render(response, events)

    def close(self) -> None:
        """Print the final state (pending log lines, warnings summary). Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        # Outside the lock: the tty mode stops a refresh thread that may be waiting for it.
        self._finish()

    def __enter__(self) -> ProgressWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _render(self, response: Any, events: list[Event]) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        """Called once by ``close``, without the lock held; no ``write`` runs after it."""
        raise NotImplementedError

    def _emit(self, text: str) -> None:
        if not text:
            return
        with OUTPUT_LOCK:
            self.out.write(text)
            self.out.flush()

    def warnings_summary(self) -> list[str]:
        """``N warnings found:`` and one `` - short (line N)`` per warning, as buildx ends."""
        warnings = self.tracker.warnings
        if not warnings:
            return []
        plural = "s" if len(warnings) != 1 else ""
        lines = [f"{len(warnings)} warning{plural} found:"]
        lines += [f" - {w.summary()}" for w in warnings]
        return lines


class QuietWriter(ProgressWriter):
    """Prints nothing; warnings are still collected for the caller."""

    def _render(self, response: Any, events: list[Event]) -> None:
        return None

    def _finish(self) -> None:
        return None


def is_terminal(out: TextIO) -> bool:
    isatty = getattr(out, "isatty", None)
    try:
        return bool(isatty and isatty()) and os.environ.get("TERM", "") != "dumb"
    except ValueError:  # closed stream
        return False


def make_progress(mode: str, out: TextIO | None = None, *, prefix: str = "") -> ProgressWriter:
    """A writer for ``--progress=<mode>`` writing to ``out`` (default: standard error)."""
    name = mode.strip().lower()
    reject_unknown([name], PROGRESS_MODES, what="progress mode")
    stream = out if out is not None else sys.stderr
    if name in ("auto", "tty"):
        name = "tty" if is_terminal(stream) else "plain"
    if name == "quiet":
        return QuietWriter(stream, prefix=prefix)
    if name == "rawjson":
        from pybuildx.buildkit.progress_rawjson import RawJsonWriter

        return RawJsonWriter(stream, prefix=prefix)
    if name == "tty":
        from pybuildx.buildkit.progress_tty import TtyWriter

        return TtyWriter(stream, prefix=prefix)
    from pybuildx.buildkit.progress_plain import PlainWriter

    return PlainWriter(stream, prefix=prefix)
