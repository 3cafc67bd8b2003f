"""A deliberately naive NSG/AVNM evaluator, written straight from the rules as Azure documents them.

Only the property tests use it: the fast evaluator in shared/netrules/nsg.py must agree with it on
random rule sets. It re-parses every string on every call, walks rules one by one in priority order and
shares no code with the real evaluator (not even the list of non-internet ranges), so that a bug in
the compiled bitmask machinery cannot hide behind the same bug here.

Matching is three-valued: True (matches), False (does not), None (depends on something unknown, such
as a service tag whose ranges we do not have). The first rule that is not False decides; if it is None
the container's answer is unknown.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from shared.netrules.nsg_types import (
    AddressContext,
    AdminRule,
    Flow,
    NetworkSecurityGroup,
    PathDecision,
    RuleDecision,
    SecurityRule,
)

# Addresses that the Internet tag does not cover even though they are outside the VNet.
NOT_INTERNET = [
    "0.0.0.0/8",  # "this network"
    "10.0.0.0/8",  # RFC 1918
    "172.16.0.0/12",  # RFC 1918
    "192.168.0.0/16",  # RFC 1918
    "100.64.0.0/10",  # carrier-grade NAT shared space
    "127.0.0.0/8",  # loopback
    "169.254.0.0/16",  # link-local
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, including broadcast
    "::/128",
    "::1/128",
    "::ffff:0:0/96",  # IPv4-mapped
    "fc00::/7",  # unique local
    "fe80::/10",  # link-local
    "ff00::/8",  # multicast
]


@dataclass(frozen=True)
class ReferenceVerdict:
    """One container's answer; `blamed_rule` names the undecidable rule when `allowed` is None."""

    allowed: bool | None
    decision: RuleDecision | None = None
    blamed_rule: str | None = None


def ref_default_rules(direction: str) -> list[SecurityRule]:
    if direction == "Inbound":
        return [
            SecurityRule(
                "AllowVnetInBound",
                65000,
                "Inbound",
                "Allow",
                "*",
                ("VirtualNetwork",),
                ("*",),
                ("VirtualNetwork",),
                ("*",),
                default=True,
            ),
            SecurityRule(
                "AllowAzureLoadBalancerInBound",
                65001,
                "Inbound",
                "Allow",
                "*",
                ("AzureLoadBalancer",),
                ("*",),
                ("*",),
                ("*",),
                default=True,
            ),
            SecurityRule("DenyAllInBound", 65500, "Inbound", "Deny", "*", default=True),
        ]
    return [
        SecurityRule(
            "AllowVnetOutBound",
            65000,
            "Outbound",
            "Allow",
            "*",
            ("VirtualNetwork",),
            ("*",),
            ("VirtualNetwork",),
            ("*",),
            default=True,
        ),
        SecurityRule(
            "AllowInternetOutBound",
            65001,
            "Outbound",
            "Allow",
            "*",
            ("*",),
            ("*",),
            ("Internet",),
            ("*",),
            default=True,
        ),
        SecurityRule("DenyAllOutBound", 65500, "Outbound", "Deny", "*", default=True),
    ]


def ip_in_prefix(ip: str, prefix: str) -> bool:
    address = ipaddress.ip_address(ip)
    network = ipaddress.ip_network(prefix, strict=False)
    return address.version == network.version and address in network


