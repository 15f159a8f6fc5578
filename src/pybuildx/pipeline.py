"""The main job: builder → bootstrap → plan platforms → solve per node → merge → load → teardown.

``run(spec)`` without a builder name uses the current builder (``builder use``, or
``$PYBUILDX_BUILDER``) when there is one, else the embedded default: an ephemeral local buildkitd
that lives exactly as long as this call. Whatever happens (a failed solve, Ctrl-C, SIGTERM from a
cancelled CI job) what this run started is torn down before ``run`` returns or raises.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shlex
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from pybuildx import drivers
from pybuildx.builders.active import ActiveBuilder
from pybuildx.builders.model import BuilderSpec
from pybuildx.builders.parallel import Job, run_all
from pybuildx.builders.resolve import NodePlan, needs_detection, plan
from pybuildx.builders.store import Store
from pybuildx.buildkit._pb import control_pb2
from pybuildx.buildkit.build import BuildResult, ProgressSink, build
from pybuildx.buildkit.extras import Surroundings
from pybuildx.buildkit.session import Attachable
from pybuildx.buildspec import BuildSpec, OutputSpec
from pybuildx.config import Platform
from pybuildx.drivers.spec import NodeSpec
from pybuildx.errors import ConfigError, PybuildxError, UsageError

__all__ = [
    "DEFAULT_BUILDER",
    "NodeBuild",
    "PipelineResult",
    "Terminated",
    "default_builder",
    "run",
]

_log = logging.getLogger(__name__)
DEFAULT_BUILDER = "default"
_TRUE = ("", "1", "true", "yes", "on")


class Terminated(KeyboardInterrupt):
    """SIGTERM/SIGHUP arrived: unwinds like Ctrl-C so every ``finally`` (teardown) runs."""


@dataclass(frozen=True)
class NodeBuild:
    node: str
    platforms: tuple[Platform, ...]
    result: BuildResult


@dataclass(frozen=True)
class PipelineResult:
    builder: str
    builds: tuple[NodeBuild, ...]
    digest: str | None = None
    """The pushed index's digest for a multi-node push, else the single result's digest."""
    exporter_response: Mapping[str, str] = field(default_factory=dict)
    """As one build gives it (metadata file, iidfile)."""


def default_builder(environ: Mapping[str, str] | None = None) -> BuilderSpec:
    """The embedded default: one local-driver node running buildkitd from PATH.

    ``PYBUILDX_BUILDKITD_CONFIG`` (a buildkitd.toml, e.g. registry CAs and mirrors) and
    ``PYBUILDX_BUILDKITD_FLAGS`` configure its daemon, as --buildkitd-config/-flags do for
    named builders.
    """
    env = os.environ if environ is None else environ
    config_path = env.get("PYBUILDX_BUILDKITD_CONFIG")
    config = None
    if config_path:
        try:
            config = Path(config_path).read_text()
        except OSError as exc:
            raise UsageError(
                f"cannot read PYBUILDX_BUILDKITD_CONFIG {config_path!r}: {exc.strerror}"
            ) from None
    node = NodeSpec(
        name=f"{DEFAULT_BUILDER}0",
        driver="local",
        buildkitd_flags=tuple(shlex.split(env.get("PYBUILDX_BUILDKITD_FLAGS", ""))),
        buildkitd_config=config,
    )
    drivers.validate(node)
    return BuilderSpec(name=DEFAULT_BUILDER, driver="local", nodes=(node,))


def _select_builder(name: str | None, store: Store) -> tuple[BuilderSpec, bool]:
    """(builder, ephemeral)."""
    chosen = name or os.environ.get("PYBUILDX_BUILDER") or store.current()
    if chosen:
        return store.load(chosen), False
    return default_builder(), True


# -- signals -------------------------------------------------------------------------------


@contextlib.contextmanager
def _signals(handler: Any) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    wanted = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, handler) for sig in wanted}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    del frame
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(signal.Signals(signum).name)


def _note_only(signum: int, frame: FrameType | None) -> None:
    # During teardown a second Ctrl-C or SIGTERM must not abandon half-removed resources.
    del signum, frame


# -- outputs per node ----------------------------------------------------------------------


def _is_push(output: OutputSpec) -> bool:
    return output.type == "image" and output.attrs.get("push", "false").lower() in _TRUE


def _is_load(output: OutputSpec) -> bool:
    return output.type == "docker" and output.dest is None


def _push_names(outputs: Sequence[OutputSpec]) -> list[str]:
    names: list[str] = []
    for output in outputs:
        if _is_push(output):
            names += [n.strip() for n in output.attrs.get("name", "").split(",") if n.strip()]
    return list(dict.fromkeys(names))


def _by_digest(output: OutputSpec) -> OutputSpec:
    """Multi-node push: each node pushes by digest to the repositories; tags come with the index."""
    from pybuildx.images.reference import ImageRef

    repos = [ImageRef.parse(n).name for n in output.attrs.get("name", "").split(",") if n.strip()]
    attrs = {**output.attrs, "name": ",".join(dict.fromkeys(repos)), "push-by-digest": "true"}
    return dataclasses.replace(output, attrs=attrs)


def _check_features(active: ActiveBuilder, plans: Sequence[NodePlan]) -> None:
    for node_plan in plans:
        if (
            len(node_plan.platforms) > 1
            and not active.driver(node_plan.node).features.multi_platform
        ):
            raise ConfigError(
                f"the {active.spec.driver} driver cannot build several platforms in one image",
                hint="use the default builder, --driver local or --driver docker-container",
            )


def _check_outputs(spec: BuildSpec, plans: Sequence[NodePlan], builder: BuilderSpec) -> None:
    multi_node = len(plans) > 1
    for output in spec.outputs:
        if multi_node and output.type in ("local", "tar", "oci", "docker"):
            what = "--load" if _is_load(output) else f"-o type={output.type}"
            raise ConfigError(
                f"{what} is not possible when several nodes build parts of one image",
                hint="push the multi-node result (--push), or build one platform per run",
            )
        if _is_load(output) and builder.driver != "docker":
            platforms = plans[0].platforms if plans else ()
            if len(platforms) > 1:
                raise ConfigError(
                    "--load takes a single-platform image; docker cannot load an index",
                    hint="pass one --platform with --load, or --push the multi-platform image",
                )


def _node_outputs(
    outputs: Sequence[OutputSpec], *, multi_node: bool, driver: str, scratch: Path
) -> tuple[tuple[OutputSpec, ...], Path | None]:
    """Outputs for one node's solve, and the tarball path to load into docker afterwards."""
    result: list[OutputSpec] = []
    load_file: Path | None = None
    for output in outputs:
        if driver == "docker" and (_is_load(output) or output.type == "image"):
            # The engine's exporter ("moby") stores the image in the engine, so --load is free;
            # with push=true it pushes too.
            result.append(OutputSpec(type="moby", attrs=dict(output.attrs)))
            continue
        if _is_load(output):
            load_file = scratch / "load.tar"
            output = dataclasses.replace(output, dest=str(load_file))
        elif multi_node and _is_push(output):
            output = _by_digest(output)
        result.append(output)
    return tuple(result), load_file


