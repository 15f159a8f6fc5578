"""BuildSpec validation: what users type into ``ci-build build`` and what it turns into."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pybuildx.buildspec import (
    OutputSpec,
    parse_add_host,
    parse_build_flags,
    parse_output,
    parse_size,
    parse_ulimit,
)
from pybuildx.config import Platform
from pybuildx.errors import ConfigError, UsageError


@pytest.fixture
def context(tmp_path: Path) -> Path:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    return tmp_path


def test_defaults_find_the_dockerfile_in_the_context(context: Path) -> None:
    spec = parse_build_flags(context=str(context))
    assert spec.context == context
    assert spec.dockerfile == context / "Dockerfile"
    assert spec.dockerfile_name == "Dockerfile"
    assert spec.outputs == ()


def test_dockerfile_outside_the_context(
    context: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    other = tmp_path_factory.mktemp("elsewhere") / "build.Dockerfile"
    other.write_text("FROM scratch\n")
    spec = parse_build_flags(context=str(context), file=str(other))
    assert spec.dockerfile == other
    assert spec.dockerfile_name == "build.Dockerfile"


def test_missing_context_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a directory"):
        parse_build_flags(context=str(tmp_path / "nope"))


def test_missing_dockerfile_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="Dockerfile not found") as info:
        parse_build_flags(context=str(tmp_path))
    assert info.value.exit_code == 2


def test_unreadable_dockerfile_is_a_usage_error(context: Path) -> None:
    (context / "Dockerfile").chmod(0)
    try:
        if os.geteuid() != 0:
            with pytest.raises(UsageError, match="cannot read"):
                parse_build_flags(context=str(context))
            return
        # Root reads any file: check in a child without the capabilities that let it.
        child = subprocess.run(
            [
                "setpriv",
                "--bounding-set",
                "-dac_override,-dac_read_search",
                "--",
                sys.executable,
                "-c",
                "import sys\n"
                "from pybuildx.buildspec import parse_build_flags\n"
                "from pybuildx.errors import UsageError\n"
                "try:\n"
                f"    parse_build_flags(context={str(context)!r})\n"
                "except UsageError as exc:\n"
                "    print(exc.render()); sys.exit(exc.exit_code)\n",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert child.returncode == 2, child.stderr
        assert child.stdout.startswith("error: cannot read the Dockerfile")
    finally:
        (context / "Dockerfile").chmod(0o644)


def test_dockerfile_from_stdin(context: Path) -> None:
    spec = parse_build_flags(context=str(context), file="-", stdin=b"FROM scratch\n")
    assert spec.dockerfile is None
    assert spec.dockerfile_text == b"FROM scratch\n"
    assert spec.context == context


def test_stdin_context_has_no_context_dir() -> None:
    spec = parse_build_flags(context="-", stdin=b"FROM scratch\n")
    assert spec.context is None
    assert spec.dockerfile_text == b"FROM scratch\n"


def test_empty_stdin_is_an_error(context: Path) -> None:
    with pytest.raises(UsageError, match="stdin"):
        parse_build_flags(context=str(context), file="-", stdin=b"")


def test_tar_context_on_stdin_is_refused() -> None:
    tar_header = b"x" * 257 + b"ustar" + b"\0" * 250
    with pytest.raises(UsageError, match="tar"):
        parse_build_flags(context="-", stdin=tar_header)


def test_bad_platform_is_a_config_error(context: Path) -> None:
    with pytest.raises(ConfigError, match="platform"):
        parse_build_flags(context=str(context), platforms=["linux/"])


def test_platforms_are_normalised_and_deduplicated(context: Path) -> None:
    spec = parse_build_flags(context=str(context), platforms=["linux/amd64,arm64", "amd64"])
    assert spec.platforms == (Platform("linux", "amd64"), Platform("linux", "arm64"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("type=local,dest=out", OutputSpec(type="local", dest="out")),
        ("out", OutputSpec(type="local", dest="out")),
        ("-", OutputSpec(type="tar", dest="-")),
        ("type=tar,dest=-", OutputSpec(type="tar", dest="-")),
        ("type=oci,dest=img.tar", OutputSpec(type="oci", dest="img.tar")),
        ("type=docker,dest=img.tar", OutputSpec(type="docker", dest="img.tar")),
        ("type=registry", OutputSpec(type="image", attrs={"push": "true"})),
        (
            "type=image,name=r/x,push=true",
            OutputSpec(type="image", attrs={"name": "r/x", "push": "true"}),
        ),
    ],
)
def test_output_parsing(text: str, expected: OutputSpec) -> None:
    assert parse_output(text) == expected


def test_unknown_output_type_suggests_the_nearest() -> None:
    with pytest.raises(ConfigError, match="unknown output type") as info:
        parse_output("type=loacl,dest=x")
    assert info.value.hint is not None and "local" in info.value.hint
    assert info.value.exit_code == 2


@pytest.mark.parametrize("text", ["type=local", "type=tar", "type=oci", "type=local,dest=-"])
def test_outputs_that_need_a_destination(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_output(text)


def test_tags_name_image_outputs_and_push_adds_a_registry_output(context: Path) -> None:
    spec = parse_build_flags(context=str(context), tags=["r/a:1", "r/a:2"], push=True)
    assert spec.outputs == (
        OutputSpec(type="image", attrs={"push": "true", "name": "r/a:1,r/a:2"}),
    )


def test_push_without_a_name_is_refused(context: Path) -> None:
    with pytest.raises(ConfigError, match="image name"):
        parse_build_flags(context=str(context), push=True)


def test_load_adds_a_docker_output_without_destination(context: Path) -> None:
    spec = parse_build_flags(context=str(context), tags=["x"], load=True)
    assert spec.outputs == (OutputSpec(type="docker", attrs={"name": "x"}),)


def test_cacheonly_output_exports_nothing(context: Path) -> None:
    assert parse_build_flags(context=str(context), outputs=["type=cacheonly"]).outputs == ()


def test_two_outputs_to_stdout_are_refused(context: Path) -> None:
    with pytest.raises(ConfigError, match="stdout"):
        parse_build_flags(context=str(context), outputs=["-", "type=oci,dest=-"])


def test_build_args_from_the_environment(context: Path) -> None:
    spec = parse_build_flags(
        context=str(context), build_args=["A=1", "B", "C"], environ={"B": "from-env"}
    )
    assert spec.build_args == {"A": "1", "B": "from-env"}


def test_named_contexts_resolve_local_dirs(context: Path) -> None:
    (context / "extra").mkdir()
    spec = parse_build_flags(
        context=str(context),
        build_contexts=["extra=extra", "base=docker-image://127.0.0.1:5000/busybox"],
    )
    assert spec.build_contexts == {
        "extra": str(context / "extra"),
        "base": "docker-image://127.0.0.1:5000/busybox",
    }
    assert spec.local_named_contexts == {"extra": context / "extra"}


def test_named_context_must_exist(context: Path) -> None:
    with pytest.raises(UsageError, match="not a directory"):
        parse_build_flags(context=str(context), build_contexts=["x=missing"])


@pytest.mark.parametrize(
    ("text", "expected"), [("64m", 64 << 20), ("1g", 1 << 30), ("1024", 1024), ("2kb", 2048)]
)
def test_sizes(text: str, expected: int) -> None:
    assert parse_size(text, what="--shm-size") == expected


def test_bad_size() -> None:
    with pytest.raises(ConfigError):
        parse_size("lots", what="--shm-size")


def test_ulimits() -> None:
    assert parse_ulimit("nofile=1024:2048") == "nofile=1024:2048"
    assert parse_ulimit("NPROC=10") == "nproc=10"
    with pytest.raises(ConfigError):
        parse_ulimit("nofiles=1")
    with pytest.raises(ConfigError):
        parse_ulimit("nofile=a:b")


def test_add_hosts() -> None:
    assert parse_add_host("db=10.0.0.5") == ("db", "10.0.0.5")
    assert parse_add_host("db:10.0.0.5") == ("db", "10.0.0.5")
    assert parse_add_host("v6=::1") == ("v6", "::1")
    with pytest.raises(ConfigError):
        parse_add_host("db=not-an-ip")


def test_unknown_progress_and_network(context: Path) -> None:
    with pytest.raises(ConfigError, match="progress"):
        parse_build_flags(context=str(context), progress="plian")
    with pytest.raises(ConfigError, match="network"):
        parse_build_flags(context=str(context), network="bridge0")
    assert parse_build_flags(context=str(context), network="default").network is None


def test_context_archive_from_stdin(tmp_path: Path) -> None:
    archive = tmp_path / "context.tar"
    archive.write_bytes(b"x")
    spec = parse_build_flags(context="-", context_tar=archive)
    assert spec.context is None
    assert spec.context_tar == archive
    assert spec.dockerfile is None
    assert spec.dockerfile_name == "Dockerfile"


def test_context_archive_with_a_local_dockerfile(tmp_path: Path) -> None:
    (tmp_path / "app.Dockerfile").write_text("FROM scratch\n")
    spec = parse_build_flags(
        context="-", context_tar=tmp_path / "c.tar", file=str(tmp_path / "app.Dockerfile")
    )
    assert spec.dockerfile == tmp_path / "app.Dockerfile"
    with pytest.raises(UsageError):
        parse_build_flags(context="-", context_tar=tmp_path / "c.tar", file="-")


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"x" * 257 + b"ustar\x0000", True),
        (b"\x1f\x8b\x08\x00", True),
        (b"BZh91AY", True),
        (b"\xfd7zXZ\x00\x00", True),
        (b"\x28\xb5\x2f\xfd\x00", False),
        (b"FROM scratch\n", False),
    ],
)
def test_archive_detection(head: bytes, expected: bool) -> None:
    from pybuildx.buildkit.upload import is_archive

    assert is_archive(head) is expected


def test_pax_tars_get_compressed_for_the_daemon(tmp_path: Path) -> None:
    import tarfile

    from pybuildx.buildkit.upload import needs_compression

    (tmp_path / "f").write_text("x")
    for fmt, expected in ((tarfile.PAX_FORMAT, True), (tarfile.GNU_FORMAT, False)):
        archive = tmp_path / f"{fmt}.tar"
        with tarfile.open(archive, "w", format=fmt, encoding="utf-8") as tar:
            tar.add(tmp_path / "f", arcname="\u00e9t\u00e9")  # non-ASCII: PAX needs a header
        assert needs_compression(archive.read_bytes()[:512]) is expected
