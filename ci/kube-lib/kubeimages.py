"""The two images the cluster runs, made locally as OCI archives and imported into each node's
containerd: the pod sandbox (our own pause program) and a buildkit image (buildkitd, buildctl,
runc, the shared libraries they load, busybox for a shell)."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

from kubecommon import BUILDKIT_BIN, BUILDKIT_IMAGE, IMAGES_CACHE, KUBE_BIN, PAUSE_IMAGE, run

BIN_PATH = "/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin"


@dataclass(frozen=True)
class ImageSpec:
    ref: str
    files: dict[str, Path]  # path in the image -> host file
    entrypoint: tuple[str, ...]
    symlinks: tuple[tuple[str, str], ...] = ()  # (path in image, target)
    dirs: tuple[str, ...] = ()


def pause_image() -> ImageSpec:
    return ImageSpec(PAUSE_IMAGE, {"pause": KUBE_BIN / "pause"}, ("/pause",))


def buildkit_image() -> ImageSpec:
    programs = {
        "usr/bin/buildkitd": BUILDKIT_BIN / "buildkitd",
        "usr/bin/buildctl": BUILDKIT_BIN / "buildctl",
        "usr/bin/runc": Path(shutil.which("runc") or "/usr/sbin/runc"),
        "bin/busybox": Path("/usr/bin/busybox"),
    }
    files = dict(programs)
    for program in programs.values():
        for lib in shared_libraries(program):
            files[str(lib).lstrip("/")] = lib.resolve()
    shell = tuple((f"bin/{tool}", "busybox") for tool in ("sh", "ls", "cat", "mount", "ps"))
    return ImageSpec(
        BUILDKIT_IMAGE,
        files,
        ("/usr/bin/buildkitd",),
        symlinks=shell,
        dirs=("tmp", "etc", "run", "var/lib/buildkit", "proc", "sys", "dev"),
    )


def shared_libraries(program: Path) -> list[Path]:
    """The libraries (and the loader) the dynamic linker would load for program."""
    out = run(["ldd", str(program)], capture=True, check=False).stdout
    libs = []
    for line in out.splitlines():
        match = re.search(r"(/\S+)\s+\(0x", line)
        if match:
            libs.append(Path(match.group(1)))
    return libs


def archive_path(spec: ImageSpec) -> Path:
    """A cached archive, keyed by the image ref and the size+mtime of every input."""
    key = hashlib.sha256(spec.ref.encode())
    for dest, src in sorted(spec.files.items()):
        stat = src.stat()
        key.update(f"{dest}={src}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    name = re.sub(r"[^a-zA-Z0-9.]+", "_", spec.ref)
    return IMAGES_CACHE / f"kube-{name}-{key.hexdigest()[:12]}.oci.tar"


def build_archive(spec: ImageSpec) -> Path:
    path = archive_path(spec)
    for stale in path.parent.glob(path.name.rsplit("-", 1)[0] + "-*.oci.tar"):
        if stale != path:  # the same image made from older inputs
            stale.unlink(missing_ok=True)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    layer = _layer_tar(spec)
    layer_digest = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": list(spec.entrypoint), "Env": [f"PATH={BIN_PATH}"]},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": _descriptor("application/vnd.oci.image.config.v1+json", config),
            "layers": [_descriptor("application/vnd.oci.image.layer.v1.tar", layer)],
        }
    ).encode()
    tag = spec.ref.rsplit(":", 1)[1]
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                **_descriptor("application/vnd.oci.image.manifest.v1+json", manifest),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": spec.ref,
                    "org.opencontainers.image.ref.name": tag,
                },
            }
        ],
    }
    tmp = path.with_suffix(".tmp")
    with tarfile.open(tmp, "w") as out:
        _add_bytes(out, "oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        _add_bytes(out, "index.json", json.dumps(index).encode())
        for blob in (layer, config, manifest):
            _add_bytes(out, f"blobs/sha256/{hashlib.sha256(blob).hexdigest()}", blob)
    tmp.replace(path)
    return path


def bed_buildkit_archive() -> tuple[Path, str] | None:
    """The test bed's buildkit image tarball (see ci/README.md) and the name inside it."""
    archives = sorted(
        IMAGES_CACHE.glob("pybuildx-buildkit-*.docker.tar"), key=lambda p: p.stat().st_mtime
    )
    if not archives:
        return None
    try:
        with tarfile.open(archives[-1]) as archive:
            member = archive.extractfile("manifest.json")
            tags = json.loads(member.read())[0]["RepoTags"] if member else []
    except (OSError, tarfile.TarError, ValueError, KeyError, IndexError):
        return None
    return (archives[-1], tags[0]) if tags else None


def tag_image(source: str, target: str, containerd_sock: Path) -> None:
    ctr = ["ctr", "--address", str(containerd_sock), "-n", "k8s.io", "images"]
    run([*ctr, "rm", target], capture=True, check=False)
    run([*ctr, "tag", source, target], capture=True)


def import_image(archive: Path, containerd_sock: Path) -> None:
    run(
        [
            "ctr",
            "--address",
            str(containerd_sock),
            "-n",
            "k8s.io",
            "images",
            "import",
            "--no-unpack=false",
            str(archive),
        ],
        capture=True,
    )


def _descriptor(media_type: str, blob: bytes) -> dict[str, object]:
    return {
        "mediaType": media_type,
        "digest": "sha256:" + hashlib.sha256(blob).hexdigest(),
        "size": len(blob),
    }


def _layer_tar(spec: ImageSpec) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as layer:
        dirs = set(spec.dirs)
        for dest in [*spec.files, *(link for link, _ in spec.symlinks)]:
            parent = Path(dest).parent
            while str(parent) != ".":
                dirs.add(str(parent))
                parent = parent.parent
        for directory in sorted(dirs):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if directory == "tmp" else 0o755
            layer.addfile(info)
        for dest, src in sorted(spec.files.items()):
            info = tarfile.TarInfo(dest)
            info.size = src.stat().st_size
            info.mode = 0o755
            with src.open("rb") as data:
                layer.addfile(info, data)
        for link, target in spec.symlinks:
            info = tarfile.TarInfo(link)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            layer.addfile(info)
    return buf.getvalue()


def _add_bytes(out: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    out.addfile(info, io.BytesIO(data))
