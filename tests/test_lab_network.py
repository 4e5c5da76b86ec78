"""The lab's network layer with real namespaces and real packets (prefix `npa*` for everything)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netpol.errors import LabError
from netpol.lab import LabHost, Probe, down, lab_netns, load_state, probe, topology, up

_needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")


def kernel(fn):
    return pytest.mark.kernel(_needs_root(fn))


A = LabHost("x/a", ("198.18.1.1",), ((80, "TCP"),))
B = LabHost("x/b", ("198.18.1.2",), ((80, "TCP"), (53, "UDP")))
C = LabHost("y/c", ("2001:db8:1::3",), ((80, "TCP"),))
D = LabHost("y/d", ("2001:db8:1::4",), ())
E = LabHost("z/e", ("198.18.1.5", "2001:db8:1::5"), ())  # dual-stack, IPv4 primary
F = LabHost("z/f", ("2001:db8:1::6", "198.18.1.6"), ())  # dual-stack, IPv6 primary
MIXED = (A, B, C, D, E, F)
EXTRA = ((8080, "TCP"),)


def _netns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _servers(prefix: str) -> list[int]:
    return topology._server_pids(prefix)


def _nft(netns: str, script: str) -> None:
    subprocess.run(["ip", "netns", "exec", netns, "nft", "-f", "-"], input=script, text=True, check=True)


def _assert_gone(prefix: str) -> None:
    assert not [n for n in _netns_names() if n.startswith(f"{prefix}-")]
    assert _servers(prefix) == []
    assert not topology.state_path(prefix).exists()
    assert load_state(prefix) is None


@pytest.fixture
def lab_factory() -> Iterator:
    made: list[str] = []

    def make(prefix: str, hosts, extra_ports=()):
        down(prefix)  # leftovers of an earlier crashed run of this very test
        made.append(prefix)
        return up(hosts, prefix=prefix, extra_ports=extra_ports)

    try:
        yield make
    finally:
        for prefix in made:
            down(prefix)


@pytest.fixture(scope="module")
def mixed():
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    down("npamix")
    try:
        yield up(MIXED, prefix="npamix", extra_ports=EXTRA)
    finally:
        down("npamix")


# ---------------------------------------------------------------- checks that need no kernel


@pytest.mark.parametrize(
    ("hosts", "match"),
    [
        ([LabHost("x/a", ("10.0.0.1",))], "outside the lab ranges"),
        ([LabHost("x/a", ("fd00::1",))], "outside the lab ranges"),
        ([LabHost("x/a", ("198.19.255.254",))], "reserved"),
        ([LabHost("x/a", ("nope",))], "not an IP address"),
        ([LabHost("x/a", ())], "no IP"),
        ([LabHost("x/a", ("198.18.0.1",)), LabHost("x/b", ("198.18.0.1",))], "already used by pod x/a"),
        ([LabHost("x/a", ("198.18.0.1",)), LabHost("x/a", ("198.18.0.2",))], "given twice"),
        ([LabHost("x/a", ("198.18.0.1",), ((0, "TCP"),))], "1-65535"),
        ([LabHost("x/a", ("198.18.0.1",), ((80, "ICMP"),))], "protocol"),
    ],
)
def test_up_rejects_bad_hosts_before_touching_anything(hosts, match):
    with pytest.raises(LabError, match=match):
        up(hosts, prefix="npabad")


@pytest.mark.parametrize("prefix", ["", "NPA", "npa-x", "npa_x", "npa45678901", "9npa"])
def test_bad_prefix(prefix):
    with pytest.raises(LabError, match="invalid lab prefix"):
        up([A], prefix=prefix)


def test_not_root_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(LabError, match="needs root"):
        up([A], prefix="npanr")
    with pytest.raises(LabError, match="needs root"):
        down("npanr")


# ---------------------------------------------------------------- real packets


@kernel
@pytest.mark.parametrize("proto", ["TCP", "UDP"])
def test_ipv4_and_ipv6_pods_reach_each_other(mixed, proto):
    probes = [Probe(s.key, d.key, 80, proto) for s, d in [(A, B), (B, A)]]
    probes += [Probe(s.key, d.key, 8080, proto) for s, d in [(C, D), (D, C), (A, E), (E, A), (C, F)]]
    result = probe(mixed, probes)
    assert result == {p: True for p in probes}


@kernel
def test_dual_stack_family_selection(mixed):
    pairs = [(s.key, d.key) for s in MIXED for d in MIXED]
    probes = [Probe(s, d, 8080, "TCP") for s, d in pairs]
    v4 = {"x/a", "x/b", "z/e", "z/f"}
    v6 = {"y/c", "y/d", "z/e", "z/f"}
    primary_v6 = {"y/c", "y/d", "z/f"}
    by_family = {
        "ipv4": {Probe(s, d, 8080, "TCP") for s, d in pairs if s in v4 and d in v4},
        "ipv6": {Probe(s, d, 8080, "TCP") for s, d in pairs if s in v6 and d in v6},
        None: {Probe(s, d, 8080, "TCP") for s, d in pairs if s in (v6 if d in primary_v6 else v4)},
    }
    for family, expected in by_family.items():
        result = probe(mixed, probes, family=family)
        assert set(result) == expected, family
        assert all(result.values()), family


@kernel
def test_self_probe_uses_own_address(mixed):
    probes = [Probe(h.key, h.key, 8080, proto) for h in MIXED for proto in ("TCP", "UDP")]
    assert all(probe(mixed, probes).values())


@kernel
def test_drop_in_node_netns_is_observed(mixed):
    """A rule in the node netns decides: proves pod traffic really crosses it and drops are seen."""
    _nft(
        mixed.node_netns,
        textwrap.dedent(
            """
            table inet npatest {
              chain filt {
                type filter hook forward priority 0; policy accept;
                ip saddr 198.18.1.1 ip daddr 198.18.1.2 tcp dport 80 drop
                ip6 daddr 2001:db8:1::6 udp dport 8080 drop
              }
            }
            """
        ),
    )
    try:
        cases = {
            Probe("x/a", "x/b", 80, "TCP"): False,
            Probe("x/b", "x/a", 80, "TCP"): True,
            Probe("x/a", "x/b", 80, "UDP"): True,
            Probe("x/a", "z/e", 8080, "TCP"): True,
            Probe("z/e", "z/f", 8080, "UDP"): False,  # to f's primary, IPv6
            Probe("z/e", "z/f", 8080, "TCP"): True,
            Probe("z/f", "z/e", 8080, "UDP"): True,
        }
        started = time.monotonic()
        assert probe(mixed, list(cases), timeout=0.5) == cases
        assert time.monotonic() - started < 5
        assert probe(mixed, [Probe("z/e", "z/f", 8080, "UDP")], family="ipv4") == {
            Probe("z/e", "z/f", 8080, "UDP"): True
        }
    finally:
        subprocess.run(["ip", "netns", "exec", mixed.node_netns, "nft", "delete", "table", "inet", "npatest"])


@kernel
def test_refused_means_broken_lab(mixed):
    with pytest.raises(LabError, match="connection refused"):
        probe(mixed, [Probe("x/a", "x/b", 9, "TCP")])
    with pytest.raises(LabError, match="connection refused"):
        probe(mixed, [Probe("y/c", "y/d", 9, "UDP")])


@kernel
def test_bad_probes(mixed):
    with pytest.raises(LabError, match="SCTP sockets are not supported"):
        probe(mixed, [Probe("x/a", "x/b", 80, "SCTP")])
    with pytest.raises(LabError, match="'x/zz' is not in lab"):
        probe(mixed, [Probe("x/a", "x/zz", 80, "TCP")])
    with pytest.raises(LabError, match="family"):
        probe(mixed, [], family="ipx")
    with pytest.raises(LabError, match="timeout"):
        probe(mixed, [], timeout=0)


@kernel
def test_state_is_persisted(mixed):
    assert load_state("npamix") == mixed
    assert set(mixed.hosts) == {h.key for h in MIXED}
    assert mixed.listening_ports("x/b") == (53, 80, 8080)
    assert all(len(name) <= 15 for name in mixed.node_ifaces.values())


@kernel
def test_up_twice_refuses(mixed):
    with pytest.raises(LabError, match="already exists"):
        up([A], prefix="npamix")


@kernel
def test_down_removes_everything(lab_factory):
    state = lab_factory("npadown", [A, C])
    assert set(lab_netns("npadown")) == {"npadown-node", "npadown-p0", "npadown-p1"}
    assert _servers("npadown") == [state.server_pid]
    down("npadown")
    _assert_gone("npadown")
    assert not Path(f"/proc/{state.server_pid}/cmdline").exists() or not topology._alive(state.server_pid)
    down("npadown")  # idempotent
    with pytest.raises(LabError, match="not up"):
        probe(state, [Probe("x/a", "x/a", 80, "TCP")])


@kernel
def test_lab_outlives_the_process_that_built_it():
    """`lab up` and `lab probe` are separate CLI runs: the server must survive its starter."""
    down("npacli")
    script = (
        "from netpol.lab import LabHost, up; "
        "up([LabHost('x/a', ('198.18.2.1',), ((80, 'TCP'),)),"
        " LabHost('x/b', ('198.18.2.2', '2001:db8:2::2'), ((80, 'UDP'),))], prefix='npacli')"
    )
    try:
        subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
        state = load_state("npacli")
        assert state is not None
        probes = [Probe("x/a", "x/b", 80, "UDP"), Probe("x/b", "x/a", 80, "TCP")]
        assert probe(state, probes) == {p: True for p in probes}
    finally:
        down("npacli")
    _assert_gone("npacli")


@kernel
@pytest.mark.parametrize("fail_at", ["pods", "state"])
def test_down_after_partial_up(monkeypatch, fail_at):
    """A crash mid-`up` (its own cleanup never runs) leaves pieces; `down` finds them by name."""
    prefix = "npapart"
    down(prefix)
    real_down = topology.down
    monkeypatch.setattr(topology, "down", lambda prefix: None)
    if fail_at == "pods":
        real = topology._pod_commands
        monkeypatch.setattr(
            topology, "_pod_commands", lambda h: real(h) + (["bogus"] if h.key == "x/b" else [])
        )
    else:
        monkeypatch.setattr(topology.LabState, "to_json", lambda self: 1 / 0)
    try:
        with pytest.raises((LabError, ZeroDivisionError)):
            up([A, B, C], prefix=prefix)
        assert f"{prefix}-node" in _netns_names()
        assert bool(_servers(prefix)) == (fail_at == "state")
    finally:
        monkeypatch.undo()
        real_down(prefix)
    _assert_gone(prefix)


@kernel
def test_failed_up_cleans_up_after_itself(monkeypatch):
    down("npafail")
    real = topology._pod_commands
    monkeypatch.setattr(topology, "_pod_commands", lambda h: real(h) + ["bogus"])
    try:
        with pytest.raises(LabError, match="ip failed"):
            up([A, B], prefix="npafail")
    finally:
        down("npafail")
    _assert_gone("npafail")


PORTS = ((80, "TCP"), (53, "UDP"))


def _dual(v4: str, v6: str, v6_first: bool) -> tuple[str, str]:
    return (v6, v4) if v6_first else (v4, v6)


@kernel
def test_all_dropped_probe_is_fast(lab_factory):
    """9 pods, all pairs, 2 ports, everything through the node dropped: costs about one timeout."""
    hosts = [
        LabHost(f"t/p{i}", _dual(f"198.18.3.{i + 1}", f"2001:db8:3::{i + 1}", v6_first=bool(i % 2)), PORTS)
        for i in range(9)
    ]
    state = lab_factory("npatime", hosts)
    drop_all = "table inet npatest {\n chain filt { type filter hook forward priority 0; policy drop; }\n}"
    _nft(state.node_netns, drop_all)
    probes = [Probe(s.key, d.key, port, proto) for s in hosts for d in hosts for port, proto in PORTS]
    started = time.monotonic()
    result = probe(state, probes, timeout=1.0)
    elapsed = time.monotonic() - started
    print(f"\n{len(result)} probes, all dropped but self, in {elapsed:.2f}s")
    assert len(result) == 9 * 9 * 2
    assert result == {p: p.src == p.dst for p in result}


@kernel
def test_thirty_pods_up_and_down_quickly(lab_factory):
    hosts = [LabHost(f"s/p{i}", (f"198.18.4.{i + 1}", f"2001:db8:4::{i + 1}"), PORTS) for i in range(30)]
    started = time.monotonic()
    state = lab_factory("npabig", hosts)
    built = time.monotonic() - started
    result = probe(state, [Probe(s.key, d.key, 80, "TCP") for s in hosts for d in hosts])
    probed = time.monotonic() - started - built
    down("npabig")
    removed = time.monotonic() - started - built - probed
    print(f"\nup {built:.2f}s, 900 probes {probed:.2f}s, down {removed:.2f}s")
    assert len(result) == 900 and all(result.values())
    _assert_gone("npabig")

