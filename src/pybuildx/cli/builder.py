"""``ci-build builder``: create, list, inspect, select and remove named builders; du and prune."""

from __future__ import annotations

import functools
import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from pybuildx.builders.active import ActiveBuilder
    from pybuildx.builders.model import BuilderSpec
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


def _node_rows(active: ActiveBuilder) -> list[dict[str, Any]]:
    from pybuildx.builders.parallel import Job, run_all
    from pybuildx.buildkit.control import ControlClient
    from pybuildx.drivers.base import Status

    def describe(index: int) -> dict[str, Any]:
        node = active.spec.nodes[index]
        row: dict[str, Any] = {
            "Name": node.name,
            "Endpoint": node.endpoint or node.driver,
            "Status": "",
            "Version": "",
            "Platforms": [str(p) for p in node.platforms],
            "DriverOpts": dict(node.driver_opts),
            "Flags": list(node.buildkitd_flags),
        }
        try:
            info = active.driver(index).info()
            row["Status"] = info.status.value
            if info.status == Status.RUNNING:
                daemon = ControlClient(active.channel(index), target=node.name).info(timeout=10)
                row["Version"] = daemon.version if daemon else ""
                detected = [str(p) for p in active.platforms(index)]
                row["Platforms"] += [p for p in detected if p not in row["Platforms"]]
            elif info.detail:
                row["Err"] = info.detail
        except Exception as exc:
            row["Status"] = "error"
            row["Err"] = str(exc)
        return row

    jobs = [
        Job(f"info-{n.name}", functools.partial(describe, i))
        for i, n in enumerate(active.spec.nodes)
    ]
    return run_all(jobs)


def _describe(builder: BuilderSpec, store: Store) -> dict[str, Any]:
    from pybuildx.builders.active import ActiveBuilder

    try:
        active = ActiveBuilder(builder, ephemeral=False, store=store)
    except Exception as exc:
        return {"Name": builder.name, "Driver": builder.driver, "Nodes": [], "Err": str(exc)}
    try:
        nodes = _node_rows(active)
    finally:
        active.close()
    return {
        "Name": builder.name,
        "Driver": builder.driver,
        "Nodes": nodes,
        "Current": store.current() == builder.name,
    }


def _platform_list(node: dict[str, Any], static: int) -> str:
    platforms = node["Platforms"]
    return ", ".join(f"{p}*" if i < static else p for i, p in enumerate(platforms))


