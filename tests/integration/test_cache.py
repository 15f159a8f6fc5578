"""Cache export/import round trips on the real daemons: registry, inline, local (through our
session content store), plus ignore-error.

Between the two builds of a round trip the daemon's own record of the RUN step is pruned (only
that record, found by its unique command), so a cached RUN in the second build can only come
from the imported cache; a control build without import proves the prune worked.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.integration.pushing import RegistryReader, cli_env, free_port, run_build, unique_repo
from tests.testbed import Daemon

pytestmark = pytest.mark.integration


def _context(tmp_path: Path, busybox: str) -> tuple[Path, str]:
    marker = uuid.uuid4().hex
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {busybox}\nRUN echo {marker} > /marker\n")
    return ctx, marker


def _run_vertex_cached(result: subprocess.CompletedProcess[str], marker: str) -> bool:
    """From --progress rawjson: whether the RUN vertex was reported as cached."""
    cached = False
    seen = False
    for line in result.stderr.splitlines():
        if not line.startswith("{"):
            continue
        for vertex in json.loads(line).get("vertexes") or []:
            if marker in vertex.get("name", ""):
                seen = True
                cached = cached or bool(vertex.get("cached"))
    assert seen, result.stderr[-2000:]
    return cached


def _forget_run_step(daemon: Daemon, marker: str) -> None:
    pruned = subprocess.run(
        [
            daemon.buildctl,
            "--addr",
            daemon.unix_addr,
            "prune",
            "--filter",
            f"description~={marker}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert pruned.returncode == 0, pruned.stderr


def _build(daemon: Daemon, ctx: Path, env: dict[str, str], *args: str) -> bool:
    result = run_build(daemon, str(ctx), *args, env=env, progress="rawjson")
    assert result.returncode == 0, result.stderr[-3000:]
    return _run_vertex_cached(result, _marker(ctx))


def _marker(ctx: Path) -> str:
    return (ctx / "Dockerfile").read_text().split("echo ", 1)[1].split(" ", 1)[0]


def _round_trip(
    daemon: Daemon, ctx: Path, env: dict[str, str], to: list[str], frm: list[str]
) -> None:
    marker = _marker(ctx)
    assert not _build(daemon, ctx, env, *to)
    _forget_run_step(daemon, marker)
    assert not _build(daemon, ctx, env), "prune did not remove the daemon's own cache"
    _forget_run_step(daemon, marker)
    assert _build(daemon, ctx, env, *frm), "the RUN step was not taken from the imported cache"


def test_registry_cache_round_trip(
    daemon: Daemon, busybox: str, registry: str, tmp_path: Path
) -> None:
    ctx, _ = _context(tmp_path, busybox)
    ref = f"{registry}/{unique_repo()}:cache"
    env = cli_env(tmp_path / "home")
    to = f"type=registry,ref={ref},mode=max,image-manifest=true,oci-mediatypes=true"
    _round_trip(daemon, ctx, env, ["--cache-to", to], ["--cache-from", f"type=registry,ref={ref}"])
    repo, tag = ref.split("/", 1)[1].rsplit(":", 1)
    _, manifest = RegistryReader(registry).manifest(repo, tag)
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"


def test_inline_cache_round_trip(
    daemon: Daemon, busybox: str, registry: str, tmp_path: Path
) -> None:
    ctx, _ = _context(tmp_path, busybox)
    image = f"{registry}/{unique_repo()}:v1"
    env = cli_env(tmp_path / "home")
    _round_trip(
        daemon,
        ctx,
        env,
        ["--cache-to", "type=inline", "-t", image, "--push"],
        ["--cache-from", image],
    )


def test_local_cache_round_trip(daemon: Daemon, busybox: str, tmp_path: Path) -> None:
    ctx, _ = _context(tmp_path, busybox)
    cache_dir = tmp_path / "cache"
    env = cli_env(tmp_path / "home")
    _round_trip(
        daemon,
        ctx,
        env,
        ["--cache-to", f"type=local,dest={cache_dir},mode=max"],
        ["--cache-from", f"type=local,src={cache_dir}"],
    )
    index = json.loads((cache_dir / "index.json").read_text())
    (entry,) = index["manifests"]
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "latest"
    algorithm, digest = entry["digest"].split(":")
    assert (cache_dir / "blobs" / algorithm / digest).is_file()
    assert not list(cache_dir.glob("ingest/*")), "an unfinished write was left behind"


def test_cache_export_ignore_error(daemon: Daemon, busybox: str, tmp_path: Path) -> None:
    ctx, _ = _context(tmp_path, busybox)
    dead = f"127.0.0.1:{free_port()}/{unique_repo()}:cache"
    env = cli_env(tmp_path / "home")
    failed = run_build(daemon, str(ctx), "--cache-to", f"type=registry,ref={dead}", env=env)
    assert failed.returncode == 1
    ignored = run_build(
        daemon, str(ctx), "--cache-to", f"type=registry,ref={dead},ignore-error=true", env=env
    )
    assert ignored.returncode == 0, ignored.stderr
