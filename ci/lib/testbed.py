"""ci/testbed up|down|status: the offline test bed (buildkitd x2, registries, dockerd, QEMU).

Idempotent: `up` reuses what answers, restarts what is dead (stale pids after a reboot or a killed
session), builds only what the cache lacks. State lives in /run/pybuildx-testbed/state.json.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import ssl
import sys
import time
from collections.abc import Callable
from typing import Any

import bedbinaries
import bedbuildkitd
import bedcerts
import beddockerd
import bedimages
import bedqemu
import bedregistry
from bedcommon import (
    BUILDKIT_CURRENT,
    BUILDKIT_OLD,
    BUILDX_VERSION,
    RUN,
    STATE_FILE,
    BedError,
    http_status,
    load_state,
    log,
    pid_alive,
    save_state,
    unix_open,
)


def _step(state: dict[str, Any], label: str, action: Callable[[], Any]) -> Any:
    start = time.monotonic()
    result = action()
    state.setdefault("timings", {})[label] = round(time.monotonic() - start, 1)
    return result


def up() -> None:
    started = time.monotonic()
    state = load_state()
    state["timings"] = {}
    _step(state, "apt", bedbinaries.ensure_apt_packages)
    state["versions"] = {
        "buildkit_old": BUILDKIT_OLD,
        "buildkit_current": BUILDKIT_CURRENT,
        "buildx": BUILDX_VERSION,
        **bedbinaries.apt_versions(),
    }
    _step(state, "go:buildkit-current", bedbinaries.ensure_buildkit_current)
    _step(state, "go:buildkit-old", bedbinaries.ensure_buildkit_old)
    frontend = _step(state, "go:dockerfile-frontend", bedbinaries.ensure_dockerfile_frontend)
    state["dockerfile_frontend"] = str(frontend)
    buildx = _step(state, "go:buildx", bedbinaries.ensure_buildx)
    state["buildx"] = {"path": str(buildx), "version": BUILDX_VERSION} if buildx else None
    bedbinaries.put_current_on_path()

    arm64 = _step(state, "arm64-busybox", bedbinaries.arm64_busybox)
    state["qemu"] = {
        "arm64_flags": _step(state, "binfmt", lambda: bedqemu.ensure_arm64_binfmt(arm64))
    }
    certs = _step(state, "certs", bedcerts.ensure_certs)
    state["certs"] = certs
    save_state(state)

    state.update(_step(state, "registries", lambda: bedregistry.ensure_registries(state, certs)))
    save_state(state)
    state["daemons"] = _step(state, "buildkitd", lambda: bedbuildkitd.ensure_daemons(state, certs))
    save_state(state)

    builder = state["daemons"]["current"]["unix_addr"]
    registry = state["registry"]["host"]
    state["busybox"] = _step(
        state,
        "image:busybox",
        lambda: bedimages.ensure_busybox(builder, registry, state["auth_registry"], arm64),
    )
    state["buildkit_image"] = _step(
        state, "image:buildkit", lambda: bedimages.ensure_buildkit_image(builder, registry)
    )
    save_state(state)

    pulls = [state["busybox"], state["buildkit_image"]["ref"]]
    state["dockerd"] = _step(state, "dockerd", lambda: beddockerd.ensure_dockerd(state, pulls))
    state["timings"]["total"] = round(time.monotonic() - started, 1)
    state["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    save_state(state)
    log(f"bed is up in {state['timings']['total']} s; state in {STATE_FILE}")
    status()


def down() -> None:
    state = load_state()
    beddockerd.stop_dockerd(state)
    bedbuildkitd.stop_daemons(state)
    bedregistry.stop_registries(state)
    STATE_FILE.unlink(missing_ok=True)
    log("bed is down (caches and registry storage are kept)")


def _row(name: str, ok: bool, where: str, detail: str = "") -> bool:
    print(f"{name:<16} {'up' if ok else 'DOWN':<5} {where} {detail}".rstrip())
    return ok


def status() -> int:
    state = load_state()
    if not state:
        print(f"no state in {STATE_FILE}: run ci/testbed up")
        return 3
    ok = True
    for name, info in state.get("daemons", {}).items():
        answers = pid_alive(info.get("pid"), info["unix_addr"]) and bedbuildkitd.workers_answer(
            info["buildctl"], info["unix_addr"]
        )
        where = f"{info['unix_addr']} {info['tcp_addr']} (mTLS)"
        ok &= _row(f"buildkitd {name}", answers, where, f"{info['version']} pid {info.get('pid')}")
    plain = state.get("registry", {})
    plain_ok = http_status(f"http://{plain.get('host')}/v2/") == 200
    ok &= _row("registry", plain_ok, f"http://{plain.get('host')}")
    auth = state.get("auth_registry", {})
    auth_ok = False
    if auth:
        ctx = ssl.create_default_context(cafile=auth["ca"])
        auth_ok = http_status(f"https://{auth['host']}/v2/", ctx) == 401
    ok &= _row(
        "auth registry", auth_ok, f"https://{auth.get('host')}", f"user {auth.get('username')}"
    )
    dockerd = state.get("dockerd", {})
    docker_ok = pid_alive(dockerd.get("pid"), beddockerd.DOCKER_HOST)
    docker_ok = docker_ok and unix_open(beddockerd.DOCKER_SOCKET)
    ok &= _row("dockerd", docker_ok, str(dockerd.get("host")), f"version {dockerd.get('version')}")
    print(f"{'busybox':<16} {'':<5} {state.get('busybox')}")
    image = state.get("buildkit_image") or {}
    print(f"{'buildkit image':<16} {'':<5} {image.get('ref')} tar {image.get('tarball')}")
    buildx = state.get("buildx")
    built = f"{buildx['path']} {buildx['version']}" if buildx else "not built"
    print(f"{'buildx':<16} {'':<5} {built}")
    print(f"{'qemu arm64':<16} {'':<5} binfmt flags {state.get('qemu', {}).get('arm64_flags')}")
    print(f"{'state':<16} {'':<5} {STATE_FILE}")
    return 0 if ok else 3


def main() -> int:
    parser = argparse.ArgumentParser(prog="ci/testbed", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    args = parser.parse_args()
    if args.command == "status":
        return status()
    if os.geteuid() != 0:
        print("ci/testbed up/down must run as root (daemons, binfmt, apt)", file=sys.stderr)
        return 2
    RUN.mkdir(parents=True, exist_ok=True)
    with (RUN / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one up/down at a time; others wait
        try:
            up() if args.command == "up" else down()
        except BedError as err:
            print(f"ci/testbed {args.command} failed: {err}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
