"""Registry credentials, found the way the docker CLI finds them.

Order for a registry host: explicit credentials (``--registry-auth`` flags, then
``PYBUILDX_REGISTRY_AUTH`` and ``PYBUILDX_REGISTRY*`` variables, then those the caller adds, such
as the CI's registry logins), then the docker config file (``$DOCKER_CONFIG/config.json`` or
``~/.docker/config.json``): ``credHelpers[host]``, an ``auths`` entry that carries credentials,
then ``credsStore``. Helpers are run as ``docker-credential-<name> get`` with the server URL on
stdin, exactly like the docker CLI. Every secret found is registered for redaction; none ever
goes into argv, a log line or an error message.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pybuildx.config import parse_csv_options, reject_unknown
from pybuildx.errors import ConfigError, RegistryError, register_secret

__all__ = [
    "DOCKER_HUB_CONFIG_KEY",
    "CredentialResolver",
    "DockerConfig",
    "ExplicitCredential",
    "RegistryCredentials",
    "config_key_for_host",
    "credential_from_variables",
    "explicit_credentials_from_env",
    "normalize_registry_host",
    "parse_registry_auth",
]

DOCKER_HUB_CONFIG_KEY = "https://index.docker.io/v1/"
_DOCKER_HUB_HOSTS = frozenset(
    {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
)
_HELPER_TIMEOUT_SECONDS = 30
# What docker-credential-helpers print when a server has no entry: not an error, just anonymous.
_NOT_FOUND_MESSAGE = "credentials not found in native keychain"
# The docker CLI stores identity tokens under this user name in credential helpers.
_TOKEN_USERNAME = "<token>"

# Same syntax as --registry-auth, one entry per line (or separated by ";").
_AUTH_LIST_VARIABLE = "PYBUILDX_REGISTRY_AUTH"
# Variables (server, user, password) of one registry login, read when no flag names that server.
_LOGIN_VARIABLES = ("PYBUILDX_REGISTRY", "PYBUILDX_REGISTRY_USERNAME", "PYBUILDX_REGISTRY_PASSWORD")


@dataclass(frozen=True)
class RegistryCredentials:
    """What the daemon gets for a host: user and password, or ``""`` and an identity token."""

    username: str = ""
    secret: str = field(default="", repr=False)

    @property
    def anonymous(self) -> bool:
        return not self.username and not self.secret


ANONYMOUS = RegistryCredentials()


@dataclass(frozen=True)
class ExplicitCredential:
    """Credentials given for one registry by a flag or CI variables."""

    registry: str
    username: str
    password: str = field(repr=False)


def normalize_registry_host(value: str) -> str:
    """``https://Host:5000/v2/`` → ``host:5000``; every Docker Hub alias → ``docker.io``."""
    text = value.strip()
    for scheme in ("https://", "http://"):
        if text.lower().startswith(scheme):
            text = text[len(scheme) :]
    host = text.split("/", 1)[0].lower()
    return "docker.io" if host in _DOCKER_HUB_HOSTS else host


def config_key_for_host(host: str) -> str:
    """The key the docker CLI uses in config.json and with helpers for a registry host."""
    normalized = normalize_registry_host(host)
    return DOCKER_HUB_CONFIG_KEY if normalized == "docker.io" else normalized


def _same_registry(a: str, b: str) -> bool:
    na, nb = normalize_registry_host(a), normalize_registry_host(b)
    return na == nb or na == f"{nb}:443" or nb == f"{na}:443"


_AUTH_KEYS = ("registry", "username", "password-env", "password-file")


def parse_registry_auth(text: str, environ: Mapping[str, str] | None = None) -> ExplicitCredential:
    """Parse ``registry=<host>,username=<user>,password-env=<VAR>|password-file=<path>``.

    The password itself is never accepted on the command line: argv is visible to every process.
    """
    env = os.environ if environ is None else environ
    options = parse_csv_options(text, what="registry auth")
    if "password" in options:
        raise ConfigError(
            "registry auth: a password on the command line would be visible to other processes",
            hint="use password-env=<VARIABLE> or password-file=<path>",
        )
    reject_unknown(options, _AUTH_KEYS, what="registry auth key")
    registry, username = options.get("registry", ""), options.get("username", "")
    if not registry or not username:
        raise ConfigError(
            "registry auth needs registry= and username=",
            hint="for example registry=ghcr.io,username=me,password-env=GHCR_TOKEN",
        )
    if ("password-env" in options) == ("password-file" in options):
        raise ConfigError(
            f"registry auth for {registry}: give exactly one of password-env= or password-file="
        )
    if "password-env" in options:
        variable = options["password-env"]
        if variable not in env:
            raise ConfigError(
                f"registry auth for {registry}: environment variable {variable} is not set"
            )
        password = env[variable]
    else:
        path = Path(options["password-file"]).expanduser()
        try:
            password = path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(
                f"registry auth for {registry}: cannot read {path}: {exc.strerror}"
            ) from None
    register_secret(password)
    return ExplicitCredential(normalize_registry_host(registry), username, password)


