"""The two bed buildkitd daemons ("v0.18" and "current"): root, OCI worker, unix + mTLS tcp."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bedbinaries import buildkit_bin
from bedcommon import (
    AUTH_REGISTRY_PORT,
    BUILDKIT_CURRENT,
    BUILDKIT_OLD,
    DAEMON_TCP_PORTS,
    LIB,
    LOGS,
    PLAIN_REGISTRY_PORT,
    RUN,
    BedError,
    child_exited,
    find_pid,
    log,
    pid_alive,
    run,
    spawn,
    stop_pid,
)

DAEMON_VERSIONS = {"v0.18": BUILDKIT_OLD, "current": BUILDKIT_CURRENT}
SERVERNAME = "localhost"


def _config_toml(ca: str) -> str:
    auth, plain = AUTH_REGISTRY_PORT, PLAIN_REGISTRY_PORT
    lines = ["# Written by ci/lib/bedbuildkitd.py"]
    for host in ("127.0.0.1", "localhost"):
        # BuildKit talks plain HTTP to localhost registries unless `http = false` says otherwise.
        lines += [f'[registry."{host}:{auth}"]', "  http = false", f'  ca = ["{ca}"]']
        lines += [f'[registry."{host}:{plain}"]', "  http = true"]
    return "\n".join(lines) + "\n"


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _runs_current_binary(pid: int | None, binary: str) -> bool:
    """False when the binary was rebuilt (new pin or stamp) since the daemon started."""
    try:
        return Path(f"/proc/{pid}/exe").readlink() == Path(binary)
    except OSError:
        return False


def worker_platforms(buildctl: str, addr: str) -> str:
    """The `buildctl debug workers` table ("" when the daemon does not answer)."""
    proc = run([buildctl, "--addr", addr, "debug", "workers"], capture=True, check=False)
    return proc.stdout if proc.returncode == 0 else ""


def workers_answer(buildctl: str, addr: str) -> bool:
    return "linux/amd64" in worker_platforms(buildctl, addr)


def _launch(info: dict[str, Any], snapshotter: str, certs: dict[str, str]) -> int:
    server = Path(certs["server"])
    argv = [
        info["buildkitd"],
        "--config", info["config"],
        "--root", info["root"],
        "--addr", info["unix_addr"],
        "--addr", info["tcp_addr"],
        "--tlscacert", certs["ca"],
        "--tlscert", str(server / "cert.pem"),
        "--tlskey", str(server / "key.pem"),
        "--containerd-worker=false",
        "--oci-worker=true",
        f"--oci-worker-snapshotter={snapshotter}",
        "--oci-worker-net=host",
    ]  # fmt: skip
    return spawn(argv, Path(info["log"]))


def _wait(info: dict[str, Any], pid: int, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child_exited(pid):
            return False
        if workers_answer(info["buildctl"], info["unix_addr"]):
            return True
        time.sleep(0.5)
    return False


def ensure_daemon(name: str, old: dict[str, Any], certs: dict[str, str]) -> dict[str, Any]:
    version = DAEMON_VERSIONS[name]
    bindir = buildkit_bin(version)
    home = LIB / f"buildkitd-{name}"
    client = Path(certs["client"])
    info: dict[str, Any] = {
        "name": name,
        "version": version,
        "buildkitd": str(bindir / "buildkitd"),
        "buildctl": str(bindir / "buildctl"),
        "root": str(home / "root"),
        "config": str(home / "buildkitd.toml"),
        "unix_addr": f"unix://{RUN / f'buildkitd-{name}.sock'}",
        "tcp_addr": f"tcp://127.0.0.1:{DAEMON_TCP_PORTS[name]}",
        "tls": {
            "ca": str(client / "ca.pem"),
            "cert": str(client / "cert.pem"),
            "key": str(client / "key.pem"),
        },
        "servername": SERVERNAME,
        "log": str(LOGS / f"buildkitd-{name}.log"),
    }
    config_text = _config_toml(certs["ca"])
    pid = old.get("pid")
    if not pid_alive(pid, info["unix_addr"]):
        pid = find_pid(info["unix_addr"])
    if (
        pid_alive(pid, info["unix_addr"])
        and pid_alive(pid, str(Path(certs["server"]) / "cert.pem"))  # same certificates
        and _runs_current_binary(pid, info["buildkitd"])
        and _read(Path(info["config"])) == config_text
        # Emulated platforms are detected at start: a daemon started before binfmt lacks arm64.
        and "linux/arm64" in worker_platforms(info["buildctl"], info["unix_addr"])
    ):
        return {**info, "pid": pid, "snapshotter": old.get("snapshotter", "overlayfs")}
    stop_pid(pid, f"buildkitd {name}", info["unix_addr"])
    Path(info["root"]).mkdir(parents=True, exist_ok=True)
    RUN.mkdir(parents=True, exist_ok=True)
    Path(info["unix_addr"].removeprefix("unix://")).unlink(missing_ok=True)
    Path(info["config"]).write_text(config_text)
    for snapshotter in ("overlayfs", "native"):
        log(f"starting buildkitd {name} ({version}, {snapshotter})")
        pid = _launch(info, snapshotter, certs)
        if _wait(info, pid):
            return {**info, "pid": pid, "snapshotter": snapshotter}
        stop_pid(pid, f"buildkitd {name}", info["unix_addr"])
    raise BedError(f"buildkitd {name} did not answer `buildctl debug workers`; see {info['log']}")


def ensure_daemons(state: dict[str, Any], certs: dict[str, str]) -> dict[str, Any]:
    old = state.get("daemons", {})
    return {name: ensure_daemon(name, old.get(name, {}), certs) for name in DAEMON_VERSIONS}


def stop_daemons(state: dict[str, Any]) -> None:
    for name, info in state.get("daemons", {}).items():
        stop_pid(info.get("pid"), f"buildkitd {name}", str(info.get("unix_addr")))
        Path(str(info.get("unix_addr", "")).removeprefix("unix://")).unlink(missing_ok=True)
