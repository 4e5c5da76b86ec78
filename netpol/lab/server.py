"""The lab's pod servers: one detached process answering for every pod netns of a lab.

Run as `python -m netpol.lab.server --prefix P` with a JSON config on stdin:
`{"<netns>": {"ips": [...], "ports": [80, ...]}, ...}`. Sockets are opened by threads that enter
each netns, so they live there while this process stays in its own. Every port gets a TCP listener
(accept, then close) and a UDP socket (echo), bound per pod address so replies leave from the
address the probe targeted. Once all are bound the process forks, the child serves forever and the
parent prints `ready <child pid>` and exits: the caller gets a synchronous start and no child to reap.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import selectors
import socket
import sys

from netpol.errors import NetnsError
from netpol.netns import run_in


def _bind(ip: str, port: int, kind: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((ip, port))
        if kind == socket.SOCK_STREAM:
            sock.listen(512)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        proto = "TCP" if kind == socket.SOCK_STREAM else "UDP"
        raise OSError(f"cannot listen on {ip} port {port}/{proto}: {exc.strerror or exc}") from None
    return sock


def open_sockets(netns: str, ips: list[str], ports: list[int]) -> list[socket.socket]:
    def body() -> list[socket.socket]:
        return [
            _bind(ip, port, kind)
            for ip in ips
            for port in ports
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM)
        ]

    try:
        return run_in(netns, body)
    except (OSError, NetnsError) as exc:
        raise OSError(f"netns {netns}: {exc}") from None


def _on_tcp(sock: socket.socket) -> None:
    while True:
        try:
            conn, _ = sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # e.g. out of fds or the peer already gone: the prober times out, no crash
        conn.close()


def _on_udp(sock: socket.socket) -> None:
    while True:
        try:
            data, peer = sock.recvfrom(65535)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # ICMP errors from earlier replies surface here; ignore them
        try:
            sock.sendto(data, peer)
        except OSError:
            pass  # a rule may drop our reply on output; the prober sees a timeout


def serve(sockets: list[socket.socket]) -> None:
    sel = selectors.DefaultSelector()
    for sock in sockets:
        handler = _on_tcp if sock.type == socket.SOCK_STREAM else _on_udp
        sel.register(sock, selectors.EVENT_READ, handler)
    while True:
        for key, _ in sel.select():
            key.data(key.fileobj)


def _raise_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _detach() -> None:
    """Drop the caller's pipes so it sees EOF once the parent half has reported."""
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m netpol.lab.server")
    parser.add_argument("--prefix", required=True, help="lab prefix (lets `down` find this process)")
    parser.parse_args(argv)
    try:
        config = json.load(sys.stdin)
        _raise_fd_limit()
        sockets = [s for ns, spec in config.items() for s in open_sockets(ns, spec["ips"], spec["ports"])]
    except (OSError, NetnsError, ValueError, KeyError, TypeError, AttributeError) as exc:
        print(f"error: {exc}", flush=True)
        return 1
    pid = os.fork()
    if pid == 0:
        _detach()
        serve(sockets)
        return 0
    print(f"ready {pid}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
