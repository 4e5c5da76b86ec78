"""Established connections the policies stop allowing are cut, with real long-lived connections.

A lab (prefix `nprv<random>`, removed even when a test fails) holds two clients and a server; the
server pod runs an echo service of its own on TCP 7000 and UDP 7001 (ports the lab server leaves
free). Connections stay open across policy changes; after each change and revocation, a connection
must carry data in both directions exactly when `decide` allows it now.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.builders import cluster, namespace, pod, policy, service
from support.flows import Conn, Echo

from netpol.evaluate.decide import decide
from netpol.evaluate.resolve import endpoint
from netpol.k8s.model import Cluster, Options
from netpol.lab import LabHost, topology
from netpol.lab import services as lab_services
from netpol.lab.topology import LabState
from netpol.nft.apply import Enforcer
from netpol.nft.conntrack import Conntrack
from netpol.nft.plan import compile_plan
from netpol.nft.render import REVOKE_MARK, render
from netpol.nft.revoke import revoke

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces and nftables")]
TCP_PORT, UDP_PORT = 7000, 7001
IPS = {"front/client-0": "198.18.1.10", "front/client-1": "198.18.1.11", "back/api-0": "198.18.2.10"}
VIP = "198.18.100.10"


def world(allowed: tuple[str, ...], extra: tuple[dict, ...] = ()) -> Cluster:
    """back/api-0 admits TCP 7000 and UDP 7001 from the clients named in `allowed` (by label)."""
    peers = [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"name": n}}} for n in allowed]
    return cluster(namespace("front"), namespace("back"),
                   *[pod(k.split("/")[0], k.split("/")[1], {"name": k.split("/")[1]}, (ip,)) for k, ip in IPS.items()],
                   policy("back", "api", {"podSelector": {}, "ingress": [
                       {"from": peers, "ports": [{"port": TCP_PORT}, {"port": UDP_PORT, "protocol": "UDP"}]}]
                       if peers else []}),
                   service("back", "api", [{"name": "echo", "port": 80, "targetPort": TCP_PORT}],
                           {"name": "api-0"}, VIP), *extra)


def connect(state: LabState, src: str, dst: str = IPS["back/api-0"], port: int | None = None,
            udp: bool = False) -> Conn:
    return Conn(state, src, IPS[src], dst, port or (UDP_PORT if udp else TCP_PORT), udp)


@pytest.fixture
def lab() -> Iterator[tuple[LabState, Echo]]:
    prefix = f"nprv{uuid.uuid4().hex[:5]}"
    state = topology.up([LabHost(k, (ip,)) for k, ip in IPS.items()], prefix)
    echo = None
    try:
        echo = Echo(state.hosts["back/api-0"], IPS["back/api-0"], TCP_PORT, UDP_PORT)
        yield state, echo
    finally:
        if echo is not None:
            echo.close()
        topology.down(prefix)


def enforce(state: LabState, c: Cluster, dry_run: bool = False) -> list:
    if not dry_run:
        Enforcer(state.node_netns).apply(render(compile_plan(c, None, Options())))
    return revoke(state.node_netns, c, None, Options(), dry_run=dry_run)


def test_a_tightening_cuts_denied_connections_both_ways_and_keeps_the_rest(lab):
    state, echo = lab
    loose = world(("client-0", "client-1"))
    assert enforce(state, loose) == []
    c0, c1 = connect(state, "front/client-0"), connect(state, "front/client-1")
    u0 = connect(state, "front/client-0", udp=True)
    assert c0.echoes() and c1.echoes() and u0.echoes()

    tight = world(("client-1",))
    preview = enforce(state, tight, dry_run=True)  # nothing applied yet: the preview names what will go
    assert {(c.verdict.src, c.flow.protocol) for c in preview} == {("front/client-0", "TCP"), ("front/client-0", "UDP")}
    assert "back/api" in preview[0].reason and c0.echoes()

    cut = enforce(state, tight)
    assert {(str(c.flow.client), c.flow.original.sport, c.flow.protocol) for c in cut} == {
        ("198.18.1.10", c0.port, "TCP"), ("198.18.1.10", u0.port, "UDP")}
    assert not c0.echoes() and not u0.echoes() and c1.echoes()
    server_side = [s for s in echo.accepted if s.getpeername()[1] == c0.port]
    server_side[0].send(b"from the server")  # the reverse direction is cut too
    c0.sock.settimeout(1.0)
    with pytest.raises(OSError):
        c0.sock.recv(100)

    assert enforce(state, loose) == []  # loosening cuts nothing ...
    assert not c0.echoes()  # ... and a revoked flow never comes back,
    assert connect(state, "front/client-0").echoes()  # while a new one is judged anew
    with Conntrack(state.node_netns) as ct:
        marked = [f for f in ct.flows() if f.mark & REVOKE_MARK]
    assert {f.original.sport for f in marked} == {c0.port, u0.port}
    assert {(f.protocol, f.tcp_state) for f in marked} == {("TCP", 3), ("UDP", None)}  # 3: ESTABLISHED


def test_connections_through_a_service_are_judged_after_dnat(lab):
    state, _ = lab
    loose = world(("client-0", "client-1"))
    enforce(state, loose)
    lab_services.prepare(state, [lab_services.rounds(loose, set(IPS))[0][0].address])
    lab_services.install(state, lab_services.rounds(loose, set(IPS))[0])
    via = connect(state, "front/client-0", VIP, 80)
    assert via.echoes()
    cut = enforce(state, world(("client-1",)))
    assert [(str(c.flow.original.dst), str(c.flow.server), c.flow.port) for c in cut] == [
        (VIP, IPS["back/api-0"], TCP_PORT)]
    assert not via.echoes()


CLIENTS = ("client-0", "client-1")


@settings(max_examples=int(os.environ.get("NETPOL_LAB_EXAMPLES", "6")), deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(changes=st.lists(st.sets(st.sampled_from(CLIENTS)), min_size=1, max_size=4))
def test_after_random_changes_an_open_connection_lives_iff_it_was_never_denied(lab, changes):
    """A connection lives while every policy since it opened allowed it; `decide` says which."""
    state, _ = lab
    enforce(state, world(CLIENTS))
    conns = {n: connect(state, f"front/{n}") for n in CLIENTS}
    alive = dict.fromkeys(CLIENTS, True)
    for allowed in changes:
        c = world(tuple(sorted(allowed)))
        enforce(state, c)
        for n, conn in conns.items():
            now = decide(c, endpoint(c, f"front/{n}"), endpoint(c, "back/api-0"), TCP_PORT).allowed
            alive[n] = alive[n] and now
            assert conn.echoes(0.5 if not alive[n] else 1.0) == alive[n], (n, allowed, changes)
    for conn in conns.values():
        conn.sock.close()


def test_enforce_previews_then_cuts_from_the_command_line(lab, tmp_path):
    import json as json_module

    from typer.testing import CliRunner

    from netpol.cli import app
    state, _ = lab

    def write(c_objects: list[dict], name: str) -> str:
        path = tmp_path / name
        path.write_text("\n---\n".join(json_module.dumps(o) for o in c_objects))
        return str(path)

    def objects(allowed: tuple[str, ...]) -> list[dict]:
        peers = [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"name": n}}} for n in allowed]
        return [namespace("front"), namespace("back"),
                *[pod(k.split("/")[0], k.split("/")[1], {"name": k.split("/")[1]}, (ip,)) for k, ip in IPS.items()],
                policy("back", "api", {"podSelector": {}, "ingress": [{"from": peers, "ports": [{"port": TCP_PORT}]}]})]

    run = CliRunner().invoke
    loose, tight = write(objects(("client-0", "client-1")), "loose.yaml"), write(objects(("client-1",)), "tight.yaml")
    assert run(app, ["enforce", "-f", loose, "--netns", state.node_netns]).exit_code == 0
    c0 = connect(state, "front/client-0")
    assert c0.echoes()
    preview = json_module.loads(run(app, ["enforce", "-f", tight, "--netns", state.node_netns, "--dry-run",
                                          "-o", "json"]).output)
    assert [(x["src"], x["dst"], x["port"]) for x in preview["would_cut"]] == [("front/client-0", "back/api-0", TCP_PORT)]
    assert c0.echoes()  # a preview changes nothing
    kept = run(app, ["enforce", "-f", tight, "--netns", state.node_netns, "--established", "keep"])
    assert "cut 0 established connections" in kept.output and c0.echoes()
    done = run(app, ["enforce", "-f", tight, "--netns", state.node_netns])
    assert "cut 1 established connection:" in done.output and "front/client-0 -> back/api-0" in done.output
    assert not c0.echoes()
