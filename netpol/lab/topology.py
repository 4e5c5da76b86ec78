"""The lab's network: one netns per pod, routed through one node netns, like a routed CNI.

Each pod gets a point-to-point veth (`eth0` inside the pod, `<prefix>v<i>` on the node) holding its
IPs as /32 and /128; the node routes each pod address to that pod's veth and forwards between them,
so every pod-to-pod packet crosses the node netns, where the enforcer loads its table. Pods'
default routes point at a reserved gateway address that every node-side veth carries:
RESERVED_GATEWAYS, which pod IPs may not use.

Everything is named `<prefix>-node`, `<prefix>-p<i>` (netns), so `down` can find and remove a lab
from names alone, even one a crash left half built.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from netpol.errors import LabError, NetnsError
from netpol.netns import NETNS_RUN_DIR, run_in

STATE_DIR = Path("/run/netpol")
GATEWAY_V4 = "198.19.255.254"
GATEWAY_V6 = "2001:db8:ffff::fffe"
RESERVED_GATEWAYS = frozenset({GATEWAY_V4, GATEWAY_V6})
# The only addresses the lab ever puts on an interface (benchmarking and documentation ranges).
LAB_NETWORKS = (ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("2001:db8::/32"))
PROTOCOLS = ("TCP", "UDP", "SCTP")
_PREFIX_RE = re.compile(r"[a-z][a-z0-9]{0,9}")  # + "v9999" stays within IFNAMSIZ (15)
_MAX_HOSTS = 9999
_SERVER_MODULE = "netpol.lab.server"
_SERVER_START_TIMEOUT = 30.0


@dataclass(frozen=True)
class LabHost:
    key: str  # "ns/pod"
    ips: tuple[str, ...]  # first is primary (status.podIP)
    ports: tuple[tuple[int, str], ...] = ()  # (port, "TCP"|"UDP"|"SCTP") the pod serves


@dataclass(frozen=True)
class LabState:
    """What `up` built; persisted as JSON so later CLI runs can probe and tear down."""

    prefix: str
    node_netns: str
    hosts: dict[str, str]  # key -> pod netns
    ips: dict[str, tuple[str, ...]]  # key -> pod IPs, primary first
    ports: dict[str, tuple[tuple[int, str], ...]]  # key -> declared ports
    extra_ports: tuple[tuple[int, str], ...]
    node_ifaces: dict[str, str]  # key -> node-side veth name
    server_pid: int

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> LabState:
        raw = json.loads(text)
        return cls(
            prefix=raw["prefix"],
            node_netns=raw["node_netns"],
            hosts=dict(raw["hosts"]),
            ips={k: tuple(v) for k, v in raw["ips"].items()},
            ports={k: tuple((int(p), str(pr)) for p, pr in v) for k, v in raw["ports"].items()},
            extra_ports=tuple((int(p), str(pr)) for p, pr in raw["extra_ports"]),
            node_ifaces=dict(raw["node_ifaces"]),
            server_pid=int(raw["server_pid"]),
        )

    def listening_ports(self, key: str) -> tuple[int, ...]:
        """Port numbers the lab server answers on for this pod (TCP and UDP alike)."""
        return tuple(sorted({p for p, _ in self.ports[key]} | {p for p, _ in self.extra_ports}))


# ---------------------------------------------------------------- names and checks


def node_netns_name(prefix: str) -> str:
    return f"{prefix}-node"


def pod_netns_name(prefix: str, index: int) -> str:
    return f"{prefix}-p{index}"


def state_path(prefix: str) -> Path:
    return STATE_DIR / f"lab-{prefix}.json"


def _log_path(prefix: str) -> Path:
    return STATE_DIR / f"lab-{prefix}-server.log"


def check_prefix(prefix: str) -> None:
    if not _PREFIX_RE.fullmatch(prefix):
        raise LabError(
            f"invalid lab prefix {prefix!r}: use 1-10 lowercase letters and digits, starting with a letter"
        )


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("netpol lab needs root (it creates network namespaces); run it with sudo")


def _check_ip(key: str, text: str) -> str:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise LabError(f"pod {key}: {text!r} is not an IP address") from None
    if not any(addr in net for net in LAB_NETWORKS):
        raise LabError(
            f"pod {key}: IP {text} is outside the lab ranges 198.18.0.0/15 and 2001:db8::/32; "
            "map the snapshot's pod IPs into them first"
        )
    if str(addr) in RESERVED_GATEWAYS:
        raise LabError(f"pod {key}: IP {text} is reserved for the lab's node gateway")
    return str(addr)


def _check_ports(where: str, ports: Iterable[tuple[int, str]]) -> tuple[tuple[int, str], ...]:
    out = []
    for port, proto in ports:
        if not isinstance(port, int) or not 1 <= port <= 65535:
            raise LabError(f"{where}: port {port!r} is not a number in 1-65535")
        if proto not in PROTOCOLS:
            raise LabError(f"{where}: protocol {proto!r} is not one of {', '.join(PROTOCOLS)}")
        out.append((port, proto))
    return tuple(out)


def _validated(hosts: Sequence[LabHost]) -> list[LabHost]:
    if len(hosts) > _MAX_HOSTS:
        raise LabError(f"a lab holds at most {_MAX_HOSTS} pods, got {len(hosts)}")
    seen_keys: set[str] = set()
    owner: dict[str, str] = {}
    out = []
    for host in hosts:
        if not host.key or host.key in seen_keys:
            raise LabError(f"pod key {host.key!r} is empty or given twice")
        seen_keys.add(host.key)
        if not host.ips:
            raise LabError(f"pod {host.key}: has no IP address")
        ips = tuple(_check_ip(host.key, ip) for ip in host.ips)
        for ip in ips:
            if ip in owner:
                raise LabError(f"pod {host.key}: IP {ip} is already used by pod {owner[ip]}")
            owner[ip] = host.key
        out.append(LabHost(host.key, ips, _check_ports(f"pod {host.key}", host.ports)))
    return out


# ---------------------------------------------------------------- running ip and sysctls


def _ip_batch(commands: Sequence[str], netns: str | None = None, force: bool = False) -> None:
    proc = _start_ip_batch(commands, netns, force)
    _finish_ip_batch(proc, netns)


def _start_ip_batch(commands: Sequence[str], netns: str | None, force: bool) -> subprocess.Popen:
    argv = ["ip"] + (["-n", netns] if netns else []) + (["-force"] if force else []) + ["-batch", "-"]
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdin is not None
    # If ip stops at an error before reading everything, _finish_ip_batch reports that error.
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.write("\n".join(commands) + "\n")
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.close()
    return proc


def _finish_ip_batch(proc: subprocess.Popen, netns: str | None) -> None:
    assert proc.stderr is not None
    err = proc.stderr.read()
    proc.stderr.close()
    proc.wait()
    if proc.returncode != 0:
        where = f" in netns {netns}" if netns else ""
        raise LabError(f"ip failed{where}: {err.strip()}")


def _write_sysctls(netns: str, values: dict[str, str]) -> None:
    """/proc/sys/net shows the netns of the thread that opens it, so a thread inside suffices."""

    def write() -> None:
        for key, value in values.items():
            Path("/proc/sys", key.replace(".", "/")).write_text(value)

    run_in(netns, write)


_NODE_SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.ipv6.conf.all.forwarding": "1",
    # Strict reverse-path filtering would drop forwarded pod traffic on asymmetric paths; be explicit.
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
    # No DAD, so IPv6 addresses (link-local included) are usable the moment they are added.
    "net.ipv6.conf.all.accept_dad": "0",
    "net.ipv6.conf.default.accept_dad": "0",
}
_POD_SYSCTLS = {
    "net.ipv6.conf.all.accept_dad": "0",
    "net.ipv6.conf.default.accept_dad": "0",
}


def _is_v6(ip: str) -> bool:
    return ":" in ip


def _node_commands(hosts: Sequence[LabHost], pods: Sequence[str], ifaces: Sequence[str]) -> list[str]:
    cmds = ["link set lo up"]
    for host, pod, iface in zip(hosts, pods, ifaces, strict=False):
        cmds += [
            f"link add {iface} type veth peer name eth0 netns {pod}",
            f"link set {iface} up",
            f"addr add {GATEWAY_V4}/32 dev {iface}",
            f"addr add {GATEWAY_V6}/128 dev {iface} nodad",
        ]
        cmds += [f"route add {ip}/{128 if _is_v6(ip) else 32} dev {iface}" for ip in host.ips]
    return cmds


def _pod_commands(host: LabHost) -> list[str]:
    cmds = ["link set lo up", "link set eth0 up"]
    for ip in host.ips:
        cmds.append(f"addr add {ip}/128 dev eth0 nodad" if _is_v6(ip) else f"addr add {ip}/32 dev eth0")
    if any(not _is_v6(ip) for ip in host.ips):
        cmds.append(f"route add 0.0.0.0/0 via {GATEWAY_V4} dev eth0 onlink")
    if any(_is_v6(ip) for ip in host.ips):
        cmds.append(f"route add ::/0 via {GATEWAY_V6} dev eth0 onlink")
    return cmds


# ---------------------------------------------------------------- the server process


def _server_env() -> dict[str, str]:
    """Make `-m netpol.lab.server` importable even when netpol runs from a source tree."""
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _start_server(prefix: str, config: dict) -> int:
    """Start the lab server; it binds everything, detaches, and reports its pid once ready."""
    log = _log_path(prefix)
    with open(log, "ab") as errfile:
        proc = subprocess.Popen(
            [sys.executable, "-m", _SERVER_MODULE, "--prefix", prefix],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errfile,
            env=_server_env(),
            start_new_session=True,
        )
    try:
        out, _ = proc.communicate(json.dumps(config).encode(), timeout=_SERVER_START_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise LabError(f"lab server did not start within {_SERVER_START_TIMEOUT:.0f}s (see {log})") from None
    line = out.decode(errors="replace").strip()
    if proc.returncode != 0 or not line.startswith("ready "):
        detail = line or log.read_text(errors="replace").strip()[-2000:]
        raise LabError(f"lab server failed to start: {detail}")
    return int(line.split()[1])


def _server_pids(prefix: str) -> list[int]:
    """Lab server processes of this prefix, found by their command line (works without state)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            args = Path("/proc", entry, "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if _SERVER_MODULE.encode() in args and _follows(args, b"--prefix", prefix.encode()):
            pids.append(int(entry))
    return pids


def _follows(args: list[bytes], flag: bytes, value: bytes) -> bool:
    return any(a == flag and b == value for a, b in zip(args, args[1:], strict=False))


def _alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it happens to be our child
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _kill_servers(prefix: str, grace: float = 2.0) -> None:
    pids = _server_pids(prefix)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while (pids := [p for p in pids if _alive(p)]) and time.monotonic() < deadline:
            time.sleep(0.02)
        if not pids:
            return
    raise LabError(f"could not stop lab server process(es) {pids}")


# ---------------------------------------------------------------- public API


def lab_netns(prefix: str) -> list[str]:
    """Names of the netns that belong to the lab with this prefix (whatever state it is in)."""
    pattern = re.compile(rf"{re.escape(prefix)}-(node|p\d+)")
    try:
        names = os.listdir(NETNS_RUN_DIR)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if pattern.fullmatch(n))


