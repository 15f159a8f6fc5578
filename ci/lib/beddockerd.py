"""Debian's dockerd 20.10 on its own socket and data dirs, host networking only."""

from __future__ import annotations

import json
import shutil
from typing import Any

from bedcommon import (
    LIB,
    LOGS,
    RUN,
    BedError,
    child_exited,
    find_pid,
    log,
    pid_alive,
    run,
    spawn,
    stop_pid,
    unix_open,
    wait_for,
)

DOCKER_SOCKET = RUN / "docker.sock"
DOCKER_HOST = f"unix://{DOCKER_SOCKET}"
EXEC_ROOT = RUN / "docker-exec"
DOCKER_CLI = "/usr/bin/docker"  # Debian's 20.10 client, matching the daemon


def docker(*args: str, capture: bool = True, check: bool = True) -> str:
    return run([DOCKER_CLI, "-H", DOCKER_HOST, *args], capture=capture, check=check).stdout or ""


def _server_version() -> str | None:
    proc = run(
        [DOCKER_CLI, "-H", DOCKER_HOST, "version", "--format", "{{.Server.Version}}"],
        capture=True,
        check=False,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def ensure_dockerd(state: dict[str, Any], images: list[str]) -> dict[str, Any]:
    old = state.get("dockerd", {})
    home = LIB / "docker"
    config = home / "daemon.json"
    log_file = LOGS / "dockerd.log"
    pid = old.get("pid")
    if not pid_alive(pid, DOCKER_HOST):
        pid = find_pid(DOCKER_HOST)
    if not (pid_alive(pid, DOCKER_HOST) and _server_version()):
        stop_pid(pid, "dockerd", DOCKER_HOST, timeout=30)
        home.mkdir(parents=True, exist_ok=True)
        # An empty config keeps /etc/docker/daemon.json (if any) out of the bed.
        config.write_text(json.dumps({}) + "\n")
        DOCKER_SOCKET.unlink(missing_ok=True)
        log("starting dockerd")
        pid = spawn(
            [
                "dockerd",
                "--host", DOCKER_HOST,
                "--config-file", str(config),
                "--data-root", str(home / "data"),
                "--exec-root", str(EXEC_ROOT),
                "--pidfile", str(RUN / "docker.pid"),
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-masq=false",
            ],
            log_file,
        )  # fmt: skip
        wait_for(
            "dockerd",
            lambda: unix_open(DOCKER_SOCKET) and _server_version() is not None,
            60,
            log_file,
        )
        if child_exited(pid):
            raise BedError(f"dockerd exited; see {log_file}")
    version = _server_version()
    if version is None:
        raise BedError(f"dockerd does not answer on {DOCKER_HOST}; see {log_file}")
    present = set(docker("images", "--format", "{{.Repository}}:{{.Tag}}").split())
    for ref in images:
        if ref not in present:
            log(f"docker pull {ref}")
            docker("pull", "-q", ref)
    return {
        "pid": pid,
        "host": DOCKER_HOST,
        "version": version,
        "log": str(log_file),
        "images": images,
    }


def stop_dockerd(state: dict[str, Any]) -> None:
    stop_pid(state.get("dockerd", {}).get("pid"), "dockerd", DOCKER_HOST, timeout=30)
    DOCKER_SOCKET.unlink(missing_ok=True)
    shutil.rmtree(EXEC_ROOT, ignore_errors=True)
