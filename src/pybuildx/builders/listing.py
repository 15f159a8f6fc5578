"""Rendering builder states as ``builder ls`` (table, JSON) and ``builder inspect`` print them.

Pure functions over ``BuilderStatus``; the layout follows buildx (drivers.md §7.1, §7.2) because
scripts and people read it the same way.
"""

from __future__ import annotations

import base64
import shlex
from collections.abc import Iterable, Sequence
from typing import Any

from pybuildx.builders.sizes import human_bytes
from pybuildx.builders.status import BuilderStatus, NodeStatus
from pybuildx.buildkit.control import GCPolicy

__all__ = [
    "MAX_PLATFORM_GROUPS",
    "format_duration",
    "format_platforms",
    "human_bytes",
    "inspect_lines",
    "ls_errors",
    "ls_json",
    "ls_table",
    "sort_for_listing",
]

MAX_PLATFORM_GROUPS = 4
# Shown first when a daemon reports many platforms: what most builds target.
_POPULAR = (
    "linux/amd64",
    "linux/arm64",
    "linux/arm",
    "linux/ppc64le",
    "linux/s390x",
    "linux/riscv64",
    "linux/386",
    "linux/mips64",
)


def _group_key(platform: str) -> str:
    return "/".join(platform.split("/")[:2])


def format_platforms(platforms: Sequence[str], static: Iterable[str], *, truncate: bool) -> str:
    """``linux/amd64*, linux/arm64, linux/386 (+1), (2 more)``.

    Static platforms get ``*``. Truncated: variants of one os/arch are one group shown by its first
    member and ``(+N)``; groups with a static platform come first, then popular ones, then the rest
    alphabetically; after ``MAX_PLATFORM_GROUPS`` groups the remainder is ``(N more)``.
    """
    pinned = set(static)
    platforms = list(dict.fromkeys(platforms))

    def label(platform: str) -> str:
        return f"{platform}*" if platform in pinned else platform

    if not truncate:
        return ", ".join(label(p) for p in platforms)
    groups: dict[str, list[str]] = {}
    for platform in platforms:
        groups.setdefault(_group_key(platform), []).append(platform)

    def rank(key: str) -> tuple[int, int, str]:
        if any(p in pinned for p in groups[key]):
            return (0, 0, "")  # stable sort keeps their given order
        if key in _POPULAR:
            return (1, _POPULAR.index(key), key)
        return (2, 0, key)

    ordered = sorted(groups, key=rank)
    shown = []
    for key in ordered[:MAX_PLATFORM_GROUPS]:
        members = groups[key]
        first = next((p for p in members if p in pinned), members[0])
        extra = f" (+{len(members) - 1})" if len(members) > 1 else ""
        shown.append(label(first) + extra)
    hidden = sum(len(groups[k]) for k in ordered[MAX_PLATFORM_GROUPS:])
    if hidden:
        shown.append(f"({hidden} more)")
    return ", ".join(shown)


def sort_for_listing(builders: Iterable[BuilderStatus]) -> list[BuilderStatus]:
    """As buildx: builders with errors last, otherwise the given (name) order."""
    return sorted(builders, key=lambda b: b.errored)


# -- ls ------------------------------------------------------------------------------------


