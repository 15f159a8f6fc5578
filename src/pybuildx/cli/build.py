"""``ci-build build``: a Dockerfile build with buildx-like flags.

With ``--builder-addr`` (or ``BUILDKIT_HOST``) the build runs directly on that daemon; otherwise
the pipeline resolves the builder (``--builder``), plans platforms to its nodes and merges.
"""

from __future__ import annotations

import gzip
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, BinaryIO

import typer

from pybuildx.errors import ConfigError

if TYPE_CHECKING:
    from pybuildx.buildkit.extras import Surroundings
    from pybuildx.buildkit.progress import ProgressWriter
    from pybuildx.buildspec import BuildSpec
    from pybuildx.transport.channel import TLSFiles

__all__ = ["register"]

_READY_TIMEOUT_S = 20.0


class _Stdin:
    """What ``-`` read from standard input: a Dockerfile (bytes) or a context archive (a 0600
    file in a private 0700 directory, removed by ``close``)."""

    def __init__(self, context: str, file: str | None) -> None:
        self.text: bytes | None = None
        self.archive: Path | None = None
        self._dir: Path | None = None
        if context != "-" and file != "-":
            return
        if sys.stdin.isatty():
            self.text = b""
            return
        stream = sys.stdin.buffer
        head = stream.read(512)
        if context == "-" and _looks_like_archive(head):
            self._spool(head, stream)
        else:
            self.text = head + stream.read()

    def _spool(self, head: bytes, stream: BinaryIO) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="pybuildx-stdin-"))
        self._dir.chmod(0o700)
        self.archive = self._dir / "context.tar"
        from pybuildx.buildkit.upload import needs_compression

        fd = os.open(self.archive, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as raw:
            out: BinaryIO = raw
            if needs_compression(head):
                out = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1)  # type: ignore[assignment]
            with out:
                out.write(head)
                shutil.copyfileobj(stream, out, 1 << 20)

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)


def _looks_like_archive(head: bytes) -> bool:
    from pybuildx.buildkit.upload import is_archive

    return is_archive(head)


def _progress(mode: str) -> ProgressWriter:
    from pybuildx.buildkit.progress import make_progress

    return make_progress(mode, sys.stderr)


def _quiet_grpc() -> None:
    # gRPC's C core logs TLS failures to stderr itself (read once, when grpc is imported); we
    # print one line with a hint instead.
    if os.environ.get("PYBUILDX_DEBUG") != "1":
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")


def _tls_files(cacert: Path | None, cert: Path | None, key: Path | None) -> TLSFiles | None:
    if cacert is None and cert is None and key is None:
        return None
    from pybuildx.transport.channel import TLSFiles

    return TLSFiles(ca=cacert, cert=cert, key=key)


def _surroundings() -> Surroundings:
    """What the CI this runs in adds to builds: secret masking, type=gha cache defaults and
    registry logins (read once, here; the layers below read no CI variables)."""
    from pybuildx import ci
    from pybuildx.buildkit.extras import Surroundings

    found = ci.detect(os.environ)
    return Surroundings(
        mask_secrets=found.mask_secrets,
        gha_cache=found.gha_cache,
        registry_credentials=found.registry_credentials,
    )


def _write_outputs(spec: BuildSpec, response: Mapping[str, str], build_ref: str) -> None:
    """--metadata-file and --iidfile, written only after a successful build.

    ``build_ref`` is ``<builder>/<node>/<solve ref>``, the metadata key buildx writes as
    ``buildx.build.ref`` (CI actions link build records with it); empty for --builder-addr.
    """
    from pybuildx.images.metadata import write_build_outputs

    extra = {"buildx.build.ref": build_ref} if build_ref else None
    write_build_outputs(spec.metadata_file, spec.iidfile, response, extra)


