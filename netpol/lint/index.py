"""Pod sets as bitsets (Python ints, bit i = cluster.pods[i]), computed once per selector and reused.

Lint asks the same questions of many policies: which pods a selector picks, which a peer matches. The
answers here are built from the model's own matchers (`LabelSelector.matches`, `IPBlock.contains`) over
pods grouped by identical labels, so the semantics stay those of `netpol.evaluate.resolve`; tests check every set
against `resolve.selects` and `resolve.peer_matches` pod by pod.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator

from netpol.k8s.model import Cluster, IPBlock, LabelSelector, NetworkPolicy, Options, Peer, Rule

EVERY = LabelSelector()


def members(bits: int) -> Iterator[int]:
    """Indices of the set bits, lowest first."""
    text = bin(bits)[:1:-1]  # least significant bit first
    i = text.find("1")
    while i >= 0:
        yield i
        i = text.find("1", i + 1)


def first(bits: int) -> int:
    return (bits & -bits).bit_length() - 1


class Index:
    def __init__(self, cluster: Cluster, opts: Options) -> None:
        self.cluster, self.opts = cluster, opts
        self.pods = cluster.pods
        self.all = (1 << len(self.pods)) - 1
        self.policed = 0
        self.in_ns: dict[str, int] = {}
        groups: dict[str, dict[tuple, list]] = {}  # ns -> labels -> [labels, bits]; policed pods only
        for i, pod in enumerate(self.pods):
            bit = 1 << i
            self.in_ns[pod.namespace] = self.in_ns.get(pod.namespace, 0) | bit
            if pod.host_network:
                continue  # selectors never match host-network pods
            self.policed |= bit
            entry = groups.setdefault(pod.namespace, {}).setdefault(tuple(sorted(pod.labels.items())),
                                                                   [pod.labels, 0])
            entry[1] |= bit
        self._groups = {ns: list(g.values()) for ns, g in groups.items()}
        self._sel: dict[tuple[LabelSelector, str], int] = {}
        self._ns_sel: dict[LabelSelector, tuple[str, ...]] = {}
        self._blocks: dict[IPBlock, int] = {}
        self._selected: dict[int, int] = {}
        self._rules: dict[tuple[int, int], int] = {}
        self._declares: dict[tuple[str, str], int] | None = None
        self._addresses: dict[int, tuple[list[int], list[int]]] | None = None

    def pods_in(self, selector: LabelSelector, namespace: str) -> int:
        """Policed pods of one namespace whose labels the selector matches."""
        key = (selector, namespace)
        bits = self._sel.get(key)
        if bits is None:
            bits = 0
            for labels, group in self._groups.get(namespace, ()):
                if selector.matches(labels):
                    bits |= group
            self._sel[key] = bits
        return bits

    def namespaces(self, selector: LabelSelector) -> tuple[str, ...]:
        found = self._ns_sel.get(selector)
        if found is None:
            found = tuple(ns.name for ns in self.cluster.namespaces.values() if selector.matches(ns.labels))
            self._ns_sel[selector] = found
        return found

    def selected(self, policy: NetworkPolicy) -> int:
        """The pods a policy selects (`resolve.selects`)."""
        bits = self._selected.get(id(policy))
        if bits is None:
            bits = self._selected[id(policy)] = self.pods_in(policy.pod_selector, policy.namespace)
        return bits

    def peer(self, policy: NetworkPolicy, peer: Peer) -> int:
        """The pods a peer can match (`resolve.peer_matches`; ipBlocks by any of the pod's addresses)."""
        if peer.ip_block is not None:
            covered = self.ip_block(peer.ip_block)
            return covered if self.opts.ipblock_pods else covered & ~self.policed
        spaces = (self.namespaces(peer.namespace_selector) if peer.namespace_selector is not None
                  else (policy.namespace,))
        pod_sel = peer.pod_selector or EVERY
        bits = 0
        for ns in spaces:
            bits |= self.pods_in(pod_sel, ns)
        return bits

    def rule_peers(self, policy: NetworkPolicy, rule: Rule) -> int:
        key = (id(policy), id(rule))  # both live as long as the cluster: ids are stable
        bits = self._rules.get(key)
        if bits is None:
            bits = self.all if not rule.peers else 0  # no `from`/`to`: every peer
            for peer in rule.peers:
                bits |= self.peer(policy, peer)
            self._rules[key] = bits
        return bits

    def ip_block(self, block: IPBlock) -> int:
        """Pods (host-network ones too) with an address inside the block."""
        bits = self._blocks.get(block)
        if bits is None:
            bits = 0
            keys, owners = self._by_address().get(block.network.version, ([], []))
            net = block.network
            lo = bisect.bisect_left(keys, int(net.network_address))
            hi = bisect.bisect_right(keys, int(net.broadcast_address))
            for k in range(lo, hi):
                i = owners[k]
                if any(block.contains(a) for a in self.pods[i].addresses):
                    bits |= 1 << i
            self._blocks[block] = bits
        return bits

    def _by_address(self) -> dict[int, tuple[list[int], list[int]]]:
        if self._addresses is None:
            pairs: dict[int, list[tuple[int, int]]] = {}
            for i, pod in enumerate(self.pods):
                for addr in pod.addresses:
                    pairs.setdefault(addr.version, []).append((int(addr), i))
            self._addresses = {}
            for version, found in pairs.items():
                found.sort()
                self._addresses[version] = ([a for a, _ in found], [i for _, i in found])
        return self._addresses

    def declares(self, name: str, protocol: str) -> int:
        """Pods that declare a container port of this name and protocol."""
        if self._declares is None:
            self._declares = {}
            for i, pod in enumerate(self.pods):
                for cp in pod.ports:
                    if cp.name:
                        key = (cp.name, cp.protocol)
                        self._declares[key] = self._declares.get(key, 0) | (1 << i)
        return self._declares.get((name, protocol), 0)

    def namespaces_of(self, bits: int) -> list[str]:
        return [ns for ns, b in self.in_ns.items() if b & bits]

    def keys(self, bits: int, limit: int = 3) -> str:
        """A short list of the pods in a set, for messages."""
        out = []
        for n, i in enumerate(members(bits)):
            if n == limit:
                out.append("…")
                break
            out.append(self.pods[i].key)
        return ", ".join(out)
