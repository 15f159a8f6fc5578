"""Paths, pinned versions, process helpers and the state file of the ci/kube cluster."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# A release whose kubelet still runs on cgroup v1 and speaks CRI v1 to Debian's containerd 1.6.
KUBE_VERSION = "v1.31.14"

CACHE = Path(os.environ.get("PYBUILDX_CACHE", "/var/cache/pybuildx"))
KUBE_BIN = CACHE / f"kube-{KUBE_VERSION}" / "bin"
BUILDKIT_BIN = CACHE / "buildkit-v0.18.2" / "bin"
IMAGES_CACHE = CACHE / "images"

RUN = Path("/run/pybuildx-kube")  # pids, sockets, state.json
LIB = Path("/var/lib/pybuildx-kube")  # etcd data, certificates, containerd roots, kubelet dirs
LOGS = LIB / "logs"
PKI = LIB / "pki"
STATE_FILE = RUN / "state.json"
HERE = Path(__file__).resolve().parent

API_PORT = 16443
ETCD_CLIENT_PORT = 12379
ETCD_PEER_PORT = 12380
SERVICE_CIDR = "10.96.0.0/16"

# Nodes live in their own network namespaces, joined to the host by a bridge on a private range
# that has no route anywhere else (no default route in any namespace, no masquerade).
BRIDGE = "pbxkube0"
BRIDGE_ADDR = "10.213.0.1"
NODE_PREFIX = 24

# The bed's plain registry (host 127.0.0.1:5000) as pods see it: the same address on every node,
# a loopback alias of the node namespace, reached by pods through a /32 route (no default route).
REGISTRY_PORT = 5000
POD_REGISTRY_ADDR = "10.215.0.1"

NAMESPACE = "pybuildx-test"
BUILDER_SA = "pybuildx-builder"
PAUSE_IMAGE = "localhost/pybuildx/pause:v1"
BUILDKIT_IMAGE = "localhost/pybuildx/buildkit:v0.18.2"


@dataclass(frozen=True)
class NodeSpec:
    name: str
    pool: str
    address: str
    pod_cidr: str

    @property
    def netns(self) -> str:
        return f"pbxk-{self.pool}"

    @property
    def dir(self) -> Path:
        return LIB / "nodes" / self.name

    @property
    def containerd_sock(self) -> Path:
        return RUN / self.name / "containerd.sock"

    @property
    def cgroup_root(self) -> str:
        return f"/pybuildx-kube-{self.pool}"

    @property
    def labels(self) -> dict[str, str]:
        return {"pybuildx.test/pool": self.pool}


NODES = (
    NodeSpec("pbx-node-a", "a", "10.213.0.11", "10.214.1.0/24"),
    NodeSpec("pbx-node-b", "b", "10.213.0.12", "10.214.2.0/24"),
)


class KubeBedError(Exception):
    """A step of ci/kube failed; the message says which and where to look."""


def log(message: str) -> None:
    print(f"[kube {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(
    argv: Sequence[str],
    *,
    capture: bool = False,
    check: bool = True,
    input_text: str | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        list(argv),
        text=True,
        input=input_text,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE if capture else None,
        check=False,
    )
    if check and proc.returncode != 0:
        detail = (proc.stderr or "").strip()[-2000:] if capture else ""
        raise KubeBedError(f"command failed ({proc.returncode}): {shlex.join(argv)}\n{detail}")
    return proc


def in_netns(netns: str, argv: Sequence[str]) -> list[str]:
    """argv run inside a network namespace only (`ip netns exec` would also remount /sys and
    hide the cgroup mounts the kubelet and runc need)."""
    return ["nsenter", f"--net=/run/netns/{netns}", "--", *argv]


def spawn(name: str, argv: Sequence[str]) -> int:
    """Start a daemon detached from our session, log to LOGS/<name>.log, remember its pid."""
    LOGS.mkdir(parents=True, exist_ok=True)
    RUN.mkdir(parents=True, exist_ok=True)
    with (LOGS / f"{name}.log").open("ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    (RUN / f"{name}.pid").write_text(f"{proc.pid}\n")
    return proc.pid


def pid_of(name: str) -> int | None:
    try:
        return int((RUN / f"{name}.pid").read_text())
    except (OSError, ValueError):
        return None


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def stop(name: str, timeout: float = 15.0) -> None:
    pid = pid_of(name)
    if pid_alive(pid):
        assert pid is not None
        log(f"stopping {name} (pid {pid})")
        kill_and_wait(pid, timeout)
    (RUN / f"{name}.pid").unlink(missing_ok=True)


def kill_and_wait(pid: int, timeout: float = 15.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.2)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return


def wait_for(what: str, probe: Callable[[], bool], timeout: float, log_name: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.5)
    hint = f"; see {LOGS / (log_name + '.log')}" if log_name else ""
    raise KubeBedError(f"{what} not ready within {timeout:.0f} s{hint}")


def tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not "taken"
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def load_state() -> dict[str, object]:
    try:
        data = json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_state(state: Mapping[str, object]) -> None:
    RUN.mkdir(parents=True, exist_ok=True)
    tmp = STATE_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    tmp.chmod(0o644)
    tmp.replace(STATE_FILE)


def write_private(path: Path, text: str) -> None:
    """Write a credential: 0600 from the first byte, in a 0700 directory."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
