"""The local driver and the embedded default builder: the README's main job, teardown on failure
and on SIGTERM, and named local builders that outlive one process."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.builders_help import (
    EXAMPLE,
    INDEX_TYPES,
    ci_build,
    cli_env,
    fetch_manifest,
    index_platforms,
    leftovers,
    processes_mentioning,
    require_buildkitd,
    unique_ref,
)
from tests.integration.buildhelp import make_context
from tests.testbed import AuthRegistry

pytestmark = pytest.mark.integration


def test_readme_main_job_pushes_a_multi_platform_index(
    tmp_path: Path, registry: str, busybox: str
) -> None:
    """ci-build build --platform linux/amd64,linux/arm64 --push -t REF examples/hello."""
    require_buildkitd()
    ref = unique_ref(registry)
    env = cli_env(tmp_path)
    metadata = tmp_path / "metadata.json"
    result = ci_build(
        "build", "--platform", "linux/amd64,linux/arm64", "--push", "-t", ref,
        "--metadata-file", metadata, EXAMPLE, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    manifest, digest = fetch_manifest(ref)
    assert manifest["mediaType"] in INDEX_TYPES
    assert index_platforms(manifest) == {"linux/amd64", "linux/arm64"}
    assert digest in result.stdout + result.stderr
    # What build-push-action reads back: the digest, and the build record as builder/node/ref.
    written = json.loads(metadata.read_text())
    assert written["containerimage.digest"] == digest
    builder, node, solve_ref = written["buildx.build.ref"].split("/")
    assert (builder, node) == ("default", "default0") and solve_ref
    assert leftovers(tmp_path) == []


def test_failed_build_still_tears_the_default_builder_down(tmp_path: Path, registry: str) -> None:
    require_buildkitd()
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {registry}/pybuildx-builders/missing:nope\n")
    env = cli_env(tmp_path)
    result = ci_build("build", context, env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error:") or "\nerror:" in result.stderr
    assert leftovers(tmp_path) == []


def _wait_for(predicate: Callable[[], object], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def _interrupted_build(tmp_path: Path, busybox: str, sig: signal.Signals) -> tuple[int, str, str]:
    """A build on the embedded builder, sent ``sig`` once its RUN step runs below the spawned
    daemon: (exit code, stderr, the RUN step's command)."""
    require_buildkitd()
    context = tmp_path / "ctx"
    context.mkdir()
    # A duration of its own, so that other test runs' sleeps are not mistaken for ours.
    sleep = f"sleep {600 + random.randrange(10_000)}"
    (context / "Dockerfile").write_text(f"FROM {busybox}\nRUN {sleep}\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "pybuildx", "build", "--progress", "plain", str(context)],
        env=cli_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        started = _wait_for(lambda: processes_mentioning(sleep) or process.poll() is not None, 120)
        assert started and process.poll() is None, process.communicate()[1][-3000:]
        assert any("buildkitd" in p for p in processes_mentioning(str(tmp_path / "tmp")))
        process.send_signal(sig)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, stderr, sleep


def test_sigterm_stops_the_spawned_buildkitd_and_removes_its_files(
    tmp_path: Path, busybox: str
) -> None:
    returncode, stderr, sleep = _interrupted_build(tmp_path, busybox, signal.SIGTERM)
    assert returncode == 143  # 128 + SIGTERM, as a shell reports it
    assert "Traceback" not in stderr
    assert "SIGTERM received" in stderr
    assert stderr.rstrip().splitlines()[-1] == "error: terminated by SIGTERM"
    assert processes_mentioning(str(tmp_path / "tmp")) == []
    assert processes_mentioning(sleep) == []
    assert leftovers(tmp_path) == []


def test_ctrl_c_prints_one_line_exits_130_and_removes_the_default_builder(
    tmp_path: Path, busybox: str
) -> None:
    """SIGINT during a build on the embedded builder: teardown, then ``error: interrupted``."""
    returncode, stderr, sleep = _interrupted_build(tmp_path, busybox, signal.SIGINT)
    assert returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "Aborted" not in stderr
    assert stderr.rstrip().splitlines()[-1] == "error: interrupted"
    assert stderr.count("error:") == 1
    assert processes_mentioning(str(tmp_path / "tmp")) == []
    assert processes_mentioning(sleep) == []
    assert leftovers(tmp_path) == []


def test_named_local_builder_outlives_the_command_until_rm(tmp_path: Path) -> None:
    require_buildkitd()
    env = cli_env(tmp_path)
    created = ci_build(
        "builder", "create", "--name", "loc", "--driver", "local", "--bootstrap", "--use", env=env
    )
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == "loc"
    state = tmp_path / "config" / "state" / "loc" / "loc0"
    try:
        listed = ci_build("builder", "ls", "--format", "json", env=env)
        assert listed.returncode == 0, listed.stderr
        (entry,) = [json.loads(line) for line in listed.stdout.splitlines()]
        assert entry["Name"] == "loc" and entry["Current"] is True
        (node,) = entry["Nodes"]
        assert node["Status"] == "running"
        assert node["Version"]
        assert {"architecture": "amd64", "os": "linux"} in node["Platforms"]
        assert processes_mentioning(str(state))
        context = make_context(tmp_path / "ctx", "FROM scratch\nCOPY Dockerfile /\n")
        built = ci_build("build", context, env=env)  # the current builder, not the default
        assert built.returncode == 0, built.stderr
        assert processes_mentioning(str(state)), "the named builder's daemon must keep running"
    finally:
        removed = ci_build("builder", "rm", "loc", env=env)
    assert removed.returncode == 0, removed.stderr
    assert processes_mentioning(str(state)) == []
    assert not state.exists()
    assert ci_build("builder", "ls", "--format", "json", env=env).stdout.strip() == ""


def test_two_node_builder_merges_per_node_pushes_into_one_index(
    tmp_path: Path, registry: str
) -> None:
    """One node per platform (pinned), both push by digest, the client PUTs one index."""
    require_buildkitd()
    env = cli_env(tmp_path)
    create = ["builder", "create", "--name", "duo", "--driver", "local"]
    assert ci_build(*create, "--platform", "linux/amd64", env=env).returncode == 0
    assert ci_build(*create, "--append", "--platform", "linux/arm64", env=env).returncode == 0
    context = make_context(tmp_path / "ctx", "FROM scratch\nCOPY Dockerfile /\n")
    ref = unique_ref(registry, "duo")
    state = tmp_path / "config" / "state" / "duo"
    try:
        built = ci_build(
            "build", "--builder", "duo", "--platform", "linux/amd64,linux/arm64", "--push",
            "-t", ref, context, env=env,
        )  # fmt: skip
        assert built.returncode == 0, built.stderr
        # Each pinned platform was built by its own daemon.
        assert len({p for p in processes_mentioning(str(state)) if "buildkitd" in p}) == 2
    finally:
        removed = ci_build("builder", "rm", "duo", env=env)
    assert removed.returncode == 0, removed.stderr
    manifest, digest = fetch_manifest(ref)
    assert manifest["mediaType"] in INDEX_TYPES
    assert index_platforms(manifest) == {"linux/amd64", "linux/arm64"}
    assert digest in built.stdout + built.stderr
    assert processes_mentioning(str(state)) == []


def test_default_builder_takes_its_daemon_config_from_the_environment(
    tmp_path: Path, auth_registry: AuthRegistry, docker_config: Path
) -> None:
    """A private registry with its own CA: PYBUILDX_BUILDKITD_CONFIG reaches the default daemon."""
    require_buildkitd()
    config = tmp_path / "buildkitd.toml"
    # 127.0.0.1 registries get plain HTTP unless the config says otherwise.
    config.write_text(
        f'[registry."{auth_registry.host}"]\n  http = false\n  ca = ["{auth_registry.ca}"]\n'
    )
    context = make_context(tmp_path / "ctx", "FROM scratch\nCOPY Dockerfile /\n")
    ref = f"{auth_registry.host}/pybuildx-builders/envconfig:{random.randrange(10**9)}"
    env = cli_env(tmp_path, DOCKER_CONFIG=str(docker_config), PYBUILDX_BUILDKITD_CONFIG=str(config))
    built = ci_build("build", "--push", "-t", ref, context, env=env)
    assert built.returncode == 0, built.stderr
    assert "sha256:" in built.stdout
    assert leftovers(tmp_path) == []


def test_a_failing_node_cancels_the_other_nodes_solve(tmp_path: Path, busybox: str) -> None:
    """buildx lets the other nodes run to the end; we cancel them as soon as one node fails."""
    require_buildkitd()
    env = cli_env(tmp_path)
    create = ["builder", "create", "--name", "split", "--driver", "local"]
    assert ci_build(*create, "--platform", "linux/amd64", env=env).returncode == 0
    assert ci_build(*create, "--append", "--platform", "linux/arm64", env=env).returncode == 0
    sleep = f"sleep {20_000 + random.randrange(10_000)}"
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(
        f"FROM {busybox}\n"
        f'RUN if [ "$(uname -m)" = aarch64 ]; then sleep 2; exit 3; else {sleep}; fi\n'
    )
    try:
        built = ci_build(
            "build", "--builder", "split", "--platform", "linux/amd64,linux/arm64", context,
            env=env, timeout=600,
        )  # fmt: skip
        assert built.returncode == 1
        assert "exit code: 3" in built.stderr
        assert "Traceback" not in built.stderr
        # The amd64 node's RUN step was cancelled, not left running in its daemon.
        assert _wait_for(lambda: not processes_mentioning(sleep), 60), processes_mentioning(sleep)
    finally:
        assert ci_build("builder", "rm", "split", env=env).returncode == 0


def _buildkitd_pids(state: Path) -> list[int]:
    return [int(p.split(":")[0]) for p in processes_mentioning(str(state)) if "buildkitd" in p]


def test_stop_keeps_the_cache_and_inspect_bootstrap_restarts(tmp_path: Path) -> None:
    require_buildkitd()
    env = cli_env(tmp_path)
    created = ci_build(
        "builder", "create", "--name", "halt", "--driver", "local", "--bootstrap", env=env
    )
    assert created.returncode == 0, created.stderr
    state = tmp_path / "config" / "state" / "halt" / "halt0"
    try:
        (first,) = _buildkitd_pids(state)
        stopped = ci_build("builder", "stop", "halt", env=env)
        assert stopped.returncode == 0, stopped.stderr
        assert "stopped buildkitd" in stopped.stderr
        assert _wait_for(lambda: not _buildkitd_pids(state), 30)
        assert (state / "root").is_dir(), "stop must keep the daemon's state"
        listed = ci_build("builder", "ls", "--format", "json", env=env)
        (entry,) = [json.loads(line) for line in listed.stdout.splitlines()]
        assert entry["Nodes"][0]["Status"] == "stopped"
        restarted = ci_build("builder", "inspect", "--bootstrap", "halt", env=env)
        assert restarted.returncode == 0, restarted.stderr
        assert "running" in restarted.stdout and "BuildKit version:" in restarted.stdout
        (second,) = _buildkitd_pids(state)
        assert second != first
    finally:
        removed = ci_build("builder", "rm", "halt", env=env)
    assert removed.returncode == 0, removed.stderr
    assert _buildkitd_pids(state) == []


def test_rm_keep_daemon_leaves_buildkitd_running_and_says_how_to_stop_it(tmp_path: Path) -> None:
    require_buildkitd()
    env = cli_env(tmp_path)
    created = ci_build(
        "builder", "create", "--name", "keep", "--driver", "local", "--bootstrap", env=env
    )
    assert created.returncode == 0, created.stderr
    state = tmp_path / "config" / "state" / "keep" / "keep0"
    (pid,) = _buildkitd_pids(state)
    try:
        removed = ci_build("builder", "rm", "--keep-daemon", "keep", env=env)
        assert removed.returncode == 0, removed.stderr
        assert "keep removed" in removed.stderr
        assert f"kill {pid}" in removed.stderr
        assert _buildkitd_pids(state) == [pid]
        assert ci_build("builder", "ls", "--format", "json", env=env).stdout.strip() == ""
    finally:
        # As the message says; the daemon is ours to stop now.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        _wait_for(lambda: not _buildkitd_pids(state), 30)
        subprocess.run(
            ["umount", "-R", "-l", str(state / "root")], check=False, capture_output=True
        )
    assert _buildkitd_pids(state) == []
