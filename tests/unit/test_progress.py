"""Mode selection, quiet and rawjson output, concurrent writers (``buildkit.progress``)."""

from __future__ import annotations

import base64
import io
import json
import re
import threading

import pytest

from pybuildx.buildkit.progress import QuietWriter, make_progress
from pybuildx.buildkit.progress_plain import PlainWriter
from pybuildx.buildkit.progress_rawjson import RawJsonWriter
from pybuildx.errors import ConfigError, register_secret
from tests.unit.progress_messages import log, response, status, vertex, warning

RUN = "sha256:ccc"


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("auto", PlainWriter), ("tty", PlainWriter), ("PLAIN", PlainWriter), ("quiet", QuietWriter)],
)
def test_non_terminals_never_get_the_live_view(mode: str, expected: type) -> None:
    assert type(make_progress(mode, io.StringIO())) is expected


def test_auto_picks_the_live_view_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    from pybuildx.buildkit.progress_tty import TtyWriter

    monkeypatch.setenv("TERM", "xterm")
    writer = make_progress("auto", FakeTerminal())
    try:
        assert isinstance(writer, TtyWriter)
    finally:
        writer.close()
    monkeypatch.setenv("TERM", "dumb")
    assert isinstance(make_progress("auto", FakeTerminal()), PlainWriter)


def test_unknown_mode_suggests_the_nearest() -> None:
    with pytest.raises(ConfigError) as raised:
        make_progress("plian", io.StringIO())
    assert raised.value.hint == "did you mean 'plain'?"


def test_quiet_prints_nothing_but_keeps_warnings() -> None:
    out = io.StringIO()
    writer = make_progress("quiet", out)
    writer.write(response(vertexes=[vertex(RUN, "run", started=0.0, completed=1.0)]))
    writer.write(response(warnings=[warning(RUN, b"careful")]))
    writer.close()
    assert out.getvalue() == ""
    assert [w.short for w in writer.warnings] == ["careful"]


def test_rawjson_prints_one_buildx_shaped_object_per_message() -> None:
    register_secret("hunter2-password")
    out = io.StringIO()
    writer = make_progress("rawjson", out)
    assert isinstance(writer, RawJsonWriter)
    writer.write(response(vertexes=[vertex(RUN, "[2/2] RUN echo", started=0.0, cached=False)]))
    writer.write(
        response(
            statuses=[status(RUN, "writing layer", current=5, at=0.25, started=0.0)],
            logs=[log(RUN, b"pw=hunter2-password\n", at=0.5, stream=2)],
            warnings=[warning(RUN, b"short text", line=3)],
        )
    )
    writer.write(
        response(vertexes=[vertex(RUN, "[2/2] RUN echo", started=0.0, completed=1.5, error="boom")])
    )
    writer.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    first, second, third = (json.loads(line) for line in lines)
    assert first == {
        "vertexes": [{"digest": RUN, "name": "[2/2] RUN echo", "started": "2023-11-14T22:13:20Z"}]
    }
    assert second["statuses"] == [
        {
            "id": "writing layer",
            "vertex": RUN,
            "current": 5,
            "timestamp": "2023-11-14T22:13:20.25Z",
            "started": "2023-11-14T22:13:20Z",
        }
    ]
    [entry] = second["logs"]
    assert entry["stream"] == 2
    assert entry["timestamp"] == "2023-11-14T22:13:20.5Z"
    assert base64.b64decode(entry["data"]) == b"pw=***\n"
    [warn] = second["warnings"]
    assert base64.b64decode(warn["short"]) == b"short text"
    assert [base64.b64decode(d) for d in warn["detail"]] == [b"the detail"]
    assert warn["sourceInfo"]["filename"] == "Dockerfile"
    assert warn["range"][0]["start"]["line"] == 3
    assert third["vertexes"][0]["completed"] == "2023-11-14T22:13:21.5Z"
    assert third["vertexes"][0]["error"] == "boom"
    assert "statuses" not in third


def test_concurrent_node_writers_keep_lines_whole() -> None:
    out = io.StringIO()
    writers = [make_progress("plain", out, prefix=f"[node{i}] ") for i in range(3)]

    def feed(index: int) -> None:
        writer = writers[index]
        for step in range(60):
            digest = f"sha256:{index}-{step}"
            writer.write(response(vertexes=[vertex(digest, f"step {step}", started=0.0)]))
            writer.write(response(logs=[log(digest, b"line one\nline two\n", at=0.1)]))
            writer.write(
                response(vertexes=[vertex(digest, f"step {step}", started=0.0, completed=0.2)])
            )
        writer.close()

    threads = [threading.Thread(target=feed, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = [line for line in out.getvalue().splitlines() if line]
    pattern = re.compile(r"^\[node\d\] #\d+ (step \d+|0\.100 line (one|two)|DONE 0\.2s)$")
    assert len(lines) == 3 * 60 * 4
    broken = [line for line in lines if not pattern.match(line)]
    assert broken == []
