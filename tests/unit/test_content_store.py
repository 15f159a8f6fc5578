"""The session content store's local OCI layout: ingest, commit, read, abort."""

from __future__ import annotations

import hashlib
from pathlib import Path

import grpc
import pytest

from pybuildx.buildkit._pb import content_pb2
from pybuildx.buildkit.content import ContentError, LocalContentStore

DATA = b"layer bytes " * 1000
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()


def _write(
    store: LocalContentStore, *requests: content_pb2.WriteContentRequest
) -> list[content_pb2.WriteContentResponse]:
    return list(store.write(iter(requests)))


def _req(action: int, **fields: object) -> content_pb2.WriteContentRequest:
    return content_pb2.WriteContentRequest(action=action, ref="ref-1", **fields)  # type: ignore[arg-type]


def test_write_in_pieces_then_commit_and_read(tmp_path: Path) -> None:
    store = LocalContentStore(tmp_path)
    store.ensure_layout()
    responses = _write(
        store,
        _req(content_pb2.STAT, total=len(DATA), expected=DIGEST),
        _req(content_pb2.WRITE, offset=0, data=DATA[:5000]),
        _req(content_pb2.WRITE, offset=5000, data=DATA[5000:]),
        _req(content_pb2.COMMIT, total=len(DATA), expected=DIGEST),
    )
    assert responses[0].offset == 0 and responses[-1].digest == DIGEST
    assert responses[-1].offset == len(DATA)
    blob = tmp_path / "blobs" / "sha256" / DIGEST.split(":")[1]
    assert blob.read_bytes() == DATA
    assert store.info(DIGEST).size == len(DATA)
    assert b"".join(r.data for r in store.read(DIGEST, 100, 50)) == DATA[100:150]
    assert not list(tmp_path.glob("ingest/*"))
    assert (tmp_path / "oci-layout").exists()


def test_digest_mismatch_leaves_no_blob(tmp_path: Path) -> None:
    store = LocalContentStore(tmp_path)
    wrong = "sha256:" + "0" * 64
    with pytest.raises(ContentError) as caught:
        _write(store, _req(content_pb2.COMMIT, data=DATA, expected=wrong))
    assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert not list(tmp_path.glob("blobs/sha256/*"))


def test_existing_blob_is_already_exists(tmp_path: Path) -> None:
    store = LocalContentStore(tmp_path)
    _write(store, _req(content_pb2.COMMIT, data=DATA, expected=DIGEST))
    with pytest.raises(ContentError) as caught:
        _write(store, _req(content_pb2.STAT, expected=DIGEST))
    assert caught.value.code == grpc.StatusCode.ALREADY_EXISTS


def test_status_and_abort_of_an_interrupted_write(tmp_path: Path) -> None:
    store = LocalContentStore(tmp_path)
    _write(store, _req(content_pb2.WRITE, offset=0, data=DATA[:10], total=len(DATA)))
    status = store.status("ref-1")
    assert (status.offset, status.total) == (10, len(DATA))
    assert [s.ref for s in store.list_statuses()] == ["ref-1"]
    store.abort("ref-1")
    with pytest.raises(ContentError):
        store.status("ref-1")


def test_unknown_and_invalid_digests(tmp_path: Path) -> None:
    store = LocalContentStore(tmp_path)
    with pytest.raises(ContentError) as missing:
        store.info(DIGEST)
    assert missing.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(ContentError) as invalid:
        store.info("sha256:../../etc/passwd")
    assert invalid.value.code == grpc.StatusCode.INVALID_ARGUMENT
