"""What every build gets from buildkit/extras.py: services, attributes and clearer failures."""

from __future__ import annotations

from pathlib import Path

from pybuildx.buildkit.auth import AuthAttachable
from pybuildx.buildkit.extras import build_extras, registry_failure
from pybuildx.buildkit.secrets import SecretsAttachable
from pybuildx.buildspec import BuildSpec, OutputSpec, parse_build_flags
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