def credential_from_variables(
    environ: Mapping[str, str], server_variable: str, user_variable: str, password_variable: str
) -> ExplicitCredential | None:
    """One registry login from three variables; ``None`` unless all three are set."""
    server = environ.get(server_variable)
    user = environ.get(user_variable)
    password = environ.get(password_variable)
    if not (server and user and password):
        return None
    register_secret(password)
    return ExplicitCredential(normalize_registry_host(server), user, password)


def explicit_credentials_from_env(
    environ: Mapping[str, str] | None = None,
) -> list[ExplicitCredential]:
    """Credentials from ``PYBUILDX_REGISTRY_AUTH``, then from
    ``PYBUILDX_REGISTRY{,_USERNAME,_PASSWORD}``."""
    env = os.environ if environ is None else environ
    found: list[ExplicitCredential] = []
    for line in re.split(r"[;\n]", env.get(_AUTH_LIST_VARIABLE, "")):
        if line.strip():
            found.append(parse_registry_auth(line.strip(), env))
    login = credential_from_variables(env, *_LOGIN_VARIABLES)
    if login is not None:
        found.append(login)
    return found


@dataclass(frozen=True)
class DockerConfig:
    """The parts of the docker CLI's config.json that concern registry credentials."""

    path: Path | None = None
    auths: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, repr=False)
    creds_store: str = ""
    cred_helpers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None) -> DockerConfig:
        env = os.environ if environ is None else environ
        directory = (
            Path(env["DOCKER_CONFIG"]) if env.get("DOCKER_CONFIG") else Path.home() / ".docker"
        )
        return cls.from_file(directory / "config.json")

    @classmethod
    def from_file(cls, path: Path) -> DockerConfig:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls(path=path)
        except OSError as exc:
            raise ConfigError(f"cannot read docker config {path}: {exc.strerror}") from None
        try:
            data = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"docker config {path} is not valid JSON (line {exc.lineno})",
                hint="fix the file or point DOCKER_CONFIG at another directory",
            ) from None
        if not isinstance(data, dict):
            raise ConfigError(f"docker config {path} must hold a JSON object")
        auths = data.get("auths") or {}
        helpers = data.get("credHelpers") or {}
        if not isinstance(auths, dict) or not isinstance(helpers, dict):
            raise ConfigError(f"docker config {path}: auths and credHelpers must be objects")
        return cls(
            path=path,
            auths={k: v for k, v in auths.items() if isinstance(v, dict)},
            creds_store=str(data.get("credsStore") or ""),
            cred_helpers={normalize_registry_host(k): str(v) for k, v in helpers.items()},
        )

    def auth_entry(self, host: str) -> Mapping[str, Any] | None:
        key = config_key_for_host(host)
        if key in self.auths:
            return self.auths[key]
        for entry_key, entry in self.auths.items():
            if _same_registry(entry_key, host):
                return entry
        return None

    def helper_for(self, host: str) -> str:
        normalized = normalize_registry_host(host)
        for entry_host, helper in self.cred_helpers.items():
            if _same_registry(entry_host, normalized):
                return helper
        return ""


def _credentials_from_entry(entry: Mapping[str, Any], origin: str) -> RegistryCredentials | None:
    token = str(entry.get("identitytoken") or "")
    if token:
        register_secret(token)
        return RegistryCredentials("", token)
    encoded = str(entry.get("auth") or "")
    if encoded:
        try:
            decoded = base64.b64decode(encoded, validate=False).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise ConfigError(f"{origin}: the auth field is not base64 user:password") from None
        username, sep, password = decoded.partition(":")
        if not sep:
            raise ConfigError(f"{origin}: the auth field is not base64 user:password")
        register_secret(password)
        register_secret(encoded)
        return RegistryCredentials(username, password)
    username, password = str(entry.get("username") or ""), str(entry.get("password") or "")
    if username or password:
        register_secret(password)
        return RegistryCredentials(username, password)
    return None


