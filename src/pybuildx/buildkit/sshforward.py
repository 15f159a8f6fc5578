"""``--ssh`` parsing and the session SSH service (agent forwarding for ``RUN --mount=type=ssh``).

Syntax as buildx: ``default`` (the agent of ``$SSH_AUTH_SOCK``), ``<id>=<agent socket>`` or
``<id>=<key>[,<key>...]``. For key files a private ``ssh-agent`` is started in a 0700 directory,
loaded with ``ssh-add`` and stopped when the build ends, so the keys never leave this machine:
the daemon only gets signatures through the forwarded agent protocol.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import grpc

from pybuildx.buildkit._pb import ssh_pb2, ssh_pb2_grpc
from pybuildx.errors import ConfigError

__all__ = ["SshAgents", "SshAttachable", "SshSpec", "parse_ssh"]

_SERVICE = "/moby.sshforward.v1.SSH/"
_ID_METADATA = "buildkit.ssh.id"
_CHUNK = 32 * 1024
_AGENT_START_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class SshSpec:
    """One forwarded agent: an id and either one agent socket or key files."""

    id: str
    paths: tuple[Path, ...] = ()


def parse_ssh(text: str, environ: Mapping[str, str] | None = None) -> SshSpec:
    env = os.environ if environ is None else environ
    ssh_id, sep, rest = text.strip().partition("=")
    ssh_id = ssh_id.strip()
    if not ssh_id:
        raise ConfigError(f"invalid ssh {text!r}", hint="use default or <id>=<socket|key>[,<key>]")
    paths = tuple(Path(p.strip()).expanduser() for p in rest.split(",") if p.strip()) if sep else ()
    if not paths:
        agent = env.get("SSH_AUTH_SOCK", "")
        if not agent:
            raise ConfigError(
                f"ssh {ssh_id!r}: no paths given and SSH_AUTH_SOCK is not set",
                hint="start an ssh-agent, or give keys: --ssh default=~/.ssh/id_ed25519",
            )
        paths = (Path(agent),)
    return SshSpec(ssh_id, paths)


def _is_socket(path: Path) -> bool:
    try:
        return stat.S_ISSOCK(path.stat().st_mode)
    except OSError:
        return False


class SshAgents:
    """Resolves specs to agent sockets, starting a private ssh-agent for key files."""

    def __init__(self, specs: Iterable[SshSpec]) -> None:
        self._specs = list(specs)
        self._agents: list[subprocess.Popen[bytes]] = []
        self._tempdir: str | None = None
        self.sockets: dict[str, Path] = {}

    def __enter__(self) -> SshAgents:
        try:
            for spec in self._specs:
                self.sockets[spec.id] = self._socket_for(spec)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _socket_for(self, spec: SshSpec) -> Path:
        if len(spec.paths) == 1 and _is_socket(spec.paths[0]):
            return spec.paths[0]
        for path in spec.paths:
            if _is_socket(path):
                raise ConfigError(f"ssh {spec.id!r}: an agent socket cannot be mixed with keys")
            if not path.is_file():
                raise ConfigError(f"ssh {spec.id!r}: {path} is neither an agent socket nor a key")
        return self._start_agent(spec)

    def _start_agent(self, spec: SshSpec) -> Path:
        agent_bin, add_bin = shutil.which("ssh-agent"), shutil.which("ssh-add")
        if agent_bin is None or add_bin is None:
            raise ConfigError(
                f"ssh {spec.id!r}: forwarding key files needs ssh-agent and ssh-add",
                hint="install openssh-client, or pass an agent socket instead of keys",
            )
        if self._tempdir is None:
            self._tempdir = tempfile.mkdtemp(prefix="pybuildx-ssh-")
        sock = Path(self._tempdir) / f"agent-{len(self._agents)}.sock"
        agent = subprocess.Popen(
            [agent_bin, "-D", "-a", str(sock)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._agents.append(agent)
        deadline = time.monotonic() + _AGENT_START_TIMEOUT_S
        while not _is_socket(sock):
            if agent.poll() is not None or time.monotonic() > deadline:
                raise ConfigError(f"ssh {spec.id!r}: ssh-agent did not start")
            time.sleep(0.02)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock), "SSH_ASKPASS_REQUIRE": "never"}
        env.pop("DISPLAY", None)
        result = subprocess.run(
            [add_bin, "-q", *(str(p) for p in spec.paths)],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
        if result.returncode != 0:
            detail = result.stderr.decode("utf-8", "replace").strip().splitlines()
            raise ConfigError(
                f"ssh {spec.id!r}: ssh-add refused the keys: {detail[-1] if detail else ''}",
                hint="keys with a passphrase must be loaded into your own agent first",
            )
        return sock

    def close(self) -> None:
        for agent in self._agents:
            if agent.poll() is None:
                agent.terminate()
                try:
                    agent.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    agent.kill()
                    agent.wait()
        self._agents.clear()
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None


class SshAttachable(ssh_pb2_grpc.SSHServicer):
    """Serves ``moby.sshforward.v1.SSH`` by relaying bytes to local agent sockets."""

    def __init__(self, sockets: Mapping[str, Path]) -> None:
        self._sockets = dict(sockets)

    def register(self, server: grpc.Server) -> None:
        ssh_pb2_grpc.add_SSHServicer_to_server(self, server)  # type: ignore[no-untyped-call]

    def method_names(self) -> Sequence[str]:
        return [_SERVICE + "CheckAgent", _SERVICE + "ForwardAgent"]

    def _socket(self, ssh_id: str) -> Path | None:
        return self._sockets.get(ssh_id or "default")

    def CheckAgent(
        self, request: ssh_pb2.CheckAgentRequest, context: grpc.ServicerContext
    ) -> ssh_pb2.CheckAgentResponse:
        if self._socket(request.ID) is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unset ssh forward key {request.ID}")
        return ssh_pb2.CheckAgentResponse()

    def ForwardAgent(
        self, request_iterator: Iterator[ssh_pb2.BytesMessage], context: grpc.ServicerContext
    ) -> Iterator[ssh_pb2.BytesMessage]:
        metadata = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        ssh_id = metadata.get(_ID_METADATA, "")
        path = self._socket(ssh_id)
        if path is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unset ssh forward key {ssh_id}")
        assert path is not None
        agent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            agent.connect(str(path))
        except OSError as exc:
            agent.close()
            context.abort(grpc.StatusCode.UNAVAILABLE, f"cannot reach ssh agent: {exc.strerror}")

        def to_agent() -> None:
            try:
                for message in request_iterator:
                    agent.sendall(message.data)
            except (OSError, grpc.RpcError):
                pass
            finally:
                with contextlib.suppress(OSError):
                    agent.shutdown(socket.SHUT_WR)

        pump = threading.Thread(target=to_agent, name="ssh-forward", daemon=True)
        pump.start()
        try:
            while True:
                try:
                    data = agent.recv(_CHUNK)
                except OSError:
                    break
                if not data:
                    break
                yield ssh_pb2.BytesMessage(data=data)
        finally:
            agent.close()
