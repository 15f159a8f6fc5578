"""ci/kube up, down and status: the order in which the parts start and stop."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from kubeaccess import create_builder_access, kubectl
from kubecommon import (
    API_PORT,
    BUILDKIT_IMAGE,
    ETCD_CLIENT_PORT,
    HERE,
    KUBE_BIN,
    KUBE_VERSION,
    KUBECTL,
    LIB,
    LOGS,
    NAMESPACE,
    NODES,
    PAUSE_IMAGE,
    PKI,
    POD_REGISTRY_ADDR,
    REGISTRY_PORT,
    RUN,
    KubeBedError,
    NodeSpec,
    kill_and_wait,
    load_state,
    log,
    pid_alive,
    pid_of,
    port_free,
    run,
    save_state,
    spawn,
    stop,
    wait_for,
)
from kubecontrol import (
    ADMIN_KUBECONFIG,
    start_apiserver,
    start_controller_manager,
    start_etcd,
    start_scheduler,
)
from kubeimages import (
    bed_buildkit_archive,
    build_archive,
    buildkit_image,
    import_image,
    pause_image,
    tag_image,
)
from kubenet import create_bridge, create_node_netns, delete_bridge, delete_node_netns
from kubenodes import kill_pod_processes, remove_cgroup_root, start_containerd, start_kubelet
from kubepki import ca_paths, make_ca

REPO = HERE.parent.parent
BUILDER_KUBECONFIG = PKI / "builder.kubeconfig"


def up() -> None:
    timings: dict[str, float] = {}
    if _running():
        log("already up; `ci/kube down` first to start over")
        status()
        return
    if RUN.exists():
        log("cleaning up what a previous, unfinished `up` left behind")
        down()
    _timed("binaries", timings, _ensure_binaries)
    for port in (API_PORT, ETCD_CLIENT_PORT):
        if not port_free(port):
            raise KubeBedError(f"127.0.0.1:{port} is taken; is another cluster running?")
    for path in (LIB, RUN):
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.chmod(0o700)
    _timed("certificates", timings, make_ca)
    _timed("etcd", timings, start_etcd)
    _timed("kube-apiserver", timings, start_apiserver)
    start_controller_manager()
    start_scheduler()
    _timed("images", timings, _image_archives)
    bed_image = bed_buildkit_archive()
    _timed("network", timings, _network)
    for node in NODES:
        _timed(f"node {node.name}", timings, functools.partial(_start_node, node, bed_image))
    _timed("nodes ready", timings, _wait_nodes_ready)
    ca, _ = ca_paths()
    role = REPO / "docs" / "rbac" / "builder-role.yaml"
    _timed(
        "builder access",
        timings,
        lambda: create_builder_access(ADMIN_KUBECONFIG, role, BUILDER_KUBECONFIG, ca),
    )
    save_state(
        {
            "version": KUBE_VERSION,
            "server": f"https://127.0.0.1:{API_PORT}",
            "admin_kubeconfig": str(ADMIN_KUBECONFIG),
            "builder_kubeconfig": str(BUILDER_KUBECONFIG),
            "namespace": NAMESPACE,
            "buildkit_image": bed_image[1] if bed_image else BUILDKIT_IMAGE,
            "own_buildkit_image": BUILDKIT_IMAGE,
            "pause_image": PAUSE_IMAGE,
            "pod_registry": f"{POD_REGISTRY_ADDR}:{REGISTRY_PORT}",
            "nodes": [
                {"name": n.name, "labels": n.labels, "address": n.address, "netns": n.netns}
                for n in NODES
            ],
            "timings": timings,
        }
    )
    log(f"up: {json.dumps(timings)}")


def _timed(label: str, timings: dict[str, float], step: Callable[[], object]) -> None:
    start = time.monotonic()
    step()
    timings[label] = round(time.monotonic() - start, 1)
    log(f"{label}: {timings[label]} s")


def _running() -> bool:
    return pid_alive(pid_of("kube-apiserver")) and Path(RUN / "state.json").exists()


# What the cluster runs from Debian: command (or file) -> package.
APT_PACKAGES = {
    "etcd": "etcd-server",
    "containerd": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "/usr/lib/cni/bridge": "containernetworking-plugins",
    "nsenter": "util-linux",
    "openssl": "openssl",
}


def _ensure_packages() -> None:
    missing = sorted(
        {
            package
            for command, package in APT_PACKAGES.items()
            if not (Path(command).exists() if command.startswith("/") else shutil.which(command))
        }
    )
    if missing:
        log(f"installing {' '.join(missing)} (apt)")
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "update", "-q"], env=env)  # a fresh machine has no package lists
        run(["apt-get", "install", "-y", "--no-install-recommends", *missing], env=env)


def _ensure_binaries() -> None:
    _ensure_packages()
    wanted = ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet"]
    wanted += ["kubectl", "pause"]
    if all((KUBE_BIN / name).is_file() for name in wanted):
        return
    log(f"building Kubernetes {KUBE_VERSION} (one binary at a time; a cold build takes a while)")
    run([str(HERE / "build-kube")])


def _image_archives() -> None:
    for spec in (pause_image(), buildkit_image()):
        build_archive(spec)


def _network() -> None:
    create_bridge()
    for node in NODES:
        create_node_netns(node)
        name = f"relay-{node.pool}"
        if not pid_alive(pid_of(name)):
            spawn(
                name,
                [
                    "python3",
                    str(HERE / "nsrelay.py"),
                    node.netns,
                    str(API_PORT),
                    str(REGISTRY_PORT),
                    f"{POD_REGISTRY_ADDR}:{REGISTRY_PORT}",
                ],
            )


def _start_node(node: NodeSpec, bed_image: tuple[Path, str] | None) -> None:
    start_containerd(node)
    for spec in (pause_image(), buildkit_image()):
        import_image(build_archive(spec), node.containerd_sock)
    if bed_image:
        archive, ref = bed_image
        import_image(archive, node.containerd_sock)
        tag_image(ref, ref.rsplit(":", 1)[0] + ":latest", node.containerd_sock)
    start_kubelet(node)


def _wait_nodes_ready() -> None:
    def ready() -> bool:
        argv = [KUBECTL, f"--kubeconfig={ADMIN_KUBECONFIG}", "get", "nodes", "-o", "json"]
        out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
        try:
            items = json.loads(out)["items"]
        except (ValueError, KeyError):
            return False
        ready = {
            item["metadata"]["name"]
            for item in items
            for cond in item["status"].get("conditions", [])
            if cond["type"] == "Ready" and cond["status"] == "True"
        }
        return all(n.name in ready for n in NODES)

    wait_for("kubelet nodes", ready, 180, "kubelet-a")


def down() -> None:
    for node in NODES:
        stop(f"kubelet-{node.pool}")
    for node in NODES:
        _remove_containers(node)
        stop(f"containerd-{node.pool}")
        _kill_shims(node)
        kill_pod_processes(node)
        stop(f"relay-{node.pool}")
    for name in ("kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
        stop(name)
    _unmount_under(LIB, RUN)
    for node in NODES:
        delete_node_netns(node)
        remove_cgroup_root(node)
    delete_bridge()
    _remove_container_log_links()
    shutil.rmtree(RUN, ignore_errors=True)
    if LIB.exists():
        for child in LIB.iterdir():
            if child != LOGS:
                shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink()


def _remove_container_log_links() -> None:
    """The kubelet always links container logs into /var/log/containers; drop our links."""
    links = Path("/var/log/containers")
    for link in links.glob("*.log") if links.is_dir() else []:
        try:
            target = str(link.readlink())
        except OSError:
            continue
        if link.is_symlink() and target.startswith(str(LIB) + "/"):
            link.unlink()


def _remove_containers(node: NodeSpec) -> None:
    if not pid_alive(pid_of(f"containerd-{node.pool}")):
        return
    ctr = ["ctr", "--address", str(node.containerd_sock), "-n", "k8s.io"]
    tasks = run([*ctr, "tasks", "ls", "-q"], capture=True, check=False).stdout.split()
    for task in tasks:
        run([*ctr, "tasks", "kill", "-s", "SIGKILL", task], capture=True, check=False)
    deadline = time.monotonic() + 20
    for task in tasks:
        while time.monotonic() < deadline:
            gone = run([*ctr, "tasks", "rm", "-f", task], capture=True, check=False)
            if gone.returncode == 0 or "not found" in gone.stderr:
                break
            time.sleep(0.3)
    for container in run(
        [*ctr, "containers", "ls", "-q"], capture=True, check=False
    ).stdout.split():
        run([*ctr, "containers", "rm", container], capture=True, check=False)


def _kill_shims(node: NodeSpec) -> None:
    """Shims outlive containerd; ours are the ones started with our containerd's address."""
    address = str(node.containerd_sock)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and address.encode() in argv:
            kill_and_wait(int(proc.name), 5)


