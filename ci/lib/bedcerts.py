"""The bed's TLS material: a CA, a server certificate (127.0.0.1, localhost), a client certificate.

Made by the product's own `ci-build certs create` when the repo's venv has it, else by openssl;
both write the same layout: <dir>/daemon/{ca,cert,key}.pem and <dir>/client/{ca,cert,key}.pem,
0600 files in 0700 directories (root only). The CA key is not kept.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from bedcommon import LIB, BedError, log, run

CERTS = LIB / "tls"
CI_BUILD = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "ci-build"
SANS = ("127.0.0.1", "localhost")
DAYS = "825"


def _openssl(*args: str) -> None:
    run(["openssl", *args], capture=True)


def _key(path: Path) -> None:
    _openssl(
        "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path)
    )
    path.chmod(0o600)


def _issue(ca: Path, ca_key: Path, out: Path, subject: str, extensions: list[str]) -> None:
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    _key(out / "key.pem")
    csr, extfile = out / "req.csr", out / "ext.cnf"
    _openssl("req", "-new", "-key", str(out / "key.pem"), "-subj", subject, "-out", str(csr))
    # `openssl x509 -req` copies no extensions from the CSR; they come from an extfile.
    extfile.write_text("\n".join(extensions) + "\n")
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", DAYS, "-sha256", "-extfile", str(extfile),
        "-out", str(out / "cert.pem"),
    )  # fmt: skip
    csr.unlink()
    extfile.unlink()
    shutil.copy2(ca, out / "ca.pem")
    for pem in out.glob("*.pem"):
        pem.chmod(0o600)


def _with_openssl(out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="bed-ca-") as tmp:
        ca, ca_key = Path(tmp) / "ca.pem", Path(tmp) / "ca-key.pem"
        _key(ca_key)
        _openssl(
            "req", "-x509", "-new", "-key", str(ca_key), "-sha256", "-days", DAYS,
            "-subj", "/CN=pybuildx test bed CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-out", str(ca),
        )  # fmt: skip
        san = "subjectAltName=" + ",".join(
            f"IP:{s}" if s[0].isdigit() else f"DNS:{s}" for s in SANS
        )
        _issue(
            ca,
            ca_key,
            out / "daemon",
            "/CN=pybuildx-testbed-daemon",
            [san, "extendedKeyUsage=serverAuth", "keyUsage=critical,digitalSignature"],
        )
        _issue(
            ca,
            ca_key,
            out / "client",
            "/CN=pybuildx-testbed-client",
            ["extendedKeyUsage=clientAuth", "keyUsage=critical,digitalSignature"],
        )


def _with_ci_build(out: Path) -> bool:
    if not CI_BUILD.exists():
        return False
    argv = [str(CI_BUILD), "certs", "create", "--out", str(out), "--san", ",".join(SANS)]
    try:
        run([*argv, "--days", DAYS, "--force"], capture=True)
    except BedError as err:
        log(f"`ci-build certs create` failed, using openssl instead: {err}")
        return False
    return True


def ensure_certs() -> dict[str, str]:
    """Create the certificates once; return the CA file and the daemon/client directories."""
    daemon, client = CERTS / "daemon", CERTS / "client"
    wanted = [d / f for d in (daemon, client) for f in ("ca.pem", "cert.pem", "key.pem")]
    made_by = (CERTS / "made-by").read_text().strip() if (CERTS / "made-by").exists() else ""
    if not all(p.exists() for p in wanted):
        if CERTS.exists():
            shutil.rmtree(CERTS)
        CERTS.mkdir(mode=0o700, parents=True)
        made_by = "ci-build certs create" if _with_ci_build(CERTS) else "openssl"
        if made_by == "openssl":
            _with_openssl(CERTS)
        (CERTS / "made-by").write_text(made_by + "\n")
        log(f"certificates made by {made_by} in {CERTS}")
    return {
        "ca": str(daemon / "ca.pem"),
        "server": str(daemon),
        "client": str(client),
        "made_by": made_by,
    }
