"""The ci layer: which CI a run is in, and what it offers builds (masks, gha cache, logins)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from pybuildx import ci
from pybuildx.buildkit.cache import parse_cache_entry
from pybuildx.credentials import CredentialResolver, DockerConfig, RegistryCredentials
from pybuildx.errors import redact

GITLAB_LOGIN = {
    "CI_REGISTRY": "registry.gitlab.example",
    "CI_REGISTRY_USER": "gitlab-ci-token",
    "CI_REGISTRY_PASSWORD": "job-token-value",
}


@pytest.mark.parametrize(
    ("environ", "kind"),
    [
        ({"GITHUB_ACTIONS": "true"}, "github"),
        ({"GITLAB_CI": "true"}, "gitlab"),
        ({"GITHUB_ACTIONS": "true", "GITLAB_CI": "true"}, "github"),
        ({"GITHUB_ACTIONS": "false", "CI": "true"}, "local"),
        ({}, "local"),
    ],
)
def test_detect_names_the_ci(environ: dict[str, str], kind: str) -> None:
    assert ci.detect(environ).kind == kind


def test_masks_on_github_warning_on_gitlab_silence_elsewhere(
    capsys: pytest.CaptureFixture[str],
) -> None:
    values = [b"line-one-secret\nline-two-secret"]
    ci.detect({"GITHUB_ACTIONS": "true"}).mask_secrets(values)
    github = capsys.readouterr()
    # Every line is a mask command (a multi-line value is masked line by line), all on stderr:
    # stdout may carry the build result (-o -).
    assert github.err.splitlines() == [
        "::add-mask::line-one-secret",
        "::add-mask::line-two-secret",
    ]
    assert github.out == ""
    ci.detect({"GITLAB_CI": "true"}).mask_secrets(values)
    gitlab = capsys.readouterr()
    assert gitlab.err.startswith("warning: GitLab cannot mask secrets")
    assert "line-one-secret" not in gitlab.err
    assert gitlab.out == ""
    ci.detect({}).mask_secrets(values)
    assert capsys.readouterr() == ("", "")


def test_each_secret_is_announced_once_per_run(capsys: pytest.CaptureFixture[str]) -> None:
    """Every node of a builder loads the same secrets: one mask (or warning) is enough."""
    on_github = ci.detect({"GITHUB_ACTIONS": "true"})
    on_github.mask_secrets([b"first-secret"])
    on_github.mask_secrets([b"first-secret"])
    on_github.mask_secrets([b"first-secret", b"second-secret"])
    assert capsys.readouterr().err.splitlines() == [
        "::add-mask::first-secret",
        "::add-mask::second-secret",
    ]
    on_gitlab = ci.detect({"GITLAB_CI": "true"})
    for values in ([b"first-secret"], [b"first-secret"], [b"second-secret"]):
        on_gitlab.mask_secrets(values)
    assert capsys.readouterr().err.count("GitLab cannot mask secrets") == 1


def test_mask_commands_encode_percent_as_the_runner_decodes_it() -> None:
    # The runner turns %25 back into % (and %0A into a line break) in command data.
    assert ci.github.mask_commands([b"p%0Ass", b"  spaced  \n\n", b"p%0Ass"]) == [
        "::add-mask::p%250Ass",
        "::add-mask::spaced",
    ]


def test_runner_variables_complete_gha_cache_entries_and_the_token_is_masked() -> None:
    env = {
        "ACTIONS_CACHE_URL": "https://cache.example/",
        "ACTIONS_RESULTS_URL": "https://results.example/",
        "ACTIONS_RUNTIME_TOKEN": "runtime-token-value",
    }
    defaults = ci.detect(env).gha_cache
    entry = parse_cache_entry("type=gha,scope=app,mode=max", export=True, gha_defaults=defaults)
    assert entry is not None
    assert dict(entry.attrs) == {
        "scope": "app",
        "mode": "max",
        "url": "https://cache.example/",
        "url_v2": "https://results.example/",
        "token": "runtime-token-value",
    }
    assert "runtime-token-value" not in redact("token runtime-token-value")
    assert "runtime-token-value" not in repr(ci.detect(env))
    assert ci.detect({}).gha_cache == {}


def test_gitlab_registry_variables_are_registry_logins() -> None:
    env = {
        **GITLAB_LOGIN,
        "CI_DEPENDENCY_PROXY_SERVER": "gitlab.example:443",
        "CI_DEPENDENCY_PROXY_USER": "proxy-user",
        "CI_DEPENDENCY_PROXY_PASSWORD": "proxy-password",
    }
    found = ci.detect(env).registry_credentials
    assert [(c.registry, c.username, c.password) for c in found] == [
        ("registry.gitlab.example", "gitlab-ci-token", "job-token-value"),
        ("gitlab.example:443", "proxy-user", "proxy-password"),
    ]
    assert "job-token-value" not in redact("token job-token-value leaked")
    incomplete = {k: v for k, v in GITLAB_LOGIN.items() if k != "CI_REGISTRY_PASSWORD"}
    assert ci.detect(incomplete).registry_credentials == ()


def test_ci_logins_come_after_our_variables_and_before_the_docker_config(tmp_path: Path) -> None:
    auth = base64.b64encode(b"config-user:config-pw").decode()
    (tmp_path / "config.json").write_text(
        json.dumps({"auths": {h: {"auth": auth} for h in ("a.example", "b.example", "c.example")}})
    )
    env = {
        "DOCKER_CONFIG": str(tmp_path),
        "PYBUILDX_REGISTRY": "a.example",
        "PYBUILDX_REGISTRY_USERNAME": "ours",
        "PYBUILDX_REGISTRY_PASSWORD": "ours-pw",
        **GITLAB_LOGIN,
    }
    env["CI_REGISTRY"] = "a.example"
    resolver = CredentialResolver.from_environment(
        environ=env, extra=ci.detect(env).registry_credentials
    )
    assert resolver.lookup("a.example") == RegistryCredentials("ours", "ours-pw")
    env["CI_REGISTRY"] = "b.example"
    resolver = CredentialResolver.from_environment(
        environ=env, extra=ci.detect(env).registry_credentials
    )
    assert resolver.lookup("b.example") == RegistryCredentials("gitlab-ci-token", "job-token-value")
    assert resolver.lookup("c.example") == RegistryCredentials("config-user", "config-pw")
    assert DockerConfig.load(env).path == tmp_path / "config.json"
