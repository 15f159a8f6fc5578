"""Named builders on disk: one JSON file per builder, atomic writes, one lock for the store.

Several CI jobs on one runner may create and remove builders at the same moment: every
read-modify-write runs inside ``Store.transaction()``, which holds an exclusive ``flock`` on
``<root>/.lock``; files are written to a temp file in the same directory, then renamed.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pybuildx.builders.model import BuilderSpec, check_name
from pybuildx.errors import ConfigError, UsageError

__all__ = ["Store", "default_root"]


def default_root() -> Path:
    explicit = os.environ.get("PYBUILDX_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "pybuildx"


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).chmod(0o600)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Store:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or default_root()

    @property
    def _builders(self) -> Path:
        return self.root / "builders"

    def _path(self, name: str) -> Path:
        return self._builders / f"{check_name(name)}.json"

    def state_dir(self, builder: str, node: str) -> Path:
        """Where drivers keep per-node state that must outlive one process (local daemons)."""
        return self.root / "state" / check_name(builder) / check_name(node, what="node name")

    def _ensure(self) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._builders.mkdir(mode=0o700, exist_ok=True)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Store]:
        """Exclusive access for a read-modify-write; blocks while another process holds it."""
        self._ensure()
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield self
        finally:
            os.close(fd)  # closing releases the lock

    def get(self, name: str) -> BuilderSpec | None:
        path = self._path(name)
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        try:
            return BuilderSpec.from_json(json.loads(text))
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"the stored builder {name!r} is unreadable: {exc}",
                hint=f"remove {path} and create the builder again",
            ) from None

    def load(self, name: str) -> BuilderSpec:
        builder = self.get(name)
        if builder is None:
            known = ", ".join(b.name for b in self.list()) or "none"
            raise UsageError(
                f"no builder named {name!r}",
                hint=f"create it with 'ci-build builder create --name {name}' (known: {known})",
            )
        return builder

    def save(self, builder: BuilderSpec) -> None:
        self._ensure()
        _write_atomic(self._path(builder.name), json.dumps(builder.to_json(), indent=2) + "\n")

    def remove(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)
        if self.current() == check_name(name):
            (self.root / "current").unlink(missing_ok=True)

    def list(self) -> list[BuilderSpec]:
        """Every readable builder; see ``unreadable`` for the others."""
        return [b for b in self._scan() if isinstance(b, BuilderSpec)]

    def unreadable(self) -> builtins.list[ConfigError]:
        """Why stored builders could not be read (a hand-edited or truncated file)."""
        return [b for b in self._scan() if isinstance(b, ConfigError)]

    def unreadable_by_name(self) -> dict[str, ConfigError]:
        return {name: item for name, item in self._scan_named() if isinstance(item, ConfigError)}

    def _scan(self) -> builtins.list[BuilderSpec | ConfigError]:
        return [item for _, item in self._scan_named()]

    def _scan_named(self) -> builtins.list[tuple[str, BuilderSpec | ConfigError]]:
        if not self._builders.is_dir():
            return []
        found: builtins.list[tuple[str, BuilderSpec | ConfigError]] = []
        for path in sorted(self._builders.glob("*.json")):
            try:
                builder = self.get(path.stem)
            except ConfigError as exc:
                found.append((path.stem, exc))
                continue
            if builder is not None:
                found.append((path.stem, builder))
        return found

    def current(self) -> str | None:
        try:
            name = (self.root / "current").read_text().strip()
        except FileNotFoundError:
            return None
        return name or None

    def resolve(self, name: str | None) -> str:
        """``name``, else ``$PYBUILDX_BUILDER``, else the current builder; else a usage error."""
        chosen = name or os.environ.get("PYBUILDX_BUILDER") or self.current()
        if not chosen:
            raise UsageError(
                "no builder given and no current builder",
                hint="pass NAME or run 'ci-build builder use NAME'",
            )
        return chosen

    def use(self, name: str) -> None:
        self.load(name)
        self._ensure()
        _write_atomic(self.root / "current", check_name(name) + "\n")
