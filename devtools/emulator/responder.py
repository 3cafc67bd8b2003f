"""The fallback node executor when no kernel lab can be built (not root): APPROXIMATE, and says so.

It answers the emulated run-command by rendering the probe's frame from the declared NodeState, without
running the script or touching the kernel. Every outcome's stderr starts with
`# in-process responder (no kernel)` so that nobody mistakes it for a real probe run.

Where it approximates (the netns lab in `nodelab` is the real thing):
- TCP 10250 reachability walks the target's declared filter rules from INPUT (following -j/-g), and only
  understands -p, -s, -d, -i lo, --dport/--dports and the ACCEPT/DROP/REJECT/RETURN targets; a rule with
  any other match (conntrack, addrtype, negation, ...) is treated as not matching. Then, when ufw is
  enabled, the first ufw rule naming the port (or the default incoming policy) decides. DROP/deny is a
  `timeout`, REJECT/reject a `refused` (or `noroute` for ICMP host/net/admin rejects), as nc reports them.
- ufw's own netfilter chains are not simulated, so the iptables section shows only the declared rules;
  the ufw section is rendered in `ufw status verbose` form for the common rule shapes.
- Egress: a blocked TCP port is a `timeout`; a blocked UDP 1194 is `silent` (no answer, no ICMP error),
  an open one `ok` (the aks-link server is taken to answer the probe's OpenVPN hard reset).
- TLS: the API server is taken to serve a chain from the cluster CA with ALPN konnectivity, or, on a node
  marked `tls_inspected`, the inspecting proxy's chain (verify code 20, no ALPN). Tunnel containers are all
  running at attempt 0, `exited_containers` exited at attempt 3, as the node lab's crictl stand-in shows.
"""

from __future__ import annotations

import ipaddress
import shlex
import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from devtools.emulator.nodes import (
    ApiServerState,
    NodeNotRunningError,
    NodeState,
    RunCommandOutcome,
    UfwConfig,
    filter_table_text,
)
from shared.probe.frame import BEGIN_LINE, Missing, render_error_frame, render_frame
from shared.probe.params import ProbeArgumentError, validate_arguments
from shared.tunnel import KUBELET_PORT

RESPONDER_MARK = "# in-process responder (no kernel)"
LAB_CLUSTER_CA = "O = AKS lab cluster CA, OU = in-process responder"
INSPECTOR_ISSUER = "O = Contoso TLS Inspection, OU = in-process responder"
_JUMPS = ("-j", "--jump", "-g", "--goto")
_NEUTRAL_OPTIONS = {"-m": 1, "--comment": 1}
_UNREACHABLE_REJECTS = ("icmp-net-unreachable", "icmp-host-unreachable", "icmp-net-prohibited",
                        "icmp-host-prohibited", "icmp-admin-prohibited")
_MAX_CHAIN_DEPTH = 32


class InProcessResponder:
    """A RunCommandExecutor that renders frames from declared state (see the module docstring)."""

    def __init__(self) -> None:
        self._nodes: dict[str, NodeState] = {}
        self._api: ApiServerState | None = None
        self._lock = threading.Lock()

    def prepare(self, nodes: Sequence[NodeState], api: ApiServerState) -> None:
        with self._lock:
            self._nodes = {n.name: n for n in nodes}
            self._api = api

    def update(self, node: NodeState) -> None:
        with self._lock:
            if node.name not in self._nodes:
                raise KeyError(f"no simulated node named {node.name!r}")
            self._nodes[node.name] = node

    def close(self) -> None:
        with self._lock:
            self._nodes = {}

    def run(self, node_name: str, script: str, args: Sequence[str]) -> RunCommandOutcome:
        with self._lock:
            node = self._nodes.get(node_name)
            nodes = dict(self._nodes)
            api = self._api
        if node is None or api is None:
            raise KeyError(f"no simulated node named {node_name!r}")
        if not node.running:
            raise NodeNotRunningError(f"node {node_name} is not running; run-command cannot reach it")
        if BEGIN_LINE not in script:
            return RunCommandOutcome("", f"{RESPONDER_MARK}\nthe responder only answers the node probe script\n")
        try:
            parsed = validate_arguments(args)
        except ProbeArgumentError as exc:
            return RunCommandOutcome(render_error_frame(exc.reason), f"{RESPONDER_MARK}\n")
        by_ip = {n.ip: n for n in nodes.values()}
        api_ip = api.ip if parsed.api_host.lower() == api.host.lower() else None
        stdout = render_frame(
            host=node.name,
            containers=Missing.ABSENT if node.containers is None else node.containers,
            api_host=parsed.api_host,
            api_ip=api_ip,
            egress={check: _egress_outcome(node, check) for check in parsed.tunnel_checks},
            reach={ip: kubelet_outcome(node, by_ip.get(ip), parsed.kubelet_port) for ip in parsed.targets},
            ufw_status=Missing.ABSENT if node.ufw is None else render_ufw_status(node.ufw),
            iptables_rules=reachable_filter_rules(filter_table_text(node.iptables_rules)),
            tls=_tls_word(node),
            container_states=None if node.containers is None else _container_states(node),
        )
        return RunCommandOutcome(stdout, f"{RESPONDER_MARK}\n")


