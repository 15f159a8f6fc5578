"""Control calls against the real bed daemons: Info, ListWorkers, DiskUsage, Prune, and what
users see when a daemon cannot be reached or its TLS setup does not match ours."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from pybuildx.buildkit.control import ControlClient, wait_ready
from pybuildx.config import Platform
from pybuildx.errors import ConnectError
from pybuildx.transport.channel import TLSFiles, open_channel
from tests.integration.buildhelp import build_on, channel_to, ci_build_bytes, make_context
from tests.testbed import Daemon

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("tcp", [False, True], ids=["unix", "mtls"])
def test_info_reports_the_daemon_version(daemon: Daemon, tcp: bool) -> None:
    with channel_to(daemon, tcp=tcp) as channel:
        ready = wait_ready(channel, 10)
        info = ControlClient(channel).info()
    assert info is not None
    assert info == ready
    assert info.package == "github.com/moby/buildkit"
    assert info.version.startswith(daemon.version) or info.version.startswith("v0.0.0")


def test_list_workers_reports_platforms_and_labels(daemon: Daemon) -> None:
    with channel_to(daemon) as channel:
        workers = ControlClient(channel).list_workers()
    assert workers
    worker = workers[0]
    assert worker.id
    assert Platform("linux", "amd64") in worker.platforms
    assert worker.labels["org.mobyproject.buildkit.worker.executor"] == "oci"
    assert worker.gc_policies


def test_list_workers_filters(daemon: Daemon) -> None:
    with channel_to(daemon) as channel:
        client = ControlClient(channel)
        assert client.list_workers(["labels.org.mobyproject.buildkit.worker.executor==oci"])
        assert client.list_workers(["id==no-such-worker"]) == []


def test_disk_usage_and_prune_of_one_record(daemon: Daemon, tmp_path: Path) -> None:
    context = make_context(tmp_path / "ctx", "FROM scratch\nCOPY data /\n", {"data": str(tmp_path)})
    build_on(daemon, context=str(context))
    with channel_to(daemon) as channel:
        client = ControlClient(channel)
        records = client.disk_usage()
        assert records
        assert all(r.id and r.size >= 0 for r in records)
        assert any(r.created_at is not None for r in records)
        idle = [r for r in records if not r.in_use and r.record_type]
        assert idle, "a finished build leaves idle cache records"
        victim = idle[0]
        pruned = client.prune([f"id=={victim.id}"])
        assert [r.id for r in pruned] == [victim.id]
        assert victim.id not in {r.id for r in client.disk_usage()}
        assert client.disk_usage([f"id=={victim.id}"]) == []


def test_unreachable_unix_socket(tmp_path: Path) -> None:
    channel = open_channel(f"unix://{tmp_path}/missing.sock")
    with pytest.raises(ConnectError) as info:
        wait_ready(channel, 1, target="unix:///missing.sock")
    assert info.value.exit_code == 2
    assert "cannot reach" in info.value.message
    assert info.value.hint and "socket path" in info.value.hint


def _tls_error(daemon: Daemon, tls: TLSFiles, servername: str | None) -> ConnectError:
    channel = open_channel(daemon.tcp_addr, tls, servername)
    try:
        with pytest.raises(ConnectError) as info:
            wait_ready(channel, 10, target=daemon.tcp_addr)
    finally:
        channel.close()
    return info.value


@pytest.fixture
def foreign_ca(tmp_path: Path) -> Path:
    """A CA that did not sign the daemon's certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not the bed CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = tmp_path / "foreign-ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_tls_with_the_wrong_ca(daemon: Daemon, foreign_ca: Path) -> None:
    tls = TLSFiles(ca=foreign_ca, cert=daemon.tls.cert, key=daemon.tls.key)
    error = _tls_error(daemon, tls, daemon.servername)
    assert error.hint and "not signed by --tls-cacert" in error.hint


def test_tls_with_the_wrong_servername(daemon: Daemon) -> None:
    tls = TLSFiles(ca=daemon.tls.ca, cert=daemon.tls.cert, key=daemon.tls.key)
    error = _tls_error(daemon, tls, "not-the-daemon.example")
    assert error.hint and "--tls-servername" in error.hint


def test_tls_without_a_client_certificate(daemon: Daemon) -> None:
    error = _tls_error(daemon, TLSFiles(ca=daemon.tls.ca), daemon.servername)
    assert error.hint and "client certificate" in error.hint


def test_plain_tcp_to_an_mtls_daemon(daemon: Daemon) -> None:
    channel = open_channel(daemon.tcp_addr)
    try:
        with pytest.raises(ConnectError):
            wait_ready(channel, 2, target=daemon.tcp_addr)
    finally:
        channel.close()


def test_cli_reports_an_unreachable_daemon_in_one_line(tmp_path: Path) -> None:
    context = make_context(tmp_path / "ctx", "FROM scratch\n")
    result = ci_build_bytes("build", str(context), "--builder-addr", f"unix://{tmp_path}/none.sock")
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert lines[0].startswith("error: cannot reach the BuildKit daemon")
    assert lines[1].startswith("hint: ")
    assert len(lines) == 2
    assert b"Traceback" not in result.stderr


def test_cli_reports_a_missing_client_certificate(daemon: Daemon, tmp_path: Path) -> None:
    context = make_context(tmp_path / "ctx", "FROM scratch\n")
    result = ci_build_bytes(
        "build",
        str(context),
        "--builder-addr",
        daemon.tcp_addr,
        "--tls-cacert",
        str(daemon.tls.ca),
        "--tls-servername",
        daemon.servername,
    )
    assert result.returncode == 2
    stderr = result.stderr.decode()
    assert stderr.startswith("error: cannot reach the BuildKit daemon")
    assert "client certificate" in stderr
    assert len(stderr.strip().splitlines()) == 2, stderr
