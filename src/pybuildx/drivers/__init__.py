"""Drivers: how a builder node reaches its BuildKit daemon. One module per driver.

``validate(node)`` checks a node's endpoint, driver-opts and flags without touching anything, so
``builder create`` can refuse bad input before it creates a thing; ``new_driver`` builds the handle.
Driver modules are imported on demand (the docker SDK is slow to import).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from pybuildx.config import reject_unknown
from pybuildx.drivers.spec import NodeSpec

if TYPE_CHECKING:
    from pybuildx.drivers.base import Driver

__all__ = ["DRIVER_NAMES", "NodeSpec", "new_driver", "validate"]

_MODULES = {
    "local": "pybuildx.drivers.local",
    "remote": "pybuildx.drivers.remote",
    "docker": "pybuildx.drivers.docker",
    "docker-container": "pybuildx.drivers.docker_container",
}
DRIVER_NAMES = tuple(_MODULES)


def _module(driver: str) -> object:
    reject_unknown([driver], DRIVER_NAMES, what="driver")
    return importlib.import_module(_MODULES[driver])


def validate(node: NodeSpec) -> None:
    """Raise ``ConfigError`` for an unknown driver, driver-opt, bad endpoint or flag."""
    _module(node.driver).validate(node)  # type: ignore[attr-defined]


def new_driver(node: NodeSpec, *, builder: str, state_dir: Path | None = None) -> Driver:
    """A driver handle for ``node``; ``state_dir`` is where persistent drivers keep local state."""
    module = _module(node.driver)
    driver: Driver = module.new(node, builder=builder, state_dir=state_dir)  # type: ignore[attr-defined]
    return driver
