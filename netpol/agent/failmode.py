"""What the kernel does before the agent's first full sync.

closed: a minimal table (the agent's own table name, so the first sync replaces it in one
transaction) drops new connections to and from the pod CIDRs (all new connections not sent by
the node when none are given) at the hook the full table enforces at, postrouting before SNAT,
so Service traffic re-sent by IPVS is held too; replies of connections that already existed
still pass. The node's own traffic (kubelet probes, the agent's API connection) passes.
open: nothing is installed. Either way a table a previous agent left behind is kept as it is:
it is the last known good state, better than both.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Literal

from netpol.errors import NetpolError
from netpol.nft.render import REVOKE_MARK
from netpol.nft.ruleset import Ruleset

FailMode = Literal["closed", "open"]
COMMENT = "netpol fail-closed: waiting for first sync"


def parse_cidrs(texts: Sequence[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    out = []
    for text in texts:
        try:
            out.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise NetpolError(f"--pod-cidr {text!r}: not a CIDR") from None
    return tuple(out)


def bootstrap_ruleset(table: str, pod_cidrs: Sequence[str] = ()) -> Ruleset:
    nets = parse_cidrs(pod_cidrs)
    if not nets:
        drops = f'  ct state new counter drop comment "{COMMENT}"\n'
    else:
        drops = "".join(
            f'  {fam} {d}addr @pods{v} ct state new counter drop comment "{COMMENT}"\n'
            for v, fam in ((4, "ip"), (6, "ip6")) if any(n.version == v for n in nets) for d in ("s", "d"))
    skeleton = (
        "set pods4 { type ipv4_addr; flags interval; }\n"
        "set pods6 { type ipv6_addr; flags interval; }\n"
        "chain post_egress {\n"
        "  type filter hook postrouting priority srcnat - 10; policy accept;\n"
        f"  ct mark & {REVOKE_MARK:#x} == {REVOKE_MARK:#x} drop\n"  # cut connections stay cut
        "  ct state established,related accept\n"
        "  fib saddr type local accept\n"
        f"{drops}"
        "}"
    )
    elements = {f"pods{v}": frozenset(str(n) for n in nets if n.version == v) for v in (4, 6)}
    return Ruleset(table, skeleton, elements)