def load_state(prefix: str = "nplab") -> LabState | None:
    check_prefix(prefix)
    path = state_path(prefix)
    try:
        return LabState.from_json(path.read_text())
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise LabError(f"{path}: unreadable lab state ({exc}); run `netpol lab down` to reset") from None


def up(
    hosts: Sequence[LabHost], prefix: str = "nplab", extra_ports: Iterable[tuple[int, str]] = ()
) -> LabState:
    """Build the lab and start its server; on any failure, remove what was built and re-raise."""
    check_prefix(prefix)
    checked = _validated(hosts)
    extra = _check_ports("extra ports", extra_ports)
    require_root()
    if lab_netns(prefix) or state_path(prefix).exists():
        raise LabError(f"lab {prefix!r} already exists; run `netpol lab down` (prefix {prefix!r}) first")
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    try:
        state = _build(checked, prefix, extra)
        tmp = state_path(prefix).with_suffix(".tmp")
        tmp.write_text(state.to_json())
        tmp.replace(state_path(prefix))
        return state
    except BaseException:
        with contextlib.suppress(Exception):  # the original error matters more
            down(prefix)
        raise


def _build(hosts: list[LabHost], prefix: str, extra: tuple[tuple[int, str], ...]) -> LabState:
    node = node_netns_name(prefix)
    pods = [pod_netns_name(prefix, i) for i in range(len(hosts))]
    ifaces = [f"{prefix}v{i}" for i in range(len(hosts))]
    _ip_batch([f"netns add {name}" for name in [node, *pods]])
    try:
        _write_sysctls(node, _NODE_SYSCTLS)
        for pod in pods:
            _write_sysctls(pod, _POD_SYSCTLS)
    except (OSError, NetnsError) as exc:
        raise LabError(f"cannot set lab sysctls: {exc}") from exc
    _ip_batch(_node_commands(hosts, pods, ifaces), netns=node)
    running = [(_start_ip_batch(_pod_commands(h), pod, False), pod) for h, pod in zip(hosts, pods, strict=False)]
    errors = []
    for proc, pod in running:  # wait for all before reporting, so no ip is left running
        try:
            _finish_ip_batch(proc, pod)
        except LabError as exc:
            errors.append(exc)
    if errors:
        raise errors[0]
    ports = {h.key: h.ports for h in hosts}
    config = {
        pod: {"ips": list(h.ips), "ports": sorted({p for p, _ in h.ports} | {p for p, _ in extra})}
        for h, pod in zip(hosts, pods, strict=False)
    }
    pid = _start_server(prefix, config)
    return LabState(
        prefix=prefix,
        node_netns=node,
        hosts={h.key: pod for h, pod in zip(hosts, pods, strict=False)},
        ips={h.key: h.ips for h in hosts},
        ports=ports,
        extra_ports=extra,
        node_ifaces={h.key: iface for h, iface in zip(hosts, ifaces, strict=False)},
        server_pid=pid,
    )


def down(prefix: str = "nplab") -> None:
    """Remove every trace of the lab with this prefix: server, netns (and so veths), state. Idempotent."""
    check_prefix(prefix)
    require_root()
    _kill_servers(prefix)
    names = lab_netns(prefix)
    if names:
        _ip_batch([f"netns del {name}" for name in names], force=True)
    for path in (state_path(prefix), _log_path(prefix), state_path(prefix).with_suffix(".tmp")):
        path.unlink(missing_ok=True)
