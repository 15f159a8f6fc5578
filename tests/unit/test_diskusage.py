"""``builder du``/``prune`` options and output, as buildx gives them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from pybuildx.builders.diskusage import (
    du_summary,
    du_table,
    human_size,
    parse_filters,
    supports_space_limits,
    unused_for_at_least,
)
from pybuildx.buildkit.control import UsageRecord
from pybuildx.errors import ConfigError

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_filters_translate_like_buildx_and_are_anded() -> None:
    parsed = parse_filters(["id=abc", "type=regular", "until=2h", "description~=foo"])
    assert parsed.filters == ("id~=abc,type==regular,description~=foo",)
    assert parsed.older_than_s == 7200
    assert parse_filters(["unused-for=30m"]).older_than_s == 1800
    assert parse_filters([]).filters == ()


@pytest.mark.parametrize("bad", ["novalue", "=x", "until=soon"])
def test_bad_filters_are_usage_errors(bad: str) -> None:
    with pytest.raises(ConfigError):
        parse_filters([bad])


@pytest.mark.parametrize(
    ("version", "ok"),
    [("v0.16.4", False), ("v0.17.0", True), ("v0.34.2", True), ("0.9.3", False), ("dev", True)],
)
def test_space_limits_need_buildkit_0_17(version: str, ok: bool) -> None:
    assert supports_space_limits(version) is ok


def test_du_table_marks_mutable_and_shared_and_sums() -> None:
    records = [
        UsageRecord(id="aaa", size=1500, mutable=True, last_used_at=NOW - timedelta(minutes=5)),
        UsageRecord(id="bbb", size=2_000_000, in_use=True, shared=True),
    ]
    table = du_table(records, NOW)
    assert table[0].split() == ["ID", "RECLAIMABLE", "SIZE", "LAST", "ACCESSED"]
    assert table[1].split() == ["aaa*", "true", "1.5kB", "5", "minutes", "ago"]
    assert table[2].split() == ["bbb", "false", "2MB*"]
    assert du_summary(records) == [
        "Shared:\t\t2MB",
        "Private:\t1.5kB",
        "Reclaimable:\t1.5kB",
        "Total:\t\t2.002MB",
    ]
    assert human_size(0) == "0B"


def test_until_keeps_only_records_unused_for_long_enough() -> None:
    old = UsageRecord(id="o", size=1, last_used_at=NOW - timedelta(hours=3))
    fresh = UsageRecord(id="f", size=1, last_used_at=NOW - timedelta(minutes=3))
    assert unused_for_at_least(old, 3600, NOW) and not unused_for_at_least(fresh, 3600, NOW)
