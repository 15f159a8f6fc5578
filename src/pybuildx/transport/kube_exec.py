"""``buildctl dial-stdio`` in a Kubernetes pod through the API server, without a kubectl binary.

The Python kubernetes client speaks exec over WebSocket (``v5.channel.k8s.io``, else v4): every
binary frame starts with a channel byte (0 stdin, 1 stdout, 2 stderr, 3 status; 255 closes a
channel in v5). ``binary=True`` keeps gRPC bytes intact (without it stdout is UTF-8-decoded).
We read frames from the client's public ``sock`` ourselves instead of through its buffers, which
keep a copy of everything ever received. One exec per gRPC connection, as buildx does.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pybuildx.errors import ConfigError, DriverError
from pybuildx.transport.bridge import DemuxedStream

__all__ = ["KubeExecStream", "KubePodExec", "KubePodTarget", "handshake_reason", "parse_kube_pod"]

_DIAL_STDIO = ("buildctl", "dial-stdio")
_STDOUT, _STDERR, _STATUS, _CLOSE = 1, 2, 3, 255
_SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-.")
# The client swaps ``api_client.call_api`` while it opens a stream: one opening at a time.
_OPEN_LOCK = threading.Lock()


@dataclass(frozen=True)
class KubePodTarget:
    pod: str
    namespace: str | None = None  # None: the kubeconfig context's, else "default"
    context: str | None = None
    container: str | None = None


def parse_kube_pod(endpoint: str) -> KubePodTarget:
    """``kube-pod://POD?namespace=NS&context=CTX&container=C`` (buildx's query keys)."""
    parts = urlsplit(endpoint)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = set(query) - {"namespace", "context", "container"}
    if unknown:
        raise ConfigError(
            f"unknown query key {sorted(unknown)[0]!r} in endpoint {endpoint!r}",
            hint="kube-pod:// takes namespace=, context= and container=",
        )
    target = KubePodTarget(
        pod=parts.netloc,
        namespace=query.get("namespace") or None,
        context=query.get("context") or None,
        container=query.get("container") or None,
    )
    for value in (target.pod, target.namespace, target.container):
        if value is not None and (not value or not set(value) <= _NAME_CHARS):
            raise ConfigError(f"invalid name {value!r} in endpoint {endpoint!r}")
    return target


class KubeExecStream(DemuxedStream):
    """One exec's stdin/stdout as a ``ByteStream``; stderr and the exec status kept for errors."""

    def __init__(self, client: Any) -> None:
        super().__init__()
        self._client = client  # kubernetes.stream.ws_client.WSClient

    def _read_frame(self) -> bool:
        from websocket import ABNF

        try:
            opcode, frame = self._client.sock.recv_data_frame(True)
        except Exception:  # connection reset or closed under us: the end of the stream
            return False
        if opcode == ABNF.OPCODE_CLOSE:
            return False
        if opcode not in (ABNF.OPCODE_BINARY, ABNF.OPCODE_TEXT) or not frame.data:
            return True  # ping/pong, empty frames
        data = bytes(frame.data) if not isinstance(frame.data, str) else frame.data.encode()
        channel, payload = data[0], data[1:]
        if channel == _STDOUT:
            self._stdout += payload
        elif channel in (_STDERR, _STATUS) and payload:
            self._stderr.append(payload)
        # _CLOSE (v5: the other side closed a channel) and others need no action
        return True

    def sendall(self, data: bytes) -> None:
        try:
            self._client.write_stdin(data)
        except Exception as exc:
            raise OSError(f"exec stream closed: {exc}") from None

    def close_write(self) -> None:
        # v5 can half-close stdin; on v4 the whole exec ends when the connection does.
        with contextlib.suppress(Exception):
            self._client.close_channel(0)

    def close(self) -> None:
        # shutdown, not close: a close handshake would compete with the reading thread.
        with contextlib.suppress(Exception):
            self._client.sock.shutdown()


def _default_namespace(context: str | None, in_cluster: bool) -> str:
    if in_cluster:
        with contextlib.suppress(OSError):
            return _SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
        return "default"
    from kubernetes import config

    contexts, active = config.list_kube_config_contexts()  # type: ignore[no-untyped-call]
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
    namespace = ((chosen or {}).get("context") or {}).get("namespace")
    return str(namespace) if namespace else "default"


def _kubeconfig_exists() -> bool:
    paths = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    return any(Path(p).expanduser().is_file() for p in paths.split(os.pathsep) if p)


def handshake_reason(text: str) -> str:
    """``403 Forbidden: pods "x" is forbidden: ...`` from the client's handshake error text.

    It reads ``Handshake status 403 Forbidden -+-+- {headers} -+-+- {Status JSON}``.
    """
    parts = [p.strip() for p in text.split("-+-+-")]
    status = parts[0].removeprefix("Handshake status").strip()
    message = ""
    if len(parts) > 2:
        with contextlib.suppress(ValueError, AttributeError):
            message = str(json.loads(parts[-1]).get("message") or "")
    return ": ".join(x for x in (status, message) if x) or " ".join(text.split())


class KubePodExec:
    """Opens ``buildctl dial-stdio`` execs in one pod; holds the API client between them."""

    def __init__(self, target: KubePodTarget) -> None:
        self.target = target
        self._api: Any = None
        self._core: Any = None
        self._namespace = target.namespace or ""
        self._lock = threading.Lock()

    def _core_api(self) -> Any:
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        with self._lock:
            if self._core is not None:
                return self._core
            in_cluster = not _kubeconfig_exists() and "KUBERNETES_SERVICE_HOST" in os.environ
            try:
                if in_cluster:
                    configuration = client.Configuration()
                    config.load_incluster_config(  # type: ignore[no-untyped-call]
                        client_configuration=configuration
                    )
                    self._api = client.ApiClient(configuration)
                else:
                    self._api = config.new_client_from_config(  # type: ignore[no-untyped-call]
                        context=self.target.context
                    )
                if not self._namespace:
                    self._namespace = _default_namespace(self.target.context, in_cluster)
            except (ConfigException, OSError, ValueError) as exc:
                raise DriverError(
                    f"cannot load the Kubernetes configuration for pod {self.target.pod}: {exc}",
                    hint="set KUBECONFIG (and context= in the endpoint), or run inside a cluster",
                ) from None
            self._core = client.CoreV1Api(self._api)
            return self._core

    def connect(self) -> KubeExecStream:
        from kubernetes.client.exceptions import ApiException
        from kubernetes.stream import stream

        core = self._core_api()
        extra = {"container": self.target.container} if self.target.container else {}
        try:
            with _OPEN_LOCK:
                client = stream(
                    core.connect_get_namespaced_pod_exec,
                    self.target.pod,
                    self._namespace,
                    command=list(_DIAL_STDIO),
                    stdin=True,
                    stdout=True,
                    stderr=True,
                    tty=False,
                    binary=True,
                    _preload_content=False,
                    **extra,
                )
        except ApiException as exc:
            reason = handshake_reason(str(exc.reason or exc))
            raise DriverError(
                f"cannot exec 'buildctl dial-stdio' in pod {self._namespace}/{self.target.pod}: "
                f"{reason}",
                hint="check the pod name and namespace, and that your credentials may create "
                "pods/exec there",
            ) from None
        return KubeExecStream(client)

    def close(self) -> None:
        with self._lock:
            api, self._api, self._core = self._api, None, None
        if api is not None:
            with contextlib.suppress(Exception):
                api.close()
