"""Client-side index merge for multi-node pushes.

Each node pushes its platforms by digest (``push-by-digest=true``) into the target repository;
this module reads every node's manifest or index, builds one index (children flattened, repeated
digests dropped, a platform built by two nodes refused) and PUTs it under each tag. Attestation
manifests (``vnd.docker.reference.type=attestation-manifest``) ride along with their images.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pybuildx.credentials import CredentialResolver, ExplicitCredential, parse_registry_auth
from pybuildx.errors import RegistryError
from pybuildx.images.reference import ImageRef
from pybuildx.images.registry import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    Manifest,
    RegistryClient,
)

__all__ = ["MergeResult", "build_index", "merge_and_push", "merge_index", "registry_clients"]

_REFERENCE_TYPE = "vnd.docker.reference.type"
ClientFor = Callable[[str], RegistryClient]


@dataclass(frozen=True)
class MergeResult:
    digest: str
    media_type: str
    size: int
    names: tuple[str, ...]

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


def _platform_key(descriptor: Mapping[str, Any]) -> str:
    platform = descriptor.get("platform") or {}
    parts = [platform.get("os", ""), platform.get("architecture", ""), platform.get("variant", "")]
    return "/".join(p for p in parts if p)


def _is_attestation(descriptor: Mapping[str, Any]) -> bool:
    return (descriptor.get("annotations") or {}).get(_REFERENCE_TYPE) == "attestation-manifest"


def _descriptors_of(
    client: RegistryClient, repository: str, manifest: Manifest
) -> list[dict[str, Any]]:
    if manifest.is_index:
        children = manifest.json().get("manifests") or []
        return [dict(c) for c in children if isinstance(c, dict)]
    body = manifest.json()
    config = body.get("config") or {}
    descriptor: dict[str, Any] = {
        "mediaType": manifest.media_type,
        "digest": manifest.digest,
        "size": len(manifest.body),
    }
    if isinstance(config, dict) and config.get("digest"):
        image_config = json.loads(client.get_blob(repository, str(config["digest"])))
        platform = {
            "architecture": image_config.get("architecture", ""),
            "os": image_config.get("os", ""),
        }
        if image_config.get("variant"):
            platform["variant"] = image_config["variant"]
        descriptor["platform"] = platform
    return [descriptor]


def build_index(descriptors: Sequence[Mapping[str, Any]]) -> Manifest:
    """One index over ``descriptors``: repeats dropped, a platform twice (different digests)
    refused. OCI index unless every child is a Docker schema 2 manifest."""
    seen: dict[str, Mapping[str, Any]] = {}
    platforms: dict[str, str] = {}
    for descriptor in descriptors:
        digest = str(descriptor["digest"])
        if digest in seen:
            continue
        if not _is_attestation(descriptor):
            key = _platform_key(descriptor)
            if key and key in platforms:
                raise RegistryError(
                    f"two builds produced platform {key} ({platforms[key]} and {digest})",
                    hint="give each node distinct platforms",
                )
            platforms[key] = digest
        seen[digest] = descriptor
    children = list(seen.values())
    docker = bool(children) and all(c.get("mediaType") == DOCKER_MANIFEST for c in children)
    media_type = DOCKER_LIST if docker else OCI_INDEX
    body = json.dumps(
        {"schemaVersion": 2, "mediaType": media_type, "manifests": children},
        separators=(",", ":"),
    ).encode()
    return Manifest(media_type, "sha256:" + hashlib.sha256(body).hexdigest(), body)


def merge_and_push(
    sources: Sequence[ImageRef], tags: Sequence[ImageRef], client_for: ClientFor
) -> MergeResult:
    """Merge the pushed ``sources`` (``repo@digest``) into one index, PUT under every tag.

    Every tag's repository must already hold the children (nodes push by digest to each name).
    """
    if not sources or not tags:
        raise RegistryError("nothing to merge: no pushed images or no tags")
    descriptors: list[dict[str, Any]] = []
    for source in sources:
        client = client_for(source.api_host)
        manifest = client.get_manifest(source.repository, source.digest)
        descriptors.extend(_descriptors_of(client, source.repository, manifest))
    index = build_index(descriptors)
    for tag in tags:
        client = client_for(tag.api_host)
        client.put_manifest(tag.repository, index.digest, index)
        if tag.tag:
            client.put_manifest(tag.repository, tag.tag, index)
    return MergeResult(index.digest, index.media_type, len(index.body), tuple(map(str, tags)))


def _ca_file_for(host: str, environ: Mapping[str, str]) -> Path | None:
    """Docker's per-registry CA locations: ``$DOCKER_CONFIG/certs.d/<host>/ca.crt``, then
    ``/etc/docker/certs.d/<host>/ca.crt``."""
    candidates = []
    if environ.get("DOCKER_CONFIG"):
        candidates.append(Path(environ["DOCKER_CONFIG"]) / "certs.d" / host / "ca.crt")
    candidates.append(Path("/etc/docker/certs.d") / host / "ca.crt")
    return next((c for c in candidates if c.is_file()), None)


def registry_clients(
    resolver: CredentialResolver | None = None,
    *,
    insecure_hosts: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> ClientFor:
    """A cached ``host → RegistryClient`` factory using the build's credential sources."""
    env = os.environ if environ is None else environ
    found = resolver or CredentialResolver.from_environment(environ=env)
    clients: dict[str, RegistryClient] = {}

    def client_for(host: str) -> RegistryClient:
        if host not in clients:
            clients[host] = RegistryClient(
                host,
                found.lookup(host),
                ca_file=_ca_file_for(host, env),
                insecure=host in insecure_hosts,
            )
        return clients[host]

    return client_for


class _PushedResult(Protocol):
    @property
    def digest(self) -> str | None: ...

    @property
    def image_names(self) -> tuple[str, ...]: ...


def merge_index(
    results: Sequence[_PushedResult],
    names: Sequence[str],
    *,
    client_for: ClientFor | None = None,
    insecure: bool = False,
    registry_auths: Sequence[str] = (),
    extra_credentials: Sequence[ExplicitCredential] = (),
) -> str:
    """The pipeline's multi-node step: every node pushed by digest into the repositories of
    ``names``; merge those into one index, tag it with every name, return its digest.
    ``registry_auths`` are ``--registry-auth`` values (flags come before the environment);
    ``extra_credentials`` (the caller's) come after our variables, before the docker config."""
    tags = [ImageRef.parse(n) for n in names]
    sources: list[ImageRef] = []
    for result in results:
        if not result.digest:
            raise RegistryError("a node pushed no image (its build returned no digest)")
        pushed = [ImageRef.parse(n) for n in result.image_names] or tags
        sources.append(pushed[0].with_digest(result.digest))
    hosts = [t.api_host for t in tags] if insecure else []
    flags = [parse_registry_auth(text) for text in registry_auths]
    resolver = CredentialResolver.from_environment(flags, extra=extra_credentials)
    chosen = client_for or registry_clients(resolver, insecure_hosts=hosts)
    return merge_and_push(sources, tags, chosen).digest
