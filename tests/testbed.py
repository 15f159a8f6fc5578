"""Fixtures for the ci/ test bed: buildkitd daemons, registries, dockerd, images.

The bed is started by `ci/testbed up` (never by these fixtures); they read its state file and check
that each component answers. A component that does not answer skips the test with the reason, or
fails it when PYBUILDX_REQUIRE_COMPONENTS=1 (CI), see `need`.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

STATE_FILE = Path(os.environ.get("PYBUILDX_TESTBED_STATE", "/run/pybuildx-testbed/state.json"))
DAEMON_NAMES = ("v0.18", "current")
UP_HINT = "start it with `sudo ci/testbed up`"

__all__ = [
    "DAEMON_NAMES",
    "AuthRegistry",
    "BedTLS",
    "BuildkitImage",
    "Daemon",
    "bed_daemon",
    "load_state",
    "need",
]


def need(condition: object, reason: str) -> None:
    """Skip the test unless condition holds (or fail it, with PYBUILDX_REQUIRE_COMPONENTS=1)."""
    if condition:
        return
    if os.environ.get("PYBUILDX_REQUIRE_COMPONENTS") == "1":
        pytest.fail(f"required component missing: {reason}", pytrace=False)
    pytest.skip(reason)


@dataclass(frozen=True)
class BedTLS:
    """Client side of the daemons' mutual TLS (same field names as pybuildx TLSFiles)."""

    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True)
class Daemon:
    name: str
    version: str
    unix_addr: str
    tcp_addr: str
    tls: BedTLS
    servername: str
    buildctl: str
    log: Path


@dataclass(frozen=True)
class AuthRegistry:
    host: str
    ca: Path
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class BuildkitImage:
    ref: str
    latest: str
    tarball: Path


def _unix_answers(address: str) -> bool:
    path = address.removeprefix("unix://")
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(2)
            sock.connect(path)
    except OSError:
        return False
    return True


def _tcp_answers(address: str) -> bool:
    host, _, port = address.removeprefix("tcp://").rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except (OSError, ValueError):
        return False


def _v2_status(url: str, context: ssl.SSLContext | None = None) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=3, context=context) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except OSError:
        return None


def _section(state: dict[str, Any], key: str, what: str) -> dict[str, Any]:
    info = state.get(key)
    need(isinstance(info, dict) and info, f"{what} is not in the test bed state; {UP_HINT}")
    assert isinstance(info, dict)
    return info


def load_state(path: Path, what: str, up_hint: str) -> dict[str, Any]:
    """A bed's state file; skip (or fail, see `need`) when it is missing or unreadable."""
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        state = None
    except (OSError, ValueError) as err:
        state = None
        need(False, f"{what} state {path} unreadable ({err}); {up_hint}")
    need(state, f"{what} is not up (no {path}); {up_hint}")
    assert isinstance(state, dict)
    return state


@pytest.fixture(scope="session")
def bed() -> dict[str, Any]:
    """The whole bed's state (see ci/README.md for its keys)."""
    return load_state(STATE_FILE, "test bed", UP_HINT)


def bed_daemon(bed: dict[str, Any], name: str) -> Daemon:
    """One named bed buildkitd (for a test that needs more than the `daemon` fixture's one)."""
    info = _section(bed.get("daemons", {}), name, f"buildkitd {name!r}")
    tls = info["tls"]
    daemon = Daemon(
        name=name,
        version=info["version"],
        unix_addr=info["unix_addr"],
        tcp_addr=info["tcp_addr"],
        tls=BedTLS(ca=Path(tls["ca"]), cert=Path(tls["cert"]), key=Path(tls["key"])),
        servername=info["servername"],
        buildctl=info["buildctl"],
        log=Path(info["log"]),
    )
    need(
        _unix_answers(daemon.unix_addr) and _tcp_answers(daemon.tcp_addr),
        f"buildkitd {name} ({daemon.version}) does not answer on {daemon.unix_addr} / "
        f"{daemon.tcp_addr}; see {daemon.log}, restart with `ci/testbed up`",
    )
    return daemon


