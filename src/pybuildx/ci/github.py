"""GitHub Actions: secret masks (the ``::add-mask::`` workflow command) and the runner's cache
service, which ``type=gha`` cache entries use when the user gives no ``url``/``token``.

Masks are written by us rather than with ``actions_toolkit.core.set_secret``: that writes to
``sys.stdout`` only, and a build's stdout may carry its result (``-o -``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TextIO

__all__ = ["gha_cache_defaults", "is_github_actions", "mask_commands", "write_masks"]

# type=gha cache attribute → runner variable.
_CACHE_VARIABLES = (
    ("url", "ACTIONS_CACHE_URL"),
    ("url_v2", "ACTIONS_RESULTS_URL"),
    ("token", "ACTIONS_RUNTIME_TOKEN"),
)


def is_github_actions(environ: Mapping[str, str]) -> bool:
    return environ.get("GITHUB_ACTIONS") == "true"


def gha_cache_defaults(environ: Mapping[str, str]) -> dict[str, str]:
    """``url``, ``url_v2`` and ``token`` for ``type=gha`` cache entries, as far as the runner
    provides them (a runner that has no cache service sets none)."""
    return {key: environ[variable] for key, variable in _CACHE_VARIABLES if environ.get(variable)}


def mask_commands(values: Iterable[bytes]) -> list[str]:
    """One ``::add-mask::`` line per distinct non-empty line of the values.

    A multi-line value in one command would end the command at its first line break and print
    the rest of the value. The runner decodes ``%25`` in command data, so ``%`` is encoded: the
    mask then matches the value as written.
    """
    lines: dict[str, None] = {}
    for value in values:
        for line in value.decode("utf-8", "replace").splitlines():
            if line.strip():
                lines[line.strip()] = None
    return [f"::add-mask::{line.replace('%', '%25')}" for line in lines]


def write_masks(values: Iterable[bytes], stream: TextIO) -> None:
    commands = mask_commands(values)
    if commands:
        stream.write("".join(f"{command}\n" for command in commands))
    stream.flush()
