"""nsg-blocks-10250: an NSG or AVNM security admin rule denies TCP 10250 between nodes.

The tunnel agent reaches each kubelet from a node inside the VNet, so the flow is evaluated the way Azure
does: outbound on the source NIC then subnet, inbound on the destination subnet then NIC, with AVNM admin
rules first in each direction. Each blocking rule is its own finding subject, so fixing one rule resolves
exactly that finding.

Which flows: every node is a possible agent host and a possible kubelet, but nodes that no rule can tell
apart need not be evaluated twice. Nodes fall into classes by what a rule can see of them (subnet, NIC
NSG, application security groups, and which rule prefixes contain their IP), and one flow is decided per
(source class, destination class) pair on both ends. Nothing else can make two flows differ, so this is
exact, and a "Deny from asg-poolb" is evaluated as soon as one node carries asg-poolb.

Partial results: a flow that cannot be decided (a service tag whose ranges are unknown, an NSG that could
not be read) is never folded into clear. If another flow is denied the cause is detected, and the nodes
whose flows were undecided are listed in `unchecked` so that their findings stay open.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from shared.causes.base import Cause
from shared.causes.common import KUBELET_PORT, always_applicable, running_nodes
from shared.model import CauseId, CauseResult, Evidence, Status
from shared.netrules.nsg import (
    AVNM_CONTAINER_ID,
    CompiledAdminRules,
    compile_admin_rules,
    evaluate_path,
    first_free_priority_below,
    rule_networks,
)
from shared.netrules.nsg_types import (
    AddressContext,
    AdminRule,
    Direction,
    Flow,
    NetworkSecurityGroup,
    PathDecision,
    RuleDecision,
)
from shared.snapshot import ActivityEvent, ClusterSnapshot, Node, Unavailable

EPHEMERAL_SOURCE_PORT = 49152


@dataclass(frozen=True)
class _Block:
    source: Node
    destination: Node
    direction: str
    decision: RuleDecision
    destinations: tuple[str, ...]  # every node of the destination class: all equally blocked


@dataclass(frozen=True)
class _Undecided:
    source: Node
    destination: Node
    direction: str
    reason: str
    destinations: tuple[str, ...]


def _evaluate(snapshot: ClusterSnapshot) -> CauseResult:
    nodes = running_nodes(snapshot)
    for piece in (nodes, snapshot.nsgs, snapshot.admin_rules):
        if isinstance(piece, Unavailable):
            return CAUSE.unknown(piece.reason)
    assert not isinstance(nodes, Unavailable)
    assert not isinstance(snapshot.nsgs, Unavailable)
    assert not isinstance(snapshot.admin_rules, Unavailable)
    if not nodes:
        return CAUSE.unknown("the cluster has no running nodes with a private IP to check")
    nsgs = snapshot.nsgs
    rules = _Rules(snapshot, nsgs, compile_admin_rules(snapshot.admin_rules),
                   _context_with_node_asgs(snapshot.address_context, nodes))
    classes = _node_classes(snapshot, nodes, nsgs, rules.context)
    blocks: list[_Block] = []
    undecided: list[_Undecided] = []
    checked = 0
    for destination_class in classes:
        for source_class in classes:
            pair = _representative_pair(source_class, destination_class, single_node=len(nodes) == 1)
            if pair is None:
                continue
            source, destination = pair
            checked += 1
            names = tuple(n.name for n in destination_class)
            pending: list[_Undecided] = []
            for direction, decision in rules.evaluate_flow(source, destination):
                if decision.allowed is False and decision.blocking is not None:
                    blocks.append(_Block(source, destination, direction, decision.blocking, names))
                    pending = []  # denied on one end: what the other end would do no longer matters
                    break
                if decision.allowed is None:
                    pending.append(_Undecided(source, destination, direction,
                                              decision.reason or "undecidable", names))
            undecided.extend(pending)
    unchecked = _unchecked(undecided)
    if blocks:
        return _detected(snapshot, nsgs, blocks, undecided, unchecked)
    if undecided:
        distinct = list(dict.fromkeys(_describe_undecided(u) for u in undecided))
        reasons = "; ".join(distinct[:5]) + (f"; and {len(distinct) - 5} more flow(s)" if len(distinct) > 5 else "")
        return CAUSE.unknown(reasons, evidence=tuple(Evidence(u.destination.name, _describe_undecided(u))
                                                     for u in undecided), unchecked=unchecked)
    attached = sorted({nid for n in nodes for nid in _path_nsg_ids(snapshot, n)})
    return CAUSE.result(
        Status.CLEAR,
        f"TCP {KUBELET_PORT} is allowed between nodes ({checked} node-to-node flows checked, one per distinct "
        f"subnet / NIC NSG / ASG set / rule prefix combination, across {len(attached)} NSG(s)).",
        evidence=tuple(Evidence(nid, f"allows TCP {KUBELET_PORT} from the node subnets") for nid in attached),
    )


# ------------------------------------------------------------------ which flows


def _context_with_node_asgs(context: AddressContext, nodes: Iterable[Node]) -> AddressContext:
    """The collected ASG membership plus each node's own ASGs (hand-built snapshots carry only the latter)."""
    members: dict[str, set[str]] = {k.lower(): set(v) for k, v in context.asg_members.items()}
    added = False
    for node in nodes:
        for asg in node.asg_ids:
            if node.private_ip and node.private_ip not in members.setdefault(asg.lower(), set()):
                members[asg.lower()].add(node.private_ip)
                added = True
    if not added:
        return context
    return AddressContext(context.vnet_prefixes, {k: frozenset(v) for k, v in members.items()})


