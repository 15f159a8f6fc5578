"""Certificates from ``ci-build certs create`` work for a real mTLS buildkitd, and ``certs check``
explains the failures a user meets: a daemon certificate for the wrong name, a foreign client CA."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pybuildx.buildkit.control import ControlClient, wait_ready
from pybuildx.errors import ConnectError
from pybuildx.transport.channel import TLSFiles, open_channel
from tests.integration.builders_help import ci_build, wait_listening
from tests.integration.pushing import free_port
from tests.testbed import UP_HINT, need

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class TlsDaemon:
    endpoint: str
    certs: Path
    log: Path


@pytest.fixture(scope="module")
def buildkit_bin(daemon: Any) -> Path:
    """Directory with the bed's buildctl and buildkitd of the daemon version under test."""
    bin_dir = Path(daemon.buildctl).parent
    need((bin_dir / "buildkitd").is_file(), f"no buildkitd next to {daemon.buildctl}; {UP_HINT}")
    return bin_dir


def _start_daemon(bin_dir: Path, workdir: Path, sans: str) -> Iterator[TlsDaemon]:
    certs = workdir / "certs"
    created = ci_build("certs", "create", "--out", certs, "--san", sans, "--days", "30", env=None)
    assert created.returncode == 0, created.stderr
    port = free_port()
    config = workdir / "buildkitd.toml"
    # Own trace socket: the default /run/buildkit/otel-grpc.sock belongs to other daemons.
    config.write_text(f'[otel]\n  socketPath = "{workdir / "otel.sock"}"\n')
    log = workdir / "buildkitd.log"
    command = [
        str(bin_dir / "buildkitd"),
        "--config", str(config),
        "--root", str(workdir / "root"),
        "--addr", f"unix://{workdir / 'buildkitd.sock'}",
        "--addr", f"tcp://127.0.0.1:{port}",
        "--tlscacert", str(certs / "daemon" / "ca.pem"),
        "--tlscert", str(certs / "daemon" / "cert.pem"),
        "--tlskey", str(certs / "daemon" / "key.pem"),
        "--containerd-worker=false",
        "--oci-worker-snapshotter=native",
        "--oci-worker-net=host",
    ]  # fmt: skip
    with log.open("wb") as log_file:
        proc = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        wait_listening(port, proc, log)
        yield TlsDaemon(endpoint=f"tcp://127.0.0.1:{port}", certs=certs, log=log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def good_daemon(
    buildkit_bin: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TlsDaemon]:
    yield from _start_daemon(buildkit_bin, tmp_path_factory.mktemp("good"), "127.0.0.1,localhost")


@pytest.fixture(scope="module")
def wrong_san_daemon(
    buildkit_bin: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TlsDaemon]:
    yield from _start_daemon(
        buildkit_bin, tmp_path_factory.mktemp("wrong"), "buildkitd.example.test"
    )


def _buildctl(bin_dir: Path, endpoint: str, client: Path) -> subprocess.CompletedProcess[str]:
    command = [
        str(bin_dir / "buildctl"),
        "--addr", endpoint,
        "--tlscacert", str(client / "ca.pem"),
        "--tlscert", str(client / "cert.pem"),
        "--tlskey", str(client / "key.pem"),
        "--timeout", "20",
        "debug", "workers",
    ]  # fmt: skip
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "BUILDKIT_HOST": ""},
    )


def _check(daemon: TlsDaemon, client: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return ci_build(
        "certs", "check",
        "--cacert", client / "ca.pem",
        "--cert", client / "cert.pem",
        "--key", client / "key.pem",
        "--endpoint", daemon.endpoint,
        *extra,
        env=None,
    )  # fmt: skip


def test_buildctl_talks_mtls_with_created_certs(buildkit_bin: Path, good_daemon: TlsDaemon) -> None:
    result = _buildctl(buildkit_bin, good_daemon.endpoint, good_daemon.certs / "client")
    assert result.returncode == 0, result.stderr
    assert "linux/amd64" in result.stdout


def _client_files(client: Path) -> TLSFiles:
    return TLSFiles(ca=client / "ca.pem", cert=client / "cert.pem", key=client / "key.pem")


def test_pybuildx_client_talks_mtls_with_created_certs(good_daemon: TlsDaemon) -> None:
    channel = open_channel(good_daemon.endpoint, _client_files(good_daemon.certs / "client"))
    try:
        wait_ready(channel, timeout=30)
        workers = ControlClient(channel).list_workers()
    finally:
        channel.close()
    assert any(str(p) == "linux/amd64" for w in workers for p in w.platforms)


def test_pybuildx_client_refuses_a_daemon_cert_for_another_name(
    wrong_san_daemon: TlsDaemon,
) -> None:
    channel = open_channel(
        wrong_san_daemon.endpoint, _client_files(wrong_san_daemon.certs / "client")
    )
    try:
        with pytest.raises(ConnectError):
            wait_ready(channel, timeout=10)
    finally:
        channel.close()


def test_check_passes_for_matching_daemon(good_daemon: TlsDaemon) -> None:
    result = _check(good_daemon, good_daemon.certs / "client")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "problem:" not in result.stdout
    assert "the daemon accepted the client certificate" in result.stdout
    assert "is valid for 127.0.0.1" in result.stdout


def test_wrong_san_is_rejected_and_check_says_why(
    buildkit_bin: Path, wrong_san_daemon: TlsDaemon
) -> None:
    result = _buildctl(buildkit_bin, wrong_san_daemon.endpoint, wrong_san_daemon.certs / "client")
    assert result.returncode != 0
    assert "certificate" in result.stderr

    check = _check(wrong_san_daemon, wrong_san_daemon.certs / "client")
    assert check.returncode == 1
    assert "is valid for buildkitd.example.test, not for 127.0.0.1" in check.stdout


def test_wrong_san_passes_with_the_right_servername(wrong_san_daemon: TlsDaemon) -> None:
    client = wrong_san_daemon.certs / "client"
    check = _check(wrong_san_daemon, client, "--servername", "buildkitd.example.test")
    assert check.returncode == 0, check.stdout + check.stderr


def test_client_cert_of_another_ca_is_refused(
    buildkit_bin: Path, good_daemon: TlsDaemon, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    created = ci_build("certs", "create", "--out", other, "--san", "127.0.0.1", env=None)
    assert created.returncode == 0, created.stderr
    # Trust the daemon's real CA, but present a client pair from the foreign CA.
    client = tmp_path / "mixed"
    client.mkdir()
    (client / "ca.pem").write_bytes((good_daemon.certs / "client" / "ca.pem").read_bytes())
    for name in ("cert.pem", "key.pem"):
        (client / name).write_bytes((other / "client" / name).read_bytes())

    assert _buildctl(buildkit_bin, good_daemon.endpoint, client).returncode != 0
    check = _check(good_daemon, client)
    assert check.returncode == 1
    assert "is not signed by the CA" in check.stdout
    assert "refused the client certificate" in check.stdout