def _direct(
    spec: BuildSpec,
    address: str,
    tls: TLSFiles | None,
    servername: str | None,
    surroundings: Surroundings,
) -> str | None:
    """Build on one daemon; returns the image digest when the exporters produced one."""
    from pybuildx.buildkit.build import build
    from pybuildx.buildkit.control import wait_ready
    from pybuildx.transport.channel import describe_target, open_channel

    target = describe_target(address)
    channel = open_channel(address, tls, servername)
    try:
        wait_ready(channel, _READY_TIMEOUT_S, target=target)
        progress = _progress(spec.progress)
        try:
            result = build(
                channel, spec, progress=progress, target=target, surroundings=surroundings
            )
        finally:
            progress.close()
    finally:
        channel.close()
    _write_outputs(spec, result.exporter_response, build_ref="")  # no builder: no builder ref
    return result.digest


def _via_pipeline(spec: BuildSpec, builder: str | None, surroundings: Surroundings) -> str | None:
    from pybuildx import pipeline

    progress = _progress(spec.progress)
    try:
        result = pipeline.run(spec, builder=builder, progress=progress, surroundings=surroundings)
    finally:
        progress.close()
    first = result.builds[0] if result.builds else None
    build_ref = f"{result.builder}/{first.node}/{first.result.ref}" if first else ""
    _write_outputs(spec, result.exporter_response, build_ref)
    return result.digest


