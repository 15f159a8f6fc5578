"""Session content store: containerd's ``Content`` service over local OCI layout directories.

BuildKit's local cache exporter and importer read and write blobs through this service on the
session; gRPC metadata ``buildkit-attachable-store-id`` names the store (``local:<dir>``). Blobs
live at ``<dir>/blobs/<algorithm>/<hex>`` (OCI image layout); writes in progress at
``<dir>/ingest/<sha256 of ref>/data`` and are renamed into place only after the digest checked
out, so an interrupted export never leaves a corrupt blob behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import empty_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from pybuildx.buildkit._pb import content_pb2, content_pb2_grpc

__all__ = ["ContentStoreAttachable", "LocalContentStore"]

_SERVICE = "/containerd.services.content.v1.Content/"
_METHODS = (
    "Info",
    "Update",
    "List",
    "Delete",
    "Read",
    "Status",
    "ListStatuses",
    "Write",
    "Abort",
)
_STORE_ID_METADATA = "buildkit-attachable-store-id"
_DIGEST = re.compile(r"^(sha256|sha384|sha512):([a-f0-9]{64,128})$")
_READ_CHUNK = 1 << 20
_OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'


class ContentError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def _timestamp(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


class LocalContentStore:
    """A content-addressed blob directory in OCI image layout."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()

    def _blob_path(self, digest: str) -> Path:
        match = _DIGEST.match(digest)
        if match is None:
            raise ContentError(grpc.StatusCode.INVALID_ARGUMENT, f"invalid digest {digest!r}")
        return self.root / "blobs" / match.group(1) / match.group(2)

    def _ingest_dir(self, ref: str) -> Path:
        if not ref:
            raise ContentError(grpc.StatusCode.INVALID_ARGUMENT, "write without a ref")
        return self.root / "ingest" / hashlib.sha256(ref.encode()).hexdigest()

    def ensure_layout(self) -> None:
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        layout = self.root / "oci-layout"
        if not layout.exists():
            layout.write_bytes(_OCI_LAYOUT)

    def info(self, digest: str) -> content_pb2.Info:
        path = self._blob_path(digest)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise ContentError(grpc.StatusCode.NOT_FOUND, f"content {digest} not found") from None
        return content_pb2.Info(
            digest=digest,
            size=st.st_size,
            created_at=_timestamp(st.st_ctime),
            updated_at=_timestamp(st.st_mtime),
        )

    def infos(self) -> Iterator[content_pb2.Info]:
        blobs = self.root / "blobs"
        if not blobs.is_dir():
            return
        for algorithm in sorted(blobs.iterdir()):
            for blob in sorted(algorithm.iterdir()):
                with contextlib.suppress(ContentError):
                    yield self.info(f"{algorithm.name}:{blob.name}")

    def delete(self, digest: str) -> None:
        path = self._blob_path(digest)
        try:
            path.unlink()
        except FileNotFoundError:
            raise ContentError(grpc.StatusCode.NOT_FOUND, f"content {digest} not found") from None

    def read(
        self, digest: str, offset: int, size: int
    ) -> Iterator[content_pb2.ReadContentResponse]:
        path = self._blob_path(digest)
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            raise ContentError(grpc.StatusCode.NOT_FOUND, f"content {digest} not found") from None
        with handle:
            position = max(offset, 0)
            handle.seek(position)
            remaining = size if size > 0 else -1
            while remaining != 0:
                want = _READ_CHUNK if remaining < 0 else min(_READ_CHUNK, remaining)
                data = handle.read(want)
                if not data:
                    break
                yield content_pb2.ReadContentResponse(offset=position, data=data)
                position += len(data)
                if remaining > 0:
                    remaining -= len(data)

    def status(self, ref: str) -> content_pb2.Status:
        directory = self._ingest_dir(ref)
        data = directory / "data"
        if not data.exists():
            raise ContentError(grpc.StatusCode.NOT_FOUND, f"no write in progress for {ref}")
        meta = self._read_meta(directory)
        st = data.stat()
        return content_pb2.Status(
            ref=ref,
            offset=st.st_size,
            total=int(meta.get("total", 0)),
            expected=str(meta.get("expected", "")),
            started_at=_timestamp(float(meta.get("started", st.st_ctime))),
            updated_at=_timestamp(st.st_mtime),
        )

    def list_statuses(self) -> list[content_pb2.Status]:
        ingest = self.root / "ingest"
        statuses = []
        if ingest.is_dir():
            for directory in ingest.iterdir():
                ref = str(self._read_meta(directory).get("ref", ""))
                if ref:
                    with contextlib.suppress(ContentError):
                        statuses.append(self.status(ref))
        return statuses

    def abort(self, ref: str) -> None:
        directory = self._ingest_dir(ref)
        if not directory.exists():
            raise ContentError(grpc.StatusCode.NOT_FOUND, f"no write in progress for {ref}")
        shutil.rmtree(directory, ignore_errors=True)

    @staticmethod
    def _read_meta(directory: Path) -> dict[str, Any]:
        try:
            loaded = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return {}
        return loaded if isinstance(loaded, dict) else {}

    def write(
        self, requests: Iterator[content_pb2.WriteContentRequest]
    ) -> Iterator[content_pb2.WriteContentResponse]:
        """One ingest transaction: STAT, WRITE at offsets, COMMIT with the expected digest."""
        writer: _Ingest | None = None
        try:
            for request in requests:
                if writer is None:
                    if request.expected and self._blob_path(request.expected).exists():
                        raise ContentError(
                            grpc.StatusCode.ALREADY_EXISTS, f"content {request.expected} exists"
                        )
                    writer = _Ingest(self, request.ref)
                elif request.ref and request.ref != writer.ref:
                    raise ContentError(grpc.StatusCode.INVALID_ARGUMENT, "ref changed mid-write")
                writer.update(request)
                if request.data and request.action in (content_pb2.WRITE, content_pb2.COMMIT):
                    writer.write_at(request.offset, request.data)
                if request.action == content_pb2.COMMIT:
                    digest = writer.commit()
                    yield writer.response(content_pb2.COMMIT, digest)
                    return
                yield writer.response(request.action, "")
        finally:
            if writer is not None:
                writer.close()