Runner = Callable[..., "subprocess.CompletedProcess[bytes]"]


def run_credential_helper(
    helper: str, server_url: str, runner: Runner = subprocess.run
) -> RegistryCredentials:
    """Run ``docker-credential-<helper> get`` with ``server_url`` on stdin, as docker does."""
    program = f"docker-credential-{helper}"
    executable = shutil.which(program)
    if executable is None:
        raise RegistryError(
            f"credential helper {program} not found on PATH (needed for {server_url})",
            hint="install it, or remove it from credsStore/credHelpers in the docker config",
        )
    try:
        result = runner(
            [executable, "get"],
            input=server_url.encode(),
            capture_output=True,
            timeout=_HELPER_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RegistryError(
            f"credential helper {program} did not answer within {_HELPER_TIMEOUT_SECONDS}s"
        ) from None
    except OSError as exc:
        raise RegistryError(f"cannot run credential helper {program}: {exc.strerror}") from None
    stdout = result.stdout.decode("utf-8", "replace").strip()
    if result.returncode != 0:
        if _NOT_FOUND_MESSAGE in stdout:
            return ANONYMOUS
        # Helpers report errors on stdout or stderr; keep one line and never the rest.
        detail = (stdout or result.stderr.decode("utf-8", "replace").strip()).splitlines()
        first = detail[0] if detail else f"exit status {result.returncode}"
        raise RegistryError(
            f"credential helper {program} failed for {server_url}: {first}",
            hint="log in again (its stored credentials may have expired)",
        )
    try:
        payload = json.loads(stdout)
    except json.JSONDecodeError:
        raise RegistryError(
            f"credential helper {program} printed no JSON for {server_url}"
        ) from None
    username, secret = str(payload.get("Username") or ""), str(payload.get("Secret") or "")
    register_secret(secret)
    if username == _TOKEN_USERNAME:
        return RegistryCredentials("", secret)
    return RegistryCredentials(username, secret)


class CredentialResolver:
    """Finds credentials for registry hosts, caching answers (helpers can be slow)."""

    def __init__(
        self,
        explicit: Sequence[ExplicitCredential] = (),
        docker_config: DockerConfig | None = None,
        runner: Runner = subprocess.run,
    ) -> None:
        self._explicit = list(explicit)
        self._config = docker_config or DockerConfig()
        self._runner = runner
        self._cache: dict[str, RegistryCredentials] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_environment(
        cls,
        flags: Iterable[ExplicitCredential] = (),
        environ: Mapping[str, str] | None = None,
        *,
        extra: Iterable[ExplicitCredential] = (),
    ) -> CredentialResolver:
        """Flags first, then our variables, then ``extra`` (the caller's, e.g. the CI's registry
        logins), then the docker config named by the environment."""
        explicit = [*flags, *explicit_credentials_from_env(environ), *extra]
        return cls(explicit, DockerConfig.load(environ))

    def lookup(self, host: str) -> RegistryCredentials:
        """Credentials for ``host`` (anonymous when none is configured).

        Raises ``RegistryError`` when a configured helper fails, so that an expired login is
        reported as such instead of turning into a confusing 401 from the registry.
        """
        key = normalize_registry_host(host)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        found = self._resolve(host)
        with self._lock:
            self._cache[key] = found
        return found

    def _resolve(self, host: str) -> RegistryCredentials:
        for explicit in self._explicit:
            if _same_registry(explicit.registry, host):
                return RegistryCredentials(explicit.username, explicit.password)
        server_url = config_key_for_host(host)
        helper = self._config.helper_for(host)
        if helper:
            return run_credential_helper(helper, server_url, self._runner)
        entry = self._config.auth_entry(host)
        origin = f"docker config {self._config.path}, entry {server_url}"
        if entry is not None:
            found = _credentials_from_entry(entry, origin)
            if found is not None:
                return found
        if self._config.creds_store:
            return run_credential_helper(self._config.creds_store, server_url, self._runner)
        return ANONYMOUS
