"""Bed checks: the ci/ test bed's components do what the product's tests rely on (buildctl only)."""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.testbed import AuthRegistry, BuildkitImage, Daemon

pytestmark = pytest.mark.integration

HELLO = Path(__file__).resolve().parents[2] / "examples" / "hello"
DOCKER_CLI = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"


def buildctl(
    daemon: Daemon,
    *args: str,
    tcp: bool = False,
    client_cert: bool = True,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    argv = [daemon.buildctl, "--addr", daemon.tcp_addr if tcp else daemon.unix_addr]
    if tcp:
        argv += ["--tlscacert", str(daemon.tls.ca), "--tlsservername", daemon.servername]
        if client_cert:
            argv += ["--tlscert", str(daemon.tls.cert), "--tlskey", str(daemon.tls.key)]
    return subprocess.run(
        [*argv, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        check=False,
    )


def build_hello(
    daemon: Daemon, platforms: str, output: str, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    return buildctl(
        daemon,
        "build",
        "--progress=plain",
        "--frontend=dockerfile.v0",
        f"--local=context={HELLO}",
        f"--local=dockerfile={HELLO}",
        f"--opt=platform={platforms}",
        f"--output={output}",
        **kwargs,  # type: ignore[arg-type]
    )


def registry_manifest(registry: AuthRegistry, repo: str, tag: str) -> dict[str, object]:
    token = base64.b64encode(f"{registry.username}:{registry.password}".encode()).decode()
    request = urllib.request.Request(
        f"https://{registry.host}/v2/{repo}/manifests/{tag}",
        headers={
            "Authorization": f"Basic {token}",
            "Accept": "application/vnd.oci.image.index.v1+json,"
            "application/vnd.docker.distribution.manifest.list.v2+json",
        },
    )
    ctx = ssl.create_default_context(cafile=str(registry.ca))
    with urllib.request.urlopen(request, timeout=10, context=ctx) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


@pytest.mark.parametrize("tcp", [False, True], ids=["unix", "mtls"])
def test_buildctl_builds_a_run_step(
    daemon: Daemon, busybox: str, tmp_path: Path, tcp: bool
) -> None:
    proc = build_hello(daemon, "linux/amd64", f"type=local,dest={tmp_path}", tcp=tcp)

    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "built-on.txt").read_text().strip() == "x86_64"
    assert (tmp_path / "hello.txt").read_text() == (HELLO / "hello.txt").read_text()


def test_mtls_without_client_certificate_is_refused(daemon: Daemon) -> None:
    proc = buildctl(daemon, "debug", "workers", tcp=True, client_cert=False)

    assert proc.returncode != 0
    assert "linux/amd64" not in proc.stdout


def test_daemon_offers_arm64_through_qemu(daemon: Daemon) -> None:
    proc = buildctl(daemon, "debug", "workers", "--verbose")

    assert proc.returncode == 0, proc.stderr
    assert "linux/arm64" in proc.stdout


def test_arm64_run_step_runs_under_qemu(daemon: Daemon, busybox: str, tmp_path: Path) -> None:
    proc = build_hello(daemon, "linux/arm64", f"type=local,dest={tmp_path}")

    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "built-on.txt").read_text().strip() == "aarch64"


def test_multiplatform_push_to_auth_registry_with_credentials(
    daemon: Daemon, busybox: str, auth_registry: AuthRegistry, docker_config: Path
) -> None:
    tag = f"{daemon.name.replace('.', '-')}-{uuid.uuid4().hex[:8]}"
    ref = f"{auth_registry.host}/bedcheck/hello:{tag}"

    proc = build_hello(
        daemon,
        "linux/amd64,linux/arm64",
        f"type=image,name={ref},push=true",
        env={"DOCKER_CONFIG": str(docker_config)},
    )

    assert proc.returncode == 0, proc.stderr[-3000:]
    index = registry_manifest(auth_registry, "bedcheck/hello", tag)
    manifests = index["manifests"]
    assert isinstance(manifests, list)
    platforms = {f"{m['platform']['os']}/{m['platform']['architecture']}" for m in manifests}
    assert {"linux/amd64", "linux/arm64"} <= platforms


def test_push_without_credentials_is_refused(
    current_daemon: Daemon, busybox: str, auth_registry: AuthRegistry, tmp_path: Path
) -> None:
    empty_config = tmp_path / "no-credentials"
    empty_config.mkdir()
    ref = f"{auth_registry.host}/bedcheck/refused:{uuid.uuid4().hex[:8]}"

    proc = build_hello(
        current_daemon,
        "linux/amd64",
        f"type=image,name={ref},push=true",
        env={"DOCKER_CONFIG": str(empty_config)},
    )

    assert proc.returncode != 0
    assert "401" in proc.stderr or "nauthorized" in proc.stderr, proc.stderr[-2000:]


def docker(dockerd: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DOCKER_CLI, "-H", dockerd, *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_dockerd_answers_and_holds_the_bed_images(
    dockerd: str, busybox: str, buildkit_image: BuildkitImage
) -> None:
    version = docker(dockerd, "version", "--format", "{{.Server.Version}}")
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("20.10")

    for ref in (busybox, buildkit_image.ref):
        assert docker(dockerd, "image", "inspect", ref).returncode == 0, ref


def test_buildkit_image_runs_its_buildkitd(dockerd: str, buildkit_image: BuildkitImage) -> None:
    proc = docker(
        dockerd,
        "run",
        "--rm",
        "--network=host",
        "--entrypoint=buildkitd",
        buildkit_image.ref,
        "--version",
    )

    assert proc.returncode == 0, proc.stderr
    assert "buildkitd" in proc.stdout
    assert buildkit_image.ref.rsplit(":", 1)[1] in proc.stdout


# `--privileged` fails on this host (CAP_SYS_RESOURCE is outside the bounding set, so runc
# cannot apply "all caps"); these flags give buildkitd what it needs without it.
BUILDKITD_CONTAINER_FLAGS = [
    "--cap-add=ALL",
    "--cap-drop=SYS_RESOURCE",
    "--security-opt=seccomp=unconfined",
    "--security-opt=apparmor=unconfined",
    "--security-opt=systempaths=unconfined",
    "--cgroupns=host",
    "--volume=/sys/fs/cgroup:/sys/fs/cgroup",
    "--network=host",
]
IN_CONTAINER_BUILD = """
mkdir -p /tmp/ctx
printf 'FROM {busybox}\\nRUN uname -m > /arch\\n' > /tmp/ctx/Dockerfile
for i in $(seq 50); do buildctl debug workers >/dev/null 2>&1 && break; sleep 0.2; done
buildctl build --frontend dockerfile.v0 --local context=/tmp/ctx --local dockerfile=/tmp/ctx \\
  --opt platform=linux/amd64,linux/arm64 --output type=local,dest=/tmp/out
cat /tmp/out/linux_amd64/arch /tmp/out/linux_arm64/arch
"""


def test_buildkit_image_builds_in_a_dockerd_container(
    dockerd: str, busybox: str, buildkit_image: BuildkitImage
) -> None:
    name = f"bedcheck-buildkit-{uuid.uuid4().hex[:8]}"
    started = docker(
        dockerd, "run", "-d", "--name", name, *BUILDKITD_CONTAINER_FLAGS, buildkit_image.ref
    )
    try:
        assert started.returncode == 0, started.stderr
        script = IN_CONTAINER_BUILD.format(busybox=busybox)
        proc = docker(dockerd, "exec", name, "sh", "-ec", script)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.split() == ["x86_64", "aarch64"]
    finally:
        docker(dockerd, "rm", "-f", name)


def test_buildkit_image_tarball_is_an_image_archive(buildkit_image: BuildkitImage) -> None:
    import tarfile

    with tarfile.open(buildkit_image.tarball) as tar:
        names = set(tar.getnames())

    assert {"index.json", "manifest.json"} <= names
