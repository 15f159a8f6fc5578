"""``ci-build builder``: create, list, inspect, select, stop and remove named builders.

``du`` and ``prune`` live in ``builder_cache``."""

from __future__ import annotations

import contextlib
import functools
import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from pybuildx.builders.model import BuilderSpec
    from pybuildx.builders.status import BuilderStatus
    from pybuildx.builders.store import Store

__all__ = ["register"]

builder_app = typer.Typer(
    name="builder",
    help="Manage named builders: groups of BuildKit nodes reached through a driver.",
    no_args_is_help=True,
)


def _store() -> Store:
    from pybuildx.builders.store import Store

    return Store()


def _driver_opts(values: list[str] | None) -> dict[str, str]:
    from pybuildx.config import parse_csv_options

    opts: dict[str, str] = {}
    for value in values or []:
        opts.update(parse_csv_options(value, what="driver-opt"))
    return opts


def _read_config(path: Path | None) -> str | None:
    from pybuildx.errors import UsageError

    if path is None:
        return None
    try:
        return path.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read --buildkitd-config {str(path)!r}: {exc.strerror}") from None


@builder_app.command("create")
def create(
    endpoint: Annotated[
        str | None, typer.Argument(help="Endpoint for the remote driver (tcp://, unix://, ...).")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Builder name.")] = None,
    driver: Annotated[
        str | None,
        typer.Option("--driver", help="local (default), remote, docker, docker-container."),
    ] = None,
    driver_opt: Annotated[
        list[str] | None, typer.Option("--driver-opt", help="Driver option k=v (repeatable).")
    ] = None,
    platform: Annotated[
        list[str] | None, typer.Option("--platform", help="Platforms this node builds.")
    ] = None,
    node: Annotated[str | None, typer.Option("--node", help="Node name to add or change.")] = None,
    append: Annotated[bool, typer.Option("--append", help="Add a node to the builder.")] = False,
    leave: Annotated[bool, typer.Option("--leave", help="Remove --node from the builder.")] = False,
    buildkitd_flags: Annotated[
        str | None, typer.Option("--buildkitd-flags", help="Flags for buildkitd (shell words).")
    ] = None,
    buildkitd_config: Annotated[
        Path | None, typer.Option("--buildkitd-config", help="buildkitd.toml for the node.")
    ] = None,
    bootstrap: Annotated[bool, typer.Option("--bootstrap", help="Start the nodes now.")] = False,
    use: Annotated[bool, typer.Option("--use", help="Make it the current builder.")] = False,
) -> None:
    """Create a builder, or add/change/remove one of its nodes."""
    from pybuildx.builders.manage import CreateRequest, apply_create, leave_node
    from pybuildx.config import parse_platforms
    from pybuildx.errors import UsageError

    store = _store()
    if leave:
        if not name or not node:
            raise UsageError("--leave needs --name and --node")
        with store.transaction():
            before = store.load(name)
            store.save(leave_node(before, node))
        _remove_node(before, node, store)
        return
    request = CreateRequest(
        name=name,
        driver=driver,
        node=node,
        endpoint=endpoint or "",
        platforms=parse_platforms(platform or []),
        driver_opts=_driver_opts(driver_opt),
        buildkitd_flags=tuple(shlex.split(buildkitd_flags or "")),
        buildkitd_config=_read_config(buildkitd_config),
        append=append,
    )
    with store.transaction():
        existing = store.get(name) if name else None
        updated = apply_create(existing, request)
        store.save(updated)
    if bootstrap:
        _bootstrap_or_roll_back(updated, existing, store)
    if use:
        store.use(updated.name)
    typer.echo(updated.name)


def _remove_node(builder: BuilderSpec, node: str, store: Store) -> None:
    from pybuildx.builders.active import ActiveBuilder
    from pybuildx.builders.model import BuilderSpec

    gone = builder.node(node.lower())
    if gone is not None:
        single = BuilderSpec(name=builder.name, driver=builder.driver, nodes=(gone,))
        ActiveBuilder(single, ephemeral=False, store=store).remove()


def _bootstrap_or_roll_back(
    updated: BuilderSpec, previous: BuilderSpec | None, store: Store
) -> None:
    from pybuildx.builders.active import ActiveBuilder

    active = ActiveBuilder(updated, ephemeral=False, store=store)
    try:
        active.boot()
    except BaseException:
        # As buildx: a builder that cannot start is not kept (the previous version comes back).
        active.remove()
        with store.transaction():
            if previous is None:
                store.remove(updated.name)
            else:
                store.save(previous)
        raise
    finally:
        active.close()


def _statuses(builders: list[BuilderSpec], store: Store) -> list[BuilderStatus]:
    from pybuildx.builders.parallel import Job, run_all
    from pybuildx.builders.status import builder_status

    jobs = [Job(f"ls-{b.name}", functools.partial(builder_status, b, store)) for b in builders]
    return run_all(jobs)


@builder_app.command("ls")
def ls(
    format: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
    no_trunc: Annotated[
        bool, typer.Option("--no-trunc", help="Show every platform, ungrouped.")
    ] = False,
) -> None:
    """List builders and the state of their nodes (builders with errors last)."""
    from pybuildx.builders.listing import ls_errors, ls_json, ls_table, sort_for_listing
    from pybuildx.builders.status import unreadable_status
    from pybuildx.config import reject_unknown

    reject_unknown([format], ("table", "json"), what="format")
    store = _store()
    described = _statuses(store.list(), store)
    described += [unreadable_status(n, e) for n, e in store.unreadable_by_name().items()]
    described = sort_for_listing(described)
    if format == "json":
        for item in described:
            typer.echo(json.dumps(ls_json(item)))
        return
    for line in ls_table(described, truncate=not no_trunc):
        typer.echo(line)
    for line in ls_errors(described):
        typer.echo(line, err=True)


@builder_app.command("inspect")
def inspect(
    name: Annotated[str | None, typer.Argument(help="Builder (default: the current one).")] = None,
    bootstrap: Annotated[
        bool, typer.Option("--bootstrap", help="Start (or restart) the nodes first.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Also show driver features.")] = False,
) -> None:
    """Show a builder's nodes: status, BuildKit version, platforms, labels, GC policy."""
    import os

    from pybuildx.builders.listing import inspect_lines
    from pybuildx.builders.status import builder_status

    store = _store()
    builder = store.load(store.resolve(name))
    if bootstrap:
        from pybuildx.builders.active import ActiveBuilder

        active = ActiveBuilder(builder, ephemeral=False, store=store)
        try:
            active.boot()
        finally:
            active.close()
    debug = debug or os.environ.get("PYBUILDX_DEBUG") == "1"
    for line in inspect_lines(builder_status(builder, store), debug=debug):
        typer.echo(line)


@builder_app.command("use")
def use(name: Annotated[str, typer.Argument(help="Builder to make current.")]) -> None:
    """Make a builder the current one (used by 'ci-build build' without --builder)."""
    store = _store()
    with store.transaction():
        store.use(name)


def _inactive_builders(store: Store) -> list[str]:
    from pybuildx.builders.active import ActiveBuilder
    from pybuildx.drivers.base import Status

    targets = []
    for builder in store.list():
        active = ActiveBuilder(builder, ephemeral=False, store=store)
        try:
            statuses = [active.driver(i).info().status for i in range(len(builder.nodes))]
        finally:
            active.close()
        if Status.RUNNING not in statuses:
            targets.append(builder.name)
    return targets


def _remove_one(
    name: str, store: Store, *, keep_state: bool, keep_daemon: bool, force: bool
) -> str:
    """Remove one builder; returns the notes to print; raises when it stays in the store."""
    from pybuildx.builders.active import ActiveBuilder
    from pybuildx.errors import DriverError

    builder = store.load(name)
    report = ActiveBuilder(builder, ephemeral=False, store=store).remove(
        keep_state=keep_state, keep_daemon=keep_daemon
    )
    if report.failures and not force:
        # Unlike buildx we keep the record: without it nobody can find what leaked.
        raise DriverError("; ".join(report.failures))
    with store.transaction():
        store.remove(name)
    return "\n".join(report.notes)


@builder_app.command("rm")
def rm(
    names: Annotated[list[str] | None, typer.Argument(help="Builders (default: current).")] = None,
    keep_state: Annotated[
        bool, typer.Option("--keep-state", help="Keep the BuildKit state (cache).")
    ] = False,
    keep_daemon: Annotated[
        bool,
        typer.Option("--keep-daemon", help="Leave the daemon running; only forget the builder."),
    ] = False,
    all_inactive: Annotated[
        bool, typer.Option("--all-inactive", help="Remove every builder that is not running.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", "-f", help="Forget the builder even when its teardown fails."),
    ] = False,
) -> None:
    """Stop and remove builders (in parallel): what they started, and their stored entry."""
    from pybuildx.builders.parallel import Job, run_all
    from pybuildx.errors import DriverError, UsageError, redact

    store = _store()
    if all_inactive:
        if names:
            raise UsageError("--all-inactive takes no builder names")
        targets = _inactive_builders(store)
    else:
        targets = list(dict.fromkeys(names or [store.resolve(None)]))
    for name in targets:
        store.load(name)  # an unknown name fails before anything is removed
    jobs = [
        Job(
            name,
            functools.partial(
                _remove_one,
                name,
                store,
                keep_state=keep_state,
                keep_daemon=keep_daemon,
                force=force,
            ),
        )
        for name in targets
    ]
    with contextlib.suppress(Exception):  # each job's outcome is printed below
        run_all(jobs)
    failed = [job for job in jobs if job.error is not None]
    for job in jobs:
        if job.error is not None:
            typer.echo(f"failed to remove {job.name}: {redact(str(job.error))}", err=True)
            continue
        if job.result:
            typer.echo(job.result, err=True)
        typer.echo(f"{job.name} removed", err=True)
    if failed:
        raise DriverError(
            f"{len(failed)} of {len(jobs)} builders could not be removed",
            hint="fix the cause and retry, or pass --force to forget them anyway",
        )


@builder_app.command("stop")
def stop(
    name: Annotated[str | None, typer.Argument(help="Builder (default: the current one).")] = None,
) -> None:
    """Stop a builder's daemons, keeping their state; 'inspect --bootstrap' or a build restarts."""
    from pybuildx.builders.active import ActiveBuilder
    from pybuildx.errors import DriverError

    store = _store()
    builder = store.load(store.resolve(name))
    report = ActiveBuilder(builder, ephemeral=False, store=store).stop()
    for note in report.notes:
        typer.echo(note, err=True)
    if report.failures:
        raise DriverError(f"cannot stop {builder.name}: {'; '.join(report.failures)}")


def register(app: typer.Typer) -> None:
    from pybuildx.cli.builder_cache import register_cache_commands

    register_cache_commands(builder_app)
    app.add_typer(builder_app, name="builder")
