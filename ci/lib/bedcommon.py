"""Shared paths, pinned versions, subprocess helpers and the state file of the test bed."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cishared import poll, read_state, run_command, write_state

# Pinned versions: bump deliberately, the cache is keyed by them.
BUILDKIT_OLD = "v0.18.2"
BUILDKIT_CURRENT = "v0.34.2"  # latest release the Go proxy served on 2026-11-28
BUILDX_VERSION = "v0.38.2"

CACHE = Path(os.environ.get("PYBUILDX_CACHE", "/var/cache/pybuildx"))
RUN = Path("/run/pybuildx-testbed")  # sockets, pids, state: gone after a reboot, as they should be
LIB = Path("/var/lib/pybuildx-testbed")  # daemon roots, registry storage, certificates
STATE_FILE = RUN / "state.json"
LOGS = LIB / "logs"

GO_ENV = {
    "GOPATH": str(CACHE / "go"),
    "GOCACHE": str(CACHE / "go-build"),
    "GOFLAGS": "-buildvcs=false",
    "GOTOOLCHAIN": "local",
}

PLAIN_REGISTRY_PORT = 5000
AUTH_REGISTRY_PORT = 5443
DAEMON_TCP_PORTS = {"v0.18": 12318, "current": 12334}


def log(message: str) -> None:
    print(f"[testbed {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class BedError(Exception):
    """A step of the bed failed; the message says which and where to look."""


def run(argv: Sequence[str], **options: Any) -> subprocess.CompletedProcess[str]:
    """``cishared.run_command`` raising BedError; options: env, cwd, capture, check, input_text,
    nice."""
    return run_command(argv, error=BedError, **options)


def pid_alive(pid: int | None, marker: str) -> bool:
    """Whether pid runs and is ours: its command line contains marker (a path only the bed uses).

    After a reboot a recorded pid may belong to an unrelated process; the marker keeps us from
    mistaking it for a bed daemon, or from killing it.
    """
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    zombie = stat.rsplit(")", 1)[1].split()[0] == "Z"
    return not zombie and marker in cmdline


def spawn(argv: Sequence[str], log_file: Path, env: Mapping[str, str] | None = None) -> int:
    """Start a long-running daemon detached from our session; return its pid."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    return proc.pid


def find_pid(marker: str) -> int | None:
    """A running process of ours that lost its state entry (killed session, deleted state file)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and pid_alive(int(entry.name), marker):
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            # Skip shells/tools that merely mention the marker, e.g. `buildctl --addr <socket>`.
            if any(name in cmdline[0] for name in (b"buildkitd", b"registry", b"dockerd")):
                return int(entry.name)
    return None


def child_exited(pid: int) -> bool:
    """Whether a daemon we spawned in this run has already exited (reaps it)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done == pid


def stop_pid(pid: int | None, name: str, marker: str, timeout: float = 15.0) -> None:
    if not pid_alive(pid, marker):
        return
    assert pid is not None
    log(f"stopping {name} (pid {pid})")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid, marker):
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)


def wait_for(
    what: str, probe: Callable[[], bool], timeout: float, log_file: Path | None = None
) -> None:
    if poll(probe, timeout, interval=0.3):
        return
    hint = f"; see {log_file}" if log_file else ""
    raise BedError(f"{what} did not come up within {timeout:.0f} s{hint}")


def unix_open(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(1)
            sock.connect(str(path))
            return True
    except OSError:
        return False


def http_status(url: str, context: ssl.SSLContext | None = None) -> int | None:
    """Status of GET url (None when nothing answers). Loopback only."""
    request = urllib.request.Request(url, method="GET")
    try:
        with urllib.request.urlopen(request, timeout=3, context=context) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except OSError:
        return None


def load_state() -> dict[str, Any]:
    return read_state(STATE_FILE)


def save_state(state: Mapping[str, Any]) -> None:
    write_state(STATE_FILE, state)
