"""Node network namespaces and the private bridge that joins them to the host.

host bridge pbxkube0 10.213.0.1/24 (no forwarding, no NAT) <-veth-> netns pbxk-<pool> 10.213.0.1x
Only the connected /24 is routed, so nothing in a node namespace (or in its pods, which sit on a
bridge inside it with no default route) can reach an outside address.
"""

from __future__ import annotations

import json
from pathlib import Path

from kubecommon import (
    BRIDGE,
    BRIDGE_ADDR,
    NODE_PREFIX,
    POD_REGISTRY_ADDR,
    NodeSpec,
    in_netns,
    run,
)


def _link_exists(name: str, netns: str | None = None) -> bool:
    argv = ["ip", "link", "show", name]
    return run(in_netns(netns, argv) if netns else argv, capture=True, check=False).returncode == 0


def create_bridge() -> None:
    if not _link_exists(BRIDGE):
        run(["ip", "link", "add", BRIDGE, "type", "bridge"])
        run(["ip", "addr", "add", f"{BRIDGE_ADDR}/{NODE_PREFIX}", "dev", BRIDGE])
    run(["ip", "link", "set", BRIDGE, "up"])


def create_node_netns(node: NodeSpec) -> None:
    if not Path(f"/run/netns/{node.netns}").exists():
        run(["ip", "netns", "add", node.netns])
    host_end, node_end = f"{node.netns}-h", "eth0"
    if not _link_exists(host_end):
        run(
            [
                "ip",
                "link",
                "add",
                host_end,
                "type",
                "veth",
                "peer",
                "name",
                node_end,
                "netns",
                node.netns,
            ]
        )
        run(["ip", "link", "set", host_end, "master", BRIDGE, "up"])
        run(
            in_netns(
                node.netns, ["ip", "addr", "add", f"{node.address}/{NODE_PREFIX}", "dev", node_end]
            )
        )
    run(in_netns(node.netns, ["ip", "link", "set", "lo", "up"]))
    alias = in_netns(node.netns, ["ip", "addr", "replace", f"{POD_REGISTRY_ADDR}/32", "dev", "lo"])
    run(alias)
    run(in_netns(node.netns, ["ip", "link", "set", node_end, "up"]))


def delete_node_netns(node: NodeSpec) -> None:
    run(["ip", "link", "del", f"{node.netns}-h"], capture=True, check=False)
    run(["ip", "netns", "del", node.netns], capture=True, check=False)


def delete_bridge() -> None:
    run(["ip", "link", "del", BRIDGE], capture=True, check=False)


def write_cni_config(node: NodeSpec, conf_dir: Path) -> None:
    """A bridge inside the node namespace for its pods: gateway address on the bridge so the
    kubelet can reach pods, no IP masquerade, and no default route in pods: their only route
    out of their subnet is the /32 to the node's registry alias."""
    conf_dir.mkdir(parents=True, exist_ok=True)
    bridge = {
        "type": "bridge",
        "bridge": "pbxpods0",
        "isGateway": True,
        "isDefaultGateway": False,
        "ipMasq": False,
        "hairpinMode": True,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": node.pod_cidr}]],
            "routes": [{"dst": f"{POD_REGISTRY_ADDR}/32"}],
            "dataDir": str(node.dir / "cni-ipam"),
        },
    }
    conflist = {"cniVersion": "0.4.0", "name": "pbx-pods", "plugins": [bridge]}
    (conf_dir / "10-pbx.conflist").write_text(json.dumps(conflist, indent=2) + "\n")