def build_command(
    path: Annotated[
        str, typer.Argument(help="Build context directory, or - (Dockerfile on stdin).")
    ] = ".",
    file: Annotated[
        str | None, typer.Option("--file", "-f", help="Dockerfile path (- reads stdin).")
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", "-t", help="Image name; repeatable.")
    ] = None,
    target: Annotated[str | None, typer.Option("--target", help="Stage to build.")] = None,
    build_arg: Annotated[
        list[str] | None, typer.Option("--build-arg", help="KEY=VALUE build argument.")
    ] = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", help="KEY=VALUE image label.")
    ] = None,
    platform: Annotated[
        list[str] | None,
        typer.Option("--platform", help="Target platforms, e.g. linux/amd64,linux/arm64."),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Do not use the build cache.")
    ] = False,
    no_cache_filter: Annotated[
        list[str] | None, typer.Option("--no-cache-filter", help="Stages not to cache.")
    ] = None,
    add_host: Annotated[
        list[str] | None, typer.Option("--add-host", help="HOST=IP entry for /etc/hosts.")
    ] = None,
    network: Annotated[
        str | None, typer.Option("--network", help="Network for RUN: default, none, host.")
    ] = None,
    shm_size: Annotated[
        str | None, typer.Option("--shm-size", help="/dev/shm size, e.g. 128m.")
    ] = None,
    ulimit: Annotated[list[str] | None, typer.Option("--ulimit", help="NAME=SOFT[:HARD].")] = None,
    build_context: Annotated[
        list[str] | None,
        typer.Option("--build-context", help="NAME=DIR or NAME=docker-image://REF."),
    ] = None,
    output: Annotated[
        list[str] | None,
        typer.Option("--output", "-o", help="type=local|tar|oci|docker|image|registry,dest=..."),
    ] = None,
    push: Annotated[
        bool, typer.Option("--push", help="Push the image (-o type=registry).")
    ] = False,
    load: Annotated[bool, typer.Option("--load", help="Load the image into Docker.")] = False,
    progress: Annotated[
        str, typer.Option("--progress", help="auto, tty, plain, rawjson or quiet.")
    ] = "auto",
    secret: Annotated[
        list[str] | None, typer.Option("--secret", help="id=ID[,src=FILE|env=VAR].")
    ] = None,
    ssh: Annotated[list[str] | None, typer.Option("--ssh", help="default|ID[=SOCKET|KEY].")] = None,
    cache_from: Annotated[
        list[str] | None,
        typer.Option("--cache-from", help="Cache import, e.g. type=registry,ref=."),
    ] = None,
    cache_to: Annotated[
        list[str] | None, typer.Option("--cache-to", help="Cache export, e.g. type=registry,ref=.")
    ] = None,
    provenance: Annotated[
        str | None, typer.Option("--provenance", help="true, false or mode=min|max.")
    ] = None,
    sbom: Annotated[str | None, typer.Option("--sbom", help="true, false or generator=...")] = None,
    attest: Annotated[
        list[str] | None, typer.Option("--attest", help="type=provenance|sbom[,...].")
    ] = None,
    annotation: Annotated[
        list[str] | None, typer.Option("--annotation", help="KEY=VALUE image annotation.")
    ] = None,
    metadata_file: Annotated[
        str | None, typer.Option("--metadata-file", help="Write build results as JSON here.")
    ] = None,
    iidfile: Annotated[
        str | None, typer.Option("--iidfile", help="Write the image id here.")
    ] = None,
    allow: Annotated[
        list[str] | None, typer.Option("--allow", help="Entitlement, e.g. network.host.")
    ] = None,
    registry_auth: Annotated[
        list[str] | None,
        typer.Option(
            "--registry-auth",
            help="registry=HOST,username=USER,password-env=VAR|password-file=PATH.",
        ),
    ] = None,
    builder: Annotated[
        str | None,
        typer.Option("--builder", envvar=["PYBUILDX_BUILDER", "BUILDX_BUILDER"], help="Builder."),
    ] = None,
    builder_addr: Annotated[
        str | None,
        typer.Option(
            "--builder-addr",
            help="Build directly on this daemon: unix:///path or tcp://HOST:PORT "
            "(default: $BUILDKIT_HOST unless --builder is given).",
        ),
    ] = None,
    tls_cacert: Annotated[
        Path | None, typer.Option("--tls-cacert", help="CA that signed the daemon's certificate.")
    ] = None,
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", help="Client certificate.")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="Client key.")] = None,
    tls_servername: Annotated[
        str | None, typer.Option("--tls-servername", help="Name in the daemon's certificate.")
    ] = None,
) -> None:
    """Build an image from a Dockerfile."""
    _quiet_grpc()
    from pybuildx.buildspec import parse_build_flags

    stdin = _Stdin(path, file)
    try:
        spec = parse_build_flags(
            context=path,
            file=file,
            tags=tag or (),
            target=target,
            build_args=build_arg or (),
            labels=label or (),
            platforms=platform or (),
            no_cache=no_cache,
            no_cache_filter=no_cache_filter or (),
            add_hosts=add_host or (),
            network=network,
            shm_size=shm_size,
            ulimits=ulimit or (),
            build_contexts=build_context or (),
            outputs=output or (),
            push=push,
            load=load,
            progress=progress,
            secrets=secret or (),
            ssh=ssh or (),
            cache_from=cache_from or (),
            cache_to=cache_to or (),
            attests=attest or (),
            provenance=provenance,
            sbom=sbom,
            annotations=annotation or (),
            metadata_file=metadata_file,
            iidfile=iidfile,
            allow=allow or (),
            registry_auths=registry_auth or (),
            stdin=stdin.text,
            context_tar=stdin.archive,
            environ=os.environ,
        )
        tls = _tls_files(tls_cacert, tls_cert, tls_key)
        if spec.iidfile is not None:  # as buildx: no stale image id survives a failed build
            spec.iidfile.unlink(missing_ok=True)
        if builder_addr is None and builder is None:
            builder_addr = os.environ.get("BUILDKIT_HOST") or None
        surroundings = _surroundings()
        if builder_addr:
            if builder:
                raise ConfigError("pass either --builder or --builder-addr, not both")
            digest = _direct(spec, builder_addr, tls, tls_servername, surroundings)
        else:
            if tls is not None or tls_servername:
                raise ConfigError("--tls-* options need --builder-addr")
            digest = _via_pipeline(spec, builder, surroundings)
    finally:
        stdin.close()
    if digest:
        to_stdout = not any(o.dest == "-" for o in spec.outputs)
        typer.echo(digest, err=not to_stdout)


def register(app: typer.Typer) -> None:
    app.command("build", no_args_is_help=False)(build_command)
