"""A builder in use: its drivers, started on demand and in parallel, released or torn down after.

``ActiveBuilder`` is what the main job and ``builder inspect/du/prune`` hold. For an ephemeral
builder ``close()`` tears every node down; for a stored one it only releases client-side relays,
the daemons stay for the next run (``builder rm`` removes them).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc

from pybuildx import drivers
from pybuildx.builders.model import BuilderSpec
from pybuildx.builders.parallel import Job, run_all
from pybuildx.builders.store import Store
from pybuildx.buildkit.control import ControlClient, WorkerInfo
from pybuildx.config import Platform
from pybuildx.drivers.base import Driver
from pybuildx.errors import DriverError, PybuildxError, redact

__all__ = ["ActiveBuilder", "TeardownReport"]

_log = logging.getLogger(__name__)
_TEARDOWN_ATTEMPTS = 3
_TEARDOWN_TIMEOUT = 120.0


@dataclass(frozen=True)
class TeardownReport:
    failures: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # what the user must know: a daemon left running, a no-op stop


class ActiveBuilder:
    def __init__(self, spec: BuilderSpec, *, ephemeral: bool, store: Store | None = None) -> None:
        self.spec = spec
        self.ephemeral = ephemeral
        self._store = store
        self._drivers: list[Driver] = [
            drivers.new_driver(
                node,
                builder=spec.name,
                state_dir=None
                if ephemeral or store is None
                else store.state_dir(spec.name, node.name),
            )
            for node in spec.nodes
        ]
        self._booted: set[int] = set()
        self._channels: dict[int, grpc.Channel] = {}
        self._workers: dict[int, list[WorkerInfo]] = {}
        self._lock = threading.Lock()

    def driver(self, index: int) -> Driver:
        return self._drivers[index]

    def boot(self, indices: Sequence[int] | None = None) -> None:
        """Bootstrap the given nodes (default: all) concurrently; raise the first failure."""
        wanted = list(indices) if indices is not None else list(range(len(self._drivers)))
        todo = [i for i in wanted if i not in self._booted]
        jobs = [
            Job(f"boot-{self.spec.nodes[i].name}", functools.partial(self._boot_one, i))
            for i in todo
        ]
        run_all(jobs)

    def _boot_one(self, index: int) -> None:
        node = self.spec.nodes[index]
        try:
            self._drivers[index].bootstrap()
        except PybuildxError as exc:
            if len(self.spec.nodes) > 1:
                exc.message = f"node {node.name}: {exc.message}"
            raise
        with self._lock:
            self._booted.add(index)

    def channel(self, index: int) -> grpc.Channel:
        with self._lock:
            if index not in self._channels:
                self._channels[index] = self._drivers[index].dial()
            return self._channels[index]

    def workers(self, index: int) -> list[WorkerInfo]:
        if index not in self._workers:
            target = self.spec.nodes[index].name
            self._workers[index] = ControlClient(self.channel(index), target=target).list_workers()
        return self._workers[index]

    def platforms(self, index: int) -> list[Platform]:
        seen: dict[Platform, None] = {}
        for worker in self.workers(index):
            for platform in worker.platforms:
                seen.setdefault(platform, None)
        return list(seen)

    def close_channels(self) -> None:
        with self._lock:
            channels = list(self._channels.values())
            self._channels.clear()
        for channel in channels:
            with contextlib.suppress(Exception):
                channel.close()

    def close(self) -> TeardownReport:
        """Tear down (ephemeral) or release (stored) every node; bounded, retried, never raises."""
        return self._finish(teardown=self.ephemeral, keep_state=False)

    def remove(self, *, keep_state: bool = False, keep_daemon: bool = False) -> TeardownReport:
        """Tear every node down, stored or not (``builder rm``); ``keep_daemon`` only lets go."""
        if keep_daemon:
            return self._each_node("detach", lambda d: d.detach())
        return self._finish(teardown=True, keep_state=keep_state)

    def stop(self) -> TeardownReport:
        """Stop every node's daemon, keeping its state (``builder stop``)."""
        return self._each_node("stop", lambda d: d.stop())

    def _each_node(self, what: str, action: Callable[[Driver], str | None]) -> TeardownReport:
        jobs, failures = self._on_every_node(what, lambda i: action(self._drivers[i]))
        notes = tuple(str(job.result) for job in jobs if job.done and job.result)
        return TeardownReport(failures, notes)

    def _finish(self, *, teardown: bool, keep_state: bool) -> TeardownReport:
        _, failures = self._on_every_node(
            "teardown",
            functools.partial(self._teardown_one, teardown=teardown, keep_state=keep_state),
        )
        for failure in failures:
            _log.warning("teardown failed: %s", redact(failure))
        return TeardownReport(failures)

    def _on_every_node(
        self, what: str, action: Callable[[int], str | None]
    ) -> tuple[list[Job[str | None]], tuple[str, ...]]:
        """Run ``action(node index)`` on all nodes in parallel, bounded; never raises.

        Returns the jobs (for their results) and one message per node that failed or hung.
        """
        self.close_channels()
        jobs = [
            Job(f"{what}-{node.name}", functools.partial(action, i))
            for i, node in enumerate(self.spec.nodes)
        ]
        failures: list[str] = []
        try:
            run_all(jobs, timeout=_TEARDOWN_TIMEOUT)
        except TimeoutError as exc:
            failures.append(str(exc))
        except Exception:  # each job's own error is collected below
            pass
        failures += [f"{job.name}: {job.error}" for job in jobs if job.error is not None]
        return jobs, tuple(failures)

    def _teardown_one(self, index: int, teardown: bool, keep_state: bool) -> None:
        driver = self._drivers[index]
        if not teardown:
            driver.release()
            return
        last: Exception | None = None
        for attempt in range(_TEARDOWN_ATTEMPTS):
            try:
                driver.teardown(keep_state=keep_state)
                return
            except Exception as exc:
                last = exc
                time.sleep(0.5 * (attempt + 1))
        raise DriverError(str(last))
