"""``ci-build builder du`` and ``builder prune`` on a named local builder (never on the shared bed
daemons: their cache belongs to every other test run)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from pybuildx.buildkit._pb import control_pb2, control_pb2_grpc, worker_pb2
from tests.integration.builders_help import ci_build, cli_env, require_buildkitd

pytestmark = pytest.mark.integration


@pytest.fixture
def cached_builder(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A local builder with some cache records (a build with an uploaded context)."""
    require_buildkitd()
    env = cli_env(tmp_path)
    created = ci_build(
        "builder", "create", "--name", "cache", "--driver", "local", "--bootstrap", "--use",
        env=env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    try:
        context = tmp_path / "ctx"
        context.mkdir()
        (context / "payload.bin").write_bytes(os.urandom(300_000))
        (context / "Dockerfile").write_text("FROM scratch\nCOPY payload.bin /\n")
        built = ci_build("build", context, env=env)
        assert built.returncode == 0, built.stderr
        yield env
    finally:
        removed = ci_build("builder", "rm", "cache", env=env)
        assert removed.returncode == 0, removed.stderr


def _ci_build_no_tty(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pybuildx", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )


def test_du_lists_records_and_totals(cached_builder: dict[str, str]) -> None:
    shown = ci_build("builder", "du", env=cached_builder)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].split() == ["ID", "RECLAIMABLE", "SIZE", "LAST", "ACCESSED"]
    assert any(line.startswith("Reclaimable:") for line in lines)
    (total,) = [line for line in lines if line.startswith("Total:")]
    assert total.split()[1].endswith("kB") or total.split()[1].endswith("MB")
    verbose = ci_build(
        "builder", "du", "--verbose", "--filter", "type=source.local", env=cached_builder
    )
    assert verbose.returncode == 0, verbose.stderr
    assert "Type:" in verbose.stdout and "source.local" in verbose.stdout
    assert "Total:" not in verbose.stdout  # no summary for a filtered listing
    assert "regular" not in verbose.stdout.replace("Type:", "")


def test_prune_with_a_filter_removes_only_matching_records_without_a_prompt(
    cached_builder: dict[str, str],
) -> None:
    pruned = _ci_build_no_tty(
        "builder", "prune", "--filter", "type=source.local", env=cached_builder
    )
    assert pruned.returncode == 0, pruned.stderr
    assert "WARNING" not in pruned.stdout  # no terminal, no question
    (total,) = [line for line in pruned.stdout.splitlines() if line.startswith("Total:")]
    assert total.split()[1] != "0B"
    left = ci_build("builder", "du", "--verbose", env=cached_builder)
    assert "source.local" not in left.stdout
    again = _ci_build_no_tty(
        "builder", "prune", "--filter", "type=source.local", env=cached_builder
    )
    assert again.stdout.splitlines()[-1].split() == ["Total:", "0B"]


def test_prune_asks_on_a_terminal_and_does_nothing_when_told_no(
    cached_builder: dict[str, str],
) -> None:
    before = ci_build("builder", "du", env=cached_builder).stdout.splitlines()[1:]
    primary, secondary = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "pybuildx", "builder", "prune", "-a"],
            stdin=secondary,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cached_builder,
        )
        os.write(primary, b"n\n")
        out, err = process.communicate(timeout=120)
    finally:
        os.close(primary)
        os.close(secondary)
    assert process.returncode == 0, err
    assert "WARNING! This will remove all build cache" in out
    assert "Total:" not in out
    after = ci_build("builder", "du", env=cached_builder).stdout.splitlines()[1:]
    # The daemon lists records in no fixed order: compare which records exist, not their order.
    assert sorted(x.split()[0] for x in after if x) == sorted(x.split()[0] for x in before if x)


def test_prune_all_with_space_limits_on_a_current_daemon(cached_builder: dict[str, str]) -> None:
    pruned = _ci_build_no_tty(
        "builder", "prune", "-a", "-f", "--keep-storage", "0", "--max-used-space", "1g",
        "--min-free-space", "1m", env=cached_builder,
    )  # fmt: skip
    # Space limits only trim to the limits: the cache here is far below them.
    assert pruned.returncode == 0, pruned.stderr
    assert pruned.stdout.splitlines()[-1].startswith("Total:")
    both = _ci_build_no_tty(
        "builder", "prune", "-f", "--keep-storage", "1g", "--reserved-space", "1g",
        env=cached_builder,
    )  # fmt: skip
    assert both.returncode == 2 and "--keep-storage" in both.stderr


class FakeOldBuildkitd(control_pb2_grpc.ControlServicer):
    """A daemon that says it is BuildKit v0.16.0: the bed only runs v0.17+ releases."""

    def __init__(self) -> None:
        self.prune_calls = 0

    def Info(self, request: object, context: object) -> control_pb2.InfoResponse:
        version = worker_pb2.BuildkitVersion(package="github.com/moby/buildkit", version="v0.16.0")
        return control_pb2.InfoResponse(buildkitVersion=version)

    def Prune(self, request: object, context: grpc.ServicerContext) -> Iterator[object]:
        self.prune_calls += 1
        context.abort(grpc.StatusCode.INTERNAL, "must not be called")
        yield from ()


def test_space_limits_on_an_old_daemon_fail_clearly_before_pruning(tmp_path: Path) -> None:
    socket = tmp_path / "old.sock"
    fake = FakeOldBuildkitd()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    control_pb2_grpc.add_ControlServicer_to_server(fake, server)  # type: ignore[no-untyped-call]
    server.add_insecure_port(f"unix://{socket}")
    server.start()
    try:
        env = cli_env(tmp_path)
        created = ci_build(
            "builder", "create", "--name", "old", "--driver", "remote", f"unix://{socket}",
            env=env,
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        pruned = _ci_build_no_tty(
            "builder", "prune", "--builder", "old", "-f", "--min-free-space", "1g", env=env
        )
    finally:
        server.stop(None)
    assert pruned.returncode == 2, pruned.stderr
    assert pruned.stderr.startswith("error: --min-free-space needs BuildKit v0.17 or later")
    assert "old0 runs v0.16.0" in pruned.stderr
    assert fake.prune_calls == 0
