"""What every build gets from buildkit/extras.py: services, attributes and clearer failures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pybuildx.buildkit._pb import auth_pb2
from pybuildx.buildkit.auth import AuthAttachable
from pybuildx.buildkit.extras import Surroundings, build_extras, registry_failure
from pybuildx.buildkit.secrets import SecretsAttachable
from pybuildx.buildspec import BuildSpec, OutputSpec, parse_build_flags
from pybuildx.credentials import ExplicitCredential
from pybuildx.errors import RegistryError


def _spec(tmp_path: Path, **flags: object) -> BuildSpec:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    return parse_build_flags(context=str(tmp_path), **flags)  # type: ignore[arg-type]


def test_push_build_gets_auth_secrets_cache_and_default_provenance(tmp_path: Path) -> None:
    spec = _spec(
        tmp_path,
        tags=["127.0.0.1:5000/app:v1"],
        push=True,
        secrets=["id=tok,env=TOK"],
        cache_from=["127.0.0.1:5000/app:cache"],
        environ={"TOK": "token-value-1"},
    )
    env = {"TOK": "token-value-1", "DOCKER_CONFIG": str(tmp_path / "none")}
    with build_extras(spec, spec.outputs, environ=env) as (extras, outputs):
        kinds = [type(a) for a in extras.attachables]
        assert kinds == [AuthAttachable, SecretsAttachable]
        assert extras.frontend_attrs["attest:provenance"] == "mode=min,inline-only=true"
        assert "cache-imports" in extras.frontend_attrs
        assert extras.cache is not None and len(extras.cache.Imports) == 1
        assert outputs == spec.outputs


def test_surroundings_mask_secrets_complete_gha_cache_and_add_logins(tmp_path: Path) -> None:
    spec = _spec(
        tmp_path,
        secrets=["id=tok,env=TOK"],
        cache_to=["type=gha,scope=app"],
        environ={"TOK": "token-value-2"},
    )
    masked: list[bytes] = []
    surroundings = Surroundings(
        mask_secrets=masked.extend,
        gha_cache={"url": "https://cache.example/", "token": "gha-token"},
        registry_credentials=(ExplicitCredential("r.example", "ci-user", "ci-password"),),
    )
    env = {"TOK": "token-value-2", "DOCKER_CONFIG": str(tmp_path / "none")}
    with build_extras(spec, spec.outputs, environ=env, surroundings=surroundings) as (extras, _):
        assert masked == [b"token-value-2"]
        assert extras.cache is not None
        assert dict(extras.cache.Exports[0].Attrs) == {
            "scope": "app",
            "mode": "min",
            "url": "https://cache.example/",
            "token": "gha-token",
        }
        assert extras.auth is not None
        # Known hosts are answered without touching the gRPC context.
        context: Any = None
        answer = extras.auth.Credentials(auth_pb2.CredentialsRequest(Host="r.example"), context)
        assert (answer.Username, answer.Secret) == ("ci-user", "ci-password")


def test_loading_into_docker_gets_no_default_provenance(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    env = {"DOCKER_CONFIG": str(tmp_path / "none")}
    for output in (OutputSpec(type="docker", dest="x.tar"), OutputSpec(type="image")):
        with build_extras(spec, [output], environ=env) as (extras, _):
            assert "attest:provenance" not in extras.frontend_attrs


def test_registry_failures_are_recognised() -> None:
    auth = registry_failure("build failed: failed to push r/x: ... 401 Unauthorized")
    assert isinstance(auth, RegistryError) and "refused the credentials" in auth.message
    assert not auth.message.startswith("the registry refused the credentials: build failed")
    push = registry_failure("failed to push r/x: failed to do request: connection refused")
    assert isinstance(push, RegistryError)
    assert registry_failure('process "/bin/sh -c false" did not complete successfully') is None
    step = 'process "/bin/sh -c curl x || echo 401 Unauthorized" did not complete successfully'
    assert registry_failure(step) is None
