from __future__ import annotations

import pytest

from pybuildx.errors import (
    BuildFailed,
    ConfigError,
    ConnectError,
    PybuildxError,
    redact,
    register_secret,
)


def test_exit_codes_follow_the_tree() -> None:
    assert ConfigError("x").exit_code == 2
    assert ConnectError("x").exit_code == 2
    assert BuildFailed("x").exit_code == 1
    assert PybuildxError("x").exit_code == 1


def test_render_is_one_line_plus_hint() -> None:
    err = ConfigError("bad\n  value   here", hint="use this instead")
    assert err.render() == "error: bad value here\nhint: use this instead"


def test_registered_secrets_never_reach_messages() -> None:
    register_secret("s3cr3t-token-value")
    err = PybuildxError("login failed with s3cr3t-token-value", hint="token s3cr3t-token-value")
    assert "s3cr3t" not in err.render()
    assert "s3cr3t" not in str(err)


def test_multiline_secret_is_masked_line_by_line() -> None:
    pem = "-----BEGIN KEY-----\nAAAABBBBCCCCDDDD\nEEEEFFFFGGGG\n-----END KEY-----\n"
    register_secret(pem)
    assert "AAAABBBBCCCCDDDD" not in redact("line: AAAABBBBCCCCDDDD")
    assert "EEEEFFFFGGGG" not in redact("EEEEFFFFGGGG!")


def test_short_values_are_not_treated_as_secrets() -> None:
    # Masking "a" would destroy every message; GitHub refuses such masks too.
    register_secret("ab")
    assert redact("a b ab") == "a b ab"


@pytest.mark.parametrize("value", [None, b"bytes-secret-1"])
def test_register_accepts_bytes_and_none(value: bytes | None) -> None:
    register_secret(value)
    if value:
        assert redact("x bytes-secret-1 y") == "x *** y"
