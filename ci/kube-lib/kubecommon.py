"""Paths, pinned versions, process helpers and the state file of the ci/kube cluster."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The helpers ci/testbed shares with us live in ci/lib.
sys.path.append(str(Path(__file__).resolve().parent.parent / "lib"))

from cishared import poll, read_state, run_command, write_state
from cishared import tcp_open as tcp_open

# A release whose kubelet still runs on cgroup v1 and speaks CRI v1 to Debian's containerd 1.6.
KUBE_VERSION = "v1.31.14"

CACHE = Path(os.environ.get("PYBUILDX_CACHE", "/var/cache/pybuildx"))
KUBE_BIN = CACHE / f"kube-{KUBE_VERSION}" / "bin"
KUBECTL = str(KUBE_BIN / "kubectl")  # built with the server binaries, not taken from the machine
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


def run(argv: Sequence[str], **options: Any) -> subprocess.CompletedProcess[str]:
    """``cishared.run_command`` raising KubeBedError; options: env, capture, check, input_text."""
    return run_command(argv, error=KubeBedError, **options)


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
    if poll(probe, timeout, interval=0.5):
        return
    hint = f"; see {LOGS / (log_name + '.log')}" if log_name else ""
    raise KubeBedError(f"{what} not ready within {timeout:.0f} s{hint}")


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not "taken"
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def load_state() -> dict[str, Any]:
    return read_state(STATE_FILE)


def save_state(state: Mapping[str, Any]) -> None:
    write_state(STATE_FILE, state)


def write_private(path: Path, text: str) -> None:
    """Write a credential: 0600 from the first byte, in a 0700 directory."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
