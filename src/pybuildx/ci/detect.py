"""``detect(environ)``: which CI a command runs in, and what that CI offers its builds."""

from __future__ import annotations

import hashlib
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from pybuildx.ci import github, gitlab
from pybuildx.credentials import ExplicitCredential

__all__ = ["CiEnvironment", "CiKind", "detect"]

CiKind = Literal["github", "gitlab", "local"]


@dataclass(frozen=True)
class CiEnvironment:
    """What the CI offers, as plain values for the layers below (which read no CI variables)."""

    kind: CiKind = "local"
    gha_cache: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Defaults for ``type=gha`` cache entries: ``url``, ``url_v2``, ``token``."""
    registry_credentials: tuple[ExplicitCredential, ...] = ()
    """Registry logins the CI gives the job (tried after the flags, before the docker config)."""

    _announced: set[bytes] = field(default_factory=set, init=False, repr=False, compare=False)
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    def mask_secrets(self, values: Iterable[bytes]) -> None:
        """Our own output is redacted, but a RUN step can still print a secret where we do not
        redact (the daemon's logs, build history): ask the CI to mask the values in its job log.
        Once per value, also when every node of a builder loads the same secrets. On stderr:
        stdout may carry the build result (``-o -``)."""
        if self.kind == "local":
            return
        with self._lock:
            first = not self._announced
            fresh = [v for v in values if hashlib.sha256(v).digest() not in self._announced]
            self._announced.update(hashlib.sha256(v).digest() for v in fresh)
        if not fresh:
            return
        if self.kind == "github":
            github.write_masks(fresh, sys.stderr)
        elif first:
            gitlab.warn_no_masking(sys.stderr)


def detect(environ: Mapping[str, str]) -> CiEnvironment:
    """Read the CI variables once. Cache defaults and registry logins are taken wherever their
    variables are set, also outside a recognised CI (e.g. a runner's variables passed on)."""
    kind: CiKind = "local"
    if github.is_github_actions(environ):
        kind = "github"
    elif gitlab.is_gitlab_ci(environ):
        kind = "gitlab"
    return CiEnvironment(
        kind=kind,
        gha_cache=github.gha_cache_defaults(environ),
        registry_credentials=gitlab.registry_credentials(environ),
    )
