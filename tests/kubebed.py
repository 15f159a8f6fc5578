"""Fixtures for the ci/kube cluster (a real API server, controllers, scheduler and two kubelet
nodes, built offline by `ci/kube up`). The fixtures never start the cluster; they read its state
file, check that the API server answers, and otherwise skip with the reason (or fail with
PYBUILDX_REQUIRE_COMPONENTS=1, see tests.testbed.need)."""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.testbed import load_state, need

STATE_FILE = Path(os.environ.get("PYBUILDX_KUBE_STATE", "/run/pybuildx-kube/state.json"))
UP_HINT = "start it with `sudo ci/kube up` (see ci/kube-lib/README.md)"

__all__ = [
    "KubeBed",
    "KubeNode",
    "buildkit_container",
    "buildkit_deployment",
    "buildkit_pod_spec",
]


@dataclass(frozen=True)
class KubeNode:
    name: str
    labels: dict[str, str]


@dataclass(frozen=True)
class KubeBed:
    """What a test needs to talk to the cluster as a user would."""

    version: str
    server: str
    admin_kubeconfig: Path  # cluster-admin: for setup and for checking what a test left behind
    builder_kubeconfig: Path  # ServiceAccount token, only the Role in docs/rbac/builder-role.yaml
    namespace: str  # the one namespace the builder may use
    nodes: tuple[KubeNode, ...]
    image: str  # buildkit image every node has loaded (imagePullPolicy IfNotPresent)
    # The bed's plain registry (127.0.0.1:5000 on the host) as pods reach it (plain HTTP): give
    # buildkitd in a pod `[registry."<pod_registry>"] http = true` (+ a mirror for 127.0.0.1:5000).
    pod_registry: str

    def node_in_pool(self, pool: str) -> KubeNode:
        """The node labelled pybuildx.test/pool=<pool> (pin builders with a nodeselector)."""
        for node in self.nodes:
            if node.labels.get("pybuildx.test/pool") == pool:
                return node
        raise LookupError(f"no node in pool {pool!r}")


def buildkit_container(image: str) -> dict[str, Any]:
    """A privileged buildkitd container on an emptyDir "state" volume, ready once buildctl sees
    its workers."""
    return {
        "name": "buildkitd",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "securityContext": {"privileged": True},
        "readinessProbe": {
            "exec": {"command": ["buildctl", "debug", "workers"]},
            "periodSeconds": 2,
        },
        "volumeMounts": [{"name": "state", "mountPath": "/var/lib/buildkit"}],
    }


def buildkit_pod_spec(container: dict[str, Any]) -> dict[str, Any]:
    """The pod spec around a `buildkit_container`: its state volume, a quick termination."""
    return {
        "terminationGracePeriodSeconds": 2,
        "containers": [container],
        "volumes": [{"name": "state", "emptyDir": {}}],
    }


def buildkit_deployment(name: str, image: str, pool: str | None = None) -> dict[str, Any]:
    """One buildkitd replica labelled app=<name>, pinned to a node pool when given."""
    spec = buildkit_pod_spec(buildkit_container(image))
    if pool is not None:
        spec["nodeSelector"] = {"pybuildx.test/pool": pool}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
        },
    }


def _api_answers(server: str, admin_kubeconfig: Path) -> str | None:
    """None when /readyz answers 200 to the admin credentials, else why not."""
    try:
        config = json.loads(admin_kubeconfig.read_text())
    except (OSError, ValueError) as err:
        return f"cannot read {admin_kubeconfig} ({err}); run the tests as root"
    import base64
    import tempfile

    cluster = config["clusters"][0]["cluster"]
    user = config["users"][0]["user"]
    with tempfile.TemporaryDirectory() as private:
        cert, key = Path(private, "c.pem"), Path(private, "k.pem")
        cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
        key.touch(mode=0o600)
        key.write_bytes(base64.b64decode(user["client-key-data"]))
        ctx = ssl.create_default_context(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
        )
        ctx.load_cert_chain(str(cert), str(key))
    try:
        with urllib.request.urlopen(f"{server}/readyz", timeout=5, context=ctx) as resp:
            return None if int(resp.status) == 200 else f"/readyz answered {resp.status}"
    except urllib.error.HTTPError as err:
        return f"/readyz answered {err.code}"
    except OSError as err:
        return f"{server} does not answer ({err})"


@pytest.fixture(scope="session")
def kube() -> KubeBed:
    """The ci/kube cluster: kubeconfigs, namespace, labelled nodes, the buildkit image."""
    state = load_state(STATE_FILE, "the Kubernetes bed", UP_HINT)
    bed = KubeBed(
        version=state["version"],
        server=state["server"],
        admin_kubeconfig=Path(state["admin_kubeconfig"]),
        builder_kubeconfig=Path(state["builder_kubeconfig"]),
        namespace=state["namespace"],
        nodes=tuple(KubeNode(n["name"], dict(n["labels"])) for n in state["nodes"]),
        image=state["buildkit_image"],
        pod_registry=state["pod_registry"],
    )
    problem = _api_answers(bed.server, bed.admin_kubeconfig)
    need(problem is None, f"Kubernetes API server: {problem}; {UP_HINT}")
    return bed
