"""Bed check for ci/kube: what the kubernetes driver relies on works on the real cluster, with the
restricted builder credentials a CI job would have."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.kubebed import KubeBed, buildkit_container, buildkit_deployment, buildkit_pod_spec

pytestmark = [pytest.mark.integration, pytest.mark.kube]

POOLS = ("a", "b")


def _client(kubeconfig: object) -> Any:
    from kubernetes import config

    return config.new_client_from_config(config_file=str(kubeconfig))


@pytest.fixture(scope="module")
def builder_api(kube: KubeBed) -> Iterator[Any]:
    client = _client(kube.builder_kubeconfig)
    yield client
    client.close()


@pytest.fixture(scope="module")
def admin_api(kube: KubeBed) -> Iterator[Any]:
    client = _client(kube.admin_kubeconfig)
    yield client
    client.close()


def _wait(what: str, condition: Any, timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(1)
    pytest.fail(f"{what} within {timeout:.0f} s")


def test_nodes_are_ready_and_labelled_by_pool(kube: KubeBed, admin_api: Any) -> None:
    from kubernetes import client

    nodes = client.CoreV1Api(admin_api).list_node().items
    ready = {
        n.metadata.name: any(c.type == "Ready" and c.status == "True" for c in n.status.conditions)
        for n in nodes
    }
    pools = {n.metadata.name: n.metadata.labels.get("pybuildx.test/pool") for n in nodes}
    assert ready == {n.name: True for n in kube.nodes}
    assert sorted(pools.values()) == sorted(POOLS)
    assert {n.status.node_info.kubelet_version for n in nodes} == {kube.version}


@pytest.mark.parametrize("pool", POOLS)
def test_builder_deployment_runs_buildkitd_reachable_by_exec(
    kube: KubeBed, builder_api: Any, pool: str
) -> None:
    from kubernetes import client
    from kubernetes.stream import stream

    apps, core = client.AppsV1Api(builder_api), client.CoreV1Api(builder_api)
    name = f"bedcheck-{pool}-{uuid.uuid4().hex[:6]}"
    apps.create_namespaced_deployment(kube.namespace, buildkit_deployment(name, kube.image, pool))
    try:
        _wait(
            f"deployment {name} ready",
            lambda: apps.read_namespaced_deployment(name, kube.namespace).status.ready_replicas,
        )
        pods = core.list_namespaced_pod(kube.namespace, label_selector=f"app={name}").items
        assert len(pods) == 1
        assert pods[0].spec.node_name == kube.node_in_pool(pool).name
        output = stream(
            core.connect_get_namespaced_pod_exec,
            pods[0].metadata.name,
            kube.namespace,
            command=["buildctl", "debug", "workers"],
            stderr=True,
            stdin=False,
            stdout=True,
            tty=False,
        )
        assert "linux/amd64" in output, output
        routes = stream(
            core.connect_get_namespaced_pod_exec,
            pods[0].metadata.name,
            kube.namespace,
            command=["cat", "/proc/net/route"],
            stderr=True,
            stdin=False,
            stdout=True,
            tty=False,
        )
        destinations = [line.split()[1] for line in routes.splitlines()[1:] if line.strip()]
        assert destinations, routes
        assert "00000000" not in destinations, f"pod has a default route:\n{routes}"
    finally:
        apps.delete_namespaced_deployment(name, kube.namespace, propagation_policy="Foreground")
    _wait(
        f"pods of {name} gone",
        lambda: not core.list_namespaced_pod(kube.namespace, label_selector=f"app={name}").items,
        timeout=120,
    )


def test_builder_credentials_are_confined_to_their_namespace(
    kube: KubeBed, builder_api: Any
) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    apps, core = client.AppsV1Api(builder_api), client.CoreV1Api(builder_api)
    with pytest.raises(ApiException) as other_namespace:
        apps.list_namespaced_deployment("default")
    with pytest.raises(ApiException) as nodes:
        core.list_node()
    with pytest.raises(ApiException) as daemonsets:
        apps.list_namespaced_daemon_set(kube.namespace)
    assert {e.value.status for e in (other_namespace, nodes, daemonsets)} == {403}
    assert apps.list_namespaced_deployment(kube.namespace).items is not None


@pytest.mark.parametrize("pool", POOLS)
def test_nodes_pull_from_and_pods_reach_the_bed_registry(
    kube: KubeBed, admin_api: Any, busybox: str, pool: str
) -> None:
    """Images in the bed's plain registry (127.0.0.1:5000) run on every node, and pods reach that
    registry at kube.pod_registry (where a buildkitd pod pulls bases and pushes results)."""
    from kubernetes import client

    core = client.CoreV1Api(admin_api)
    name = f"pull-{pool}-{uuid.uuid4().hex[:6]}"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": {"pybuildx.test/pool": pool},
            "containers": [
                {
                    "name": "main",
                    "image": busybox,
                    "imagePullPolicy": "Always",
                    "command": ["/bin/busybox", "wget", "-q", "-O", "/dev/null"],
                    "args": [f"http://{kube.pod_registry}/v2/"],
                }
            ],
        },
    }
    core.create_namespaced_pod(kube.namespace, pod)
    try:
        outcome = _wait(f"pod {name} finished", lambda: _pod_outcome(core, name, kube.namespace))
        assert outcome == "Succeeded"
    finally:
        core.delete_namespaced_pod(name, kube.namespace, grace_period_seconds=0)


def _pod_outcome(core: Any, name: str, namespace: str) -> str | None:
    """The pod's final phase, or why its image cannot be pulled; None while it is running."""
    status = core.read_namespaced_pod(name, namespace).status
    if status.phase in ("Succeeded", "Failed"):
        return str(status.phase)
    for container in status.container_statuses or []:
        waiting = container.state.waiting
        if waiting and waiting.reason in ("ErrImagePull", "ImagePullBackOff"):
            return f"{waiting.reason}: {waiting.message}"
    return None