def _unmount_under(*roots: Path) -> None:
    prefixes = tuple(str(root) + "/" for root in roots)
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(prefixes):
            mounts.append(point)
    for point in sorted(mounts, key=len, reverse=True):
        run(["umount", "-l", point], capture=True, check=False)


def status() -> None:
    state = load_state()
    if not state or not pid_alive(pid_of("kube-apiserver")):
        raise KubeBedError("not up (run ci/kube up)")
    admin = Path(str(state["admin_kubeconfig"]))
    print(f"server: {state['server']}  kubernetes {state['version']}")
    print(kubectl(admin, "version", "--output=yaml").strip())
    print(kubectl(admin, "get", "nodes", "-o", "wide", "--show-labels").rstrip())
    probe = _exec_probe(admin, str(state["buildkit_image"]))
    print(f"exec into a buildkitd pod: {probe}")
    if not probe.startswith("ok"):
        raise KubeBedError(f"a buildkitd pod cannot be exec'd into; see {LOGS}")


def _exec_probe(admin: Path, image: str) -> str:
    """Start a throwaway buildkitd pod, exec `buildctl debug workers` in it, delete it."""
    pod = "pbx-status-probe"
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod, "namespace": NAMESPACE},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "buildkitd",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "securityContext": {"privileged": True},
                    "volumeMounts": [{"name": "state", "mountPath": "/var/lib/buildkit"}],
                }
            ],
            "volumes": [{"name": "state", "emptyDir": {}}],
        },
    }
    try:
        kubectl(admin, "apply", "-f", "-", input_text=json.dumps(manifest))
        kubectl(
            admin, "wait", "-n", NAMESPACE, f"pod/{pod}", "--for=condition=Ready", "--timeout=90s"
        )
        deadline = time.monotonic() + 30
        while True:
            probe = run(
                [
                    KUBECTL,
                    f"--kubeconfig={admin}",
                    "exec",
                    "-n",
                    NAMESPACE,
                    pod,
                    "--",
                    "buildctl",
                    "debug",
                    "workers",
                ],
                capture=True,
                check=False,
            )
            if probe.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(1)
        node = kubectl(
            admin, "get", "-n", NAMESPACE, f"pod/{pod}", "-o", "jsonpath={.spec.nodeName}"
        )
        if probe.returncode != 0:
            return f"FAILED on {node}: {probe.stderr.strip()[-500:]}"
        workers = [line for line in probe.stdout.splitlines()[1:] if line.strip()]
        return f"ok ({pod} on {node}: {len(workers)} worker(s))"
    except KubeBedError as err:
        return f"FAILED: {err}"
    finally:
        run(
            [
                KUBECTL,
                f"--kubeconfig={admin}",
                "delete",
                "-n",
                NAMESPACE,
                f"pod/{pod}",
                "--wait=false",
                "--ignore-not-found",
            ],
            capture=True,
            check=False,
        )
