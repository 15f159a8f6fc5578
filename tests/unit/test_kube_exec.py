"""kube-pod:// endpoints and the exec stream's frame handling (channel byte first)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from websocket import ABNF

from pybuildx.errors import ConfigError
from pybuildx.transport.kube_exec import (
    KubeExecStream,
    KubePodTarget,
    handshake_reason,
    parse_kube_pod,
)


def test_kube_pod_endpoint_keys() -> None:
    assert parse_kube_pod("kube-pod://bk-0?namespace=ci&context=prod&container=buildkitd") == (
        KubePodTarget(pod="bk-0", namespace="ci", context="prod", container="buildkitd")
    )
    assert parse_kube_pod("kube-pod://bk-0") == KubePodTarget(pod="bk-0")


@pytest.mark.parametrize(
    "endpoint", ["kube-pod://Bad_Pod", "kube-pod://p?namespace=a/b", "kube-pod://p?nmespace=x"]
)
def test_bad_kube_pod_endpoints(endpoint: str) -> None:
    with pytest.raises(ConfigError):
        parse_kube_pod(endpoint)


def test_handshake_errors_become_one_readable_line() -> None:
    text = (
        "Handshake status 404 Not Found -+-+- {'audit-id': 'x'} -+-+- "
        '{"kind":"Status","message":"pods \\"p\\" not found","code":404}'
    )
    assert handshake_reason(text) == '404 Not Found: pods "p" not found'


@dataclass
class _Frame:
    data: bytes


class FakeSocket:
    """Frames as the API server sends them; a real server never splits them this way on demand."""

    def __init__(self, frames: list[tuple[int, bytes]]) -> None:
        self.frames = frames

    def recv_data_frame(self, control: bool) -> tuple[int, _Frame]:
        if not self.frames:
            return ABNF.OPCODE_CLOSE, _Frame(b"")
        opcode, data = self.frames.pop(0)
        return opcode, _Frame(data)


class FakeWSClient:
    def __init__(self, frames: list[tuple[int, bytes]]) -> None:
        self.sock = FakeSocket(frames)


def test_stdout_is_relayed_byte_exact_and_stderr_kept_aside() -> None:
    payload = bytes(range(256))  # not UTF-8: must pass untouched
    stream = KubeExecStream(
        FakeWSClient(
            [
                (ABNF.OPCODE_BINARY, b"\x02dial-stdio: warning\n"),
                (ABNF.OPCODE_PING, b""),
                (ABNF.OPCODE_BINARY, b"\x01" + payload[:100]),
                (ABNF.OPCODE_BINARY, b"\xff\x00"),  # v5: a channel closed
                (ABNF.OPCODE_BINARY, b"\x01" + payload[100:]),
            ]
        )
    )
    received = b""
    while chunk := stream.recv(64):
        received += chunk
    assert received == payload
    assert stream.stderr == "dial-stdio: warning\n"
