"""``builder du`` and ``builder prune``: options as BuildKit wants them, output as buildx prints.

Filters follow buildx (drivers.md §7): ``until=<duration>`` (and the older ``unused-for``) is a
duration, ``id=x`` matches by prefix (``id~=x``), any other ``k=v`` is ``k==v``; an already
written operator (``k==v``, ``k!=v``, ``k~=v``) passes through. All given filters must match at
once, so they travel as one comma-joined filter (BuildKit ORs separate ones).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from pybuildx.builders.sizes import human_size
from pybuildx.buildkit.control import UsageRecord
from pybuildx.drivers.options import parse_duration
from pybuildx.errors import ConfigError

__all__ = [
    "MIN_SPACE_FILTER_VERSION",
    "CacheFilter",
    "du_pretty",
    "du_summary",
    "du_table",
    "human_size",
    "parse_filters",
    "supports_space_limits",
    "unused_for_at_least",
]

# --max-used-space and --min-free-space reach the daemon only from this release on.
MIN_SPACE_FILTER_VERSION = (0, 17)
_DURATION_KEYS = ("until", "unused-for")
_OPERATOR = re.compile(r"^([\w.-]+)(==|!=|~=)(.*)$")
_VERSION = re.compile(r"^v?(\d+)\.(\d+)")


@dataclass(frozen=True)
class CacheFilter:
    filters: tuple[str, ...] = ()  # for the daemon: zero or one comma-joined expression
    older_than_s: float = 0.0  # until=: records unused for at least this long


def parse_filters(values: Iterable[str]) -> CacheFilter:
    parts: list[str] = []
    older_than = 0.0
    for value in values:
        for item in (v.strip() for v in value.split(",")):
            if not item:
                continue
            written = _OPERATOR.match(item)
            if written:
                parts.append(item)
                continue
            key, sep, arg = item.partition("=")
            if not sep or not key:
                raise ConfigError(
                    f"invalid filter {item!r}",
                    hint="write key=value, e.g. until=24h, id=abc, type=regular",
                )
            if key in _DURATION_KEYS:
                older_than = parse_duration(key, arg)
            elif key == "id":
                parts.append(f"id~={arg}")
            else:
                parts.append(f"{key}=={arg}")
    return CacheFilter((",".join(parts),) if parts else (), older_than)


def unused_for_at_least(record: UsageRecord, seconds: float, now: datetime) -> bool:
    used = record.last_used_at or record.created_at
    return used is None or (now - used).total_seconds() >= seconds


def supports_space_limits(version: str) -> bool:
    """True unless ``version`` is a BuildKit release older than v0.17 (unknown versions pass)."""
    match = _VERSION.match(version.strip())
    if match is None:
        return True
    return (int(match.group(1)), int(match.group(2))) >= MIN_SPACE_FILTER_VERSION


def _ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return ""
    seconds = max(0, int((now - when).total_seconds()))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count > 1 else ''} ago"
    if seconds < 1:
        return "Less than a second ago"
    return f"{seconds} second{'s' if seconds > 1 else ''} ago"


def _ordered(records: Iterable[UsageRecord]) -> list[UsageRecord]:
    return sorted(records, key=lambda r: (r.in_use, -r.size))


def du_table(records: Sequence[UsageRecord], now: datetime | None = None) -> list[str]:
    """``ID RECLAIMABLE SIZE LAST ACCESSED``; mutable IDs and shared sizes marked ``*``."""
    now = now or datetime.now(timezone.utc)
    rows = [("ID", "RECLAIMABLE", "SIZE", "LAST ACCESSED")]
    for record in _ordered(records):
        rows.append(
            (
                record.id + ("*" if record.mutable else ""),
                str(not record.in_use).lower(),
                human_size(record.size) + ("*" if record.shared else ""),
                _ago(record.last_used_at, now),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return [
        "".join(c.ljust(w + 3) for c, w in zip(row[:3], widths, strict=True)) + row[3]
        for row in rows
    ]


def du_pretty(records: Sequence[UsageRecord], now: datetime | None = None) -> list[str]:
    """``--verbose``: every field of every record, one block each."""
    now = now or datetime.now(timezone.utc)
    lines: list[str] = []
    for record in _ordered(records):
        pairs = [("ID", record.id)]
        if record.parents:
            pairs.append(("Parents", ";".join(record.parents)))
        if record.created_at:
            pairs.append(("Created at", record.created_at.isoformat(timespec="seconds")))
        pairs += [
            ("Mutable", str(record.mutable).lower()),
            ("Reclaimable", str(not record.in_use).lower()),
            ("Shared", str(record.shared).lower()),
            ("Size", human_size(record.size)),
        ]
        if record.description:
            pairs.append(("Description", record.description))
        pairs.append(("Usage count", str(record.usage_count)))
        if record.last_used_at:
            pairs.append(("Last used", _ago(record.last_used_at, now)))
        if record.record_type:
            pairs.append(("Type", record.record_type))
        width = max(len(k) for k, _ in pairs) + 2
        lines += [f"{(k + ':').ljust(width)}{v}" for k, v in pairs]
        lines.append("")
    return lines


def du_summary(records: Sequence[UsageRecord]) -> list[str]:
    shared = sum(r.size for r in records if r.shared)
    total = sum(r.size for r in records)
    reclaimable = sum(r.size for r in records if not r.in_use)
    lines = []
    if shared:
        lines += [f"Shared:\t\t{human_size(shared)}", f"Private:\t{human_size(total - shared)}"]
    lines += [f"Reclaimable:\t{human_size(reclaimable)}", f"Total:\t\t{human_size(total)}"]
    return lines