def _with_default_load(
    spec: BuildSpec, active: ActiveBuilder, plans: Sequence[NodePlan]
) -> BuildSpec:
    if spec.outputs or len(plans) != 1:
        return spec
    if not active.driver(plans[0].node).features.default_load:
        return spec
    attrs = {"name": ",".join(spec.tags)} if spec.tags else {}
    return dataclasses.replace(spec, outputs=(OutputSpec(type="docker", attrs=attrs),), load=True)


# -- the job ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _SolveContext:
    """What every node's solve in one run shares besides the spec."""

    scratch: Path
    progress: ProgressSink | None
    attachables: Sequence[Attachable]
    cache: control_pb2.CacheOptions | None
    extra_frontend_attrs: Mapping[str, str] | None
    surroundings: Surroundings


class _LockedProgress:
    """Nodes solve concurrently; progress writers are not thread-safe."""

    def __init__(self, inner: ProgressSink) -> None:
        self._inner = inner
        self._lock = threading.Lock()

    def write(self, status: control_pb2.StatusResponse) -> None:
        with self._lock:
            self._inner.write(status)


def _plan(spec: BuildSpec, active: ActiveBuilder) -> tuple[BuildSpec, list[NodePlan]]:
    """Assign platforms to nodes and check the combination, starting only the nodes needed.

    When every platform is pinned (or there is one node) the plan needs no daemon, so mistakes
    are reported before anything starts; otherwise all nodes start to report their platforms.
    """
    nodes = active.spec.nodes
    detect = needs_detection(spec.platforms, nodes)
    if detect:
        active.boot()
    plans = plan(spec.platforms, nodes, active.platforms if detect else None)
    spec = _with_default_load(spec, active, plans)
    _check_features(active, plans)
    _check_outputs(spec, plans, active.spec)
    active.boot([p.node for p in plans])
    return spec, plans