class _Ingest:
    def __init__(self, store: LocalContentStore, ref: str) -> None:
        self.store = store
        self.ref = ref
        self.directory = store._ingest_dir(ref)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.data_path = self.directory / "data"
        meta = store._read_meta(self.directory)
        self.started = float(meta.get("started", time.time()))
        self.total = int(meta.get("total", 0))
        self.expected = str(meta.get("expected", ""))
        self.handle = self.data_path.open("r+b" if self.data_path.exists() else "w+b")
        self.committed_size = 0
        self._save_meta()

    def _save_meta(self) -> None:
        meta = {"ref": self.ref, "started": self.started, "total": self.total}
        if self.expected:
            meta["expected"] = self.expected
        (self.directory / "meta.json").write_text(json.dumps(meta), encoding="utf-8")

    def update(self, request: content_pb2.WriteContentRequest) -> None:
        changed = False
        if request.total > 0 and request.total != self.total:
            self.total, changed = request.total, True
        if request.expected and request.expected != self.expected:
            self.expected, changed = request.expected, True
        if changed:
            self._save_meta()

    @property
    def offset(self) -> int:
        self.handle.seek(0, 2)
        return self.handle.tell()

    def write_at(self, offset: int, data: bytes) -> None:
        if offset > self.offset:
            raise ContentError(
                grpc.StatusCode.OUT_OF_RANGE, f"write at {offset} beyond {self.offset}"
            )
        self.handle.seek(offset)
        self.handle.truncate()
        self.handle.write(data)

    def commit(self) -> str:
        self.handle.flush()
        size = self.offset
        self.committed_size = size
        if self.total > 0 and size != self.total:
            raise ContentError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"commit of {self.ref}: {size} bytes written, {self.total} expected",
            )
        algorithm = self.expected.split(":", 1)[0] if self.expected else "sha256"
        if algorithm not in ("sha256", "sha384", "sha512"):
            raise ContentError(grpc.StatusCode.INVALID_ARGUMENT, f"unsupported {algorithm}")
        hasher = hashlib.new(algorithm)
        self.handle.seek(0)
        for chunk in iter(lambda: self.handle.read(_READ_CHUNK), b""):
            hasher.update(chunk)
        digest = f"{algorithm}:{hasher.hexdigest()}"
        if self.expected and digest != self.expected:
            raise ContentError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"unexpected commit digest {digest}, expected {self.expected}",
            )
        target = self.store._blob_path(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        self.handle.close()
        if target.exists():
            shutil.rmtree(self.directory, ignore_errors=True)
            raise ContentError(grpc.StatusCode.ALREADY_EXISTS, f"content {digest} already exists")
        self.data_path.chmod(0o644)
        self.data_path.replace(target)
        shutil.rmtree(self.directory, ignore_errors=True)
        return digest

    def response(self, action: int, digest: str) -> content_pb2.WriteContentResponse:
        now = time.time()
        offset = self.committed_size if action == content_pb2.COMMIT else self.offset
        return content_pb2.WriteContentResponse(
            action=action,  # type: ignore[arg-type]
            started_at=_timestamp(self.started),
            updated_at=_timestamp(now),
            offset=offset,
            total=self.total,
            digest=digest,
        )

    def close(self) -> None:
        if not self.handle.closed:
            self.handle.close()


class ContentStoreAttachable(content_pb2_grpc.ContentServicer):
    """Serves containerd's ``Content`` service for the stores named ``<store id> → directory``."""

    def __init__(self, stores: Mapping[str, Path]) -> None:
        self._stores = {key: LocalContentStore(path) for key, path in stores.items()}
        for store in self._stores.values():
            store.ensure_layout()

    def register(self, server: grpc.Server) -> None:
        content_pb2_grpc.add_ContentServicer_to_server(self, server)  # type: ignore[no-untyped-call]

    def method_names(self) -> Sequence[str]:
        return [_SERVICE + name for name in _METHODS]

    def _store(self, context: grpc.ServicerContext) -> LocalContentStore:
        metadata = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        store_id = metadata.get(_STORE_ID_METADATA, "")
        store = self._stores.get(store_id)
        if store is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"content store {store_id!r} not found")
        assert store is not None
        return store

    @staticmethod
    def _fail(context: grpc.ServicerContext, exc: ContentError) -> None:
        context.abort(exc.code, str(exc))

    def Info(
        self, request: content_pb2.InfoRequest, context: grpc.ServicerContext
    ) -> content_pb2.InfoResponse:
        try:
            return content_pb2.InfoResponse(info=self._store(context).info(request.digest))
        except ContentError as exc:
            self._fail(context, exc)
            raise

    def Update(
        self, request: content_pb2.UpdateRequest, context: grpc.ServicerContext
    ) -> content_pb2.UpdateResponse:
        # No label store: labels are accepted and forgotten, which is all BuildKit needs here.
        try:
            info = self._store(context).info(request.info.digest)
        except ContentError as exc:
            self._fail(context, exc)
            raise
        info.labels.update(request.info.labels)
        return content_pb2.UpdateResponse(info=info)

    def List(
        self, request: content_pb2.ListContentRequest, context: grpc.ServicerContext
    ) -> Iterator[content_pb2.ListContentResponse]:
        batch: list[content_pb2.Info] = []
        for info in self._store(context).infos():
            batch.append(info)
            if len(batch) == 100:
                yield content_pb2.ListContentResponse(info=batch)
                batch = []
        if batch:
            yield content_pb2.ListContentResponse(info=batch)

    def Delete(
        self, request: content_pb2.DeleteContentRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        try:
            self._store(context).delete(request.digest)
        except ContentError as exc:
            self._fail(context, exc)
        return empty_pb2.Empty()

    def Read(
        self, request: content_pb2.ReadContentRequest, context: grpc.ServicerContext
    ) -> Iterator[content_pb2.ReadContentResponse]:
        try:
            yield from self._store(context).read(request.digest, request.offset, request.size)
        except ContentError as exc:
            self._fail(context, exc)

    def Status(
        self, request: content_pb2.StatusRequest, context: grpc.ServicerContext
    ) -> content_pb2.StatusResponse:
        try:
            return content_pb2.StatusResponse(status=self._store(context).status(request.ref))
        except ContentError as exc:
            self._fail(context, exc)
            raise

    def ListStatuses(
        self, request: content_pb2.ListStatusesRequest, context: grpc.ServicerContext
    ) -> content_pb2.ListStatusesResponse:
        return content_pb2.ListStatusesResponse(statuses=self._store(context).list_statuses())

    def Write(
        self,
        request_iterator: Iterator[content_pb2.WriteContentRequest],
        context: grpc.ServicerContext,
    ) -> Iterator[content_pb2.WriteContentResponse]:
        store = self._store(context)
        try:
            yield from store.write(request_iterator)
        except ContentError as exc:
            self._fail(context, exc)

    def Abort(
        self, request: content_pb2.AbortRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        try:
            self._store(context).abort(request.ref)
        except ContentError as exc:
            self._fail(context, exc)
        return empty_pb2.Empty()