def test_buildkitd_pod_builds_from_and_pushes_to_the_bed_registry(
    kube: KubeBed, admin_api: Any, busybox: str, registry: str
) -> None:
    """buildkitd in a pod (overlayfs on an emptyDir, runc in a privileged container) runs a
    RUN step on a base from the bed registry and pushes the result back to it."""
    import urllib.request

    from kubernetes import client
    from kubernetes.stream import stream

    core = client.CoreV1Api(admin_api)
    name = f"build-{uuid.uuid4().hex[:6]}"
    config = f'[registry."{kube.pod_registry}"]\n  http = true\n'
    start = (
        f"mkdir -p /etc/buildkit && printf '%s' '{config}' > /etc/buildkit/buildkitd.toml"
        " && exec buildkitd"
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": buildkit_pod_spec(
            {**buildkit_container(kube.image), "command": ["/bin/sh", "-c", start]}
        ),
    }
    base = busybox.replace(registry, kube.pod_registry, 1)
    tag = uuid.uuid4().hex[:8]
    script = (
        f"mkdir -p /tmp/ctx && printf 'FROM {base}\\nRUN echo {tag} > /built\\n' > "
        "/tmp/ctx/Dockerfile && buildctl build --frontend dockerfile.v0 --local context=/tmp/ctx"
        f" --local dockerfile=/tmp/ctx --output type=image,name={kube.pod_registry}/"
        f"kube-bedcheck:{tag},push=true && echo BUILD-OK"
    )
    core.create_namespaced_pod(kube.namespace, pod)
    try:
        _wait(
            f"pod {name} ready",
            lambda: any(
                c.type == "Ready" and c.status == "True"
                for c in core.read_namespaced_pod(name, kube.namespace).status.conditions or []
            ),
        )
        output = stream(
            core.connect_get_namespaced_pod_exec,
            name,
            kube.namespace,
            command=["/bin/sh", "-c", script],
            stderr=True,
            stdin=False,
            stdout=True,
            tty=False,
        )
        assert "BUILD-OK" in output, output
    finally:
        core.delete_namespaced_pod(name, kube.namespace, grace_period_seconds=0)
    url = f"http://{registry}/v2/kube-bedcheck/tags/list"
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert tag in resp.read().decode()
