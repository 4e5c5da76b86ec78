"""Connection tracking over ctnetlink, in one network namespace: list flows, set mark bits, flush.

A flow's original tuple is what its first packet carried (client -> Service or pod address); its reply
tuple is what the answers carry, so the reply's source is the address and port the connection really
reached after DNAT: the backend pod and its target port, which is what policies decide on.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from netpol.k8s.model import IPAddress
from netpol.nft.netlink import Channel, attr, attrs, first_attr, nest

SUBSYS = 1 << 8  # NFNL_SUBSYS_CTNETLINK
CT_NEW, CT_GET, CT_DELETE = SUBSYS | 0, SUBSYS | 1, SUBSYS | 2
# attribute numbers (linux/netfilter/nfnetlink_conntrack.h)
TUPLE_ORIG, TUPLE_REPLY, PROTOINFO, MARK, MARK_MASK = 1, 2, 4, 8, 21
PROTOINFO_TCP, PROTOINFO_TCP_STATE = 1, 1
# TCP states in which a connection can still carry data (not LAST_ACK, TIME_WAIT, CLOSE)
LIVE_TCP = {1: "SYN_SENT", 2: "SYN_RECV", 3: "ESTABLISHED", 4: "FIN_WAIT", 5: "CLOSE_WAIT", 9: "SYN_SENT2"}
TUPLE_IP, TUPLE_PROTO = 1, 2
IP_ADDRS: dict[int, tuple[int, int]] = {socket.AF_INET: (1, 2), socket.AF_INET6: (3, 4)}  # (source, dest.)
PROTO_NUM, PROTO_SRC_PORT, PROTO_DST_PORT = 1, 2, 3
PROTOCOLS = {6: "TCP", 17: "UDP", 132: "SCTP"}  # flows with ports; ICMP and the rest are left alone
FAMILIES = (socket.AF_INET, socket.AF_INET6)


@dataclass(frozen=True)
class Tuple:
    src: IPAddress
    dst: IPAddress
    proto: int
    sport: int
    dport: int

    def encode(self, kind: int) -> bytes:
        family = socket.AF_INET if self.src.version == 4 else socket.AF_INET6
        s, d = IP_ADDRS[family]
        ip = nest(TUPLE_IP, attr(s, self.src.packed), attr(d, self.dst.packed))
        proto = nest(TUPLE_PROTO, attr(PROTO_NUM, bytes([self.proto])),
                     attr(PROTO_SRC_PORT, struct.pack(">H", self.sport)),
                     attr(PROTO_DST_PORT, struct.pack(">H", self.dport)))
        return nest(kind, ip, proto)


@dataclass(frozen=True)
class Flow:
    original: Tuple
    reply: Tuple
    mark: int
    tcp_state: int | None = None  # None for UDP and SCTP

    @property
    def live(self) -> bool:
        """Whether it can still carry data (a closed TCP connection is left alone)."""
        return self.tcp_state is None or self.tcp_state in LIVE_TCP

    @property
    def client(self) -> IPAddress:
        return self.original.src

    @property
    def server(self) -> IPAddress:
        """Where the connection really goes: the reply's source (after DNAT)."""
        return self.reply.src

    @property
    def port(self) -> int:
        return self.reply.sport

    @property
    def protocol(self) -> str:
        return PROTOCOLS[self.original.proto]

    @property
    def family(self) -> int:
        return socket.AF_INET if self.client.version == 4 else socket.AF_INET6

    def __str__(self) -> str:
        via = f" (to {self.original.dst}:{self.original.dport})" if self.original.dst != self.server else ""
        return f"{self.protocol} {self.client}:{self.original.sport} -> {self.server}:{self.port}{via}"


def _tuple(data: bytes, family: int) -> Tuple | None:
    ip, proto = first_attr(data, TUPLE_IP) or b"", first_attr(data, TUPLE_PROTO) or b""
    s, d = IP_ADDRS[family]
    src, dst, num = first_attr(ip, s), first_attr(ip, d), first_attr(proto, PROTO_NUM)
    sport, dport = first_attr(proto, PROTO_SRC_PORT), first_attr(proto, PROTO_DST_PORT)
    if src is None or dst is None or num is None or num[0] not in PROTOCOLS or sport is None or dport is None:
        return None
    return Tuple(ipaddress.ip_address(src), ipaddress.ip_address(dst), num[0], struct.unpack(">H", sport[:2])[0],
                 struct.unpack(">H", dport[:2])[0])


def _flow(payload: bytes, family: int) -> Flow | None:
    found = dict(attrs(payload))
    orig = _tuple(found.get(TUPLE_ORIG, b""), family)
    reply = _tuple(found.get(TUPLE_REPLY, b""), family)
    if orig is None or reply is None:
        return None
    mark = found.get(MARK)
    tcp = first_attr(first_attr(found.get(PROTOINFO, b""), PROTOINFO_TCP) or b"", PROTOINFO_TCP_STATE)
    return Flow(orig, reply, struct.unpack(">I", mark)[0] if mark else 0, tcp[0] if tcp else None)


class Conntrack:
    """The conntrack table of one network namespace (None: the caller's own)."""

    def __init__(self, netns: str | None = None) -> None:
        self._channel = Channel(netns, timeout=5.0)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Conntrack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def flows(self) -> Iterator[Flow]:
        """Every TCP, UDP and SCTP flow, IPv4 then IPv6, streamed as the kernel sends them."""
        for family in FAMILIES:
            for payload in self._channel.dump(CT_GET, family):
                flow = _flow(payload, family)
                if flow is not None:
                    yield flow

    def set_mark(self, flows: Iterable[Flow], bits: int) -> int:
        """Set mark bits on these flows, leaving the other bits alone; how many were still there."""
        mark = attr(MARK, struct.pack(">I", bits)) + attr(MARK_MASK, struct.pack(">I", bits))
        requests = [(CT_NEW, 0, f.family, f.original.encode(TUPLE_ORIG) + mark) for f in flows]
        done = 0
        for i in range(0, len(requests), 512):
            done += sum(code == 0 for code in self._channel.ask(requests[i:i + 512]))
        return done

    def flush(self) -> None:
        """Forget every flow (a delete without a tuple)."""
        for code in self._channel.ask([(CT_DELETE, 0, socket.AF_UNSPEC, b"")]):
            if code and code != 2:  # ENOENT: nothing to flush
                raise OSError(code, "conntrack flush")
