"""Two registries from Debian's docker-registry: plain HTTP, and TLS + htpasswd (bcrypt)."""

from __future__ import annotations

import secrets
import ssl
from pathlib import Path
from typing import Any

from bedcommon import (
    AUTH_REGISTRY_PORT,
    LIB,
    LOGS,
    PLAIN_REGISTRY_PORT,
    BedError,
    child_exited,
    find_pid,
    http_status,
    log,
    pid_alive,
    run,
    spawn,
    stop_pid,
    wait_for,
)

AUTH_USER = "pybuildx"
REGISTRY_BIN = "/usr/bin/docker-registry"


def _config(
    name: str, port: int, tls: dict[str, str] | None, htpasswd: Path | None
) -> tuple[Path, bool]:
    """Write the registry's config; return its path and whether it changed."""
    root = LIB / f"registry-{name}"
    lines = [
        "version: 0.1",
        "log:",
        "  level: info",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {root / 'data'}",
        "  delete:",
        "    enabled: true",
        "http:",
        f"  addr: 127.0.0.1:{port}",
    ]
    if tls:
        lines += ["  tls:", f"    certificate: {tls['cert']}", f"    key: {tls['key']}"]
    if htpasswd:
        lines += ["auth:", "  htpasswd:", "    realm: pybuildx-testbed", f"    path: {htpasswd}"]
    root.mkdir(parents=True, exist_ok=True)
    config, text = root / "config.yml", "\n".join(lines) + "\n"
    changed = not config.exists() or config.read_text() != text
    if changed:
        config.write_text(text)
    return config, changed


def _credentials() -> tuple[Path, Path]:
    """(htpasswd file, 0600 password file); the password is random and made once."""
    auth_dir = LIB / "registry-auth" / "secret"
    auth_dir.mkdir(parents=True, exist_ok=True)
    auth_dir.chmod(0o700)
    password_file, htpasswd = auth_dir / "password", auth_dir / "htpasswd"
    if not password_file.exists() or not htpasswd.exists():
        password = secrets.token_urlsafe(18)
        password_file.write_text(password)
        password_file.chmod(0o600)
        # -i reads the password from stdin: it never shows up in a process list.
        line = run(["htpasswd", "-niB", AUTH_USER], input_text=password, capture=True).stdout
        htpasswd.write_text(line.strip() + "\n")
        htpasswd.chmod(0o600)
    return htpasswd, password_file


def _start(
    name: str, written: tuple[Path, bool], old: dict[str, Any], probe_url: str, ctx: Any, ok: int
) -> dict[str, Any]:
    config, changed = written
    pid = old.get("pid")
    if not pid_alive(pid, str(config)):
        pid = find_pid(str(config))
    if pid and not changed and http_status(probe_url, ctx) == ok:
        return {"pid": pid, "log": str(LOGS / f"registry-{name}.log"), "config": str(config)}
    stop_pid(pid, f"registry {name}", str(config))
    log_file = LOGS / f"registry-{name}.log"
    log(f"starting registry {name}")
    pid = spawn([REGISTRY_BIN, "serve", str(config)], log_file)
    wait_for(f"registry {name}", lambda: http_status(probe_url, ctx) == ok, 30, log_file)
    if child_exited(pid):
        raise BedError(f"registry {name} exited (port taken by another process?); see {log_file}")
    return {"pid": pid, "log": str(log_file), "config": str(config)}


def ensure_registries(state: dict[str, Any], certs: dict[str, str]) -> dict[str, Any]:
    plain_old = state.get("registry", {})
    plain_cfg = _config("plain", PLAIN_REGISTRY_PORT, None, None)
    plain_url = f"http://127.0.0.1:{PLAIN_REGISTRY_PORT}/v2/"
    plain = _start("plain", plain_cfg, plain_old, plain_url, None, 200)
    plain["host"] = f"127.0.0.1:{PLAIN_REGISTRY_PORT}"

    htpasswd, password_file = _credentials()
    server = Path(certs["server"])
    tls = {"cert": str(server / "cert.pem"), "key": str(server / "key.pem")}
    auth_cfg = _config("auth", AUTH_REGISTRY_PORT, tls, htpasswd)
    auth_url = f"https://127.0.0.1:{AUTH_REGISTRY_PORT}/v2/"
    ctx = ssl.create_default_context(cafile=certs["ca"])
    auth = _start("auth", auth_cfg, state.get("auth_registry", {}), auth_url, ctx, 401)
    auth.update(
        host=f"127.0.0.1:{AUTH_REGISTRY_PORT}",
        ca=certs["ca"],
        username=AUTH_USER,
        password_file=str(password_file),
    )
    return {"registry": plain, "auth_registry": auth}


def stop_registries(state: dict[str, Any]) -> None:
    for key in ("registry", "auth_registry"):
        info = state.get(key, {})
        stop_pid(info.get("pid"), key, str(info.get("config")))
