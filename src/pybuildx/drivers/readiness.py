"""Waiting until a freshly started or remote daemon answers, and explaining why it does not.

grpcio reports TLS and connect failures only as UNAVAILABLE with a free-text detail; we read that
text once, at the end, to give the user one clear sentence instead of the raw gRPC error.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc

from pybuildx.buildkit._pb import control_pb2
from pybuildx.buildkit.control import control_stub
from pybuildx.drivers.base import DriverInfo, Status
from pybuildx.errors import ConnectError, DriverError, PybuildxError

__all__ = ["explain_unavailable", "probe_status", "wait_until_ready"]

_PROBE_TIMEOUT = 3.0
_STATUS_TIMEOUT = 3.0
_POLL_INTERVAL = 0.2
# Certificate problems do not heal by waiting: give up after a few identical answers.
_PERMANENT_TLS_ATTEMPTS = 3


def explain_unavailable(
    detail: str, *, address: str, client_cert: bool | None = None
) -> ConnectError:
    """Turn grpcio's UNAVAILABLE detail into the error a user can act on.

    ``client_cert`` says whether we presented a client certificate (None: not TLS or unknown).
    """
    text = detail.lower()
    if "hostname verification" in text:
        return _servername_error(address)
    if "tsi_data_corrupted" in text or "certificate required" in text or "unknown ca" in text:
        # With TLS 1.3 the server rejects the client certificate after our side of the handshake
        # finished; grpcio then only sees the connection's first read fail.
        if client_cert is False:
            return ConnectError(
                f"{address} requires a client certificate (mutual TLS) and none was given",
                hint="pass driver-opts cert and key (a client certificate the daemon's CA signed)",
            )
        return ConnectError(
            f"{address} rejected the client certificate",
            hint="driver-opts cert and key must be a client certificate signed by the CA the "
            "daemon trusts",
        )
    if "certificate_verify_failed" in text or "unable to get local" in text:
        if "hostname" in text or "peer name" in text or "subject alt" in text:
            return _servername_error(address)
        return ConnectError(
            f"TLS handshake with {address} failed: the daemon's certificate is not signed by the "
            "given CA",
            hint="check driver-opt cacert: it must be the CA that signed the daemon's certificate",
        )
    if "peer name" in text or "hostname mismatch" in text or "does not match" in text:
        return _servername_error(address)
    if "certificate required" in text or "handshake failure" in text or "bad certificate" in text:
        return ConnectError(
            f"TLS handshake with {address} failed: the daemon requires a client certificate it "
            "accepts",
            hint="pass driver-opts cert and key (a client certificate the daemon's CA signed)",
        )
    if "ssl" in text or "tls" in text or "handshake" in text:
        return ConnectError(
            f"TLS handshake with {address} failed",
            hint="check driver-opts cacert, cert, key and servername against the daemon's setup",
        )
    return ConnectError(
        f"cannot reach BuildKit at {address}",
        hint="check that the daemon runs and listens on that address",
    )


def _servername_error(address: str) -> ConnectError:
    return ConnectError(
        f"TLS handshake with {address} failed: the daemon's certificate does not name the "
        "expected server",
        hint="set driver-opt servername to a name in the daemon certificate's SANs",
    )


def _is_permanent_tls_failure(detail: str) -> bool:
    text = detail.lower()
    return any(
        marker in text
        for marker in (
            "certificate_verify_failed",
            "hostname verification",
            "tsi_data_corrupted",
            "certificate required",
            "bad cert",
        )
    )


def wait_until_ready(
    channel: grpc.Channel,
    *,
    address: str,
    timeout: float,
    check_alive: Callable[[], None] | None = None,
    client_cert: bool | None = None,
) -> None:
    """Poll ``Control.Info`` until it answers (UNIMPLEMENTED counts: BuildKit < 0.11).

    ``check_alive`` raises when what we started died, so a crashed daemon fails fast instead of
    after the whole timeout.
    """
    stub = control_stub(channel)
    deadline = time.monotonic() + timeout
    last_detail = ""
    tls_failures = 0
    while True:
        if check_alive is not None:
            check_alive()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            stub.Info(control_pb2.InfoRequest(), timeout=min(_PROBE_TIMEOUT, remaining))
            return
        except grpc.RpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.UNIMPLEMENTED:
                return
            last_detail = str(exc.details() or "")
            if code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise DriverError(
                    f"BuildKit at {address} answered Info with {code.name}: {last_detail}"
                ) from None
            if _is_permanent_tls_failure(last_detail):
                tls_failures += 1
                if tls_failures >= _PERMANENT_TLS_ATTEMPTS:
                    raise explain_unavailable(
                        last_detail, address=address, client_cert=client_cert
                    ) from None
        time.sleep(min(_POLL_INTERVAL, max(0.0, deadline - time.monotonic())))
    error = explain_unavailable(last_detail, address=address, client_cert=client_cert)
    error.message = f"{error.message} (no answer within {timeout:g}s)"
    raise error


def probe_status(
    channel: grpc.Channel, *, address: str, client_cert: bool | None = None
) -> DriverInfo:
    """The state of a daemon someone else runs: RUNNING when it answers soon, else INACTIVE
    with the reason. Closes ``channel``."""
    try:
        wait_until_ready(channel, address=address, timeout=_STATUS_TIMEOUT, client_cert=client_cert)
    except PybuildxError as exc:
        return DriverInfo(Status.INACTIVE, str(exc))
    finally:
        channel.close()
    return DriverInfo(Status.RUNNING)
