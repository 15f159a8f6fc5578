"""``--metadata-file`` and ``--iidfile``, written the way buildx writes them.

The metadata file holds the exporter response with values that are base64 JSON objects (e.g.
``containerimage.descriptor``) or JSON objects decoded into objects, everything else as strings,
plus buildx's own keys (``buildx.build.ref``, ...). The iidfile holds the image config digest
(the image ID) when there is one, else the manifest/index digest. Both are written atomically
only after a successful build, so a failed build leaves no half-written file; a stale iidfile is
removed when the build starts, as buildx does.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pybuildx.errors import UsageError

__all__ = [
    "decode_exporter_response",
    "image_id",
    "write_build_outputs",
    "write_iidfile",
    "write_metadata_file",
]

IMAGE_DIGEST = "containerimage.digest"
CONFIG_DIGEST = "containerimage.config.digest"


def _json_object(data: bytes | str) -> Any | None:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(value, dict) and value:
        return value
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return value
    return None


def decode_exporter_response(response: Mapping[str, str]) -> dict[str, Any]:
    decoded: dict[str, Any] = {}
    for key, value in response.items():
        found = None
        if value and not value.lstrip().startswith(("{", "[")):
            with contextlib.suppress(binascii.Error, ValueError):
                found = _json_object(base64.b64decode(value, validate=True))
        if found is None:
            found = _json_object(value)
        decoded[key] = value if found is None else found
    return decoded


def image_id(response: Mapping[str, str]) -> str:
    return response.get(CONFIG_DIGEST) or response.get(IMAGE_DIGEST, "")


def _write_atomically(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        Path(tmp).chmod(0o644)
        Path(tmp).replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            Path(tmp).unlink()
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None


def write_metadata_file(
    path: Path, response: Mapping[str, str], extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    content = decode_exporter_response(response)
    content.update(extra or {})
    _write_atomically(path, json.dumps(content, indent=2, sort_keys=True).encode() + b"\n")
    return content


def write_iidfile(path: Path, response: Mapping[str, str]) -> str:
    identifier = image_id(response)
    if identifier:
        _write_atomically(path, identifier.encode())
    return identifier


def write_build_outputs(
    metadata_file: Path | None,
    iidfile: Path | None,
    response: Mapping[str, str],
    extra: Mapping[str, Any] | None = None,
) -> None:
    """After a successful build: ``--metadata-file`` and ``--iidfile`` (each only if asked)."""
    if metadata_file is not None:
        write_metadata_file(metadata_file, response, extra)
    if iidfile is not None:
        write_iidfile(iidfile, response)
