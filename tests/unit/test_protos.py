"""Our own .proto files: generated code is current, field numbers match BuildKit's wire format,
and gRPC errors from the daemon become one readable line."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import status_pb2

from pybuildx.buildkit._pb import control_pb2, fsutil_pb2, ops_pb2, worker_pb2
from pybuildx.buildkit.status_errors import from_rpc_error, source_locations
from pybuildx.errors import BuildFailed, ConnectError, DaemonError

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def _field_numbers(message: type) -> dict[str, int]:
    return {f.name: f.number for f in message.DESCRIPTOR.fields}  # type: ignore[attr-defined]


def test_solve_request_field_numbers() -> None:
    numbers = _field_numbers(control_pb2.SolveRequest)
    assert numbers["Ref"] == 1
    assert numbers["Definition"] == 2
    assert numbers["ExporterDeprecated"] == 3
    assert numbers["ExporterAttrsDeprecated"] == 4
    assert numbers["Session"] == 5
    assert numbers["Frontend"] == 6
    assert numbers["FrontendAttrs"] == 7
    assert numbers["Cache"] == 8
    assert numbers["Entitlements"] == 9
    assert numbers["Exporters"] == 13


def test_service_method_paths() -> None:
    service = control_pb2.DESCRIPTOR.services_by_name["Control"]
    assert service.full_name == "moby.buildkit.v1.Control"
    assert {m.name for m in service.methods} >= {
        "DiskUsage",
        "Prune",
        "Solve",
        "Status",
        "Session",
        "ListWorkers",
        "Info",
    }


def test_known_wire_bytes() -> None:
    # Bytes as BuildKit's Go code marshals them (field 1 string, field 2 enum, ...).
    assert control_pb2.StatusRequest(Ref="ab").SerializeToString() == b"\x0a\x02ab"
    assert ops_pb2.Platform(Architecture="arm64", OS="linux").SerializeToString() == (
        b"\x0a\x05arm64\x12\x05linux"
    )
    packet = fsutil_pb2.Packet(type=fsutil_pb2.Packet.PACKET_REQ, ID=7)
    assert packet.SerializeToString() == b"\x08\x01\x18\x07"
    # The end-of-listing STAT packet must not carry an (empty) stat.
    assert fsutil_pb2.Packet(type=fsutil_pb2.Packet.PACKET_STAT).SerializeToString() == b""
    record = worker_pb2.WorkerRecord(ID="w", platforms=[ops_pb2.Platform(OS="linux")])
    assert record.SerializeToString() == b"\x0a\x01w\x1a\x07\x12\x05linux"


class FakeRpcError(grpc.RpcError):
    """A failed call as grpcio raises it, for error shapes a test daemon cannot be made to send."""

    def __init__(self, code: grpc.StatusCode, details: str, trailers: tuple = ()) -> None:
        self._code, self._details, self._trailers = code, details, trailers

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple:
        return self._trailers


def _status_with_source(line: int) -> bytes:
    source = {
        "info": {
            "filename": "Dockerfile",
            "data": base64.b64encode(b"FROM scratch\nRUN exit 3\n").decode(),
        },
        "ranges": [{"start": {"line": line}, "end": {"line": line}}],
    }
    detail = any_pb2.Any(
        type_url="github.com/moby/buildkit/errdefs.Source+json",
        value=json.dumps(source).encode(),
    )
    other = any_pb2.Any(type_url="github.com/moby/buildkit/stack.Stack+json", value=b"{}")
    return status_pb2.Status(code=2, message="x", details=[other, detail]).SerializeToString()


def test_build_error_names_the_dockerfile_line() -> None:
    error = FakeRpcError(
        grpc.StatusCode.UNKNOWN,
        'process "/bin/sh -c exit 3" did not complete successfully: exit code: 3',
        (("grpc-status-details-bin", _status_with_source(2)),),
    )
    failure = from_rpc_error(error, action="build")
    assert isinstance(failure, BuildFailed)
    assert failure.exit_code == 1
    assert "exit code: 3" in failure.message
    assert "Dockerfile:2: RUN exit 3" in failure.message
    assert str(source_locations(error)[0]) == "Dockerfile:2: RUN exit 3"


def test_malformed_details_do_not_hide_the_error() -> None:
    error = FakeRpcError(
        grpc.StatusCode.UNKNOWN, "boom", (("grpc-status-details-bin", b"\xff\xff"),)
    )
    failure = from_rpc_error(error, action="build")
    assert failure.message == "build failed: boom"


def test_unavailable_is_a_connect_error_with_a_hint() -> None:
    error = FakeRpcError(
        grpc.StatusCode.UNAVAILABLE,
        "failed to connect to all addresses; last error: UNKNOWN: unix:/x: "
        "No such file or directory",
    )
    failure = from_rpc_error(error, action="info", target="unix:///x")
    assert isinstance(failure, ConnectError)
    assert failure.exit_code == 2
    assert failure.hint and "running" in failure.hint


def test_other_rpc_errors_are_daemon_errors() -> None:
    error = FakeRpcError(
        grpc.StatusCode.INVALID_ARGUMENT, "rpc error: code = Unknown desc = bad filter"
    )
    failure = from_rpc_error(error, action="disk usage")
    assert type(failure) is DaemonError
    assert failure.message == "disk usage failed: bad filter"


@pytest.mark.parametrize("code", [grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED])
def test_timeouts_and_cancels(code: grpc.StatusCode) -> None:
    assert isinstance(from_rpc_error(FakeRpcError(code, "x"), action="build"), DaemonError)


class FakeOldDaemon:
    """A gRPC server without ``Control.Info``, as BuildKit < v0.11 and Docker 20.10's builder
    (the bed only runs newer daemons, and Docker's endpoint needs the /grpc upgrade)."""

    def __init__(self, socket_dir: Path) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.address = f"unix://{socket_dir}/old.sock"
        self.server = grpc.server(ThreadPoolExecutor(max_workers=2))
        self.server.add_insecure_port(f"unix:{socket_dir}/old.sock")
        self.server.start()

    def stop(self) -> None:
        self.server.stop(None)


def test_info_unimplemented_counts_as_ready(tmp_path: Path) -> None:
    from pybuildx.buildkit.control import ControlClient, wait_ready
    from pybuildx.transport.channel import open_channel

    daemon = FakeOldDaemon(tmp_path)
    channel = open_channel(daemon.address)
    try:
        assert wait_ready(channel, 5) is None
        assert ControlClient(channel).info() is None
        with pytest.raises(DaemonError, match="listing workers failed"):
            ControlClient(channel).list_workers()
    finally:
        channel.close()
        daemon.stop()
