"""The remote driver's ``kube-pod://`` endpoints on the ci/kube cluster: ``buildctl dial-stdio`` is
exec'd through the Kubernetes API by the Python client (no kubectl binary), with the restricted
builder credentials a CI job has."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.builders_help import ci_build, cli_env
from tests.kubebed import KubeBed, buildkit_deployment

pytestmark = [pytest.mark.integration, pytest.mark.kube]


@pytest.fixture(scope="module")
def buildkit_pod(kube: KubeBed) -> Iterator[str]:
    """A running buildkitd pod (made with the builder credentials); its name."""
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(kube.builder_kubeconfig))
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    name = f"kubepod-{uuid.uuid4().hex[:6]}"
    apps.create_namespaced_deployment(kube.namespace, buildkit_deployment(name, kube.image))
    try:
        deadline = time.monotonic() + 180
        pods: list[Any] = []
        while time.monotonic() < deadline:
            pods = [
                p
                for p in core.list_namespaced_pod(
                    kube.namespace, label_selector=f"app={name}"
                ).items
                if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or ())
            ]
            if pods:
                break
            time.sleep(1)
        assert pods, f"no ready pod of {name} within 180 s"
        yield str(pods[0].metadata.name)
    finally:
        apps.delete_namespaced_deployment(name, kube.namespace, propagation_policy="Background")
        api.close()


def _env(tmp_path: Path, kube: KubeBed) -> dict[str, str]:
    # An empty PATH: no kubectl (nor anything else) to shell out to.
    empty = tmp_path / "empty-path"
    empty.mkdir(exist_ok=True)
    return cli_env(tmp_path, KUBECONFIG=str(kube.builder_kubeconfig), PATH=str(empty))


def test_kube_pod_endpoint_builds_through_the_kubernetes_api(
    tmp_path: Path, kube: KubeBed, buildkit_pod: str
) -> None:
    env = _env(tmp_path, kube)
    endpoint = f"kube-pod://{buildkit_pod}?namespace={kube.namespace}"
    created = ci_build(
        "builder", "create", "--name", "kp", "--driver", "remote", "--bootstrap", "--use",
        endpoint, env=env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    listed = ci_build("builder", "ls", env=env)
    assert listed.returncode == 0, listed.stderr
    (node_row,) = [line for line in listed.stdout.splitlines() if "kp0" in line]
    assert "running" in node_row and "linux/amd64" in node_row
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "payload.txt").write_text("built in a pod\n" * 5000)
    (context / "Dockerfile").write_text("FROM scratch\nCOPY payload.txt /\n")
    out = tmp_path / "out"
    built = ci_build("build", "--output", f"type=local,dest={out}", context, env=env)
    assert built.returncode == 0, built.stderr
    # The file went up through the session and came back through the local exporter: both
    # directions of the exec stream carry gRPC bytes unharmed.
    assert (out / "payload.txt").read_text() == "built in a pod\n" * 5000
    removed = ci_build("builder", "rm", "kp", env=env)
    assert removed.returncode == 0, removed.stderr


def test_a_missing_pod_fails_with_one_clear_line(tmp_path: Path, kube: KubeBed) -> None:
    env = _env(tmp_path, kube)
    endpoint = f"kube-pod://no-such-pod-{uuid.uuid4().hex[:6]}?namespace={kube.namespace}"
    created = ci_build(
        "builder", "create", "--name", "gone", "--driver", "remote", "--bootstrap",
        "--driver-opt", "timeout=5s", endpoint, env=env,
    )  # fmt: skip
    assert created.returncode != 0
    assert "Traceback" not in created.stderr
    assert created.stderr.startswith("error: cannot exec 'buildctl dial-stdio' in pod ")
    assert "not found" in created.stderr and "hint:" in created.stderr
    assert ci_build("builder", "ls", "--format", "json", env=env).stdout.strip() == ""