def ls_table(builders: Sequence[BuilderStatus], *, truncate: bool = True) -> list[str]:
    rows = [("NAME/NODE", "DRIVER/ENDPOINT", "STATUS", "BUILDKIT", "PLATFORMS")]
    for builder in builders:
        name = builder.name + ("*" if builder.current else "")
        rows.append((name, builder.driver, "error" if builder.error else "", "", ""))
        for node in builder.nodes:
            rows.append(
                (
                    " \\_ " + node.spec.name,
                    " \\_ " + (node.spec.endpoint or node.spec.driver),
                    node.status,
                    node.version,
                    format_platforms(node.platforms, node.static, truncate=truncate),
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


def ls_errors(builders: Iterable[BuilderStatus]) -> list[str]:
    lines = []
    for builder in builders:
        if builder.error:
            lines.append(f"Cannot load builder {builder.name}: {builder.error}")
        for node in builder.nodes:
            if node.error:
                lines.append(
                    f"Failed to get status for {builder.name} ({node.spec.name}): {node.error}"
                )
    return lines


def _omit_empty(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v not in ("", None, [], {}, 0) or v is False}


def _policy_json(policy: GCPolicy) -> dict[str, Any]:
    return _omit_empty(
        {
            "all": policy.all or None,
            "filter": list(policy.filters),
            "keepDuration": int(policy.keep_duration_s * 1e9),
            "reservedSpace": policy.reserved_space,
            "maxUsedSpace": policy.max_used_space,
            "minFreeSpace": policy.min_free_space,
        }
    )


def _oci_platform(platform: str) -> dict[str, str]:
    """``linux/arm/v7`` as an OCI platform object, the shape buildx prints."""
    os_name, arch, *variant = platform.split("/")
    data = {"architecture": arch, "os": os_name}
    if variant:
        data["variant"] = variant[0]
    return data


def _node_json(node: NodeStatus) -> dict[str, Any]:
    files = {}
    if node.spec.buildkitd_config is not None:
        files["buildkitd.toml"] = base64.b64encode(node.spec.buildkitd_config.encode()).decode()
    return _omit_empty(
        {
            "Name": node.spec.name,
            "Endpoint": node.spec.endpoint or node.spec.driver,
            "Status": node.status,
            "Version": node.version,
            "IDs": list(node.worker_ids),
            "Platforms": [_oci_platform(p) for p in node.platforms],
            "GCPolicy": [_policy_json(p) for p in node.gc_policies],
            "Labels": dict(node.labels),
            "Flags": list(node.spec.buildkitd_flags),
            "DriverOpts": dict(node.spec.driver_opts),
            "Files": files,
            "Err": node.error,
        }
    )


def ls_json(builder: BuilderStatus) -> dict[str, Any]:
    """One builder as buildx's ``ls --format json`` prints it (empty fields left out)."""
    data = _omit_empty(
        {
            "Name": builder.name,
            "Driver": builder.driver,
            "Nodes": [_node_json(n) for n in builder.nodes],
            "Err": builder.error,
        }
    )
    data["Dynamic"] = False
    data["Current"] = builder.current
    return data


# -- inspect -------------------------------------------------------------------------------


def format_duration(seconds: float) -> str:
    """Go's ``time.Duration`` text for whole and fractional seconds: ``48h0m0s``, ``1.5s``."""
    if seconds == 0:
        return "0s"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{secs:g}s"
    if hours or minutes:
        text = f"{int(minutes)}m" + text
    if hours:
        text = f"{int(hours)}h" + text
    return text


def _aligned(pairs: Sequence[tuple[str, str]], indent: str = "") -> list[str]:
    width = max(len(k) for k, _ in pairs) + 2
    return [f"{indent}{(key + ':').ljust(width)}{value}".rstrip() for key, value in pairs]


def _policy_lines(index: int, policy: GCPolicy) -> list[str]:
    pairs = [("All", str(policy.all).lower())]
    if policy.filters:
        pairs.append(("Filters", ",".join(policy.filters)))
    if policy.keep_duration_s:
        pairs.append(("Keep Duration", format_duration(policy.keep_duration_s)))
    for key, value in (
        ("Reserved Space", policy.reserved_space),
        ("Max Used Space", policy.max_used_space),
        ("Min Free Space", policy.min_free_space),
    ):
        if value:
            pairs.append((key, human_bytes(value)))
    return [f"GC Policy rule#{index}:", *_aligned(pairs, " ")]


def _node_lines(node: NodeStatus, *, debug: bool) -> list[str]:
    pairs = [("Name", node.spec.name), ("Endpoint", node.spec.endpoint or node.spec.driver)]
    if node.spec.driver_opts:
        opts = " ".join(f'{k}="{v}"' for k, v in sorted(node.spec.driver_opts.items()))
        pairs.append(("Driver Options", opts))
    pairs.append(("Error", node.error) if node.error else ("Status", node.status))
    if node.spec.buildkitd_flags:
        pairs.append(("BuildKit daemon flags", shlex.join(node.spec.buildkitd_flags)))
    if node.version:
        pairs.append(("BuildKit version", node.version))
    if node.platforms:
        pairs.append(("Platforms", format_platforms(node.platforms, node.static, truncate=False)))
    lines = _aligned(pairs)
    if debug and node.features:
        lines.append("Features:")
        lines += _aligned([(k, str(v).lower()) for k, v in node.features.items()], " ")
    if node.labels:
        lines.append("Labels:")
        lines += _aligned(sorted(node.labels.items()), " ")
    for index, policy in enumerate(node.gc_policies):
        lines += _policy_lines(index, policy)
    if node.spec.buildkitd_config:
        lines.append("File#buildkitd.toml:")
        lines += [f" > {line}" for line in node.spec.buildkitd_config.splitlines()]
    return lines


def inspect_lines(builder: BuilderStatus, *, debug: bool = False) -> list[str]:
    pairs = [("Name", builder.name), ("Driver", builder.driver)]
    if builder.error:
        pairs.append(("Error", builder.error))
    lines = [*_aligned(pairs), "", "Nodes:"]
    for position, node in enumerate(builder.nodes):
        if position:
            lines.append("")
        lines += _node_lines(node, debug=debug)
    return lines
