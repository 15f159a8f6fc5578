"""``ci-build certs``: create mTLS material for BuildKit daemons and check existing material."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]

_DEFAULT_SANS = ("127.0.0.1", "localhost")

certs_app = typer.Typer(
    name="certs",
    help="Create and check TLS certificates for BuildKit daemons (mutual TLS).",
    no_args_is_help=True,
)


@certs_app.command("create")
def create(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Directory for daemon/ and client/ (made 0700).")
    ] = Path(".certs"),
    san: Annotated[
        list[str] | None,
        typer.Option(
            "--san",
            help="DNS name or IP the daemon is reached at; repeatable or comma-separated "
            "(default: 127.0.0.1, localhost).",
        ),
    ] = None,
    days: Annotated[
        int, typer.Option("--days", help="Validity of the certificates in days.")
    ] = 365,
    key_type: Annotated[
        str, typer.Option("--key-type", help="ecdsa (P-256) or rsa (3072 bits).")
    ] = "ecdsa",
    keep_ca_key: Annotated[
        bool,
        typer.Option(
            "--keep-ca-key", help="Also write <out>/ca-key.pem (else the CA key is dropped)."
        ),
    ] = False,
    k8s_secrets: Annotated[
        bool,
        typer.Option(
            "--k8s-secrets",
            help="Also write buildkit-daemon-certs.yaml and buildkit-client-certs.yaml Secrets.",
        ),
    ] = False,
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="Namespace for the Secret manifests.")
    ] = None,
    ci_env: Annotated[
        bool,
        typer.Option(
            "--ci-env",
            help="Print BUILDER_NODE_<i>_AUTH_TLS_{CACERT,CERT,KEY}=<base64 of PEM> for CI "
            "secrets. Prints the client key: run it on your machine, not in a CI log.",
        ),
    ] = False,
    node_index: Annotated[
        int, typer.Option("--node-index", help="<i> in the --ci-env variable names.")
    ] = 0,
    force: Annotated[
        bool, typer.Option("--force", help="Replace existing files in --out.")
    ] = False,
) -> None:
    """Issue a CA, a daemon certificate (serverAuth, SANs) and a client certificate (clientAuth)."""
    from pybuildx import certs
    from pybuildx.config import reject_unknown

    reject_unknown([key_type], certs.KEY_TYPES, what="key type")
    spec = certs.CertSpec(
        sans=tuple(san or ()) or _DEFAULT_SANS,
        days=days,
        key_type=key_type,  # type: ignore[arg-type]  # checked by reject_unknown
    )
    bundle = certs.create_bundle(spec)
    written = certs.write_layout(bundle, out, keep_ca_key=keep_ca_key, force=force)
    if k8s_secrets:
        for name, text in certs.k8s_secret_manifests(bundle, namespace=namespace).items():
            path = out / f"{name}.yaml"
            certs.write_private_file(path, text.encode(), force=force)
            written.append(path)
    names = ", ".join(str(n.value) for n in certs.parse_sans(spec.sans))
    typer.echo(f"daemon certificate for {names}, valid {days} days ({key_type})", err=True)
    for path in written:
        typer.echo(f"wrote {path}", err=True)
    if not keep_ca_key:
        typer.echo("the CA key was not kept (pass --keep-ca-key to keep it)", err=True)
    if ci_env:
        for key, value in certs.ci_env_values(bundle, node_index=node_index).items():
            typer.echo(f"{key}={value}")


@certs_app.command("check")
def check(
    cacert: Annotated[Path, typer.Option("--cacert", help="CA certificate (PEM) to trust.")],
    cert: Annotated[Path, typer.Option("--cert", help="Certificate (PEM) to check.")],
    key: Annotated[Path | None, typer.Option("--key", help="Private key (PEM) of --cert.")] = None,
    endpoint: Annotated[
        str | None,
        typer.Option(
            "--endpoint",
            help="tcp://host:port of the daemon: --cert/--key are then the client pair, and the "
            "daemon's certificate is fetched and checked too.",
        ),
    ] = None,
    servername: Annotated[
        str | None,
        typer.Option(
            "--servername",
            help="Name the daemon certificate must cover (default: the endpoint host). Without "
            "--endpoint, --cert is checked as the daemon certificate for this name.",
        ),
    ] = None,
) -> None:
    """Report expiry, CA chain, key pairing and name problems; exit 1 when one is found."""
    from pybuildx import certs_check

    findings = certs_check.check(
        certs_check.CheckRequest(
            cacert=cacert, cert=cert, key=key, endpoint=endpoint, servername=servername
        )
    )
    for finding in findings:
        typer.echo(str(finding))
    problems = sum(1 for f in findings if f.level == "problem")
    warnings = sum(1 for f in findings if f.level == "warning")
    if problems:
        typer.echo(f"{problems} problem{'s' if problems != 1 else ''} found", err=True)
        raise typer.Exit(1)
    suffix = f" ({warnings} warning{'s' if warnings != 1 else ''})" if warnings else ""
    typer.echo(f"no problems found{suffix}", err=True)


def register(app: typer.Typer) -> None:
    app.add_typer(certs_app, name="certs")
