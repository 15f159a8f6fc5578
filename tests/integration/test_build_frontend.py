"""Dockerfile builds on the bed daemons: every frontend option must change what gets exported."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest

from pybuildx.buildspec import parse_build_flags
from pybuildx.config import Platform
from pybuildx.errors import BuildFailed
from tests.integration.buildhelp import (
    build_on,
    ci_build_bytes,
    image_config,
    make_context,
    oci_index,
)
from tests.testbed import Daemon

pytestmark = pytest.mark.integration


def test_copy_from_the_context_to_a_local_dir(daemon: Daemon, tmp_path: Path) -> None:
    context = make_context(
        tmp_path / "ctx",
        "FROM scratch\nCOPY hello.txt sub/ /\n",
        {"hello.txt": "hi\n", "sub/a": "a"},
    )
    out = tmp_path / "out"
    _, result = build_on(daemon, context=str(context), outputs=[f"type=local,dest={out}"])
    assert (out / "hello.txt").read_text() == "hi\n"
    assert (out / "a").read_text() == "a"
    assert result.digest is None


def test_mtls_tcp_build(daemon: Daemon, tmp_path: Path) -> None:
    context = make_context(tmp_path / "ctx", "FROM scratch\nCOPY f /\n", {"f": "over tls"})
    out = tmp_path / "out"
    build_on(daemon, tcp=True, context=str(context), outputs=[f"type=local,dest={out}"])
    assert (out / "f").read_text() == "over tls"


def test_target_selects_the_stage(daemon: Daemon, tmp_path: Path) -> None:
    dockerfile = "FROM scratch AS one\nCOPY a /\n\nFROM scratch AS two\nCOPY b /\n"
    context = make_context(tmp_path / "ctx", dockerfile, {"a": "a", "b": "b"})
    out = tmp_path / "out"
    build_on(daemon, context=str(context), target="one", outputs=[f"type=local,dest={out}"])
    assert sorted(p.name for p in out.iterdir()) == ["a"]


def test_build_args_reach_the_dockerfile(daemon: Daemon, tmp_path: Path) -> None:
    dockerfile = "FROM scratch\nARG PICK=a\nCOPY ${PICK} /picked\n"
    context = make_context(tmp_path / "ctx", dockerfile, {"a": "default", "b": "chosen"})
    out = tmp_path / "out"
    build_on(
        daemon, context=str(context), build_args=["PICK=b"], outputs=[f"type=local,dest={out}"]
    )
    assert (out / "picked").read_text() == "chosen"


def test_labels_and_tags_land_in_the_image(daemon: Daemon, tmp_path: Path) -> None:
    context = make_context(tmp_path / "ctx", "FROM scratch\nCOPY f /\n", {"f": "x"})
    image = tmp_path / "image.tar"
    _, result = build_on(
        daemon,
        context=str(context),
        labels=["org.example.team=ci"],
        tags=["127.0.0.1:5000/pybuildx-test/labels:1"],
        outputs=[f"type=oci,dest={image}"],
    )
    config = image_config(image)
    assert config["config"]["Labels"]["org.example.team"] == "ci"
    assert result.digest and result.digest.startswith("sha256:")
    assert oci_index(image)["manifests"][0]["digest"] == result.digest
    annotations = oci_index(image)["manifests"][0].get("annotations", {})
    assert "127.0.0.1:5000/pybuildx-test/labels:1" in annotations.values()
    assert result.descriptor is not None and result.descriptor["digest"] == result.digest


def test_platform_sets_the_image_architecture(daemon: Daemon, tmp_path: Path) -> None:
    context = make_context(tmp_path / "ctx", "FROM scratch\nCOPY f /\n", {"f": "x"})
    image = tmp_path / "image.tar"
    build_on(
        daemon, context=str(context), platforms=["linux/arm64"], outputs=[f"type=oci,dest={image}"]
    )
    config = image_config(image)
    assert (config["os"], config["architecture"]) == ("linux", "arm64")


def test_multi_platform_in_one_solve(daemon: Daemon, tmp_path: Path) -> None:
    dockerfile = "FROM scratch\nARG TARGETARCH\nCOPY ${TARGETARCH}.txt /arch.txt\n"
    context = make_context(
        tmp_path / "ctx", dockerfile, {"amd64.txt": "amd64", "arm64.txt": "arm64"}
    )
    out, image = tmp_path / "out", tmp_path / "image.tar"
    build_on(
        daemon,
        context=str(context),
        platforms=["linux/amd64,linux/arm64"],
        outputs=[f"type=local,dest={out}", f"type=oci,dest={image}"],
    )
    assert (out / "linux_amd64" / "arch.txt").read_text() == "amd64"
    assert (out / "linux_arm64" / "arch.txt").read_text() == "arm64"
    assert image_config(image, "arm64")["architecture"] == "arm64"
    assert image_config(image, "amd64")["architecture"] == "amd64"


def test_platform_override_per_node(daemon: Daemon, tmp_path: Path) -> None:
    context = make_context(tmp_path / "ctx", "FROM scratch\nCOPY f /\n", {"f": "x"})
    image = tmp_path / "image.tar"
    build_on(
        daemon,
        node_platforms=(Platform("linux", "arm64"),),
        context=str(context),
        outputs=[f"type=oci,dest={image}"],
    )
    assert image_config(image)["architecture"] == "arm64"


def test_named_build_context_from_a_local_dir(daemon: Daemon, tmp_path: Path) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "from-extra").write_text("named")
    context = make_context(tmp_path / "ctx", "FROM scratch\nCOPY --from=assets from-extra /\n")
    out = tmp_path / "out"
    build_on(
        daemon,
        context=str(context),
        build_contexts=[f"assets={extra}"],
        outputs=[f"type=local,dest={out}"],
    )
    assert (out / "from-extra").read_text() == "named"


def test_dockerfile_outside_the_context(daemon: Daemon, tmp_path: Path) -> None:
    context = make_context(tmp_path / "ctx", "FROM scratch\n", {"f": "ctx"})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "app.Dockerfile").write_text("FROM scratch\nCOPY f /copied\n")
    out = tmp_path / "out"
    build_on(
        daemon,
        context=str(context),
        file=str(elsewhere / "app.Dockerfile"),
        outputs=[f"type=local,dest={out}"],
    )
    assert (out / "copied").read_text() == "ctx"


def test_dockerfile_from_stdin(daemon: Daemon, tmp_path: Path) -> None:
    context = make_context(tmp_path / "ctx", "FROM scratch\nCOPY missing /\n", {"f": "ctx"})
    out = tmp_path / "out"
    build_on(
        daemon,
        context=str(context),
        file="-",
        stdin=b"FROM scratch\nCOPY f /from-stdin\n",
        outputs=[f"type=local,dest={out}"],
    )
    assert (out / "from-stdin").read_text() == "ctx"


def test_tar_and_oci_outputs_in_one_build(daemon: Daemon, tmp_path: Path) -> None:
    context = make_context(tmp_path / "ctx", "FROM scratch\nCOPY f /\n", {"f": "x"})
    tar_path, oci_path = tmp_path / "fs.tar", tmp_path / "oci.tar"
    build_on(
        daemon,
        context=str(context),
        outputs=[f"type=tar,dest={tar_path}", f"type=oci,dest={oci_path}"],
    )
    with tarfile.open(tar_path) as tar:
        assert tar.getnames() == ["f"]
    assert oci_index(oci_path)["manifests"]


def test_bad_dockerfile_line_is_named(daemon: Daemon, tmp_path: Path) -> None:
    context = make_context(tmp_path / "ctx", "FROM scratch\nCOPY f /\nBOGUS thing\n", {"f": "x"})
    with pytest.raises(BuildFailed) as info:
        build_on(daemon, context=str(context))
    assert info.value.exit_code == 1
    assert "BOGUS" in info.value.message
    assert "Dockerfile:3" in info.value.message


def test_missing_file_error_names_the_copy_line(daemon: Daemon, tmp_path: Path) -> None:
    context = make_context(tmp_path / "ctx", "FROM scratch\nCOPY missing.txt /\n")
    with pytest.raises(BuildFailed) as info:
        build_on(daemon, context=str(context))
    assert "missing.txt" in info.value.message
    assert "Dockerfile:2: COPY missing.txt /" in info.value.message


def _ci_build_quiet(
    daemon: Daemon, *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """``ci-build build --builder-addr <daemon> --progress quiet ARGS``."""
    return ci_build_bytes(
        "build", "--builder-addr", daemon.unix_addr, "--progress", "quiet", *args, stdin=stdin
    )


def test_cli_tar_to_stdout(daemon: Daemon, tmp_path: Path) -> None:
    context = make_context(tmp_path / "ctx", "FROM scratch\nCOPY f /\n", {"f": "piped"})
    result = _ci_build_quiet(daemon, str(context), "-o", "-")
    assert result.returncode == 0, result.stderr.decode()
    (tmp_path / "out.tar").write_bytes(result.stdout)
    with tarfile.open(tmp_path / "out.tar") as tar:
        member = tar.extractfile("f")
        assert member is not None and member.read() == b"piped"


def test_cli_prints_the_digest(daemon: Daemon, tmp_path: Path) -> None:
    context = make_context(tmp_path / "ctx", "FROM scratch\nCOPY f /\n", {"f": "x"})
    image = tmp_path / "image.tar"
    result = _ci_build_quiet(
        daemon, str(context), "--provenance", "false", "-o", f"type=oci,dest={image}"
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().strip() == oci_index(image)["manifests"][0]["digest"]


def test_cli_build_failure_exits_1_with_the_line(daemon: Daemon, tmp_path: Path) -> None:
    context = make_context(tmp_path / "ctx", "FROM scratch\nCOPY nope /\n")
    result = _ci_build_quiet(daemon, str(context))
    assert result.returncode == 1
    stderr = result.stderr.decode()
    assert "error: build failed" in stderr
    assert "Dockerfile:2: COPY nope /" in stderr
    assert "Traceback" not in stderr


def test_cli_bad_flags_exit_2(tmp_path: Path) -> None:
    context = make_context(tmp_path / "ctx", "FROM scratch\n")
    result = ci_build_bytes(
        "build", str(context), "--builder-addr", "unix:///nowhere", "-o", "type=tarball,dest=x"
    )
    assert result.returncode == 2
    assert result.stderr.decode().startswith("error: unknown output type 'tarball'")


def test_spec_stays_valid_for_the_pipeline(tmp_path: Path) -> None:
    # build() takes specs the pipeline built without the CLI too.
    context = make_context(tmp_path / "ctx", "FROM scratch\n")
    assert parse_build_flags(context=str(context)).context == context


@pytest.mark.parametrize("compress", ["", "gz"])
def test_cli_context_archive_on_stdin(daemon: Daemon, tmp_path: Path, compress: str) -> None:
    context = make_context(tmp_path / "ctx", "FROM scratch\nCOPY f /from-tar\n", {"f": "tarred"})
    archive = tmp_path / "context.tar"
    with tarfile.open(archive, f"w:{compress}") as tar:
        tar.add(context, arcname=".")
    out = tmp_path / "out"
    result = _ci_build_quiet(
        daemon, "-", "-o", f"type=local,dest={out}", stdin=archive.read_bytes()
    )
    assert result.returncode == 0, result.stderr.decode()
    assert (out / "from-tar").read_text() == "tarred"


def test_cli_context_archive_with_a_local_dockerfile(daemon: Daemon, tmp_path: Path) -> None:
    context = make_context(tmp_path / "ctx", "FROM scratch\nCOPY missing /\n", {"f": "tarred"})
    archive = tmp_path / "context.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(context, arcname=".")
    (tmp_path / "local.Dockerfile").write_text("FROM scratch\nCOPY f /renamed\n")
    out = tmp_path / "out"
    result = _ci_build_quiet(
        daemon,
        "-",
        "-f",
        str(tmp_path / "local.Dockerfile"),
        "-o",
        f"type=local,dest={out}",
        stdin=archive.read_bytes(),
    )
    assert result.returncode == 0, result.stderr.decode()
    assert (out / "renamed").read_text() == "tarred"


def test_cli_dockerfile_on_stdin_without_context(daemon: Daemon, tmp_path: Path) -> None:
    image = tmp_path / "image.tar"
    result = _ci_build_quiet(
        daemon,
        "-",
        "--provenance",
        "false",
        "-o",
        f"type=oci,dest={image}",
        stdin=b"FROM scratch\nLABEL from=stdin\n",
    )
    assert result.returncode == 0, result.stderr.decode()
    assert image_config(image)["config"]["Labels"] == {"from": "stdin"}


def test_cli_takes_the_daemon_from_buildkit_host(daemon: Daemon, tmp_path: Path) -> None:
    context = make_context(tmp_path / "ctx", "FROM scratch\nCOPY f /\n", {"f": "env"})
    out = tmp_path / "out"
    result = ci_build_bytes(
        "build",
        str(context),
        "--progress",
        "quiet",
        "-o",
        f"type=local,dest={out}",
        env={"BUILDKIT_HOST": daemon.unix_addr, "PYBUILDX_BUILDER": "", "BUILDX_BUILDER": ""},
    )
    assert result.returncode == 0, result.stderr.decode()
    assert (out / "f").read_text() == "env"
