"""``--cache-to`` / ``--cache-from``: parsing and their place in the SolveRequest.

Rules follow buildx and BuildKit's Go client:
- a bare value (``--cache-from user/app:cache``) means ``type=registry,ref=<value>``;
- export entries get ``mode=min`` unless a mode is given (``inline`` takes no mode);
- imports also go into FrontendAttrs ``cache-imports`` as JSON, for the Dockerfile frontend;
- ``local`` needs the session content store ``local:<dir>``; an import resolves its manifest
  digest from ``<src>/index.json`` by tag, and after an export the client records the new cache
  manifest (ExporterResponse ``cache.manifest``) in ``<dest>/index.json``;
- ``gha`` entries are completed from ``gha_defaults`` (``url``/``url_v2``/``token``; the CLI
  takes them from the CI it runs in) where the user gave none.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pybuildx.buildkit._pb import control_pb2
from pybuildx.config import parse_csv_options
from pybuildx.errors import ConfigError, register_secret

__all__ = [
    "CacheEntry",
    "CachePlan",
    "parse_cache_entry",
    "plan_cache",
    "record_local_exports",
]

_TYPES = ("registry", "inline", "local", "gha", "s3", "azblob")
_MODES = ("min", "max")
_REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
_OCI_INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
# Attributes whose values are credentials: registered for redaction.
_SECRET_ATTRS = ("token", "secret_access_key", "session_token", "ghtoken")


@dataclass(frozen=True)
class CacheEntry:
    """One cache exporter or importer: BuildKit's ``CacheOptionsEntry``."""

    type: str
    attrs: Mapping[str, str] = field(default_factory=dict)

    def to_proto(self) -> control_pb2.CacheOptionsEntry:
        return control_pb2.CacheOptionsEntry(Type=self.type, Attrs=dict(self.attrs))

    def to_json(self) -> dict[str, Any]:
        return {"Type": self.type, "Attrs": dict(self.attrs)}


def parse_cache_entry(
    text: str, *, export: bool, gha_defaults: Mapping[str, str] | None = None
) -> CacheEntry | None:
    """Parse one ``--cache-to``/``--cache-from`` value; ``None`` when it says ``type=...,disabled``
    or names a local import whose directory does not exist yet (first run)."""
    what = "cache-to" if export else "cache-from"
    if "=" not in text and text.strip():
        return CacheEntry("registry", {"ref": text.strip()})
    attrs = parse_csv_options(text, what=what)
    for key in _SECRET_ATTRS:  # before any error quotes ``text``
        if attrs.get(key):
            register_secret(attrs[key])
    kind = attrs.pop("type", "")
    if not kind:
        raise ConfigError(f"invalid {what} {text!r}: type= is missing", hint=_hint(export))
    if kind not in _TYPES:
        raise ConfigError(
            f"invalid {what} {text!r}: unknown cache type {kind!r}",
            hint=f"cache types: {', '.join(_TYPES)}",
        )
    if attrs.pop("disabled", "false").lower() in ("", "true", "1"):
        return None
    if export:
        _check_export(kind, attrs, text)
    else:
        _check_import(kind, attrs, text)
    if kind == "gha":
        _fill_defaults(attrs, gha_defaults or {})
    return CacheEntry(kind, attrs)


def _hint(export: bool) -> str:
    if export:
        return "for example type=registry,ref=registry.example.com/app:cache,mode=max"
    return "for example type=registry,ref=registry.example.com/app:cache"


def _check_export(kind: str, attrs: dict[str, str], text: str) -> None:
    if kind == "inline":
        attrs.pop("mode", None)
        return
    mode = attrs.setdefault("mode", "min")
    if mode not in _MODES:
        raise ConfigError(f"invalid cache-to {text!r}: mode must be min or max, not {mode!r}")
    if kind == "registry" and not attrs.get("ref"):
        raise ConfigError(f"invalid cache-to {text!r}: ref= is required for type=registry")
    if kind == "local":
        if not attrs.get("dest"):
            raise ConfigError(f"invalid cache-to {text!r}: dest= is required for type=local")
        attrs["dest"] = str(Path(attrs["dest"]).expanduser().absolute())


def _check_import(kind: str, attrs: dict[str, str], text: str) -> None:
    if kind == "inline":
        raise ConfigError(
            f"invalid cache-from {text!r}: inline cache is imported with type=registry,ref=<image>"
        )
    if kind == "registry" and not attrs.get("ref"):
        raise ConfigError(f"invalid cache-from {text!r}: ref= is required for type=registry")
    if kind == "local":
        if not attrs.get("src"):
            raise ConfigError(f"invalid cache-from {text!r}: src= is required for type=local")
        attrs["src"] = str(Path(attrs["src"]).expanduser().absolute())


