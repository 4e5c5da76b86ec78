"""All ordered pairs at once: the fast evaluator. It must equal `decide` on every pair (property-tested).

Pods that no selector, port or ipBlock can tell apart behave alike, so the work is done on classes:
- pods fold into *units*: same namespace, labels, host network, container ports, primary family, and
  per family the same elementary interval between the edges of every ipBlock;
- each rule becomes a boolean row over units (its peers, its ports, the pods its policy selects);
- per direction, units fold into source and destination classes with identical rule signatures, and a
  class-by-class table answers them: a row (column) is the OR of the rows of the few rules that apply.
Cost grows with policies and rules; pods only count in the folding and the final expansion.
"""

from __future__ import annotations

import bisect
import ipaddress
import socket
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np

from netpol.errors import QueryError
from netpol.evaluate import matrix_tiers
from netpol.evaluate.folding import column_classes, int_classes
from netpol.evaluate.tiers import tier_blocks
from netpol.k8s.model import (
    PROTOCOLS,
    Cluster,
    IPBlock,
    LabelSelector,
    NetworkPolicy,
    Options,
    Peer,
    Pod,
    PolicyPort,
    Rule,
)
from netpol.k8s.names import iana_svc_name


class _PortQuery(NamedTuple):
    port: int | str
    protocol: str = "TCP"


class PortQuery(_PortQuery):
    """A port number, or a port name resolved on each destination pod with this protocol; checked
    when made (`PortQuery(5432, "tcp")` and `PortQuery(70000)` raise, instead of answering False)."""

    __slots__ = ()

    def __new__(cls, port: int | str, protocol: str = "TCP") -> PortQuery:
        if protocol not in PROTOCOLS:
            raise QueryError(f"protocol {protocol!r}: expected TCP, UDP or SCTP")
        if isinstance(port, bool) or not isinstance(port, int | str):
            raise QueryError(f"port {port!r}: expected a number or a name")
        if isinstance(port, int) and not 1 <= port <= 65535:
            raise QueryError(f"port {port} out of range 1-65535")
        if isinstance(port, str) and (why := iana_svc_name(port)):
            raise QueryError(f"port name {port!r}: {why}")
        return super().__new__(cls, port, protocol)


class _PointTable(NamedTuple):
    """One query's verdicts as plain Python values, for point queries without numpy's per-call cost."""

    src_class: list[int]  # pod position -> source class
    dst_class: list[int]  # pod position -> destination class
    width: int  # destination classes per row of `flat`
    flat: bytes  # class grid, row-major: 1 allowed
    diagonal: list[bool]  # pod position -> a pod to itself


class _Labels:
    """Label selectors over a list of label maps, answered as boolean arrays through an inverted index."""

    def __init__(self, label_maps: Sequence[Mapping[str, str]]) -> None:
        self.size = len(label_maps)
        self._pairs: dict[tuple[str, str], list[int]] = defaultdict(list)
        self._keys: dict[str, list[int]] = defaultdict(list)
        for i, labels in enumerate(label_maps):
            for k, v in labels.items():
                self._pairs[(k, v)].append(i)
                self._keys[k].append(i)
        self._cache: dict[LabelSelector, np.ndarray] = {}

    def _mask(self, rows: list[int]) -> np.ndarray:
        out = np.zeros(self.size, bool)
        out[rows] = True
        return out

    def match(self, sel: LabelSelector) -> np.ndarray:
        hit = self._cache.get(sel)
        if hit is not None:
            return hit
        out = np.ones(self.size, bool)
        for k, v in sel.match_labels:
            out &= self._mask(self._pairs.get((k, v), []))
        for req in sel.match_expressions:
            if req.operator in ("In", "NotIn"):
                rows = [i for v in req.values for i in self._pairs.get((req.key, v), [])]
                has = self._mask(rows)
            else:
                has = self._mask(self._keys.get(req.key, []))
            out &= has if req.operator in ("In", "Exists") else ~has
        self._cache[sel] = out
        return out


def _stack(rows: list[np.ndarray], width: int) -> np.ndarray:
    """Rows into a (len(rows), width) bool matrix, also when there are none."""
    return np.array(rows, bool).reshape(len(rows), width)


def _or_rows(picks: list[np.ndarray], rows: np.ndarray, active: np.ndarray) -> np.ndarray:
    """out[c] = OR of rows[k] for k in picks[c] where active[c]; all True where not active (not isolated)."""
    out = np.ones((len(picks), rows.shape[1]), bool)
    for c, keys in enumerate(picks):
        if active[c]:
            out[c] = rows[keys].any(axis=0) if keys.size else False
    return out


