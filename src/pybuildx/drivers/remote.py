"""The remote driver: a BuildKit daemon someone else runs; we only connect, never start or stop it.

Endpoints: ``tcp://host:port`` (mutual TLS with driver-opts ``cacert``, ``cert``, ``key``,
``servername``), ``unix:///path``, and ``docker-container://NAME`` / ``kube-pod://NAME`` reached
through ``buildctl dial-stdio`` inside the target (docker exec through the Engine API, pod exec
through the Kubernetes API: no docker or kubectl binary), relayed by a ``StreamBridge``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

import grpc

from pybuildx.config import reject_unknown
from pybuildx.drivers.base import DriverInfo, Features
from pybuildx.drivers.options import bool_opt, duration_opt, require_absolute_path
from pybuildx.drivers.readiness import probe_status, wait_until_ready
from pybuildx.drivers.spec import NodeSpec
from pybuildx.errors import ConfigError, DriverError, PybuildxError
from pybuildx.transport.bridge import ByteStream, StreamBridge
from pybuildx.transport.channel import TLSFiles, open_channel, split_address
from pybuildx.transport.kube_exec import KubePodExec, parse_kube_pod

__all__ = ["KNOWN_OPTS", "RemoteDriver", "RemoteOpts", "parse_opts", "validate"]
KNOWN_OPTS = ("cacert", "cert", "key", "servername", "default-load", "timeout")
SCHEMES = ("tcp", "unix", "docker-container", "kube-pod")
_TLS_KEYS = ("cacert", "cert", "key", "servername")
# buildx waits 20 s; CI daemons that were just started (port-forwards, pods) need longer.
_DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class RemoteOpts:
    tls: TLSFiles | None = None
    servername: str | None = None
    default_load: bool = False
    timeout: float = _DEFAULT_TIMEOUT


def parse_opts(opts: dict[str, str], endpoint: str) -> RemoteOpts:
    reject_unknown(opts, KNOWN_OPTS, what="driver-opt for the remote driver")
    paths = {k: require_absolute_path(k, opts[k]) for k in ("cacert", "cert", "key") if k in opts}
    for key, path in paths.items():
        if not path.is_file():
            raise ConfigError(f"driver-opt {key}: no such file {str(path)!r}")
    tls = None
    if any(k in opts for k in _TLS_KEYS):
        missing = [k for k in ("cacert",) if k not in paths]
        if ("cert" in paths) != ("key" in paths):
            missing.append("key" if "cert" in paths else "cert")
        if missing:
            raise ConfigError(
                f"TLS is enabled, but driver-opts {', '.join(missing)} are missing",
                hint="TLS needs cacert (the daemon's CA); a client certificate needs cert and key",
            )
        if urlsplit(endpoint).scheme != "tcp":
            raise ConfigError(
                f"TLS driver-opts need a tcp:// endpoint, not {endpoint!r}",
                hint="drop cacert/cert/key/servername for unix://, docker-container:// etc.",
            )
        tls = TLSFiles(ca=paths["cacert"], cert=paths.get("cert"), key=paths.get("key"))
    return RemoteOpts(
        tls=tls,
        servername=opts.get("servername") or None,
        default_load=bool_opt(opts, "default-load"),
        timeout=duration_opt(opts, "timeout", _DEFAULT_TIMEOUT),
    )


def resolve_endpoint(endpoint: str) -> str:
    """The endpoint as given, else ``$BUILDKIT_HOST``; checked for a supported scheme."""
    endpoint = endpoint or os.environ.get("BUILDKIT_HOST", "")
    if not endpoint:
        raise ConfigError(
            "no remote endpoint provided",
            hint="pass ENDPOINT (tcp://host:port, unix:///path, docker-container://NAME, "
            "kube-pod://NAME) or set BUILDKIT_HOST",
        )
    scheme = urlsplit(endpoint).scheme
    if scheme not in SCHEMES:
        raise ConfigError(
            f"unsupported endpoint {endpoint!r} for the remote driver",
            hint=f"use one of: {', '.join(s + '://' for s in SCHEMES)}",
        )
    if scheme in ("tcp", "unix"):
        split_address(endpoint)
    elif not urlsplit(endpoint).netloc:
        raise ConfigError(f"endpoint {endpoint!r} names no container or pod")
    return endpoint


def validate(node: NodeSpec) -> None:
    endpoint = resolve_endpoint(node.endpoint)
    parse_opts(node.driver_opts, endpoint)
    if node.buildkitd_flags:
        raise ConfigError("setting buildkitd flags is not supported for the remote driver")
    if node.buildkitd_config:
        raise ConfigError("setting a buildkitd config file is not supported for the remote driver")
    if urlsplit(endpoint).scheme == "kube-pod":
        parse_kube_pod(endpoint)


class RemoteDriver:
    def __init__(self, node: NodeSpec) -> None:
        self._node = node
        self._endpoint = resolve_endpoint(node.endpoint)
        self._opts = parse_opts(node.driver_opts, self._endpoint)
        self._bridge: StreamBridge | None = None
        self._kube: KubePodExec | None = None
        if urlsplit(self._endpoint).scheme == "kube-pod":
            self._kube = KubePodExec(parse_kube_pod(self._endpoint))

    @property
    def features(self) -> Features:
        return Features(default_load=self._opts.default_load)

    @property
    def _client_cert(self) -> bool | None:
        return None if self._opts.tls is None else self._opts.tls.cert is not None

    def _connect_stream(self) -> ByteStream:
        if self._kube is not None:
            return self._kube.connect()
        # docker-container://NAME: docker exec through the Engine API, no docker CLI needed.
        from pybuildx.drivers.docker_container import exec_dial_stdio

        return exec_dial_stdio(urlsplit(self._endpoint).netloc)

    def _address(self) -> str:
        if urlsplit(self._endpoint).scheme in ("tcp", "unix"):
            return self._endpoint
        if self._bridge is None:
            self._bridge = StreamBridge(self._connect_stream, name=self._node.name)
        return self._bridge.start()

    def bootstrap(self, timeout: float | None = None) -> None:
        channel = self.dial()
        try:
            wait_until_ready(
                channel,
                address=self._endpoint,
                timeout=timeout or self._opts.timeout,
                check_alive=self._check_bridge,
                client_cert=self._client_cert,
            )
        finally:
            channel.close()

    def _check_bridge(self) -> None:
        if self._bridge is not None and isinstance(self._bridge.last_exception, PybuildxError):
            raise self._bridge.last_exception
        if self._bridge is not None and self._bridge.last_error:
            raise DriverError(
                f"cannot open a stream to {self._endpoint}: {self._bridge.last_error}"
            )

    def dial(self) -> grpc.Channel:
        return open_channel(self._address(), self._opts.tls, self._opts.servername)

    def info(self) -> DriverInfo:
        return probe_status(self.dial(), address=self._endpoint, client_cert=self._client_cert)

    def teardown(self, keep_state: bool = False) -> None:
        # Someone else runs the daemon: only our relay goes away.
        self.release()

    def stop(self) -> str:
        self.release()
        return f"{self._node.name}: the remote driver does not manage its daemon, nothing to stop"

    def detach(self) -> str | None:
        self.release()
        return None

    def release(self) -> None:
        if self._bridge is not None:
            self._bridge.close()
            self._bridge = None
        if self._kube is not None:
            self._kube.close()


def new(node: NodeSpec, *, builder: str, state_dir: object) -> RemoteDriver:
    del builder, state_dir
    return RemoteDriver(node)
