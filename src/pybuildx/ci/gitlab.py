"""GitLab CI: it cannot mask values at runtime (so a warning instead), and each job gets
credentials for the project's registry and the dependency proxy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TextIO

from pybuildx.credentials import ExplicitCredential, credential_from_variables

__all__ = ["NO_MASKING_WARNING", "is_gitlab_ci", "registry_credentials", "warn_no_masking"]

NO_MASKING_WARNING = (
    "warning: GitLab cannot mask secrets at runtime: pybuildx hides --secret values in "
    "its own output, but RUN steps must not print them"
)
# (server, user, password) variables of the job's registry logins, in the order they are tried.
_CREDENTIAL_VARIABLES = (
    ("CI_REGISTRY", "CI_REGISTRY_USER", "CI_REGISTRY_PASSWORD"),
    ("CI_DEPENDENCY_PROXY_SERVER", "CI_DEPENDENCY_PROXY_USER", "CI_DEPENDENCY_PROXY_PASSWORD"),
)


def is_gitlab_ci(environ: Mapping[str, str]) -> bool:
    return environ.get("GITLAB_CI") == "true"


def registry_credentials(environ: Mapping[str, str]) -> tuple[ExplicitCredential, ...]:
    """The job's registry logins that are complete (server, user and password all set)."""
    found = (credential_from_variables(environ, *names) for names in _CREDENTIAL_VARIABLES)
    return tuple(credential for credential in found if credential is not None)


def warn_no_masking(stream: TextIO) -> None:
    stream.write(f"{NO_MASKING_WARNING}\n")
    stream.flush()
