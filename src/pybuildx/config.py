"""Specs as frozen dataclasses, and the parsers for the option syntaxes users already know.

Grammar follows docker buildx: CSV options (``type=registry,ref=x``, quotes allowed around fields
that hold commas), ``os/arch[/variant]`` platforms, ``KEY=VALUE`` build args.
"""

from __future__ import annotations

import csv
import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pybuildx.errors import ConfigError

__all__ = [
    "Platform",
    "closest",
    "parse_csv_options",
    "parse_key_value",
    "parse_platforms",
    "reject_unknown",
]

_ARCH_ALIASES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "aarch64": "arm64",
    "armhf": "arm",
    "armel": "arm",
    "i386": "386",
    "i686": "386",
}
_DEFAULT_VARIANTS = {"arm": "v7"}
_KNOWN_OS = {"linux", "windows", "darwin", "freebsd"}


@dataclass(frozen=True, order=True)
class Platform:
    """An OCI platform, normalised the way containerd's ``platforms.Normalize`` does."""

    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def parse(cls, text: str) -> Platform:
        raw = text.strip().lower()
        parts = raw.split("/")
        if not raw or any(not p for p in parts) or len(parts) > 3:
            raise ConfigError(
                f"invalid platform {text!r}",
                hint="use os/arch[/variant], for example linux/amd64 or linux/arm/v7",
            )
        if parts[0] in _KNOWN_OS:
            os_name, rest = parts[0], parts[1:]
        elif len(parts) <= 2:
            os_name, rest = "linux", parts
        else:
            raise ConfigError(
                f"invalid platform {text!r}: unknown operating system {parts[0]!r}",
                hint="use os/arch[/variant], for example linux/amd64",
            )
        if not rest:
            raise ConfigError(
                f"invalid platform {text!r}: no architecture",
                hint="use os/arch[/variant], for example linux/amd64",
            )
        arch = _ARCH_ALIASES.get(rest[0], rest[0])
        variant = rest[1] if len(rest) > 1 else _DEFAULT_VARIANTS.get(arch, "")
        if arch == "arm64" and variant in ("v8", "8"):
            variant = ""
        if not arch.replace("_", "").isalnum():
            raise ConfigError(f"invalid platform {text!r}: bad architecture {arch!r}")
        return cls(os_name, arch, variant)

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    @property
    def dir_name(self) -> str:
        """The directory name BuildKit uses when splitting outputs per platform."""
        return "_".join(p for p in (self.os, self.architecture, self.variant) if p)


def parse_platforms(values: Iterable[str]) -> tuple[Platform, ...]:
    """Parse repeated and comma-separated ``--platform`` values, keeping order, dropping repeats."""
    seen: dict[Platform, None] = {}
    for value in values:
        for item in value.split(","):
            if item.strip():
                seen.setdefault(Platform.parse(item), None)
    return tuple(seen)


def parse_csv_options(text: str, *, what: str) -> dict[str, str]:
    """Parse ``k=v,k2="a,b"`` as buildx does (CSV fields, split at the first ``=``).

    A field without ``=`` maps to ``""`` (buildx treats e.g. ``push`` as ``push=true`` in places;
    callers decide).
    """
    try:
        rows = list(csv.reader([text], skipinitialspace=False))
    except csv.Error as exc:
        raise ConfigError(f"invalid {what} {text!r}: {exc}") from None
    result: dict[str, str] = {}
    for field in rows[0] if rows else []:
        if not field.strip():
            continue
        key, sep, value = field.partition("=")
        key = key.strip().lower()
        if not key:
            raise ConfigError(f"invalid {what} {text!r}: empty key in {field!r}")
        result[key] = value if sep else ""
    return result


def parse_key_value(text: str, *, what: str) -> tuple[str, str]:
    """Parse ``KEY=VALUE`` (value may be empty); a bare ``KEY`` is an error unless callers allow."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"invalid {what} {text!r}", hint=f"write {what} as KEY=VALUE")
    return key, value


def closest(word: str, choices: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def reject_unknown(keys: Iterable[str], known: Sequence[str], *, what: str) -> None:
    """Fail on the first key not in ``known``, suggesting the nearest known one."""
    for key in keys:
        if key not in known:
            suggestion = closest(key, known)
            hint = (
                f"did you mean {suggestion!r}?"
                if suggestion
                else f"known {what}s: {', '.join(sorted(known))}"
            )
            raise ConfigError(f"unknown {what} {key!r}", hint=hint)