def _rule_prefixes(nsgs: Mapping[str, NetworkSecurityGroup], admin_rules: Iterable[AdminRule],
                   context: AddressContext) -> dict[tuple[int, int], set[int]]:
    """Every IP prefix a rule or the VirtualNetwork tag can test (the only way an IP changes a verdict),
    as {(IP version, prefix length): {network address}} so that a node's containing prefixes are one set
    lookup per length, not one test per prefix (NSGs hold up to 1,000 rules each)."""
    by_length: dict[tuple[int, int], set[int]] = {}
    for network in rule_networks(nsgs, admin_rules, context.vnet_prefixes):
        by_length.setdefault((network.version, network.prefixlen), set()).add(int(network.network_address))
    return by_length


def _containing(ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
                prefixes: Mapping[tuple[int, int], set[int]]) -> frozenset[tuple[int, int, int]]:
    width = 32 if ip.version == 4 else 128
    value = int(ip)
    found = set()
    for (version, length), networks in prefixes.items():
        if version == ip.version:
            network = value >> (width - length) << (width - length) if length else 0
            if network in networks:
                found.add((version, length, network))
    return frozenset(found)


def _node_classes(snapshot: ClusterSnapshot, nodes: tuple[Node, ...], nsgs: Mapping[str, NetworkSecurityGroup],
                  context: AddressContext) -> list[list[Node]]:
    """Nodes grouped by everything an NSG or admin rule can tell apart, in node order.

    A node's ASGs are those of its NIC plus any ASG whose collected members include its IP.
    """
    admin = snapshot.admin_rules if not isinstance(snapshot.admin_rules, Unavailable) else ()
    prefixes = _rule_prefixes(nsgs, admin, context)
    asgs_of_ip: dict[str, set[str]] = {}
    for asg, members in context.asg_members.items():
        for member in members:
            asgs_of_ip.setdefault(member, set()).add(asg.lower())
    classes: dict[tuple[object, ...], list[Node]] = {}
    for node in nodes:
        assert node.private_ip
        try:
            inside: frozenset[object] = frozenset(_containing(ipaddress.ip_address(node.private_ip), prefixes))
        except ValueError:
            inside = frozenset({f"unparsed:{node.private_ip}"})
        key = (
            node.subnet_id.lower(),
            (node.nic_nsg_id or "").lower(),
            frozenset({a.lower() for a in node.asg_ids} | asgs_of_ip.get(node.private_ip, set())),
            inside,
        )
        classes.setdefault(key, []).append(node)
    return list(classes.values())


def _representative_pair(sources: list[Node], destinations: list[Node], *,
                         single_node: bool) -> tuple[Node, Node] | None:
    """One flow for a class pair; inside one class it must go between two different nodes."""
    if sources is not destinations:
        return sources[0], destinations[0]
    if len(sources) > 1:
        return sources[0], sources[1]
    return (sources[0], sources[0]) if single_node else None


def _path_nsg_ids(snapshot: ClusterSnapshot, node: Node) -> list[str]:
    subnet = snapshot.subnet_of(node)
    return [i for i in (subnet.nsg_id if subnet else None, node.nic_nsg_id) if i]


# ------------------------------------------------------------------ deciding one flow