def reachable_filter_rules(save_text: str) -> str:
    """The script's awk filter in Python: the filter-table lines of chains reachable from INPUT."""
    lines: list[str] = []
    in_filter = False
    for line in save_text.splitlines():
        if line == "*filter":
            in_filter = True
        elif in_filter and line == "COMMIT":
            in_filter = False
        elif in_filter:
            lines.append(line)
    declared = {line.split()[0][1:] for line in lines if line.startswith(":")}
    successors: dict[str, list[str]] = defaultdict(list)
    for line in lines:
        if line.startswith("-A "):
            words = line.split()
            targets = [words[i + 1] for i in range(2, len(words) - 1) if words[i] in _JUMPS]
            if targets and targets[-1] in declared:
                successors[words[1]].append(targets[-1])
    reached = {"INPUT"}
    queue = ["INPUT"]
    while queue:
        for chain in successors[queue.pop()]:
            if chain not in reached:
                reached.add(chain)
                queue.append(chain)
    kept = [line for line in lines
            if (line.startswith(":") and line.split()[0][1:] in reached)
            or (line.startswith("-A ") and line.split()[1] in reached)]
    return "\n".join(["*filter", *kept, "COMMIT"]) + "\n"


def kubelet_outcome(source: NodeState, target: NodeState | None, port: int = KUBELET_PORT) -> str:
    """What `nc -z` from `source` to `target`:port would report, decided from declared state only."""
    if target is None or not target.running:
        return "timeout"
    packet = _Packet(source.ip, target.ip, port, local=source.name == target.name)
    decision = _iptables_decision(filter_table_text(target.iptables_rules), packet)
    if decision is None and target.ufw is not None and target.ufw.enabled and not packet.local:
        decision = _ufw_decision(target.ufw, packet)
    if decision == "drop":
        return "timeout"
    if decision in ("reject", "noroute"):
        return "refused" if decision == "reject" else "noroute"
    if port != KUBELET_PORT or not target.kubelet_listening:
        return "refused"
    return "ok"


def render_ufw_status(ufw: UfwConfig) -> str:
    """`ufw status verbose` for this configuration, in ufw 0.36's layout (common rule shapes)."""
    if not ufw.enabled:
        return "Status: inactive\n"
    head = ["Status: active", "Logging: on (low)",
            f"Default: {ufw.default_incoming} (incoming), allow (outgoing), disabled (routed)",
            "New profiles: skip"]
    rules = [r for r in (_UfwRule.parse(text) for text in ufw.rules) if r is not None]
    if not rules:
        return "\n".join(head) + "\n"
    rows = [r.row(v6=False) for r in rules] + [r.row(v6=True) for r in rules if not r.v4_only]
    table = [f"{'To':<27}{'Action':<12}From", f"{'--':<27}{'------':<12}----"]
    table += [f"{to:<27}{action:<12}{frm:<26}" for to, action, frm in rows]
    return "\n".join([*head, "", *table, "", ""])


# ------------------------------------------------------------------ decisions


@dataclass(frozen=True)
class _Packet:
    source: str
    destination: str
    port: int
    local: bool


def _egress_outcome(node: NodeState, check: str) -> str:
    if check.startswith("udp/"):
        return "silent" if check in node.egress_blocked else "ok"  # a drop answers nothing at all
    return "timeout" if check in node.egress_blocked else "ok"


def _tls_word(node: NodeState) -> str:
    if "tcp/443" in node.egress_blocked:
        return "error"
    return f"20 - {INSPECTOR_ISSUER}" if node.tls_inspected else f"0 konnectivity {LAB_CLUSTER_CA}"


def _container_states(node: NodeState) -> dict[str, tuple[str, int]]:
    containers = node.containers or ()
    states = {name: ("running", 1 if name in node.exited_containers else 0) for name in containers}
    for name in node.exited_containers:
        states.setdefault(name, ("exited", 3))
    return states


def _iptables_decision(save_text: str, packet: _Packet) -> str | None:
    chains: dict[str, list[list[str]]] = defaultdict(list)
    policies: dict[str, str] = {}
    in_filter = False
    for line in save_text.splitlines():
        if line == "*filter":
            in_filter = True
        elif line == "COMMIT":
            in_filter = False
        elif in_filter and line.startswith(":"):
            name, policy = line[1:].split()[:2]
            policies[name] = policy
        elif in_filter and line.startswith("-A "):
            words = shlex.split(line)
            chains[words[1]].append(words[2:])
    verdict = _walk(chains, "INPUT", packet, 0)
    if verdict is not None:
        return verdict
    policy = policies.get("INPUT", "ACCEPT")
    return "drop" if policy == "DROP" else None


