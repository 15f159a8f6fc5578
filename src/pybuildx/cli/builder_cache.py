"""``ci-build builder du`` and ``ci-build builder prune``: the build cache of a builder's nodes."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from pybuildx.builders.active import ActiveBuilder

__all__ = ["register_cache_commands"]

_BuilderOption = Annotated[
    str | None, typer.Option("--builder", help="Builder (default: the current one).")
]
_FilterOption = Annotated[
    list[str] | None,
    typer.Option("--filter", help="Filter records: until=24h, id=abc, type=regular (repeatable)."),
]
_VerboseOption = Annotated[
    bool, typer.Option("--verbose", "-v", help="Every field of every record.")
]


def _booted(name: str | None) -> ActiveBuilder:
    from pybuildx.builders.active import ActiveBuilder
    from pybuildx.builders.store import Store

    store = Store()
    builder = store.load(store.resolve(name))
    active = ActiveBuilder(builder, ephemeral=False, store=store)
    try:
        active.boot()
    except BaseException:
        active.close()
        raise
    return active


def du(
    builder: _BuilderOption = None,
    filter: _FilterOption = None,
    verbose: _VerboseOption = False,
) -> None:
    """Show the build cache of every node, then what is reclaimable and the total."""
    from datetime import datetime, timezone

    from pybuildx.builders.diskusage import (
        du_pretty,
        du_summary,
        du_table,
        parse_filters,
        unused_for_at_least,
    )
    from pybuildx.buildkit.control import ControlClient

    wanted = parse_filters(filter or [])
    now = datetime.now(timezone.utc)
    active = _booted(builder)
    try:
        records = []
        for index, node in enumerate(active.spec.nodes):
            client = ControlClient(active.channel(index), target=node.name)
            records += client.disk_usage(wanted.filters)
    finally:
        active.close()
    if wanted.older_than_s:
        records = [r for r in records if unused_for_at_least(r, wanted.older_than_s, now)]
    for line in du_pretty(records, now) if verbose else du_table(records, now):
        typer.echo(line)
    if not filter:
        if not verbose:
            typer.echo("")
        for line in du_summary(records):
            typer.echo(line)


def _check_space_limits(active: ActiveBuilder, flags: list[str]) -> None:
    from pybuildx.builders.diskusage import MIN_SPACE_FILTER_VERSION, supports_space_limits
    from pybuildx.buildkit.control import ControlClient
    from pybuildx.errors import UsageError

    for index, node in enumerate(active.spec.nodes):
        daemon = ControlClient(active.channel(index), target=node.name).info()
        version = daemon.version if daemon else "older than v0.11"
        if daemon is None or not supports_space_limits(version):
            wanted = ".".join(map(str, MIN_SPACE_FILTER_VERSION))
            raise UsageError(
                f"{' and '.join(flags)} {'needs' if len(flags) == 1 else 'need'} BuildKit "
                f"v{wanted} or later; "
                f"node {node.name} runs {version}",
                hint="upgrade that daemon, or use --reserved-space",
            )


def _size(value: str | None, flag: str) -> int:
    from pybuildx.buildspec import parse_size

    return parse_size(value, what=flag) if value else 0


def _confirm(all: bool) -> bool:
    what = "all build cache" if all else "all dangling build cache"
    return typer.confirm(f"WARNING! This will remove {what}. Are you sure you want to continue?")


def prune(
    builder: _BuilderOption = None,
    all: Annotated[
        bool, typer.Option("--all", "-a", help="Remove all cache, not only dangling.")
    ] = False,
    filter: _FilterOption = None,
    reserved_space: Annotated[
        str | None, typer.Option("--reserved-space", help="Keep at least this much cache.")
    ] = None,
    keep_storage: Annotated[
        str | None, typer.Option("--keep-storage", help="Old name of --reserved-space.")
    ] = None,
    max_used_space: Annotated[
        str | None,
        typer.Option("--max-used-space", help="Cache may use at most this (BuildKit >= v0.17)."),
    ] = None,
    min_free_space: Annotated[
        str | None,
        typer.Option("--min-free-space", help="Leave this much disk free (BuildKit >= v0.17)."),
    ] = None,
    verbose: _VerboseOption = False,
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Do not ask for confirmation.")
    ] = False,
) -> None:
    """Remove build cache on every node; asks first when run in a terminal (unless -f)."""
    from pybuildx.builders.diskusage import du_pretty, du_table, human_size, parse_filters
    from pybuildx.buildkit.control import ControlClient
    from pybuildx.errors import UsageError

    if reserved_space and keep_storage:
        raise UsageError("--keep-storage is the old name of --reserved-space: give only one")
    reserved = reserved_space or keep_storage
    sizes = {
        "reserved_space": _size(reserved, "--reserved-space"),
        "max_used_space": _size(max_used_space, "--max-used-space"),
        "min_free_space": _size(min_free_space, "--min-free-space"),
    }
    wanted = parse_filters(filter or [])
    if not force and sys.stdin.isatty() and not _confirm(all):
        return
    active = _booted(builder)
    try:
        new_flags = [
            flag
            for flag, value in (
                ("--max-used-space", max_used_space),
                ("--min-free-space", min_free_space),
            )
            if value
        ]
        if new_flags:
            _check_space_limits(active, new_flags)
        removed = []
        for index, node in enumerate(active.spec.nodes):
            client = ControlClient(active.channel(index), target=node.name)
            removed += client.prune(
                wanted.filters, all=all, keep_duration_s=wanted.older_than_s, **sizes
            )
    finally:
        active.close()
    if removed:
        for line in du_pretty(removed) if verbose else du_table(removed):
            typer.echo(line)
    typer.echo(f"Total:\t{human_size(sum(r.size for r in removed))}")


def register_cache_commands(builder_app: typer.Typer) -> None:
    builder_app.command("du")(du)
    builder_app.command("prune")(prune)
