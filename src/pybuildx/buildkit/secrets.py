"""``--secret`` parsing and the session Secrets service (``RUN --mount=type=secret``).

Syntax as buildx: ``id=<id>,src=<file>`` (also ``source=``), ``id=<id>,env=<VAR>``,
``type=env,id=<id>[,src=<VAR>]``. With neither ``src`` nor ``env`` the id names an environment
variable when one is set, else a file. Values are read once, before the build starts, so a
missing file fails early; each value is registered for redaction.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from pybuildx.buildkit._pb import secrets_pb2, secrets_pb2_grpc
from pybuildx.config import parse_csv_options, reject_unknown
from pybuildx.errors import ConfigError, register_secret

__all__ = [
    "SecretSource",
    "SecretsAttachable",
    "load_secrets",
    "parse_secret",
]

_KEYS = ("id", "type", "src", "source", "env")
_METHOD = "/moby.buildkit.secrets.v1.Secrets/GetSecret"
# BuildKit refuses larger secrets (MaxSecretSize in session/secrets).
_MAX_SECRET_BYTES = 500 * 1024


@dataclass(frozen=True)
class SecretSource:
    """Where one secret comes from: exactly one of ``file`` and ``env`` is set."""

    id: str
    file: Path | None = None
    env: str | None = None


def parse_secret(text: str, environ: Mapping[str, str] | None = None) -> SecretSource:
    env = os.environ if environ is None else environ
    options = parse_csv_options(text, what="secret")
    reject_unknown(options, _KEYS, what="secret key")
    kind = options.get("type", "file") or "file"
    if kind not in ("file", "env"):
        raise ConfigError(f"invalid secret {text!r}: type must be file or env, not {kind!r}")
    secret_id = options.get("id", "")
    source = options.get("src", options.get("source", ""))
    variable = options.get("env", "")
    if kind == "env" and not variable:
        variable, source = source, ""
    if source and variable:
        raise ConfigError(f"invalid secret {text!r}: give src= or env=, not both")
    if not secret_id:
        if not source:
            raise ConfigError(f"invalid secret {text!r}: id= is missing", hint="id=<id>,src=<file>")
        secret_id = Path(source).name
    if not source and not variable:
        if kind == "env" or secret_id in env:
            variable = secret_id
        else:
            source = secret_id
    if variable:
        return SecretSource(secret_id, env=variable)
    return SecretSource(secret_id, file=Path(source).expanduser())


def load_secrets(
    sources: Iterable[SecretSource], environ: Mapping[str, str] | None = None
) -> dict[str, bytes]:
    """Read every secret now: a missing file or variable is a usage error before any build."""
    env = os.environ if environ is None else environ
    values: dict[str, bytes] = {}
    for source in sources:
        if source.env is not None:
            if source.env not in env:
                raise ConfigError(
                    f"secret {source.id!r}: environment variable {source.env} is not set"
                )
            value = env[source.env].encode()
        else:
            assert source.file is not None
            try:
                value = source.file.read_bytes()
            except OSError as exc:
                raise ConfigError(
                    f"secret {source.id!r}: cannot read {source.file}: {exc.strerror}"
                ) from None
        if len(value) > _MAX_SECRET_BYTES:
            raise ConfigError(f"secret {source.id!r} is larger than BuildKit's 500 KiB limit")
        register_secret(value)
        values[source.id] = value
    return values


@dataclass
class SecretsAttachable(secrets_pb2_grpc.SecretsServicer):
    """Serves ``moby.buildkit.secrets.v1.Secrets``; an unknown id gets NOT_FOUND."""

    values: Mapping[str, bytes] = field(default_factory=dict, repr=False)

    def register(self, server: grpc.Server) -> None:
        secrets_pb2_grpc.add_SecretsServicer_to_server(self, server)  # type: ignore[no-untyped-call]

    def method_names(self) -> Sequence[str]:
        return [_METHOD]

    def GetSecret(
        self, request: secrets_pb2.GetSecretRequest, context: grpc.ServicerContext
    ) -> secrets_pb2.GetSecretResponse:
        value = self.values.get(request.ID)
        if value is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"secret {request.ID} not found")
        return secrets_pb2.GetSecretResponse(data=value)
