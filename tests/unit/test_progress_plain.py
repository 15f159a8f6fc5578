"""``--progress=plain`` renders Status streams the way buildx's plain output reads in CI logs."""

from __future__ import annotations

import io

from pybuildx.buildkit.progress_plain import PlainWriter
from pybuildx.errors import register_secret
from tests.unit.progress_messages import log, response, status, vertex, warning

LOAD = "sha256:aaa"
FROM = "sha256:bbb"
RUN = "sha256:ccc"


def _render(*messages: object, prefix: str = "") -> str:
    out = io.StringIO()
    writer = PlainWriter(out, prefix=prefix)
    for message in messages:
        writer.write(message)
    writer.close()
    return out.getvalue()


def test_a_small_build_reads_like_buildx() -> None:
    text = _render(
        response(vertexes=[vertex(LOAD, "[internal] load build definition", started=0.0)]),
        response(
            statuses=[status(LOAD, "transferring dockerfile:", current=71, at=0.01, completed=0.01)]
        ),
        response(
            vertexes=[vertex(LOAD, "[internal] load build definition", started=0.0, completed=0.02)]
        ),
        response(
            vertexes=[vertex(FROM, "[1/2] FROM busybox", started=0.1, completed=0.1, cached=True)]
        ),
        response(vertexes=[vertex(RUN, "[2/2] RUN echo hello", started=0.2)]),
        response(logs=[log(RUN, b"hel", at=0.4)]),
        response(logs=[log(RUN, b"lo\nworld\n", at=0.5)]),
        response(vertexes=[vertex(RUN, "[2/2] RUN echo hello", started=0.2, completed=0.55)]),
    )
    assert text == (
        "#1 [internal] load build definition\n"
        "#1 transferring dockerfile: 71B done\n"
        "#1 DONE 0.0s\n"
        "\n"
        "#2 [1/2] FROM busybox\n"
        "#2 CACHED\n"
        "\n"
        "#3 [2/2] RUN echo hello\n"
        "#3 0.300 hello\n"
        "#3 0.300 world\n"
        "#3 DONE 0.3s\n"
    )


def test_vertexes_are_numbered_in_order_of_first_appearance() -> None:
    text = _render(
        response(vertexes=[vertex(RUN, "run"), vertex(FROM, "from")]),
        response(vertexes=[vertex(FROM, "from", started=0.0, completed=0.1)]),
        response(vertexes=[vertex(RUN, "run", started=0.2, completed=0.4)]),
    )
    assert text == "#2 from\n#2 DONE 0.1s\n\n#1 run\n#1 DONE 0.2s\n"


def test_interleaved_steps_mark_unfinished_blocks_and_repeat_headers() -> None:
    text = _render(
        response(vertexes=[vertex(FROM, "slow", started=0.0)]),
        response(logs=[log(FROM, b"s1\n", at=0.1)]),
        response(vertexes=[vertex(RUN, "fast", started=0.2, completed=0.3)]),
        response(logs=[log(FROM, b"s2\n", at=0.5)]),
        response(vertexes=[vertex(FROM, "slow", started=0.0, completed=0.6)]),
    )
    assert text == (
        "#1 slow\n"
        "#1 0.100 s1\n"
        "#1 ...\n"
        "\n"
        "#2 fast\n"
        "#2 DONE 0.1s\n"
        "\n"
        "#1 slow\n"
        "#1 0.500 s2\n"
        "#1 DONE 0.6s\n"
    )


def test_a_step_waiting_for_its_inputs_is_shown_once_they_end() -> None:
    text = _render(
        response(
            vertexes=[vertex(FROM, "[1/2] COPY x /x"), vertex(RUN, "[2/2] RUN", inputs=(FROM,))]
        ),
        response(vertexes=[vertex(RUN, "[2/2] RUN", started=0.0, inputs=(FROM,))]),
        response(
            vertexes=[vertex(FROM, "[1/2] COPY x /x", started=0.0, completed=0.1, cached=True)]
        ),
        response(logs=[log(RUN, b"hi\n", at=0.5)]),
        response(vertexes=[vertex(RUN, "[2/2] RUN", started=0.0, completed=0.6, inputs=(FROM,))]),
    )
    assert text == ("#1 [1/2] COPY x /x\n#1 CACHED\n\n#2 [2/2] RUN\n#2 0.500 hi\n#2 DONE 0.6s\n")


def test_a_vertex_completed_and_restarted_at_once_stays_one_block() -> None:
    text = _render(
        response(
            vertexes=[
                vertex(LOAD, "load"),
                vertex(LOAD, "load", started=0.0, completed=0.01),
                vertex(LOAD, "load", started=0.02),
            ]
        ),
        response(statuses=[status(LOAD, "transferring:", current=9, at=0.03, completed=0.03)]),
        response(vertexes=[vertex(LOAD, "load", started=0.02, completed=0.04)]),
    )
    assert text == "#1 load\n#1 transferring: 9B done\n#1 DONE 0.0s\n"