def _fill_defaults(attrs: dict[str, str], defaults: Mapping[str, str]) -> None:
    for key, value in defaults.items():
        if key not in attrs and value:
            attrs[key] = value
            if key in _SECRET_ATTRS:
                register_secret(value)


@dataclass(frozen=True)
class CachePlan:
    """Everything a build needs for its cache: the proto entries, the FrontendAttrs, and the
    local directories the session content store must serve."""

    exports: tuple[CacheEntry, ...] = ()
    imports: tuple[CacheEntry, ...] = ()
    # store id ("local:<dir>") → directory, for the session content store.
    content_stores: Mapping[str, Path] = field(default_factory=dict)
    # <dest>/index.json → tag, updated from the solve response after a local export.
    indexes_to_update: Mapping[Path, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def to_proto(self) -> control_pb2.CacheOptions:
        return control_pb2.CacheOptions(
            Exports=[e.to_proto() for e in self.exports],
            Imports=[e.to_proto() for e in self.imports],
        )

    def frontend_attrs(self) -> dict[str, str]:
        """``cache-imports`` as the Dockerfile frontend reads it (none when nothing is imported)."""
        if not self.imports:
            return {}
        return {"cache-imports": json.dumps([e.to_json() for e in self.imports])}

    @property
    def needs_content_store(self) -> bool:
        return bool(self.content_stores)


def plan_cache(
    cache_to: Iterable[str],
    cache_from: Iterable[str],
    gha_defaults: Mapping[str, str] | None = None,
) -> CachePlan:
    exports: list[CacheEntry] = []
    imports: list[CacheEntry] = []
    stores: dict[str, Path] = {}
    indexes: dict[Path, str] = {}
    warnings: list[str] = []
    for text in cache_to:
        entry = parse_cache_entry(text, export=True, gha_defaults=gha_defaults)
        if entry is None:
            continue
        if entry.type == "local":
            dest = Path(entry.attrs["dest"])
            stores[f"local:{dest}"] = dest
            indexes[dest / "index.json"] = entry.attrs.get("tag", "latest") or "latest"
        exports.append(entry)
    for text in cache_from:
        entry = parse_cache_entry(text, export=False, gha_defaults=gha_defaults)
        if entry is None:
            continue
        if entry.type == "local":
            resolved = _resolve_local_import(entry)
            if resolved is None:
                warnings.append(f"local cache import at {entry.attrs['src']} not found, skipped")
                continue
            entry = resolved
            src = Path(entry.attrs["src"])
            stores[f"local:{src}"] = src
        imports.append(entry)
    return CachePlan(tuple(exports), tuple(imports), stores, indexes, tuple(warnings))


def _resolve_local_import(entry: CacheEntry) -> CacheEntry | None:
    attrs = dict(entry.attrs)
    if attrs.get("digest"):
        return CacheEntry("local", attrs)
    index_path = Path(attrs["src"]) / "index.json"
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read local cache index {index_path}: {exc}") from None
    tag = attrs.get("tag", "latest") or "latest"
    for manifest in index.get("manifests", []):
        if (manifest.get("annotations") or {}).get(_REF_NAME_ANNOTATION) == tag:
            attrs["digest"] = str(manifest["digest"])
            return CacheEntry("local", attrs)
    return None


def record_local_exports(plan: CachePlan, exporter_response: Mapping[str, str]) -> None:
    """Put the exported cache manifest into ``<dest>/index.json`` under its tag (atomically)."""
    if not plan.indexes_to_update:
        return
    raw = exporter_response.get("cache.manifest", "")
    if not raw:
        return
    descriptor = json.loads(raw)
    for index_path, tag in plan.indexes_to_update.items():
        _put_descriptor(index_path, descriptor, tag)


def _put_descriptor(index_path: Path, descriptor: Mapping[str, Any], tag: str) -> None:
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        index = {"schemaVersion": 2, "mediaType": _OCI_INDEX_MEDIA_TYPE, "manifests": []}
    entry = dict(descriptor)
    entry["annotations"] = {**(entry.get("annotations") or {}), _REF_NAME_ANNOTATION: tag}
    manifests: Sequence[Mapping[str, Any]] = index.get("manifests", [])
    index["manifests"] = [
        m
        for m in manifests
        if (m.get("annotations") or {}).get(_REF_NAME_ANNOTATION) != tag
        and m.get("digest") != entry.get("digest")
    ] + [entry]
    _write_atomically(index_path, json.dumps(index).encode())


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        Path(tmp).chmod(0o644)
        Path(tmp).replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(tmp).unlink()
        raise
