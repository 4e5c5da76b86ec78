"""The agent is not ready while bridged pod traffic bypasses netfilter (bridge-nf-call-* at 0).

Namespaces here are named `npbr<pid>x<n>` and removed even when a test fails."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from support.kernel import netns_maker, sh

from netpol.agent.bridge import SYSCTLS, bypassing
from netpol.agent.run import Agent, AgentConfig
from netpol.netns import run_in

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")]


@pytest.fixture
def node():
    yield from netns_maker("npbr")


def _set(ns: str, value: str) -> None:
    def write() -> None:
        for key in SYSCTLS.values():
            Path("/proc/sys", key).write_text(value)
    run_in(ns, write)


def test_bridge_ports_with_sysctls_off_bypass_and_on_do_not(node):
    ns = node()
    assert bypassing(ns) == []  # no bridge: nothing to bypass whatever the sysctls say
    sh("ip", "-n", ns, "link", "add", "br0", "type", "bridge")
    sh("ip", "-n", ns, "link", "add", "pv0", "type", "veth", "peer", "name", "pv1")
    sh("ip", "-n", ns, "link", "set", "pv0", "master", "br0")
    _set(ns, "0")
    assert bypassing(ns) == ["ipv4", "ipv6"]
    _set(ns, "1")
    assert bypassing(ns) == []


def test_agent_readiness_follows_the_bridge_sysctls(node):
    ns = node()
    sh("ip", "-n", ns, "link", "add", "br0", "type", "bridge")
    sh("ip", "-n", ns, "link", "add", "pv0", "type", "veth", "peer", "name", "pv1")
    sh("ip", "-n", ns, "link", "set", "pv0", "master", "br0")
    _set(ns, "0")
    agent = Agent(AgentConfig(table="t", netns=ns))

    class Synced:
        ready = threading.Event()
    Synced.ready.set()
    agent.reconciler = Synced()  # type: ignore[assignment]  (the first full sync is done)
    assert not agent.ready()
    assert 'netpol_agent_bridge_bypass{family="ipv4"} 1.0' in agent.metrics.expose().decode()
    _set(ns, "1")
    agent._bridge_checked = None  # the next readiness probe reads the sysctls again
    assert agent.ready()
    assert 'netpol_agent_bridge_bypass{family="ipv6"} 0.0' in agent.metrics.expose().decode()
