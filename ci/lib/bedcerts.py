"""The bed's CA, one server and one client certificate, made with openssl."""

from __future__ import annotations

from pathlib import Path

from bedcommon import LIB, run

CERTS = LIB / "certs"
SANS = "subjectAltName=IP:127.0.0.1,DNS:localhost"


def _key(path: Path) -> None:
    run(
        [
            "openssl",
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            str(path),
        ]
    )
    path.chmod(0o600)


def _sign(ca_dir: Path, out_dir: Path, subject: str, extensions: list[str]) -> None:
    _key(out_dir / "key.pem")
    csr = out_dir / "req.csr"
    run(
        [
            "openssl",
            "req",
            "-new",
            "-key",
            str(out_dir / "key.pem"),
            "-subj",
            subject,
            "-out",
            str(csr),
        ]
    )
    # `openssl x509 -req` copies no extensions from the CSR; pass them through an extfile instead.
    extfile = out_dir / "ext.cnf"
    extfile.write_text("\n".join(extensions) + "\n")
    run(
        [
            "openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_dir / "ca.pem"),
            "-CAkey", str(ca_dir / "ca-key.pem"), "-CAcreateserial", "-days", "825", "-sha256",
            "-extfile", str(extfile), "-out", str(out_dir / "cert.pem"),
        ]
    )  # fmt: skip
    csr.unlink()
    extfile.unlink()
    (out_dir / "ca.pem").write_bytes((ca_dir / "ca.pem").read_bytes())


def ensure_certs() -> dict[str, str]:
    """Create the CA and certificates once; return their directories."""
    ca_dir, server_dir, client_dir = CERTS / "ca", CERTS / "server", CERTS / "client"
    if not (client_dir / "cert.pem").exists():
        for d in (ca_dir, server_dir, client_dir):
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o755)
        client_dir.chmod(0o700)
        _key(ca_dir / "ca-key.pem")
        run(
            [
                "openssl", "req", "-x509", "-new", "-key", str(ca_dir / "ca-key.pem"), "-sha256",
                "-days", "3650", "-subj", "/CN=pybuildx test bed CA",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                "-out", str(ca_dir / "ca.pem"),
            ]
        )  # fmt: skip
        _sign(
            ca_dir,
            server_dir,
            "/CN=pybuildx-testbed-server",
            [SANS, "extendedKeyUsage=serverAuth", "keyUsage=critical,digitalSignature"],
        )
        _sign(
            ca_dir,
            client_dir,
            "/CN=pybuildx-testbed-client",
            ["extendedKeyUsage=clientAuth", "keyUsage=critical,digitalSignature"],
        )
    return {"ca": str(ca_dir / "ca.pem"), "server": str(server_dir), "client": str(client_dir)}