def test_failed_and_canceled_steps() -> None:
    failure = 'process "/bin/sh -c exit 3" did not complete successfully: exit code: 3'
    text = _render(
        response(vertexes=[vertex(RUN, "[2/2] RUN exit 3", started=0.0)]),
        response(logs=[log(RUN, b"about to fail\n", at=0.1, stream=2)]),
        response(
            vertexes=[vertex(RUN, "[2/2] RUN exit 3", started=0.0, completed=0.2, error=failure)]
        ),
        response(
            vertexes=[vertex(FROM, "other", started=0.0, completed=0.2, error="context canceled")]
        ),
    )
    assert f"#1 ERROR: {failure}\n" in text
    assert "#1 0.100 about to fail\n" in text
    assert "#2 CANCELED\n" in text


def test_status_rows_show_sizes_and_only_slow_transfers_repeat() -> None:
    layer = "sha256:31e352740f53"
    text = _render(
        response(vertexes=[vertex(FROM, "[1/2] FROM busybox", started=0.0)]),
        response(
            statuses=[status(FROM, layer, current=1_050_000, total=3_400_000, at=0.1, started=0.0)]
        ),
        response(
            statuses=[status(FROM, layer, current=2_000_000, total=3_400_000, at=0.5, started=0.0)]
        ),
        response(
            statuses=[status(FROM, layer, current=3_000_000, total=3_400_000, at=1.2, started=0.0)]
        ),
        response(
            statuses=[
                status(
                    FROM,
                    layer,
                    current=3_400_000,
                    total=3_400_000,
                    at=1.4,
                    started=0.0,
                    completed=1.4,
                )
            ]
        ),
        response(
            statuses=[status(FROM, "extracting " + layer, at=1.5, started=1.4, completed=1.5)]
        ),
    )
    assert text.splitlines()[1:] == [
        f"#1 {layer} 3.00MB / 3.40MB 1.2s",
        f"#1 {layer} 3.40MB / 3.40MB 1.4s done",
        f"#1 extracting {layer} 0.1s done",
    ]


def test_secrets_are_masked_even_when_split_across_messages() -> None:
    register_secret("s3cr3t-t0ken-value")
    text = _render(
        response(vertexes=[vertex(RUN, "RUN curl -H s3cr3t-t0ken-value x", started=0.0)]),
        response(logs=[log(RUN, b"token is s3cr3t-t0", at=0.1)]),
        response(logs=[log(RUN, b"ken-value\n", at=0.2)]),
        response(
            vertexes=[vertex(RUN, "RUN x", started=0.0, completed=0.3, error="s3cr3t-t0ken-value")]
        ),
    )
    assert "s3cr3t" not in text
    assert "#1 RUN curl -H *** x\n" in text
    assert "#1 0.200 token is ***\n" in text
    assert "#1 ERROR: ***\n" in text


def test_unterminated_last_line_is_printed_on_close() -> None:
    text = _render(
        response(vertexes=[vertex(RUN, "run", started=0.0)]),
        response(logs=[log(RUN, b"no newline", at=0.1)]),
    )
    assert text.endswith("#1 no newline\n")


def test_prefix_marks_every_line_of_a_node() -> None:
    text = _render(
        response(vertexes=[vertex(RUN, "run", started=0.0)]),
        response(logs=[log(RUN, b"hi\n", at=0.1)]),
        response(vertexes=[vertex(RUN, "run", started=0.0, completed=0.1)]),
        prefix="[linux/arm64] ",
    )
    assert text == ("[linux/arm64] #1 run\n[linux/arm64] #1 0.100 hi\n[linux/arm64] #1 DONE 0.1s\n")


def test_warnings_are_shown_and_summarised_at_the_end() -> None:
    out = io.StringIO()
    writer = PlainWriter(out)
    writer.write(response(vertexes=[vertex(LOAD, "[internal] load build definition", started=0.0)]))
    writer.write(
        response(
            warnings=[
                warning(
                    LOAD,
                    b"FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 2)",
                    line=2,
                )
            ]
        )
    )
    writer.write(response(warnings=[warning("", b"global warning")]))
    writer.close()
    text = out.getvalue()
    summary = "FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 2)"
    assert f"#1 WARN: {summary}\n" in text
    assert text.endswith(f"\n2 warnings found:\n - {summary}\n - global warning\n")
    assert [w.short for w in writer.warnings] == [
        "FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 2)",
        "global warning",
    ]
    assert writer.warnings[0].line == 2
    assert writer.warnings[0].detail == ("the detail",)
    assert writer.warnings[0].filename == "Dockerfile"


def test_close_is_idempotent_and_writes_after_close_are_ignored() -> None:
    out = io.StringIO()
    writer = PlainWriter(out)
    writer.write(response(vertexes=[vertex(RUN, "run", started=0.0, completed=0.1)]))
    writer.close()
    before = out.getvalue()
    writer.write(response(vertexes=[vertex(FROM, "late", started=0.0, completed=0.1)]))
    writer.close()
    assert out.getvalue() == before
