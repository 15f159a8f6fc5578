"""Session ``Upload`` service: a build context tarball the daemon downloads from us.

Used when the context is a tar archive on stdin (``ci-build build - < context.tar``): the
FrontendAttr ``context`` is ``http://buildkit-session/<id>``; the daemon's HTTP source sees the
host ``buildkit-session`` and calls ``Upload.Pull`` with metadata ``urlpath=/<id>``; we stream the
file. The Dockerfile frontend unpacks the archive and reads the Dockerfile from inside it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc

from pybuildx.buildkit._pb import upload_pb2, upload_pb2_grpc
from pybuildx.buildkit.session import new_id

__all__ = ["PULL_METHOD", "UploadAttachable", "is_archive", "needs_compression"]

PULL_METHOD = "/moby.upload.v1.Upload/Pull"
URL_HOST = "buildkit-session"
# As BuildKit's Go client: 3 MiB messages, under the daemon's 16 MiB limit.
_CHUNK = 3 << 20

# The compressions BuildKit's Dockerfile frontend recognises in a context download.
_MAGICS = (
    b"\x1f\x8b",  # gzip
    b"BZh",  # bzip2
    b"\xfd7zXZ\x00",  # xz
)
_PAX_TYPES = (b"x", b"g")


def is_archive(header: bytes) -> bool:
    """Whether ``header`` (the first 512 bytes) starts a tar archive, compressed or not."""
    if header[257:262] == b"ustar":
        return True
    return any(header.startswith(magic) for magic in _MAGICS)


def needs_compression(header: bytes) -> bool:
    """Whether an uncompressed tar must be compressed for the daemon to recognise it.

    The frontend sniffs only the first 1024 bytes of a downloaded context and parses one tar
    header from them; a PAX extended header (Python's default format) pushes the first real
    header past that, so the archive is taken for a Dockerfile. Compressed archives are
    recognised by their magic bytes instead.
    """
    return header[257:262] == b"ustar" and header[156:157] in _PAX_TYPES


class UploadAttachable(upload_pb2_grpc.UploadServicer):
    """Serves files under ``http://buildkit-session/<id>`` URLs (see ``add``)."""

    def __init__(self) -> None:
        self._files: dict[str, Path] = {}

    def add(self, path: Path) -> str:
        """Offer ``path``; returns the URL to put in FrontendAttr ``context``."""
        upload_id = new_id()
        self._files[upload_id] = path
        return f"http://{URL_HOST}/{upload_id}"

    def register(self, server: grpc.Server) -> None:
        upload_pb2_grpc.add_UploadServicer_to_server(self, server)  # type: ignore[no-untyped-call]

    def method_names(self) -> Sequence[str]:
        return (PULL_METHOD,)

    def Pull(
        self,
        request_iterator: Iterator[upload_pb2.BytesMessage],
        context: grpc.ServicerContext,
    ) -> Iterator[upload_pb2.BytesMessage]:
        metadata = dict(context.invocation_metadata())
        url_path = str(metadata.get("urlpath", ""))
        path = self._files.get(url_path.lstrip("/"))
        if path is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no upload {url_path!r}")
            return
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                yield upload_pb2.BytesMessage(data=chunk)
