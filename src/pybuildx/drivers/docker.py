"""The docker driver: the BuildKit built into the Docker Engine, via its ``/grpc`` upgrade.

Nothing is started or removed: the engine owns the daemon. Images built with ``--load`` land in
the engine's image store directly (the engine's own image exporter).
"""

from __future__ import annotations

import functools

import grpc

from pybuildx.config import reject_unknown
from pybuildx.drivers.base import DriverInfo, Features
from pybuildx.drivers.options import duration_opt, parse_duration
from pybuildx.drivers.readiness import probe_status, wait_until_ready
from pybuildx.drivers.spec import NodeSpec
from pybuildx.errors import ConfigError, ConnectError
from pybuildx.transport.bridge import StreamBridge
from pybuildx.transport.channel import open_channel
from pybuildx.transport.docker_engine import engine_address, grpc_stream

__all__ = ["KNOWN_OPTS", "DockerDriver", "validate"]

KNOWN_OPTS = ("timeout",)
_DEFAULT_TIMEOUT = 20.0


def validate(node: NodeSpec) -> None:
    reject_unknown(node.driver_opts, KNOWN_OPTS, what="driver-opt for the docker driver")
    if "timeout" in node.driver_opts:
        parse_duration("timeout", node.driver_opts["timeout"])
    if node.endpoint:
        engine_address(node.endpoint)
    if node.buildkitd_flags or node.buildkitd_config:
        raise ConfigError(
            "the docker driver uses the engine's BuildKit: its flags and config are the engine's",
            hint="configure BuildKit in the engine's daemon.json, or use --driver docker-container",
        )


class DockerDriver:
    def __init__(self, node: NodeSpec) -> None:
        validate(node)
        self._node = node
        self._host = engine_address(node.endpoint or None)
        self._timeout = duration_opt(node.driver_opts, "timeout", _DEFAULT_TIMEOUT)
        self._bridge: StreamBridge | None = None

    @property
    def features(self) -> Features:
        # The classic image store holds no indexes, and no OCI exporter is available.
        return Features(oci_exporter=False, multi_platform=False, default_load=True)

    def dial(self) -> grpc.Channel:
        if self._bridge is None:
            connect = functools.partial(grpc_stream, self._host)
            self._bridge = StreamBridge(connect, name=self._node.name)
        return open_channel(self._bridge.start())

    def bootstrap(self, timeout: float | None = None) -> None:
        channel = self.dial()
        try:
            wait_until_ready(
                channel,
                address=f"docker ({self._host})",
                timeout=timeout or self._timeout,
                check_alive=self._check_bridge,
            )
        finally:
            channel.close()

    def _check_bridge(self) -> None:
        if self._bridge is not None and self._bridge.last_error:
            raise ConnectError(self._bridge.last_error)

    def info(self) -> DriverInfo:
        return probe_status(self.dial(), address=self._host)

    def stop(self) -> str:
        self.release()
        return f"{self._node.name}: the docker driver does not manage its daemon, nothing to stop"

    def detach(self) -> str | None:
        self.release()
        return None

    def release(self) -> None:
        if self._bridge is not None:
            self._bridge.close()
            self._bridge = None

    def teardown(self, keep_state: bool = False) -> None:
        self.release()


def new(node: NodeSpec, *, builder: str, state_dir: object) -> DockerDriver:
    del builder, state_dir
    return DockerDriver(node)
