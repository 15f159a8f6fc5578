"""Certificates for mutual-TLS BuildKit daemons: a CA, a daemon certificate, a client certificate.

The on-disk layout follows moby/buildkit's ``examples/kubernetes/create-certs.sh``
(``<out>/daemon/{ca,cert,key}.pem`` and ``<out>/client/{ca,cert,key}.pem``) so that
``buildkitd --tlscacert daemon/ca.pem ...`` and ``buildctl --tlsdir client`` work unchanged, and the
Kubernetes Secrets use the names and keys of the BuildKit examples (``buildkit-daemon-certs``,
``buildkit-client-certs``; keys ``ca.pem``, ``cert.pem``, ``key.pem``).

CI secret values (``BUILDER_NODE_<i>_AUTH_TLS_*``) are written as base64 of the PEM text: one line,
no spaces, only Base64 characters, so GitLab can mask them and GitHub stores them unchanged.
``decode_pem_value`` accepts that form and raw PEM alike.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import ipaddress
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pybuildx.errors import ConfigError, UsageError, register_secret

__all__ = [
    "CLIENT_NAME",
    "CLIENT_SECRET",
    "DAEMON_SECRET",
    "KEY_TYPES",
    "CertBundle",
    "CertSpec",
    "KeyType",
    "PemPair",
    "ci_env_values",
    "create_bundle",
    "decode_pem_value",
    "k8s_secret_manifests",
    "parse_sans",
    "write_layout",
    "write_private_file",
]

KeyType = Literal["ecdsa", "rsa"]
KEY_TYPES: tuple[str, ...] = ("ecdsa", "rsa")
CLIENT_NAME = "client"
DAEMON_SECRET = "buildkit-daemon-certs"
CLIENT_SECRET = "buildkit-client-certs"
CI_ENV_PREFIX = "BUILDER_NODE"
_RSA_BITS = 3072
# Tolerates daemons and CI runners whose clocks lag a little behind the machine making the certs.
_BACKDATE = datetime.timedelta(minutes=5)
_MAX_DAYS = 3650

SanName = x509.DNSName | x509.IPAddress


@dataclass(frozen=True, kw_only=True)
class CertSpec:
    """What to issue: daemon SANs (DNS names and IP addresses), validity and key algorithm."""

    sans: tuple[str, ...]
    days: int = 365
    key_type: KeyType = "ecdsa"

    def __post_init__(self) -> None:
        if not self.sans:
            raise ConfigError(
                "no subject alternative names for the daemon certificate",
                hint="pass --san with the daemon's DNS names and IPs, e.g. --san 127.0.0.1",
            )
        if not 1 <= self.days <= _MAX_DAYS:
            raise ConfigError(
                f"invalid validity {self.days} days", hint=f"use --days between 1 and {_MAX_DAYS}"
            )
        if self.key_type not in KEY_TYPES:
            raise ConfigError(f"unknown key type {self.key_type!r}", hint="use ecdsa or rsa")
        parse_sans(self.sans)


@dataclass(frozen=True)
class PemPair:
    """A certificate and its private key, both PEM encoded."""

    cert: bytes
    key: bytes


@dataclass(frozen=True)
class CertBundle:
    """A CA and the daemon and client certificates it signed."""

    ca: PemPair
    daemon: PemPair
    client: PemPair


def parse_sans(values: Iterable[str]) -> tuple[SanName, ...]:
    """Turn ``--san`` values (repeatable, comma lists) into DNS and IP SAN entries, in order."""
    result: dict[SanName, None] = {}
    for value in values:
        for item in value.split(","):
            name = item.strip()
            if not name:
                continue
            result.setdefault(_san_entry(name), None)
    return tuple(result)


def _san_entry(name: str) -> SanName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name.strip("[]")))
    except ValueError:
        pass
    label_chars = set("abcdefghijklmnopqrstuvwxyz0123456789-.*")
    lowered = name.lower()
    if not set(lowered) <= label_chars or lowered.startswith(".") or ".." in lowered:
        raise ConfigError(
            f"invalid subject alternative name {name!r}",
            hint="use DNS names (buildkitd.default.svc) or IP addresses (127.0.0.1)",
        )
    return x509.DNSName(lowered)


def _new_key(key_type: KeyType) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS)
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    register_secret(pem)
    return pem


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _serial() -> int:
    # Positive and at most 20 octets (RFC 5280 4.1.2.2).
    return secrets.randbits(159) | 1


def create_bundle(spec: CertSpec, *, now: datetime.datetime | None = None) -> CertBundle:
    """Issue a fresh CA, a daemon certificate for ``spec.sans`` and a ``client`` certificate."""
    start = (now or datetime.datetime.now(datetime.timezone.utc)) - _BACKDATE
    end = start + _BACKDATE + datetime.timedelta(days=spec.days)
    sans = parse_sans(spec.sans)

    ca_key = _new_key(spec.key_type)
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pybuildx"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"pybuildx CA {secrets.token_hex(4)}"),
        ]
    )
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(_serial())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def issue(common_name: str, names: Sequence[SanName], usage: x509.ObjectIdentifier) -> PemPair:
        key = _new_key(spec.key_type)
        cert = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pybuildx"),
                        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                    ]
                )
            )
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(_serial())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=spec.key_type == "rsa",
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        return PemPair(_cert_pem(cert), _key_pem(key))

    daemon_cn = next((str(n.value) for n in sans if isinstance(n, x509.DNSName)), "buildkitd")
    return CertBundle(
        ca=PemPair(_cert_pem(ca_cert), _key_pem(ca_key)),
        daemon=issue(daemon_cn, sans, ExtendedKeyUsageOID.SERVER_AUTH),
        client=issue(CLIENT_NAME, [x509.DNSName(CLIENT_NAME)], ExtendedKeyUsageOID.CLIENT_AUTH),
    )


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)


def write_private_file(path: Path, data: bytes, *, force: bool) -> None:
    if force:
        path.unlink(missing_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(
            f"{path} already exists", hint="pass --force to replace it, or choose another --out"
        ) from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def write_layout(
    bundle: CertBundle, out: Path, *, keep_ca_key: bool = False, force: bool = False
) -> list[Path]:
    """Write ``daemon/`` and ``client/`` (and ``ca-key.pem`` on request); files 0600, dirs 0700."""
    files: dict[Path, bytes] = {
        out / "daemon" / "ca.pem": bundle.ca.cert,
        out / "daemon" / "cert.pem": bundle.daemon.cert,
        out / "daemon" / "key.pem": bundle.daemon.key,
        out / "client" / "ca.pem": bundle.ca.cert,
        out / "client" / "cert.pem": bundle.client.cert,
        out / "client" / "key.pem": bundle.client.key,
    }
    if keep_ca_key:
        files[out / "ca-key.pem"] = bundle.ca.key
    if not force:
        existing = [p for p in files if p.exists()]
        if existing:
            raise UsageError(
                f"{existing[0]} already exists",
                hint="pass --force to replace it, or choose another --out",
            )
    _private_dir(out)
    for path, data in files.items():
        _private_dir(path.parent)
        write_private_file(path, data, force=force)
    return list(files)


def k8s_secret_manifests(bundle: CertBundle, *, namespace: str | None = None) -> dict[str, str]:
    """The two Secret manifests as YAML text, keyed by Secret name."""

    def manifest(name: str, pair: PemPair) -> str:
        metadata: dict[str, str] = {"name": name}
        if namespace:
            metadata["namespace"] = namespace
        data = {
            "ca.pem": base64.b64encode(bundle.ca.cert).decode(),
            "cert.pem": base64.b64encode(pair.cert).decode(),
            "key.pem": base64.b64encode(pair.key).decode(),
        }
        register_secret(data["key.pem"])
        document = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": metadata,
            "type": "Opaque",
            "data": data,
        }
        return yaml.safe_dump(document, sort_keys=False)

    return {
        DAEMON_SECRET: manifest(DAEMON_SECRET, bundle.daemon),
        CLIENT_SECRET: manifest(CLIENT_SECRET, bundle.client),
    }


def ci_env_values(bundle: CertBundle, *, node_index: int = 0) -> dict[str, str]:
    """``BUILDER_NODE_<i>_AUTH_TLS_{CACERT,CERT,KEY}`` for the client side, base64 of the PEM."""
    if node_index < 0:
        raise ConfigError(f"invalid node index {node_index}", hint="use 0 for the first node")
    base = f"{CI_ENV_PREFIX}_{node_index}_AUTH_TLS"
    values = {
        f"{base}_CACERT": base64.b64encode(bundle.ca.cert).decode(),
        f"{base}_CERT": base64.b64encode(bundle.client.cert).decode(),
        f"{base}_KEY": base64.b64encode(bundle.client.key).decode(),
    }
    register_secret(values[f"{base}_KEY"])
    return values


def decode_pem_value(value: str, *, what: str) -> bytes:
    """A PEM from a CI variable: raw PEM text, or its base64 (the form ``ci_env_values`` writes)."""
    text = value.strip()
    if text.startswith("-----BEGIN"):
        return text.encode() + b"\n"
    try:
        decoded = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if not decoded.lstrip().startswith(b"-----BEGIN"):
        raise UsageError(
            f"{what} is neither PEM nor base64 of a PEM",
            hint="store the PEM text, or its base64 as `ci-build certs create --ci-env` prints",
        )
    register_secret(decoded)
    return decoded


def load_certificates(data: bytes, *, what: str) -> list[x509.Certificate]:
    """All certificates in a PEM file; a file without one is bad input."""
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        certs = []
    if not certs:
        raise UsageError(f"{what} holds no PEM certificate")
    return certs


def load_private_key(data: bytes, *, what: str) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    register_secret(data)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise UsageError(
            f"{what} is not an unencrypted PEM private key",
            hint="BuildKit needs an unencrypted PEM key (PKCS#8, SEC1 or PKCS#1)",
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise UsageError(f"{what} holds a {type(key).__name__}; use an ECDSA or RSA key")
    return key


def is_signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when ``issuer`` issued ``cert`` (name match and valid signature)."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
