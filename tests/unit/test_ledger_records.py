"""The ledger's record files: streamed in key order, and distrusted when incomplete."""

from __future__ import annotations

from pathlib import Path

from pybuildx.buildkit.ledger_records import (
    CHUNK,
    Record,
    RecordWriter,
    merge_newest,
    read_records,
    trusted,
)


def record(key: bytes, sent: int, fresh: bool = True) -> Record:
    return (key, 1, 2, 3, 4, sent, fresh)


def test_records_round_trip_across_chunks(tmp_path: Path) -> None:
    target = tmp_path / "x.state"
    records = [record(b"d%06d" % i, i) for i in range(CHUNK * 2 + 5)]
    writer = RecordWriter(target)
    writer.extend(records)
    written = writer.finish()
    assert written.stat().st_mode & 0o777 == 0o600
    written.replace(target)
    assert trusted(target)
    assert list(read_records(target)) == records


def test_missing_file_has_no_records_and_truncated_file_is_not_trusted(tmp_path: Path) -> None:
    target = tmp_path / "x.state"
    assert trusted(target) and list(read_records(target)) == []
    writer = RecordWriter(target)
    writer.extend(record(b"k%d" % i, i) for i in range(10))
    data = writer.finish().read_bytes()
    for cut in (0, 5, len(data) - 1):
        target.write_bytes(data[:cut])
        assert not trusted(target)


def test_discard_leaves_nothing(tmp_path: Path) -> None:
    writer = RecordWriter(tmp_path / "x.state")
    writer.add(record(b"a", 1))
    writer.discard()
    assert list(tmp_path.iterdir()) == []


def test_merge_prefers_what_each_side_wrote_itself() -> None:
    ours = [record(b"a", 1), record(b"b", 2, fresh=False), record(b"c", 3)]
    theirs = [record(b"b", 20), record(b"c", 30), record(b"d", 40)]
    merged = list(merge_newest(iter(ours), iter(theirs)))
    assert [(r[0], r[5]) for r in merged] == [(b"a", 1), (b"b", 20), (b"c", 3), (b"d", 40)]
