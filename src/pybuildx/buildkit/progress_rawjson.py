"""``--progress=rawjson``: one JSON object per ``StatusResponse``, shaped like buildx's rawjson.

Field names and omission rules follow BuildKit's ``client.SolveStatus`` JSON encoding: ``vertexes``,
``statuses``, ``logs``, ``warnings``; bytes as base64 (log ``data``, warning ``short``/``detail``);
times as RFC 3339 with nanoseconds. Names, errors and log data are redacted before encoding (a
secret split across two log messages cannot be recognised). ``prefix`` is not used: every line
stays valid JSON.
"""

from __future__ import annotations

import base64
import datetime
import json
from typing import Any

from pybuildx.buildkit.progress import ProgressWriter
from pybuildx.buildkit.progress_state import Event
from pybuildx.errors import redact

__all__ = ["RawJsonWriter", "encode_status", "rfc3339"]

_ZERO_TIME = "0001-01-01T00:00:00Z"


def rfc3339(message: Any, name: str) -> str | None:
    """A Timestamp field as Go's ``time.RFC3339Nano`` in UTC, or None when unset."""
    has_field = getattr(message, "HasField", None)
    if has_field is not None and not has_field(name):
        return None
    value = getattr(message, name, None)
    seconds = int(getattr(value, "seconds", 0) or 0)
    nanos = int(getattr(value, "nanos", 0) or 0)
    if not seconds and not nanos:
        return None
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if nanos:
        text += "." + f"{nanos:09d}".rstrip("0")
    return text + "Z"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _redacted_bytes(data: bytes) -> bytes:
    text = data.decode("utf-8", "surrogateescape")
    return redact(text).encode("utf-8", "surrogateescape")


def _put(target: dict[str, Any], key: str, value: Any) -> None:
    """Go's ``omitempty``: leave out empty strings, zero numbers, false, empty lists, None."""
    if value:
        target[key] = value


def _vertex(message: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _put(out, "digest", str(message.digest))
    _put(out, "inputs", [str(i) for i in message.inputs])
    _put(out, "name", redact(str(message.name)))
    _put(out, "started", rfc3339(message, "started"))
    _put(out, "completed", rfc3339(message, "completed"))
    _put(out, "cached", bool(message.cached))
    _put(out, "error", redact(str(message.error)))
    has_field = getattr(message, "HasField", None)
    if has_field is not None and has_field("progressGroup"):
        group = message.progressGroup
        encoded: dict[str, Any] = {}
        _put(encoded, "id", str(group.id))
        _put(encoded, "name", str(group.name))
        _put(encoded, "weak", bool(group.weak))
        out["progressGroup"] = encoded
    return out


def _status(message: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": redact(str(message.ID))}
    _put(out, "vertex", str(message.vertex))
    _put(out, "name", str(message.name))
    _put(out, "total", int(message.total))
    out["current"] = int(message.current)
    out["timestamp"] = rfc3339(message, "timestamp") or _ZERO_TIME
    _put(out, "started", rfc3339(message, "started"))
    _put(out, "completed", rfc3339(message, "completed"))
    return out


def _log(message: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _put(out, "vertex", str(message.vertex))
    _put(out, "stream", int(message.stream))
    out["data"] = _b64(_redacted_bytes(bytes(message.msg)))
    out["timestamp"] = rfc3339(message, "timestamp") or _ZERO_TIME
    return out


def _warning(message: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _put(out, "vertex", str(message.vertex))
    _put(out, "level", int(message.level))
    _put(out, "short", _b64(_redacted_bytes(bytes(message.short))))
    _put(out, "detail", [_b64(_redacted_bytes(bytes(d))) for d in message.detail])
    _put(out, "url", str(message.url))
    has_field = getattr(message, "HasField", None)
    if has_field is not None and has_field("info"):
        info: dict[str, Any] = {}
        _put(info, "filename", str(message.info.filename))
        _put(info, "data", _b64(bytes(message.info.data)))
        _put(info, "language", str(message.info.language))
        out["sourceInfo"] = info
    ranges = []
    for item in message.ranges:
        ranges.append(
            {
                "start": {"line": int(item.start.line), "character": int(item.start.character)},
                "end": {"line": int(item.end.line), "character": int(item.end.character)},
            }
        )
    _put(out, "range", ranges)
    return out


def encode_status(response: Any) -> dict[str, Any]:
    """One ``StatusResponse`` as the JSON object buildx's rawjson mode prints."""
    out: dict[str, Any] = {}
    _put(out, "vertexes", [_vertex(v) for v in response.vertexes])
    _put(out, "statuses", [_status(s) for s in response.statuses])
    _put(out, "logs", [_log(entry) for entry in response.logs])
    _put(out, "warnings", [_warning(w) for w in response.warnings])
    return out


class RawJsonWriter(ProgressWriter):
    def _render(self, response: Any, events: list[Event]) -> None:
        self._emit(json.dumps(encode_status(response), separators=(",", ":")) + "\n")

    def _finish(self) -> None:
        return None
