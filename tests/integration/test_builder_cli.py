"""``ci-build builder``: create/append/leave, ls/inspect/use/rm, input validation before anything is
created, and a store that concurrent ci-build processes do not corrupt."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pybuildx.builders.store import Store
from tests.integration.builders_help import ci_build, cli_env
from tests.testbed import Daemon

pytestmark = pytest.mark.integration


def _ls_json(env: dict[str, str]) -> list[dict[str, object]]:
    listed = ci_build("builder", "ls", "--format", "json", env=env)
    assert listed.returncode == 0, listed.stderr
    return [json.loads(line) for line in listed.stdout.splitlines()]


def test_create_ls_use_rm_on_a_bed_daemon(tmp_path: Path, current_daemon: Daemon) -> None:
    env = cli_env(tmp_path)
    created = ci_build(
        "builder", "create", "--name", "ci", "--driver", "remote", current_daemon.unix_addr,
        env=env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert ci_build("builder", "use", "ci", env=env).returncode == 0
    table = ci_build("builder", "ls", env=env)
    assert table.returncode == 0, table.stderr
    header, builder_row, node_row = table.stdout.splitlines()[:3]
    assert header.split() == ["NAME/NODE", "DRIVER/ENDPOINT", "STATUS", "BUILDKIT", "PLATFORMS"]
    assert builder_row.split() == ["ci*", "remote"]
    assert node_row.split()[:5] == ["\\_", "ci0", "\\_", current_daemon.unix_addr, "running"]
    (entry,) = _ls_json(env)
    assert entry["Current"] is True
    removed = ci_build("builder", "rm", env=env)  # the current builder
    assert removed.returncode == 0, removed.stderr
    assert "ci removed" in removed.stderr
    assert _ls_json(env) == []


def test_unknown_driver_opt_is_refused_before_anything_is_stored(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    created = ci_build(
        "builder", "create", "--name", "x", "--driver", "remote",
        "--driver-opt", "cacrt=/etc/ca.pem", "tcp://127.0.0.1:1234", env=env,
    )  # fmt: skip
    assert created.returncode == 2
    assert "unknown driver-opt" in created.stderr and "did you mean 'cacert'" in created.stderr
    assert Store(tmp_path / "config").list() == []


def test_existing_builder_needs_append_and_nodes_can_leave(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    base = ["builder", "create", "--name", "multi", "--driver", "remote"]
    assert ci_build(*base, "unix:///run/a.sock", env=env).returncode == 0
    again = ci_build(*base, "unix:///run/b.sock", env=env)
    assert again.returncode == 2 and "already exists" in again.stderr
    appended = ci_build(
        *base, "--append", "--platform", "linux/arm64", "unix:///run/b.sock", env=env
    )
    assert appended.returncode == 0, appended.stderr
    builder = Store(tmp_path / "config").load("multi")
    assert [(n.name, n.endpoint) for n in builder.nodes] == [
        ("multi0", "unix:///run/a.sock"),
        ("multi1", "unix:///run/b.sock"),
    ]
    left = ci_build("builder", "create", "--name", "multi", "--leave", "--node", "multi0", env=env)
    assert left.returncode == 0, left.stderr
    assert [n.name for n in Store(tmp_path / "config").load("multi").nodes] == ["multi1"]


def test_rm_all_inactive_keeps_running_builders(tmp_path: Path, current_daemon: Daemon) -> None:
    env = cli_env(tmp_path)
    create = ["builder", "create", "--driver", "remote", "--name"]
    assert ci_build(*create, "alive", current_daemon.unix_addr, env=env).returncode == 0
    assert ci_build(*create, "dead", f"unix://{tmp_path}/gone.sock", env=env).returncode == 0
    removed = ci_build("builder", "rm", "--all-inactive", env=env)
    assert removed.returncode == 0, removed.stderr
    assert [b.name for b in Store(tmp_path / "config").list()] == ["alive"]


def test_concurrent_ci_build_processes_do_not_corrupt_the_store(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    script = (
        "set -e\n"
        "for i in 1 2 3 4 5; do\n"
        '  "$PY" -m pybuildx builder create --append --name shared --driver remote '
        '"unix:///run/$W-$i.sock" >/dev/null\n'
        '  "$PY" -m pybuildx builder create --name "own-$W-$i" --driver remote '
        '"unix:///run/$W.sock" >/dev/null\n'
        '  "$PY" -m pybuildx builder rm "own-$W-$i" 2>/dev/null\n'
        "done\n"
    )
    workers = [
        subprocess.Popen(["sh", "-c", script], env={**env, "PY": sys.executable, "W": f"w{w}"})
        for w in range(3)
    ]
    for worker in workers:
        assert worker.wait(timeout=300) == 0
    store = Store(tmp_path / "config")
    assert [b.name for b in store.list()] == ["shared"]
    nodes = store.load("shared").nodes
    assert len(nodes) == 15 and len({n.name for n in nodes}) == 15
    assert sorted(p.name for p in (tmp_path / "config" / "builders").iterdir()) == ["shared.json"]