def _load_into_docker(tarball: Path) -> None:
    import docker
    import docker.errors

    try:
        client = docker.from_env()
        with tarball.open("rb") as handle:
            client.api.load_image(handle)
    except docker.errors.DockerException as exc:
        raise PybuildxError(
            f"loading the image into Docker failed: {exc}",
            hint="check DOCKER_HOST and that the Docker Engine runs",
        ) from None


def _merge(
    builds: Sequence[NodeBuild],
    outputs: Sequence[OutputSpec],
    registry_auths: Sequence[str],
    surroundings: Surroundings,
) -> str:
    from pybuildx.images import merge_index

    insecure = any(
        o.attrs.get("registry.insecure", "false").lower() in _TRUE for o in outputs if _is_push(o)
    )
    return merge_index(
        [b.result for b in builds],
        _push_names(outputs),
        insecure=insecure,
        registry_auths=registry_auths,
        extra_credentials=surroundings.registry_credentials,
    )


def _solve_all(
    spec: BuildSpec,
    active: ActiveBuilder,
    plans: Sequence[NodePlan],
    ctx: _SolveContext,
) -> tuple[list[NodeBuild], list[Path]]:
    multi_node = len(plans) > 1
    progress = ctx.progress
    sink = _LockedProgress(progress) if progress is not None and multi_node else progress
    loads: list[Path] = []
    jobs: list[Job[NodeBuild]] = []
    for index, node_plan in enumerate(plans):
        node = active.spec.nodes[node_plan.node]
        node_dir = ctx.scratch / str(index)
        node_dir.mkdir(mode=0o700)
        outputs, load_file = _node_outputs(
            spec.outputs, multi_node=multi_node, driver=node.driver, scratch=node_dir
        )
        if load_file is not None:
            loads.append(load_file)

        def work(
            node_plan: NodePlan = node_plan,
            node: NodeSpec = node,
            outputs: tuple[OutputSpec, ...] = outputs,
        ) -> NodeBuild:
            result = build(
                active.channel(node_plan.node),
                spec,
                platforms=node_plan.platforms or None,
                attachables=ctx.attachables,
                progress=sink,
                multi_platform=multi_node,
                outputs=outputs,
                extra_frontend_attrs=ctx.extra_frontend_attrs,
                cache=ctx.cache,
                target=node.name,
                surroundings=ctx.surroundings,
            )
            return NodeBuild(node.name, node_plan.platforms, result)

        jobs.append(Job(f"solve-{node.name}", work))
    # A failed node cancels the others' solves instead of letting them run to the end.
    builds = run_all(jobs, on_first_error=active.close_channels)
    return builds, loads


def run(
    spec: BuildSpec,
    builder: str | None = None,
    *,
    store: Store | None = None,
    progress: ProgressSink | None = None,
    attachables: Sequence[Attachable] = (),
    cache: control_pb2.CacheOptions | None = None,
    extra_frontend_attrs: Mapping[str, str] | None = None,
    surroundings: Surroundings | None = None,
) -> PipelineResult:
    """Build ``spec`` on ``builder`` (see the module docstring) and clean up after.

    ``surroundings``: what the place it runs in adds to every build (secret masking, cache
    defaults, registry logins).
    """
    store = store or Store()
    builder_spec, ephemeral = _select_builder(builder, store)
    with _signals(_raise_terminated):
        active = ActiveBuilder(builder_spec, ephemeral=ephemeral, store=store)
        scratch = Path(tempfile.mkdtemp(prefix="pybuildx-run-"))
        try:
            ctx = _SolveContext(
                scratch=scratch,
                progress=progress,
                attachables=attachables,
                cache=cache,
                extra_frontend_attrs=extra_frontend_attrs,
                surroundings=surroundings or Surroundings(),
            )
            return _run_on(spec, active, ctx)
        except Terminated as exc:
            _log.warning("%s received: cancelling the build and removing what it started", exc)
            raise
        finally:
            with _signals(_note_only):
                active.close()
                shutil.rmtree(scratch, ignore_errors=True)


def _run_on(spec: BuildSpec, active: ActiveBuilder, ctx: _SolveContext) -> PipelineResult:
    spec, plans = _plan(spec, active)
    builds, loads = _solve_all(spec, active, plans, ctx)
    for tarball in loads:
        _load_into_docker(tarball)
    names = _push_names(spec.outputs)
    if len(builds) > 1 and names:
        digest = _merge(builds, spec.outputs, spec.registry_auths, ctx.surroundings)
        response = {"containerimage.digest": digest, "image.name": ",".join(names)}
        return PipelineResult(active.spec.name, tuple(builds), digest, response)
    first = builds[0].result
    return PipelineResult(
        active.spec.name, tuple(builds), first.digest, dict(first.exporter_response)
    )
