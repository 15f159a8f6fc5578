"""Dockerfile builds with RUN steps (busybox from the bed registry): run options must take effect,
on amd64 natively and on arm64 through QEMU."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.buildhelp import build_on, make_context
from tests.testbed import Daemon

pytestmark = pytest.mark.integration


def _run(daemon: Daemon, busybox: str, tmp_path: Path, script: str, **flags: object) -> Path:
    """Build ``FROM busybox`` + ``RUN script`` writing into /out, and return the exported /out."""
    dockerfile = (
        f"FROM {busybox} AS work\nRUN mkdir /out && {script}\n\n"
        "FROM scratch\nCOPY --from=work /out /\n"
    )
    context = make_context(tmp_path / "ctx", dockerfile)
    out = tmp_path / "out"
    build_on(daemon, context=str(context), outputs=[f"type=local,dest={out}"], **flags)
    return out


def test_run_on_amd64(daemon: Daemon, busybox: str, tmp_path: Path) -> None:
    out = _run(daemon, busybox, tmp_path, "uname -m > /out/arch", platforms=["linux/amd64"])
    assert (out / "arch").read_text().strip() == "x86_64"


def test_run_on_arm64_through_qemu(daemon: Daemon, busybox: str, tmp_path: Path) -> None:
    out = _run(daemon, busybox, tmp_path, "uname -m > /out/arch", platforms=["linux/arm64"])
    assert (out / "arch").read_text().strip() == "aarch64"


def test_run_both_platforms_in_one_solve(daemon: Daemon, busybox: str, tmp_path: Path) -> None:
    out = _run(
        daemon, busybox, tmp_path, "uname -m > /out/arch", platforms=["linux/amd64,linux/arm64"]
    )
    assert (out / "linux_amd64" / "arch").read_text().strip() == "x86_64"
    assert (out / "linux_arm64" / "arch").read_text().strip() == "aarch64"


def test_build_arg_in_a_run_step(daemon: Daemon, busybox: str, tmp_path: Path) -> None:
    dockerfile = (
        f"FROM {busybox} AS work\nARG GREETING\nRUN mkdir /out && echo $GREETING > /out/g\n"
        "FROM scratch\nCOPY --from=work /out /\n"
    )
    context = make_context(tmp_path / "ctx", dockerfile)
    out = tmp_path / "out"
    build_on(
        daemon,
        context=str(context),
        build_args=["GREETING=hello-arg"],
        outputs=[f"type=local,dest={out}"],
    )
    assert (out / "g").read_text().strip() == "hello-arg"


def test_no_cache_reruns_steps(daemon: Daemon, busybox: str, tmp_path: Path) -> None:
    script = f"cat /proc/sys/kernel/random/uuid > /out/id # {tmp_path.name}"
    first = (_run(daemon, busybox, tmp_path / "1", script) / "id").read_text()
    cached = (_run(daemon, busybox, tmp_path / "2", script) / "id").read_text()
    fresh = (_run(daemon, busybox, tmp_path / "3", script, no_cache=True) / "id").read_text()
    assert cached == first
    assert fresh != first


def test_no_cache_filter_reruns_only_that_stage(
    daemon: Daemon, busybox: str, tmp_path: Path
) -> None:
    script = f"cat /proc/sys/kernel/random/uuid > /out/id # {tmp_path.name}"
    first = (_run(daemon, busybox, tmp_path / "1", script) / "id").read_text()
    other = _run(daemon, busybox, tmp_path / "2", script, no_cache_filter=["nonexistent"])
    fresh = _run(daemon, busybox, tmp_path / "3", script, no_cache_filter=["work"])
    assert (other / "id").read_text() == first
    assert (fresh / "id").read_text() != first


def test_add_host(daemon: Daemon, busybox: str, tmp_path: Path) -> None:
    out = _run(
        daemon, busybox, tmp_path, "cat /etc/hosts > /out/hosts", add_hosts=["db.internal=10.9.8.7"]
    )
    assert "10.9.8.7\tdb.internal" in (out / "hosts").read_text().replace(" ", "\t")


def test_network_none_has_only_loopback(daemon: Daemon, busybox: str, tmp_path: Path) -> None:
    script = "cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' > /out/ifaces"
    out = _run(daemon, busybox, tmp_path, script, network="none")
    assert (out / "ifaces").read_text().split() == ["lo"]


def test_shm_size(daemon: Daemon, busybox: str, tmp_path: Path) -> None:
    out = _run(daemon, busybox, tmp_path, "df -k /dev/shm | tail -1 > /out/shm", shm_size="96m")
    assert (out / "shm").read_text().split()[1] == str(96 * 1024)


def test_ulimit(daemon: Daemon, busybox: str, tmp_path: Path) -> None:
    out = _run(daemon, busybox, tmp_path, "ulimit -n > /out/nofile", ulimits=["nofile=777:777"])
    assert (out / "nofile").read_text().strip() == "777"


def test_failing_run_step_names_the_line(daemon: Daemon, busybox: str, tmp_path: Path) -> None:
    from pybuildx.errors import BuildFailed

    context = make_context(tmp_path / "ctx", f"FROM {busybox}\nRUN echo ok\nRUN exit 3\n")
    with pytest.raises(BuildFailed) as info:
        build_on(daemon, context=str(context))
    assert "exit code: 3" in info.value.message
    assert "Dockerfile:3: RUN exit 3" in info.value.message


def test_host_network_asks_the_daemon_for_the_entitlement(
    daemon: Daemon, busybox: str, tmp_path: Path
) -> None:
    # The bed daemons do not grant network.host: the refusal must come from the daemon's
    # configuration, which shows that the request carried the entitlement.
    from pybuildx.errors import DaemonError

    with pytest.raises(DaemonError) as info:
        _run(daemon, busybox, tmp_path, "true", network="host")
    assert "network.host" in info.value.message
    assert "not allowed by build daemon configuration" in info.value.message
