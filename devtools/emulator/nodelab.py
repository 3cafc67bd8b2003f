"""Simulated AKS nodes on the real Linux kernel: one network namespace per node, the probe runs for real.

Layout (all namespaces and links are created by and private to one lab; names carry a random tag):

    node netns (eth0 = declared IP) --veth--+
    node netns ...                  --veth--+-- bridge [hub netns] --veth-- api netns (API IP/32;
                                                router IP, forwarding;       TLS on tcp 443, tcp 9000,
                                                FORWARD drops the nodes'     an OpenVPN-like responder
                                                egress_blocked ports; nat    on udp 1194, the TLS-
                                                sends tls_inspected nodes'   inspecting proxy on 8443)
                                                443 to the proxy

Inside each node: its filter table is loaded with iptables-restore; a python listener plays the kubelet
on TCP 10250; ufw (when the node has it) is the real ufw, driven in a private mount namespace in which
temp copies are bind-mounted over /etc/ufw, /etc/default/ufw and /lib/ufw (its lock file), with
IPT_SYSCTL pointed at an empty file so that it touches no sysctl. /etc/hosts maps the API host to its
lab address and /etc/resolv.conf points at the namespace's own loopback, so no DNS query leaves the lab.
Egress blocks are DROP rules on the hub's FORWARD path, so the node sees a timeout just as behind an NSG
or firewall, and its own INPUT/OUTPUT rules stay exactly as declared.

The API server answers like AKS's: TCP 443 is TLS with a certificate for the API host from the lab's cluster
CA, negotiating ALPN `konnectivity`, and every node holds that CA at /etc/kubernetes/certs/ca.crt (an
overlay on /etc in the node's private mount namespace). UDP 1194 answers an OpenVPN client hard reset with a
server hard reset, as aks-link's OpenVPN server does, and ignores anything else. A node marked
`tls_inspected` has its TCP 443 redirected by the hub to a proxy presenting a certificate from another CA
("Contoso TLS Inspection") without ALPN, as a TLS-inspecting firewall does.

The one stand-in: containerd cannot run here, so `crictl` is a tiny script that prints a `crictl ps`
table of the node's declared containers; nodes whose containers are None get no crictl at all. Tools a
node does not have (ufw when `ufw` is None; any crictl of this machine) are hidden by running the script
with a PATH whose directories are symlink copies without them.

Nothing of the host is changed: no host firewall rule, no file under /etc, no host interface.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import re
import select
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from devtools.emulator.nodes import (
    ApiServerState,
    NodeNotRunningError,
    NodeState,
    RunCommandOutcome,
    UfwConfig,
    filter_table_text,
)

log = logging.getLogger(__name__)

API_LISTENERS = ("tcp:9000",)
OPENVPN_LISTENER = "openvpn:1194"
INSPECTING_PROXY_PORT = 8443
INSPECTOR_ORGANIZATION = "Contoso TLS Inspection"
NODE_CA_PATH = "kubernetes/certs/ca.crt"  # under /etc on the node
KUBELET_LISTENER = "tcp:10250"
STANDARD_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
_REQUIRED_TOOLS = ("ip", "iptables-restore", "iptables-save", "unshare", "mount", "nc", "bash", "timeout",
                   "getent", "gzip", "base64", "awk")
_UFW_POLICY = {"deny": "DROP", "reject": "REJECT", "allow": "ACCEPT"}
_EMPTY_FILTER = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
_RUN_TIMEOUT_S = 120.0

# Listens on the given specs: "tcp:PORT" accepts and closes; "udp:PORT" swallows datagrams; "openvpn:PORT"
# answers a P_CONTROL_HARD_RESET_CLIENT_V2 (opcode 7) with a P_CONTROL_HARD_RESET_SERVER_V2 (opcode 8) that
# acknowledges it, as an OpenVPN server without tls-auth does, and ignores anything else; "tls:PORT:PEM:ALPN"
# completes a TLS handshake with the key and chain in PEM (ALPN "-" = none offered) and closes.
_LISTENER_CODE = """\
import os, selectors, socket, ssl, sys, threading
sel = selectors.DefaultSelector()
def handshake(context, conn):
    try:
        conn.settimeout(10)
        context.wrap_socket(conn, server_side=True).close()
    except OSError:
        conn.close()
