"""--cache-to/--cache-from → SolveRequest.Cache and FrontendAttrs, including local cache indexes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pybuildx.buildkit.cache import parse_cache_entry, plan_cache, record_local_exports
from pybuildx.errors import ConfigError, redact

REF_NAME = "org.opencontainers.image.ref.name"


def test_bare_value_is_a_registry_ref() -> None:
    entry = parse_cache_entry("r.example/app:cache", export=False)
    assert entry is not None
    assert (entry.type, dict(entry.attrs)) == ("registry", {"ref": "r.example/app:cache"})


def test_exports_default_to_mode_min_and_keep_options() -> None:
    plan = plan_cache(
        [
            "type=registry,ref=r/app:cache,image-manifest=true,oci-mediatypes=true,"
            "ignore-error=true",
            "type=inline",
        ],
        [],
    )
    registry, inline = plan.to_proto().Exports
    assert registry.Type == "registry"
    assert dict(registry.Attrs) == {
        "ref": "r/app:cache",
        "mode": "min",
        "image-manifest": "true",
        "oci-mediatypes": "true",
        "ignore-error": "true",
    }
    assert (inline.Type, dict(inline.Attrs)) == ("inline", {})
    assert plan.frontend_attrs() == {}


def test_imports_go_to_the_request_and_the_frontend() -> None:
    plan = plan_cache([], ["type=registry,ref=r/app:cache", "r/app:latest"])
    assert [dict(i.Attrs) for i in plan.to_proto().Imports] == [
        {"ref": "r/app:cache"},
        {"ref": "r/app:latest"},
    ]
    assert json.loads(plan.frontend_attrs()["cache-imports"]) == [
        {"Type": "registry", "Attrs": {"ref": "r/app:cache"}},
        {"Type": "registry", "Attrs": {"ref": "r/app:latest"}},
    ]


@pytest.mark.parametrize(
    ("text", "export", "message"),
    [
        ("type=registry,mode=max", True, "ref= is required"),
        ("type=registry,ref=x,mode=all", True, "mode must be min or max"),
        ("type=local", True, "dest= is required"),
        ("type=local", False, "src= is required"),
        ("type=inline", False, "imported with type=registry"),
        ("type=redis,ref=x", True, "unknown cache type"),
        ("ref=x", True, "type= is missing"),
    ],
)
def test_invalid_entries(text: str, export: bool, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_cache_entry(text, export=export)


@pytest.mark.parametrize("text", ["token=t0k3n-untyped,url=u", "type=redis,token=t0k3n-untyped"])
def test_a_token_in_an_invalid_entry_is_masked_in_the_error(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_cache_entry(text, export=True)
    assert "t0k3n-untyped" not in caught.value.render()


def test_gha_entries_take_the_given_defaults_and_mask_the_token() -> None:
    defaults = {"url": "https://cache.example/", "token": "default-token-value"}
    entry = parse_cache_entry("type=gha,scope=app", export=False, gha_defaults=defaults)
    assert entry is not None
    assert dict(entry.attrs) == {"scope": "app", **defaults}
    assert "default-token-value" not in redact("token default-token-value")
    explicit = parse_cache_entry(
        "type=gha,url=https://u/,token=t0k3n-explicit", export=False, gha_defaults=defaults
    )
    assert explicit is not None
    assert dict(explicit.attrs) == {"url": "https://u/", "token": "t0k3n-explicit"}
    # Defaults are for gha entries only.
    other = parse_cache_entry("type=registry,ref=r/app:cache", export=False, gha_defaults=defaults)
    assert other is not None and dict(other.attrs) == {"ref": "r/app:cache"}


def test_local_export_needs_a_content_store_and_index(tmp_path: Path) -> None:
    plan = plan_cache([f"type=local,dest={tmp_path}/cache,tag=v1"], [])
    assert plan.content_stores == {f"local:{tmp_path}/cache": tmp_path / "cache"}
    descriptor = {
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": "sha256:" + "a" * 64,
        "size": 10,
    }
    record_local_exports(plan, {"cache.manifest": json.dumps(descriptor)})
    index = json.loads((tmp_path / "cache" / "index.json").read_text())
    assert index["manifests"] == [{**descriptor, "annotations": {REF_NAME: "v1"}}]

    again = {**descriptor, "digest": "sha256:" + "b" * 64}
    record_local_exports(plan, {"cache.manifest": json.dumps(again)})
    index = json.loads((tmp_path / "cache" / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [again["digest"]]


def test_local_import_resolves_the_digest_by_tag(tmp_path: Path) -> None:
    digest = "sha256:" + "c" * 64
    (tmp_path / "index.json").write_text(
        json.dumps({"manifests": [{"digest": digest, "annotations": {REF_NAME: "latest"}}]})
    )
    plan = plan_cache([], [f"type=local,src={tmp_path}"])
    (entry,) = plan.imports
    assert dict(entry.attrs) == {"src": str(tmp_path), "digest": digest}
    assert plan.content_stores == {f"local:{tmp_path}": tmp_path}


def test_missing_local_import_is_skipped_with_a_warning(tmp_path: Path) -> None:
    plan = plan_cache([], [f"type=local,src={tmp_path}/none"])
    assert plan.imports == ()
    assert plan.warnings and "not found" in plan.warnings[0]
