"""The per-build services and attributes beyond context and outputs: registry auth, secrets,
SSH forwarding, cache import/export (with the local content store), attestations, image
exporter checks; and turning registry failures into ``RegistryError``.

``build()`` enters ``build_extras(spec)`` for every Solve; everything it starts (a private
ssh-agent) is stopped when the block ends. What the place the build runs in contributes (secret
masking, cache defaults, registry logins) comes in as ``Surroundings``: plain values, so that
nothing here reads CI variables.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from pybuildx.buildkit._pb import control_pb2
from pybuildx.buildkit.attest import attestation_frontend_attrs
from pybuildx.buildkit.auth import AuthAttachable
from pybuildx.buildkit.cache import CachePlan, plan_cache, record_local_exports
from pybuildx.buildkit.session import Attachable
from pybuildx.buildspec import BuildSpec, OutputSpec
from pybuildx.credentials import CredentialResolver, ExplicitCredential, parse_registry_auth
from pybuildx.errors import PybuildxError, RegistryError
from pybuildx.images.exporter import prepare_outputs

__all__ = ["BuildExtras", "Surroundings", "build_extras", "registry_failure"]

_log = logging.getLogger(__name__)

# Daemon messages that mean a registry, not the Dockerfile, failed the build.
_AUTH_FAILURE = re.compile(
    r"401 Unauthorized|403 Forbidden|failed to authorize|unauthorized: |authentication required",
    re.IGNORECASE,
)
_PUSH_FAILURE = re.compile(r"failed to push|error writing layer blob|failed to do request", re.I)
# A failing RUN step quotes its command, which may contain any of the words above.
_STEP_FAILURE = "did not complete successfully"


def _mask_nothing(values: Iterable[bytes]) -> None:
    del values


@dataclass(frozen=True)
class Surroundings:
    """What the place a build runs in adds to it (the CLI fills this from the CI it detects)."""

    mask_secrets: Callable[[Iterable[bytes]], None] = _mask_nothing
    """Gets every ``--secret`` value before the build starts, to hide them in logs we do not
    write ourselves."""
    gha_cache: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Completes ``type=gha`` cache entries (``url``, ``url_v2``, ``token``)."""
    registry_credentials: tuple[ExplicitCredential, ...] = ()
    """Tried after the flags and ``PYBUILDX_REGISTRY*`` variables, before the docker config."""


@dataclass
class BuildExtras:
    attachables: list[Attachable] = field(default_factory=list)
    frontend_attrs: dict[str, str] = field(default_factory=dict)
    cache_plan: CachePlan = field(default_factory=CachePlan)
    auth: AuthAttachable | None = None

    @property
    def cache(self) -> control_pb2.CacheOptions | None:
        if not self.cache_plan.exports and not self.cache_plan.imports:
            return None
        return self.cache_plan.to_proto()

    def finish(self, exporter_response: Mapping[str, str]) -> None:
        """After a successful Solve: record local cache exports in their index.json."""
        record_local_exports(self.cache_plan, exporter_response)

    def failure(self, message: str) -> PybuildxError | None:
        """A clearer error for a failed Solve when our auth service or a registry caused it."""
        if self.auth is not None and self.auth.failures:
            return self.auth.failures[0]
        return registry_failure(message)


def registry_failure(message: str) -> RegistryError | None:
    message = message.removeprefix("build failed: ")
    if _STEP_FAILURE in message:
        return None
    if _AUTH_FAILURE.search(message):
        return RegistryError(
            f"the registry refused the credentials: {message}",
            hint="check the username/password (docker config, credential helper, "
            "PYBUILDX_REGISTRY_AUTH or CI registry variables)",
        )
    if _PUSH_FAILURE.search(message):
        return RegistryError(f"pushing the image failed: {message}")
    return None


def _wants_default_provenance(outputs: Sequence[OutputSpec]) -> bool:
    # As buildx: no default attestation when loading into Docker (docker exporter, or the image
    # exporter of Docker's own BuildKit, which stores without pushing).
    for output in outputs:
        pushed = output.attrs.get("push", "false").lower() in ("", "1", "true")
        if output.type == "docker" or (output.type == "image" and not pushed):
            return False
    return True


@contextlib.contextmanager
def build_extras(
    spec: BuildSpec,
    outputs: Sequence[OutputSpec],
    *,
    registry_auths: Iterable[ExplicitCredential] = (),
    environ: Mapping[str, str] | None = None,
    surroundings: Surroundings | None = None,
) -> Iterator[tuple[BuildExtras, tuple[OutputSpec, ...]]]:
    """Parse the spec's secrets/ssh/cache/attest options and start what they need.

    Yields the extras and the outputs with image exporter checks and annotations applied.
    """
    # Imported here so that modules only some builds need stay out of the common path.
    from pybuildx.buildkit.secrets import SecretsAttachable, load_secrets, parse_secret

    env = os.environ if environ is None else environ
    around = surroundings or Surroundings()
    prepared = prepare_outputs(outputs, spec.annotations)
    flags = [parse_registry_auth(text, env) for text in spec.registry_auths]
    resolver = CredentialResolver.from_environment(
        [*flags, *registry_auths], env, extra=around.registry_credentials
    )
    auth = AuthAttachable(resolver)
    extras = BuildExtras(attachables=[auth], auth=auth)
    if spec.secrets:
        sources = [parse_secret(text, env) for text in spec.secrets]
        values = load_secrets(sources, env)
        around.mask_secrets(values.values())
        extras.attachables.append(SecretsAttachable(values))
    extras.cache_plan = plan_cache(spec.cache_to, spec.cache_from, around.gha_cache)
    for warning in extras.cache_plan.warnings:
        _log.warning("%s", warning)
    extras.frontend_attrs.update(extras.cache_plan.frontend_attrs())
    attest_env = dict(env)
    if not _wants_default_provenance(prepared):
        attest_env["BUILDX_NO_DEFAULT_ATTESTATIONS"] = "1"
    extras.frontend_attrs.update(
        attestation_frontend_attrs(
            spec.attests, provenance=spec.provenance, sbom=spec.sbom, environ=attest_env
        )
    )
    if extras.cache_plan.needs_content_store:
        from pybuildx.buildkit.content import ContentStoreAttachable

        extras.attachables.append(ContentStoreAttachable(extras.cache_plan.content_stores))
    with contextlib.ExitStack() as stack:
        if spec.ssh:
            from pybuildx.buildkit.sshforward import SshAgents, SshAttachable, parse_ssh

            agents = stack.enter_context(SshAgents(parse_ssh(text, env) for text in spec.ssh))
            extras.attachables.append(SshAttachable(agents.sockets))
        yield extras, prepared
