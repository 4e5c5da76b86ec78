"""Real connections between lab pods, all at once, to see what the kernel lets through.

Client sockets are opened by a thread inside each source pod's netns (a socket keeps the netns it
was created in) and bound to that pod's address; the calling thread then drives them all with one
selector under a single deadline, so a probe run costs about one timeout however many are dropped.

A probe on the node path is sent from the node netns instead, by a transparent socket bound to the
pod's address: its packets take LOCAL_OUT -> POSTROUTING with the pod's source, the path kube-proxy's
IPVS mode re-sends Service traffic on (this kernel has no IPVS). `lab/services.py` routes the replies
back to such sockets.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import resource
import selectors
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from netpol.errors import LabError, NetnsError
from netpol.lab.topology import LabState, require_root
from netpol.netns import run_in

FAMILIES = {"ipv4": 4, "ipv6": 6}
_UDP_SENDS = 3  # datagrams per UDP probe, spread over the timeout, in case one is lost


POD_PATH, NODE_PATH = "pod", "node"
NODE_PATH_MARK = 0x100  # socket mark of node-path probes (lab/services.py keys its reply routing on it)
_IP_TRANSPARENT = {4: (socket.IPPROTO_IP, 19), 6: (socket.IPPROTO_IPV6, 75)}  # IP(V6)_TRANSPARENT


@dataclass(frozen=True)
class Probe:
    src: str  # LabHost keys
    dst: str  # the pod expected to answer (a Service's backend, with via)
    port: int  # the port connected to (a Service port, with via)
    protocol: str = "TCP"
    via: str | None = None  # an address to connect to instead of dst's (a Service address)
    path: str = POD_PATH


@dataclass
class _Attempt:
    probe: Probe
    src_ip: str
    dst_ip: str
    sock: socket.socket | None = None
    token: bytes = field(default_factory=lambda: os.urandom(12))
    result: bool | None = None
    refused: bool = False

    @property
    def udp(self) -> bool:
        return self.probe.protocol.upper() == "UDP"


def _version(ip: str) -> int:
    return ipaddress.ip_address(ip).version


def _first(ips: Sequence[str], version: int) -> str | None:
    return next((ip for ip in ips if _version(ip) == version), None)


def _check(state: LabState, p: Probe) -> None:
    for key in (p.src, p.dst):
        if key not in state.hosts:
            raise LabError(f"probe {_label(p)}: pod {key!r} is not in lab {state.prefix!r}")
    proto = p.protocol.upper()
    if proto == "SCTP":
        raise LabError(f"probe {_label(p)}: SCTP sockets are not supported by this kernel")
    if proto not in ("TCP", "UDP"):
        raise LabError(f"probe {_label(p)}: protocol {p.protocol!r} is not TCP, UDP or SCTP")
    if not isinstance(p.port, int) or not 1 <= p.port <= 65535:
        raise LabError(f"probe {_label(p)}: port {p.port!r} is not a number in 1-65535")
    if p.path not in (POD_PATH, NODE_PATH):
        raise LabError(f"probe {_label(p)}: path {p.path!r} is not {POD_PATH} or {NODE_PATH}")


def _plan(state: LabState, probes: Sequence[Probe], family: str | None) -> list[_Attempt]:
    """One attempt per distinct probe; pairs with no common address family are left out."""
    if family is not None and family not in FAMILIES:
        raise LabError(f"family {family!r} is not one of {', '.join(FAMILIES)}")
    attempts = []
    for p in dict.fromkeys(probes):
        _check(state, p)
        dst_ips = (p.via,) if p.via else state.ips[p.dst]
        version = FAMILIES[family] if family else _version(dst_ips[0])
        src_ip, dst_ip = _first(state.ips[p.src], version), _first(dst_ips, version)
        if src_ip and dst_ip:
            attempts.append(_Attempt(p, src_ip, dst_ip))
    return attempts


def _label(p: Probe) -> str:
    via = f" via {p.via}" if p.via else ""
    return f"{p.src} -> {p.dst}{via} {p.port}/{p.protocol}" + (f" ({p.path} path)" if p.path != POD_PATH else "")


def _client(a: _Attempt) -> socket.socket:
    version = _version(a.src_ip)
    sock = socket.socket(socket.AF_INET6 if version == 6 else socket.AF_INET,
                         socket.SOCK_DGRAM if a.udp else socket.SOCK_STREAM)
    sock.setblocking(False)
    if a.probe.path == NODE_PATH:  # the node sends with the pod's address
        sock.setsockopt(*_IP_TRANSPARENT[version], 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, NODE_PATH_MARK)
    if not a.udp:  # close with a reset: no TIME_WAIT left behind by thousands of probes
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.bind((a.src_ip, 0))
    return sock


def _open(state: LabState, attempts: list[_Attempt]) -> None:
    by_src: dict[str, list[_Attempt]] = {}
    for a in attempts:
        by_src.setdefault(a.probe.src if a.probe.path == POD_PATH else state.node_netns, []).append(a)
    for src, group in by_src.items():

        def body(group: list[_Attempt] = group) -> None:
            for a in group:
                a.sock = _client(a)

        try:
            run_in(state.hosts.get(src, src), body)
        except NetnsError as exc:
            raise LabError(f"lab {state.prefix!r} is not up ({exc}); run `netpol lab up`") from None
        except OSError as exc:
            raise LabError(f"cannot open a probe socket in pod {src}: {exc}") from None


def _fail(a: _Attempt, err: int) -> None:
    # A refusal means nothing listens there: the lab server is gone (or a rule rejects with a reset).
    # Unreachable/permission errors are how rejecting rules show up: blocked, not broken.
    a.refused = err == errno.ECONNREFUSED
    a.result = False


def _start(a: _Attempt, sel: selectors.BaseSelector) -> None:
    assert a.sock is not None
    addr = (a.dst_ip, a.probe.port)
    if a.udp:
        try:
            a.sock.connect(addr)
            a.sock.send(a.token)
        except OSError as exc:
            return _fail(a, exc.errno or 0)
        sel.register(a.sock, selectors.EVENT_READ, a)
        return
    err = a.sock.connect_ex(addr)
    if err == 0:
        a.result = True
    elif err == errno.EINPROGRESS:
        sel.register(a.sock, selectors.EVENT_WRITE, a)
    else:
        _fail(a, err)


def _ready(a: _Attempt) -> None:
    assert a.sock is not None
    if not a.udp:
        err = a.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err == 0:
            a.result = True
        else:
            _fail(a, err)
        return
    try:
        while a.result is None:
            if a.sock.recv(65535) == a.token:
                a.result = True
    except BlockingIOError:
        pass
    except OSError as exc:
        _fail(a, exc.errno or 0)


def _resend(pending: list[_Attempt]) -> None:
    for a in pending:
        if a.udp and a.result is None and a.sock is not None:
            try:
                a.sock.send(a.token)
            except OSError:
                pass  # a dropped send shows as a timeout


def _drive(attempts: list[_Attempt], timeout: float) -> None:
    with selectors.DefaultSelector() as sel:
        start = time.monotonic()
        deadline = start + timeout
        for a in attempts:
            _start(a, sel)
        pending = [a for a in attempts if a.result is None]
        sends = 1
        while pending and (now := time.monotonic()) < deadline:
            next_send = start + timeout * sends / _UDP_SENDS
            if now >= next_send:
                _resend(pending)
                sends += 1
                continue
            for key, _ in sel.select(min(deadline, next_send) - now):
                _ready(key.data)
                if key.data.result is not None:
                    sel.unregister(key.fileobj)
            pending = [a for a in pending if a.result is None]
    for a in pending:
        a.result = False


def _batch_size() -> int:
    """Every probe holds a socket until the deadline, so stay well inside the fd limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return max(64, soft // 2)


def probe(
    state: LabState, probes: Sequence[Probe], timeout: float = 1.0, family: str | None = None
) -> dict[Probe, bool]:
    """Connect for real; True = TCP connected / UDP echoed within timeout, False = no answer.

    family None targets the destination's primary IP; "ipv4"/"ipv6" its first address of that
    family. Probes whose source has no address of the family (or destination, with a family)
    are left out of the result. Raises LabError when the lab answers with a refusal (broken lab).
    """
    require_root()
    if not timeout > 0:
        raise LabError(f"probe timeout must be positive, got {timeout!r}")
    attempts = _plan(state, probes, family)
    size = _batch_size()
    for i in range(0, len(attempts), size):
        batch = attempts[i : i + size]
        try:
            _open(state, batch)
            _drive(batch, timeout)
        finally:
            for a in batch:
                if a.sock is not None:
                    a.sock.close()
    refused = [a.probe for a in attempts if a.refused]
    if refused:
        shown = "; ".join(_label(p) for p in refused[:5]) + (" ..." if len(refused) > 5 else "")
        raise LabError(
            f"lab {state.prefix!r} is broken: connection refused for {len(refused)} probe(s) ({shown}); "
            "no lab server listens there (or a rule rejects with a reset); recreate the lab "
            "with `netpol lab down` and `netpol lab up`, including these ports"
        )
    return {a.probe: bool(a.result) for a in attempts}
