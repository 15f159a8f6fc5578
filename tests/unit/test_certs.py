"""Certificate issuing, layout, manifests and offline checks (``certs``, ``certs_check``)."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import stat
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from pybuildx import certs, certs_check
from pybuildx.cli.app import main
from pybuildx.errors import ConfigError, UsageError, redact

UTC = datetime.timezone.utc


@pytest.fixture(scope="module")
def bundle() -> certs.CertBundle:
    spec = certs.CertSpec(sans=("buildkitd.default.svc,127.0.0.1", "::1"), days=90)
    return certs.create_bundle(spec)


def _cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def _ekus(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_daemon_and_client_chain_to_the_ca(bundle: certs.CertBundle) -> None:
    ca = _cert(bundle.ca.cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for pair in (bundle.daemon, bundle.client):
        assert certs.is_signed_by(_cert(pair.cert), ca)
    other = certs.create_bundle(certs.CertSpec(sans=("127.0.0.1",)))
    assert not certs.is_signed_by(_cert(bundle.daemon.cert), _cert(other.ca.cert))


def test_daemon_cert_has_the_sans_and_server_usage(bundle: certs.CertBundle) -> None:
    daemon = _cert(bundle.daemon.cert)
    san = daemon.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["buildkitd.default.svc"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert _ekus(daemon) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not daemon.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_client_cert_is_named_client_with_client_usage(bundle: certs.CertBundle) -> None:
    client = _cert(bundle.client.cert)
    san = client.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["client"]
    assert client.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "client"
    assert _ekus(client) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_validity_follows_days(bundle: certs.CertBundle) -> None:
    daemon = _cert(bundle.daemon.cert)
    lifetime = daemon.not_valid_after_utc - datetime.datetime.now(UTC)
    assert datetime.timedelta(days=89) < lifetime <= datetime.timedelta(days=90)


def test_key_types(bundle: certs.CertBundle) -> None:
    assert isinstance(
        certs.load_private_key(bundle.daemon.key, what="k"), ec.EllipticCurvePrivateKey
    )
    rsa_bundle = certs.create_bundle(certs.CertSpec(sans=("127.0.0.1",), key_type="rsa", days=1))
    assert isinstance(certs.load_private_key(rsa_bundle.client.key, what="k"), rsa.RSAPrivateKey)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sans": ()}, "no subject alternative names"),
        ({"sans": ("bad name",)}, "invalid subject alternative name"),
        ({"sans": ("a",), "days": 0}, "invalid validity"),
        ({"sans": ("a",), "key_type": "dsa"}, "unknown key type"),
    ],
)
def test_spec_rejects_bad_input(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        certs.CertSpec(**kwargs)  # type: ignore[arg-type]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_layout_is_private_and_drops_the_ca_key(bundle: certs.CertBundle, tmp_path: Path) -> None:
    out = tmp_path / "certs"
    written = certs.write_layout(bundle, out)
    names = sorted(str(p.relative_to(out)) for p in written)
    assert names == [
        "client/ca.pem",
        "client/cert.pem",
        "client/key.pem",
        "daemon/ca.pem",
        "daemon/cert.pem",
        "daemon/key.pem",
    ]
    assert not (out / "ca-key.pem").exists()
    assert all(_mode(p) == 0o600 for p in written)
    assert {_mode(d) for d in (out, out / "client", out / "daemon")} == {0o700}
    assert (out / "client" / "ca.pem").read_bytes() == bundle.ca.cert
    assert (out / "daemon" / "key.pem").read_bytes() == bundle.daemon.key


def test_layout_keeps_ca_key_on_request_and_refuses_overwrite(
    bundle: certs.CertBundle, tmp_path: Path
) -> None:
    certs.write_layout(bundle, tmp_path, keep_ca_key=True)
    assert (tmp_path / "ca-key.pem").read_bytes() == bundle.ca.key
    assert _mode(tmp_path / "ca-key.pem") == 0o600
    with pytest.raises(UsageError, match="already exists"):
        certs.write_layout(bundle, tmp_path)
    certs.write_layout(bundle, tmp_path, force=True)


def test_k8s_secrets_carry_the_pems(bundle: certs.CertBundle) -> None:
    manifests = certs.k8s_secret_manifests(bundle, namespace="ci")
    daemon = yaml.safe_load(manifests["buildkit-daemon-certs"])
    client = yaml.safe_load(manifests["buildkit-client-certs"])
    assert daemon["kind"] == client["kind"] == "Secret"
    assert daemon["metadata"] == {"name": "buildkit-daemon-certs", "namespace": "ci"}
    decoded = {k: base64.b64decode(v) for k, v in daemon["data"].items()}
    assert decoded == {
        "ca.pem": bundle.ca.cert,
        "cert.pem": bundle.daemon.cert,
        "key.pem": bundle.daemon.key,
    }
    assert base64.b64decode(client["data"]["key.pem"]) == bundle.client.key


def test_ci_env_values_round_trip_and_are_single_line(bundle: certs.CertBundle) -> None:
    values = certs.ci_env_values(bundle, node_index=2)
    assert sorted(values) == [
        "BUILDER_NODE_2_AUTH_TLS_CACERT",
        "BUILDER_NODE_2_AUTH_TLS_CERT",
        "BUILDER_NODE_2_AUTH_TLS_KEY",
    ]
    assert all("\n" not in v and " " not in v for v in values.values())
    key = certs.decode_pem_value(values["BUILDER_NODE_2_AUTH_TLS_KEY"], what="key")
    assert key == bundle.client.key
    # Raw PEM (a GitHub secret pasted as is) works as well.
    raw = bundle.client.cert.decode()
    assert certs.decode_pem_value(raw, what="cert").strip() == bundle.client.cert.strip()
    with pytest.raises(UsageError, match="neither PEM nor base64"):
        certs.decode_pem_value("not a pem", what="BUILDER_NODE_0_AUTH_TLS_KEY")


def test_generated_keys_are_redacted(bundle: certs.CertBundle) -> None:
    key_line = bundle.client.key.decode().splitlines()[1]
    assert key_line not in redact(f"oops {bundle.client.key.decode()}")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("buildkitd.default.svc", True),
        ("BUILDKITD.default.svc.", True),
        ("127.0.0.1", True),
        ("::1", True),
        ("127.0.0.2", False),
        ("default.svc", False),
    ],
)
def test_name_matching(bundle: certs.CertBundle, name: str, expected: bool) -> None:
    assert certs_check.name_matches(_cert(bundle.daemon.cert), name) is expected


def test_wildcard_names_cover_one_label() -> None:
    wildcard = certs.create_bundle(certs.CertSpec(sans=("*.builders.example",)))
    cert = _cert(wildcard.daemon.cert)
    assert certs_check.name_matches(cert, "amd64.builders.example")
    assert not certs_check.name_matches(cert, "a.b.builders.example")
    assert not certs_check.name_matches(cert, "builders.example")


def _write(bundle: certs.CertBundle, tmp_path: Path) -> Path:
    certs.write_layout(bundle, tmp_path / "c")
    return tmp_path / "c"


def _levels(findings: list[certs_check.Finding]) -> list[str]:
    return [f"{f.level}: {f.message}" for f in findings if f.level != "ok"]


def test_check_of_a_good_daemon_cert(bundle: certs.CertBundle, tmp_path: Path) -> None:
    out = _write(bundle, tmp_path)
    request = certs_check.CheckRequest(
        cacert=out / "daemon/ca.pem",
        cert=out / "daemon/cert.pem",
        key=out / "daemon/key.pem",
        servername="127.0.0.1",
    )
    assert _levels(certs_check.check(request)) == []


def test_check_finds_mismatches(bundle: certs.CertBundle, tmp_path: Path) -> None:
    out = _write(bundle, tmp_path)
    foreign = certs.create_bundle(certs.CertSpec(sans=("127.0.0.1",)))
    (tmp_path / "other-ca.pem").write_bytes(foreign.ca.cert)
    request = certs_check.CheckRequest(
        cacert=tmp_path / "other-ca.pem",
        cert=out / "daemon/cert.pem",
        key=out / "client/key.pem",
        servername="builder.example",
    )
    problems = _levels(certs_check.check(request))
    assert len(problems) == 3
    assert "is not signed by the CA" in problems[0]
    assert "does not belong to" in problems[1]
    assert "not for builder.example" in problems[2]


def test_check_reports_expiry(bundle: certs.CertBundle, tmp_path: Path) -> None:
    out = _write(bundle, tmp_path)
    request = certs_check.CheckRequest(cacert=out / "client/ca.pem", cert=out / "client/cert.pem")
    soon = datetime.datetime.now(UTC) + datetime.timedelta(days=75)
    warnings = _levels(certs_check.check(request, now=soon))
    assert warnings and all(
        w.startswith("warning:") and "expires in 14 days" in w for w in warnings
    )
    later = datetime.datetime.now(UTC) + datetime.timedelta(days=100)
    expired = _levels(certs_check.check(request, now=later))
    assert any(e.startswith("problem:") and "expired on" in e for e in expired)


def test_check_bad_input_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "empty.pem").write_text("nothing here\n")
    with pytest.raises(UsageError, match="no PEM certificate"):
        certs_check.check(
            certs_check.CheckRequest(cacert=tmp_path / "empty.pem", cert=tmp_path / "empty.pem")
        )
    with pytest.raises(UsageError, match="only tcp://"):
        certs_check.parse_endpoint("unix:///run/buildkit/buildkitd.sock")
    assert certs_check.parse_endpoint("tcp://[::1]:1234") == ("::1", 1234)
    assert certs_check.parse_endpoint("builder:1234") == ("builder", 1234)


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    out, err = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), out, err


def test_cli_create_and_check_exit_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "certs"
    code, stdout, _ = _run(
        ["certs", "create", "--out", str(out), "--san", "10.0.0.7", "--ci-env", "--k8s-secrets"],
        capsys,
    )
    assert code == 0
    assert stdout.count("BUILDER_NODE_0_AUTH_TLS_") == 3
    assert _mode(out / "buildkit-daemon-certs.yaml") == 0o600
    daemon = ["--cacert", str(out / "daemon/ca.pem"), "--cert", str(out / "daemon/cert.pem")]
    assert _run(["certs", "check", *daemon, "--servername", "10.0.0.7"], capsys)[0] == 0
    code, stdout, _ = _run(["certs", "check", *daemon, "--servername", "10.0.0.8"], capsys)
    assert code == 1
    assert "problem: certificate is valid for 10.0.0.7, not for 10.0.0.8" in stdout
    code, _, stderr = _run(["certs", "check", *daemon[:2], "--cert", str(tmp_path / "no")], capsys)
    assert code == 2
    assert stderr.startswith("error: cannot read certificate")
    code, _, stderr = _run(["certs", "create", "--out", str(out), "--key-type", "rsa2"], capsys)
    assert code == 2
    assert "did you mean 'rsa'" in stderr