for spec in sys.argv[1:]:
    kind, port, *rest = spec.split(":")
    if kind in ("tcp", "tls"):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", int(port)))
        s.listen(128)
        data = kind
        if kind == "tls":
            data = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            data.load_cert_chain(rest[0])
            if rest[1] != "-":
                data.set_alpn_protocols([rest[1]])
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", int(port)))
        data = kind
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, data)
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        try:
            if key.data == "tcp":
                conn, _ = key.fileobj.accept()
                conn.close()
            elif isinstance(key.data, ssl.SSLContext):
                conn, _ = key.fileobj.accept()
                conn.setblocking(True)
                threading.Thread(target=handshake, args=(key.data, conn), daemon=True).start()
            else:
                packet, peer = key.fileobj.recvfrom(2048)
                if key.data == "openvpn" and len(packet) >= 14 and packet[0] >> 3 == 7 and packet[9] == 0:
                    # opcode 8 | key id, our session id, ack array [their packet id], their session id, packet id 0
                    reply = (bytes([8 << 3 | packet[0] & 7]) + os.urandom(8) + b"\\x01" + packet[10:14]
                             + packet[1:9] + bytes(4))
                    key.fileobj.sendto(reply, peer)
        except OSError:
            pass
"""

# Runs inside `unshare --mount --uts`: names the node, binds its private files, then execs the command.
# Fixed text; everything variable arrives as positional arguments.
_ENTER_CODE = """\
set -e
printf '%s' "$1" > /proc/sys/kernel/hostname
export PATH="$2"
mount -t overlay nodelab-etc -o "ro,lowerdir=$3:/etc" /etc
shift 3
while [ "$1" != "--" ]; do mount --bind "$1" "$2"; shift 2; done
shift
exec "$@"
"""

_FAKE_CRICTL = """\
#!/bin/sh
# node lab stand-in for crictl (no containerd here): the containers this simulated node declares.
for arg in "$@"; do
  case $arg in -a | --all) exec cat {all} ;; esac
done
exec cat {running}
"""


def lab_unavailable_reason() -> str | None:
    """Why the lab cannot be built here, or None when it can (root, tools, `ip netns add` works)."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    missing = [tool for tool in _REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        return f"missing tools: {', '.join(missing)}"
    probe = f"atmchk{uuid.uuid4().hex[:8]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


@dataclass
class _Node:
    state: NodeState
    netns: str
    hub_port: str
    home: Path
    lock: threading.Lock = field(default_factory=threading.Lock)
    listener: subprocess.Popen[str] | None = None


