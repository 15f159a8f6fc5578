"""The session tunnel against real daemons: health-checked, private, closed cleanly, concurrent."""

from __future__ import annotations

import stat
import threading
import time
from pathlib import Path

import pytest

from pybuildx.buildkit.build import BuildResult
from pybuildx.buildkit.session import HEALTH_METHODS, Session
from tests.integration.buildhelp import build_on, channel_to, make_context
from tests.testbed import Daemon

pytestmark = pytest.mark.integration


def test_session_survives_health_checks_and_cleans_up(daemon: Daemon) -> None:
    with channel_to(daemon) as channel:
        session = Session(channel)
        with session:
            socket_path = session.socket_path
            assert socket_path is not None and socket_path.exists()
            assert stat.S_IMODE(socket_path.parent.stat().st_mode) == 0o700
            # The daemon checks health every few seconds and drops sessions that fail it.
            time.sleep(7)
            assert session.error is None
            metadata = session.metadata()
        assert not socket_path.parent.exists()
    assert ("x-docker-expose-session-uuid", session.id) in metadata
    methods = [v for k, v in metadata if k == "x-docker-expose-session-grpc-method"]
    assert set(HEALTH_METHODS) <= set(methods)


def test_concurrent_builds_on_one_daemon(daemon: Daemon, tmp_path: Path) -> None:
    results: dict[int, BuildResult | BaseException] = {}

    def one(index: int) -> None:
        context = make_context(
            tmp_path / f"ctx{index}", "FROM scratch\nCOPY f /\n", {"f": f"build {index}"}
        )
        try:
            _, results[index] = build_on(
                daemon, context=str(context), outputs=[f"type=local,dest={tmp_path}/out{index}"]
            )
        except BaseException as exc:  # reported below, with the build that failed
            results[index] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    failures = {i: r for i, r in results.items() if isinstance(r, BaseException)}
    assert not failures
    for index in range(4):
        assert (tmp_path / f"out{index}" / "f").read_text() == f"build {index}"
