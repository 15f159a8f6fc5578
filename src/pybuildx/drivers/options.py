"""Parsers for driver-opt values shared by the drivers; errors name the opt."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from pybuildx.errors import ConfigError

__all__ = [
    "bool_opt",
    "duration_opt",
    "parse_bool",
    "parse_duration",
    "require_absolute_path",
]

_TRUE = {"1", "t", "true", "yes", "on", ""}
_FALSE = {"0", "f", "false", "no", "off"}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_bool(key: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"invalid value {value!r} for driver-opt {key}", hint="use true or false")


def parse_duration(key: str, value: str) -> float:
    """Seconds from ``90``, ``90s``, ``2m``, ``1m30s`` (Go duration syntax, without µs/ns)."""
    text = value.strip().lower()
    try:
        seconds = float(text)
    except ValueError:
        parts = _DURATION_PART.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise ConfigError(
                f"invalid duration {value!r} for driver-opt {key}", hint="use e.g. 90s or 2m"
            ) from None
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if seconds <= 0:
        raise ConfigError(f"driver-opt {key} must be positive, got {value!r}")
    return seconds


def bool_opt(opts: Mapping[str, str], key: str, default: bool = False) -> bool:
    """``opts[key]`` parsed as a boolean, ``default`` when the opt is not given."""
    return parse_bool(key, opts[key]) if key in opts else default


def duration_opt(opts: Mapping[str, str], key: str, default: float) -> float:
    """``opts[key]`` parsed as a duration in seconds, ``default`` when the opt is not given."""
    return parse_duration(key, opts[key]) if key in opts else default


def require_absolute_path(key: str, value: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_absolute():
        raise ConfigError(
            f"non-absolute path {value!r} provided for driver-opt {key}",
            hint="driver-opts that name files need absolute paths",
        )
    return path
