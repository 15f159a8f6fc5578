"""Byte counts for people, in the two unit systems buildx prints them in."""

from __future__ import annotations

__all__ = ["human_bytes", "human_size"]

_DECIMAL_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")
_BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_size(size: int) -> str:
    """Decimal units, 4 significant digits, as ``docker system df`` and buildx du: ``12.29kB``."""
    return _scaled(size, 1000, _DECIMAL_UNITS)


def human_bytes(size: int) -> str:
    """Binary units with 4 significant digits, as buildx prints GC policy sizes (``1.863GiB``)."""
    return _scaled(size, 1024, _BINARY_UNITS)


def _scaled(size: int, step: int, units: tuple[str, ...]) -> str:
    value = float(size)
    for unit in units:
        if value < step or unit == units[-1]:
            return f"{value:.4g}{unit}"
        value /= step
    raise AssertionError("unreachable")