class NetnsNodeLab:
    """A RunCommandExecutor on real namespaces; use as a context manager or call close()."""

    def __init__(self, *, node_prefix_len: int = 16, aks_link_server: bool = True) -> None:
        """`aks_link_server` False: nothing listens on UDP 1194, so the API side answers ICMP port unreachable."""
        self._aks_link_server = aks_link_server
        self._tag = uuid.uuid4().hex[:8]
        self._prefix_len = node_prefix_len
        self._hub = f"atm{self._tag}hub"
        self._api_ns = f"atm{self._tag}api"
        # Link names carry the tag too, although they are created inside the lab's namespaces only.
        self._bridge = f"a{self._tag}br"
        self._api_port = f"a{self._tag}api"
        self._namespaces: list[str] = []
        self._nodes: dict[str, _Node] = {}
        self._api: ApiServerState | None = None
        self._api_listener: subprocess.Popen[str] | None = None
        self._router_ip = ""
        self._root: Path | None = None
        self._scripts: dict[str, Path] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------ public API

    @property
    def tag(self) -> str:
        """The random tag in every namespace name of this lab (for leak checks)."""
        return self._tag

    @property
    def inspector_ca(self) -> Path:
        """The TLS-inspecting proxy's CA certificate (PEM), for tests that trust it somewhere on purpose."""
        if self._root is None:
            raise RuntimeError("the lab is not prepared (or already closed)")
        return self._root / "inspector-ca.pem"

    @property
    def namespaces(self) -> tuple[str, ...]:
        return tuple(self._namespaces)

    def __enter__(self) -> NetnsNodeLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def prepare(self, nodes: Sequence[NodeState], api: ApiServerState) -> None:
        if self._root is not None:
            raise RuntimeError("this lab is already prepared; close() it and build a new one")
        network = self._check_layout(nodes, api)
        try:
            self._root = Path(tempfile.mkdtemp(prefix=f"aks-nodelab-{self._tag}-"))
            self._api = api
            self._build_hub(network)
            self._build_api(api)
            for index, node in enumerate(nodes):
                self._build_node(index, node)
            self._apply_egress_rules()
        except BaseException:
            self.close()
            raise
        log.info("node lab %s ready: %d nodes, API %s at %s", self._tag, len(nodes), api.host, api.ip)

    def run(self, node_name: str, script: str, args: Sequence[str]) -> RunCommandOutcome:
        node = self._node(node_name)
        script_path = self._script_file(script)
        with node.lock:
            if not node.state.running:
                raise NodeNotRunningError(f"node {node_name} is not running; run-command cannot reach it")
            argv = self._inside(node, ["bash", str(script_path), *args])
            try:
                done = subprocess.run(argv, capture_output=True, text=True, check=False,
                                      timeout=_RUN_TIMEOUT_S, env=_node_env())
            except subprocess.TimeoutExpired as exc:
                return RunCommandOutcome(_text(exc.stdout),
                                         _text(exc.stderr) + f"\nnodelab: killed after {_RUN_TIMEOUT_S}s\n")
        return RunCommandOutcome(done.stdout, done.stderr)

    def update(self, node: NodeState) -> None:
        current = self._node(node.name)
        if node.ip != current.state.ip:
            raise ValueError(f"node {node.name}: update() cannot change the IP ({current.state.ip} -> {node.ip})")
        with current.lock:
            current.state = node
            self._configure_node(current)
        with self._lock:
            self._apply_egress_rules()

    def exec_in_node(self, node_name: str, argv: Sequence[str], *,
                     timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a command as the probe would see the node (its netns, files and PATH); for tests."""
        node = self._node(node_name)
        return subprocess.run(self._inside(node, list(argv)), capture_output=True, text=True, check=False,
                              timeout=timeout, env=_node_env())

    def exec_in_api(self, argv: Sequence[str], *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a command in the API server's namespace (its address is the API server IP): the source of the
        API server's own kubelet dials under API Server VNet Integration."""
        return subprocess.run(["ip", "netns", "exec", self._api_ns, *argv], capture_output=True, text=True,
                              check=False, timeout=timeout, env=_node_env())

    def close(self) -> None:
        """Remove every namespace, link, process and temp file of this lab; safe to call twice."""
        with self._lock:
            processes = [n.listener for n in self._nodes.values()] + [self._api_listener]
            for proc in processes:
                _stop(proc)
            for node in self._nodes.values():
                node.listener = None
            self._api_listener = None
            for netns in reversed(self._namespaces):
                _cmd(["ip", "netns", "del", netns], check=False)
            self._namespaces.clear()
            if self._root is not None:
                shutil.rmtree(self._root, ignore_errors=True)

    # ------------------------------------------------------------ building

    def _check_layout(self, nodes: Sequence[NodeState], api: ApiServerState) -> ipaddress.IPv4Network:
        if not nodes:
            raise ValueError("a node lab needs at least one node")
        names = [n.name for n in nodes]
        ips = [n.ip for n in nodes]
        if len(set(names)) != len(names) or len(set(ips)) != len(ips):
            raise ValueError("node names and IPs must be unique")
        network = ipaddress.IPv4Network(f"{nodes[0].ip}/{self._prefix_len}", strict=False)
        outside = [ip for ip in ips if ipaddress.IPv4Address(ip) not in network]
        if outside:
            raise ValueError(f"nodes {outside} are not in {network} (the lab's node subnet)")
        if api.ip in ips:
            raise ValueError(f"the API server address {api.ip} is also a node's address")
        # The API address may lie inside the node subnet (a private cluster's endpoint): nodes then reach it
        # through a /32 route via the hub, so that its FORWARD rules still apply.
        taken = {ipaddress.IPv4Address(ip) for ip in [*ips, api.ip]}
        self._router_ip = str(next(h for h in network.hosts() if h not in taken))
        return network

    def _build_hub(self, network: ipaddress.IPv4Network) -> None:
        self._add_netns(self._hub)
        _cmd(["ip", "-n", self._hub, "link", "add", self._bridge, "type", "bridge"])
        _cmd(["ip", "-n", self._hub, "addr", "add", f"{self._router_ip}/{network.prefixlen}", "dev", self._bridge])
        _cmd(["ip", "-n", self._hub, "link", "set", self._bridge, "up"])
        _cmd(["ip", "netns", "exec", self._hub, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])

    def _build_api(self, api: ApiServerState) -> None:
        self._add_netns(self._api_ns)
        _cmd(["ip", "link", "add", self._api_port, "netns", self._hub, "type", "veth",
              "peer", "name", "eth0", "netns", self._api_ns])
        _cmd(["ip", "-n", self._api_ns, "addr", "add", f"{api.ip}/32", "dev", "eth0"])
        _cmd(["ip", "-n", self._api_ns, "link", "set", "eth0", "up"])
        _cmd(["ip", "-n", self._api_ns, "route", "add", f"{self._router_ip}/32", "dev", "eth0"])
        _cmd(["ip", "-n", self._api_ns, "route", "add", "default", "via", self._router_ip, "dev", "eth0"])
        _cmd(["ip", "-n", self._hub, "link", "set", self._api_port, "up"])
        _cmd(["ip", "-n", self._hub, "route", "add", f"{api.ip}/32", "dev", self._api_port])
        self._api_listener = _start_listener(self._api_ns, self._api_specs(api))

    def _api_specs(self, api: ApiServerState) -> list[str]:
        """The API side's listeners: AKS's TLS endpoint, the inspecting proxy, tunnel-front, aks-link."""
        import trustme  # a dev dependency, like the rest of devtools

        assert self._root is not None
        cluster_ca = trustme.CA(organization_name="AKS lab cluster CA")
        inspector = trustme.CA(organization_name=INSPECTOR_ORGANIZATION)
        (self._root / "ca-etc" / "kubernetes" / "certs").mkdir(parents=True)
        cluster_ca.cert_pem.write_to_path(str(self._root / "ca-etc" / NODE_CA_PATH))
        served = self._root / "api-server.pem"
        cluster_ca.issue_cert(api.host, api.ip).private_key_and_cert_chain_pem.write_to_path(str(served))
        proxied = self._root / "inspector.pem"
        inspector.issue_cert(api.host).private_key_and_cert_chain_pem.write_to_path(str(proxied))
        inspector.cert_pem.write_to_path(str(self._root / "inspector-ca.pem"))
        specs = [*API_LISTENERS, f"tls:443:{served}:konnectivity", f"tls:{INSPECTING_PROXY_PORT}:{proxied}:-"]
        if self._aks_link_server:
            specs.append(OPENVPN_LISTENER)
        return specs

    def _build_node(self, index: int, state: NodeState) -> None:
        assert self._root is not None
        netns = f"atm{self._tag}n{index}"
        node = _Node(state=state, netns=netns, hub_port=f"a{self._tag}p{index}", home=self._root / f"n{index}")
        self._nodes[state.name] = node
        self._add_netns(netns)
        _cmd(["ip", "link", "add", node.hub_port, "netns", self._hub, "type", "veth",
              "peer", "name", "eth0", "netns", netns])
        _cmd(["ip", "-n", self._hub, "link", "set", node.hub_port, "master", self._bridge])
        _cmd(["ip", "-n", self._hub, "link", "set", node.hub_port, "up"])
        _cmd(["ip", "-n", netns, "addr", "add", f"{state.ip}/{self._prefix_len}", "dev", "eth0"])
        _cmd(["ip", "-n", netns, "link", "set", "eth0", "up"])
        self._configure_node(node)

    def _configure_node(self, node: _Node) -> None:
        """(Re)applies everything declared in node.state; used at build time and by update()."""
        assert self._api is not None
        state = node.state
        _stop(node.listener)
        node.listener = None
        shutil.rmtree(node.home, ignore_errors=True)
        (node.home / "bin").mkdir(parents=True)
        (node.home / "hosts").write_text(f"127.0.0.1 localhost\n{self._api.ip} {self._api.host}\n")
        (node.home / "resolv.conf").write_text("nameserver 127.0.0.1\n")
        if state.containers is not None:
            _write_fake_crictl(node.home, state.containers, state.exited_containers)

        _cmd(["ip", "netns", "exec", node.netns, "iptables-restore"], stdin=filter_table_text(state.iptables_rules))
        if shutil.which("ip6tables-restore"):
            _cmd(["ip", "netns", "exec", node.netns, "ip6tables-restore"], stdin=_EMPTY_FILTER)
        if state.ufw is not None:
            self._setup_ufw(node, state.ufw)
        if state.kubelet_listening and state.running:
            node.listener = _start_listener(node.netns, (KUBELET_LISTENER,))
        _cmd(["ip", "-n", node.netns, "link", "set", "eth0", "up" if state.running else "down"])
        if state.running:  # routes through a link are dropped when it goes down: (re)install them
            _cmd(["ip", "-n", node.netns, "route", "replace", f"{self._api.ip}/32", "via", self._router_ip])
            _cmd(["ip", "-n", node.netns, "route", "replace", "default", "via", self._router_ip])

    def _setup_ufw(self, node: _Node, ufw: UfwConfig) -> None:
        for required in ("/etc/ufw", "/etc/default/ufw", "/lib/ufw", "/usr/share/ufw/iptables"):
            if not Path(required).exists():
                raise RuntimeError(f"node {node.state.name} declares ufw, but {required} is missing here")
        etc = node.home / "etc-ufw"
        shutil.copytree("/etc/ufw", etc, symlinks=True)
        shutil.copytree("/lib/ufw", node.home / "lib-ufw", symlinks=True)
        for name in ("user.rules", "user6.rules"):  # pristine: never inherit this machine's own rules
            shutil.copyfile(f"/usr/share/ufw/iptables/{name}", etc / name)
        (etc / "ufw.conf").write_text("ENABLED=no\nLOGLEVEL=low\n")
        (node.home / "sysctl-none.conf").write_text("")
        (node.home / "default-ufw").write_text(_ufw_defaults(
            Path("/etc/default/ufw").read_text(), _UFW_POLICY[ufw.default_incoming],
            node.home / "sysctl-none.conf"))
        for rule in ufw.rules:
            self._ufw(node, shlex.split(rule))
        if ufw.enabled:
            self._ufw(node, ["--force", "enable"])

    def _ufw(self, node: _Node, args: list[str]) -> None:
        done = subprocess.run(self._inside(node, ["ufw", *args]), capture_output=True, text=True, check=False,
                              timeout=60, env=_node_env())
        if done.returncode != 0:
            raise RuntimeError(f"node {node.state.name}: `ufw {shlex.join(args)}` failed: "
                               f"{(done.stdout + done.stderr).strip()}")

    def _apply_egress_rules(self) -> None:
        assert self._api is not None
        rules = []
        for node in self._nodes.values():
            for entry in sorted(node.state.egress_blocked):
                proto, port = entry.split("/")
                rules.append(f"-A FORWARD -s {node.state.ip}/32 -d {self._api.ip}/32 -p {proto} "
                             f"-m {proto} --dport {port} -j DROP")
        table = _EMPTY_FILTER.replace("COMMIT\n", "".join(f"{r}\n" for r in rules) + "COMMIT\n")
        # A TLS-inspecting proxy: the node's 443 to the API lands on the proxy (a blocked 443 stays blocked).
        redirects = [f"-A PREROUTING -s {node.state.ip}/32 -d {self._api.ip}/32 -p tcp -m tcp --dport 443 "
                     f"-j DNAT --to-destination {self._api.ip}:{INSPECTING_PROXY_PORT}\n"
                     for node in self._nodes.values()
                     if node.state.tls_inspected and "tcp/443" not in node.state.egress_blocked]
        table += ("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
                  ":POSTROUTING ACCEPT [0:0]\n" + "".join(redirects) + "COMMIT\n")
        _cmd(["ip", "netns", "exec", self._hub, "iptables-restore"], stdin=table)

    # ------------------------------------------------------------ helpers

    def _add_netns(self, name: str) -> None:
        _cmd(["ip", "netns", "add", name])
        self._namespaces.append(name)
        _cmd(["ip", "-n", name, "link", "set", "lo", "up"])

    def _node(self, name: str) -> _Node:
        node = self._nodes.get(name)
        if node is None:
            raise KeyError(f"no simulated node named {name!r} in this lab")
        return node

    def _script_file(self, script: str) -> Path:
        digest = hashlib.sha256(script.encode("utf-8")).hexdigest()[:16]
        with self._lock:
            if self._root is None:
                raise RuntimeError("the lab is not prepared (or already closed)")
            path = self._scripts.get(digest)
            if path is None:
                path = self._root / f"script-{digest}.sh"
                path.write_text(script)
                self._scripts[digest] = path
        return path

    def _inside(self, node: _Node, argv: list[str]) -> list[str]:
        """argv run in the node's netns and in a private mount+UTS namespace with the node's files."""
        binds = [str(node.home / "hosts"), "/etc/hosts", str(node.home / "resolv.conf"), "/etc/resolv.conf"]
        if node.state.ufw is not None:
            binds += [str(node.home / "etc-ufw"), "/etc/ufw", str(node.home / "default-ufw"), "/etc/default/ufw",
                      str(node.home / "lib-ufw"), "/lib/ufw"]
        hidden = {"crictl"} | (set() if node.state.ufw is not None else {"ufw"})
        path = ":".join([str(node.home / "bin"), *_dirs_without(hidden, node.home / "path")])
        assert self._root is not None
        return ["ip", "netns", "exec", node.netns, "unshare", "--mount", "--uts", "--propagation", "private",
                "--", "bash", "-c", _ENTER_CODE, "nodelab-enter", node.state.name[:64], path,
                str(self._root / "ca-etc"), *binds, "--", *argv]


def _dirs_without(hidden: set[str], farm: Path) -> list[str]:
    """The standard PATH, where each directory holding a hidden tool is replaced by a symlink copy without it."""
    result: list[str] = []
    seen: set[str] = set()
    for directory in STANDARD_PATH:
        real = os.path.realpath(directory)
        if real in seen or not os.path.isdir(real):
            continue
        seen.add(real)
        entries = set(os.listdir(real))
        if not entries & hidden:
            result.append(real)
            continue
        copy = farm / real.strip("/").replace("/", "_")
        if not copy.exists():
            # Built aside and renamed into place: two first commands on a node may race here, and neither
            # may ever see a half-built directory (a tool missing from PATH would read as "not installed").
            farm.mkdir(parents=True, exist_ok=True)
            building = Path(tempfile.mkdtemp(prefix=".building-", dir=farm))
            for entry in entries - hidden:
                (building / entry).symlink_to(os.path.join(real, entry))
            try:
                building.rename(copy)
            except OSError:  # the other builder won; its copy is complete
                shutil.rmtree(building, ignore_errors=True)
        result.append(str(copy))
    return result


def _write_fake_crictl(home: Path, containers: Sequence[str], exited: Sequence[str] = ()) -> None:
    """`crictl ps` tables: running containers at attempt 0 (1 when also listed as exited), exited ones
    (crash-looping) at a higher attempt; `-a` shows both, otherwise only the running rows."""
    header = ("CONTAINER", "IMAGE", "CREATED", "STATE", "NAME", "ATTEMPT", "POD ID", "POD")
    rows = [(name, "Running", "1" if name in exited else "0") for name in containers]
    rows += [(name, "Exited", "0" if name in containers else "3") for name in exited]
    table_rows = [header]
    for i, (name, state, attempt) in enumerate(rows):
        digest = hashlib.sha256(f"{home}/{name}/{i}".encode()).hexdigest()
        table_rows.append((digest[:13], f"sha256:{digest[13:26]}", "2 hours ago", state, name, attempt,
                           digest[26:39], f"{name}-{digest[39:49]}-{digest[49:54]}"))
    widths = [max(20, max(len(row[c]) for row in table_rows) + 3) for c in range(len(header))]
    lines = ["".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n"
             for row in table_rows]
    (home / "crictl-ps-a.txt").write_text("".join(lines))
    (home / "crictl-ps.txt").write_text("".join(line for line, row in zip(lines, table_rows, strict=True)
                                                if row[3] != "Exited"))
    crictl = home / "bin" / "crictl"
    crictl.write_text(_FAKE_CRICTL.format(all=shlex.quote(str(home / "crictl-ps-a.txt")),
                                          running=shlex.quote(str(home / "crictl-ps.txt"))))
    crictl.chmod(0o755)


def _ufw_defaults(text: str, input_policy: str, sysctl_file: Path) -> str:
    """/etc/default/ufw for one node: its incoming policy, no sysctl and no module loading."""
    settings = {"DEFAULT_INPUT_POLICY": f'"{input_policy}"', "IPT_SYSCTL": str(sysctl_file), "IPT_MODULES": '""'}
    lines = []
    for line in text.splitlines():
        key = line.split("=", 1)[0].strip()
        lines.append(f"{key}={settings.pop(key)}" if key in settings else line)
    lines += [f"{key}={value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def _start_listener(netns: str, specs: Sequence[str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-I", "-c", _LISTENER_CODE, *specs],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 15)
    line = proc.stdout.readline() if ready else ""
    if line.strip() != "ready":
        _stop(proc)
        raise RuntimeError(f"listener {list(specs)} in {netns} did not start: "
                           f"{proc.stderr.read() if proc.stderr else ''}")
    return proc


def _stop(proc: subprocess.Popen[str] | None) -> None:
    if proc is None:
        return
    try:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    finally:
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def _cmd(argv: list[str], *, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False, timeout=60)
    if check and done.returncode != 0:
        raise RuntimeError(f"`{shlex.join(argv)}` failed ({done.returncode}): {done.stderr.strip()}")
    return done


def _node_env() -> dict[str, str]:
    # TESTSTATE moves ufw's lock file into the node's private /lib/ufw instead of the host's /run/ufw.lock;
    # our own interpreter's PYTHON*/LD_* settings must not leak into ufw (a python program) on the "node".
    env = {k: v for k, v in os.environ.items() if not re.match(r"(PYTHON|LD_)", k)}
    env.update({"TESTSTATE": "1", "LANG": "C"})
    return env


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
