"""Session Auth service: hands registry credentials to the daemon when it pulls or pushes.

Only ``Credentials`` is served. ``GetTokenAuthority`` answers UNIMPLEMENTED, which makes the
daemon fetch bearer tokens itself with the credentials we return (the same outcome as the Go
client without a token authority).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import grpc

from pybuildx.buildkit._pb import auth_pb2, auth_pb2_grpc
from pybuildx.credentials import CredentialResolver
from pybuildx.errors import RegistryError, redact

__all__ = ["AuthAttachable"]

_SERVICE = "/moby.filesync.v1.Auth/"
_METHODS = ("Credentials", "FetchToken", "GetTokenAuthority", "VerifyTokenAuthority")


class AuthAttachable(auth_pb2_grpc.AuthServicer):
    """Serves ``moby.filesync.v1.Auth`` from a ``CredentialResolver``.

    A helper failure is sent to the daemon (so the pull/push stops) and kept in ``failures``,
    from which the build raises a ``RegistryError`` with our message instead of the daemon's.
    """

    def __init__(self, resolver: CredentialResolver) -> None:
        self._resolver = resolver
        self._lock = threading.Lock()
        self._failures: list[RegistryError] = []

    def register(self, server: grpc.Server) -> None:
        auth_pb2_grpc.add_AuthServicer_to_server(self, server)  # type: ignore[no-untyped-call]

    def method_names(self) -> Sequence[str]:
        return [_SERVICE + name for name in _METHODS]

    @property
    def failures(self) -> list[RegistryError]:
        with self._lock:
            return list(self._failures)

    def Credentials(
        self, request: auth_pb2.CredentialsRequest, context: grpc.ServicerContext
    ) -> auth_pb2.CredentialsResponse:
        try:
            found = self._resolver.lookup(request.Host)
        except RegistryError as exc:
            with self._lock:
                self._failures.append(exc)
            context.abort(grpc.StatusCode.PERMISSION_DENIED, redact(exc.message))
        return auth_pb2.CredentialsResponse(Username=found.username, Secret=found.secret)

    def FetchToken(
        self, request: auth_pb2.FetchTokenRequest, context: grpc.ServicerContext
    ) -> auth_pb2.FetchTokenResponse:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "no token authority on this client")
        raise AssertionError("unreachable: abort raises")

    def GetTokenAuthority(
        self, request: auth_pb2.GetTokenAuthorityRequest, context: grpc.ServicerContext
    ) -> auth_pb2.GetTokenAuthorityResponse:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "no token authority on this client")
        raise AssertionError("unreachable: abort raises")

    def VerifyTokenAuthority(
        self, request: auth_pb2.VerifyTokenAuthorityRequest, context: grpc.ServicerContext
    ) -> auth_pb2.VerifyTokenAuthorityResponse:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "no token authority on this client")
        raise AssertionError("unreachable: abort raises")
