"""Attestation options → FrontendAttrs, with buildx's default (min provenance) and its opt-outs."""

from __future__ import annotations

import pytest

from pybuildx.buildkit.attest import attestation_frontend_attrs, parse_attest
from pybuildx.errors import ConfigError

DEFAULT = {"attest:provenance": "mode=min,inline-only=true"}


def test_default_is_min_provenance_inline_only() -> None:
    assert attestation_frontend_attrs(environ={}) == DEFAULT


@pytest.mark.parametrize("value", ["false", "0", "False"])
def test_provenance_false_turns_the_default_off(value: str) -> None:
    assert attestation_frontend_attrs(provenance=value, environ={}) == {}


def test_environment_turns_the_default_off() -> None:
    assert attestation_frontend_attrs(environ={"BUILDX_NO_DEFAULT_ATTESTATIONS": "1"}) == {}
    assert attestation_frontend_attrs(environ={"BUILDX_NO_DEFAULT_ATTESTATIONS": "false"}) == (
        DEFAULT
    )


def test_shorthands_pass_fields_through() -> None:
    attrs = attestation_frontend_attrs(provenance="mode=max", sbom="true", environ={})
    assert attrs == {"attest:provenance": "mode=max", "attest:sbom": ""}


def test_attest_flag_and_disabled() -> None:
    attrs = attestation_frontend_attrs(
        ["type=sbom,generator=example/gen:1", "type=provenance,disabled=true"], environ={}
    )
    assert attrs == {"attest:sbom": "generator=example/gen:1"}


def test_values_with_commas_are_quoted() -> None:
    item = parse_attest('type=provenance,"builder-id=a,b"')
    assert item.value() == '"builder-id=a,b"'


def test_unknown_type_is_rejected() -> None:
    with pytest.raises(ConfigError, match="provenance or sbom"):
        parse_attest("type=slsa")
