"""Certificates of the cluster (openssl): one CA, serving and client certificates, the
service-account signing key. Made fresh by every `up`; private keys are 0600 in a 0700 dir."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from kubecommon import PKI, run


@dataclass(frozen=True)
class CertSpec:
    name: str
    common_name: str
    organization: str = ""
    server: bool = False
    client: bool = False
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)


def ca_paths() -> tuple[Path, Path]:
    return PKI / "ca.crt", PKI / "ca.key"


def make_ca() -> None:
    PKI.mkdir(parents=True, exist_ok=True, mode=0o700)
    PKI.chmod(0o700)
    crt, key = ca_paths()
    _new_key(key)
    run(
        [
            "openssl",
            "req",
            "-x509",
            "-new",
            "-key",
            str(key),
            "-out",
            str(crt),
            "-days",
            "30",
            "-subj",
            "/CN=pybuildx-kube-ca",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        capture=True,
    )


def make_cert(spec: CertSpec) -> tuple[Path, Path]:
    """Sign a certificate for spec with the CA; return (cert, key) paths."""
    crt, key, csr, ext = (PKI / f"{spec.name}.{s}" for s in ("crt", "key", "csr", "ext"))
    _new_key(key)
    subject = f"/CN={spec.common_name}" + (f"/O={spec.organization}" if spec.organization else "")
    run(
        ["openssl", "req", "-new", "-key", str(key), "-out", str(csr), "-subj", subject],
        capture=True,
    )
    usages = [u for u, on in (("serverAuth", spec.server), ("clientAuth", spec.client)) if on]
    lines = [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        f"extendedKeyUsage={','.join(usages)}",
    ]
    sans = [f"DNS:{d}" for d in spec.dns_names] + [f"IP:{ip}" for ip in spec.ip_addresses]
    if sans:
        lines.append(f"subjectAltName={','.join(sans)}")
    ext.write_text("\n".join(lines) + "\n")
    ca_crt, ca_key = ca_paths()
    run(
        [
            "openssl",
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(ca_crt),
            "-CAkey",
            str(ca_key),
            "-CAcreateserial",
            "-out",
            str(crt),
            "-days",
            "30",
            "-extfile",
            str(ext),
        ],
        capture=True,
    )
    csr.unlink()
    ext.unlink()
    return crt, key


def make_service_account_keys() -> tuple[Path, Path]:
    key, pub = PKI / "sa.key", PKI / "sa.pub"
    _new_key(key, rsa=True)
    run(["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(pub)], capture=True)
    return key, pub


def _new_key(path: Path, rsa: bool = False) -> None:
    path.unlink(missing_ok=True)
    algorithm = (
        ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]
        if rsa
        else ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    )
    old_umask = os.umask(0o077)
    try:
        run(["openssl", "genpkey", *algorithm, "-out", str(path)], capture=True)
    finally:
        os.umask(old_umask)
