"""The upload ledger's mtime choice: incremental when nothing changed, never stale otherwise."""

from __future__ import annotations

import os
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


def test_failed_transfer_rotates_the_shared_key(tmp_path: Path) -> None:
    root = tmp_path / "ctx"
    root.mkdir()
    (root / "f").write_text("x")
    ledger = UploadLedger.open(tmp_path / "ledger", "scope")
    assert ledger is not None
    key = ledger.shared_key
    sent_mtimes(ledger, root)
    ledger.close()

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
