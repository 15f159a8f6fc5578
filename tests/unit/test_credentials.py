"""Registry credential lookup: flags/env first, docker config auths, credential helpers."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from pybuildx.credentials import (
    DOCKER_HUB_CONFIG_KEY,
    CredentialResolver,
    DockerConfig,
    ExplicitCredential,
    RegistryCredentials,
    config_key_for_host,
    explicit_credentials_from_env,
    normalize_registry_host,
    parse_registry_auth,
)
from pybuildx.errors import ConfigError, RegistryError, redact

HELPER = "pybuildxtest"


def _auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def _config(tmp_path: Path, content: dict[str, object]) -> DockerConfig:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(content))
    return DockerConfig.from_file(path)


@pytest.fixture
def helper_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real docker-credential-pybuildxtest on PATH; it logs the server URL it was asked for.

    Its behaviour is chosen by files next to it: ``answer.json`` (printed), ``fail`` (exit 1
    with that text on stdout), none (exit 1 "credentials not found in native keychain").
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / f"docker-credential-{HELPER}"
    script.write_text(
        "#!/bin/sh\n"
        f'dir="{bin_dir}"\n'
        '[ "$1" = get ] || exit 2\n'
        'cat > "$dir/asked"\n'
        'if [ -f "$dir/fail" ]; then cat "$dir/fail"; exit 1; fi\n'
        'if [ -f "$dir/answer.json" ]; then cat "$dir/answer.json"; exit 0; fi\n'
        "echo 'credentials not found in native keychain'; exit 1\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return bin_dir


def test_host_normalisation_and_docker_hub_mapping() -> None:
    assert normalize_registry_host("https://Registry.Example.com:5000/v2/") == (
        "registry.example.com:5000"
    )
    for hub in ("registry-1.docker.io", "index.docker.io", "docker.io", DOCKER_HUB_CONFIG_KEY):
        assert config_key_for_host(hub) == DOCKER_HUB_CONFIG_KEY
    assert config_key_for_host("ghcr.io") == "ghcr.io"


def test_auths_entry_is_found_by_normalised_key(tmp_path: Path) -> None:
    config = _config(
        tmp_path, {"auths": {"https://registry.example.com/v1/": {"auth": _auth("me", "pw1x")}}}
    )
    found = CredentialResolver(docker_config=config).lookup("registry.example.com")
    assert found == RegistryCredentials("me", "pw1x")


def test_docker_hub_daemon_host_reads_the_index_key(tmp_path: Path) -> None:
    config = _config(tmp_path, {"auths": {DOCKER_HUB_CONFIG_KEY: {"auth": _auth("hub", "hubpw")}}})
    found = CredentialResolver(docker_config=config).lookup("registry-1.docker.io")
    assert found == RegistryCredentials("hub", "hubpw")


def test_identity_token_is_sent_without_username(tmp_path: Path) -> None:
    config = _config(tmp_path, {"auths": {"r.example": {"identitytoken": "tok-123456"}}})
    assert CredentialResolver(docker_config=config).lookup("r.example") == RegistryCredentials(
        "", "tok-123456"
    )


def test_unknown_host_is_anonymous(tmp_path: Path) -> None:
    config = _config(tmp_path, {"auths": {"a.example": {"auth": _auth("u", "p")}}})
    assert CredentialResolver(docker_config=config).lookup("b.example").anonymous


def test_explicit_credentials_win_over_config(tmp_path: Path) -> None:
    config = _config(tmp_path, {"auths": {"r.example": {"auth": _auth("cfg", "cfgpw")}}})
    resolver = CredentialResolver([ExplicitCredential("r.example", "flag", "flagpw")], config)
    assert resolver.lookup("r.example") == RegistryCredentials("flag", "flagpw")


def test_registry_auth_flag_reads_password_from_env_never_argv() -> None:
    env = {"MY_PW": "from-env-pw"}
    found = parse_registry_auth("registry=r.example:5000,username=me,password-env=MY_PW", env)
    assert (found.registry, found.username, found.password) == (
        "r.example:5000",
        "me",
        "from-env-pw",
    )
    with pytest.raises(ConfigError, match="visible to other processes"):
        parse_registry_auth("registry=r.example,username=me,password=oops", env)
    with pytest.raises(ConfigError, match="NOPE is not set"):
        parse_registry_auth("registry=r.example,username=me,password-env=NOPE", env)


def test_registry_auth_list_variable(tmp_path: Path) -> None:
    pw_file = tmp_path / "pw"
    pw_file.write_text("file-password\n")
    env = {
        "PYBUILDX_REGISTRY_AUTH": f"registry=a.example,username=u1,password-file={pw_file}\n"
        "registry=b.example,username=u2,password-env=PW2",
        "PW2": "second-pw",
    }
    found = {c.registry: (c.username, c.password) for c in explicit_credentials_from_env(env)}
    assert found == {"a.example": ("u1", "file-password"), "b.example": ("u2", "second-pw")}


def test_malformed_config_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        DockerConfig.from_file(path)


def test_load_follows_docker_config_env(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"credsStore": HELPER}))
    assert DockerConfig.load({"DOCKER_CONFIG": str(tmp_path)}).creds_store == HELPER


def test_cred_helper_gets_server_url_on_stdin(tmp_path: Path, helper_on_path: Path) -> None:
    (helper_on_path / "answer.json").write_text(
        json.dumps({"ServerURL": DOCKER_HUB_CONFIG_KEY, "Username": "hu", "Secret": "helper-pw"})
    )
    config = _config(tmp_path, {"credHelpers": {"docker.io": HELPER}})
    found = CredentialResolver(docker_config=config).lookup("registry-1.docker.io")
    assert found == RegistryCredentials("hu", "helper-pw")
    assert (helper_on_path / "asked").read_text() == DOCKER_HUB_CONFIG_KEY
    assert "helper-pw" not in redact("value helper-pw")


def test_creds_store_used_when_auths_entry_is_only_a_marker(
    tmp_path: Path, helper_on_path: Path
) -> None:
    (helper_on_path / "answer.json").write_text(
        json.dumps({"Username": "<token>", "Secret": "identity-tok"})
    )
    config = _config(tmp_path, {"auths": {"r.example:5000": {}}, "credsStore": HELPER})
    found = CredentialResolver(docker_config=config).lookup("r.example:5000")
    assert found == RegistryCredentials("", "identity-tok")
    assert (helper_on_path / "asked").read_text() == "r.example:5000"


def test_helper_without_entry_means_anonymous(tmp_path: Path, helper_on_path: Path) -> None:
    config = _config(tmp_path, {"credsStore": HELPER})
    assert CredentialResolver(docker_config=config).lookup("r.example").anonymous


def test_failing_helper_is_a_registry_error(tmp_path: Path, helper_on_path: Path) -> None:
    (helper_on_path / "fail").write_text("error getting credentials - token expired\n")
    config = _config(tmp_path, {"credHelpers": {"r.example": HELPER}})
    with pytest.raises(RegistryError) as caught:
        CredentialResolver(docker_config=config).lookup("r.example")
    assert caught.value.exit_code == 1
    assert "token expired" in caught.value.render()
    assert f"docker-credential-{HELPER}" in caught.value.render()


def test_missing_helper_is_a_registry_error(tmp_path: Path) -> None:
    config = _config(tmp_path, {"credsStore": "pybuildx-no-such-helper"})
    with pytest.raises(RegistryError, match="not found on PATH"):
        CredentialResolver(docker_config=config).lookup("r.example")
