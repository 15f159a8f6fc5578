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


def test_ls_groups_platforms_marks_static_ones_and_lists_errored_builders_last(
    tmp_path: Path, current_daemon: Daemon
) -> None:
    env = cli_env(tmp_path)
    create = ["builder", "create", "--name"]
    pinned = [*create, "zz", "--driver", "remote", "--platform", "linux/arm64"]
    assert ci_build(*pinned, current_daemon.unix_addr, env=env).returncode == 0
    # Sorted by name these would come first; their errors put them last.
    nodocker = {**env, "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    assert ci_build(*create, "aab", "--driver", "docker-container", env=nodocker).returncode == 0
    (tmp_path / "config" / "builders" / "aaa.json").write_text("{not json")

    table = ci_build("builder", "ls", env=nodocker)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    names = [line.split()[0] for line in lines[1:] if not line.startswith(" ")]
    assert names[0] == "zz" and set(names[1:]) == {"aaa", "aab"}
    (node_row,) = [line for line in lines if "zz0" in line]
    platforms = node_row.split("running", 1)[1].split(None, 1)[1]
    assert platforms.startswith("linux/arm64*, linux/amd64 (+")  # amd64 v2..v4 grouped
    assert "linux/amd64/v2" not in platforms
    assert "Cannot load builder aaa:" in table.stderr
    assert "Failed to get status for aab (aab0):" in table.stderr
    assert "Traceback" not in table.stderr

    untruncated = ci_build("builder", "ls", "--no-trunc", env=nodocker)
    (node_row,) = [line for line in untruncated.stdout.splitlines() if "zz0" in line]
    assert "linux/arm64*, linux/amd64, linux/amd64/v2" in node_row
    assert "(+" not in node_row


def test_ls_json_has_buildx_keys_and_errors(tmp_path: Path, current_daemon: Daemon) -> None:
    env = cli_env(tmp_path)
    created = ci_build(
        "builder", "create", "--name", "js", "--driver", "remote", current_daemon.unix_addr,
        env=env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    (tmp_path / "config" / "builders" / "broken.json").write_text("[]")
    entries = {e["Name"]: e for e in _ls_json(env)}
    js = entries["js"]
    assert set(js) >= {"Name", "Driver", "Nodes", "Current", "Dynamic"}
    (node,) = js["Nodes"]
    assert set(node) >= {"Name", "Endpoint", "Status", "Version", "IDs", "Platforms", "GCPolicy"}
    assert node["Status"] == "running" and node["Version"].startswith("v0.")
    assert {"architecture": "amd64", "os": "linux", "variant": "v2"} in node["Platforms"]
    assert node["Labels"]["org.mobyproject.buildkit.worker.executor"] == "oci"
    assert "Err" not in node
    assert entries["broken"]["Err"] and "Nodes" not in entries["broken"]


def test_inspect_shows_options_flags_version_labels_gc_policy_and_debug_features(
    tmp_path: Path, current_daemon: Daemon
) -> None:
    env = cli_env(tmp_path)
    created = ci_build(
        "builder", "create", "--name", "insp", "--driver", "remote",
        "--driver-opt", "default-load=true,timeout=20s", current_daemon.unix_addr, env=env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    local = ci_build(
        "builder", "create", "--name", "flags", "--driver", "local",
        "--buildkitd-flags", "--debug --allow-insecure-entitlement security.insecure", env=env,
    )  # fmt: skip
    assert local.returncode == 0, local.stderr

    shown = ci_build("builder", "inspect", "insp", env=env)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "Driver Options:" in text and 'default-load="true" timeout="20s"' in text
    assert "Status:" in text and "running" in text
    assert "BuildKit version:" in text and "Labels:" in text
    assert " org.mobyproject.buildkit.worker.executor:" in text
    assert "GC Policy rule#0:" in text and " Keep Duration:" in text
    assert "Features:" not in text
    debug = ci_build("builder", "inspect", "--debug", "insp", env=env)
    assert "Features:" in debug.stdout
    (feature,) = [x for x in debug.stdout.splitlines() if "Automatically load images" in x]
    assert feature.split()[-1] == "true"  # default-load=true

    flags = ci_build("builder", "inspect", "flags", env=env)
    assert flags.returncode == 0, flags.stderr
    (line,) = [x for x in flags.stdout.splitlines() if x.startswith("BuildKit daemon flags:")]
    assert line.split(":", 1)[1].split() == [
        "--debug",
        "--allow-insecure-entitlement",
        "security.insecure",
    ]
    assert "inactive" in flags.stdout


def test_rm_several_builders_reports_each_and_keeps_the_ones_that_failed(
    tmp_path: Path, current_daemon: Daemon
) -> None:
    env = cli_env(tmp_path)
    nodocker = {**env, "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    create = ["builder", "create", "--name"]
    assert (
        ci_build(*create, "one", "--driver", "remote", current_daemon.unix_addr, env=env).returncode
        == 0
    )
    assert (
        ci_build(*create, "two", "--driver", "remote", "unix:///run/x.sock", env=env).returncode
        == 0
    )
    assert ci_build(*create, "stuck", "--driver", "docker-container", env=nodocker).returncode == 0

    removed = ci_build("builder", "rm", "one", "stuck", "two", env=nodocker)
    assert removed.returncode == 1
    lines = removed.stderr.splitlines()
    assert "one removed" in lines and "two removed" in lines
    (failure,) = [x for x in lines if x.startswith("failed to remove stuck: ")]
    assert "Docker" in failure or "docker" in failure
    assert "Traceback" not in removed.stderr
    assert [b.name for b in Store(tmp_path / "config").list()] == ["stuck"]
    forced = ci_build("builder", "rm", "--force", "stuck", env=nodocker)
    assert forced.returncode == 0, forced.stderr
    assert Store(tmp_path / "config").list() == []


def test_stop_is_a_noop_with_a_note_for_the_remote_driver(
    tmp_path: Path, current_daemon: Daemon
) -> None:
    env = cli_env(tmp_path)
    created = ci_build(
        "builder", "create", "--name", "rem", "--driver", "remote", current_daemon.unix_addr,
        env=env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    stopped = ci_build("builder", "stop", "rem", env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert "does not manage its daemon" in stopped.stderr
    (entry,) = _ls_json(env)
    assert entry["Nodes"][0]["Status"] == "running"
