"""nsg-blocks-10250: an NSG or AVNM security admin rule denies TCP 10250 between nodes.

The tunnel agent reaches each kubelet from a node inside the VNet, so the flow is evaluated the way Azure
does: outbound on the source NIC then subnet, inbound on the destination subnet then NIC, with AVNM admin
rules first in each direction. Each blocking rule is its own finding subject, so fixing one rule resolves
exactly that finding.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shared.causes.base import Cause
from shared.causes.common import KUBELET_PORT, always_applicable, running_nodes, tunnel_nodes
from shared.model import CauseId, CauseResult, Evidence, Status
from shared.netrules.nsg import evaluate_path, first_free_priority_below
from shared.netrules.nsg_types import Direction, Flow, NetworkSecurityGroup, PathDecision, RuleDecision
from shared.snapshot import ActivityEvent, ClusterSnapshot, Node, Unavailable

EPHEMERAL_SOURCE_PORT = 49152


@dataclass(frozen=True)
class _Block:
    source: Node
    destination: Node
    direction: str
    decision: RuleDecision


def _nsg(nsgs: Mapping[str, NetworkSecurityGroup], nsg_id: str | None) -> NetworkSecurityGroup | None:
    if not nsg_id:
        return None
    found = nsgs.get(nsg_id) or nsgs.get(nsg_id.lower())
    if found is None:
        raise LookupError(f"NSG {nsg_id} is attached but was not collected")
    return found


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
    sources = _representative_sources(snapshot, nodes)
    blocks: list[_Block] = []
    undecided: list[str] = []
    checked = 0
    for destination in nodes:
        for source in sources:
            if source.name == destination.name and len(nodes) > 1:
                continue
            checked += 1
            for direction, decision in _evaluate_flow(snapshot, nsgs, source, destination):
                if decision.allowed is None:
                    undecided.append(
                        f"{source.name} -> {destination.name} ({direction}): {decision.reason or 'undecidable'}"
                    )
                elif decision.allowed is False and decision.blocking is not None:
                    blocks.append(_Block(source, destination, direction, decision.blocking))
                    break
    if blocks:
        return _detected(snapshot, nsgs, blocks, undecided)
    if undecided:
        return CAUSE.unknown("; ".join(dict.fromkeys(undecided)))
    attached = sorted({nid for n in nodes for nid in _path_nsg_ids(snapshot, n)})
    return CAUSE.result(
        Status.CLEAR,
        f"TCP {KUBELET_PORT} is allowed between nodes ({checked} node-to-node flows checked across "
        f"{len(attached)} NSG(s)).",
        evidence=tuple(Evidence(nid, f"allows TCP {KUBELET_PORT} from the node subnets") for nid in attached),
    )


def _representative_sources(snapshot: ClusterSnapshot, nodes: tuple[Node, ...]) -> list[Node]:
    """One source per distinct (subnet, NIC NSG) among the tunnel nodes: rules only differ along those."""
    seen: dict[tuple[str, str | None], Node] = {}
    for node in tunnel_nodes(snapshot) or nodes:
        seen.setdefault((node.subnet_id.lower(), (node.nic_nsg_id or "").lower() or None), node)
    return list(seen.values())


def _path_nsg_ids(snapshot: ClusterSnapshot, node: Node) -> list[str]:
    subnet = snapshot.subnet_of(node)
    return [i for i in (subnet.nsg_id if subnet else None, node.nic_nsg_id) if i]


def _evaluate_flow(
    snapshot: ClusterSnapshot,
    nsgs: Mapping[str, NetworkSecurityGroup],
    source: Node,
    destination: Node,
) -> list[tuple[str, PathDecision]]:
    assert source.private_ip
    assert destination.private_ip
    src_subnet, dst_subnet = snapshot.subnet_of(source), snapshot.subnet_of(destination)
    if src_subnet is None or dst_subnet is None:
        missing = source if src_subnet is None else destination
        raise LookupError(f"subnet {missing.subnet_id} of node {missing.name} was not collected")
    admin_rules = snapshot.admin_rules if not isinstance(snapshot.admin_rules, Unavailable) else ()
    outbound = Flow("Outbound", "Tcp", source.private_ip, EPHEMERAL_SOURCE_PORT, destination.private_ip,
                    KUBELET_PORT)
    inbound = Flow("Inbound", "Tcp", source.private_ip, EPHEMERAL_SOURCE_PORT, destination.private_ip,
                   KUBELET_PORT)
    out_path = [_nsg(nsgs, source.nic_nsg_id), _nsg(nsgs, src_subnet.nsg_id)]
    in_path = [_nsg(nsgs, dst_subnet.nsg_id), _nsg(nsgs, destination.nic_nsg_id)]
    return [
        ("outbound", evaluate_path(outbound, out_path, context=snapshot.address_context, admin_rules=admin_rules)),
        ("inbound", evaluate_path(inbound, in_path, context=snapshot.address_context, admin_rules=admin_rules)),
    ]


def _detected(
    snapshot: ClusterSnapshot,
    nsgs: Mapping[str, NetworkSecurityGroup],
    blocks: list[_Block],
    undecided: list[str],
) -> CauseResult:
    by_rule: dict[str, list[_Block]] = {}
    for block in blocks:
        key = block.decision.rule_id or f"{block.decision.container_id}/{block.decision.rule_name}"
        by_rule.setdefault(key, []).append(block)
    evidence: list[Evidence] = []
    remediation: list[str] = []
    for rule_key, rule_blocks in by_rule.items():
        first = rule_blocks[0]
        d = first.decision
        destinations = sorted({b.destination.name for b in rule_blocks})
        evidence.append(
            Evidence(
                rule_key,
                f"{first.direction} TCP {KUBELET_PORT} from {first.source.name} ({first.source.private_ip}) is denied "
                f"by rule '{d.rule_name}' (priority {d.priority}) in {d.container_name}; affects "
                f"{len(destinations)} node(s): {', '.join(destinations[:10])}"
                + (" ..." if len(destinations) > 10 else ""),
            )
        )
        change = _introducing_change(snapshot, d)
        if change is not None:
            evidence.append(
                Evidence(change.resource_id,
                         f"introduced by {change.caller} at {change.timestamp} ({change.operation})")
            )
        remediation.extend(_remediation_for(snapshot, nsgs, first))
    evidence.extend(Evidence(snapshot.id, f"also undecided: {u}") for u in dict.fromkeys(undecided))
    names = ", ".join(f"'{b[0].decision.rule_name}' in {b[0].decision.container_name}" for b in by_rule.values())
    return CAUSE.result(
        Status.DETECTED,
        f"NSG rule(s) deny TCP {KUBELET_PORT} between nodes: {names}.",
        evidence=tuple(evidence),
        remediation=tuple(dict.fromkeys(remediation)),
        subjects=tuple(by_rule),
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
    if d.container_id == "avnm":
        return [
            f"An Azure Virtual Network Manager security admin rule '{d.rule_name}' (priority {d.priority}) denies "
            f"TCP {KUBELET_PORT}; NSGs cannot override it. Remove it or add an AlwaysAllow/Allow admin rule for TCP "
            f"{KUBELET_PORT} from the node subnets with a lower priority number, then redeploy the configuration: "
            f"{d.rule_id or d.rule_name}"
        ]
    nsg = _nsg(nsgs, d.container_id)
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
