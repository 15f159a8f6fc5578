from __future__ import annotations

import pytest

from pybuildx.config import (
    Platform,
    parse_csv_options,
    parse_key_value,
    parse_platforms,
    reject_unknown,
)
from pybuildx.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("linux/amd64", "linux/amd64"),
        ("amd64", "linux/amd64"),
        ("linux/x86_64", "linux/amd64"),
        ("linux/aarch64", "linux/arm64"),
        ("linux/arm64/v8", "linux/arm64"),
        ("linux/arm", "linux/arm/v7"),
        ("linux/arm/v6", "linux/arm/v6"),
        (" Linux/AMD64 ", "linux/amd64"),
    ],
)
def test_platforms_are_normalised_like_containerd(text: str, expected: str) -> None:
    assert str(Platform.parse(text)) == expected


@pytest.mark.parametrize("text", ["", "linux/", "/amd64", "a/b/c/d", "plan9/x/y/z", "linux/amd 64"])
def test_bad_platforms_fail_with_a_hint(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        Platform.parse(text)
    assert "platform" in info.value.message


def test_platform_lists_split_commas_and_drop_repeats() -> None:
    parsed = parse_platforms(["linux/amd64,linux/arm64", "amd64", "linux/arm/v7"])
    assert [str(p) for p in parsed] == ["linux/amd64", "linux/arm64", "linux/arm/v7"]
    assert parsed[2].dir_name == "linux_arm_v7"


def test_csv_options_keep_quoted_commas() -> None:
    opts = parse_csv_options('type=image,"name=a:1,b:2",push=true,unpack', what="output")
    assert opts == {"type": "image", "name": "a:1,b:2", "push": "true", "unpack": ""}


def test_csv_options_split_at_first_equals() -> None:
    assert parse_csv_options("nodeselector=a=b", what="driver option") == {"nodeselector": "a=b"}


def test_key_value_requires_equals() -> None:
    assert parse_key_value("A=", what="build arg") == ("A", "")
    with pytest.raises(ConfigError):
        parse_key_value("A", what="build arg")


def test_unknown_keys_get_a_did_you_mean() -> None:
    with pytest.raises(ConfigError) as info:
        reject_unknown(["namespce"], ["namespace", "replicas"], what="driver option")
    assert info.value.hint == "did you mean 'namespace'?"
    assert info.value.exit_code == 2