@dataclass(frozen=True)
class _Rules:
    """Everything that decides a flow in this snapshot, prepared once per evaluation."""

    snapshot: ClusterSnapshot
    nsgs: Mapping[str, NetworkSecurityGroup]
    admin: CompiledAdminRules
    context: AddressContext

    def evaluate_flow(self, source: Node, destination: Node) -> list[tuple[str, PathDecision]]:
        """Outbound on the source (NIC then subnet NSG), then inbound on the destination (subnet then NIC)."""
        assert source.private_ip
        assert destination.private_ip
        src_subnet, dst_subnet = self.snapshot.subnet_of(source), self.snapshot.subnet_of(destination)
        if src_subnet is None or dst_subnet is None:
            missing = source if src_subnet is None else destination
            reason = f"subnet {missing.subnet_id} of node {missing.name} was not collected"
            return [("outbound", PathDecision(None, (), reason))]
        out: list[tuple[str, PathDecision]] = []
        for direction, nsg_ids in (("outbound", (source.nic_nsg_id, src_subnet.nsg_id)),
                                   ("inbound", (dst_subnet.nsg_id, destination.nic_nsg_id))):
            flow = Flow("Outbound" if direction == "outbound" else "Inbound", "Tcp", source.private_ip,
                        EPHEMERAL_SOURCE_PORT, destination.private_ip, KUBELET_PORT)
            out.append((direction, self.decide(flow, nsg_ids)))
        return out

    def decide(self, flow: Flow, nsg_ids: tuple[str | None, ...]) -> PathDecision:
        """The path verdict, with NSGs that could not be read treated as "anything may happen there".

        A definite deny elsewhere on the path (or by an admin rule) holds whatever the unread NSG says; an
        allow does not, because the unread NSG could still deny. AVNM AlwaysAllow skips NSGs altogether.
        """
        path: list[NetworkSecurityGroup | None] = []
        unread: list[str] = []
        for nsg_id in nsg_ids:
            found = (self.nsgs.get(nsg_id) or self.nsgs.get(nsg_id.lower())) if nsg_id else None
            if nsg_id and found is None:
                why = self.snapshot.nsg_errors.get(nsg_id.lower()) or "it is attached but was not collected"
                unread.append(f"NSG {nsg_id} could not be read: {why}")
            path.append(found)
        decision = evaluate_path(flow, path, context=self.context, admin_rules=self.admin)
        if not unread or decision.allowed is False:
            return decision
        if decision.allowed and any(d.container_id == AVNM_CONTAINER_ID and d.access == "AlwaysAllow"
                                    for d in decision.decisions):
            return decision
        return PathDecision(None, decision.decisions, "; ".join(unread))


def _describe_undecided(u: _Undecided) -> str:
    return f"{u.source.name} -> {u.destination.name} ({u.direction}): {u.reason}"


def _unchecked(undecided: list[_Undecided]) -> dict[str, str]:
    """Each node whose inbound 10250 from some node could not be decided, with the first reason."""
    out: dict[str, str] = {}
    for u in undecided:
        for name in u.destinations:
            out.setdefault(name, f"TCP {KUBELET_PORT} from {u.source.name} ({u.direction}) undecided: {u.reason}")
    return out


# ------------------------------------------------------------------ report


def _detected(
    snapshot: ClusterSnapshot,
    nsgs: Mapping[str, NetworkSecurityGroup],
    blocks: list[_Block],
    undecided: list[_Undecided],
    unchecked: Mapping[str, str],
) -> CauseResult:
    by_rule: dict[str, list[_Block]] = {}
    for block in blocks:
        key = block.decision.rule_id or f"{block.decision.container_id}/{block.decision.rule_name}"
        by_rule.setdefault(key, []).append(block)
    evidence: list[Evidence] = []
    remediation: list[str] = []
    affected: dict[str, tuple[str, ...]] = {}
    for rule_key, rule_blocks in by_rule.items():
        first = rule_blocks[0]
        d = first.decision
        destinations = sorted({name for b in rule_blocks for name in b.destinations})
        affected[rule_key] = tuple(destinations)
        flows = sorted({f"{b.source.name} -> {b.destination.name} ({b.direction})" for b in rule_blocks})
        evidence.append(
            Evidence(
                rule_key,
                f"{first.direction} TCP {KUBELET_PORT} from {first.source.name} ({first.source.private_ip}) is denied "
                f"by rule '{d.rule_name}' (priority {d.priority}) in {d.container_name}; affects "
                f"{len(destinations)} node(s): {', '.join(destinations[:10])}"
                + (" ..." if len(destinations) > 10 else "")
                + f"; denied flows: {', '.join(flows[:5])}" + (" ..." if len(flows) > 5 else ""),
            )
        )
        change = _introducing_change(snapshot, d)
        if change is not None:
            evidence.append(
                Evidence(change.resource_id,
                         f"introduced by {change.caller} at {change.timestamp} ({change.operation})")
            )
        remediation.extend(_remediation_for(snapshot, nsgs, first))
    evidence.extend(Evidence(u.destination.name, f"also undecided: {_describe_undecided(u)}")
                    for u in undecided)
    names = ", ".join(f"'{b[0].decision.rule_name}' in {b[0].decision.container_name}" for b in by_rule.values())
    summary = f"NSG rule(s) deny TCP {KUBELET_PORT} between nodes: {names}."
    if unchecked:
        summary += f" Not decided for {len(unchecked)} node(s): {', '.join(list(unchecked)[:10])}."
    return CAUSE.result(
        Status.DETECTED,
        summary,
        evidence=tuple(evidence),
        remediation=tuple(dict.fromkeys(remediation)),
        subjects=tuple(by_rule),
        affected=affected,
        unchecked=unchecked,
    )


