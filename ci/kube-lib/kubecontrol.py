"""The control plane on the host's loopback: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler."""

from __future__ import annotations

import ssl
import urllib.request

from kubeaccess import write_kubeconfig
from kubecommon import (
    API_PORT,
    ETCD_CLIENT_PORT,
    ETCD_PEER_PORT,
    KUBE_BIN,
    LIB,
    PKI,
    SERVICE_CIDR,
    pid_alive,
    pid_of,
    spawn,
    tcp_open,
    wait_for,
)
from kubepki import CertSpec, ca_paths, make_cert, make_service_account_keys

ADMIN_KUBECONFIG = PKI / "admin.kubeconfig"


def start_etcd() -> None:
    if not pid_alive(pid_of("etcd")):
        spawn(
            "etcd",
            [
                "etcd",
                "--name=pbx-kube",
                f"--data-dir={LIB / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{ETCD_CLIENT_PORT}",
                f"--advertise-client-urls=http://127.0.0.1:{ETCD_CLIENT_PORT}",
                f"--listen-peer-urls=http://127.0.0.1:{ETCD_PEER_PORT}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{ETCD_PEER_PORT}",
                f"--initial-cluster=pbx-kube=http://127.0.0.1:{ETCD_PEER_PORT}",
                "--listen-metrics-urls=",
                "--quota-backend-bytes=1073741824",
            ],
        )
    wait_for("etcd", lambda: tcp_open("127.0.0.1", ETCD_CLIENT_PORT), 60, "etcd")


def start_apiserver() -> None:
    ca, ca_key = ca_paths()
    cert, key = make_cert(
        CertSpec(
            "apiserver",
            "kube-apiserver",
            server=True,
            dns_names=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            ip_addresses=("127.0.0.1", "10.96.0.1"),
        )
    )
    kubelet_client, kubelet_client_key = make_cert(
        CertSpec(
            "apiserver-kubelet-client",
            "kube-apiserver-kubelet-client",
            organization="system:masters",
            client=True,
        )
    )
    sa_key, sa_pub = make_service_account_keys()
    if not pid_alive(pid_of("kube-apiserver")):
        spawn(
            "kube-apiserver",
            [
                str(KUBE_BIN / "kube-apiserver"),
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={API_PORT}",
                # Endpoints may not hold a loopback address; pods never talk to the API anyway.
                "--endpoint-reconciler-type=none",
                f"--etcd-servers=http://127.0.0.1:{ETCD_CLIENT_PORT}",
                f"--tls-cert-file={cert}",
                f"--tls-private-key-file={key}",
                f"--client-ca-file={ca}",
                f"--kubelet-certificate-authority={ca}",
                f"--kubelet-client-certificate={kubelet_client}",
                f"--kubelet-client-key={kubelet_client_key}",
                "--kubelet-preferred-address-types=InternalIP",
                f"--service-account-key-file={sa_pub}",
                f"--service-account-signing-key-file={sa_key}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                "--allow-privileged=true",
                "--profiling=false",
            ],
        )
    ctx = ssl.create_default_context(cafile=str(ca))
    admin_cert, admin_key = make_cert(
        CertSpec("admin", "pybuildx-admin", organization="system:masters", client=True)
    )
    ctx.load_cert_chain(str(admin_cert), str(admin_key))
    write_kubeconfig(ADMIN_KUBECONFIG, user="pybuildx-admin", ca=ca, cert=admin_cert, key=admin_key)
    del ca_key
    wait_for("kube-apiserver", lambda: _ready(ctx), 180, "kube-apiserver")


def _ready(ctx: ssl.SSLContext) -> bool:
    try:
        url = f"https://127.0.0.1:{API_PORT}/readyz"
        with urllib.request.urlopen(url, timeout=3, context=ctx) as resp:
            return int(resp.status) == 200
    except OSError:
        return False


def start_controller_manager() -> None:
    ca, ca_key = ca_paths()
    _start_controller(
        "kube-controller-manager",
        cert_name="controller-manager",
        flags=[
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={PKI / 'sa.key'}",
            f"--root-ca-file={ca}",
            f"--cluster-signing-cert-file={ca}",
            f"--cluster-signing-key-file={ca_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
        ],
    )


def start_scheduler() -> None:
    _start_controller("kube-scheduler", cert_name="scheduler", flags=[])


def _start_controller(binary: str, *, cert_name: str, flags: list[str]) -> None:
    """Start a control-plane component that reaches the API server as ``system:<binary>``."""
    ca, _ = ca_paths()
    user = f"system:{binary}"
    cert, key = make_cert(CertSpec(cert_name, user, client=True))
    kubeconfig = PKI / f"{cert_name}.kubeconfig"
    write_kubeconfig(kubeconfig, user=user, ca=ca, cert=cert, key=key)
    if not pid_alive(pid_of(binary)):
        spawn(
            binary,
            [
                str(KUBE_BIN / binary),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                "--secure-port=0",
                "--leader-elect=false",
                *flags,
            ],
        )
