"""The docker-container driver: a privileged buildkitd container we create through the docker SDK.

The daemon is reached with ``buildctl dial-stdio`` run by a docker exec (Engine API, no docker
CLI), one exec per gRPC connection, relayed by a ``StreamBridge``. State lives in a named volume
that ``teardown(keep_state=True)`` keeps.
"""

from __future__ import annotations

import io
import tarfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from pybuildx.config import reject_unknown
from pybuildx.drivers.base import DEFAULT_BOOT_TIMEOUT, DriverInfo, Features, Status
from pybuildx.drivers.options import bool_opt, duration_opt
from pybuildx.drivers.readiness import wait_until_ready
from pybuildx.drivers.spec import NodeSpec
from pybuildx.errors import ConfigError, DriverError
from pybuildx.transport.bridge import DockerMultiplexedStream, StreamBridge
from pybuildx.transport.channel import open_channel
from pybuildx.transport.docker_engine import exec_stdio

__all__ = [
    "DEFAULT_IMAGE",
    "KNOWN_OPTS",
    "DockerContainerDriver",
    "exec_dial_stdio",
    "parse_opts",
    "validate",
]

DEFAULT_IMAGE = "moby/buildkit:buildx-stable-1"
KNOWN_OPTS = ("image", "network", "default-load", "timeout")
_ENV_PREFIX = "env."
_CONTAINER_PREFIX = "pybuildx_buildkit_"
_CONFIG_DIR = "/etc/buildkit"
_STATE_DIR = "/var/lib/buildkit"
_MANAGED_BY = {"app.kubernetes.io/managed-by": "pybuildx"}
_ENTITLEMENT_FLAG = "--allow-insecure-entitlement"
# Bit order of linux/capability.h, up to CAP_AUDIT_READ: what Docker 20.10 accepts by name.
# fmt: off
_CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ",
)
# fmt: on
# runc inside the container creates cgroups for each RUN step: they must be writable.
_CGROUP_MOUNT = {"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"}}


@dataclass(frozen=True)
class DockerContainerOpts:
    image: str = DEFAULT_IMAGE
    network: str | None = None
    default_load: bool = False
    timeout: float = DEFAULT_BOOT_TIMEOUT
    env: dict[str, str] = field(default_factory=dict)


def parse_opts(opts: dict[str, str]) -> DockerContainerOpts:
    env = {k[len(_ENV_PREFIX) :]: v for k, v in opts.items() if k.startswith(_ENV_PREFIX)}
    if "" in env:
        raise ConfigError("driver-opt env. needs a variable name: env.NAME=value")
    plain = [k for k in opts if not k.startswith(_ENV_PREFIX)]
    reject_unknown(plain, KNOWN_OPTS, what="driver-opt for the docker-container driver")
    return DockerContainerOpts(
        image=opts.get("image") or DEFAULT_IMAGE,
        network=opts.get("network") or None,
        default_load=bool_opt(opts, "default-load"),
        timeout=duration_opt(opts, "timeout", DEFAULT_BOOT_TIMEOUT),
        env=env,
    )


def validate(node: NodeSpec) -> None:
    parse_opts(node.driver_opts)
    if node.endpoint:
        raise ConfigError(
            "the docker-container driver takes no endpoint: it uses DOCKER_HOST",
            hint="to reach an existing container use --driver remote docker-container://NAME",
        )


def _client() -> Any:
    import docker
    import docker.errors

    try:
        return docker.from_env()
    except docker.errors.DockerException as exc:
        raise DriverError(
            f"cannot reach the Docker Engine: {exc}",
            hint="start dockerd or set DOCKER_HOST to its socket",
        ) from None


def exec_dial_stdio(container: str) -> DockerMultiplexedStream:
    """``buildctl dial-stdio`` inside ``container``, as a byte stream (one per connection)."""
    import docker.errors

    try:
        created = _client().api.exec_create(
            container, ["buildctl", "dial-stdio"], stdin=True, stdout=True, stderr=True
        )
    except docker.errors.DockerException as exc:
        raise DriverError(f"cannot exec buildctl in container {container!r}: {exc}") from None
    return exec_stdio(str(created["Id"]))


