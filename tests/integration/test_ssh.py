"""--ssh agent forwarding through the session SSH service, on the real daemons.

Inside the build, the host's real ``ssh-add -l`` (copied into the image with its libraries)
lists the keys of the forwarded agent: the key's unique comment proves the round trip.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.pushing import cli_env, run_build
from tests.testbed import Daemon, need

pytestmark = pytest.mark.integration


def _tool(name: str) -> str:
    path = shutil.which(name)
    need(path, f"{name} is missing (apt-get install openssh-client)")
    assert path is not None
    return path


@pytest.fixture
def ssh_key(tmp_path: Path) -> tuple[Path, str]:
    comment = f"pybuildx-test-{uuid.uuid4().hex[:10]}"
    key = tmp_path / "id_ed25519"
    subprocess.run(
        [_tool("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)],
        check=True,
        timeout=30,
    )
    return key, comment


@pytest.fixture
def agent(tmp_path: Path, ssh_key: tuple[Path, str]) -> Iterator[Path]:
    """A user's own ssh-agent holding the test key."""
    sock = tmp_path / "agent.sock"
    process = subprocess.Popen([_tool("ssh-agent"), "-D", "-a", str(sock)])
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert process.poll() is None and time.monotonic() < deadline, "ssh-agent failed"
            time.sleep(0.02)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run([_tool("ssh-add"), "-q", str(ssh_key[0])], env=env, check=True, timeout=30)
        yield sock
    finally:
        process.terminate()
        process.wait(timeout=10)


def _context(tmp_path: Path, busybox: str, mount: str) -> Path:
    """An image with the host's ssh-add and the shared libraries it needs."""
    need(platform.machine() == "x86_64", "the ssh-add copy is only tested on x86_64 hosts")
    ssh_add = Path(_tool("ssh-add")).resolve()
    ctx = tmp_path / "ctx"
    root = ctx / "sshroot"
    ldd = subprocess.check_output(["ldd", str(ssh_add)], text=True)
    libraries = re.findall(r"(/\S+\.so[.\d]*)", ldd)
    for source in [str(ssh_add), *libraries]:
        target = root / source.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(source).resolve(), target)
    (ctx / "Dockerfile").write_text(
        f"FROM {busybox}\nCOPY sshroot/ /\n"
        f"RUN --mount=type=ssh{mount} echo {uuid.uuid4().hex} && {ssh_add} -l\n"
    )
    return ctx


def test_default_agent_is_forwarded(
    daemon: Daemon, busybox: str, tmp_path: Path, agent: Path, ssh_key: tuple[Path, str]
) -> None:
    env = cli_env(tmp_path / "home", SSH_AUTH_SOCK=str(agent))
    result = run_build(daemon, str(_context(tmp_path, busybox, "")), "--ssh", "default", env=env)
    assert result.returncode == 0, result.stderr
    assert ssh_key[1] in result.stderr


def test_key_files_get_a_private_agent(
    daemon: Daemon, busybox: str, tmp_path: Path, ssh_key: tuple[Path, str]
) -> None:
    env = cli_env(tmp_path / "home")
    env.pop("SSH_AUTH_SOCK", None)
    ctx = _context(tmp_path, busybox, ",id=deploy")
    result = run_build(daemon, str(ctx), "--ssh", f"deploy={ssh_key[0]}", env=env)
    assert result.returncode == 0, result.stderr
    assert ssh_key[1] in result.stderr
    leftovers = [p for p in Path("/tmp").glob("pybuildx-ssh-*") if p.stat().st_uid == os.getuid()]
    assert not [p for p in leftovers if (p / "agent-0.sock").exists()]


def test_unforwarded_id_fails_clearly(
    daemon: Daemon, busybox: str, tmp_path: Path, agent: Path
) -> None:
    env = cli_env(tmp_path / "home", SSH_AUTH_SOCK=str(agent))
    ctx = _context(tmp_path, busybox, ",id=other,required=true")
    result = run_build(daemon, str(ctx), "--ssh", "default", env=env)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "other" in errors[0], result.stderr


def test_default_without_agent_is_a_usage_error(
    daemon: Daemon, busybox: str, tmp_path: Path
) -> None:
    env = cli_env(tmp_path / "home")
    env.pop("SSH_AUTH_SOCK", None)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {busybox}\n")
    result = run_build(daemon, str(ctx), "--ssh", "default", env=env)
    assert result.returncode == 2
    assert "SSH_AUTH_SOCK is not set" in result.stderr
