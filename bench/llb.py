"""A minimal LLB definition, encoded by hand: one ``local://<name>`` source and the terminal op.

Wire facts (solver/pb/ops.proto): Op{inputs=1 repeated Input, source=3 SourceOp};
Input{digest=1 string, index=2 int64}; SourceOp{identifier=1 string, attrs=2 map<string,string>};
Definition{def=1 repeated bytes}. An op's digest is the sha256 of its serialized bytes; the last
op (inputs only) marks the result. ``buildctl build`` reads the same bytes from stdin.
"""

from __future__ import annotations

import hashlib

from pybuildx.buildkit._pb import ops_pb2


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _attr(key: str, value: str) -> bytes:
    return _field(2, _field(1, key.encode()) + _field(2, value.encode()))


def local_only_definition(name: str, session: str = "") -> ops_pb2.Definition:
    """``session`` pins the source to one session (attr ``local.session``), else the Solve's."""
    attrs = _attr("local.session", session) if session else b""
    source = _field(3, _field(1, f"local://{name}".encode()) + attrs)
    digest = "sha256:" + hashlib.sha256(source).hexdigest()
    terminal = _field(1, _field(1, digest.encode()))
    return ops_pb2.Definition(**{"def": [source, terminal]})
