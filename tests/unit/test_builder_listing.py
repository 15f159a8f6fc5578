"""How ``builder ls`` and ``builder inspect`` render builder states (buildx's layout)."""

from __future__ import annotations

from pybuildx.builders.listing import (
    format_duration,
    format_platforms,
    human_bytes,
    inspect_lines,
    ls_errors,
    ls_json,
    ls_table,
    sort_for_listing,
)
from pybuildx.builders.status import BuilderStatus, NodeStatus
from pybuildx.buildkit.control import GCPolicy
from pybuildx.config import Platform
from pybuildx.drivers.spec import NodeSpec

MANY = [
    "linux/amd64", "linux/amd64/v2", "linux/amd64/v3", "linux/arm64", "linux/riscv64",
    "linux/ppc64le", "linux/s390x", "linux/386", "linux/mips64le", "linux/arm/v7", "linux/arm/v6",
]  # fmt: skip


def _node(name: str = "n0", static: tuple[str, ...] = (), **kw: object) -> NodeStatus:
    spec = NodeSpec(
        name=name,
        driver="remote",
        endpoint="tcp://127.0.0.1:1234",
        platforms=tuple(Platform.parse(p) for p in static),
        driver_opts={"servername": "bk", "cacert": "/ca.pem"},
        buildkitd_flags=(),
    )
    return NodeStatus(spec=spec, **kw)  # type: ignore[arg-type]


def test_platforms_are_grouped_by_os_arch_and_truncated() -> None:
    text = format_platforms(MANY, [], truncate=True)
    assert text == "linux/amd64 (+2), linux/arm64, linux/arm/v7 (+1), linux/ppc64le, (4 more)"


def test_static_platforms_come_first_with_a_star() -> None:
    text = format_platforms(["linux/s390x", *MANY], ["linux/s390x"], truncate=True)
    assert text.endswith(", (4 more)")  # s390x counted once
    assert text.startswith("linux/s390x*, linux/amd64 (+2), ")
    assert text.count("*") == 1


def test_no_trunc_lists_everything_in_order() -> None:
    text = format_platforms(["linux/arm64", *MANY[:3]], ["linux/arm64"], truncate=False)
    assert text == "linux/arm64*, linux/amd64, linux/amd64/v2, linux/amd64/v3"


def test_errored_builders_sort_last_and_their_errors_follow_the_table() -> None:
    broken = BuilderStatus(name="a", driver="", error="unreadable")
    failing = BuilderStatus(
        name="b", driver="remote", nodes=(_node("b0", status="error", error="boom"),)
    )
    fine = BuilderStatus(name="c", driver="remote", nodes=(_node("c0", status="running"),))
    ordered = sort_for_listing([broken, failing, fine])
    assert [b.name for b in ordered] == ["c", "a", "b"]
    table = ls_table(ordered)
    assert table[0].split() == ["NAME/NODE", "DRIVER/ENDPOINT", "STATUS", "BUILDKIT", "PLATFORMS"]
    assert table[3].split() == ["a", "error"]
    assert ls_errors(ordered) == [
        "Cannot load builder a: unreadable",
        "Failed to get status for b (b0): boom",
    ]


def test_ls_json_drops_empty_fields_and_keeps_current() -> None:
    node = _node("n0", static=("linux/arm64",), status="running", version="v0.18.2",
                 detected=("linux/amd64", "linux/arm64"), worker_ids=("w1",))  # fmt: skip
    data = ls_json(BuilderStatus(name="x", driver="remote", nodes=(node,), current=True))
    assert data["Current"] is True and data["Dynamic"] is False and "Err" not in data
    (entry,) = data["Nodes"]
    assert entry["Platforms"] == [
        {"architecture": "arm64", "os": "linux"},
        {"architecture": "amd64", "os": "linux"},
    ]
    assert entry["IDs"] == ["w1"] and "Err" not in entry and "GCPolicy" not in entry
    assert entry["DriverOpts"] == {"servername": "bk", "cacert": "/ca.pem"}


def test_inspect_prints_options_sorted_gc_rules_and_features_only_in_debug() -> None:
    policy = GCPolicy(
        all=False, keep_duration_s=172800, reserved_space=0, max_used_space=512000000,
        min_free_space=0, filters=("type==source.local",),
    )  # fmt: skip
    node = _node(status="running", version="v0.34.2", gc_policies=(policy,),
                 labels={"b": "2", "a": "1"}, features={"Cache export": True})  # fmt: skip
    lines = inspect_lines(BuilderStatus(name="x", driver="remote", nodes=(node,)))
    assert 'Driver Options:   cacert="/ca.pem" servername="bk"' in lines
    assert "GC Policy rule#0:" in lines
    assert " Keep Duration:  48h0m0s" in lines and " Max Used Space: 488.3MiB" in lines
    assert lines.index(" a: 1") < lines.index(" b: 2")
    assert "Features:" not in lines
    assert " Cache export: true" in inspect_lines(
        BuilderStatus(name="x", driver="remote", nodes=(node,)), debug=True
    )
    failed = inspect_lines(
        BuilderStatus(name="x", driver="remote", nodes=(_node(status="error", error="boom"),))
    )
    assert any(line.startswith("Error:") and "boom" in line for line in failed)
    assert not any(line.startswith("Status:") for line in failed)


def test_sizes_and_durations_read_like_buildx() -> None:
    assert human_bytes(10_000_000_000) == "9.313GiB"
    assert human_bytes(512) == "512B"
    assert format_duration(0) == "0s"
    assert format_duration(90) == "1m30s"
    assert format_duration(5184000) == "1440h0m0s"
