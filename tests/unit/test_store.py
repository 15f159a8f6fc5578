"""The builder store and ``builder create`` semantics (append, node replace, leave, rollback)."""

from __future__ import annotations

import json
import multiprocessing
import stat
from pathlib import Path

import pytest

from pybuildx.builders.manage import CreateRequest, apply_create, leave_node
from pybuildx.builders.model import BuilderSpec
from pybuildx.builders.store import Store, default_root
from pybuildx.config import parse_platforms
from pybuildx.errors import ConfigError, UsageError


def _remote(name: str | None, endpoint: str, **kwargs: object) -> CreateRequest:
    return CreateRequest(name=name, driver="remote", endpoint=endpoint, **kwargs)  # type: ignore[arg-type]


def test_store_location_follows_pybuildx_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PYBUILDX_CONFIG", str(tmp_path / "cfg"))
    assert default_root() == tmp_path / "cfg"
    monkeypatch.delenv("PYBUILDX_CONFIG")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert default_root() == tmp_path / "xdg" / "pybuildx"


def test_saved_builder_round_trips_private_and_atomic(tmp_path: Path) -> None:
    store = Store(tmp_path / "cfg")
    builder = apply_create(
        None,
        _remote("ci", "unix:///run/bk.sock", platforms=parse_platforms(["linux/arm64"])),
    )
    with store.transaction():
        store.save(builder)
    assert store.load("ci") == builder
    path = tmp_path / "cfg" / "builders" / "ci.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["Nodes"][0]["Name"] == "ci0"
    assert [p.name for p in path.parent.iterdir()] == ["ci.json"]  # no temp files left


def test_unknown_builder_names_the_known_ones(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.save(apply_create(None, _remote("one", "unix:///a.sock")))
    with pytest.raises(UsageError) as err:
        store.load("two")
    assert err.value.hint is not None and "one" in err.value.hint


def test_existing_builder_needs_append_or_node() -> None:
    first = apply_create(None, _remote("ci", "unix:///a.sock"))
    with pytest.raises(UsageError, match="already exists"):
        apply_create(first, _remote("ci", "unix:///b.sock"))


def test_append_names_nodes_and_moves_pinned_platforms() -> None:
    first = apply_create(
        None,
        _remote("ci", "unix:///a.sock", platforms=parse_platforms(["linux/amd64,linux/arm64"])),
    )
    second = apply_create(
        first,
        _remote("ci", "unix:///b.sock", append=True, platforms=parse_platforms(["linux/arm64"])),
    )
    assert [n.name for n in second.nodes] == ["ci0", "ci1"]
    assert [str(p) for p in second.nodes[0].platforms] == ["linux/amd64"]
    assert [str(p) for p in second.nodes[1].platforms] == ["linux/arm64"]


def test_same_node_name_replaces_in_place() -> None:
    first = apply_create(None, _remote("ci", "unix:///a.sock", node="x"))
    both = apply_create(first, _remote("ci", "unix:///b.sock", append=True))
    changed = apply_create(both, _remote("ci", "unix:///c.sock", node="x"))
    assert [(n.name, n.endpoint) for n in changed.nodes] == [
        ("x", "unix:///c.sock"),
        ("ci0", "unix:///b.sock"),
    ]


def test_duplicate_endpoint_and_driver_mismatch_are_refused() -> None:
    first = apply_create(None, _remote("ci", "unix:///a.sock"))
    with pytest.raises(ConfigError, match="duplicate endpoint"):
        apply_create(first, _remote("ci", "unix:///a.sock", append=True))
    with pytest.raises(ConfigError, match="driver"):
        apply_create(first, CreateRequest(name="ci", driver="local", append=True))


def test_bad_opts_are_refused_before_saving(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        apply_create(None, _remote("ci", "unix:///a.sock", driver_opts={"nope": "1"}))
    assert Store(tmp_path).list() == []


def test_leave_removes_a_node_but_not_the_last() -> None:
    first = apply_create(None, _remote("ci", "unix:///a.sock"))
    both = apply_create(first, _remote("ci", "unix:///b.sock", append=True))
    assert [n.name for n in leave_node(both, "ci0").nodes] == ["ci1"]
    with pytest.raises(UsageError, match="last node"):
        leave_node(first, "ci0")


def test_invalid_names_are_refused() -> None:
    with pytest.raises(ConfigError, match="builder name"):
        apply_create(None, _remote("9lives", "unix:///a.sock"))


def test_use_and_remove_current(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.save(apply_create(None, _remote("ci", "unix:///a.sock")))
    store.use("ci")
    assert store.current() == "ci"
    store.remove("ci")
    assert store.current() is None and store.list() == []


def _append_many(root: str, worker: int, count: int) -> None:
    store = Store(Path(root))
    for i in range(count):
        with store.transaction():
            existing = store.get("shared")
            request = CreateRequest(
                name="shared",
                driver="remote",
                endpoint=f"unix:///w{worker}-{i}.sock",
                append=True,
            )
            store.save(apply_create(existing, request))
            scratch = f"tmp{worker}"
            store.save(
                apply_create(
                    None, CreateRequest(name=scratch, driver="remote", endpoint="unix:///s.sock")
                )
            )
            store.remove(scratch)


def test_concurrent_processes_do_not_lose_updates(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_append_many, args=(str(tmp_path), w, 15)) for w in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(60)
        assert process.exitcode == 0
    builder = Store(tmp_path).load("shared")
    assert isinstance(builder, BuilderSpec)
    assert len(builder.nodes) == 60
    assert len({n.name for n in builder.nodes}) == 60
    assert [b.name for b in Store(tmp_path).list()] == ["shared"]


def test_an_unreadable_entry_does_not_hide_the_others(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.save(apply_create(None, _remote("good", "unix:///a.sock")))
    (tmp_path / "builders" / "broken.json").write_text("{not json")
    assert [b.name for b in store.list()] == ["good"]
    (problem,) = store.unreadable()
    assert "broken" in problem.message and problem.hint is not None
