"""Binaries the bed needs: apt packages, BuildKit (old + current), buildx; cached, built once."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

from bedcommon import (
    BUILDKIT_CURRENT,
    BUILDKIT_OLD,
    BUILDX_VERSION,
    CACHE,
    GO_ENV,
    BedError,
    log,
    run,
)

APT_PACKAGES = [
    "runc",
    "qemu-user-static",
    "busybox-static",
    "docker.io",
    "docker-registry",
    "apache2-utils",
    "containerd",
    "iproute2",
    "openssl",
    "openssh-client",  # ssh-agent/ssh-add for the --ssh forwarding tests
]
BUILDKIT_MODULE = "github.com/moby/buildkit"
BUILD_TIMES = CACHE / "build-times.json"


def buildkit_bin(version: str) -> Path:
    return CACHE / f"buildkit-{version}" / "bin"


def dockerfile_frontend_bin() -> Path:
    return CACHE / f"dockerfile-frontend-{BUILDKIT_OLD}" / "dockerfile-frontend"


def buildx_bin() -> Path:
    return CACHE / f"buildx-{BUILDX_VERSION}" / "bin" / "buildx"


def _record_build_time(name: str, seconds: float) -> None:
    try:
        times = json.loads(BUILD_TIMES.read_text())
    except (OSError, ValueError):
        times = {}
    times[name] = {
        "seconds": round(seconds, 1),
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    BUILD_TIMES.write_text(json.dumps(times, indent=2, sort_keys=True) + "\n")


def _installed(package: str) -> bool:
    proc = run(["dpkg-query", "-W", "-f=${Status}", package], capture=True, check=False)
    return proc.returncode == 0 and "install ok installed" in proc.stdout


def ensure_apt_packages() -> None:
    missing = [p for p in APT_PACKAGES if not _installed(p)]
    if not missing:
        return
    log(f"apt: installing {' '.join(missing)}")
    run(["apt-get", "update", "-q"])
    run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
        env={"DEBIAN_FRONTEND": "noninteractive"},
    )


def apt_versions() -> dict[str, str]:
    fmt = "${Package} ${Version}\\n"
    out = run(["dpkg-query", "-W", f"-f={fmt}", *APT_PACKAGES], capture=True, check=False).stdout
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def arm64_busybox() -> Path:
    """Debian's static arm64 busybox, extracted from the foreign-architecture package."""
    target = CACHE / "busybox-arm64" / "bin" / "busybox"
    if target.exists():
        return target
    arches = run(["dpkg", "--print-foreign-architectures"], capture=True).stdout.split()
    if "arm64" not in arches:
        run(["dpkg", "--add-architecture", "arm64"])
        run(["apt-get", "update", "-q"])
    debs = CACHE / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    if not list(debs.glob("busybox-static_*_arm64.deb")):
        proc = run(["apt-get", "download", "busybox-static:arm64"], cwd=debs, check=False)
        if proc.returncode != 0:
            run(["apt-get", "update", "-q"])
            run(["apt-get", "download", "busybox-static:arm64"], cwd=debs)
    deb = sorted(debs.glob("busybox-static_*_arm64.deb"))[-1]
    unpacked = CACHE / "busybox-arm64" / "deb"
    unpacked.mkdir(parents=True, exist_ok=True)
    run(["dpkg-deb", "-x", str(deb), str(unpacked)])
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(unpacked / "bin" / "busybox", target)
    return target


def ensure_buildkit_old() -> Path:
    """The pinned older BuildKit, `go install`ed straight from the module proxy."""
    bindir = buildkit_bin(BUILDKIT_OLD)
    if _reports_version(bindir / "buildkitd", BUILDKIT_OLD) and (bindir / "buildctl").exists():
        return bindir
    log(f"go install buildkit {BUILDKIT_OLD} (minutes)")
    start = time.monotonic()
    run(
        [
            "go",
            "install",
            "-ldflags",
            _version_ldflags(BUILDKIT_OLD),
            f"{BUILDKIT_MODULE}/cmd/buildkitd@{BUILDKIT_OLD}",
            f"{BUILDKIT_MODULE}/cmd/buildctl@{BUILDKIT_OLD}",
        ],
        env={**GO_ENV, "GOBIN": str(bindir)},
        nice=True,
    )
    _record_build_time(f"buildkit-{BUILDKIT_OLD}", time.monotonic() - start)
    return bindir


def ensure_dockerfile_frontend() -> Path:
    """BuildKit's Dockerfile frontend as a binary: the gateway tests pack it into an image."""
    binary = dockerfile_frontend_bin()
    if binary.exists():
        return binary
    log(f"go install dockerfile-frontend {BUILDKIT_OLD} (a minute)")
    start = time.monotonic()
    run(
        [
            "go",
            "install",
            f"{BUILDKIT_MODULE}/frontend/dockerfile/cmd/dockerfile-frontend@{BUILDKIT_OLD}",
        ],
        env={**GO_ENV, "GOBIN": str(binary.parent), "CGO_ENABLED": "0"},
        nice=True,
    )
    _record_build_time(f"dockerfile-frontend-{BUILDKIT_OLD}", time.monotonic() - start)
    return binary


