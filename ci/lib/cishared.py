"""Helpers both ci/ trees share: ci/lib (ci/testbed) and ci/kube-lib (ci/kube). Stdlib only.

Each tree keeps its own paths, error class and process bookkeeping; only what is the same
logic in both lives here. ci/kube-lib puts this directory on ``sys.path`` to import it.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any


def run_command(
    argv: Sequence[str],
    *,
    error: type[Exception],
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    capture: bool = False,
    check: bool = True,
    input_text: str | None = None,
    nice: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run argv (our environment plus ``env``); with ``check``, a failure raises ``error``."""
    cmd = ["nice", "-n", "10", *argv] if nice else list(argv)
    proc = subprocess.run(
        cmd,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        text=True,
        input=input_text,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE if capture else None,
        check=False,
    )
    if check and proc.returncode != 0:
        detail = (proc.stderr or "").strip()[-2000:] if capture else ""
        raise error(f"command failed ({proc.returncode}): {shlex.join(argv)}\n{detail}")
    return proc


def poll(probe: Callable[[], bool], timeout: float, interval: float) -> bool:
    """Whether ``probe()`` turned true within ``timeout`` seconds, asked every ``interval``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return True
        time.sleep(interval)
    return False


def tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def read_state(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; empty when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_state(path: Path, state: Mapping[str, Any]) -> None:
    """Replace ``path`` atomically with ``state`` as JSON, readable by the tests (0644)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    tmp.chmod(0o644)
    tmp.replace(path)
