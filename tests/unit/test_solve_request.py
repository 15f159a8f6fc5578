"""SolveRequest assembly: every build flag must reach the daemon under the attribute it reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from pybuildx.buildkit.solve import frontend_attrs, named_context_locals, solve_request
from pybuildx.buildspec import BuildSpec, OutputSpec, parse_build_flags
from pybuildx.config import Platform


@pytest.fixture
def context(tmp_path: Path) -> Path:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "assets").mkdir()
    return tmp_path


def _spec(context: Path, **flags: object) -> BuildSpec:
    return parse_build_flags(context=str(context), **flags)  # type: ignore[arg-type]


def test_frontend_attrs_carry_every_option(context: Path) -> None:
    spec = _spec(
        context,
        target="final",
        build_args=["VERSION=1.2"],
        labels=["org.example=yes"],
        platforms=["linux/amd64", "linux/arm64"],
        no_cache_filter=["deps,test"],
        add_hosts=["db=10.0.0.5", "cache:10.0.0.6"],
        network="none",
        shm_size="128m",
        ulimits=["nofile=1024:2048", "nproc=64"],
        build_contexts=["assets=assets", "base=docker-image://127.0.0.1:5000/busybox"],
    )
    assert frontend_attrs(spec) == {
        "filename": "Dockerfile",
        "target": "final",
        "build-arg:VERSION": "1.2",
        "label:org.example": "yes",
        "platform": "linux/amd64,linux/arm64",
        "no-cache": "deps,test",
        "add-hosts": "db=10.0.0.5,cache=10.0.0.6",
        "force-network-mode": "none",
        "shm-size": str(128 << 20),
        "ulimit": "nofile=1024:2048,nproc=64",
        "context:assets": "local:assets",
        "context:base": "docker-image://127.0.0.1:5000/busybox",
    }


def test_no_cache_for_all_stages_is_an_empty_value(context: Path) -> None:
    assert frontend_attrs(_spec(context, no_cache=True))["no-cache"] == ""
    assert "no-cache" not in frontend_attrs(_spec(context))


def test_platform_override_and_multi_platform(context: Path) -> None:
    spec = _spec(context, platforms=["linux/amd64,linux/arm64"])
    attrs = frontend_attrs(spec, platforms=[Platform("linux", "arm64")], multi_platform=True)
    assert attrs["platform"] == "linux/arm64"
    assert attrs["multi-platform"] == "true"


def test_named_contexts_never_shadow_the_main_locals(context: Path) -> None:
    spec = _spec(context, build_contexts=["context=assets", "dockerfile=assets"])
    assert named_context_locals(spec) == {
        "context": "named-context",
        "dockerfile": "named-dockerfile",
    }
    assert frontend_attrs(spec)["context:context"] == "local:named-context"


def test_exporters_in_both_the_new_and_the_legacy_fields(context: Path) -> None:
    spec = _spec(context, outputs=["type=tar,dest=out.tar", "type=local,dest=out"])
    request = solve_request(spec, ref="ref1", session_id="sess1")
    assert request.Ref == "ref1"
    assert request.Session == "sess1"
    assert request.Frontend == "dockerfile.v0"
    assert [(e.Type, dict(e.Attrs)) for e in request.Exporters] == [("tar", {}), ("local", {})]
    assert request.ExporterDeprecated == "tar"
    assert not request.HasField("Definition")


def test_dest_stays_on_the_client(context: Path) -> None:
    spec = _spec(context, tags=["127.0.0.1:5000/x:1"], outputs=["type=oci,dest=img.tar"])
    request = solve_request(spec, ref="r", session_id="s")
    assert dict(request.Exporters[0].Attrs) == {"name": "127.0.0.1:5000/x:1"}
    assert dict(request.ExporterAttrsDeprecated) == {"name": "127.0.0.1:5000/x:1"}


def test_registry_output_is_an_image_push(context: Path) -> None:
    spec = _spec(context, tags=["r/x"], outputs=["type=registry"])
    request = solve_request(spec, ref="r", session_id="s")
    assert request.Exporters[0].Type == "image"
    assert dict(request.Exporters[0].Attrs) == {"push": "true", "name": "r/x"}


def test_outputs_override(context: Path) -> None:
    spec = _spec(context, outputs=["type=tar,dest=a.tar"])
    request = solve_request(
        spec, ref="r", session_id="s", outputs=[OutputSpec(type="oci", dest="/tmp/x")]
    )
    assert [e.Type for e in request.Exporters] == ["oci"]


def test_cache_options_are_always_sent(context: Path) -> None:
    # A SolveRequest without Cache crashes BuildKit v0.17+ daemons (nil dereference).
    request = solve_request(_spec(context), ref="r", session_id="s")
    assert request.HasField("Cache")
    assert b"\x42\x00" in request.SerializeToString()


def test_no_outputs_means_no_exporter(context: Path) -> None:
    request = solve_request(_spec(context), ref="r", session_id="s")
    assert list(request.Exporters) == []
    assert request.ExporterDeprecated == ""


def test_host_network_asks_for_the_entitlement(context: Path) -> None:
    request = solve_request(_spec(context, network="host"), ref="r", session_id="s")
    assert list(request.Entitlements) == ["network.host"]
    request = solve_request(_spec(context, allow=["security.insecure"]), ref="r", session_id="s")
    assert list(request.Entitlements) == ["security.insecure"]


def test_extra_frontend_attrs_win(context: Path) -> None:
    request = solve_request(
        _spec(context),
        ref="r",
        session_id="s",
        extra_frontend_attrs={"attest:provenance": "mode=min", "filename": "Other"},
    )
    assert request.FrontendAttrs["attest:provenance"] == "mode=min"
    assert request.FrontendAttrs["filename"] == "Other"


def test_request_survives_the_wire(context: Path) -> None:
    from pybuildx.buildkit._pb import control_pb2

    spec = _spec(context, build_args=["A=1"], outputs=["-"])
    request = solve_request(spec, ref="r", session_id="s")
    again = control_pb2.SolveRequest.FromString(request.SerializeToString())
    assert again == request


def test_stdin_dockerfile_is_private_and_wiped(context: Path) -> None:
    import stat

    from pybuildx.buildkit.build import prepared_locals

    spec = _spec(context, file="-", stdin=b"FROM scratch\n")
    with prepared_locals(spec) as dirs:
        holder = dirs["dockerfile"]
        assert dirs["context"] == context
        assert holder != context
        assert stat.S_IMODE(holder.stat().st_mode) == 0o700
        dockerfile = holder / "Dockerfile"
        assert stat.S_IMODE(dockerfile.stat().st_mode) == 0o600
        assert dockerfile.read_bytes() == b"FROM scratch\n"
    assert not holder.exists()


def test_locals_for_named_contexts_and_an_outside_dockerfile(
    context: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from pybuildx.buildkit.build import prepared_locals

    other = tmp_path_factory.mktemp("df") / "app.Dockerfile"
    other.write_text("FROM scratch\n")
    spec = _spec(context, file=str(other), build_contexts=["assets=assets"])
    with prepared_locals(spec) as dirs:
        assert dirs == {
            "context": context,
            "dockerfile": other.parent,
            "assets": context / "assets",
        }
    assert frontend_attrs(spec)["filename"] == "app.Dockerfile"


def test_empty_context_for_stdin_builds() -> None:
    from pybuildx.buildkit.build import prepared_locals

    spec = parse_build_flags(context="-", stdin=b"FROM scratch\n")
    with prepared_locals(spec) as dirs:
        assert list(dirs["context"].iterdir()) == []
    assert not dirs["context"].exists()


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (None, False),
        ("v0.12.5", False),
        ("v0.13.0", True),
        ("v0.34.2", True),
        ("v0.0.0+unknown", True),
        ("v1.0.0", True),
        ("weird", True),
    ],
)
def test_several_exporters_need_buildkit_0_13(version: str | None, expected: bool) -> None:
    from pybuildx.buildkit.build import _supports_several_exporters
    from pybuildx.buildkit.control import DaemonInfo

    info = None if version is None else DaemonInfo("github.com/moby/buildkit", version, "")
    assert _supports_several_exporters(info) is expected
