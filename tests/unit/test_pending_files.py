"""The sender's id -> path map: every path comes back once, also after it moved to disk."""

from __future__ import annotations

from pybuildx.buildkit.pending_files import PendingFiles


def test_paths_come_back_once_from_memory_and_disk() -> None:
    pending = PendingFiles(memory_slots=8)
    added = {}
    for file_id in range(0, 300, 3):  # gaps: directories and links are not requestable
        path = f"/ctx/d{file_id % 7}/f-{file_id}-é".encode()
        pending.add(file_id, path)
        added[file_id] = path
        if file_id % 27 == 0:  # some are asked for early, as the daemon does
            assert pending.pop(file_id) == added.pop(file_id)
    for file_id in sorted(added, reverse=True):
        assert pending.pop(file_id) == added[file_id]
        assert pending.pop(file_id) is None  # a second request for the same id is invalid
    assert pending.pop(1) is None  # never added (a gap)
    assert pending.pop(10_000) is None  # beyond anything written
    pending.close()


def test_empty_and_long_paths_survive_the_spill() -> None:
    pending = PendingFiles(memory_slots=2)
    paths = [b"a" * 5000, b"b", b"c" * 70000, b"d", b"e"]
    for file_id, path in enumerate(paths):
        pending.add(file_id, path)
    assert [pending.pop(i) for i in range(len(paths))] == paths
    pending.close()
