"""Image exporter attributes: checks on ``-o type=image|registry|oci|docker`` and ``--annotation``.

BuildKit passes unknown keys through as metadata, so typos in ``compression`` or a bool would
silently do nothing; these are caught here. ``registry.insecure`` is only ever set when the user
asked for it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from pybuildx.buildspec import OutputSpec
from pybuildx.config import Platform, reject_unknown
from pybuildx.errors import ConfigError
from pybuildx.images.reference import ImageRef

__all__ = ["COMPRESSIONS", "annotation_attrs", "prepare_outputs"]

COMPRESSIONS = ("uncompressed", "gzip", "estargz", "zstd")
_IMAGE_TYPES = ("image", "oci", "docker")
_BOOL_ATTRS = (
    "push",
    "push-by-digest",
    "name-canonical",
    "oci-mediatypes",
    "oci-artifact",
    "registry.insecure",
    "force-compression",
    "unpack",
    "store",
    "rewrite-timestamp",
    "tar",
)
_ANNOTATION_TYPES = ("manifest", "index", "manifest-descriptor", "index-descriptor")
_ANNOTATION_RE = re.compile(r"^(?:(?P<type>[a-z-]+)(?:\[(?P<platform>[^\]]+)\])?:)?(?P<key>[^=]+)$")
_TRUE = ("", "1", "true")
_FALSE = ("0", "false")


def annotation_attrs(values: Iterable[str]) -> dict[str, str]:
    """``[type[platform]:]key=value`` (buildx ``--annotation``) → exporter ``annotation*`` attrs."""
    attrs: dict[str, str] = {}
    for text in values:
        head, sep, value = text.partition("=")
        match = _ANNOTATION_RE.match(head.strip())
        if not sep or match is None:
            raise ConfigError(
                f"invalid annotation {text!r}",
                hint="write [TYPE[PLATFORM]:]KEY=VALUE, for example index:org.opencontainers."
                "image.description=demo",
            )
        kind, platform, key = match.group("type"), match.group("platform"), match.group("key")
        prefix = "annotation"
        if kind:
            reject_unknown([kind], _ANNOTATION_TYPES, what="annotation type")
            prefix += f"-{kind}"
        if platform:
            prefix += f"[{Platform.parse(platform)}]"
        attrs[f"{prefix}.{key}"] = value
    return attrs


def _check_image_attrs(output: OutputSpec) -> None:
    for key in _BOOL_ATTRS:
        value = output.attrs.get(key)
        if value is not None and value.lower() not in _TRUE + _FALSE:
            raise ConfigError(
                f"output type={output.type}: {key} must be true or false, not {value!r}"
            )
    compression = output.attrs.get("compression")
    if compression is not None and compression not in COMPRESSIONS:
        reject_unknown([compression], COMPRESSIONS, what="compression")
    level = output.attrs.get("compression-level")
    if level is not None and not level.isdigit():
        raise ConfigError(f"output type={output.type}: compression-level must be a number")
    if _is_true(output.attrs.get("push-by-digest")):
        names = [n.strip() for n in output.attrs.get("name", "").split(",") if n.strip()]
        if not names:
            raise ConfigError("push-by-digest needs a name=", hint="add name=REGISTRY/REPOSITORY")
        tagged = [n for n in names if ImageRef.parse(n).tag]
        if tagged:
            raise ConfigError(
                f"push-by-digest pushes no tag, but {tagged[0]!r} has one",
                hint="name the repository only, e.g. name=registry.example.com/app",
            )


def _is_true(value: str | None) -> bool:
    return value is not None and value.lower() in _TRUE


def prepare_outputs(
    outputs: Sequence[OutputSpec], annotations: Iterable[str] = ()
) -> tuple[OutputSpec, ...]:
    """Check image-like outputs and add ``--annotation`` values to them (explicit attrs win)."""
    extra = annotation_attrs(annotations)
    prepared = []
    for output in outputs:
        if output.type in _IMAGE_TYPES:
            _check_image_attrs(output)
            if extra:
                output = OutputSpec(
                    type=output.type, attrs={**extra, **output.attrs}, dest=output.dest
                )
        prepared.append(output)
    return tuple(prepared)