def _walk(chains: Mapping[str, list[list[str]]], chain: str, packet: _Packet, depth: int) -> str | None:
    """First terminal decision in `chain` (None = fell off the end or RETURNed)."""
    if depth > _MAX_CHAIN_DEPTH:
        return None
    for words in chains.get(chain, []):
        target, extra = _rule_target(words)
        if target is None or not _rule_matches(words, packet):
            continue
        if target == "ACCEPT":
            return "accept"
        if target == "DROP":
            return "drop"
        if target == "REJECT":
            return "noroute" if any(w in _UNREACHABLE_REJECTS for w in extra) else "reject"
        if target == "RETURN":
            return None
        if target in chains:
            verdict = _walk(chains, target, packet, depth + 1)
            if verdict is not None:
                return verdict
    return None


def _rule_target(words: list[str]) -> tuple[str | None, list[str]]:
    for i, word in enumerate(words[:-1]):
        if word in _JUMPS:
            return words[i + 1], words[i + 2:]
    return None, []


def _rule_matches(words: list[str], packet: _Packet) -> bool:
    i = 0
    while i < len(words):
        word = words[i]
        value = words[i + 1] if i + 1 < len(words) else ""
        if word in _JUMPS:
            return True
        if word in _NEUTRAL_OPTIONS:
            i += 2
            continue
        if word == "-p":
            if value not in ("tcp", "all"):
                return False
        elif word == "-s":
            if not _in_any(packet.source, value):
                return False
        elif word == "-d":
            if not _in_any(packet.destination, value):
                return False
        elif word == "-i":
            if (value == "lo") != packet.local:
                return False
        elif word in ("--dport", "--dports", "--destination-port", "--destination-ports"):
            if not _port_in(packet.port, value.replace(":", "-")):
                return False
        else:
            return False  # a match we do not model: treat the rule as not applying
        i += 2
    return True


def _ufw_decision(ufw: UfwConfig, packet: _Packet) -> str:
    for text in ufw.rules:
        rule = _UfwRule.parse(text)
        if rule is not None and rule.matches(packet):
            return {"allow": "accept", "limit": "accept", "deny": "drop", "reject": "reject"}[rule.action]
    return {"allow": "accept", "deny": "drop", "reject": "reject"}[ufw.default_incoming]


@dataclass(frozen=True)
class _UfwRule:
    """One ufw command tail, in the shapes `ufw allow|deny|reject|limit [in] PORT[/PROTO]` and
    `... [from ADDR [port P]] [to ADDR [port P]] [proto P]`."""

    action: str
    source: str | None
    destination: str | None
    port: str | None
    proto: str | None

    @property
    def v4_only(self) -> bool:
        return any(a is not None and ":" not in a for a in (self.source, self.destination))

    @staticmethod
    def parse(text: str) -> _UfwRule | None:
        words = shlex.split(text)
        if not words or words[0] not in ("allow", "deny", "reject", "limit"):
            return None
        action, rest = words[0], words[1:]
        if rest and rest[0] == "out":
            return None
        if rest and rest[0] == "in":
            rest = rest[1:]
        if len(rest) == 1:
            port, _, proto = rest[0].partition("/")
            return _UfwRule(action, None, None, port, proto or None)
        fields: dict[str, str] = {}
        context = ""
        for key, value in zip(rest[::2], rest[1::2], strict=False):
            if key in ("from", "to"):
                context = key
                fields[key] = value
            elif key == "port" and context == "to":
                fields["port"] = value
            elif key == "proto":
                fields["proto"] = value
            else:
                return None
        return _UfwRule(action, _address(fields.get("from")), _address(fields.get("to")),
                        fields.get("port"), fields.get("proto"))

    def matches(self, packet: _Packet) -> bool:
        return ((self.proto in (None, "tcp"))
                and (self.port is None or _port_in(packet.port, self.port.replace(":", "-")))
                and (self.source is None or _in_any(packet.source, self.source))
                and (self.destination is None or _in_any(packet.destination, self.destination)))

    def row(self, *, v6: bool) -> tuple[str, str, str]:
        suffix = " (v6)" if v6 else ""
        service = f"{self.port}/{self.proto}" if self.port and self.proto else (self.port or "")
        to = (service or "Anywhere") + suffix if self.destination is None else f"{self.destination} {service}".strip()
        frm = self.source if self.source is not None else f"Anywhere{suffix}"
        return to, f"{self.action.upper()} IN", frm


def _address(value: str | None) -> str | None:
    return None if value in (None, "any") else value


def _in_any(address: str, networks: str) -> bool:
    try:
        return any(ipaddress.IPv4Address(address) in ipaddress.IPv4Network(n, strict=False)
                   for n in networks.split(","))
    except ValueError:
        return False


def _port_in(port: int, spec: str) -> bool:
    for part in spec.split(","):
        low, _, high = part.partition("-")
        try:
            if int(low) <= port <= int(high or low):
                return True
        except ValueError:
            continue
    return False
