"""``BuildSpec``: everything ``ci-build build`` accepts, validated, as one frozen value.

The CLI, the GitHub action and the GitLab templates all end up calling ``parse_build_flags`` with
the raw strings users wrote, so the same mistakes get the same one-line errors everywhere.
Options implemented by other modules (secrets, ssh, cache, attestations) are kept here as the
raw strings users gave; those modules parse them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pybuildx.config import (
    Platform,
    parse_csv_options,
    parse_key_value,
    parse_platforms,
    reject_unknown,
)
from pybuildx.errors import ConfigError, UsageError

__all__ = [
    "OUTPUT_TYPES",
    "PROGRESS_MODES",
    "BuildSpec",
    "OutputSpec",
    "parse_add_host",
    "parse_build_flags",
    "parse_output",
    "parse_size",
    "parse_ulimit",
]

OUTPUT_TYPES = ("local", "tar", "oci", "docker", "image", "registry", "cacheonly")
PROGRESS_MODES = ("auto", "tty", "plain", "rawjson", "quiet")
NETWORK_MODES = ("default", "none", "host")
STDOUT = "-"

_NEEDS_DEST = ("local", "tar", "oci")
_IMAGE_LIKE = ("image", "docker", "oci")
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_ULIMIT_NAMES = (
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
)
_CONTEXT_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.:/@-]*$")
_REMOTE_CONTEXT_PREFIXES = (
    "docker-image://",
    "git://",
    "git@",
    "https://",
    "http://",
    "oci-layout://",
)


@dataclass(frozen=True, kw_only=True)
class OutputSpec:
    """One exporter: its BuildKit type and attributes, and where the client writes the result.

    ``dest`` is client-side only: a directory (local), a file (tar, oci, docker), ``-`` for
    stdout, or None when nothing comes back (image push, cacheonly, or ``--load``).
    """

    type: str
    attrs: Mapping[str, str] = field(default_factory=dict)
    dest: str | None = None

    @property
    def to_client(self) -> bool:
        """Whether the daemon sends this output back over the session (FileSend)."""
        return self.type in ("local", "tar", "oci", "docker")


@dataclass(frozen=True, kw_only=True)
class BuildSpec:
    """A validated ``ci-build build`` invocation. Paths are absolute."""

    context: Path | None
    """The context directory; None for an empty context or a tarball (``ci-build build -``)."""
    context_tar: Path | None = None
    """A context archive (tar, optionally compressed) that came on stdin, spooled to a file."""
    dockerfile: Path | None = None
    """The Dockerfile on disk; None when it came from stdin (``dockerfile_text``)."""
    dockerfile_text: bytes | None = None
    tags: tuple[str, ...] = ()
    target: str | None = None
    build_args: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    platforms: tuple[Platform, ...] = ()
    no_cache: bool = False
    no_cache_filter: tuple[str, ...] = ()
    add_hosts: tuple[tuple[str, str], ...] = ()
    network: str | None = None
    shm_size: int | None = None
    ulimits: tuple[str, ...] = ()
    build_contexts: Mapping[str, str] = field(default_factory=dict)
    """Named contexts: name → absolute local directory, or a remote ref (docker-image://, ...)."""
    outputs: tuple[OutputSpec, ...] = ()
    push: bool = False
    load: bool = False
    progress: str = "auto"
    # Parsed by the modules that implement them (secrets, sshforward, cache, attest, ...).
    secrets: tuple[str, ...] = ()
    ssh: tuple[str, ...] = ()
    cache_from: tuple[str, ...] = ()
    cache_to: tuple[str, ...] = ()
    attests: tuple[str, ...] = ()
    provenance: str | None = None
    sbom: str | None = None
    annotations: tuple[str, ...] = ()
    metadata_file: Path | None = None
    iidfile: Path | None = None
    allow: tuple[str, ...] = ()
    registry_auths: tuple[str, ...] = ()
    """``--registry-auth`` values (parsed by ``pybuildx.credentials``)."""

    @property
    def dockerfile_name(self) -> str:
        """The Dockerfile's name inside the ``dockerfile`` local (the frontend's ``filename``)."""
        return self.dockerfile.name if self.dockerfile is not None else "Dockerfile"

    @property
    def local_named_contexts(self) -> dict[str, Path]:
        """Named contexts backed by local directories (served over the session)."""
        return {
            name: Path(value)
            for name, value in self.build_contexts.items()
            if not value.startswith(_REMOTE_CONTEXT_PREFIXES)
        }


def parse_size(text: str, *, what: str) -> int:
    """``64m``, ``1g``, ``1024`` → bytes (binary units, as Docker's RAMInBytes)."""
    match = _SIZE_RE.match(text)
    if not match:
        raise ConfigError(f"invalid {what} {text!r}", hint="write a size like 64m, 1g or 1048576")
    number, unit = float(match.group(1)), match.group(2).lower()
    return int(number * _SIZE_UNITS[unit])


def parse_ulimit(text: str) -> str:
    """Validate ``name=soft[:hard]`` and return it normalised (the frontend's syntax)."""
    name, sep, limits = text.partition("=")
    name = name.strip().lower()
    soft, _, hard = limits.partition(":")
    if not sep or name not in _ULIMIT_NAMES:
        raise ConfigError(
            f"invalid ulimit {text!r}",
            hint=f"write NAME=SOFT[:HARD] with NAME one of {', '.join(_ULIMIT_NAMES)}",
        )
    for value in (soft, hard) if hard else (soft,):
        if not value.lstrip("-").isdigit():
            raise ConfigError(f"invalid ulimit {text!r}: {value!r} is not a number")
    return f"{name}={soft}:{hard}" if hard else f"{name}={soft}"


def parse_add_host(text: str) -> tuple[str, str]:
    """``host=ip`` or ``host:ip`` (as buildx) → (host, ip)."""
    host, sep, ip = text.partition("=")
    if not sep:
        host, sep, ip = text.partition(":")
    try:
        ipaddress.ip_address(ip.strip("[]"))
    except ValueError:
        raise ConfigError(
            f"invalid --add-host {text!r}", hint="write HOST=IP, for example db=10.0.0.5"
        ) from None
    if not host:
        raise ConfigError(f"invalid --add-host {text!r}: no host name")
    return host, ip.strip("[]")


def parse_output(text: str) -> OutputSpec:
    """Parse one ``-o`` value: ``type=...,dest=...``, a bare path (local), or ``-`` (tar)."""
    if text.strip() == STDOUT:
        return OutputSpec(type="tar", dest=STDOUT)
    if "=" not in text:
        return OutputSpec(type="local", dest=text)
    attrs = parse_csv_options(text, what="output")
    kind = attrs.pop("type", "")
    if not kind:
        raise ConfigError(f"output {text!r} has no type", hint="write type=local,dest=DIR")
    if kind not in OUTPUT_TYPES:
        reject_unknown([kind], OUTPUT_TYPES, what="output type")
    dest = attrs.pop("dest", None)
    if kind == "registry":
        kind = "image"
        attrs["push"] = "true"
    if kind in _NEEDS_DEST and not dest:
        raise ConfigError(
            f"output type {kind} needs dest=",
            hint=f"write type={kind},dest={'DIR' if kind == 'local' else 'FILE'} (or dest=-)",
        )
    if kind == "local" and dest == STDOUT:
        raise ConfigError("a local output cannot go to stdout", hint="use type=tar,dest=-")
    if kind in ("image", "cacheonly") and dest:
        raise ConfigError(f"output type {kind} takes no dest=")
    return OutputSpec(type=kind, attrs=attrs, dest=dest)


def _absolute(path: str) -> Path:
    return Path(path).expanduser().absolute()


def _key_values(values: Iterable[str], what: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for value in values:
        key, val = parse_key_value(value, what=what)
        result[key] = val
    return result


def _build_args(values: Iterable[str], environ: Mapping[str, str]) -> dict[str, str]:
    result: dict[str, str] = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not key:
            raise ConfigError(f"invalid build arg {value!r}", hint="write KEY=VALUE")
        if sep:
            result[key] = val
        elif key in environ:  # docker build: a bare KEY takes its value from the environment
            result[key] = environ[key]
    return result


def _named_contexts(values: Iterable[str], base: Path) -> dict[str, str]:
    result: dict[str, str] = {}
    for value in values:
        name, source = parse_key_value(value, what="build context")
        if not _CONTEXT_NAME_RE.match(name):
            raise ConfigError(f"invalid build context name {name!r}")
        if source.startswith(_REMOTE_CONTEXT_PREFIXES):
            result[name] = source
            continue
        directory = (base / source).absolute() if not Path(source).is_absolute() else Path(source)
        if not directory.is_dir():
            raise UsageError(
                f"build context {name!r}: {source!r} is not a directory",
                hint="named contexts are directories or docker-image://, git or https refs",
            )
        result[name] = str(directory)
    return result


def _dockerfile(
    file: str | None, context: Path, stdin: bytes | None
) -> tuple[Path | None, bytes | None]:
    if file == STDOUT:
        if not stdin:
            raise UsageError("-f - reads the Dockerfile from stdin, but stdin is empty")
        return None, stdin
    path = _absolute(file) if file else context / "Dockerfile"
    if file is None and not path.exists() and (context / "dockerfile").exists():
        path = context / "dockerfile"
    if not path.is_file():
        raise UsageError(
            f"Dockerfile not found: {str(path)!r}",
            hint="pass -f PATH, or put a Dockerfile in the build context",
        )
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise UsageError(f"cannot read the Dockerfile {str(path)!r}: {exc.strerror}") from None
    return path, None


def _outputs(
    raw: Sequence[str], *, push: bool, load: bool, tags: Sequence[str]
) -> tuple[OutputSpec, ...]:
    outputs = [parse_output(text) for text in raw]
    if push:
        pushed = [o for o in outputs if o.type == "image"]
        if pushed:
            outputs = [
                OutputSpec(type=o.type, attrs={**o.attrs, "push": "true"}, dest=o.dest)
                if o.type == "image"
                else o
                for o in outputs
            ]
        else:
            outputs.append(OutputSpec(type="image", attrs={"push": "true"}))
    if load and not any(o.type == "docker" and o.dest is None for o in outputs):
        outputs.append(OutputSpec(type="docker"))
    if sum(1 for o in outputs if o.dest == STDOUT) > 1:
        raise ConfigError("only one output can go to stdout")
    named = []
    for out in outputs:
        if out.type in _IMAGE_LIKE and tags and "name" not in out.attrs:
            out = OutputSpec(
                type=out.type, attrs={**out.attrs, "name": ",".join(tags)}, dest=out.dest
            )
        if (
            out.type == "image"
            and out.attrs.get("push") in ("true", "1", "")
            and not (out.attrs.get("name") or tags)
        ):
            raise ConfigError("pushing needs an image name", hint="pass -t REGISTRY/NAME:TAG")
        named.append(out)
    return tuple(o for o in named if o.type != "cacheonly")


def parse_build_flags(
    *,
    context: str,
    file: str | None = None,
    tags: Sequence[str] = (),
    target: str | None = None,
    build_args: Sequence[str] = (),
    labels: Sequence[str] = (),
    platforms: Sequence[str] = (),
    no_cache: bool = False,
    no_cache_filter: Sequence[str] = (),
    add_hosts: Sequence[str] = (),
    network: str | None = None,
    shm_size: str | None = None,
    ulimits: Sequence[str] = (),
    build_contexts: Sequence[str] = (),
    outputs: Sequence[str] = (),
    push: bool = False,
    load: bool = False,
    progress: str = "auto",
    secrets: Sequence[str] = (),
    ssh: Sequence[str] = (),
    cache_from: Sequence[str] = (),
    cache_to: Sequence[str] = (),
    attests: Sequence[str] = (),
    provenance: str | None = None,
    sbom: str | None = None,
    annotations: Sequence[str] = (),
    metadata_file: str | None = None,
    iidfile: str | None = None,
    allow: Sequence[str] = (),
    registry_auths: Sequence[str] = (),
    stdin: bytes | None = None,
    context_tar: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> BuildSpec:
    """Validate raw flag values into a ``BuildSpec`` (bad input → ``UsageError``, exit 2).

    ``context`` ``-`` means stdin holds either a Dockerfile (empty context) or a context archive,
    as with ``docker build -``. ``stdin`` holds what was read from standard input when ``-``
    appears in the context or ``-f``; a context archive is passed instead as ``context_tar``
    (spooled to a private file by the caller, since it can be large).
    """
    env = environ if environ is not None else {}
    dockerfile_text: bytes | None = None
    if context == STDOUT and context_tar is not None:
        if file == STDOUT:
            raise UsageError("stdin holds the context archive; -f - cannot read it as well")
        context_dir = None
        dockerfile = _dockerfile(file, Path.cwd(), None)[0] if file else None
    elif context == STDOUT:
        if file not in (None, STDOUT):
            raise UsageError("a stdin context (-) takes its Dockerfile from stdin; drop -f")
        if not stdin:
            raise UsageError("the build context is - (stdin), but stdin is empty")
        if stdin[257:262] == b"ustar":
            raise UsageError(
                "a context archive on stdin must be passed as a file (context_tar)",
                hint="extract the archive and pass its directory",
            )
        context_dir, dockerfile, dockerfile_text = None, None, stdin
    else:
        context_dir = _absolute(context)
        if not context_dir.is_dir():
            raise UsageError(
                f"build context {context!r} is not a directory",
                hint="pass the directory to build, for example '.'",
            )
        dockerfile, dockerfile_text = _dockerfile(file, context_dir, stdin)
    if progress not in PROGRESS_MODES:
        reject_unknown([progress], PROGRESS_MODES, what="progress mode")
    if network is not None and network not in NETWORK_MODES:
        reject_unknown([network], NETWORK_MODES, what="network mode")
    for tag in tags:
        if not tag or any(c.isspace() for c in tag) or tag != tag.strip():
            raise ConfigError(f"invalid tag {tag!r}")
    base = context_dir or Path.cwd()
    return BuildSpec(
        context=context_dir,
        context_tar=context_tar if context == STDOUT else None,
        dockerfile=dockerfile,
        dockerfile_text=dockerfile_text,
        tags=tuple(tags),
        target=target or None,
        build_args=_build_args(build_args, env),
        labels=_key_values(labels, "label"),
        platforms=parse_platforms(platforms),
        no_cache=no_cache,
        no_cache_filter=tuple(s for v in no_cache_filter for s in v.split(",") if s),
        add_hosts=tuple(parse_add_host(h) for h in add_hosts),
        network=None if network in (None, "default") else network,
        shm_size=parse_size(shm_size, what="--shm-size") if shm_size else None,
        ulimits=tuple(parse_ulimit(u) for u in ulimits),
        build_contexts=_named_contexts(build_contexts, base),
        outputs=_outputs(outputs, push=push, load=load, tags=tags),
        push=push,
        load=load,
        progress=progress,
        secrets=tuple(secrets),
        ssh=tuple(ssh),
        cache_from=tuple(cache_from),
        cache_to=tuple(cache_to),
        attests=tuple(attests),
        provenance=provenance,
        sbom=sbom,
        annotations=tuple(annotations),
        metadata_file=_absolute(metadata_file) if metadata_file else None,
        iidfile=_absolute(iidfile) if iidfile else None,
        allow=tuple(allow),
        registry_auths=tuple(registry_auths),
    )
