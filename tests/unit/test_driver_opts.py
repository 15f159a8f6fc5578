"""Driver-opt validation: every opt is checked before anything is created."""

from __future__ import annotations

from pathlib import Path

import pytest

from pybuildx import drivers
from pybuildx.drivers.options import parse_duration
from pybuildx.drivers.remote import parse_opts as remote_opts
from pybuildx.drivers.spec import NodeSpec
from pybuildx.errors import ConfigError


@pytest.fixture
def pems(tmp_path: Path) -> dict[str, str]:
    files = {}
    for name in ("ca", "cert", "key"):
        path = tmp_path / f"{name}.pem"
        path.write_text("-----BEGIN X-----\n")
        files[name] = str(path)
    return files


def test_unknown_driver_opt_suggests_the_close_one() -> None:
    node = NodeSpec(
        name="n", driver="remote", endpoint="tcp://127.0.0.1:1234", driver_opts={"cacrt": "/x"}
    )
    with pytest.raises(ConfigError) as err:
        drivers.validate(node)
    assert "cacrt" in err.value.message
    assert err.value.hint is not None and "cacert" in err.value.hint


def test_unknown_driver_suggests_the_close_one() -> None:
    with pytest.raises(ConfigError) as err:
        drivers.validate(NodeSpec(name="n", driver="remot"))
    assert err.value.hint is not None and "remote" in err.value.hint


def test_tls_needs_cacert(pems: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="cacert"):
        remote_opts({"cert": pems["cert"], "key": pems["key"]}, "tcp://127.0.0.1:1")


def test_cert_needs_key(pems: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="key"):
        remote_opts({"cacert": pems["ca"], "cert": pems["cert"]}, "tcp://127.0.0.1:1")


def test_server_only_tls_is_allowed(pems: dict[str, str]) -> None:
    opts = remote_opts({"cacert": pems["ca"], "servername": "bk"}, "tcp://127.0.0.1:1")
    assert opts.tls is not None and opts.tls.cert is None and opts.servername == "bk"


def test_tls_paths_must_be_absolute_and_exist(pems: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="non-absolute"):
        remote_opts({"cacert": "ca.pem"}, "tcp://127.0.0.1:1")
    with pytest.raises(ConfigError, match="no such file"):
        remote_opts({"cacert": pems["ca"] + ".missing"}, "tcp://127.0.0.1:1")


def test_tls_needs_tcp(pems: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="tcp://"):
        remote_opts({"cacert": pems["ca"]}, "unix:///run/buildkit/buildkitd.sock")


def test_remote_rejects_flags_and_unknown_schemes() -> None:
    with pytest.raises(ConfigError, match="flags"):
        drivers.validate(
            NodeSpec(
                name="n", driver="remote", endpoint="unix:///x.sock", buildkitd_flags=("--debug",)
            )
        )
    with pytest.raises(ConfigError, match="unsupported endpoint"):
        drivers.validate(NodeSpec(name="n", driver="remote", endpoint="ssh://host"))


def test_remote_without_endpoint_uses_buildkit_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BUILDKIT_HOST", raising=False)
    with pytest.raises(ConfigError, match="no remote endpoint"):
        drivers.validate(NodeSpec(name="n", driver="remote"))
    monkeypatch.setenv("BUILDKIT_HOST", "unix:///run/buildkit/buildkitd.sock")
    drivers.validate(NodeSpec(name="n", driver="remote"))


def test_local_opts() -> None:
    drivers.validate(NodeSpec(name="n", driver="local", driver_opts={"timeout": "2m"}))
    with pytest.raises(ConfigError, match="--addr"):
        drivers.validate(NodeSpec(name="n", driver="local", buildkitd_flags=("--addr=tcp://x",)))
    with pytest.raises(ConfigError, match="endpoint"):
        drivers.validate(NodeSpec(name="n", driver="local", endpoint="tcp://127.0.0.1:1"))


def test_bool_and_duration_values_are_checked() -> None:
    with pytest.raises(ConfigError, match="default-load"):
        remote_opts({"default-load": "maybe"}, "unix:///x.sock")
    assert remote_opts({"default-load": "true"}, "unix:///x.sock").default_load
    assert parse_duration("t", "1m30s") == 90
    assert parse_duration("t", "45") == 45
    with pytest.raises(ConfigError):
        parse_duration("t", "soon")
