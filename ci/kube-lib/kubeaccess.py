"""Kubeconfig files: the admin one, per-component ones, and the restricted builder one."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from kubecommon import API_PORT, BUILDER_SA, KUBECTL, NAMESPACE, run, write_private

SERVER = f"https://127.0.0.1:{API_PORT}"


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(
    path: Path,
    *,
    user: str,
    ca: Path,
    cert: Path | None = None,
    key: Path | None = None,
    token: str | None = None,
    namespace: str = "default",
) -> None:
    credentials: dict[str, str] = {}
    if cert and key:
        credentials = {"client-certificate-data": _b64(cert), "client-key-data": _b64(key)}
    if token:
        credentials["token"] = token
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "pybuildx-kube",
                "cluster": {"server": SERVER, "certificate-authority-data": _b64(ca)},
            }
        ],
        "users": [{"name": user, "user": credentials}],
        "contexts": [
            {
                "name": f"{user}@pybuildx-kube",
                "context": {"cluster": "pybuildx-kube", "user": user, "namespace": namespace},
            }
        ],
        "current-context": f"{user}@pybuildx-kube",
        "preferences": {},
    }
    write_private(path, json.dumps(config, indent=2) + "\n")


def kubectl(admin_kubeconfig: Path, *args: str, input_text: str | None = None) -> str:
    argv = [KUBECTL, f"--kubeconfig={admin_kubeconfig}", *args]
    return run(argv, capture=True, input_text=input_text).stdout


def create_builder_access(admin_kubeconfig: Path, role_file: Path, out: Path, ca: Path) -> None:
    """Namespace + ServiceAccount bound to the documented builder Role; its token kubeconfig."""
    manifests = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": NAMESPACE,
                    # buildkitd pods are privileged; docs/kubernetes-rbac.md says so too.
                    "labels": {"pod-security.kubernetes.io/enforce": "privileged"},
                },
            },
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": BUILDER_SA, "namespace": NAMESPACE},
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": BUILDER_SA, "namespace": NAMESPACE},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "pybuildx-builder",
                },
                "subjects": [
                    {"kind": "ServiceAccount", "name": BUILDER_SA, "namespace": NAMESPACE}
                ],
            },
        ],
    }
    kubectl(admin_kubeconfig, "apply", "-f", "-", input_text=json.dumps(manifests))
    kubectl(admin_kubeconfig, "apply", "-n", NAMESPACE, "-f", str(role_file))
    token = kubectl(
        admin_kubeconfig, "create", "token", BUILDER_SA, "-n", NAMESPACE, "--duration=48h"
    ).strip()
    write_kubeconfig(out, user=BUILDER_SA, ca=ca, token=token, namespace=NAMESPACE)
