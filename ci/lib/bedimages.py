"""Images made locally with the bed's own buildctl: multi-arch busybox, a buildkit image."""

from __future__ import annotations

import base64
import json
import shutil
import ssl
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from bedbinaries import buildkit_bin
from bedcommon import BUILDKIT_CURRENT, CACHE, log, run

IMAGES = CACHE / "images"
ROOTFS_DIRS = ("tmp", "etc", "root", "proc", "sys", "dev", "run", "var/tmp")
BUILDKIT_IMAGE_TAR = IMAGES / f"pybuildx-buildkit-{BUILDKIT_CURRENT}.docker.tar"

BUSYBOX_DOCKERFILE = """\
FROM scratch
ARG TARGETARCH
COPY rootfs-${TARGETARCH}/ /
CMD ["/bin/sh"]
"""

BUILDKIT_DOCKERFILE = """\
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
VOLUME /var/lib/buildkit
ENTRYPOINT ["buildkitd"]
"""


MANIFEST_TYPES = ",".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


def _manifest_exists(
    registry: str, repo: str, tag: str, auth: dict[str, Any] | None = None
) -> bool:
    headers = {"Accept": MANIFEST_TYPES}
    ctx = None
    if auth:
        password = Path(auth["password_file"]).read_text().strip()
        token = base64.b64encode(f"{auth['username']}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
        ctx = ssl.create_default_context(cafile=auth["ca"])
    scheme = "https" if auth else "http"
    url = f"{scheme}://{registry}/v2/{repo}/manifests/{tag}"
    request = urllib.request.Request(url, method="HEAD", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5, context=ctx) as resp:
            return int(resp.status) == 200
    except OSError:
        return False


def _busybox_rootfs(target: Path, busybox: Path, applets: list[str]) -> None:
    """A rootfs with /bin/busybox and one symlink per applet (incl. /bin/sh)."""
    if target.exists():
        shutil.rmtree(target)
    (target / "bin").mkdir(parents=True)
    shutil.copy2(busybox, target / "bin" / "busybox")
    for applet in applets:
        link = target / applet.lstrip("/")
        if link.exists() or link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to("/bin/busybox")
    for d in ROOTFS_DIRS:
        (target / d).mkdir(parents=True, exist_ok=True)
    (target / "tmp").chmod(0o1777)
    (target / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n"
    )
    (target / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")


def _applets(busybox: Path) -> list[str]:
    return run([str(busybox), "--list-full"], capture=True).stdout.split()


def _docker_config(auth: dict[str, Any]) -> dict[str, str]:
    password = Path(auth["password_file"]).read_text().strip()
    token = base64.b64encode(f"{auth['username']}:{password}".encode()).decode()
    return {"auths": {auth["host"]: {"auth": token}}}  # type: ignore[dict-item]


def _build(
    addr: str, context: Path, platforms: str, outputs: list[str], docker_config: Path | None
) -> None:
    buildctl = str(buildkit_bin(BUILDKIT_CURRENT) / "buildctl")
    argv = [
        buildctl, "--addr", addr, "build", "--progress=plain",
        "--frontend", "dockerfile.v0",
        "--local", f"context={context}", "--local", f"dockerfile={context}",
        "--opt", f"platform={platforms}",
    ]  # fmt: skip
    for output in outputs:
        argv += ["--output", output]
    env = {"DOCKER_CONFIG": str(docker_config)} if docker_config else None
    run(argv, env=env, capture=True)


def ensure_busybox(addr: str, registry: str, auth: dict[str, Any], arm64_busybox: Path) -> str:
    """Multi-arch busybox (amd64 + arm64) as one index in both registries; returns the plain ref."""
    ref = f"{registry}/busybox:latest"
    if _manifest_exists(registry, "busybox", "latest") and _manifest_exists(
        auth["host"], "busybox", "latest", auth
    ):
        return ref
    amd64_busybox = Path("/bin/busybox")
    context = IMAGES / "busybox-context"
    applets = _applets(amd64_busybox)
    _busybox_rootfs(context / "rootfs-amd64", amd64_busybox, applets)
    _busybox_rootfs(context / "rootfs-arm64", arm64_busybox, applets)
    (context / "Dockerfile").write_text(BUSYBOX_DOCKERFILE)
    log(f"building {ref} (linux/amd64, linux/arm64)")
    with tempfile.TemporaryDirectory(prefix="bed-docker-config-") as tmp:
        config = Path(tmp)
        (config / "config.json").write_text(json.dumps(_docker_config(auth)))
        (config / "config.json").chmod(0o600)
        names = f"{ref},{auth['host']}/busybox:latest"
        _build(
            addr,
            context,
            "linux/amd64,linux/arm64",
            [f'type=image,"name={names}",push=true'],
            config,
        )
    return ref


def _copy_with_libs(binary: Path, rootfs: Path) -> None:
    """Copy a dynamic binary and the shared libraries ldd names, at their host paths."""
    files = [binary]
    for line in run(["ldd", str(binary)], capture=True).stdout.splitlines():
        for token in line.split():
            if token.startswith("/"):
                files.append(Path(token))
    for src in files:
        dest = rootfs / str(src.resolve() if src != binary else src).lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src.resolve(), dest)
        if src != binary and src.resolve() != src:
            alias = rootfs / str(src).lstrip("/")
            alias.parent.mkdir(parents=True, exist_ok=True)
            if not alias.exists():
                alias.symlink_to(src.resolve())


def ensure_buildkit_image(addr: str, registry: str) -> dict[str, str]:
    """busybox + static buildkitd/buildctl + Debian's runc; pushed, and saved as a tarball."""
    repo = "pybuildx/buildkit"
    ref = f"{registry}/{repo}:{BUILDKIT_CURRENT}"
    info = {"ref": ref, "latest": f"{registry}/{repo}:latest", "tarball": str(BUILDKIT_IMAGE_TAR)}
    if BUILDKIT_IMAGE_TAR.exists() and _manifest_exists(registry, repo, BUILDKIT_CURRENT):
        return info
    context = IMAGES / "buildkit-context"
    rootfs = context / "rootfs"
    busybox = Path("/bin/busybox")
    _busybox_rootfs(rootfs, busybox, _applets(busybox))
    bindir = buildkit_bin(BUILDKIT_CURRENT)
    (rootfs / "usr" / "bin").mkdir(parents=True, exist_ok=True)
    for name in ("buildkitd", "buildctl"):
        shutil.copy2(bindir / name, rootfs / "usr" / "bin" / name)
    _copy_with_libs(Path("/usr/sbin/runc"), rootfs)
    (rootfs / "var" / "lib" / "buildkit").mkdir(parents=True, exist_ok=True)
    (context / "Dockerfile").write_text(BUILDKIT_DOCKERFILE)
    IMAGES.mkdir(parents=True, exist_ok=True)
    log(f"building {ref}")
    partial = BUILDKIT_IMAGE_TAR.with_suffix(".partial")
    _build(
        addr,
        context,
        "linux/amd64",
        [
            f'type=image,"name={ref},{info["latest"]}",push=true',
            f"type=docker,name={ref},dest={partial}",
        ],
        None,
    )
    partial.chmod(0o644)  # buildctl writes it world-writable
    partial.replace(BUILDKIT_IMAGE_TAR)
    return info
