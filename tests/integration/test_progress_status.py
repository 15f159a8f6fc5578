"""Plain progress of real builds: steps, log lines, CACHED on a rebuild, ERROR for a failing RUN.

The Dockerfiles need no registry: ``FROM scratch`` plus the host's static busybox copied in, run in
exec form (no shell in the image).
"""

from __future__ import annotations

import io
import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pybuildx.buildkit.build import build
from pybuildx.buildkit.progress import make_progress
from pybuildx.buildspec import BuildSpec
from pybuildx.errors import BuildFailed
from pybuildx.transport.channel import open_channel
from tests.testbed import Daemon, need

pytestmark = pytest.mark.integration

STATIC_BUSYBOX = Path("/bin/busybox")


@pytest.fixture
def context(tmp_path: Path) -> Path:
    need(
        STATIC_BUSYBOX.is_file() and b"/lib64/ld-linux" not in STATIC_BUSYBOX.read_bytes()[:4096],
        f"{STATIC_BUSYBOX} is not a static busybox (apt-get install busybox-static)",
    )
    directory = tmp_path / "context"
    directory.mkdir()
    shutil.copy(STATIC_BUSYBOX, directory / "busybox")
    return directory


def _dockerfile(context: Path, *run_args: str) -> BuildSpec:
    run = json.dumps(["/bin/busybox", *run_args])
    (context / "Dockerfile").write_text(f"FROM scratch\nCOPY busybox /bin/busybox\nRUN {run}\n")
    return BuildSpec(context=context, dockerfile=context / "Dockerfile")


@pytest.fixture
def channel(daemon: Daemon) -> Iterator[object]:
    channel = open_channel(daemon.unix_addr)
    yield channel
    channel.close()


def _plain_build(channel: object, spec: BuildSpec) -> tuple[str, BaseException | None]:
    out = io.StringIO()
    writer = make_progress("plain", out)
    error: BaseException | None = None
    try:
        build(channel, spec, progress=writer)  # type: ignore[arg-type]
    except BuildFailed as exc:
        error = exc
    finally:
        writer.close()
    return out.getvalue(), error


def _blocks(text: str) -> dict[str, list[str]]:
    """Lines per vertex number: {"3": ["#3 [2/2] RUN ...", "#3 0.101 hello", "#3 DONE 0.2s"]}."""
    blocks: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            number = line[1:].split(" ", 1)[0]
            blocks.setdefault(number, []).append(line)
    return blocks


def _block_of(text: str, step: str) -> list[str]:
    for lines in _blocks(text).values():
        if step in lines[0]:
            return lines
    raise AssertionError(f"no block for {step!r} in:\n{text}")


def test_plain_progress_shows_steps_logs_and_cached_rebuilds(
    channel: object, context: Path
) -> None:
    word = f"hello-{uuid.uuid4().hex[:12]}"
    spec = _dockerfile(context, "echo", word)

    first, error = _plain_build(channel, spec)
    assert error is None, first
    assert "[internal] load build definition from Dockerfile" in first
    copy = _block_of(first, "[1/2] COPY busybox /bin/busybox")
    assert copy[-1].split(" ")[1] in ("DONE", "CACHED")  # cached when an earlier run copied it
    run = _block_of(first, "[2/2] RUN")
    number = run[0].split(" ")[0]
    assert any(line.startswith(f"{number} ") and line.endswith(f" {word}") for line in run), first
    assert run[-1].startswith(f"{number} DONE ")

    second, error = _plain_build(channel, spec)
    assert error is None, second
    rerun = _block_of(second, "[2/2] RUN")
    assert rerun[1:] == [f"{rerun[0].split(' ')[0]} CACHED"], second  # nothing ran: no log line


def test_plain_progress_shows_the_error_of_a_failing_run(channel: object, context: Path) -> None:
    marker = f"about-to-fail-{uuid.uuid4().hex[:8]}"
    spec = _dockerfile(context, "sh", "-c", f"echo {marker}; exit 3")

    text, error = _plain_build(channel, spec)
    assert isinstance(error, BuildFailed)
    run = _block_of(text, "[2/2] RUN")
    assert any(line.endswith(f" {marker}") for line in run), text
    assert run[-1].split(" ")[1] == "ERROR:", text
    assert "exit code: 3" in run[-1]
