"""Running a few blocking jobs at once on daemon threads, while the main thread stays interruptible.

``concurrent.futures`` joins its worker threads at interpreter exit, so a job stuck in a network
call would keep a cancelled ``ci-build`` alive; daemon threads do not. The main thread waits in
short slices so SIGINT/SIGTERM handlers run promptly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["Job", "run_all"]

T = TypeVar("T")
_WAIT_SLICE = 0.2


class Job(Generic[T]):
    def __init__(self, name: str, work: Callable[[], T]) -> None:
        self.name = name
        self._work = work
        self._done = threading.Event()
        self.result: T | None = None
        self.error: BaseException | None = None
        self.finished_at = 0.0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        try:
            self.result = self._work()
        except BaseException as exc:  # handed to the waiting thread
            self.error = exc
        finally:
            self.finished_at = time.monotonic()
            self._done.set()

    def start(self) -> Job[T]:
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    @property
    def done(self) -> bool:
        return self._done.is_set()


def run_all(
    jobs: Sequence[Job[T]],
    *,
    on_first_error: Callable[[], None] | None = None,
    timeout: float | None = None,
) -> list[T]:
    """Start every job, wait for all, then raise the error that happened first.

    ``on_first_error`` runs once, as soon as any job fails (e.g. to cancel the others' RPCs).
    With ``timeout``, jobs still running afterwards raise ``TimeoutError``.
    """
    for job in jobs:
        job.start()
    deadline = None if timeout is None else time.monotonic() + timeout
    cancelled = False
    while not all(job.done for job in jobs):
        if deadline is not None and time.monotonic() >= deadline:
            pending = ", ".join(job.name for job in jobs if not job.done)
            raise TimeoutError(f"still running after {timeout:g}s: {pending}")
        next(job for job in jobs if not job.done).wait(_WAIT_SLICE)
        if not cancelled and on_first_error and any(job.error for job in jobs if job.done):
            cancelled = True
            on_first_error()
    failed = sorted((job for job in jobs if job.error is not None), key=lambda j: j.finished_at)
    if failed:
        raise failed[0].error  # type: ignore[misc]
    return [job.result for job in jobs]  # type: ignore[misc]
