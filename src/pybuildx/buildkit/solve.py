"""Assembling the ``SolveRequest`` of a Dockerfile build from a ``BuildSpec``.

Pure data in, proto out: no I/O, so every attribute rule is unit-tested. The rules follow the
built-in ``dockerfile.v0`` frontend (its FrontendAttrs) and what buildx sends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pybuildx.buildkit._pb import control_pb2
from pybuildx.buildspec import BuildSpec, OutputSpec
from pybuildx.config import Platform

__all__ = [
    "CONTEXT_LOCAL",
    "DOCKERFILE_FRONTEND",
    "DOCKERFILE_LOCAL",
    "exporters",
    "frontend_attrs",
    "named_context_locals",
    "solve_request",
]

DOCKERFILE_FRONTEND = "dockerfile.v0"
GATEWAY_FRONTEND = "gateway.v0"
CONTEXT_LOCAL = "context"
DOCKERFILE_LOCAL = "dockerfile"
_RESERVED_LOCALS = (CONTEXT_LOCAL, DOCKERFILE_LOCAL)
ENTITLEMENT_NETWORK_HOST = "network.host"


def named_context_locals(spec: BuildSpec) -> dict[str, str]:
    """Named context name → the session local that serves its directory."""
    return {
        name: f"named-{name}" if name in _RESERVED_LOCALS else name
        for name in spec.local_named_contexts
    }


def frontend_attrs(
    spec: BuildSpec,
    *,
    platforms: Sequence[Platform] | None = None,
    multi_platform: bool = False,
) -> dict[str, str]:
    """The ``dockerfile.v0`` FrontendAttrs for ``spec`` (``platforms`` overrides the spec's)."""
    attrs: dict[str, str] = {"filename": spec.dockerfile_name}
    if spec.target:
        attrs["target"] = spec.target
    for key, value in spec.build_args.items():
        attrs[f"build-arg:{key}"] = value
    for key, value in spec.labels.items():
        attrs[f"label:{key}"] = value
    chosen = spec.platforms if platforms is None else tuple(platforms)
    if chosen:
        attrs["platform"] = ",".join(str(p) for p in chosen)
    if multi_platform:
        attrs["multi-platform"] = "true"
    if spec.no_cache:
        attrs["no-cache"] = ""
    elif spec.no_cache_filter:
        attrs["no-cache"] = ",".join(spec.no_cache_filter)
    if spec.add_hosts:
        attrs["add-hosts"] = ",".join(f"{host}={ip}" for host, ip in spec.add_hosts)
    if spec.network:
        attrs["force-network-mode"] = spec.network
    if spec.shm_size:
        attrs["shm-size"] = str(spec.shm_size)
    if spec.ulimits:
        attrs["ulimit"] = ",".join(spec.ulimits)
    locals_by_name = named_context_locals(spec)
    for name, value in spec.build_contexts.items():
        local = locals_by_name.get(name)
        attrs[f"context:{name}"] = f"local:{local}" if local else value
    return attrs


def exporters(outputs: Sequence[OutputSpec]) -> list[control_pb2.Exporter]:
    """One Exporter per output; its index is the id the daemon sends with FileSend calls."""
    return [control_pb2.Exporter(Type=o.type, Attrs=dict(o.attrs)) for o in outputs]


def entitlements(spec: BuildSpec) -> list[str]:
    wanted = list(dict.fromkeys(spec.allow))
    if spec.network == "host" and ENTITLEMENT_NETWORK_HOST not in wanted:
        wanted.append(ENTITLEMENT_NETWORK_HOST)
    return wanted


def solve_request(
    spec: BuildSpec,
    *,
    ref: str,
    session_id: str,
    platforms: Sequence[Platform] | None = None,
    multi_platform: bool = False,
    outputs: Sequence[OutputSpec] | None = None,
    extra_frontend_attrs: Mapping[str, str] | None = None,
    cache: control_pb2.CacheOptions | None = None,
) -> control_pb2.SolveRequest:
    """The complete request. ``outputs`` overrides ``spec.outputs`` (the pipeline rewrites them
    per node); exporters go in ``Exporters`` and, for pre-v0.13 daemons, the first also in the
    legacy fields 3/4, as BuildKit's Go client does."""
    chosen = list(spec.outputs if outputs is None else outputs)
    attrs = frontend_attrs(spec, platforms=platforms, multi_platform=multi_platform)
    attrs.update(extra_frontend_attrs or {})
    frontend = DOCKERFILE_FRONTEND
    syntax = spec.build_args.get("BUILDKIT_SYNTAX", "").strip()
    if syntax:  # as buildx: run that frontend image directly; cmdline stops it forwarding again
        frontend = GATEWAY_FRONTEND
        attrs.setdefault("source", syntax.split(" ", 1)[0])
        attrs.setdefault("cmdline", syntax)
    request = control_pb2.SolveRequest(
        Ref=ref,
        Session=session_id,
        Frontend=frontend,
        FrontendAttrs=attrs,
        Exporters=exporters(chosen),
        Entitlements=entitlements(spec),
    )
    if chosen:
        request.ExporterDeprecated = chosen[0].type
        request.ExporterAttrsDeprecated.update(chosen[0].attrs)
    # Always present: BuildKit v0.17+ dereferences Cache unconditionally and a missing one
    # crashes the whole daemon (nil pointer in translateLegacySolveRequest).
    request.Cache.SetInParent()
    if cache is not None:
        request.Cache.CopyFrom(cache)
    return request
