"""Long-lived connections in lab pods: an echo service in a server pod, and clients that keep their
connection open across policy changes, to see whether it still carries data both ways."""

from __future__ import annotations

import os
import socket
import threading
import time

from netpol.lab.topology import LabState
from netpol.netns import run_in


class Echo:
    """TCP and UDP echo in the server pod; keeps the accepted connections to talk back on them."""

    def __init__(self, netns: str, ip: str, tcp_port: int, udp_port: int) -> None:
        def open_sockets() -> tuple[socket.socket, socket.socket]:
            t = socket.socket()
            t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            t.bind((ip, tcp_port))
            t.listen(64)
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.bind((ip, udp_port))
            return t, u
        self.tcp, self.udp = run_in(netns, open_sockets)
        self.accepted: list[socket.socket] = []
        self.stop = False
        for target in (self._accept, self._udp):
            threading.Thread(target=target, daemon=True).start()

    def _accept(self) -> None:
        self.tcp.settimeout(0.2)
        while not self.stop:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                continue
            self.accepted.append(conn)
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        while not self.stop:
            try:
                data = conn.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            try:
                conn.sendall(data)
            except OSError:
                return

    def _udp(self) -> None:
        self.udp.settimeout(0.2)
        while not self.stop:
            try:
                data, peer = self.udp.recvfrom(4096)
                self.udp.sendto(data, peer)
            except OSError:
                continue

    def close(self) -> None:
        self.stop = True
        for s in (self.tcp, self.udp, *self.accepted):
            s.close()


class Conn:
    """A client's connection, opened inside its pod."""

    def __init__(self, state: LabState, src: str, src_ip: str, dst_ip: str, port: int, udp: bool = False) -> None:
        self.src, self.udp = src, udp
        kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM

        def open_socket() -> socket.socket:
            s = socket.socket(socket.AF_INET, kind)
            s.bind((src_ip, 0))
            s.settimeout(2.0)
            s.connect((dst_ip, port))
            return s
        self.sock = run_in(state.hosts[src], open_socket)
        self.port = self.sock.getsockname()[1]

    def echoes(self, timeout: float = 1.0) -> bool:
        token = os.urandom(8)
        self.sock.settimeout(timeout)
        try:
            self.sock.send(token)
            got = b""
            deadline = time.monotonic() + timeout
            while token not in got and time.monotonic() < deadline:
                got += self.sock.recv(4096)
            return token in got
        except OSError:
            return False
