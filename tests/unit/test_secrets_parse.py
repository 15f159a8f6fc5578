"""--secret parsing (buildx syntax) and loading: values read up front, registered for redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from pybuildx.buildkit.secrets import SecretSource, load_secrets, parse_secret
from pybuildx.errors import ConfigError, redact


def test_file_source_and_source_alias(tmp_path: Path) -> None:
    assert parse_secret(f"id=npm,src={tmp_path}/npmrc", {}) == SecretSource(
        "npm", file=tmp_path / "npmrc"
    )
    assert parse_secret("id=npm,source=/x/y", {}).file == Path("/x/y")


def test_env_source_forms() -> None:
    assert parse_secret("id=tok,env=GH_TOKEN", {}) == SecretSource("tok", env="GH_TOKEN")
    assert parse_secret("type=env,id=tok,src=GH_TOKEN", {}) == SecretSource("tok", env="GH_TOKEN")
    assert parse_secret("type=env,id=GH_TOKEN", {}) == SecretSource("GH_TOKEN", env="GH_TOKEN")


def test_bare_id_prefers_an_environment_variable() -> None:
    assert parse_secret("id=TOKEN", {"TOKEN": "x"}) == SecretSource("TOKEN", env="TOKEN")
    assert parse_secret("id=TOKEN", {}) == SecretSource("TOKEN", file=Path("TOKEN"))


def test_id_defaults_to_the_file_name() -> None:
    assert parse_secret("src=/run/keys/aws", {}).id == "aws"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("type=vault,id=x", "type must be file or env"),
        ("id=x,src=/a,env=B", "not both"),
        ("env=B", "id= is missing"),
        ("id=x,scr=/a", "unknown secret key 'scr'"),
    ],
)
def test_invalid_secrets(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_secret(text, {})


def test_load_reads_values_and_registers_them(tmp_path: Path) -> None:
    secret_file = tmp_path / "token"
    secret_file.write_bytes(b"file-secret-value")
    values = load_secrets(
        [SecretSource("a", file=secret_file), SecretSource("b", env="B_VAR")],
        {"B_VAR": "env-secret-value"},
    )
    assert values == {"a": b"file-secret-value", "b": b"env-secret-value"}
    assert redact("got file-secret-value and env-secret-value") == "got *** and ***"


def test_load_fails_early_for_missing_sources(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_secrets([SecretSource("a", file=tmp_path / "missing")], {})
    with pytest.raises(ConfigError, match="NOT_SET is not set"):
        load_secrets([SecretSource("b", env="NOT_SET")], {})
