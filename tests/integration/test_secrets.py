"""--secret through the session Secrets service, on the real daemons.

Each RUN line carries a fresh token so that no test is answered from the build cache.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import pytest

from tests.integration.pushing import cli_env, run_build, scratch_context
from tests.testbed import Daemon

pytestmark = pytest.mark.integration

SECRET = "s3cr3t-" + uuid.uuid4().hex


def _context(tmp_path: Path, busybox: str, run: str) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {busybox}\nRUN {run}\n")
    return ctx


def _checked_run(secret_id: str) -> str:
    """A RUN that prints the secret (progress must hide it) and fails unless it matches."""
    digest = hashlib.sha256(SECRET.encode()).hexdigest()
    return (
        f"--mount=type=secret,id={secret_id},required=true echo {uuid.uuid4().hex} && "
        f"cat /run/secrets/{secret_id} && "
        f'test "$(sha256sum < /run/secrets/{secret_id} | cut -d" " -f1)" = "{digest}"'
    )


@pytest.mark.parametrize("source", ["file", "env"])
def test_secret_reaches_run_and_never_the_output(
    daemon: Daemon, busybox: str, tmp_path: Path, source: str
) -> None:
    env = cli_env(tmp_path / "home")
    if source == "file":
        secret_file = tmp_path / "token.txt"
        secret_file.write_text(SECRET)
        flag = f"id=tok,src={secret_file}"
    else:
        env["TEST_SECRET_TOKEN"] = SECRET
        flag = "id=tok,env=TEST_SECRET_TOKEN"
    ctx = _context(tmp_path, busybox, _checked_run("tok"))
    result = run_build(daemon, str(ctx), "--secret", flag, env=env)
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert "***" in result.stderr  # the cat printed it, and we masked it


def test_github_actions_gets_add_mask_commands(
    daemon: Daemon, busybox: str, tmp_path: Path
) -> None:
    env = cli_env(tmp_path / "home", GITHUB_ACTIONS="true", TEST_SECRET_TOKEN=SECRET)
    ctx = _context(tmp_path, busybox, _checked_run("tok"))
    result = run_build(daemon, str(ctx), "--secret", "id=tok,env=TEST_SECRET_TOKEN", env=env)
    assert result.returncode == 0, result.stderr
    assert f"::add-mask::{SECRET}" in result.stderr.splitlines()


@pytest.mark.parametrize("ci", ["github", "gitlab"])
def test_ci_notices_go_to_stderr_and_leave_a_stdout_result_intact(
    daemon: Daemon, tmp_path: Path, ci: str
) -> None:
    variable = {"github": "GITHUB_ACTIONS", "gitlab": "GITLAB_CI"}[ci]
    env = cli_env(tmp_path / "home", TEST_SECRET_TOKEN=SECRET, **{variable: "true"})
    ctx = scratch_context(tmp_path / "ctx", content=uuid.uuid4().hex)
    result = subprocess.run(
        [
            *(sys.executable, "-m", "pybuildx", "build", "--builder-addr", daemon.unix_addr),
            *("--progress", "plain", "--secret", "id=tok,env=TEST_SECRET_TOKEN"),
            *("-o", "type=tar,dest=-", str(ctx)),
        ],
        capture_output=True,
        env=env,
        timeout=300,
        check=False,
    )
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    with tarfile.open(fileobj=io.BytesIO(result.stdout)) as tar:
        assert tar.getnames() == ["hello.txt"]
    assert SECRET.encode() not in result.stdout
    if ci == "github":
        assert f"::add-mask::{SECRET}" in stderr.splitlines()
    else:
        assert "warning: GitLab cannot mask secrets at runtime" in stderr
        assert SECRET not in stderr


def test_unknown_required_secret_fails_clearly(
    daemon: Daemon, busybox: str, tmp_path: Path
) -> None:
    ctx = _context(tmp_path, busybox, _checked_run("missing"))
    result = run_build(daemon, str(ctx), env=cli_env(tmp_path / "home"))
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert "missing" in errors[0] and "not found" in errors[0]
    assert "Traceback" not in result.stderr


def test_unknown_optional_secret_is_simply_absent(
    daemon: Daemon, busybox: str, tmp_path: Path
) -> None:
    # NOT_FOUND from our service is what lets the daemon skip an optional secret mount.
    run = f"--mount=type=secret,id=absent echo {uuid.uuid4().hex} && ! test -s /run/secrets/absent"
    ctx = _context(tmp_path, busybox, run)
    result = run_build(daemon, str(ctx), env=cli_env(tmp_path / "home"))
    assert result.returncode == 0, result.stderr


def test_missing_secret_file_is_a_usage_error_before_building(
    daemon: Daemon, busybox: str, tmp_path: Path
) -> None:
    ctx = _context(tmp_path, busybox, "true")
    missing = tmp_path / "nope.txt"
    result = run_build(
        daemon, str(ctx), "--secret", f"id=tok,src={missing}", env=cli_env(tmp_path / "home")
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: secret 'tok': cannot read {missing}")
