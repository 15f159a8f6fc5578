"""Image references, exporter attribute checks, index building and the metadata/iid files."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from pybuildx.buildspec import OutputSpec
from pybuildx.errors import ConfigError, RegistryError
from pybuildx.images.exporter import annotation_attrs, prepare_outputs
from pybuildx.images.merge import build_index
from pybuildx.images.metadata import decode_exporter_response, write_build_outputs
from pybuildx.images.reference import ImageRef, is_local_registry
from pybuildx.images.registry import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


def test_image_refs_normalise_like_docker() -> None:
    assert ImageRef.parse("busybox") == ImageRef("docker.io", "library/busybox")
    ref = ImageRef.parse("127.0.0.1:5000/team/app:v1")
    assert (ref.registry, ref.repository, ref.tag) == ("127.0.0.1:5000", "team/app", "v1")
    assert ImageRef.parse(f"ghcr.io/o/app@{DIGEST_A}").digest == DIGEST_A
    assert ImageRef.parse("docker.io/x/y").api_host == "registry-1.docker.io"
    assert is_local_registry("127.0.0.1:5443") and not is_local_registry("ghcr.io")
    with pytest.raises(ConfigError):
        ImageRef.parse("Registry.example/UPPER")


def test_annotations_map_to_exporter_attrs() -> None:
    assert annotation_attrs(["a.b=c", "index:org.desc=x=y", "manifest[linux/arm64]:k=v"]) == {
        "annotation.a.b": "c",
        "annotation-index.org.desc": "x=y",
        "annotation-manifest[linux/arm64].k": "v",
    }
    with pytest.raises(ConfigError, match="annotation type"):
        annotation_attrs(["layer:k=v"])


def test_prepare_outputs_adds_annotations_and_checks_values() -> None:
    (out,) = prepare_outputs([OutputSpec(type="image", attrs={"name": "r/x"})], ["k=v"])
    assert out.attrs == {"annotation.k": "v", "name": "r/x"}
    with pytest.raises(ConfigError, match="unknown compression 'zstandard'"):
        prepare_outputs([OutputSpec(type="image", attrs={"compression": "zstandard"})])
    with pytest.raises(ConfigError, match="push must be true or false"):
        prepare_outputs([OutputSpec(type="image", attrs={"push": "yes please"})])
    with pytest.raises(ConfigError, match="has one"):
        prepare_outputs(
            [OutputSpec(type="image", attrs={"name": "r/x:v1", "push-by-digest": "true"})]
        )
    # registry.insecure is never added by us.
    (plain,) = prepare_outputs([OutputSpec(type="image", attrs={"name": "r/x", "push": "true"})])
    assert "registry.insecure" not in plain.attrs


def _child(digest: str, arch: str, media_type: str = OCI_MANIFEST) -> dict[str, object]:
    return {
        "mediaType": media_type,
        "digest": digest,
        "size": 1,
        "platform": {"os": "linux", "architecture": arch},
    }


def test_build_index_dedupes_and_keeps_order() -> None:
    index = build_index(
        [_child(DIGEST_A, "amd64"), _child(DIGEST_B, "arm64"), _child(DIGEST_A, "amd64")]
    )
    body = index.json()
    assert index.media_type == OCI_INDEX == body["mediaType"]
    assert [m["digest"] for m in body["manifests"]] == [DIGEST_A, DIGEST_B]


def test_build_index_refuses_a_platform_built_twice() -> None:
    with pytest.raises(RegistryError, match="linux/amd64"):
        build_index([_child(DIGEST_A, "amd64"), _child(DIGEST_B, "amd64")])


def test_docker_children_make_a_docker_list() -> None:
    index = build_index([_child(DIGEST_A, "amd64", DOCKER_MANIFEST)])
    assert index.media_type == DOCKER_LIST


def test_metadata_decodes_like_buildx(tmp_path: Path) -> None:
    descriptor = {"mediaType": OCI_INDEX, "digest": DIGEST_A, "size": 10}
    response = {
        "containerimage.digest": DIGEST_A,
        "containerimage.config.digest": DIGEST_B,
        "containerimage.descriptor": base64.b64encode(json.dumps(descriptor).encode()).decode(),
        "image.name": "r/x:v1",
    }
    decoded = decode_exporter_response(response)
    assert decoded["containerimage.descriptor"] == descriptor
    assert decoded["image.name"] == "r/x:v1"
    meta, iid = tmp_path / "out" / "meta.json", tmp_path / "iid"
    write_build_outputs(meta, iid, response)
    assert json.loads(meta.read_text())["containerimage.descriptor"] == descriptor
    assert iid.read_text() == DIGEST_B
    write_build_outputs(None, iid, {"containerimage.digest": DIGEST_A})
    assert iid.read_text() == DIGEST_A
    assert not list(tmp_path.glob("**/.*"))  # no temporary files left behind