def is_prefix(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


def in_vnet(ip: str, context: AddressContext) -> bool:
    return any(ip_in_prefix(ip, prefix) for prefix in context.vnet_prefixes)


def address_item_matches(item: str, ip: str, context: AddressContext) -> bool | None:
    word = item.strip().lower()
    if word in ("*", "any"):
        return True
    if word in ("virtualnetwork", "virtual_network"):
        return in_vnet(ip, context)
    if word == "internet":
        return not in_vnet(ip, context) and not any(ip_in_prefix(ip, p) for p in NOT_INTERNET)
    if word in ("azureloadbalancer", "azure_loadbalancer"):
        return ip_in_prefix(ip, "168.63.129.16/32")
    if is_prefix(item.strip()):
        return ip_in_prefix(ip, item.strip())
    return None  # a service tag we do not know the ranges of


def asg_matches(asg_id: str, ip: str, context: AddressContext) -> bool:
    for member_asg, members in context.asg_members.items():
        if member_asg.lower() == asg_id.lower():
            return any(ipaddress.ip_address(m) == ipaddress.ip_address(ip) for m in members)
    return False


def split(values: Sequence[str]) -> list[str]:
    out = []
    for value in values:
        for part in value.split(","):
            if part.strip():
                out.append(part.strip())
    return out


def side_matches(prefixes: Sequence[str], asgs: Sequence[str], ip: str, context: AddressContext) -> bool | None:
    items = split(prefixes)
    if asgs and all(i.lower() in ("*", "any") for i in items):
        items = []  # ASGs alone decide this side
    if not items and not asgs:
        items = ["*"]
    results = [address_item_matches(item, ip, context) for item in items]
    results += [asg_matches(asg, ip, context) for asg in asgs]
    if True in results:
        return True
    if None in results:
        return None
    return False


def parse_port(item: str) -> tuple[int, int] | None:
    if item in ("*",) or item.lower() == "any":
        return (0, 65535)
    if "-" in item:
        low, high = item.split("-", 1)
    else:
        low, high = item, item
    if not all(part.strip().isascii() and part.strip().isdigit() for part in (low, high)):
        return None
    first, last = int(low), int(high)
    if first > last or last > 65535:
        return None
    return (first, last)


def ports_match(spec: Sequence[str], port: int, protocol: str) -> bool | None:
    items = split(spec) or ["*"]
    parsed = [parse_port(item) for item in items]
    known = [p for p in parsed if p is not None]
    if protocol.lower() in ("tcp", "udp"):
        hit = any(low <= port <= high for low, high in known)
    else:  # no ports on the wire: only a rule covering every port applies
        reach = 0  # every port below `reach` is covered
        for low, high in sorted(known):
            if low > reach:
                break
            reach = max(reach, high + 1)
        hit = reach > 65535
    if hit:
        return True
    if None in parsed:
        return None
    return False


def protocol_matches(rule_protocol: str, flow_protocol: str) -> bool:
    word = rule_protocol.strip().lower()
    return word in ("*", "any") or word == flow_protocol.strip().lower()


def combine(*parts: bool | None) -> bool | None:
    if False in parts:
        return False
    if None in parts:
        return None
    return True


def nsg_rule_matches(rule: SecurityRule, flow: Flow, context: AddressContext) -> bool | None:
    return combine(
        protocol_matches(rule.protocol, flow.protocol),
        ports_match(rule.source_ports, flow.source_port, flow.protocol),
        ports_match(rule.destination_ports, flow.destination_port, flow.protocol),
        side_matches(rule.source_prefixes, rule.source_asgs, flow.source_ip, context),
        side_matches(rule.destination_prefixes, rule.destination_asgs, flow.destination_ip, context),
    )


def ref_evaluate_nsg(flow: Flow, nsg: NetworkSecurityGroup, context: AddressContext) -> ReferenceVerdict:
    rules = [r for r in nsg.rules if r.direction.lower() == flow.direction.lower()]
    names = [r.name.lower() for r in rules]
    rules += [r for r in ref_default_rules(flow.direction) if r.name.lower() not in names]
    for rule in sorted(rules, key=lambda r: r.priority):
        matched = nsg_rule_matches(rule, flow, context)
        if matched is False:
            continue
        if matched is None:
            return ReferenceVerdict(None, blamed_rule=rule.name)
        if rule.id:
            rule_id = rule.id
        elif rule.default:
            rule_id = nsg.id + "/defaultSecurityRules/" + rule.name
        else:
            rule_id = nsg.id + "/securityRules/" + rule.name
        access = "Allow" if rule.access.lower() == "allow" else "Deny"
        decision = RuleDecision(nsg.id, nsg.name, rule.name, rule_id, rule.priority, access)
        return ReferenceVerdict(access == "Allow", decision)
    return ReferenceVerdict(None, blamed_rule="(no rule)")


def admin_rule_matches(rule: AdminRule, flow: Flow, context: AddressContext) -> bool | None:
    return combine(
        protocol_matches(rule.protocol, flow.protocol),
        ports_match(rule.source_ports, flow.source_port, flow.protocol),
        ports_match(rule.destination_ports, flow.destination_port, flow.protocol),
        side_matches(rule.sources, (), flow.source_ip, context),
        side_matches(rule.destinations, (), flow.destination_ip, context),
    )


@dataclass(frozen=True)
class ReferencePath:
    allowed: bool | None
    decisions: tuple[RuleDecision, ...]
    blamed_rule: str | None


def ref_evaluate_path(
    flow: Flow,
    nsgs: Sequence[NetworkSecurityGroup | None],
    context: AddressContext,
    admin_rules: Sequence[AdminRule] = (),
) -> ReferencePath:
    decisions: list[RuleDecision] = []
    admin = [r for r in admin_rules if r.direction.lower() == flow.direction.lower()]
    for rule in sorted(admin, key=lambda r: r.priority):
        matched = admin_rule_matches(rule, flow, context)
        if matched is False:
            continue
        if matched is None:
            return ReferencePath(None, (), rule.name)
        access = {"allow": "Allow", "deny": "Deny", "alwaysallow": "AlwaysAllow"}[rule.access.lower()]
        decisions.append(RuleDecision("avnm", "", rule.name, rule.id, rule.priority, access))
        if access == "Deny":
            return ReferencePath(False, tuple(decisions), None)
        if access == "AlwaysAllow":
            return ReferencePath(True, tuple(decisions), None)
        break  # Allow: the NSGs decide
    blamed = None
    for nsg in nsgs:
        if nsg is None:
            continue
        verdict = ref_evaluate_nsg(flow, nsg, context)
        if verdict.allowed is None:
            if blamed is None:
                blamed = verdict.blamed_rule
            continue
        assert verdict.decision is not None
        decisions.append(verdict.decision)
        if verdict.allowed is False:
            return ReferencePath(False, tuple(decisions), None)
    if blamed is not None:
        return ReferencePath(None, tuple(decisions), blamed)
    return ReferencePath(True, tuple(decisions), None)


def reference_path_matches(actual: PathDecision, expected: ReferencePath) -> bool:
    """Same verdict, same deciding rules (AVNM container name aside), and the same rule blamed."""

    def key(d: RuleDecision) -> tuple[str, str, str, int, str]:
        return (d.container_id, d.rule_name, d.rule_id, d.priority, d.access)

    if actual.allowed is not expected.allowed:
        return False
    if [key(d) for d in actual.decisions] != [key(d) for d in expected.decisions]:
        return False
    if expected.blamed_rule is None:
        return actual.reason is None
    return actual.reason is not None and f"'{expected.blamed_rule}'" in actual.reason


# ------------------------------------------------------------------ whole-cluster reference (every node pair)


@dataclass(frozen=True)
class ReferenceNode:
    name: str
    ip: str
    subnet_nsg: NetworkSecurityGroup | None
    nic_nsg: NetworkSecurityGroup | None
    asgs: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReferenceCluster:
    """What TCP 10250 between every ordered pair of distinct nodes comes to, with no shortcut at all."""

    blocking_rules: frozenset[str]  # rule ids (AVNM rules: their id) that deny some pair
    blocked_destinations: dict[str, frozenset[str]]  # rule id -> destination nodes it blocks
    undecided_destinations: frozenset[str]  # nodes with an undecided, not denied, inbound pair


def ref_cluster(nodes: Sequence[ReferenceNode], vnet_prefixes: Sequence[str],
                admin_rules: Sequence[AdminRule] = ()) -> ReferenceCluster:
    """Every pair: outbound on the source (NIC, subnet), then inbound on the destination (subnet, NIC).

    ASG membership is rebuilt here from the nodes, the way Azure sees it (a NIC's IP configuration
    belongs to its ASGs), so the cause's own context building is checked too.
    """
    members: dict[str, set[str]] = {}
    for node in nodes:
        for asg in node.asgs:
            members.setdefault(asg.lower(), set()).add(node.ip)
    context = AddressContext(tuple(vnet_prefixes), {k: frozenset(v) for k, v in members.items()})
    blocking: dict[str, set[str]] = {}
    undecided: set[str] = set()
    for source in nodes:
        for destination in nodes:
            if source is destination and len(nodes) > 1:
                continue
            outcome = None
            pair_undecided = False
            for direction, path in (("Outbound", [source.nic_nsg, source.subnet_nsg]),
                                    ("Inbound", [destination.subnet_nsg, destination.nic_nsg])):
                flow = Flow(direction, "Tcp", source.ip, 49152, destination.ip, 10250)  # type: ignore[arg-type]
                verdict = ref_evaluate_path(flow, path, context, admin_rules)
                if verdict.allowed is False:
                    outcome = verdict.decisions[-1]
                    break
                if verdict.allowed is None:
                    pair_undecided = True
            if outcome is not None:
                rule_id = outcome.rule_id or f"{outcome.container_id}/{outcome.rule_name}"
                blocking.setdefault(rule_id, set()).add(destination.name)
            elif pair_undecided:
                undecided.add(destination.name)
    return ReferenceCluster(frozenset(blocking), {k: frozenset(v) for k, v in blocking.items()},
                            frozenset(undecided))
