"""Whether bridged pod traffic skips netfilter on this node.

On a bridged CNI (the bridge plugin, flannel's cni0) frames between pods of one bridge are switched at
layer 2: the inet hooks, and so our table, see them only when br_netfilter is loaded and
`net.bridge.bridge-nf-call-iptables` (`-ip6tables` for IPv6) is 1 in the node's netns. With either
at 0, same-node pod traffic bypasses every policy, so the agent must not report ready.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from netpol.netns import run_in

SYSCTLS = {"ipv4": "net/bridge/bridge-nf-call-iptables", "ipv6": "net/bridge/bridge-nf-call-ip6tables"}


def bridge_ports(netns: str | None) -> list[str]:
    """Interfaces enslaved to a bridge in the netns."""
    argv = ["ip"] + (["-n", netns] if netns else []) + ["-d", "-j", "link", "show"]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        return []
    return [link["ifname"] for link in json.loads(done.stdout or "[]")
            if link.get("linkinfo", {}).get("info_slave_kind") == "bridge"]


def _sysctls() -> dict[str, str | None]:
    """/proc/sys/net shows the netns of the thread that opens it."""
    out: dict[str, str | None] = {}
    for family, key in SYSCTLS.items():
        try:
            out[family] = Path("/proc/sys", key).read_text().strip()
        except OSError:
            out[family] = None  # br_netfilter not loaded: bridged frames never reach netfilter
    return out


def bypassing(netns: str | None) -> list[str]:
    """Families whose bridged pod traffic skips our table (empty when there are no bridge ports)."""
    if not bridge_ports(netns):
        return []
    return [family for family, value in run_in(netns, _sysctls).items() if value != "1"]