def _addr(text: str) -> tuple[int, int]:
    """(family, integer) of an address; inet_pton is ten times faster than ipaddress."""
    try:
        if ":" in text:
            return 6, int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big")
        return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
    except OSError:  # forms inet_pton refuses but the model accepted (an IPv6 scope id)
        ip = ipaddress.ip_address(text)
        return ip.version, int(ip)


def _net(text: str) -> tuple[int, int, int]:
    """(family, first, last) address of a CIDR, host bits ignored as the API server does."""
    addr, _, prefix = text.partition("/")
    version, value = _addr(addr)
    bits = 32 if version == 4 else 128
    host = (1 << (bits - int(prefix))) - 1
    return version, value & ~host, value | host


def _needs_ns(rule: Rule) -> bool:
    """A peer with a podSelector alone means the policy's own namespace."""
    return any(p.ip_block is None and p.namespace_selector is None for p in rule.peers)


@dataclass(frozen=True, eq=False)
class QueryGrid:
    """One query, folded: allowed = grid[src_class[s], dst_class[d]], except self pairs, where it is ok[d]."""

    src_class: np.ndarray  # (n,)
    dst_class: np.ndarray  # (n,)
    grid: np.ndarray  # (source classes, destination classes) bool
    ok: np.ndarray  # (n,) the query's port resolves on the destination
    self_pairs: tuple[np.ndarray, np.ndarray]  # (src, dst) positions where a pod talks to itself

    def bits(self) -> np.ndarray:
        """The full matrix, packed: row s, bit d (numpy packbits order)."""
        n = len(self.src_class)
        step = max(1, (1 << 25) // max(n, 1))
        rows = np.empty((self.grid.shape[0], (n + 7) // 8), np.uint8)
        for lo in range(0, self.grid.shape[0], step):
            rows[lo:lo + step] = np.packbits(self.grid[lo:lo + step][:, self.dst_class], axis=1)
        out = rows[self.src_class]
        src, dst = self.self_pairs
        mask = (0x80 >> (dst & 7)).astype(np.uint8)
        ok = self.ok[dst]  # unbuffered: one pod listed twice puts two self pairs in one byte
        np.bitwise_or.at(out, (src[ok], dst[ok] >> 3), mask[ok])
        np.bitwise_and.at(out, (src[~ok], dst[~ok] >> 3), ~mask[~ok])
        return out


class Engine:
    """The policies of a cluster compiled over a list of pods, answering any pair for any port query."""

    def __init__(self, cluster: Cluster, pods: Sequence[Pod] | None = None, opts: Options = Options()) -> None:
        self.cluster, self.opts = cluster, opts
        self.pods = tuple(cluster.pods if pods is None else pods)
        self.keys = tuple(p.key for p in self.pods)
        self._tables: dict[PortQuery, QueryGrid] = {}
        self._ip_cache: dict[tuple[IPBlock, int, bool], np.ndarray] = {}
        self._sel_cache: dict[tuple[Peer, str | None], np.ndarray] = {}
        self._fast: dict[PortQuery, _PointTable] = {}
        blocks = [peer.ip_block for pol in cluster.policies for rule in pol.ingress + pol.egress
                  for peer in rule.peers if peer.ip_block is not None]
        self._edges = self._ip_edges([*blocks, *tier_blocks(cluster)])
        self._fold_units()
        self._tiers = matrix_tiers.TierFold(self) if cluster.cluster_policies else None

    # ---- units: pods nothing can tell apart -------------------------------------------------------

    def _ip_edges(self, blocks: Sequence[IPBlock]) -> dict[int, list[int]]:
        """Per family, every address where some ipBlock (or tier network) or except range starts or ends (+1)."""
        self._block_ranges: dict[IPBlock, tuple[int, tuple[int, int], list[tuple[int, int]]]] = {}
        edges: dict[int, set[int]] = {4: set(), 6: set()}
        for block in blocks:
            if block in self._block_ranges:
                continue
            version, first, last = _net(block.cidr)
            whole, cut = (first, last), [(lo, hi) for _, lo, hi in map(_net, block.except_)]
            self._block_ranges[block] = (version, whole, cut)
            for lo, hi in [whole, *cut]:
                edges[version] |= {lo, hi + 1}
        return {v: sorted(e) for v, e in edges.items()}

    def _addr_class(self, ips: list[tuple[int, int]], version: int) -> int:
        """0: no address of this family; else 1 + the elementary interval its first such address lies in."""
        addr = next((a for v, a in ips if v == version), None)
        return 0 if addr is None else 1 + bisect.bisect_right(self._edges[version], addr)

    def _fold_units(self) -> None:
        units: dict[tuple, int] = {}
        unit_of = np.empty(len(self.pods), np.intp)
        reps: list[Pod] = []
        for i, pod in enumerate(self.pods):
            ips = [_addr(ip) for ip in pod.ips]
            key = (pod.namespace, frozenset(pod.labels.items()), pod.host_network,
                   tuple((p.name, p.port, p.protocol) for p in pod.ports), ips[0][0] if ips else 0,
                   self._addr_class(ips, 4), self._addr_class(ips, 6))
            unit = units.setdefault(key, len(units))
            if unit == len(reps):
                reps.append(pod)
            unit_of[i] = unit
        self._unit_of, self._reps = unit_of, reps
        keys = list(units)
        namespaces = sorted({k[0] for k in keys})
        self._ns_id = {ns: i for i, ns in enumerate(namespaces)}
        self._ns_labels = _Labels([self.cluster.ns_labels(ns) for ns in namespaces])
        self._labels = _Labels([p.labels for p in reps])
        self._u_ns = np.array([self._ns_id[k[0]] for k in keys], np.intp)
        self._policed = np.array([not k[2] for k in keys], bool)
        self._u_family = np.array([k[4] for k in keys], np.int8)
        self._u_class = {4: np.array([k[5] for k in keys], np.intp), 6: np.array([k[6] for k in keys], np.intp)}
        port_groups: dict[tuple, int] = {}
        self._u_pg = np.array([port_groups.setdefault(k[3], len(port_groups)) for k in keys], np.intp)
        self._port_groups = list(port_groups)
        self._ipgate = ~self._policed | self.opts.ipblock_pods
        # a pod talking to itself is allowed; a workload's "self" pair is replica to replica: policies decide
        same: dict[str, list[int]] = defaultdict(list)
        for i, pod in enumerate(self.pods):
            if pod.kind == "Pod":
                same[pod.key].append(i)
        pairs = [(i, j) for group in same.values() for i in group for j in group]
        self._local_pairs = set(_node_local_pairs(self.pods))
        pairs += sorted(self._local_pairs)
        self._self_pairs = (np.array([i for i, _ in pairs], np.intp), np.array([j for _, j in pairs], np.intp))
        self._self_keys = {k for k, g in same.items() if len(g) > 1}  # one pod listed twice

    @property
    def n_units(self) -> int:
        return len(self._reps)

    # ---- query-independent sets over units --------------------------------------------------------

    def selected(self, pol: NetworkPolicy) -> np.ndarray:
        """Units the policy selects: its namespace, policed, matching its podSelector."""
        return (self._u_ns == self._ns_id.get(pol.namespace, -1)) & self._policed & self._labels.match(
            pol.pod_selector)

    def _block_mask(self, block: IPBlock) -> np.ndarray:
        """Over the address classes of the block's family: which classes lie inside it (and no except)?
        Ranges start and end on class edges, so each one is a contiguous run of classes."""
        version, whole, cut = self._block_ranges[block]
        edges = self._edges[version]
        out = np.zeros(len(edges) + 2, bool)

        def run(lo: int, hi: int) -> slice:
            return slice(1 + bisect.bisect_right(edges, lo), 2 + bisect.bisect_right(edges, hi))
        out[run(*whole)] = True
        for lo, hi in cut:
            out[run(lo, hi)] = False
        return out

    def _ip_peer(self, block: IPBlock, family: int, gated: bool = True) -> np.ndarray:
        """Units an ipBlock matches when the connection's family is `family`: the destination's primary
        family, or 0 when the destination has no address, and then each unit's own primary address counts.
        `gated`: policed pods only when ipBlocks match pod addresses (tier networks always do)."""
        hit = self._ip_cache.get((block, family, gated))
        if hit is None:
            v = self._block_ranges[block][0]
            inside = self._block_mask(block)[self._u_class[v]]
            if family == 0:
                hit = inside & (self._u_family == v)
            else:
                hit = inside if family == v else np.zeros(self.n_units, bool)
            hit = hit & self._ipgate if gated else hit
            self._ip_cache[(block, family, gated)] = hit
        return hit

    def _selector_peer(self, ns: str, peer: Peer) -> np.ndarray:
        key = (peer, None if peer.namespace_selector is not None else ns)
        hit = self._sel_cache.get(key)
        if hit is not None:
            return hit
        out = self._policed.copy()
        if peer.namespace_selector is not None:
            out &= self._ns_labels.match(peer.namespace_selector)[self._u_ns]
        else:
            out &= self._u_ns == self._ns_id.get(ns, -1)
        if peer.pod_selector is not None:
            out &= self._labels.match(peer.pod_selector)
        self._sel_cache[key] = out
        return out

    def peers(self, ns: str, peers: tuple[Peer, ...], family: int) -> np.ndarray:
        """Units a rule's peer list matches: absent or empty matches everything."""
        if not peers:
            return np.ones(self.n_units, bool)
        out = np.zeros(self.n_units, bool)
        for peer in peers:
            out |= self._ip_peer(peer.ip_block, family) if peer.ip_block is not None \
                else self._selector_peer(ns, peer)
        return out

    @cached_property
    def _egress(self) -> tuple:
        """Egress rules keyed by (peers, ports, namespace): who they apply to, and source classes."""
        keys: dict[tuple, int] = {}
        owners: list[np.ndarray] = []
        isolated = np.zeros(self.n_units, bool)
        for pol in self.cluster.policies:
            if not pol.affects("egress"):
                continue
            sel = self.selected(pol)
            isolated |= sel
            for rule in pol.egress:
                key = (rule.peers, rule.ports, pol.namespace if _needs_ns(rule) else None)
                k = keys.setdefault(key, len(keys))
                if k == len(owners):
                    owners.append(np.zeros(self.n_units, bool))
                owners[k] |= sel
        sel_k = _stack(owners, self.n_units)
        cls, reps = column_classes(np.vstack([sel_k, isolated[None, :]]))
        picks = [np.flatnonzero(sel_k[:, r]) for r in reps]
        peer_rows = [self.peers(ns or "", peers, 0) for peers, _, ns in keys]
        return list(keys), peer_rows, cls, picks, isolated[reps]

    @cached_property
    def _ingress(self) -> tuple:
        """Ingress rules keyed by (peers, namespace): their sources per family, and source classes."""
        keys: dict[tuple, int] = {}
        users: list[list[tuple[np.ndarray, tuple[PolicyPort, ...]]]] = []
        isolated = np.zeros(self.n_units, bool)
        for pol in self.cluster.policies:
            if not pol.affects("ingress"):
                continue
            sel = self.selected(pol)
            isolated |= sel
            for rule in pol.ingress:
                key = (rule.peers, pol.namespace if _needs_ns(rule) else None)
                k = keys.setdefault(key, len(keys))
                if k == len(users):
                    users.append([])
                users[k].append((sel, rule.ports))
        # the family only matters to ipBlock peers: other rows are the same for all three
        rows = {0: _stack([self.peers(ns or "", peers, 0) for peers, ns in keys], self.n_units)}
        key_list = list(keys)
        by_ip = [k for k, (peers, _) in enumerate(key_list) if any(p.ip_block is not None for p in peers)]
        for f in (4, 6):
            rows[f] = rows[0].copy()
            for k in by_ip:
                peers, ns = key_list[k]
                rows[f][k] = self.peers(ns or "", peers, f)
        cls, reps = column_classes(np.vstack([rows[0], rows[4][by_ip], rows[6][by_ip]]))
        return users, {f: r[:, reps] for f, r in rows.items()}, cls, isolated

    # ---- one query ---------------------------------------------------------------------------------

    def _port_of(self, q: PortQuery) -> np.ndarray:
        """The query's port on each unit as destination; -1 where a named port does not resolve."""
        if isinstance(q.port, int):
            return np.full(self.n_units, q.port, np.int64)
        per_group = [next((p for name, p, proto in g if name == q.port and proto == q.protocol), -1)
                     for g in self._port_groups]
        return np.array(per_group, np.int64)[self._u_pg]

    def _ports(self, entries: tuple[PolicyPort, ...], q: PortQuery, port: np.ndarray) -> np.ndarray:
        """Destination units where the rule's ports admit the query (a named port resolves per unit)."""
        if not entries:
            return np.ones(self.n_units, bool)
        out = np.zeros(self.n_units, bool)
        for e in entries:
            if e.protocol != q.protocol:
                continue
            if e.port is None:
                return np.ones(self.n_units, bool)
            if isinstance(e.port, int):
                out |= (port >= e.port) & (port <= (e.end_port or e.port))
            else:  # the unit's port for this query depends on its port group only
                port_of_group = np.full(len(self._port_groups), -1, np.int64)
                port_of_group[self._u_pg] = port
                hits = [any(name == e.port and p == at and proto == q.protocol for name, p, proto in g)
                        for g, at in zip(self._port_groups, port_of_group.tolist(), strict=False)]
                out |= np.array(hits, bool)[self._u_pg]
        return out

    def table(self, q: PortQuery) -> QueryGrid:
        q = PortQuery(*q)
        hit = self._tables.get(q)
        if hit is None:
            hit = self._tables[q] = self._compute(q)
        return hit

    def _compute(self, q: PortQuery) -> QueryGrid:
        port = self._port_of(q)
        ok = port >= 0
        ports_cache: dict[tuple, np.ndarray] = {}

        def ports(entries):
            if entries not in ports_cache:
                ports_cache[entries] = self._ports(entries, q, port)
            return ports_cache[entries]

        # egress: rows over source classes, columns over destination classes
        keys, peer_rows, e_src, picks, e_iso = self._egress
        targets = _stack([ports(k[1]) & r for k, r in zip(keys, peer_rows, strict=False)], self.n_units)
        e_dst, d_reps = column_classes(targets)
        egress = _or_rows(picks, targets[:, d_reps], e_iso)
        # ingress: columns over destination classes (per family), rows over source classes
        users, src_rows, i_src, i_iso = self._ingress
        active = _stack([np.logical_or.reduce([sel & ports(p) for sel, p in u]) for u in users], self.n_units)
        i_dst, a_reps = column_classes(np.vstack([active, i_iso[None, :], self._u_family[None, :] == 4,
                                            self._u_family[None, :] == 6]))
        fam = self._u_family[a_reps]
        picks_in = [np.flatnonzero(active[:, r]) for r in a_reps]
        ingress = np.ones((src_rows[0].shape[1], len(a_reps)), bool)
        for c, (keys_c, f) in enumerate(zip(picks_in, fam, strict=False)):
            if i_iso[a_reps[c]]:
                ingress[:, c] = src_rows[int(f)][keys_c].any(axis=0) if keys_c.size else False
        if self._tiers is not None:  # Admin before, Baseline after NetworkPolicy, per direction
            e_src, e_dst, egress = matrix_tiers.fold_egress(self._tiers, q, port, e_src, e_dst, egress,
                                                            e_iso[e_src])
            i_src, i_dst, ingress = matrix_tiers.fold_ingress(self._tiers, q, port, i_src, i_dst, ingress, i_iso)
        # fold both directions into one source and one destination class per unit
        s_cls, s_reps = int_classes(e_src.astype(np.int64) * (i_src.max(initial=0) + 1) + i_src)
        d_key = (e_dst.astype(np.int64) * (i_dst.max(initial=0) + 1) + i_dst) * 2 + ok
        d_cls, d_reps2 = int_classes(d_key)
        grid = egress[e_src[s_reps]][:, e_dst[d_reps2]] & ingress[i_src[s_reps]][:, i_dst[d_reps2]] \
            & ok[d_reps2][None, :]
        u = self._unit_of
        return QueryGrid(src_class=s_cls[u], dst_class=d_cls[u], grid=grid, ok=ok[u], self_pairs=self._self_pairs)

    # ---- answers ------------------------------------------------------------------------------------

    def index(self, key: str) -> int:
        return self._index[key]

    @cached_property
    def _index(self) -> dict[str, int]:
        return {k: i for i, k in enumerate(self.keys)}

    def allowed(self, src: int, dst: int, query: PortQuery = PortQuery(80)) -> bool:
        """One pair by position in `pods`; about a microsecond once the query's table exists."""
        fast = self._fast.get(query)
        if fast is None:
            fast = self._fast_table(query)
        sc, dc, width, flat, diagonal = fast
        if src == dst:
            return diagonal[src]
        if (self._self_keys and self.keys[src] == self.keys[dst]) or (src, dst) in self._local_pairs:
            return bool(self.allowed_many(np.array([src]), np.array([dst]), query)[0])
        return flat[sc[src] * width + dc[dst]] == 1

    def _fast_table(self, query: PortQuery) -> _PointTable:
        t = self.table(query)
        everyone = np.arange(len(self.pods))
        diagonal = self.allowed_many(everyone, everyone, query)
        fast = _PointTable(t.src_class.tolist(), t.dst_class.tolist(), t.grid.shape[1],
                           t.grid.astype(np.uint8).tobytes(), diagonal.tolist())
        self._fast[query] = fast
        return fast

    def allowed_many(self, src: np.ndarray, dst: np.ndarray, query: PortQuery = PortQuery(80)) -> np.ndarray:
        """Many pairs at once (arrays of positions in `pods`)."""
        t = self.table(query)
        src, dst = np.asarray(src, np.intp), np.asarray(dst, np.intp)
        out = t.grid[t.src_class[src], t.dst_class[dst]]
        return np.where(self._is_self(src, dst), t.ok[dst], out)

    def _is_self(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        same = (src == dst) & self._is_pod[dst]
        if self._local_pairs:
            local = np.array([s * len(self.pods) + d for s, d in self._local_pairs], np.int64)
            same |= np.isin(src.astype(np.int64) * len(self.pods) + dst, local)
        if self._self_keys:
            key_id = self._key_id
            same |= (key_id[src] == key_id[dst]) & self._is_pod[dst]
        return same

    @cached_property
    def _is_pod(self) -> np.ndarray:
        return np.array([p.kind == "Pod" for p in self.pods], bool)

    @cached_property
    def _key_id(self) -> np.ndarray:
        ids: dict[str, int] = {}
        return np.array([ids.setdefault(k, len(ids)) for k in self.keys], np.intp)

    def matrix(self, queries: Sequence[PortQuery]) -> Matrix:
        queries = tuple(PortQuery(*q) for q in queries)
        return Matrix(pods=self.keys, queries=queries, bits=tuple(self.table(q).bits() for q in queries))


@dataclass(frozen=True, eq=False)
class Matrix:
    pods: tuple[str, ...]
    queries: tuple[PortQuery, ...]
    bits: tuple[np.ndarray, ...]  # per query: (n, ceil(n/8)) uint8, row = source, bit = destination

    def grid(self, q: int = 0) -> np.ndarray:
        """One query as an (n, n) bool array: [src][dst]."""
        return np.unpackbits(self.bits[q], axis=1, count=len(self.pods)).astype(bool)

    @cached_property
    def allowed(self) -> list[np.ndarray]:
        """Per query, the (n, n) bool array [src][dst] (unpacked once, on first use)."""
        return [self.grid(i) for i in range(len(self.queries))]

    def is_allowed(self, src: int, dst: int, q: int = 0) -> bool:
        return bool(self.bits[q][src, dst >> 3] & (0x80 >> (dst & 7)))

    def probes(self) -> list[dict]:
        return list(self.iter_probes())

    def iter_probes(self) -> Iterator[dict]:
        """One probe at a time, a source row unpacked at a time: memory stays that of the bits."""
        n = len(self.pods)
        for i, q in enumerate(self.queries):
            port, proto = q.port, q.protocol
            for r, src in enumerate(self.pods):
                row = np.unpackbits(self.bits[i][r], count=n).astype(bool).tolist()
                for dst, a in zip(self.pods, row, strict=False):
                    yield {"src": src, "dst": dst, "port": port, "protocol": proto, "allowed": a}


def _node_local_pairs(pods: Sequence[Pod]):
    """(i, j) positions of a host-network pod and a policed pod on the same node, both ways:
    traffic to and from a pod's own node is always allowed."""
    by_node: dict[str, tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
    for i, pod in enumerate(pods):
        if pod.node_name:
            by_node[pod.node_name][0 if pod.host_network else 1].append(i)
    for hosts, policed in by_node.values():
        for h in hosts:
            for p in policed:
                yield h, p
                yield p, h


def resolve_port(pod: Pod, q: PortQuery) -> int | None:
    """The number a query means on a destination pod (None: it declares no such name and protocol)."""
    if isinstance(q.port, int):
        return q.port
    return next((p.port for p in pod.named_port(q.port) if p.protocol == q.protocol), None)


def compute(cluster: Cluster, queries: list[PortQuery], pods: list[Pod] | None = None,
            opts: Options = Options()) -> Matrix:
    """Every ordered pair of `pods` (default: all pods and workloads) for each query."""
    return Engine(cluster, pods, opts).matrix(queries)