@pytest.fixture(scope="session", params=DAEMON_NAMES)
def daemon(request: pytest.FixtureRequest, bed: dict[str, Any]) -> Daemon:
    """Each bed buildkitd in turn ("v0.18" = v0.18.2, "current" = the pinned latest release)."""
    return bed_daemon(bed, request.param)


@pytest.fixture(scope="session")
def current_daemon(bed: dict[str, Any]) -> Daemon:
    """Only the current buildkitd (for tests that need one daemon, not the matrix)."""
    return bed_daemon(bed, "current")


@pytest.fixture(scope="session")
def registry(bed: dict[str, Any]) -> str:
    """The plain HTTP registry, "127.0.0.1:5000"."""
    host = str(bed.get("registry", {}).get("host", "127.0.0.1:5000"))
    status = _v2_status(f"http://{host}/v2/")
    need(status == 200, f"registry http://{host}/v2/ answers {status}; {UP_HINT}")
    return host


@pytest.fixture(scope="session")
def auth_registry(bed: dict[str, Any]) -> AuthRegistry:
    """The TLS + htpasswd registry: its host, the bed CA, and the credentials it accepts."""
    info = _section(bed, "auth_registry", "the auth registry")
    try:
        password = Path(info["password_file"]).read_text().strip()
    except OSError as err:
        need(False, f"cannot read the auth registry password ({err}); run the tests as root")
    ctx = ssl.create_default_context(cafile=info["ca"])
    status = _v2_status(f"https://{info['host']}/v2/", ctx)
    need(status == 401, f"auth registry https://{info['host']}/v2/ answers {status}; {UP_HINT}")
    return AuthRegistry(
        host=info["host"], ca=Path(info["ca"]), username=info["username"], password=password
    )


@pytest.fixture(scope="session")
def dockerd(bed: dict[str, Any]) -> str:
    """The bed's dockerd 20.10 as a docker host URL (unix://...)."""
    host = bed.get("dockerd", {}).get("host")
    need(host, f"dockerd is not in the test bed state; {UP_HINT}")
    need(_unix_answers(host), f"dockerd does not answer on {host}; {UP_HINT}")
    return str(host)


@pytest.fixture(scope="session")
def busybox(bed: dict[str, Any], registry: str) -> str:
    """The multi-arch (amd64 + arm64) busybox image in the plain registry."""
    ref = bed.get("busybox")
    need(ref, f"the busybox image is not in the test bed state; {UP_HINT}")
    status = _v2_status(f"http://{registry}/v2/busybox/tags/list")
    need(status == 200, f"{ref} is missing from the registry; {UP_HINT}")
    return str(ref)


@pytest.fixture(scope="session")
def buildkit_image(bed: dict[str, Any], registry: str) -> BuildkitImage:
    """The locally made buildkit image (docker-container / kubernetes drivers) and its tarball."""
    info = _section(bed, "buildkit_image", "the buildkit image")
    image = BuildkitImage(ref=info["ref"], latest=info["latest"], tarball=Path(info["tarball"]))
    need(image.tarball.exists(), f"{image.tarball} is missing; {UP_HINT}")
    return image


@pytest.fixture
def docker_config(tmp_path: Path, auth_registry: AuthRegistry) -> Iterator[Path]:
    """A private DOCKER_CONFIG dir (0700, config.json 0600) with the auth registry's credentials."""
    import base64

    config_dir = tmp_path / "docker-config"
    config_dir.mkdir(mode=0o700)
    token = base64.b64encode(f"{auth_registry.username}:{auth_registry.password}".encode()).decode()
    config = config_dir / "config.json"
    config.touch(mode=0o600)
    config.write_text(json.dumps({"auths": {auth_registry.host: {"auth": token}}}))
    yield config_dir
    config.unlink(missing_ok=True)
