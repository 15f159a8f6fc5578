"""Pushing to the bed's TLS + htpasswd registry with each credential source, and the failures.

The daemon asks our session Auth service for credentials; these tests run the real CLI against
the real daemons and read the pushed manifests back with their own HTTP client.
"""

from __future__ import annotations

import contextlib
import json
import socket
import stat
import threading
from pathlib import Path

import pytest

from tests.integration.pushing import (
    RegistryReader,
    cli_env,
    free_port,
    run_build,
    scratch_context,
    unique_repo,
)
from tests.testbed import AuthRegistry, Daemon

pytestmark = pytest.mark.integration

HELPER = "pybuildxtest"


def _reader(auth_registry: AuthRegistry) -> RegistryReader:
    return RegistryReader(
        auth_registry.host, auth_registry.ca, auth_registry.username, auth_registry.password
    )


def _helper(bin_dir: Path, body: str) -> Path:
    """A real ``docker-credential-pybuildxtest`` executable; the lookup runs it from PATH."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / f"docker-credential-{HELPER}"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def _push_and_check(
    daemon: Daemon,
    auth_registry: AuthRegistry,
    tmp_path: Path,
    env: dict[str, str],
    *extra_args: str,
) -> None:
    repo = unique_repo()
    ref = f"{auth_registry.host}/{repo}:v1"
    metadata, iidfile = tmp_path / "meta.json", tmp_path / "iid"
    result = run_build(
        daemon,
        str(scratch_context(tmp_path / "ctx")),
        "-t",
        ref,
        "--push",
        "--platform",
        "linux/amd64",
        "--metadata-file",
        str(metadata),
        "--iidfile",
        str(iidfile),
        *extra_args,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert auth_registry.password not in result.stdout + result.stderr
    digest = result.stdout.strip().splitlines()[-1]
    served, _ = _reader(auth_registry).manifest(repo, "v1")
    assert served == digest
    # Default provenance (min, as buildx) makes even one platform an index.
    assert _reader(auth_registry).platforms(repo, "v1") == {"linux/amd64"}
    written = json.loads(metadata.read_text())
    assert written["containerimage.digest"] == digest
    assert written["containerimage.descriptor"]["digest"] == digest
    assert written["image.name"] == ref
    assert iidfile.read_text() == written.get("containerimage.config.digest", digest)


def test_push_with_docker_config_auths(
    daemon: Daemon, auth_registry: AuthRegistry, docker_config: Path, tmp_path: Path
) -> None:
    env = cli_env(tmp_path / "home", DOCKER_CONFIG=str(docker_config))
    _push_and_check(daemon, auth_registry, tmp_path, env)


@pytest.mark.parametrize(
    "source", ["registry-auth-flag", "registry-auth-variable", "gitlab-variables"]
)
def test_push_with_explicit_credentials(
    daemon: Daemon, auth_registry: AuthRegistry, tmp_path: Path, source: str
) -> None:
    if source == "gitlab-variables":
        extra = {
            "CI_REGISTRY": auth_registry.host,
            "CI_REGISTRY_USER": auth_registry.username,
            "CI_REGISTRY_PASSWORD": auth_registry.password,
        }
    else:
        extra = {"TEST_REGISTRY_PASSWORD": auth_registry.password}
    entry = (
        f"registry={auth_registry.host},username={auth_registry.username},"
        "password-env=TEST_REGISTRY_PASSWORD"
    )
    if source == "registry-auth-variable":
        extra["PYBUILDX_REGISTRY_AUTH"] = entry
    flags = ["--registry-auth", entry] if source == "registry-auth-flag" else []
    # An empty docker config: only the explicit source can authenticate.
    env = cli_env(tmp_path / "home", DOCKER_CONFIG=str(tmp_path / "empty-config"), **extra)
    _push_and_check(daemon, auth_registry, tmp_path, env, *flags)


def test_push_with_credential_helper(
    daemon: Daemon, auth_registry: AuthRegistry, tmp_path: Path
) -> None:
    bin_dir = _helper(
        tmp_path / "bin",
        'read server\n[ "$server" = "$EXPECTED_SERVER" ] || exit 3\n'
        'printf \'{"ServerURL":"%s","Username":"%s","Secret":"%s"}\' '
        '"$server" "$HELPER_USER" "$HELPER_SECRET"\n',
    )
    config = tmp_path / "config"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"credsStore": HELPER}))
    env = cli_env(
        tmp_path / "home",
        DOCKER_CONFIG=str(config),
        EXPECTED_SERVER=auth_registry.host,
        HELPER_USER=auth_registry.username,
        HELPER_SECRET=auth_registry.password,
    )
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    _push_and_check(daemon, auth_registry, tmp_path, env)


def _assert_failed_cleanly(result: object, tmp_path: Path, *secrets: str) -> str:
    assert isinstance(result, __import__("subprocess").CompletedProcess)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    for secret in secrets:
        assert secret not in output
    assert not (tmp_path / "meta.json").exists()
    assert not (tmp_path / "iid").exists()
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1, result.stderr
    return error_lines[0]


def _push_args(tmp_path: Path, ref: str) -> list[str]:
    return [
        str(scratch_context(tmp_path / "ctx")),
        "-t",
        ref,
        "--push",
        "--metadata-file",
        str(tmp_path / "meta.json"),
        "--iidfile",
        str(tmp_path / "iid"),
    ]


def test_wrong_password_is_a_clear_registry_error(
    daemon: Daemon, auth_registry: AuthRegistry, tmp_path: Path
) -> None:
    wrong = "not-the-password-4711"
    env = cli_env(
        tmp_path / "home",
        DOCKER_CONFIG=str(tmp_path / "empty-config"),
        CI_REGISTRY=auth_registry.host,
        CI_REGISTRY_USER=auth_registry.username,
        CI_REGISTRY_PASSWORD=wrong,
    )
    # A stale iidfile from an earlier run must not survive a failed build.
    (tmp_path / "iid").write_text("sha256:stale")
    result = run_build(
        daemon, *_push_args(tmp_path, f"{auth_registry.host}/{unique_repo()}:v1"), env=env
    )
    line = _assert_failed_cleanly(result, tmp_path, wrong)
    assert "credentials" in line


def test_expired_credential_helper_is_a_clear_error(
    daemon: Daemon, auth_registry: AuthRegistry, tmp_path: Path
) -> None:
    bin_dir = _helper(
        tmp_path / "bin",
        "cat >/dev/null\necho 'error getting credentials - token expired'\nexit 1\n",
    )
    config = tmp_path / "config"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"credHelpers": {auth_registry.host: HELPER}}))
    env = cli_env(tmp_path / "home", DOCKER_CONFIG=str(config))
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    result = run_build(
        daemon, *_push_args(tmp_path, f"{auth_registry.host}/{unique_repo()}:v1"), env=env
    )
    line = _assert_failed_cleanly(result, tmp_path)
    assert f"docker-credential-{HELPER}" in line
    assert "token expired" in line


def test_unreachable_registry_is_a_registry_error(daemon: Daemon, tmp_path: Path) -> None:
    env = cli_env(tmp_path / "home", DOCKER_CONFIG=str(tmp_path / "empty-config"))
    ref = f"127.0.0.1:{free_port()}/{unique_repo()}:v1"
    result = run_build(daemon, *_push_args(tmp_path, ref), env=env)
    line = _assert_failed_cleanly(result, tmp_path)
    assert "push" in line


class FakeRegistryOutage:
    """Fault injection a real registry cannot produce on demand: a TCP relay to the plain bed
    registry that forwards until the first blob upload starts, then drops every connection and
    stops listening, as if the registry died mid-push."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.rsplit(":", 1)
        self._upstream = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._down = threading.Event()
        self.cut_mid_push = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._down.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._upstream)
            with self._lock:
                self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, from_daemon: bool) -> None:
        try:
            while data := source.recv(65536):
                if from_daemon and b"/blobs/uploads/" in data and data.startswith(b"POST"):
                    self.cut_mid_push = True
                    self.go_down()
                    return
                target.sendall(data)
        except OSError:
            return

    def go_down(self) -> None:
        self._down.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


def test_registry_going_down_mid_push_is_a_registry_error(
    daemon: Daemon, registry: str, tmp_path: Path
) -> None:
    outage = FakeRegistryOutage(registry)
    try:
        env = cli_env(tmp_path / "home", DOCKER_CONFIG=str(tmp_path / "empty-config"))
        ref = f"{outage.address}/{unique_repo()}:v1"
        result = run_build(daemon, *_push_args(tmp_path, ref), env=env)
    finally:
        outage.go_down()
    assert outage.cut_mid_push, "the push never reached a blob upload"
    line = _assert_failed_cleanly(result, tmp_path)
    assert "push" in line
