"""egress-tunnel-port-blocked: the node cannot reach the API server on the tunnel's port.

Konnectivity dials TCP 443 to `*.hcp.<region>.azmk8s.io`; the older tunnel-front dials TCP 9000 and aks-link
UDP 1194. The probe's own connection attempt is the strongest evidence; the control plane (NSG outbound
rules, a default route through Azure Firewall and its rules) explains where the block sits.
"""

from __future__ import annotations

import fnmatch

from shared.causes.base import Cause
from shared.causes.common import NodeOutcome, always_applicable, fold_node_outcomes, probes_off_reason, running_nodes
from shared.model import CauseId, CauseResult, Status
from shared.netrules.nsg import evaluate_path
from shared.netrules.nsg_types import Flow
from shared.snapshot import ClusterSnapshot, Firewall, Node, NodeProbe, Unavailable
from shared.tunnel import api_host, tunnel_ports

__all__ = ["api_host", "tunnel_ports"]

BLOCKED_OUTCOMES = {"timeout", "refused", "noroute"}


def _evaluate(snapshot: ClusterSnapshot) -> CauseResult:
    nodes = running_nodes(snapshot)
    if isinstance(nodes, Unavailable):
        return CAUSE.unknown(nodes.reason)
    ports = tunnel_ports(snapshot)
    outcomes = [_probe_outcome(snapshot, node, snapshot.probes[node.name], ports)
                for node in nodes if node.name in snapshot.probes]
    outcomes.extend(_control_plane_outcomes(snapshot, nodes, ports))
    if not outcomes:
        return CAUSE.unknown(
            (probes_off_reason(snapshot) or "no node could be probed")
            + "; the egress path has no Azure Firewall or NSG evidence to judge from the control plane"
        )
    return fold_node_outcomes(
        CAUSE, outcomes,
        problem=f"Tunnel egress ({', '.join(ports)} to {api_host(snapshot)}) is blocked",
        not_applicable="no egress path to check",
    )


def _probe_outcome(snapshot: ClusterSnapshot, node: Node, probe: NodeProbe | Unavailable,
                   ports: tuple[str, ...]) -> NodeOutcome:
    if isinstance(probe, Unavailable):
        return NodeOutcome(node.name, Status.UNKNOWN, probe.reason)
    results = {p: probe.egress.get(p) for p in ports}
    blocked = {p: o for p, o in results.items() if o in BLOCKED_OUTCOMES}
    if blocked:
        said = ", ".join(f"{p} {o}" for p, o in blocked.items())
        return NodeOutcome(
            node.name, Status.DETECTED,
            f"connection from the node to {api_host(snapshot)} ({probe.api_server_ip or 'unresolved'}): {said}",
            tuple(_allow_advice(snapshot, p) for p in blocked),
        )
    missing = [p for p, o in results.items() if o != "ok"]
    if missing:
        said = ", ".join(f"{p}: {results[p] or 'not tested'}" for p in missing)
        return NodeOutcome(node.name, Status.UNKNOWN, f"egress to the API server could not be tested ({said})")
    return NodeOutcome(node.name, Status.CLEAR,
                       f"reached {api_host(snapshot)} on {', '.join(ports)} from the node")


def _allow_advice(snapshot: ClusterSnapshot, port: str) -> str:
    proto, number = port.split("/")
    return (
        f"Allow {proto.upper()} {number} from the node subnets to {api_host(snapshot)} (the API server) on every "
        "hop of the egress path: NSG outbound rules, the route table's next hop (Azure Firewall / NVA: an "
        "application rule for the FQDN or the AzureKubernetesService FQDN tag), and any on-premises firewall."
    )


def _control_plane_outcomes(snapshot: ClusterSnapshot, nodes: tuple[Node, ...],
                            ports: tuple[str, ...]) -> list[NodeOutcome]:
    outcomes: list[NodeOutcome] = []
    outcomes.extend(_nsg_outbound_outcomes(snapshot, nodes, ports))
    firewall = _firewall_outcome(snapshot, ports)
    if firewall is not None:
        outcomes.append(firewall)
    return outcomes


def _api_ip(snapshot: ClusterSnapshot) -> str | None:
    for probe in snapshot.probes.values():
        if isinstance(probe, NodeProbe) and probe.api_server_ip:
            return probe.api_server_ip
    return None


