"""The remote driver: mutual TLS with certificates from ``ci-build certs create``, the clear
errors for a wrong CA, a wrong server name and a missing client certificate, unix sockets, and
``buildctl dial-stdio`` relays."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pybuildx.builders.store import Store
from tests.integration.builders_help import (
    EXAMPLE,
    INDEX_TYPES,
    ci_build,
    cli_env,
    fetch_manifest,
    leftovers,
    require_buildkitd,
    unique_ref,
    wait_listening,
)
from tests.integration.pushing import free_port
from tests.testbed import Daemon

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class MtlsDaemon:
    endpoint: str
    certs: Path
    other_certs: Path


def _certs(out: Path, env: dict[str, str]) -> Path:
    made = ci_build("certs", "create", "--out", out, "--san", "127.0.0.1,localhost", env=env)
    assert made.returncode == 0, made.stderr
    return out


@pytest.fixture(scope="module")
def mtls_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MtlsDaemon]:
    """A buildkitd on tcp://127.0.0.1:<free port> with certificates from ``certs create``."""
    binary = require_buildkitd()
    work = tmp_path_factory.mktemp("mtls")
    env = cli_env(work)
    certs = _certs(work / "certs", env)
    other = _certs(work / "other-certs", env)
    port = free_port()
    (work / "buildkitd.toml").write_text(f'[otel]\n  socketPath = "{work / "otel.sock"}"\n')
    daemon = certs / "daemon"
    log = work / "buildkitd.log"
    argv = [
        binary,
        "--config", str(work / "buildkitd.toml"),
        "--root", str(work / "root"),
        "--addr", f"unix://{work / 'bk.sock'}",
        "--addr", f"tcp://127.0.0.1:{port}",
        "--tlscacert", str(daemon / "ca.pem"),
        "--tlscert", str(daemon / "cert.pem"),
        "--tlskey", str(daemon / "key.pem"),
        "--containerd-worker=false",
        "--oci-worker-net=host",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_listening(port, process, log)
        yield MtlsDaemon(f"tcp://127.0.0.1:{port}", certs, other)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _tls_opts(ca: Path, client: Path | None = None, **extra: str) -> list[str]:
    opts = [f"cacert={ca}"]
    if client is not None:
        opts += [f"cert={client / 'cert.pem'}", f"key={client / 'key.pem'}"]
    opts += [f"{k}={v}" for k, v in extra.items()]
    return ["--driver-opt", ",".join(opts)]


def _create(env: dict[str, str], endpoint: str, *opts: str) -> subprocess.CompletedProcess[str]:
    return ci_build(
        "builder", "create", "--name", "tls", "--driver", "remote", *opts, "--bootstrap",
        endpoint, env=env,
    )  # fmt: skip


def test_mtls_builder_builds_and_pushes_the_example(
    tmp_path: Path, mtls_daemon: MtlsDaemon, registry: str, busybox: str
) -> None:
    env = cli_env(tmp_path)
    client = mtls_daemon.certs / "client"
    created = _create(env, mtls_daemon.endpoint, *_tls_opts(client / "ca.pem", client))
    assert created.returncode == 0, created.stderr
    ref = unique_ref(registry)
    built = ci_build(
        "build", "--builder", "tls", "--platform", "linux/amd64,linux/arm64", "--push",
        "-t", ref, EXAMPLE, env=env,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    manifest, digest = fetch_manifest(ref)
    assert manifest["mediaType"] in INDEX_TYPES
    assert digest in built.stdout + built.stderr
    assert ci_build("builder", "rm", "tls", env=env).returncode == 0
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong-ca", "not signed by the given CA"),
        ("wrong-servername", "does not name the expected server"),
        ("no-client-cert", "requires a client certificate"),
        ("foreign-client-cert", "rejected the client certificate"),
    ],
)
def test_tls_mistakes_fail_with_a_clear_message_and_keep_no_builder(
    tmp_path: Path, mtls_daemon: MtlsDaemon, case: str, expected: str
) -> None:
    env = cli_env(tmp_path)
    good = mtls_daemon.certs / "client"
    other = mtls_daemon.other_certs / "client"
    opts = {
        "wrong-ca": _tls_opts(other / "ca.pem", good),
        "wrong-servername": _tls_opts(good / "ca.pem", good, servername="buildkitd.example.test"),
        "no-client-cert": _tls_opts(good / "ca.pem"),
        "foreign-client-cert": _tls_opts(good / "ca.pem", other),
    }[case]
    created = _create(env, mtls_daemon.endpoint, *opts)
    assert created.returncode == 2, created.stderr
    lines = [line for line in created.stderr.splitlines() if line.startswith(("error:", "hint:"))]
    assert lines[0].startswith("error:") and expected in lines[0]
    assert lines[1].startswith("hint:")
    assert "Traceback" not in created.stderr
    assert Store(tmp_path / "config").list() == []  # rolled back, as buildx does


def test_unix_endpoint_reports_version_and_platforms(tmp_path: Path, daemon: Daemon) -> None:
    env = cli_env(tmp_path)
    created = ci_build(
        "builder", "create", "--name", "bed", "--driver", "remote", "--platform", "linux/amd64",
        daemon.unix_addr, env=env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    shown = ci_build("builder", "inspect", "bed", "--bootstrap", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "Status:           running" in shown.stdout
    assert "linux/amd64*" in shown.stdout  # the pinned platform, marked as in buildx
    assert "BuildKit version:" in shown.stdout
    assert ci_build("builder", "rm", "bed", env=env).returncode == 0
    assert leftovers(tmp_path) == []


def test_unreachable_remote_fails_fast_with_a_hint(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    created = ci_build(
        "builder", "create", "--driver", "remote", "--driver-opt", "timeout=2s", "--bootstrap",
        f"unix://{tmp_path}/nothing.sock", env=env,
    )  # fmt: skip
    assert created.returncode == 2
    assert "cannot reach BuildKit" in created.stderr and "hint:" in created.stderr
