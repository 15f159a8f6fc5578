"""A kubelet node: its own containerd (CRI + runc + CNI) and kubelet, both inside the node's
network namespace, each with private roots, sockets and cgroup parent so two nodes (and the
test bed's daemons) never see each other's containers."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from kubeaccess import write_kubeconfig
from kubecommon import (
    KUBE_BIN,
    LIB,
    PAUSE_IMAGE,
    REGISTRY_PORT,
    RUN,
    NodeSpec,
    in_netns,
    log,
    pid_alive,
    pid_of,
    run,
    spawn,
    wait_for,
)
from kubenet import write_cni_config
from kubepki import CertSpec, ca_paths, make_cert

CGROUP_V1 = Path("/sys/fs/cgroup")


def containerd_config(node: NodeSpec) -> str:
    root = node.dir / "containerd"
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{root / "root"}"
state = "{RUN / node.name / "containerd-state"}"
[grpc]
  address = "{node.containerd_sock}"
[ttrpc]
  address = "{node.containerd_sock}.ttrpc"
[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  disable_apparmor = true
  # These machines withhold CAP_SYS_RESOURCE even from root, so runc cannot lower
  # oom_score_adj below ours (the kubelet asks -998 for sandboxes): cap it instead.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  netns_mounts_under_state_dir = true
[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[{cri}.containerd.runtimes.runc.options]
  BinaryName = "/usr/sbin/runc"
  Root = "{RUN / node.name / "runc"}"
  SystemdCgroup = false
[{cri}.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "{node.dir / "cni"}"
[{cri}.registry]
  config_path = "{node.dir / "certs.d"}"
"""


def write_registry_hosts(node: NodeSpec) -> None:
    """Pull 127.0.0.1:5000/... over plain HTTP (the bed's registry, relayed into the node)."""
    host = f"127.0.0.1:{REGISTRY_PORT}"
    hosts = node.dir / "certs.d" / host / "hosts.toml"
    hosts.parent.mkdir(parents=True, exist_ok=True)
    hosts.write_text(
        f'server = "http://{host}"\n\n'
        f'[host."http://{host}"]\n  capabilities = ["pull", "resolve"]\n'
    )


def start_containerd(node: NodeSpec) -> None:
    (RUN / node.name).mkdir(parents=True, exist_ok=True)
    node.dir.mkdir(parents=True, exist_ok=True)
    write_cni_config(node, node.dir / "cni")
    write_registry_hosts(node)
    config = node.dir / "containerd.toml"
    config.write_text(containerd_config(node))
    name = f"containerd-{node.pool}"
    if not pid_alive(pid_of(name)):
        spawn(name, in_netns(node.netns, ["containerd", "--config", str(config)]))
    wait_for(f"containerd of {node.name}", lambda: _ctr_ok(node), 60, name)


def _ctr_ok(node: NodeSpec) -> bool:
    argv = ["ctr", "--address", str(node.containerd_sock), "version"]
    return run(argv, capture=True, check=False).returncode == 0


def make_cgroup_root(node: NodeSpec) -> None:
    """The kubelet wants its --cgroup-root to exist in every v1 hierarchy."""
    for hierarchy in sorted(CGROUP_V1.iterdir()):
        if hierarchy.name == "unified" or not hierarchy.is_dir():
            continue
        group = hierarchy / node.cgroup_root.lstrip("/")
        group.mkdir(exist_ok=True)
        if hierarchy.name == "cpuset":
            for knob in ("cpuset.cpus", "cpuset.mems"):
                (group / knob).write_text((hierarchy / knob).read_text())


def kill_pod_processes(node: NodeSpec) -> None:
    """SIGKILL whatever still runs under the node's cgroup parent (pods whose shim is gone)."""
    group = CGROUP_V1 / "pids" / node.cgroup_root.lstrip("/")
    for procs in group.rglob("cgroup.procs") if group.is_dir() else []:
        for pid in procs.read_text().split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass


def remove_cgroup_root(node: NodeSpec) -> None:
    for hierarchy in sorted(CGROUP_V1.iterdir()):
        group = hierarchy / node.cgroup_root.lstrip("/")  # the kubelet also makes one in unified/
        if not group.is_dir():
            continue
        for sub in sorted(group.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if sub.is_dir():
                try:
                    sub.rmdir()
                except OSError:
                    pass
        try:
            group.rmdir()
        except OSError as err:
            log(f"could not remove cgroup {group}: {err}")


def kubelet_config(node: NodeSpec, cert: Path, key: Path) -> dict[str, object]:
    ca, _ = ca_paths()
    resolv = LIB / "resolv.conf"  # pods get no nameserver: there is nowhere to resolve
    resolv.write_text("options ndots:1\n")
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": node.address,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzPort": 0,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(ca)},
        },
        # Only holders of a certificate from our CA reach the kubelet at all (the API server).
        "authorization": {"mode": "AlwaysAllow"},
        "tlsCertFile": str(cert),
        "tlsPrivateKeyFile": str(key),
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": node.cgroup_root,
        "failSwapOn": False,
        "failCgroupV1": False,
        "resolvConf": str(resolv),
        "podLogsDir": str(node.dir / "pod-logs"),
        "containerRuntimeEndpoint": f"unix://{node.containerd_sock}",
        "imageServiceEndpoint": f"unix://{node.containerd_sock}",
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 99,
        "imageGCLowThresholdPercent": 98,
        "serializeImagePulls": False,
        "maxPods": 30,
        "enforceNodeAllocatable": ["pods"],
        "protectKernelDefaults": False,
    }


def start_kubelet(node: NodeSpec) -> None:
    ca, _ = ca_paths()
    serving_cert, serving_key = make_cert(
        CertSpec(
            f"kubelet-{node.pool}-serving",
            node.name,
            server=True,
            dns_names=(node.name,),
            ip_addresses=(node.address,),
        )
    )
    client_cert, client_key = make_cert(
        CertSpec(
            f"kubelet-{node.pool}-client",
            f"system:node:{node.name}",
            organization="system:nodes",
            client=True,
        )
    )
    kubeconfig = node.dir / "kubelet.kubeconfig"
    write_kubeconfig(
        kubeconfig, user=f"system:node:{node.name}", ca=ca, cert=client_cert, key=client_key
    )
    config = node.dir / "kubelet.json"
    config.write_text(json.dumps(kubelet_config(node, serving_cert, serving_key), indent=2))
    make_cgroup_root(node)
    labels = ",".join(f"{k}={v}" for k, v in node.labels.items())
    name = f"kubelet-{node.pool}"
    if pid_alive(pid_of(name)):
        return
    spawn(
        name,
        in_netns(
            node.netns,
            [
                str(KUBE_BIN / "kubelet"),
                f"--config={config}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={node.dir / 'kubelet'}",
                f"--hostname-override={node.name}",
                f"--node-ip={node.address}",
                f"--node-labels={labels}",
                "--v=1",
            ],
        ),
    )
