"""Diagnose TLS material for a BuildKit daemon: expiry, CA chain, key pairing, names, handshake.

Each check yields a ``Finding``; ``problem`` findings make ``ci-build certs check`` exit 1.
With an endpoint, the handshake deliberately skips the TLS library's verification: the daemon's
certificate is fetched as presented and then checked here, so that the user learns *why* it would be
refused (wrong CA, wrong name, expired) instead of a bare handshake error.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from pybuildx.certs import is_signed_by, load_certificates, load_private_key
from pybuildx.errors import ConnectError, UsageError

__all__ = ["CheckRequest", "Finding", "check", "parse_endpoint"]

Level = Literal["ok", "warning", "problem"]
WARN_DAYS = 30
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_H2_EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


@dataclass(frozen=True)
class Finding:
    level: Level
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.message}"


@dataclass(frozen=True, kw_only=True)
class CheckRequest:
    """The files to check and, optionally, the daemon they are meant for."""

    cacert: Path
    cert: Path
    key: Path | None = None
    endpoint: str | None = None
    servername: str | None = None
    timeout: float = 10.0


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    """``tcp://host:port`` (or ``host:port``) → ``(host, port)``; anything else is bad input."""
    text = endpoint.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "tcp", text
    if scheme != "tcp":
        raise UsageError(
            f"cannot check TLS of {endpoint!r}: only tcp:// endpoints use TLS",
            hint="pass the daemon's address as tcp://host:port",
        )
    host, colon, port_text = rest.rstrip("/").rpartition(":")
    host = host.strip("[]")
    if not colon or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UsageError(f"invalid endpoint {endpoint!r}", hint="write it as tcp://host:port")
    return host, int(port_text)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def _subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "(empty subject)"


def _san_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    names: list[str] = [str(n) for n in san.get_values_for_type(x509.DNSName)]
    names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return names


def name_matches(cert: x509.Certificate, name: str) -> bool:
    """Does ``cert`` cover ``name`` the way Go's ``VerifyHostname`` decides (SANs only, no CN)?"""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    try:
        address = ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        address = None
    if address is not None:
        return address in san.get_values_for_type(x509.IPAddress)
    wanted = name.lower().rstrip(".")
    for pattern in san.get_values_for_type(x509.DNSName):
        pattern = pattern.lower().rstrip(".")
        if pattern == wanted:
            return True
        if pattern.startswith("*.") and "." in wanted and wanted.split(".", 1)[1] == pattern[2:]:
            return True
    return False


def _validity(cert: x509.Certificate, label: str, now: datetime.datetime) -> Finding:
    not_before = cert.not_valid_before_utc
    not_after = cert.not_valid_after_utc
    until = not_after.strftime("%Y-%m-%d %H:%M UTC")
    if now < not_before:
        return Finding("problem", f"{label} is not valid before {not_before:%Y-%m-%d %H:%M UTC}")
    if now >= not_after:
        return Finding("problem", f"{label} expired on {until}")
    days_left = (not_after - now).days
    if days_left < WARN_DAYS:
        return Finding("warning", f"{label} expires in {days_left} days ({until})")
    return Finding("ok", f"{label} valid until {until} ({days_left} days left)")


def _eku_allows(cert: x509.Certificate, usage: x509.ObjectIdentifier) -> bool:
    try:
        ekus = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return usage in ekus or x509.ObjectIdentifier("2.5.29.37.0") in ekus


def _chain_to_ca(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    cas: Sequence[x509.Certificate],
) -> x509.Certificate | None:
    """The CA certificate that ``leaf`` chains to (directly or via ``intermediates``), if any."""
    current = leaf
    for _ in range(len(intermediates) + 1):
        for ca in cas:
            if is_signed_by(current, ca):
                return ca
        parent = next((c for c in intermediates if is_signed_by(current, c)), None)
        if parent is None:
            return None
        current = parent
    return None


def _public_key_der(key: object) -> bytes:
    public = key.public_key()  # type: ignore[attr-defined]
    der: bytes = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


def _check_files(
    request: CheckRequest, now: datetime.datetime
) -> tuple[list[Finding], list[x509.Certificate]]:
    findings: list[Finding] = []
    cas = load_certificates(_read(request.cacert, "CA certificate"), what=str(request.cacert))
    chain = load_certificates(_read(request.cert, "certificate"), what=str(request.cert))
    leaf = chain[0]
    for ca in cas:
        findings.append(_validity(ca, f"CA {_subject(ca)}", now))
        try:
            is_ca = ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca:
            findings.append(
                Finding("problem", f"{request.cacert} ({_subject(ca)}) is not a CA certificate")
            )
    findings.append(_validity(leaf, f"certificate {_subject(leaf)}", now))
    issuer = _chain_to_ca(leaf, chain[1:], cas)
    if issuer is None:
        findings.append(
            Finding(
                "problem",
                f"certificate {_subject(leaf)} is not signed by the CA in {request.cacert} "
                f"(its issuer is {leaf.issuer.rfc4514_string()})",
            )
        )
    else:
        findings.append(Finding("ok", f"certificate is signed by CA {_subject(issuer)}"))
    if request.key is not None:
        key = load_private_key(_read(request.key, "private key"), what=str(request.key))
        if _public_key_der(key) == _public_key_der(leaf):
            findings.append(Finding("ok", "private key matches the certificate"))
        else:
            findings.append(
                Finding("problem", f"private key {request.key} does not belong to {request.cert}")
            )
    return findings, cas