def _nsg_outbound_outcomes(snapshot: ClusterSnapshot, nodes: tuple[Node, ...],
                           ports: tuple[str, ...]) -> list[NodeOutcome]:
    """NSG outbound check towards the API server's address, when a probe resolved it."""
    destination = _api_ip(snapshot)
    if destination is None or isinstance(snapshot.nsgs, Unavailable):
        return []
    admin = snapshot.admin_rules if not isinstance(snapshot.admin_rules, Unavailable) else ()
    outcomes: list[NodeOutcome] = []
    seen: set[tuple[str, str | None]] = set()
    for node in nodes:
        subnet = snapshot.subnet_of(node)
        key = (node.subnet_id.lower(), node.nic_nsg_id)
        if subnet is None or node.private_ip is None or key in seen:
            continue
        seen.add(key)
        path = [snapshot.nsgs.get(i) if i else None for i in (node.nic_nsg_id, subnet.nsg_id)]
        for port in ports:
            proto, number = port.split("/")
            flow = Flow("Outbound", proto.capitalize(), node.private_ip, 49152, destination, int(number))
            decision = evaluate_path(flow, path, context=snapshot.address_context, admin_rules=admin)
            if decision.allowed is False and decision.blocking is not None:
                d = decision.blocking
                outcomes.append(NodeOutcome(
                    d.rule_id or d.container_id, Status.DETECTED,
                    f"outbound {port} to the API server ({destination}) is denied by rule '{d.rule_name}' "
                    f"(priority {d.priority}) in {d.container_name}",
                    (_allow_advice(snapshot, port),),
                ))
    return outcomes


def _firewall_outcome(snapshot: ClusterSnapshot, ports: tuple[str, ...]) -> NodeOutcome | None:
    """The default route through Azure Firewall: do its rules let the tunnel out?"""
    firewall = snapshot.firewall
    if firewall is None:
        return None
    if isinstance(firewall, Unavailable):
        return NodeOutcome("egress firewall", Status.UNKNOWN, firewall.reason)
    blocked = [p for p in ports if not firewall_allows(firewall, snapshot, p)]
    if not blocked:
        allowed = ", ".join(ports)
        return NodeOutcome(firewall.id, Status.CLEAR, f"Azure Firewall rules allow {allowed} to the API server")
    return NodeOutcome(
        firewall.id, Status.DETECTED,
        f"the default route sends egress through Azure Firewall {firewall.private_ip}, whose rules do not allow "
        f"{', '.join(blocked)} to {api_host(snapshot)} (Azure Firewall denies by default)",
        tuple(_firewall_fix(snapshot, firewall, p) for p in blocked),
    )


def firewall_allows(firewall: Firewall, snapshot: ClusterSnapshot, port: str) -> bool:
    """First matching rule collection by priority decides; nothing matching means Azure Firewall denies."""
    proto, number = port.split("/")
    host = api_host(snapshot)
    api_ip = _api_ip(snapshot)
    for rule in sorted(firewall.rules, key=lambda r: (r.collection_priority, r.kind != "network")):
        if rule.kind == "application":
            matches = proto == "tcp" and (
                any(p.lower() in (f"https:{number}",) for p in rule.protocols)
                and (any(fnmatch.fnmatch(host.lower(), f.lower()) for f in rule.destination_fqdns)
                     or any(t.lower() == "azurekubernetesservice" for t in rule.fqdn_tags))
            )
        else:
            matches = (
                any(p.upper() in (proto.upper(), "ANY") for p in rule.protocols)
                and any(_port_in(number, r) for r in rule.destination_ports)
                and (
                    any(a in ("*", "AzureCloud", f"AzureCloud.{snapshot.location}") or a == api_ip
                        for a in rule.destination_addresses)
                    or any(fnmatch.fnmatch(host.lower(), f.lower()) for f in rule.destination_fqdns)
                )
            )
        if matches:
            return rule.action.lower() == "allow"
    return False


def _port_in(port: str, spec: str) -> bool:
    if spec == "*":
        return True
    if "-" in spec:
        low, high = spec.split("-", 1)
        return int(low) <= int(port) <= int(high)
    return spec == port


def _firewall_fix(snapshot: ClusterSnapshot, firewall: Firewall, port: str) -> str:
    name = firewall.id.rstrip("/").split("/")[-1]
    rg = firewall.id.split("/")[4] if firewall.id.count("/") > 4 else "<resource-group>"
    proto, number = port.split("/")
    if proto == "tcp" and number == "443":
        return (
            f"az network firewall application-rule create --resource-group {rg} --firewall-name {name} "
            f"--collection-name aks-tunnel --name allow-apiserver --priority 100 --action Allow "
            f"--source-addresses '*' --protocols Https=443 --fqdn-tags AzureKubernetesService"
        )
    return (
        f"az network firewall network-rule create --resource-group {rg} --firewall-name {name} "
        f"--collection-name aks-tunnel --name allow-{proto}-{number} --priority 100 --action Allow "
        f"--source-addresses '*' --protocols {proto.upper()} --destination-addresses AzureCloud.{snapshot.location} "
        f"--destination-ports {number}"
    )


CAUSE = Cause(
    id=CauseId.EGRESS,
    title="Egress for the tunnel port is blocked",
    description=(
        "The node cannot reach the API server on the tunnel's port: TCP 443 (Konnectivity), TCP 9000 (tunnel-front) "
        "or UDP 1194 (aks-link)."
    ),
    not_applicable=always_applicable,
    evaluate=_evaluate,
)