@builder_app.command("ls")
def ls(
    format: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
) -> None:
    """List builders and the state of their nodes."""
    from pybuildx.config import reject_unknown

    reject_unknown([format], ("table", "json"), what="format")
    store = _store()
    builders = store.list()
    described = [_describe(b, store) for b in builders]
    if format == "json":
        for item in described:
            typer.echo(json.dumps(item))
        return
    rows = [("NAME/NODE", "DRIVER/ENDPOINT", "STATUS", "BUILDKIT", "PLATFORMS")]
    for builder, item in zip(builders, described, strict=False):
        rows.append(
            (item["Name"] + ("*" if item.get("Current") else ""), item["Driver"], "", "", "")
        )
        for spec_node, node in zip(builder.nodes, item["Nodes"], strict=False):
            rows.append(
                (
                    " \\_ " + node["Name"],
                    " \\_ " + node["Endpoint"],
                    node["Status"],
                    node["Version"],
                    _platform_list(node, len(spec_node.platforms)),
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for row in rows:
        typer.echo("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())
    for problem in store.unreadable():
        typer.echo(f"Cannot load builder: {problem}", err=True)
    for item in described:
        for node in item["Nodes"]:
            if node.get("Err"):
                typer.echo(
                    f"Failed to get status for {item['Name']} ({node['Name']}): {node['Err']}",
                    err=True,
                )


def _resolve_name(name: str | None, store: Store) -> str:
    import os

    from pybuildx.errors import UsageError

    chosen = name or os.environ.get("PYBUILDX_BUILDER") or store.current()
    if not chosen:
        raise UsageError(
            "no builder given and no current builder",
            hint="pass NAME or run 'ci-build builder use NAME'",
        )
    return chosen


@builder_app.command("inspect")
def inspect(
    name: Annotated[str | None, typer.Argument(help="Builder (default: the current one).")] = None,
    bootstrap: Annotated[bool, typer.Option("--bootstrap", help="Start the nodes first.")] = False,
) -> None:
    """Show a builder's nodes, status, BuildKit version and platforms."""
    store = _store()
    builder = store.load(_resolve_name(name, store))
    if bootstrap:
        from pybuildx.builders.active import ActiveBuilder

        active = ActiveBuilder(builder, ephemeral=False, store=store)
        try:
            active.boot()
        finally:
            active.close()
    item = _describe(builder, store)
    typer.echo(f"Name:          {item['Name']}")
    typer.echo(f"Driver:        {item['Driver']}")
    typer.echo("")
    typer.echo("Nodes:")
    for spec_node, node in zip(builder.nodes, item["Nodes"], strict=False):
        opts = " ".join(f'{k}="{v}"' for k, v in node["DriverOpts"].items())
        typer.echo(f"Name:             {node['Name']}")
        typer.echo(f"Endpoint:         {node['Endpoint']}")
        if opts:
            typer.echo(f"Driver Options:   {opts}")
        if node.get("Err"):
            typer.echo(f"Error:            {node['Err']}")
        typer.echo(f"Status:           {node['Status']}")
        if node["Flags"]:
            typer.echo(f"BuildKit daemon flags: {shlex.join(node['Flags'])}")
        if node["Version"]:
            typer.echo(f"BuildKit version: {node['Version']}")
        typer.echo(f"Platforms:        {_platform_list(node, len(spec_node.platforms))}")
        typer.echo("")


@builder_app.command("use")
def use(name: Annotated[str, typer.Argument(help="Builder to make current.")]) -> None:
    """Make a builder the current one (used by 'ci-build build' without --builder)."""
    store = _store()
    with store.transaction():
        store.use(name)


@builder_app.command("rm")
def rm(
    names: Annotated[list[str] | None, typer.Argument(help="Builders (default: current).")] = None,
    keep_state: Annotated[
        bool, typer.Option("--keep-state", help="Keep the BuildKit state (cache).")
    ] = False,
    all_inactive: Annotated[
        bool, typer.Option("--all-inactive", help="Remove every builder that is not running.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", "-f", help="Forget the builder even when its teardown fails."),
    ] = False,
) -> None:
    """Stop and remove builders (what they started, and their stored entry)."""
    from pybuildx.builders.active import ActiveBuilder
    from pybuildx.drivers.base import Status
    from pybuildx.errors import DriverError, UsageError

    store = _store()
    if all_inactive:
        if names:
            raise UsageError("--all-inactive takes no builder names")
        targets = []
        for builder in store.list():
            active = ActiveBuilder(builder, ephemeral=False, store=store)
            try:
                statuses = [active.driver(i).info().status for i in range(len(builder.nodes))]
            finally:
                active.close()
            if Status.RUNNING not in statuses:
                targets.append(builder.name)
    else:
        targets = list(names or [_resolve_name(None, store)])
    failed = False
    for name in targets:
        builder = store.load(name)
        report = ActiveBuilder(builder, ephemeral=False, store=store).remove(keep_state=keep_state)
        if report.failures and not force:
            # Unlike buildx we keep the record: without it nobody can find what leaked.
            typer.echo(f"failed to remove {name}: {'; '.join(report.failures)}", err=True)
            failed = True
            continue
        with store.transaction():
            store.remove(name)
        typer.echo(f"{name} removed", err=True)
    if failed:
        raise DriverError("some builders could not be removed", hint="retry, or pass --force")


def _format_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.2f}{unit}"
        value /= 1000
    return f"{size}B"


def _booted(name: str | None) -> ActiveBuilder:
    from pybuildx.builders.active import ActiveBuilder

    store = _store()
    builder = store.load(_resolve_name(name, store))
    active = ActiveBuilder(builder, ephemeral=False, store=store)
    try:
        active.boot()
    except BaseException:
        active.close()
        raise
    return active


@builder_app.command("du")
def du(
    name: Annotated[
        str | None, typer.Option("--builder", help="Builder (default: current).")
    ] = None,
    filter: Annotated[list[str] | None, typer.Option("--filter", help="Filter records.")] = None,
) -> None:
    """Show the build cache of every node."""
    from pybuildx.buildkit.control import ControlClient

    active = _booted(name)
    try:
        total = reclaimable = 0
        typer.echo(f"{'ID':<28}{'RECLAIMABLE':<13}{'SIZE':<12}LAST ACCESSED")
        for index, node in enumerate(active.spec.nodes):
            client = ControlClient(active.channel(index), target=node.name)
            for record in client.disk_usage(filter or []):
                rid = record.id + ("*" if record.mutable else "")
                free = not record.in_use
                last = (
                    record.last_used_at.isoformat(timespec="seconds") if record.last_used_at else ""
                )
                typer.echo(f"{rid:<28}{str(free).lower():<13}{_format_size(record.size):<12}{last}")
                total += record.size
                reclaimable += record.size if free else 0
        typer.echo(f"Reclaimable:\t{_format_size(reclaimable)}")
        typer.echo(f"Total:\t\t{_format_size(total)}")
    finally:
        active.close()


@builder_app.command("prune")
def prune(
    name: Annotated[
        str | None, typer.Option("--builder", help="Builder (default: current).")
    ] = None,
    all: Annotated[
        bool, typer.Option("--all", "-a", help="Remove all cache, not only dangling.")
    ] = False,
    filter: Annotated[list[str] | None, typer.Option("--filter", help="Filter records.")] = None,
    reserved_space: Annotated[
        str | None, typer.Option("--reserved-space", help="Keep at least this much cache.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Accepted for buildx parity.")
    ] = False,
) -> None:
    """Remove build cache on every node."""
    from pybuildx.buildkit.control import ControlClient
    from pybuildx.buildspec import parse_size

    del force  # we never prompt: CI has no terminal
    keep = parse_size(reserved_space, what="--reserved-space") if reserved_space else 0
    active = _booted(name)
    try:
        total = 0
        for index, node in enumerate(active.spec.nodes):
            client = ControlClient(active.channel(index), target=node.name)
            for record in client.prune(filter or [], all=all, reserved_space=keep):
                total += record.size
        typer.echo(f"Total:\t{_format_size(total)}")
    finally:
        active.close()
    sys.stdout.flush()


def register(app: typer.Typer) -> None:
    app.add_typer(builder_app, name="builder")
