"""A small OCI distribution (registry v2) client: manifests and blobs, Basic and Bearer auth.

Used for the client-side index merge of multi-node pushes. TLS is always verified (system store
plus an optional CA file); plain HTTP is used only for loopback registries (after HTTPS fails,
as containerd does) or when the user asked for an insecure registry.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from http.client import HTTPResponse
from pathlib import Path
from typing import Any

from pybuildx.credentials import ANONYMOUS, RegistryCredentials
from pybuildx.errors import RegistryError, register_secret
from pybuildx.images.reference import is_local_registry

__all__ = ["MANIFEST_MEDIA_TYPES", "Manifest", "RegistryClient"]

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_MEDIA_TYPES = (OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST)
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Manifest:
    media_type: str
    digest: str
    body: bytes

    def json(self) -> dict[str, Any]:
        loaded = json.loads(self.body)
        return loaded if isinstance(loaded, dict) else {}

    @property
    def is_index(self) -> bool:
        return self.media_type in (OCI_INDEX, DOCKER_LIST)


class RegistryClient:
    """One registry host; thread-safe; tokens cached per scope."""

    def __init__(
        self,
        host: str,
        credentials: RegistryCredentials = ANONYMOUS,
        *,
        ca_file: Path | None = None,
        insecure: bool = False,
    ) -> None:
        self.host = host
        self._credentials = credentials
        self._insecure = insecure
        self._plain_http = False
        self._context = ssl.create_default_context()
        if ca_file is not None:
            self._context.load_verify_locations(cafile=str(ca_file))
        if insecure:
            self._context.check_hostname = False
            self._context.verify_mode = ssl.CERT_NONE
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()

    # -- HTTP plumbing -------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        scheme = "http" if self._plain_http else "https"
        return f"{scheme}://{self.host}{path}"

    def _open(self, request: urllib.request.Request) -> HTTPResponse:
        response: HTTPResponse = urllib.request.urlopen(
            request, timeout=_TIMEOUT_S, context=None if self._plain_http else self._context
        )
        return response

    def _basic(self) -> str:
        pair = f"{self._credentials.username}:{self._credentials.secret}".encode()
        header = "Basic " + base64.b64encode(pair).decode()
        register_secret(header.split(" ", 1)[1])
        return header

    def _fetch_token(self, challenge: str, scope: str) -> str:
        params = dict(_CHALLENGE_PARAM.findall(challenge))
        realm = params.get("realm")
        if not realm:
            raise RegistryError(f"registry {self.host} sent a bearer challenge without a realm")
        query = {"service": params.get("service", "")}
        if scope:
            query["scope"] = scope
        request = urllib.request.Request(f"{realm}?{urllib.parse.urlencode(query)}")
        if not self._credentials.anonymous:
            request.add_header("Authorization", self._basic())
        try:
            with self._open(request) as response:
                payload = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise self._denied() from None
            raise RegistryError(
                f"registry {self.host}: token request failed: HTTP {exc.code}"
            ) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise RegistryError(f"registry {self.host}: token request failed: {exc}") from None
        token = str(payload.get("token") or payload.get("access_token") or "")
        register_secret(token)
        return token

    def _denied(self) -> RegistryError:
        if self._credentials.anonymous:
            return RegistryError(
                f"registry {self.host} requires authentication and no credentials were found",
                hint="log in (docker config), or pass --registry-auth / CI registry variables",
            )
        return RegistryError(
            f"registry {self.host} rejected the credentials (wrong username or password?)",
            hint="check the credentials the docker config, helper or flags provide",
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        scope: str = "",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """Send one request, answering auth challenges; returns status, headers, body."""
        authorization: str | None = None
        with self._lock:
            if scope in self._tokens:
                authorization = self._tokens[scope]
        for _attempt in range(3):
            request = urllib.request.Request(
                self._url(path), data=body, method=method, headers=dict(headers or {})
            )
            if authorization:
                request.add_header("Authorization", authorization)
            try:
                with self._open(request) as response:
                    return response.status, dict(response.headers.items()), response.read()
            except urllib.error.HTTPError as exc:
                if exc.code != 401:
                    return exc.code, dict(exc.headers.items()), exc.read()
                if authorization is not None and _attempt > 0:
                    raise self._denied() from None
                challenge = exc.headers.get("WWW-Authenticate", "")
                authorization = self._answer(challenge, scope)
            except urllib.error.URLError as exc:
                if self._may_fall_back(exc):
                    self._plain_http = True
                    continue
                raise RegistryError(f"cannot reach registry {self.host}: {exc.reason}") from None
            except OSError as exc:
                raise RegistryError(f"cannot reach registry {self.host}: {exc}") from None
        raise self._denied()

    def _may_fall_back(self, exc: urllib.error.URLError) -> bool:
        allowed = self._insecure or is_local_registry(self.host)
        return allowed and not self._plain_http and isinstance(exc.reason, ssl.SSLError)

    def _answer(self, challenge: str, scope: str) -> str:
        kind = challenge.split(" ", 1)[0].lower()
        if kind == "basic":
            if self._credentials.anonymous:
                raise self._denied()
            value = self._basic()
        elif kind == "bearer":
            value = "Bearer " + self._fetch_token(challenge, scope)
        else:
            raise RegistryError(f"registry {self.host}: unsupported auth challenge {kind!r}")
        with self._lock:
            self._tokens[scope] = value
        return value

    # -- API -----------------------------------------------------------------------------------

    @staticmethod
    def _scope(repository: str, push: bool = False) -> str:
        return f"repository:{repository}:{'pull,push' if push else 'pull'}"

    def get_manifest(self, repository: str, reference: str) -> Manifest:
        status, headers, body = self.request(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            scope=self._scope(repository),
            headers={"Accept": ", ".join(MANIFEST_MEDIA_TYPES)},
        )
        if status == 404:
            raise RegistryError(f"manifest {self.host}/{repository}@{reference} not found")
        if status != 200:
            raise RegistryError(
                f"registry {self.host}: GET manifest {repository}@{reference}: HTTP {status}"
            )
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if reference.startswith("sha256:") and digest != reference:
            raise RegistryError(f"registry {self.host} returned a manifest that is not {reference}")
        media_type = _header(headers, "Content-Type").split(";")[0].strip()
        if media_type not in MANIFEST_MEDIA_TYPES:
            media_type = str(json.loads(body).get("mediaType", media_type))
        return Manifest(media_type, digest, body)

    def get_blob(self, repository: str, digest: str) -> bytes:
        status, _, body = self.request(
            "GET", f"/v2/{repository}/blobs/{digest}", scope=self._scope(repository)
        )
        if status != 200:
            raise RegistryError(f"registry {self.host}: GET blob {repository}@{digest}: {status}")
        return body

    def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> str:
        status, headers, body = self.request(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            scope=self._scope(repository, push=True),
            body=manifest.body,
            headers={"Content-Type": manifest.media_type},
        )
        if status not in (200, 201, 202):
            detail = body.decode("utf-8", "replace").strip()[:300]
            raise RegistryError(
                f"registry {self.host}: PUT manifest {repository}:{reference} failed: "
                f"HTTP {status} {detail}"
            )
        return _header(headers, "Docker-Content-Digest") or manifest.digest


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return ""
