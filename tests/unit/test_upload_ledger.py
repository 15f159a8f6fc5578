"""The upload ledger's mtime choice: incremental when nothing changed, never stale otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pybuildx.buildkit.fswalk import Entry, walk
from pybuildx.buildkit.upload_ledger import UploadLedger


def sent_mtimes(ledger: UploadLedger, root: Path) -> dict[bytes, int]:
    transfer = ledger.begin("context")
    sent = {e.path: transfer.mtime_to_send(e) for e in walk(root)}
    transfer.commit()
    return sent


def entry(root: Path, name: str) -> Entry:
    return next(e for e in walk(root) if e.path == name.encode())


def test_same_size_and_mtime_rewrite_gets_a_different_mtime(tmp_path: Path) -> None:
    root = tmp_path / "ctx"
    root.mkdir()
    f = root / "f"
    f.write_text("AAAA")
    real = f.stat().st_mtime_ns
    ledger = UploadLedger.open(tmp_path / "ledger", "scope")
    assert ledger is not None
    assert sent_mtimes(ledger, root)[b"f"] == real
    assert sent_mtimes(ledger, root)[b"f"] == real  # unchanged: same value, incremental

    f.write_text("BBBB")
    os.utime(f, ns=(real, real))
    perturbed = sent_mtimes(ledger, root)[b"f"]
    assert perturbed != real
    assert sent_mtimes(ledger, root)[b"f"] == perturbed  # and stable afterwards
    ledger.close()


def one_committed_transfer(tmp_path: Path) -> tuple[Path, str]:
    """A context with one file sent once through a new ledger; returns it and the shared key."""
    root = tmp_path / "ctx"
    root.mkdir()
    (root / "f").write_text("x")
    ledger = UploadLedger.open(tmp_path / "ledger", "scope")
    assert ledger is not None
    key = ledger.shared_key
    sent_mtimes(ledger, root)
    ledger.close()
    return root, key


def test_failed_transfer_rotates_the_shared_key(tmp_path: Path) -> None:
    root, key = one_committed_transfer(tmp_path)
    again = UploadLedger.open(tmp_path / "ledger", "scope")
    assert again is not None and again.shared_key == key  # clean: same key, incremental
    transfer = again.begin("context")
    transfer.mtime_to_send(entry(root, "f"))
    transfer.fail()
    again.close()

    after = UploadLedger.open(tmp_path / "ledger", "scope")
    assert after is not None and after.shared_key != key
    after.close()


def test_second_process_gets_no_ledger(tmp_path: Path) -> None:
    first = UploadLedger.open(tmp_path / "ledger", "scope")
    assert first is not None
    assert UploadLedger.open(tmp_path / "ledger", "scope") is None
    first.close()
    other = UploadLedger.open(tmp_path / "ledger", "other scope")
    assert other is not None
    other.close()


def test_ledger_files_are_private(tmp_path: Path) -> None:
    ledger = UploadLedger.open(tmp_path / "ledger", "scope")
    assert ledger is not None
    root = tmp_path / "ctx"
    root.mkdir()
    (root / "f").write_text("x")
    sent_mtimes(ledger, root)
    ledger.close()
    for path in (tmp_path / "ledger").rglob("*"):
        mode = path.stat().st_mode & 0o777
        assert mode & 0o077 == 0, (path, oct(mode))


def test_a_filtered_transfer_keeps_the_records_of_files_it_did_not_walk(tmp_path: Path) -> None:
    """Otherwise a later same-size, same-mtime rewrite of such a file would be sent stale."""
    root = tmp_path / "ctx"
    (root / "sub").mkdir(parents=True)
    kept = root / "sub" / "kept"
    kept.write_text("AAAA")
    (root / "walked").write_text("x")
    real = kept.stat().st_mtime_ns
    ledger = UploadLedger.open(tmp_path / "ledger", "scope")
    assert ledger is not None
    sent_mtimes(ledger, root)

    only = ledger.begin("context")  # e.g. the frontend reading one file of the context
    only.mtime_to_send(entry(root, "walked"))
    only.commit()

    kept.write_text("BBBB")
    os.utime(kept, ns=(real, real))
    assert sent_mtimes(ledger, root)[b"sub/kept"] != real
    ledger.close()


def test_overlapping_transfers_of_one_name_both_count(tmp_path: Path) -> None:
    root = tmp_path / "ctx"
    root.mkdir()
    for name in ("a", "b"):
        (root / name).write_text("1234")
    stamps = {name: (root / name).stat().st_mtime_ns for name in ("a", "b")}
    ledger = UploadLedger.open(tmp_path / "ledger", "scope")
    assert ledger is not None
    first, second = ledger.begin("context"), ledger.begin("context")
    first.mtime_to_send(entry(root, "a"))
    second.mtime_to_send(entry(root, "b"))
    first.commit()
    second.commit()  # began before the first committed: merged, not replaced

    for name in ("a", "b"):
        (root / name).write_text("5678")
        os.utime(root / name, ns=(stamps[name], stamps[name]))
    sent = sent_mtimes(ledger, root)
    assert sent[b"a"] != stamps["a"] and sent[b"b"] != stamps["b"]
    ledger.close()


def test_a_damaged_record_file_starts_a_new_generation(tmp_path: Path) -> None:
    _, key = one_committed_transfer(tmp_path)
    (state,) = (tmp_path / "ledger").rglob("*.state")
    state.write_bytes(state.read_bytes()[:-3])  # e.g. a crash before the data reached the disk

    again = UploadLedger.open(tmp_path / "ledger", "scope")
    assert again is not None and again.shared_key != key  # a full upload, never a stale one
    again.close()


_FULL_DISK_CHILD = """
import os, resource, signal, sys
from pathlib import Path
from pybuildx.buildkit.fswalk import walk
from pybuildx.buildkit.upload_ledger import UploadLedger

root, ledger_dir = Path(sys.argv[1]), Path(sys.argv[2])
ledger = UploadLedger.open(ledger_dir, "scope")
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
transfer = ledger.begin("context")
sent = {e.path: transfer.mtime_to_send(e) for e in walk(root)}
transfer.commit()
real = {e.path: e.mtime_ns for e in walk(root) if e.requestable}
print("ok" if sent == real else "wrong")
"""


def test_a_ledger_that_cannot_be_written_does_not_fail_the_build(tmp_path: Path) -> None:
    """A full disk under the ledger: the transfer still gets its mtimes, nothing half-written
    is trusted, and the next build starts a new generation (a full upload)."""
    root = tmp_path / "ctx"
    root.mkdir()
    for index in range(5000):  # more than a chunk of records, far more than 4 KiB
        (root / f"file-{index:05d}").write_text("x")
    ledger_dir = tmp_path / "ledger"
    ledger = UploadLedger.open(ledger_dir, "scope")
    assert ledger is not None
    key = ledger.shared_key
    ledger.close()

    child = subprocess.run(
        [sys.executable, "-c", _FULL_DISK_CHILD, str(root), str(ledger_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (child.returncode, child.stdout.strip()) == (0, "ok"), child.stderr
    assert not list(ledger_dir.rglob("*.tmp"))
    again = UploadLedger.open(ledger_dir, "scope")
    assert again is not None and again.shared_key != key
    again.close()
