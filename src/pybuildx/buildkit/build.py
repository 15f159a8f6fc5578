"""``build()``: one Dockerfile build (one Solve) on one daemon, with its session and progress.

Order matters: the session stream is opened first (the daemon waits only ~5 s for it), then
Solve, then Status right after it (the daemon waits only ~6 s for a job with that Ref).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import grpc

from pybuildx.buildkit._pb import control_pb2
from pybuildx.buildkit.control import ControlClient, DaemonInfo, control_stub
from pybuildx.buildkit.directsync import DirectSyncSession
from pybuildx.buildkit.extras import Surroundings, build_extras
from pybuildx.buildkit.filesend import FileSendAttachable, output_targets
from pybuildx.buildkit.filesync import FileSyncAttachable, LocalSource
from pybuildx.buildkit.session import Attachable, Session, new_id
from pybuildx.buildkit.solve import (
    CONTEXT_LOCAL,
    DOCKERFILE_LOCAL,
    named_context_locals,
    solve_request,
)
from pybuildx.buildkit.status_errors import describe_failure, from_rpc_error
from pybuildx.buildkit.upload import UploadAttachable
from pybuildx.buildkit.upload_ledger import UploadLedger, upload_ledger
from pybuildx.buildspec import BuildSpec, OutputSpec
from pybuildx.config import Platform
from pybuildx.errors import BuildFailed, ConfigError, DaemonError

__all__ = ["BuildResult", "ProgressSink", "build", "prepared_locals"]

# After Solve returns, the Go client reads Status for at most 5 s more.
_STATUS_DRAIN_S = 5.0

_DIRECT_LOCALS = (CONTEXT_LOCAL, DOCKERFILE_LOCAL)
KEY_DIGEST = "containerimage.digest"
KEY_DESCRIPTOR = "containerimage.descriptor"
KEY_IMAGE_NAME = "image.name"


class ProgressSink(Protocol):
    """What ``build()`` needs from a progress writer (``buildkit.progress``)."""

    def write(self, status: control_pb2.StatusResponse) -> None: ...


@dataclass(frozen=True)
class BuildResult:
    """What the daemon answered: its exporter response and the image it describes, if any."""

    exporter_response: Mapping[str, str] = field(default_factory=dict)
    ref: str = ""
    """The Solve's job id (also the daemon's build history key)."""

    @property
    def digest(self) -> str | None:
        """Digest of the image manifest or index (image, oci, docker exporters)."""
        return self.exporter_response.get(KEY_DIGEST) or None

    @property
    def image_names(self) -> tuple[str, ...]:
        names = self.exporter_response.get(KEY_IMAGE_NAME, "")
        return tuple(n for n in names.split(",") if n)

    @property
    def descriptor(self) -> dict[str, Any] | None:
        """The OCI descriptor of the result (BuildKit sends it as base64 of JSON)."""
        raw = self.exporter_response.get(KEY_DESCRIPTOR)
        if not raw:
            return None
        try:
            value = json.loads(base64.b64decode(raw))
        except (binascii.Error, ValueError):
            return None
        return value if isinstance(value, dict) else None


def _private_dir(stack: contextlib.ExitStack, prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o700)
    stack.callback(shutil.rmtree, path, ignore_errors=True)
    return path


@contextlib.contextmanager
def prepared_locals(spec: BuildSpec) -> Iterator[dict[str, Path]]:
    """The local directories the session serves: local name → directory.

    A Dockerfile from stdin is written 0600 into a private 0700 directory (wiped afterwards);
    so is an empty directory standing in for a missing context.
    """
    with contextlib.ExitStack() as stack:
        dirs: dict[str, Path] = {}
        if spec.context is not None:
            dirs[CONTEXT_LOCAL] = spec.context
        elif spec.context_tar is None:
            dirs[CONTEXT_LOCAL] = _private_dir(stack, "pybuildx-empty-context-")
        if spec.dockerfile_text is not None:
            holder = _private_dir(stack, "pybuildx-dockerfile-")
            target = holder / spec.dockerfile_name
            with open(target, "xb", opener=_open_private) as handle:
                handle.write(spec.dockerfile_text)
            dirs[DOCKERFILE_LOCAL] = holder
        elif spec.dockerfile is not None:
            dirs[DOCKERFILE_LOCAL] = spec.dockerfile.parent
        for name, local in named_context_locals(spec).items():
            dirs[local] = spec.local_named_contexts[name]
        yield dirs


def _open_private(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


def _upload_context(spec: BuildSpec) -> tuple[list[Attachable], dict[str, str]]:
    """For a context archive: the Upload service offering it, and the attrs pointing at it."""
    if spec.context_tar is None:
        return [], {}
    upload = UploadAttachable()
    attrs = {"context": upload.add(spec.context_tar)}
    if spec.dockerfile is not None or spec.dockerfile_text is not None:
        # Read the Dockerfile from our local, not from inside the archive.
        attrs["dockerfilekey"] = DOCKERFILE_LOCAL
    return [upload], attrs


def _supports_several_exporters(info: DaemonInfo | None) -> bool:
    """BuildKit reads ``SolveRequest.Exporters`` since v0.13; older daemons (and Docker's, whose
    ``Info`` is missing) use only the first exporter, silently."""
    if info is None:
        return False
    match = re.match(r"v?(\d+)\.(\d+)", info.version)
    if match is None:
        return True
    major, minor = int(match.group(1)), int(match.group(2))
    return (major, minor) >= (0, 13) or (major, minor) == (0, 0)  # v0.0.0: a dev build


def _check_exporter_support(channel: grpc.Channel, outputs: Sequence[OutputSpec]) -> None:
    if len(outputs) <= 1:
        return
    info = ControlClient(channel).info()
    if not _supports_several_exporters(info):
        version = info.version if info is not None else "before v0.11"
        raise ConfigError(
            f"this BuildKit ({version}) exports one output per build, {len(outputs)} were asked",
            hint="pass a single -o/--push/--load, or use BuildKit v0.13 or newer",
        )


def _check_outputs(outputs: Sequence[OutputSpec]) -> None:
    for output in outputs:
        if output.to_client and output.dest is None:
            raise ConfigError(
                f"the {output.type} output has nowhere to go on this builder",
                hint="--load needs a builder whose driver loads images (docker); "
                "or write -o type=docker,dest=FILE",
            )


def _file_attachables(
    dirs: Mapping[str, Path],
    outputs: Sequence[OutputSpec],
    stack: contextlib.ExitStack,
    ledger: UploadLedger | None = None,
) -> list[Attachable]:
    found: list[Attachable] = [
        FileSyncAttachable({n: LocalSource(path=d) for n, d in dirs.items()}, ledger=ledger)
    ]
    if any(o.to_client for o in outputs):
        found.append(FileSendAttachable(stack.enter_context(output_targets(outputs))))
    return found


class _StatusReader:
    """Reads ``Control.Status`` for ``ref`` on a thread, feeding every message to ``progress``."""

    def __init__(self, channel: grpc.Channel, ref: str, progress: ProgressSink | None) -> None:
        self._call = control_stub(channel).Status(control_pb2.StatusRequest(Ref=ref))
        self._progress = progress
        self.error: str | None = None  # see DirectSyncSession.error
        self._thread = threading.Thread(target=self._run, name="bk-status", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for message in self._call:
                if self._progress is not None:
                    self._progress.write(message)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                self.error = describe_failure(exc)
        except Exception as exc:  # a progress writer bug must not hang the build
            self.error = describe_failure(exc)

    def finish(self, timeout: float = _STATUS_DRAIN_S) -> None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._call.cancel()
            self._thread.join(timeout)


def build(
    channel: grpc.Channel,
    spec: BuildSpec,
    *,
    platforms: Sequence[Platform] | None = None,
    attachables: Sequence[Attachable] = (),
    progress: ProgressSink | None = None,
    multi_platform: bool = False,
    outputs: Sequence[OutputSpec] | None = None,
    extra_frontend_attrs: Mapping[str, str] | None = None,
    cache: control_pb2.CacheOptions | None = None,
    shared_key: str | None = None,
    target: str = "",
    surroundings: Surroundings | None = None,
) -> BuildResult:
    """Run one Solve of ``spec`` on the daemon behind ``channel`` and wait for all exports.

    ``platforms`` overrides ``spec.platforms`` (the pipeline plans platforms per node);
    ``outputs`` overrides ``spec.outputs`` (e.g. push-by-digest per node, a temp file for
    ``--load``). ``attachables`` add session services (auth, secrets, ssh, content stores).
    ``surroundings``: what the place it runs in adds (secret masking, cache defaults, logins).
    Raises ``BuildFailed`` when the build fails, ``ConnectError`` when the daemon is unreachable.
    """
    requested = tuple(spec.outputs if outputs is None else outputs)
    _check_outputs(requested)
    _check_exporter_support(channel, requested)
    ref = new_id()
    with contextlib.ExitStack() as stack:
        extras, chosen_outputs = stack.enter_context(
            build_extras(spec, requested, surroundings=surroundings)
        )
        dirs = stack.enter_context(prepared_locals(spec))
        # Incremental context upload that is never stale (see upload_ledger); without a ledger
        # (busy, or an explicit key) a reused key could serve old content of same-size files.
        ledger = (
            stack.enter_context(upload_ledger(channel, spec.context))
            if shared_key is None and spec.context is not None
            else None
        )
        uploads, upload_attrs = _upload_context(spec)
        services = [
            *_file_attachables(dirs, chosen_outputs, stack, ledger),
            *uploads,
            *extras.attachables,
            *attachables,
        ]
        session_key = shared_key or (ledger.shared_key if ledger is not None else new_id())
        session = Session(channel, services, shared_key=session_key)
        stack.enter_context(session)
        # Context and Dockerfile also travel in a session of their own, spoken directly, with far
        # fewer hand-offs per file (see directsync); daemons that ignore local-sessionid use the
        # FileSync of the general session instead.
        files = stack.enter_context(
            DirectSyncSession(
                channel,
                {n: LocalSource(path=dirs[n]) for n in _DIRECT_LOCALS if n in dirs},
                ledger=ledger,
                shared_key=session_key,
            )
        )
        request = solve_request(
            spec,
            ref=ref,
            session_id=session.id,
            platforms=platforms,
            multi_platform=multi_platform,
            outputs=chosen_outputs,
            extra_frontend_attrs={
                **files.frontend_attrs(),
                **upload_attrs,
                **extras.frontend_attrs,
                **(extra_frontend_attrs or {}),
            },
            cache=cache if cache is not None else extras.cache,
        )
        solve = control_stub(channel).Solve.future(request)
        status = _StatusReader(channel, ref, progress)
        try:
            response = solve.result()
        except grpc.RpcError as error:
            status.finish()
            failure = from_rpc_error(error, action="build", target=target)
            if isinstance(failure, BuildFailed):
                raise extras.failure(failure.message) or failure from None
            raise failure from None
        except BaseException:
            solve.cancel()
            status.finish(timeout=1.0)
            raise
        status.finish()
        extras.finish(response.ExporterResponse)
    if status.error is not None and not isinstance(status.error, grpc.RpcError):
        raise DaemonError(f"showing build progress failed: {status.error}")
    return BuildResult(exporter_response=dict(response.ExporterResponse), ref=ref)