def _check_local_name(request: CheckRequest, leaf: x509.Certificate) -> Finding:
    name = request.servername or ""
    names = ", ".join(_san_names(leaf)) or "no names at all"
    if name_matches(leaf, name):
        return Finding("ok", f"certificate is valid for {name}")
    return Finding("problem", f"certificate is valid for {names}, not for {name}")


def _handshake(request: CheckRequest, host: str, port: int) -> tuple[bytes, Finding]:
    """Connect, present the client certificate, return the daemon's certificate (DER) and a
    finding on whether the daemon accepted us (it only says so after the handshake in TLS 1.3)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # verified below, to explain failures (see module doc)
    context.set_alpn_protocols(["h2"])
    if request.key is not None:
        try:
            context.load_cert_chain(str(request.cert), str(request.key))
        except (ssl.SSLError, OSError) as exc:
            raise UsageError(f"cannot use {request.cert} with {request.key}: {exc}") from None
    server_name = request.servername or host
    try:
        raw = socket.create_connection((host, port), timeout=request.timeout)
    except OSError as exc:
        raise ConnectError(
            f"cannot reach {host}:{port}: {exc.strerror or exc}",
            hint="check the endpoint and that the daemon listens on tcp",
        ) from None
    with raw:
        try:
            sni = None if _is_ip(server_name) else server_name
            with context.wrap_socket(raw, server_hostname=sni) as tls:
                der = tls.getpeercert(binary_form=True)
                if der is None:
                    raise ConnectError(f"{host}:{port} presented no certificate")
                return der, _probe_accepts_client(tls, request)
        except ssl.SSLError as exc:
            raise _HandshakeRefused(_ssl_reason(exc)) from None
        except OSError as exc:
            raise ConnectError(f"TLS with {host}:{port} failed: {exc}") from None


class _HandshakeRefused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def _ssl_reason(exc: ssl.SSLError) -> str:
    return str(exc.reason or exc).replace("_", " ").lower()


def _probe_accepts_client(tls: ssl.SSLSocket, request: CheckRequest) -> Finding:
    """Send the HTTP/2 preface; a daemon that refuses our certificate answers with a TLS alert."""
    try:
        tls.sendall(_H2_PREFACE + _H2_EMPTY_SETTINGS)
        answer = tls.recv(9)
    except ssl.SSLError as exc:
        return Finding("problem", f"the daemon refused the client certificate: {_ssl_reason(exc)}")
    except TimeoutError:
        return Finding("warning", "the daemon did not answer after the TLS handshake")
    except OSError as exc:
        return Finding("problem", f"the daemon closed the connection: {exc}")
    if not answer:
        return Finding("problem", "the daemon closed the connection after the TLS handshake")
    who = "the client certificate" if request.key is not None else "a connection without one"
    return Finding("ok", f"the daemon accepted {who} (TLS and HTTP/2 handshake done)")


def _check_endpoint(
    request: CheckRequest, cas: Sequence[x509.Certificate], now: datetime.datetime
) -> list[Finding]:
    assert request.endpoint is not None
    host, port = parse_endpoint(request.endpoint)
    name = request.servername or host
    findings: list[Finding] = []
    leaf = load_certificates(_read(request.cert, "certificate"), what=str(request.cert))[0]
    if not _eku_allows(leaf, ExtendedKeyUsageOID.CLIENT_AUTH):
        findings.append(
            Finding("problem", f"{request.cert} is not a client certificate (no clientAuth usage)")
        )
    if request.key is None:
        findings.append(
            Finding(
                "warning", "no --key given: the handshake is tried without a client certificate"
            )
        )
    try:
        der, accepted = _handshake(request, host, port)
    except _HandshakeRefused as refused:
        findings.append(Finding("problem", f"TLS handshake with {host}:{port} failed: {refused}"))
        return findings
    server = x509.load_der_x509_certificate(der)
    label = f"daemon certificate {_subject(server)}"
    findings.append(_validity(server, label, now))
    issuer = _chain_to_ca(server, [], cas)
    if issuer is None:
        findings.append(
            Finding(
                "problem",
                f"{label} is not signed by the CA in {request.cacert} "
                f"(its issuer is {server.issuer.rfc4514_string()})",
            )
        )
    else:
        findings.append(Finding("ok", f"{label} is signed by CA {_subject(issuer)}"))
    if name_matches(server, name):
        findings.append(Finding("ok", f"{label} is valid for {name}"))
    else:
        names = ", ".join(_san_names(server)) or "no names at all"
        hint = "" if request.servername else " (pass --servername if the daemon has another name)"
        findings.append(Finding("problem", f"{label} is valid for {names}, not for {name}{hint}"))
    if not _eku_allows(server, ExtendedKeyUsageOID.SERVER_AUTH):
        findings.append(Finding("problem", f"{label} lacks the serverAuth usage"))
    findings.append(accepted)
    return findings


def check(request: CheckRequest, *, now: datetime.datetime | None = None) -> list[Finding]:
    """Run every check that the given inputs allow; bad or unreadable input raises UsageError."""
    moment = now or datetime.datetime.now(datetime.timezone.utc)
    findings, cas = _check_files(request, moment)
    if request.endpoint:
        findings += _check_endpoint(request, cas, moment)
    elif request.servername:
        leaf = load_certificates(_read(request.cert, "certificate"), what=str(request.cert))[0]
        findings.append(_check_local_name(request, leaf))
    return findings