def _bounding_capabilities() -> list[str]:
    """Capabilities in this process's bounding set that Docker 20.10 can name (0..37)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return []
    mask = next(
        (int(line.split()[1], 16) for line in status.splitlines() if line.startswith("CapBnd:")),
        0,
    )
    return [name for bit, name in enumerate(_CAPABILITIES) if mask >> bit & 1]


def _near_privileged() -> dict[str, Any]:
    """Everything ``privileged`` gives buildkitd except capabilities the host withholds."""
    return {
        "cap_add": _bounding_capabilities(),
        "security_opt": ["seccomp=unconfined", "apparmor=unconfined"],
    }


def _config_tar(text: str) -> bytes:
    data = text.encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("buildkitd.toml")
        info.size = len(data)
        info.mode = 0o644
        info.mtime = int(time.time())
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class DockerContainerDriver:
    def __init__(self, node: NodeSpec, *, builder: str) -> None:
        self._node = node
        self._builder = builder
        self._opts = parse_opts(node.driver_opts)
        self.container_name = _CONTAINER_PREFIX + node.name
        self.volume_name = self.container_name + "_state"
        self._bridge: StreamBridge | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def features(self) -> Features:
        return Features(default_load=self._opts.default_load)

    @property
    def labels(self) -> dict[str, str]:
        return {**_MANAGED_BY, "pybuildx.io/builder": self._builder}

    def _container(self) -> Any | None:
        import docker.errors

        try:
            return _client().containers.get(self.container_name)
        except docker.errors.NotFound:
            return None
        except docker.errors.DockerException as exc:
            raise DriverError(f"cannot inspect container {self.container_name}: {exc}") from None

    def _args(self) -> list[str]:
        flags = list(self._node.buildkitd_flags)
        config = self._node.buildkitd_config or ""
        # As buildx: builds may ask for --network=host unless the user chose entitlements.
        if not any(f.startswith(_ENTITLEMENT_FLAG) for f in flags) and "network.host" not in config:
            flags.append(f"{_ENTITLEMENT_FLAG}=network.host")
        if self._node.buildkitd_config is not None:
            flags += ["--config", f"{_CONFIG_DIR}/buildkitd.toml"]
        return flags

    def _ensure_image(self, client: Any) -> None:
        import docker.errors

        try:
            client.images.get(self._opts.image)
            return
        except docker.errors.ImageNotFound:
            pass
        try:
            client.images.pull(self._opts.image)
        except docker.errors.DockerException as exc:
            raise DriverError(
                f"cannot pull the buildkit image {self._opts.image}: {exc}",
                hint="set driver-opt image= to an image the engine has or can pull",
            ) from None

    def _create(self, *, privileged: bool = True) -> Any:
        import docker.errors

        client = _client()
        self._ensure_image(client)
        try:
            try:
                client.volumes.get(self.volume_name)
            except docker.errors.NotFound:
                client.volumes.create(self.volume_name, labels=self.labels)
            container = client.containers.create(
                self._opts.image,
                command=self._args(),
                name=self.container_name,
                network_mode=self._opts.network,
                volumes={
                    self.volume_name: {"bind": _STATE_DIR, "mode": "rw"},
                    **({} if privileged else _CGROUP_MOUNT),
                },
                environment=self._opts.env or None,
                labels=self.labels,
                detach=True,
                **({"privileged": True} if privileged else _near_privileged()),
            )
            if self._node.buildkitd_config is not None:
                container.put_archive(_CONFIG_DIR, _config_tar(self._node.buildkitd_config))
        except docker.errors.DockerException as exc:
            raise DriverError(f"cannot create container {self.container_name}: {exc}") from None
        return container

    def _start(self, container: Any) -> Any:
        import docker.errors

        try:
            container.start()
            return container
        except docker.errors.APIError as exc:
            if "unable to apply caps" not in str(exc):
                raise
        # Docker 20.10 gives privileged containers every capability the kernel knows, also
        # those the host withholds from root (CAP_SYS_RESOURCE on some CI machines), and
        # runc then refuses to start. Same container, with the capabilities we really have.
        container.remove(force=True)
        replacement = self._create(privileged=False)
        replacement.start()
        return replacement

    def bootstrap(self, timeout: float | None = None) -> None:
        import docker.errors

        with self._lock:
            # A teardown that ran first (SIGTERM during bootstrap) must not be followed by a create.
            if self._closed:
                raise DriverError(f"node {self._node.name} was torn down while starting")
            container = self._container() or self._create()
            try:
                if container.status != "running":
                    self._start(container)
            except docker.errors.DockerException as exc:
                raise DriverError(f"cannot start container {self.container_name}: {exc}") from None
        channel = self.dial()
        try:
            wait_until_ready(
                channel,
                address=f"docker-container://{self.container_name}",
                timeout=timeout or self._opts.timeout,
                check_alive=self._check_alive,
            )
        finally:
            channel.close()

    def _check_alive(self) -> None:
        container = self._container()
        if container is not None and container.status in ("created", "running"):
            return
        logs = ""
        if container is not None:
            lines = container.logs(tail=3).decode("utf-8", "replace").strip().splitlines()
            logs = ": " + " | ".join(lines)
        raise DriverError(f"container {self.container_name} stopped while starting{logs}")

    def dial(self) -> grpc.Channel:
        if self._bridge is None:
            name = self.container_name
            self._bridge = StreamBridge(lambda: exec_dial_stdio(name), name=self._node.name)
        return open_channel(self._bridge.start())

    def info(self) -> DriverInfo:
        container = self._container()
        if container is None:
            return DriverInfo(Status.INACTIVE)
        if container.status == "running":
            return DriverInfo(Status.RUNNING)
        return DriverInfo(Status.STOPPED, f"container is {container.status}")

    def release(self) -> None:
        if self._bridge is not None:
            self._bridge.close()
            self._bridge = None

    def stop(self) -> str:
        import docker.errors

        self.release()
        container = self._container()
        if container is None or container.status != "running":
            return f"{self._node.name}: container {self.container_name} is not running"
        try:
            container.stop(timeout=10)
        except docker.errors.DockerException as exc:
            raise DriverError(f"cannot stop container {self.container_name}: {exc}") from None
        return f"{self._node.name}: stopped container {self.container_name}; its state is kept"

    def detach(self) -> str | None:
        self.release()
        if self._container() is None:
            return None
        return (
            f"{self._node.name}: container {self.container_name} keeps running; remove it and its "
            f"state with 'docker rm -f {self.container_name}' and "
            f"'docker volume rm {self.volume_name}'"
        )

    def teardown(self, keep_state: bool = False) -> None:
        with self._lock:
            self._closed = True
            self._teardown(keep_state)

    def _teardown(self, keep_state: bool) -> None:
        import docker.errors

        self.release()
        container = self._container()
        try:
            if container is not None:
                container.remove(force=True)
            if not keep_state:
                try:
                    _client().volumes.get(self.volume_name).remove(force=True)
                except docker.errors.NotFound:
                    pass
        except docker.errors.NotFound:
            pass
        except docker.errors.DockerException as exc:
            raise DriverError(f"cannot remove {self.container_name}: {exc}") from None


def new(node: NodeSpec, *, builder: str, state_dir: object) -> DockerContainerDriver:
    del state_dir
    return DockerContainerDriver(node, builder=builder)
