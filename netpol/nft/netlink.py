"""Set element changes straight over nfnetlink: the fast path of apply.

libnftables fetches a cache of the whole ruleset before every command: at 10k pods that means
thousands of set declarations and the elements of every interval set, about a second per
`add element`. A pod that comes or goes only changes a few elements, so apply sends those as
one nf_tables batch of its own (one transaction: the kernel commits all of it or nothing),
tied to the generation apply last verified (the kernel refuses the batch if anything was
committed since), then reads the touched elements back one by one.

Only the element kinds render produces are encoded here: addresses, protocols and ports, alone
or concatenated, in plain sets and verdict maps, and address ranges in one-field interval sets
(written as nft writes them: a start element and an end element one past the range). Anything
else raises Unsupported and apply takes the libnftables path.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import cast

from netpol.errors import NetlinkError, Unsupported
from netpol.netns import run_in
from netpol.nft.listing import Elem, SetShape

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_CAP_ACK, NETLINK_EXT_ACK = 10, 11
SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP, NLM_F_CREATE = 0x1, 0x4, 0x300, 0x400
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLA_F_NESTED = 0x8000
NFNL_SUBSYS_NFTABLES = 10
BATCH_BEGIN, BATCH_END = 16, 17
NEWSETELEM, GETSETELEM, DELSETELEM, NEWGEN, GETGEN = 12, 13, 14, 15, 16
NFPROTO_INET = 1
INTERVAL_END = 0x1
# attribute numbers (linux/netfilter/nf_tables.h)
LIST_TABLE, LIST_SET, LIST_ELEMENTS = 1, 2, 3
LIST_ELEM = 1
ELEM_KEY, ELEM_DATA, ELEM_FLAGS = 1, 2, 3
DATA_VALUE, DATA_VERDICT = 1, 2
VERDICT_CODE, VERDICT_CHAIN = 1, 2
GEN_ID = 1
BATCH_GENID = 1

_WIDTH = {"ipv4_addr": 4, "ipv6_addr": 16, "inet_proto": 1, "inet_service": 2}
_VERDICTS = {"accept": 1, "drop": 0, "continue": -1, "return": -5, "jump": -3, "goto": -4}
_PER_MESSAGE = 256  # elements per message: a netlink attribute holds at most 64 KiB
_HEADER = struct.Struct("=IHHII")
_ATTR = struct.Struct("=HH")


# ---- encoding ---------------------------------------------------------------

def attr(kind: int, payload: bytes) -> bytes:
    size = _ATTR.size + len(payload)
    return _ATTR.pack(size, kind) + payload + b"\0" * (-size % 4)


def nest(kind: int, *parts: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(parts))


def _string(kind: int, text: str) -> bytes:
    return attr(kind, text.encode() + b"\0")


def u32(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack(">I", value & 0xFFFFFFFF))


def check_shape(shape: SetShape) -> None:
    """Raise Unsupported unless elements of this set can be written here."""
    if any(t not in _WIDTH for t in shape.types) or shape.data not in (None, "verdict"):
        raise Unsupported(f"set {shape.name}: type {' . '.join(shape.types)}")
    if shape.interval and (len(shape.types) > 1 or shape.types[0] not in ("ipv4_addr", "ipv6_addr")):
        raise Unsupported(f"set {shape.name}: interval set of {' . '.join(shape.types)}")


def _value(shape: SetShape, values: Sequence[int]) -> bytes:
    """Key bytes: big-endian fields; in a concatenation each field fills 32-bit registers."""
    out = b""
    for typ, v in zip(shape.types, values, strict=False):
        raw = v.to_bytes(_WIDTH[typ], "big")
        out += raw + b"\0" * (-len(raw) % 4 if len(shape.types) > 1 else 0)
    return out


@dataclass(frozen=True)
class Wire:
    """One kernel element: key bytes, flags, verdict (code, chain)."""

    key: bytes
    flags: int = 0
    verdict: tuple[int, str | None] | None = None

    def encode(self) -> bytes:
        parts = [nest(ELEM_KEY, attr(DATA_VALUE, self.key))]
        if self.flags:
            parts.append(u32(ELEM_FLAGS, self.flags))
        if self.verdict is not None:
            code, chain = self.verdict
            inner = u32(VERDICT_CODE, code) + (_string(VERDICT_CHAIN, chain) if chain else b"")
            parts.append(nest(ELEM_DATA, nest(DATA_VERDICT, inner)))
        return nest(LIST_ELEM, *parts)


def _verdict(text: str) -> tuple[int, str | None]:
    word, _, chain = text.partition(" ")
    if word not in _VERDICTS or bool(chain) != (word in ("jump", "goto")):
        raise Unsupported(f"verdict {text!r}")
    return _VERDICTS[word], chain or None


def wires(shape: SetShape, elem: Elem) -> list[Wire]:
    """The kernel elements of one normalised element (two for an interval: start, end)."""
    check_shape(shape)
    atoms, data = elem
    if len(atoms) != len(shape.types) or not all(isinstance(a, tuple) for a in atoms):
        raise Unsupported(f"set {shape.name}: element {elem!r}")
    verdict = _verdict(data) if shape.data == "verdict" and data is not None else None
    if shape.data is not None and verdict is None:
        raise Unsupported(f"set {shape.name}: element {elem!r} has no verdict")
    spans = cast(tuple[tuple[int, int], ...], atoms)  # every atom is a span: checked above
    if not shape.interval:
        if any(lo != hi for lo, hi in spans):
            raise Unsupported(f"set {shape.name}: a range in a plain set")
        return [Wire(_value(shape, [lo for lo, _ in spans]), 0, verdict)]
    (lo, hi), = spans
    top = (1 << (8 * _WIDTH[shape.types[0]])) - 1
    if hi >= top:  # nft marks ranges open to the top with element user data; leave those to nft
        raise Unsupported(f"set {shape.name}: a range up to the last address")
    return [Wire(_value(shape, [lo])), Wire(_value(shape, [hi + 1]), INTERVAL_END)]


def zero_end(shape: SetShape) -> Wire:
    """The end element at address 0 that nft writes first into an empty interval set."""
    return Wire(_value(shape, [0]), INTERVAL_END)


# ---- decoding ---------------------------------------------------------------

def attrs(data: bytes) -> Iterator[tuple[int, bytes]]:
    i = 0
    while i + _ATTR.size <= len(data):
        size, kind = _ATTR.unpack_from(data, i)
        if size < _ATTR.size:
            return
        yield kind & ~NLA_F_NESTED, data[i + _ATTR.size:i + size]
        i += (size + 3) & ~3


def first_attr(data: bytes, kind: int) -> bytes | None:
    return next((v for k, v in attrs(data) if k == kind), None)


def _decode_elem(data: bytes) -> Wire:
    key = first_attr(first_attr(data, ELEM_KEY) or b"", DATA_VALUE) or b""
    flags = first_attr(data, ELEM_FLAGS)
    verdict = None
    nested = first_attr(first_attr(data, ELEM_DATA) or b"", DATA_VERDICT)
    if nested is not None:
        code = struct.unpack(">i", first_attr(nested, VERDICT_CODE) or b"\0\0\0\0")[0]
        chain = first_attr(nested, VERDICT_CHAIN)
        verdict = (code, chain.rstrip(b"\0").decode() if chain else None)
    return Wire(key, struct.unpack(">I", flags)[0] if flags else 0, verdict)


# ---- the socket -------------------------------------------------------------

@dataclass(frozen=True)
class Change:
    """Kernel elements to delete from and add to one set."""

    name: str
    delete: tuple[Wire, ...]
    add: tuple[Wire, ...]


class Channel:
    """An nfnetlink socket opened inside one network namespace (None: the caller's own)."""

    def __init__(self, netns: str | None = None, timeout: float = 2.0) -> None:
        def open_socket() -> socket.socket:
            return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)

        self._sock = run_in(netns, open_socket)
        self._sock.bind((0, 0))
        for opt in (NETLINK_CAP_ACK, NETLINK_EXT_ACK):
            self._sock.setsockopt(SOL_NETLINK, opt, 1)
        for opt in (SO_SNDBUFFORCE, SO_RCVBUFFORCE):
            try:
                self._sock.setsockopt(socket.SOL_SOCKET, opt, 8 << 20)
            except OSError:
                pass  # not privileged: the default buffers still carry small batches
        self._sock.settimeout(timeout)
        self._seq = itertools.count(int.from_bytes(os.urandom(2), "big") << 8)

    def close(self) -> None:
        self._sock.close()

    def _message(self, kind: int, flags: int, family: int, attrs: bytes, res_id: int = 0) -> tuple[int, bytes]:
        seq = next(self._seq) & 0xFFFFFFFF
        body = struct.pack("=BBH", family, 0, socket.htons(res_id)) + attrs
        return seq, _HEADER.pack(_HEADER.size + len(body), kind, flags, seq, 0) + body

    def _replies(self, want: set[int], watch: set[int] | None = None) -> dict[int, tuple[int, bytes]]:
        """(type, payload) per sequence number, until every wanted one answered. With watch (a
        batch: those sequence numbers may answer too, and only with an error), the first error
        ends the wait. Answers to older requests left in the socket are skipped by number."""
        out: dict[int, tuple[int, bytes]] = {}
        keep = want | (watch or set())
        while not want <= out.keys():
            if watch is not None and any(k == NLMSG_ERROR and _errno(p) for k, p in out.values()):
                break
            try:
                data = self._sock.recv(1 << 20)
            except OSError as e:  # a timeout among them: an answer never came
                raise NetlinkError(errno.ETIMEDOUT, f"nfnetlink: {e}") from None
            i = 0
            while i + _HEADER.size <= len(data):
                size, kind, _, seq, _ = _HEADER.unpack_from(data, i)
                if seq in keep and seq not in out:
                    out[seq] = (kind, data[i + _HEADER.size:i + size])
                i += (size + 3) & ~3
        return out

    def _exchange(self, requests: Sequence[tuple[int, int, int, bytes]]) -> list[tuple[int, bytes]]:
        """Send (type, flags, family, attrs) requests in one write; each one's answer (type, payload)."""
        seqs, parts = [], []
        for kind, flags, family, body in requests:
            seq, msg = self._message(kind, flags, family, body)
            seqs.append(seq)
            parts.append(msg)
        if not seqs:
            return []
        self._sock.send(b"".join(parts))
        replies = self._replies(set(seqs))
        return [replies[s] for s in seqs]

    def ask(self, requests: Sequence[tuple[int, int, int, bytes]]) -> list[int]:
        """Send (type, flags, family, attrs) requests in one write; each one's error code (0: done)."""
        answers = self._exchange([(k, f | NLM_F_REQUEST | NLM_F_ACK, fam, b) for k, f, fam, b in requests])
        return [_errno(payload) if kind == NLMSG_ERROR else 0 for kind, payload in answers]

    def dump(self, kind: int, family: int, body: bytes = b"") -> Iterator[bytes]:
        """The payloads (after the nfgenmsg header) of a dump request's answer, as they arrive."""
        seq, msg = self._message(kind, NLM_F_REQUEST | NLM_F_DUMP, family, body)
        self._sock.send(msg)
        while True:
            try:
                data = self._sock.recv(1 << 20)
            except OSError as e:
                raise NetlinkError(errno.ETIMEDOUT, f"nfnetlink dump: {e}") from None
            i = 0
            while i + _HEADER.size <= len(data):
                size, got, _, got_seq, _ = _HEADER.unpack_from(data, i)
                payload = data[i + _HEADER.size:i + size]
                i += (size + 3) & ~3
                if got_seq != seq:
                    continue
                if got == NLMSG_DONE:
                    return
                _raise_error(got, payload)
                if got != NLMSG_ERROR:
                    yield payload[4:]

    def genid(self) -> int:
        """The ruleset generation: it changes with every transaction committed in this netns."""
        seq, msg = self._message((NFNL_SUBSYS_NFTABLES << 8) | GETGEN, NLM_F_REQUEST, socket.AF_UNSPEC, b"")
        self._sock.send(msg)
        kind, payload = self._replies({seq})[seq]
        _raise_error(kind, payload)
        value = first_attr(payload[4:], GEN_ID)
        if value is None:
            raise NetlinkError(errno.EPROTO, "nfnetlink: no generation in the answer")
        return struct.unpack(">I", value)[0]

    def commit(self, table: str, changes: Iterable[Change], genid: int | None) -> None:
        """Deletions then additions, one batch: the kernel commits all of it or none. With genid,
        the kernel refuses the batch (ERESTART) if the ruleset changed since that generation."""
        changes = list(changes)
        head = u32(BATCH_GENID, genid) if genid is not None else b""
        begin, msg = self._message(BATCH_BEGIN, NLM_F_REQUEST, socket.AF_UNSPEC, head, NFNL_SUBSYS_NFTABLES)
        seqs, parts = [], [msg]
        for verb, pick in ((DELSETELEM, lambda c: c.delete), (NEWSETELEM, lambda c: c.add)):
            flags = NLM_F_REQUEST | NLM_F_ACK | (NLM_F_CREATE if verb == NEWSETELEM else 0)
            for c in changes:
                items = pick(c)
                for i in range(0, len(items), _PER_MESSAGE):
                    elems = b"".join(w.encode() for w in items[i:i + _PER_MESSAGE])
                    attrs = _string(LIST_TABLE, table) + _string(LIST_SET, c.name) + nest(LIST_ELEMENTS, elems)
                    seq, msg = self._message((NFNL_SUBSYS_NFTABLES << 8) | verb, flags, NFPROTO_INET, attrs)
                    seqs.append(seq)
                    parts.append(msg)
        if not seqs:
            return
        end, msg = self._message(BATCH_END, NLM_F_REQUEST, socket.AF_UNSPEC, b"", NFNL_SUBSYS_NFTABLES)
        self._sock.send(b"".join(parts + [msg]))
        # a refused generation or a failed commit is answered on the batch's own messages
        replies = self._replies(set(seqs), watch={begin, end})
        for kind, payload in replies.values():
            _raise_error(kind, payload)

    def get(self, table: str, requests: Sequence[tuple[str, Wire]]) -> list[Wire | None]:
        """Read elements back by key (an interval set answers with the range holding the key)."""
        asks = []
        for name, wire in requests:
            elem = nest(LIST_ELEM, nest(ELEM_KEY, attr(DATA_VALUE, wire.key)),
                         *([u32(ELEM_FLAGS, wire.flags)] if wire.flags else []))
            attrs = _string(LIST_TABLE, table) + _string(LIST_SET, name) + nest(LIST_ELEMENTS, elem)
            asks.append(((NFNL_SUBSYS_NFTABLES << 8) | GETSETELEM, NLM_F_REQUEST, NFPROTO_INET, attrs))
        out: list[Wire | None] = []
        for kind, payload in self._exchange(asks):
            if kind == NLMSG_ERROR and _errno(payload) == errno.ENOENT:
                out.append(None)
                continue
            _raise_error(kind, payload)
            listed = first_attr(payload[4:], LIST_ELEMENTS)
            found = first_attr(listed or b"", LIST_ELEM)
            out.append(_decode_elem(found) if found is not None else None)
        return out


def _errno(payload: bytes) -> int:
    return -struct.unpack_from("=i", payload)[0] if len(payload) >= 4 else errno.EPROTO


def _raise_error(kind: int, payload: bytes) -> None:
    if kind == NLMSG_ERROR:
        code = _errno(payload)
        if code:
            raise NetlinkError(code, f"nfnetlink: {errno.errorcode.get(code, code)}")