def _introducing_change(snapshot: ClusterSnapshot, decision: RuleDecision) -> ActivityEvent | None:
    if isinstance(snapshot.nsg_changes, Unavailable) or not decision.rule_id:
        return None
    rule_id = decision.rule_id.lower()
    writes = [
        e
        for e in snapshot.nsg_changes
        if e.resource_id.lower() == rule_id and e.operation.lower().endswith("/write")
        and e.status.lower() in ("succeeded", "success", "")
    ]
    return max(writes, key=lambda e: e.timestamp) if writes else None


def _resource_group_of(resource_id: str) -> str:
    parts = resource_id.split("/")
    lowered = [p.lower() for p in parts]
    return parts[lowered.index("resourcegroups") + 1] if "resourcegroups" in lowered else "<resource-group>"


def _remediation_for(snapshot: ClusterSnapshot, nsgs: Mapping[str, NetworkSecurityGroup], block: _Block) -> list[str]:
    d = block.decision
    if d.container_id == AVNM_CONTAINER_ID:
        return [
            f"An Azure Virtual Network Manager security admin rule '{d.rule_name}' (priority {d.priority}) denies "
            f"TCP {KUBELET_PORT}; NSGs cannot override it. Remove it or add an AlwaysAllow/Allow admin rule for TCP "
            f"{KUBELET_PORT} from the node subnets with a lower priority number, then redeploy the configuration: "
            f"{d.rule_id or d.rule_name}"
        ]
    nsg = nsgs.get(d.container_id) or nsgs.get(d.container_id.lower())
    assert nsg is not None
    rg = _resource_group_of(nsg.id)
    is_inbound = block.direction == "inbound"
    peer = block.source if is_inbound else block.destination
    peer_subnet = snapshot.subnet_of(peer)
    prefixes = " ".join(peer_subnet.prefixes) if peer_subnet and peer_subnet.prefixes else "VirtualNetwork"
    direction: Direction = "Inbound" if is_inbound else "Outbound"
    steps: list[str] = []
    priority = first_free_priority_below(nsg, d.priority, direction)
    if priority is not None:
        address_flag = "--source-address-prefixes" if is_inbound else "--destination-address-prefixes"
        steps.append(
            f"az network nsg rule create --resource-group {rg} --nsg-name {nsg.name} "
            f"--name AllowKubelet{KUBELET_PORT}{direction} --priority {priority} --direction {direction} "
            f"--access Allow --protocol Tcp {address_flag} {prefixes} --destination-port-ranges {KUBELET_PORT}"
        )
    is_default = d.priority >= 65000
    if not is_default:
        steps.append(f"az network nsg rule delete --resource-group {rg} --nsg-name {nsg.name} --name {d.rule_name}")
    if priority is None:
        steps.append(
            f"No priority below {d.priority} is free in {nsg.name} (100 is the lowest): renumber a rule to make room "
            f"for an allow of TCP {KUBELET_PORT}" + ("" if is_default else f", or delete '{d.rule_name}'") + "."
        )
    return steps


CAUSE = Cause(
    id=CauseId.NSG,
    title="An NSG blocks TCP 10250 between nodes",
    description=(
        "A subnet or NIC network security group (or an AVNM security admin rule, evaluated first) denies TCP "
        "10250 from the node subnet/VNet to a node, so the tunnel cannot reach the kubelet."
    ),
    not_applicable=always_applicable,
    evaluate=_evaluate,
)
