"""The local driver: a buildkitd process we spawn ourselves, with a private root and socket.

It is the embedded default builder of ``ci-build build``: ephemeral (a 0700 temp dir holding the
state, the socket and the log, removed on teardown). A named local builder keeps its state under
the store's state dir instead, so ``builder create --bootstrap`` can start a daemon that later
``ci-build`` processes reuse; ``builder rm`` stops it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from pybuildx.config import reject_unknown
from pybuildx.drivers.base import DEFAULT_BOOT_TIMEOUT, DriverInfo, Features, Status
from pybuildx.drivers.options import duration_opt, require_absolute_path
from pybuildx.drivers.readiness import wait_until_ready
from pybuildx.drivers.spec import NodeSpec
from pybuildx.errors import ConfigError, DriverError
from pybuildx.transport.channel import open_channel

__all__ = ["KNOWN_OPTS", "LocalDriver", "LocalOpts", "parse_opts"]

KNOWN_OPTS = ("binary", "root", "timeout")
_STOP_GRACE = 10.0
_LOG_TAIL = 2000
# sun_path holds 108 bytes; deep $PYBUILDX_CONFIG paths would not fit.
_MAX_SOCKET_PATH = 100


@dataclass(frozen=True)
class LocalOpts:
    binary: str = "buildkitd"
    root: Path | None = None
    timeout: float = DEFAULT_BOOT_TIMEOUT


def parse_opts(opts: dict[str, str]) -> LocalOpts:
    reject_unknown(opts, KNOWN_OPTS, what="driver-opt for the local driver")
    root = require_absolute_path("root", opts["root"]) if "root" in opts else None
    return LocalOpts(
        binary=opts.get("binary") or "buildkitd",
        root=root,
        timeout=duration_opt(opts, "timeout", DEFAULT_BOOT_TIMEOUT),
    )


def validate(node: NodeSpec) -> None:
    parse_opts(node.driver_opts)
    if node.endpoint:
        raise ConfigError(
            "the local driver takes no endpoint",
            hint="it starts its own buildkitd; use --driver remote for an existing daemon",
        )
    _check_flags(node.buildkitd_flags)


def _check_flags(flags: tuple[str, ...]) -> None:
    for flag in flags:
        name = flag.split("=", 1)[0]
        if name in ("--addr", "--root"):
            raise ConfigError(
                f"--buildkitd-flags must not set {name}: the local driver chooses it",
                hint="use driver-opt root=/abs/dir to keep the daemon's state in a directory",
            )


class LocalDriver:
    """One buildkitd child process; ``state_dir=None`` makes it ephemeral (a private temp dir)."""

    def __init__(self, node: NodeSpec, *, state_dir: Path | None = None) -> None:
        self._node = node
        self._opts = parse_opts(node.driver_opts)
        self._persistent_dir = state_dir
        # The socket, log and (by default) the daemon's root; ephemeral: None before bootstrap.
        self._dir: Path | None = state_dir
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def features(self) -> Features:
        return Features(docker_exporter=True, default_load=False)

    @property
    def pid(self) -> int | None:
        if self._process is not None:
            return self._process.pid
        return self._recorded_pid()

    @property
    def address(self) -> str:
        return f"unix://{self._socket_path()}"

    # -- paths ------------------------------------------------------------------------------

    def _runtime_dir(self) -> Path:
        assert self._dir is not None
        recorded = self._recorded_runtime()
        return recorded if recorded is not None else self._fresh_runtime_dir()

    def _fresh_runtime_dir(self) -> Path:
        assert self._dir is not None
        if len(str(self._dir / "buildkitd.sock")) <= _MAX_SOCKET_PATH:
            return self._dir
        digest = hashlib.sha256(str(self._dir).encode()).hexdigest()[:16]
        name = f"pybuildx-{os.getuid()}-{digest}"
        for base in (tempfile.gettempdir(), "/tmp"):
            if len(str(Path(base) / name / "buildkitd.sock")) <= _MAX_SOCKET_PATH:
                return Path(base) / name
        raise DriverError(
            f"no short enough directory for the buildkitd socket of {self._dir}",
            hint="set TMPDIR to a short path",
        )

    def _socket_path(self) -> Path:
        return self._runtime_dir() / "buildkitd.sock"

    def _root(self) -> Path:
        assert self._dir is not None
        return self._opts.root or self._dir / "root"

    def _record_path(self) -> Path:
        assert self._dir is not None
        return self._dir / "process.json"

    def _record(self) -> dict[str, object]:
        if self._dir is None:
            return {}
        try:
            data = json.loads(self._record_path().read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _recorded_pid(self) -> int | None:
        pid = self._record().get("pid")
        return pid if isinstance(pid, int) else None

    def _recorded_runtime(self) -> Path | None:
        # Another process (another TMPDIR) must find the same socket: the path is recorded.
        runtime = self._record().get("runtime")
        return Path(runtime) if isinstance(runtime, str) else None

    # -- lifecycle --------------------------------------------------------------------------

    def bootstrap(self, timeout: float | None = None) -> None:
        if self.info().status == Status.RUNNING:
            return
        binary = shutil.which(self._opts.binary)
        if binary is None:
            raise DriverError(
                f"cannot find {self._opts.binary!r} for the local builder",
                hint="put buildkitd on PATH or set driver-opt binary=/abs/path/to/buildkitd",
            )
        with self._lock:
            # A teardown that ran first (SIGTERM during bootstrap) must not be followed by a spawn.
            if self._closed:
                raise DriverError(f"node {self._node.name} was torn down while starting")
            self._spawn(binary)
        channel = self.dial()
        try:
            wait_until_ready(
                channel,
                address=self.address,
                timeout=timeout or self._opts.timeout,
                check_alive=self._check_alive,
            )
        except BaseException:
            channel.close()
            self.teardown()
            raise
        channel.close()

    def _spawn(self, binary: str) -> None:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="pybuildx-local-"))
        else:
            self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        runtime = self._fresh_runtime_dir()
        runtime.mkdir(mode=0o700, exist_ok=True)
        self._record_path().write_text(json.dumps({"runtime": str(runtime)}))
        self._socket_path().unlink(missing_ok=True)
        config = self._write_config(runtime)
        argv = [
            binary,
            "--root",
            str(self._root()),
            "--addr",
            self.address,
            "--config",
            str(config),
            *self._default_flags(),
            *self._node.buildkitd_flags,
        ]
        log_path = self._dir / "buildkitd.log"
        with open(log_path, "ab") as log:
            self._process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Own session: a Ctrl-C in the terminal reaches us, and we stop the daemon in order.
                start_new_session=True,
            )
        self._record_path().write_text(
            json.dumps({"pid": self._process.pid, "runtime": str(runtime)})
        )

    def _default_flags(self) -> list[str]:
        given = {f.split("=", 1)[0] for f in self._node.buildkitd_flags}
        flags = []
        if "--containerd-worker" not in given:
            flags.append("--containerd-worker=false")
        return flags

    def _write_config(self, runtime: Path) -> Path:
        # buildkitd's trace socket defaults to /run/buildkit/otel-grpc.sock, shared by every daemon
        # on the host and left behind on exit; give ours a private path.
        text = self._node.buildkitd_config or ""
        if "[otel]" not in text:
            text += f'\n[otel]\n  socketPath = "{runtime / "otel-grpc.sock"}"\n'
        assert self._dir is not None
        path = self._dir / "buildkitd.toml"
        path.write_text(text)
        path.chmod(0o600)
        return path

    def _check_alive(self) -> None:
        if self._process is None or self._process.poll() is None:
            return
        raise DriverError(
            f"buildkitd exited with status {self._process.returncode} while starting: "
            f"{self._log_tail()}",
            hint="check --buildkitd-flags and --buildkitd-config; run as root for the OCI worker",
        )

    def _log_tail(self) -> str:
        if self._dir is None:
            return ""
        try:
            text = (self._dir / "buildkitd.log").read_text(errors="replace")
        except OSError:
            return ""
        lines = [line for line in text.strip().splitlines() if line.strip()]
        return " | ".join(lines[-3:])[-_LOG_TAIL:]

    def dial(self) -> grpc.Channel:
        if self._dir is None:
            raise DriverError(f"node {self._node.name} is not bootstrapped")
        return open_channel(self.address)

    def info(self) -> DriverInfo:
        if self._dir is None:
            return DriverInfo(Status.INACTIVE)
        pid = self.pid
        if pid is None or not _pid_alive(pid, self._process):
            return DriverInfo(Status.STOPPED if self._record_path().exists() else Status.INACTIVE)
        if not self._socket_path().exists():
            return DriverInfo(Status.STARTING)
        return DriverInfo(Status.RUNNING)

    def release(self) -> None:
        """Nothing client-side: the daemon and its socket stay for later runs."""

    def stop(self) -> str:
        """Stop the daemon; root, config and log stay, so ``bootstrap`` resumes with its cache."""
        with self._lock:
            pid = self.pid
            if self._dir is None or pid is None or not _pid_alive(pid, self._process):
                return f"{self._node.name}: buildkitd is not running"
            _stop(pid, self._process)
            self._process = None
            runtime = self._runtime_dir()
            self._socket_path().unlink(missing_ok=True)
            _unmount_below(self._root())
            self._record_path().write_text(json.dumps({"runtime": str(runtime)}))
        return f"{self._node.name}: stopped buildkitd (pid {pid}); its state is kept"

    def detach(self) -> str | None:
        pid = self.pid
        if self._dir is None or pid is None or not _pid_alive(pid, self._process):
            return None
        return (
            f"{self._node.name}: buildkitd (pid {pid}) keeps running on {self.address}; "
            f"stop it with 'kill {pid}', its state is in {self._dir}"
        )

    def teardown(self, keep_state: bool = False) -> None:
        """Stop the daemon, then remove its directories (the root too unless ``keep_state``)."""
        with self._lock:
            self._closed = True
            self._teardown(keep_state)

    def _teardown(self, keep_state: bool) -> None:
        if self._dir is None:
            return
        pid = self.pid
        runtime = self._runtime_dir()
        if pid is not None:
            _stop(pid, self._process)
        self._process = None
        root = self._root()
        _unmount_below(root)
        if runtime != self._dir:
            _remove_tree(runtime)
        if self._persistent_dir is None:
            # A user-chosen root outlives an ephemeral builder: keeping it is why it was chosen.
            _remove_tree(self._dir)
            self._dir = None
            return
        self._record_path().unlink(missing_ok=True)
        self._socket_path().unlink(missing_ok=True)
        if not keep_state:
            _remove_tree(self._dir)
            if self._opts.root is not None:
                _remove_tree(self._opts.root)


def _pid_alive(pid: int, process: subprocess.Popen[bytes] | None) -> bool:
    if process is not None:
        return process.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A reused pid that is not a buildkitd is not ours.
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return b"buildkitd" in cmdline


def _stop(pid: int, process: subprocess.Popen[bytes] | None) -> None:
    if not _pid_alive(pid, process):
        return
    for sig, grace in ((signal.SIGTERM, _STOP_GRACE), (signal.SIGKILL, _STOP_GRACE)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=0.1)
            else:
                _reap(pid)
                time.sleep(0.1)
            if not _pid_alive(pid, process):
                return
    raise DriverError(f"buildkitd (pid {pid}) did not stop; remove it by hand")


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _unmount_below(root: Path) -> None:
    """A killed daemon can leave overlay mounts under its root; rmtree cannot cross them."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return
    prefix = str(root.resolve()) + "/"
    targets = [fields[4] for fields in (line.split() for line in lines) if len(fields) > 4]
    for target in sorted((t for t in targets if t.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False, capture_output=True)


def _remove_tree(path: Path) -> None:
    for attempt in range(3):
        try:
            shutil.rmtree(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            if attempt == 2:
                raise DriverError(f"cannot remove {path}; remove it by hand") from None
            time.sleep(0.5)


def new(node: NodeSpec, *, builder: str, state_dir: Path | None) -> LocalDriver:
    del builder
    return LocalDriver(node, state_dir=state_dir)