def _module_directives(go_mod: str, keyword: str) -> list[str]:
    """`exclude`/`replace` entries of a go.mod, in both single-line and block form."""
    entries: list[str] = []
    block = False
    for raw in go_mod.splitlines():
        line = raw.split("//", 1)[0].strip()
        if block:
            if line == ")":
                block = False
            elif line:
                entries.append(line)
        elif line == f"{keyword} (":
            block = True
        elif line.startswith(f"{keyword} "):
            entries.append(line[len(keyword) + 1 :])
    return entries


def _wrapper_go_mod(version: str) -> str:
    info = run(
        ["go", "mod", "download", "-json", f"{BUILDKIT_MODULE}@{version}"],
        env=GO_ENV,
        capture=True,
    )
    upstream = Path(json.loads(info.stdout)["GoMod"]).read_text()
    go_line = re.search(r"^go (\S+)$", upstream, re.MULTILINE)
    lines = [
        "// Generated by ci/lib/bedbinaries.py: builds BuildKit's commands at a pinned release.",
        "module pybuildx.local/buildkit-wrapper",
        "",
        f"go {go_line.group(1) if go_line else '1.22'}",
        "",
        f"require {BUILDKIT_MODULE} {version}",
    ]
    for keyword in ("exclude", "replace"):
        entries = _module_directives(upstream, keyword)
        if entries:
            lines += ["", f"{keyword} (", *(f"\t{e}" for e in entries), ")"]
    return "\n".join(lines) + "\n"


def _version_ldflags(version: str) -> str:
    # Only BuildKit's own release build stamps the version; the daemon reports it in Info().
    return f"-X {BUILDKIT_MODULE}/version.Version={version}"


def _reports_version(binary: Path, version: str, argv: tuple[str, ...] = ("--version",)) -> bool:
    if not binary.exists():
        return False
    proc = run([str(binary), *argv], capture=True, check=False)
    return f" {version} " in f"{proc.stdout.strip()} "


def ensure_buildkit_current() -> Path:
    """Static (CGO_ENABLED=0) current BuildKit, built via a generated wrapper module."""
    bindir = buildkit_bin(BUILDKIT_CURRENT)
    if _reports_version(bindir / "buildkitd", BUILDKIT_CURRENT) and (bindir / "buildctl").exists():
        return bindir
    module = CACHE / f"buildkit-{BUILDKIT_CURRENT}" / "module"
    module.mkdir(parents=True, exist_ok=True)
    (module / "go.mod").write_text(_wrapper_go_mod(BUILDKIT_CURRENT))
    commands = [f"{BUILDKIT_MODULE}/cmd/buildkitd", f"{BUILDKIT_MODULE}/cmd/buildctl"]
    log(f"go build buildkit {BUILDKIT_CURRENT} (static; minutes)")
    start = time.monotonic()
    env = {**GO_ENV, "CGO_ENABLED": "0"}
    run(["go", "get", *(f"{c}@{BUILDKIT_CURRENT}" for c in commands)], env=env, cwd=module)
    bindir.mkdir(parents=True, exist_ok=True)
    ldflags = _version_ldflags(BUILDKIT_CURRENT)
    argv = ["go", "build", "-ldflags", ldflags, "-o", f"{bindir}/", *commands]
    run(argv, env=env, cwd=module, nice=True)
    _record_build_time(f"buildkit-{BUILDKIT_CURRENT}", time.monotonic() - start)
    return bindir


def ensure_buildx() -> Path | None:
    """docker buildx for benchmarks; None (with a log line) when it cannot be built here."""
    binary = buildx_bin()
    if not _reports_version(binary, BUILDX_VERSION, ("version",)):
        log(f"go install buildx {BUILDX_VERSION} (minutes)")
        start = time.monotonic()
        try:
            ldflags = f"-X github.com/docker/buildx/version.Version={BUILDX_VERSION}"
            run(
                [
                    "go",
                    "install",
                    "-ldflags",
                    ldflags,
                    f"github.com/docker/buildx/cmd/buildx@{BUILDX_VERSION}",
                ],
                env={**GO_ENV, "GOBIN": str(binary.parent), "CGO_ENABLED": "0"},
                nice=True,
            )
        except BedError as err:
            log(f"buildx could not be built, benchmarks against buildx will skip: {err}")
            return None
        _record_build_time(f"buildx-{BUILDX_VERSION}", time.monotonic() - start)
    plugins = Path("/usr/local/lib/docker/cli-plugins")
    plugins.mkdir(parents=True, exist_ok=True)
    _symlink(plugins / "docker-buildx", binary)
    return binary


def _symlink(link: Path, target: Path) -> None:
    if link.is_symlink() and link.readlink() == target:
        return
    if link.exists() or link.is_symlink():
        link.unlink()
    link.symlink_to(target)


def put_current_on_path() -> None:
    """The product's embedded default builder spawns `buildkitd` from PATH."""
    bindir = buildkit_bin(BUILDKIT_CURRENT)
    for name in ("buildkitd", "buildctl"):
        _symlink(Path("/usr/local/bin") / name, bindir / name)


def ensure_go_binaries() -> None:
    ensure_buildkit_current()
    ensure_buildkit_old()
    ensure_dockerfile_frontend()
    ensure_buildx()
    put_current_on_path()


if __name__ == "__main__":
    ensure_go_binaries()
