"""API Server VNet Integration: what that mode needs from NSGs, reported under nsg-blocks-10250.

With VNet integration the API server sits behind an internal load balancer in a delegated subnet
(`apiServerAccessProfile.subnetId`) and dials each kubelet on TCP 10250 itself, without a tunnel. So the
flows to check are the API server subnet -> every node on 10250 (outbound through the API server
subnet's NSG, inbound through the node subnet NSG and NIC NSG, AVNM admin rules first), plus the rules
Microsoft documents for that subnet ("API Server VNet Integration", NSG security rules):

| destination | source | protocol/port | why |
|---|---|---|---|
| API server subnet | node (cluster) subnet | TCP 443 and 4443 | nodes -> API server |
| API server subnet | AzureLoadBalancer | TCP 9988 | load balancer health probes of the API server |

The result is merged into nsg-blocks-10250 (same id, same subjects: the rule to fix) by
`with_api_server_subnet`, so the contract's cause list is unchanged. API server addresses: any address
of the subnet may be the API server's, so one representative is evaluated per stretch of the subnet that
no rule prefix splits (exact, and usually one address).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from shared.causes.base import Cause
from shared.model import CauseResult, Evidence, Status
from shared.netrules.nsg import (
    AVNM_CONTAINER_ID,
    CompiledAdminRules,
    RuleNetwork,
    compile_admin_rules,
    evaluate_path,
    first_free_priority_below,
    rule_networks,
)
from shared.netrules.nsg_types import Direction, Flow, NetworkSecurityGroup, PathDecision, RuleDecision
from shared.snapshot import ClusterSnapshot, Node, Subnet, Unavailable
from shared.tunnel import KUBELET_PORT

EPHEMERAL_SOURCE_PORT = 49152
AZURE_LOAD_BALANCER_IP = "168.63.129.16"
API_SERVER_PORTS = (443, 4443)
HEALTH_PROBE_PORT = 9988


@dataclass(frozen=True)
class _Need:
    """One flow the mode needs: `what` for people, source/destination IPs, port, the NSG path per direction."""

    what: str
    source: str
    destination: str
    port: int
    node: str  # the node the flow is about (its finding scope)
    peer_prefixes: tuple[str, ...]  # what an allow rule would name as the other side
    paths: tuple[tuple[Direction, tuple[str | None, ...]], ...]


@dataclass
class ApiSubnetCheck:
    """Outcome of the API-server-subnet flows: blocks by rule, undecided flows by node, flows checked."""

    blocks: dict[str, list[tuple[_Need, Direction, RuleDecision]]] = field(default_factory=dict)
    undecided: dict[str, str] = field(default_factory=dict)
    checked: int = 0
    reason: str | None = None  # the whole check could not run


def check(snapshot: ClusterSnapshot) -> ApiSubnetCheck | None:
    """None when the cluster does not use API Server VNet Integration (nothing to add)."""
    if not snapshot.api_server_vnet_integration:
        return None
    if not snapshot.api_server_subnet_id:
        return ApiSubnetCheck(reason="API Server VNet Integration is on but the cluster reports no API server "
                                     "subnet and not exactly one subnet of the node VNets is delegated to AKS: the "
                                     "API server subnet's NSG rules cannot be checked")
    for piece in (snapshot.nodes, snapshot.nsgs, snapshot.admin_rules):
        if isinstance(piece, Unavailable):
            return ApiSubnetCheck(reason=piece.reason)
    assert not isinstance(snapshot.nodes, Unavailable)
    assert not isinstance(snapshot.nsgs, Unavailable)
    assert not isinstance(snapshot.admin_rules, Unavailable)
    api = snapshot.subnets.get(snapshot.api_server_subnet_id.lower())
    if api is None:
        why = snapshot.nsg_errors.get(snapshot.api_server_subnet_id.lower()) or "it was not collected"
        return ApiSubnetCheck(reason=f"the API server subnet {snapshot.api_server_subnet_id} could not be read: {why}")
    nodes = [n for n in snapshot.nodes if n.running and n.private_ip]
    if not nodes:
        return ApiSubnetCheck(reason="the cluster has no running nodes with a private IP to check")
    admin = compile_admin_rules(snapshot.admin_rules)
    networks = rule_networks(snapshot.nsgs, snapshot.admin_rules)
    result = ApiSubnetCheck()
    for api_ip in _representatives(api, networks):
        for members in _node_classes(snapshot, nodes, networks):
            if snapshot.subnet_of(members[0]) is None:  # its subnet NSG is unknown, not absent
                why = f"subnet {members[0].subnet_id} of node {members[0].name} was not collected: its NSG is unknown"
                for node in members:
                    result.undecided.setdefault(node.name, why)
                continue
            for need in _needs(snapshot, api, api_ip, members[0]):
                result.checked += 1
                _decide(snapshot, snapshot.nsgs, admin, need, result, members=tuple(n.name for n in members))
    return result


def _node_classes(snapshot: ClusterSnapshot, nodes: Sequence[Node],
                  networks: Sequence[RuleNetwork]) -> list[list[Node]]:
    """Nodes no rule can tell apart (subnet, NIC NSG, ASGs, which rule prefixes hold their IP): one flow each."""
    asgs_of_ip: dict[str, set[str]] = {}
    for asg, members in snapshot.address_context.asg_members.items():
        for member in members:
            asgs_of_ip.setdefault(member, set()).add(asg.lower())
    classes: dict[tuple[object, ...], list[Node]] = {}
    for node in nodes:
        assert node.private_ip
        try:
            ip = ipaddress.ip_address(node.private_ip)
            inside = frozenset(str(n) for n in networks if n.version == ip.version and ip in n)
        except ValueError:
            inside = frozenset({node.private_ip})
        key = (node.subnet_id.lower(), (node.nic_nsg_id or "").lower(),
               frozenset({a.lower() for a in node.asg_ids} | asgs_of_ip.get(node.private_ip, set())), inside)
        classes.setdefault(key, []).append(node)
    return list(classes.values())


def _needs(snapshot: ClusterSnapshot, api: Subnet, api_ip: str, node: Node) -> list[_Need]:
    assert node.private_ip
    node_subnet = snapshot.subnet_of(node)
    node_nsg = node_subnet.nsg_id if node_subnet else None
    node_prefixes = node_subnet.prefixes if node_subnet and node_subnet.prefixes else (node.private_ip,)
    needs = [_Need(f"TCP {KUBELET_PORT} from the API server subnet to node {node.name}", api_ip, node.private_ip,
                   KUBELET_PORT, node.name, api.prefixes,
                   (("Outbound", (api.nsg_id,)), ("Inbound", (node_nsg, node.nic_nsg_id))))]
    for port in API_SERVER_PORTS:
        needs.append(_Need(f"TCP {port} from node {node.name} to the API server subnet", node.private_ip, api_ip,
                           port, node.name, node_prefixes,
                           (("Outbound", (node.nic_nsg_id, node_nsg)), ("Inbound", (api.nsg_id,)))))
    needs.append(_Need(f"TCP {HEALTH_PROBE_PORT} from AzureLoadBalancer to the API server subnet",
                       AZURE_LOAD_BALANCER_IP, api_ip, HEALTH_PROBE_PORT, node.name, ("AzureLoadBalancer",),
                       (("Inbound", (api.nsg_id,)),)))
    return needs


def _decide(snapshot: ClusterSnapshot, nsgs: Mapping[str, NetworkSecurityGroup], admin: CompiledAdminRules,
            need: _Need, result: ApiSubnetCheck, *, members: tuple[str, ...]) -> None:
    """Decide `need` (for its class's representative node) and record it for every node of the class."""
    for direction, nsg_ids in need.paths:
        flow = Flow(direction, "Tcp", need.source, EPHEMERAL_SOURCE_PORT, need.destination, need.port)
        path: list[NetworkSecurityGroup | None] = []
        unread: list[str] = []
        for nsg_id in nsg_ids:
            found = (nsgs.get(nsg_id) or nsgs.get(nsg_id.lower())) if nsg_id else None
            if nsg_id and found is None:
                why = snapshot.nsg_errors.get(nsg_id.lower()) or "it is attached but was not collected"
                unread.append(f"NSG {nsg_id} could not be read: {why}")
            path.append(found)
        decision: PathDecision = evaluate_path(flow, path, context=snapshot.address_context, admin_rules=admin)
        if decision.allowed is False and decision.blocking is not None:
            d = decision.blocking
            key = d.rule_id or f"{d.container_id}/{d.rule_name}"
            result.blocks.setdefault(key, []).extend((replace(need, node=name), direction, d) for name in members)
            return  # denied: the other direction no longer matters
        always = decision.allowed and any(x.container_id == AVNM_CONTAINER_ID and x.access == "AlwaysAllow"
                                          for x in decision.decisions)
        if decision.allowed is None or (unread and not always):
            why = (decision.reason or "undecidable") if decision.allowed is None else "; ".join(unread)
            for name in members:
                result.undecided.setdefault(name, f"{need.what} ({direction.lower()}) undecided: {why}")




def _representatives(api: Subnet, networks: Sequence[RuleNetwork]) -> list[str]:
    """One address per stretch of the API server subnet that no rule prefix boundary splits."""
    reps: list[str] = []
    for prefix in api.prefixes:
        try:
            net = ipaddress.ip_network(prefix, strict=False)
        except ValueError:
            continue
        first = int(net.network_address) + (4 if net.num_addresses > 8 else 0)  # Azure reserves .0-.3
        last = int(net.broadcast_address) - (1 if net.num_addresses > 8 else 0)
        cuts = {first}
        for other in networks:
            if other.version != net.version:
                continue
            for cut in (int(other.network_address), int(other.broadcast_address) + 1):
                if first < cut <= last:
                    cuts.add(cut)
        reps.extend(str(ipaddress.ip_address(c)) for c in sorted(cuts))
    return reps


# ------------------------------------------------------------------ merging into nsg-blocks-10250


def merge(base: CauseResult, extra: ApiSubnetCheck | None, snapshot: ClusterSnapshot,
          cause: Cause) -> CauseResult:
    """The node-to-node verdict and the API-server-subnet verdict as one nsg-blocks-10250 result."""
    if extra is None:
        return base
    if extra.reason is not None:
        piece = snapshot.api_server_subnet_id or snapshot.id
        if base.status is Status.DETECTED:
            return replace(base, unchecked={**base.unchecked, piece: extra.reason})
        joined = "; ".join(r for r in (base.reason, f"API server subnet: {extra.reason}") if r)
        return cause.unknown(joined, evidence=base.evidence, unchecked={**base.unchecked, piece: extra.reason})
    evidence, remediation = _report(snapshot, extra)
    unchecked = {**base.unchecked, **extra.undecided}
    if extra.blocks or base.status is Status.DETECTED:
        names = ", ".join(f"'{b[0][2].rule_name}' in {b[0][2].container_name}" for b in extra.blocks.values())
        summary = (base.summary + " " if base.status is Status.DETECTED else "") + (
            f"API Server VNet Integration: NSG rule(s) {names} deny traffic the API server subnet needs."
            if extra.blocks else "")
        affected = {**base.affected, **{k: tuple(sorted({n.node for n, _, _ in v})) for k, v in extra.blocks.items()}}
        return cause.result(Status.DETECTED, summary.strip(), evidence=(*base.evidence, *evidence),
                            remediation=tuple(dict.fromkeys((*base.remediation, *remediation))),
                            subjects=tuple(dict.fromkeys((*base.subjects, *extra.blocks))), affected=affected,
                            unchecked=unchecked)
    if base.status is Status.UNKNOWN or extra.undecided:
        reasons = [r for r in (base.reason,) if r]
        reasons.extend(dict.fromkeys(extra.undecided.values()))
        return cause.unknown("; ".join(reasons), evidence=(*base.evidence, *evidence), unchecked=unchecked)
    return cause.result(
        Status.CLEAR,
        f"{base.summary} API Server VNet Integration: the API server subnet reaches every node on TCP {KUBELET_PORT} "
        f"and the NSG rules Microsoft documents for it hold ({extra.checked} flows checked).",
        evidence=(*base.evidence, *evidence),
    )


def _report(snapshot: ClusterSnapshot, extra: ApiSubnetCheck) -> tuple[list[Evidence], list[str]]:
    evidence: list[Evidence] = []
    remediation: list[str] = []
    nsgs = snapshot.nsgs if not isinstance(snapshot.nsgs, Unavailable) else {}
    for key, blocks in extra.blocks.items():
        need, direction, d = blocks[0]
        nodes = sorted({n.node for n, _, _ in blocks})
        evidence.append(Evidence(key, f"{need.what} ({direction.lower()}) is denied by rule '{d.rule_name}' "
                                      f"(priority {d.priority}) in {d.container_name}; affects {len(nodes)} node(s): "
                                      + ", ".join(nodes[:10]) + (" ..." if len(nodes) > 10 else "")))
        for need, direction, d in {(n.port, dr, dd.rule_id): (n, dr, dd) for n, dr, dd in blocks}.values():
            remediation.extend(_remediation(nsgs, need, direction, d))
    if not extra.blocks and snapshot.api_server_subnet_id:
        evidence.append(Evidence(snapshot.api_server_subnet_id,
                                 f"API server subnet: TCP {KUBELET_PORT} to the nodes, TCP 443/4443 from them and TCP "
                                 f"{HEALTH_PROBE_PORT} from AzureLoadBalancer are allowed"))
    return evidence, remediation


def _remediation(nsgs: Mapping[str, NetworkSecurityGroup], need: _Need, direction: Direction,
                 d: RuleDecision) -> list[str]:
    if d.container_id == AVNM_CONTAINER_ID:
        return [f"An Azure Virtual Network Manager security admin rule '{d.rule_name}' (priority {d.priority}) denies "
                f"{need.what}; NSGs cannot override it. Remove it or add an Allow/AlwaysAllow admin rule with a lower "
                f"priority number: {d.rule_id or d.rule_name}"]
    nsg = nsgs.get(d.container_id) or nsgs.get(d.container_id.lower())
    if nsg is None:
        return []
    parts = nsg.id.split("/")
    rg = parts[parts.index("resourceGroups") + 1] if "resourceGroups" in parts else "<resource-group>"
    priority = first_free_priority_below(nsg, d.priority, direction)
    if priority is None:
        return [f"No priority below {d.priority} is free in {nsg.name}: renumber a rule to make room for an allow "
                f"of {need.what}."]
    flag = "--source-address-prefixes" if direction == "Inbound" else "--destination-address-prefixes"
    peer = " ".join(need.peer_prefixes) if direction == "Inbound" else need.destination
    return [f"az network nsg rule create --resource-group {rg} --nsg-name {nsg.name} "
            f"--name AllowApiServer{need.port}{direction} --priority {priority} --direction {direction} "
            f"--access Allow --protocol Tcp {flag} {peer} --destination-port-ranges {need.port}"]


def with_api_server_subnet(cause: Cause) -> Cause:
    """nsg-blocks-10250 extended with the API-server-subnet flows; a crash in the extension never hides the
    node-to-node verdict (it only keeps the result from being clear)."""
    inner: Callable[[ClusterSnapshot], CauseResult] = cause.evaluate

    def evaluate(snapshot: ClusterSnapshot) -> CauseResult:
        base = inner(snapshot)
        try:
            extra = check(snapshot)
        except Exception as exc:  # the extension must not take the base verdict down with it
            extra = ApiSubnetCheck(reason=f"the API server subnet check failed: {type(exc).__name__}: {exc}")
        return merge(base, extra, snapshot, cause)

    return replace(cause, evaluate=evaluate)
