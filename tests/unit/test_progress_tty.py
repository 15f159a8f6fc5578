"""``--progress=tty``: the live view and the final summary, rendered on a fake terminal."""

from __future__ import annotations

import io
import threading

from rich.console import Console

from pybuildx.buildkit.progress_tty import TtyWriter
from tests.unit.progress_messages import log, response, status, vertex, warning

LOAD = "sha256:aaa"
FROM = "sha256:bbb"
RUN = "sha256:ccc"


def _terminal() -> tuple[io.StringIO, Console]:
    out = io.StringIO()
    return out, Console(file=out, force_terminal=True, color_system=None, width=100, height=30)


def _text(renderable: object) -> str:
    capture = Console(file=io.StringIO(), width=100, color_system=None)
    with capture.capture() as captured:
        capture.print(renderable)
    return captured.get()


def _feed(writer: TtyWriter) -> None:
    writer.write(response(vertexes=[vertex(LOAD, "[internal] load build definition", started=0.0)]))
    writer.write(
        response(
            vertexes=[vertex(LOAD, "[internal] load build definition", started=0, completed=0.1)]
        )
    )
    writer.write(
        response(
            vertexes=[vertex(FROM, "[1/2] FROM busybox", started=0.1, completed=0.1, cached=True)]
        )
    )
    writer.write(response(vertexes=[vertex(RUN, "[2/2] RUN make", started=0.2)]))
    writer.write(
        response(statuses=[status(RUN, "pulling tools", current=2000, total=4000, at=0.3)])
    )
    writer.write(response(logs=[log(RUN, b"compiling foo.c\ncompiling bar.c\n", at=0.4)]))


def test_live_view_shows_running_steps_with_their_logs() -> None:
    out, console = _terminal()
    writer = TtyWriter(out, console=console)
    try:
        _feed(writer)
        text = _text(writer.view(budget=20))
    finally:
        writer.close()
    assert "[+] Building" in text
    assert "(2/3)" in text
    assert " => [internal] load build definition" in text
    assert " => CACHED [1/2] FROM busybox" in text
    assert " => [2/2] RUN make" in text
    assert " => => pulling tools 2.00kB / 4.00kB" in text
    assert " => => # compiling bar.c" in text


def test_finished_steps_fold_away_when_the_terminal_is_short() -> None:
    out, console = _terminal()
    writer = TtyWriter(out, console=console)
    try:
        for index in range(10):
            digest = f"sha256:{index}"
            writer.write(
                response(vertexes=[vertex(digest, f"step {index}", started=0, completed=1)])
            )
        writer.write(response(vertexes=[vertex(RUN, "still running", started=0.0)]))
        text = _text(writer.view(budget=5))
    finally:
        writer.close()
    assert "still running" in text
    assert "step 9" in text
    assert "step 0" not in text
    assert "finished steps" in text


def test_close_prints_all_steps_failed_logs_and_warnings() -> None:
    out, console = _terminal()
    writer = TtyWriter(out, console=console, prefix="[amd64] ")
    _feed(writer)
    writer.write(
        response(warnings=[warning(RUN, b"UndefinedVar: $X is not defined (line 4)", line=4)])
    )
    writer.write(
        response(
            vertexes=[
                vertex(RUN, "[2/2] RUN make", started=0.2, completed=1.2, error="exit code: 2")
            ]
        )
    )
    writer.close()
    final = out.getvalue()
    assert "[amd64] [+] Finished" in final
    assert "ERROR [2/2] RUN make" in final
    assert " > [2/2] RUN make:" in final
    assert "compiling bar.c" in final
    assert "1 warning found:" in final
    assert "UndefinedVar: $X is not defined (line 4)" in final


def test_two_nodes_share_one_live_display() -> None:
    out, console = _terminal()
    first = TtyWriter(out, console=console, prefix="[amd64] ")
    second = TtyWriter(out, console=console, prefix="[arm64] ")
    try:
        assert first.console is second.console
        first.write(response(vertexes=[vertex(RUN, "amd64 step", started=0.0)]))
        second.write(response(vertexes=[vertex(RUN, "arm64 step", started=0.0)]))
    finally:
        first.close()
        second.close()
    final = out.getvalue()
    assert "[amd64] [+] Finished" in final
    assert "[arm64] [+] Finished" in final


def test_nodes_finishing_at_different_times_do_not_deadlock() -> None:
    out, console = _terminal()
    writers = [TtyWriter(out, console=console, prefix=f"[node{i}] ") for i in range(3)]

    def feed(index: int) -> None:
        writer = writers[index]
        for step in range(40 * (index + 1)):
            digest = f"sha256:{step}"
            writer.write(response(vertexes=[vertex(digest, f"step {step}", started=0.0)]))
            writer.write(response(logs=[log(digest, b"output\n", at=0.1)]))
            writer.write(
                response(vertexes=[vertex(digest, f"step {step}", started=0, completed=1)])
            )
            writer.view(budget=10)  # what the refresh thread does, from this thread too
        writer.close()

    threads = [threading.Thread(target=feed, args=(i,), daemon=True) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a writer is stuck"
    final = out.getvalue()
    assert all(f"[node{i}] [+] Finished" in final for i in range(3))
