"""The control plane's view of one node's egress to the API server: NSGs, the route, and the hop behind it.

Each hop is judged with what Azure configuration says: the NIC and subnet NSGs' outbound rules (when a
node probe resolved the API server's address), the route the subnet's route table picks, and the Azure
Firewall behind a virtual-appliance next hop (classic rules or Firewall Policy, shared.netrules.firewall).
The answer is a `HopVerdict`: `deny` names the thing to fix; `allow` means every hop the monitor can read
lets the flow out; `unknown` says which hop could not be judged. Configuration alone never proves the
path open (an on-premises device, a forced tunnel, a DNS answer may still differ), so callers turn
`allow` into `clear` only together with a node probe that reached the API server.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from shared.azure.ids import norm
from shared.netrules.firewall import CompiledFirewall, FirewallDecision, Packet
from shared.netrules.nsg import evaluate_path
from shared.netrules.nsg_types import Flow, NetworkSecurityGroup
from shared.snapshot import ClusterSnapshot, Firewall, Node, NodeProbe, Route, Unavailable
from shared.tunnel import api_host

HopKind = Literal["deny", "allow", "unknown"]


@dataclass(frozen=True)
class HopVerdict:
    kind: HopKind
    detail: str
    subject: str | None = None  # deny: what to fix; unknown: the hop that could not be judged, if known
    remediation: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    firewall: Firewall | None = None  # the Azure Firewall on the path, if one was judged


def api_ip(snapshot: ClusterSnapshot) -> str | None:
    """The API server address a node resolved (the probe's `getent`), or None without probes."""
    for probe in snapshot.probes.values():
        if isinstance(probe, NodeProbe) and probe.api_server_ip:
            return probe.api_server_ip
    return None


def allow_advice(snapshot: ClusterSnapshot, port: str) -> str:
    proto, number = port.split("/")
    return (
        f"Allow {proto.upper()} {number} from the node subnets to {api_host(snapshot)} (the API server) on every "
        "hop of the egress path: NSG outbound rules, the route table's next hop (Azure Firewall / NVA: an "
        "application rule for the FQDN or the AzureKubernetesService FQDN tag), and any on-premises firewall."
    )


class EgressPath:
    """Judges (node, port) against the snapshot's egress configuration; firewalls are compiled once."""

    def __init__(self, snapshot: ClusterSnapshot) -> None:
        self.snapshot = snapshot
        self.api_ip = api_ip(snapshot)
        self.host = api_host(snapshot)
        self._compiled: dict[str, CompiledFirewall] = {}

    def judge(self, node: Node, port: str) -> HopVerdict:
        nsg = self._nsgs(node, port)
        if nsg.kind == "deny":
            return nsg
        route = self._route(node, port)
        if route.kind == "deny":
            return route
        notes = (*nsg.notes, *route.notes)
        if nsg.kind == "unknown" or route.kind == "unknown":
            reasons = "; ".join(v.detail for v in (nsg, route) if v.kind == "unknown")
            return HopVerdict("unknown", reasons, route.subject if route.kind == "unknown" else None,
                              notes=notes, firewall=route.firewall)
        return HopVerdict("allow", f"{nsg.detail}; {route.detail}", notes=notes, firewall=route.firewall)

    # ------------------------------------------------------------------ NSGs

    def _nsgs(self, node: Node, port: str) -> HopVerdict:
        snapshot = self.snapshot
        if self.api_ip is None:
            return HopVerdict("unknown", "NSG outbound rules not evaluated: the API server's address is known only "
                                         "from a node probe")
        if isinstance(snapshot.nsgs, Unavailable):
            return HopVerdict("unknown", f"NSGs not read: {snapshot.nsgs.reason}")
        subnet = snapshot.subnet_of(node)
        if subnet is None or node.private_ip is None:
            return HopVerdict("unknown", f"the subnet of node {node.name} was not read")
        path: list[NetworkSecurityGroup | None] = []
        for nsg_id in (node.nic_nsg_id, subnet.nsg_id):
            if not nsg_id:
                path.append(None)
                continue
            found = snapshot.nsgs.get(nsg_id) or snapshot.nsgs.get(norm(nsg_id))
            if found is None:
                why = snapshot.nsg_errors.get(norm(nsg_id)) or "attached but not collected"
                return HopVerdict("unknown", f"NSG {nsg_id.rsplit('/', 1)[-1]} not read: {why}")
            path.append(found)
        admin = snapshot.admin_rules if not isinstance(snapshot.admin_rules, Unavailable) else ()
        proto, number = port.split("/")
        flow = Flow("Outbound", proto.capitalize(), node.private_ip, 49152, self.api_ip, int(number))
        decision = evaluate_path(flow, path, context=snapshot.address_context, admin_rules=admin)
        if decision.allowed is False and decision.blocking is not None:
            d = decision.blocking
            return HopVerdict(
                "deny", f"outbound {port} to the API server ({self.api_ip}) is denied by rule '{d.rule_name}' "
                        f"(priority {d.priority}) in {d.container_name}",
                d.rule_id or d.container_id, (allow_advice(snapshot, port),))
        if decision.allowed is None:
            return HopVerdict("unknown", f"NSG outbound rules undecidable: {decision.reason}")
        notes = () if not isinstance(snapshot.admin_rules, Unavailable) else (
            f"AVNM admin rules not read: {snapshot.admin_rules.reason}",)
        if notes:
            return HopVerdict("unknown", notes[0])
        return HopVerdict("allow", "NSG outbound rules allow it")

    # ------------------------------------------------------------------ route and next hop

    def _route(self, node: Node, port: str) -> HopVerdict:
        snapshot = self.snapshot
        subnet = snapshot.subnet_of(node)
        if subnet is None:
            return HopVerdict("unknown", f"the subnet of node {node.name} was not read")
        routes: tuple[Route, ...] = ()
        table_id = subnet.route_table_id
        if table_id:
            if norm(table_id) in snapshot.unreadable_route_tables:
                return HopVerdict("unknown", f"route table {table_id.rsplit('/', 1)[-1]} not read: "
                                             f"{snapshot.unreadable_route_tables[norm(table_id)]}", table_id)
            table = snapshot.route_tables.get(norm(table_id)) or snapshot.route_tables.get(table_id)
            if table is None:
                return HopVerdict("unknown", f"route table {table_id.rsplit('/', 1)[-1]} was not collected", table_id)
            routes = table.routes
        chosen = self._effective_route(routes)
        if isinstance(chosen, str):
            return HopVerdict("unknown", chosen, table_id)
        if chosen is None:
            if snapshot.outbound_type.lower() == "userdefinedrouting":
                return HopVerdict("unknown", "outboundType userDefinedRouting without a default route (0.0.0.0/0) "
                                             "on the node subnet: egress goes where BGP or a gateway sends it, which "
                                             "the monitor cannot see", table_id)
            return HopVerdict("allow", "no user-defined route: Azure's system route to the internet")
        route_id = f"{table_id}/routes/{chosen.name}" if table_id else chosen.name
        hop = chosen.next_hop_type.lower()
        if hop == "none":
            return HopVerdict("deny", f"route '{chosen.name}' ({chosen.address_prefix}) sends the traffic to next hop "
                                      "None, which drops it", route_id,
                              (f"Change route '{chosen.name}' in {table_id} so that traffic to the API server has a "
                               "next hop that reaches it (Internet, or a firewall that allows it).",))
        if hop == "internet":
            return HopVerdict("allow", f"route '{chosen.name}' sends it to the internet")
        if hop == "vnetlocal":
            return HopVerdict("allow", f"route '{chosen.name}' keeps it in the virtual network")
        if hop != "virtualappliance":
            return HopVerdict("unknown", f"route '{chosen.name}' ({chosen.address_prefix}) sends the traffic to "
                                         f"{chosen.next_hop_type}, a hop the monitor cannot judge", route_id)
        appliance = snapshot.appliances.get(chosen.next_hop_ip or "")
        if appliance is None and snapshot.firewall is not None and chosen.address_prefix == "0.0.0.0/0":
            appliance = snapshot.firewall  # snapshots built before `appliances` existed
        if appliance is None or isinstance(appliance, Unavailable):
            why = appliance.reason if isinstance(appliance, Unavailable) else (
                f"next hop {chosen.next_hop_ip} is a virtual appliance the monitor did not read")
            return HopVerdict("unknown", f"route '{chosen.name}' sends the traffic to {chosen.next_hop_ip}: {why}",
                              route_id)
        return self._firewall(appliance, node, port)

    def _effective_route(self, routes: tuple[Route, ...]) -> Route | str | None:
        """Longest prefix match for the API server's address; without it, the default route (0.0.0.0/0),
        unless another route could carry the API server (a service tag or a public prefix): then a reason."""
        default = next((r for r in routes if r.address_prefix == "0.0.0.0/0"), None)
        if self.api_ip is None:
            if self.snapshot.private:
                return ("the private API server's address is known only from a node probe, so the route it takes "
                        "cannot be told")
            for r in routes:
                if r is default or (default and r.next_hop_type == default.next_hop_type
                                    and r.next_hop_ip == default.next_hop_ip):
                    continue
                if _may_carry_api_server(r):
                    return (f"route '{r.name}' ({r.address_prefix}, next hop {r.next_hop_type}) may carry the API "
                            "server's traffic, whose address is known only from a node probe")
            return default
        address = ipaddress.ip_address(self.api_ip)
        best: tuple[int, Route | None] = (-1, None)
        for r in routes:
            try:
                network = ipaddress.ip_network(r.address_prefix, strict=False)
            except ValueError:
                return (f"route '{r.name}' uses {r.address_prefix}, a service tag whose ranges are not known here, "
                        "so the route to the API server cannot be told")
            if address.version == network.version and address in network and network.prefixlen > best[0]:
                best = (network.prefixlen, r)
        for prefix in self.snapshot.address_context.vnet_prefixes:  # system VNet routes; a UDR wins a tie
            try:
                network = ipaddress.ip_network(prefix, strict=False)
            except ValueError:
                continue
            if address.version == network.version and address in network and network.prefixlen > best[0]:
                best = (network.prefixlen, Route("virtual network (system route)", prefix, "VnetLocal"))
        return best[1]

    def _firewall(self, firewall: Firewall, node: Node, port: str) -> HopVerdict:
        compiled = self._compiled.get(firewall.id)
        if compiled is None:
            compiled = self._compiled[firewall.id] = CompiledFirewall(firewall)
        proto, number = port.split("/")
        packet = Packet(node.private_ip or "", proto.upper(), int(number), self.host, self.api_ip,
                        tls=port == "tcp/443")
        decision = compiled.evaluate(packet)
        where = describe_firewall(firewall)
        notes: list[str] = []
        if firewall.threat_intel_mode.lower() == "deny":
            notes.append(f"{where} has threat intelligence in Deny mode; the AKS API server FQDN is not on "
                         "Microsoft's threat-intelligence list, so this is noted, not judged")
        if decision.allowed is None:
            return HopVerdict("unknown", f"{where}: {decision.detail}", firewall.policy_id or firewall.id,
                              notes=tuple(notes), firewall=firewall)
        if decision.allowed:
            rule = decision.rule
            if rule is not None and rule.terminate_tls and port == "tcp/443":
                return HopVerdict(
                    "deny", f"{where}: application rule '{rule.name}' (collection '{rule.collection}') inspects TLS "
                            f"(terminateTLS) for {self.host}; Konnectivity's TLS to the API server cannot pass "
                            "TLS inspection", rule.collection_id or firewall.policy_id or firewall.id,
                    (tls_exclusion_advice(self.snapshot),), tuple(notes), firewall)
            return HopVerdict("allow", f"{where} {decision.detail}", notes=tuple(notes), firewall=firewall)
        subject = (decision.rule.collection_id if decision.rule and decision.rule.collection_id
                   else firewall.policy_id or firewall.id)
        return HopVerdict("deny", f"the route sends egress through {where}, {decision.detail} for {port} to "
                                  f"{self.host} (Azure Firewall denies what no rule allows)",
                          subject, (firewall_fix(self.snapshot, firewall, node, port),), tuple(notes), firewall)


def _may_carry_api_server(route: Route) -> bool:
    """Could this route's prefix hold a public API server address? Private prefixes cannot; neither can the
    documented AKS UDR host route that sends the firewall's own public IP (/32) to the internet."""
    try:
        network = ipaddress.ip_network(route.address_prefix, strict=False)
    except ValueError:
        return True  # a service tag (AzureCloud, AzureKubernetesService...): may hold the API server
    if network.is_private:
        return False
    return not (network.num_addresses == 1 and route.next_hop_type.lower() == "internet")


def describe_firewall(firewall: Firewall) -> str:
    text = f"Azure Firewall {firewall.display_name} ({firewall.private_ip})"
    if firewall.policy_id:
        text += f" with Firewall Policy {firewall.policy_id.rsplit('/', 1)[-1]}"
        if len(firewall.policy_chain) > 1:
            text += " (parent " + ", ".join(p.rsplit("/", 1)[-1] for p in firewall.policy_chain[1:]) + ")"
    return text


def tls_exclusion_advice(snapshot: ClusterSnapshot) -> str:
    return (f"Exclude {api_host(snapshot)} and *.hcp.{snapshot.location}.azmk8s.io from TLS inspection on the egress "
            "path (Azure Firewall Premium: an application rule for them without terminateTLS, or the TLS inspection "
            "bypass list; other proxies: their bypass list). Konnectivity needs the API server's own certificate "
            "and ALPN 'konnectivity' end to end.")


def firewall_fix(snapshot: ClusterSnapshot, firewall: Firewall, node: Node, port: str) -> str:
    subnet = snapshot.subnet_of(node)
    sources = " ".join(subnet.prefixes) if subnet and subnet.prefixes else "'*'"
    proto, number = port.split("/")
    if firewall.policy_id:
        parts = firewall.policy_id.split("/")
        rg = parts[4] if len(parts) > 4 else "<resource-group>"
        policy = parts[-1]
        base = (f"az network firewall policy rule-collection-group collection add-filter-collection "
                f"--resource-group {rg} --policy-name {policy} --rule-collection-group-name <a group processed "
                f"before the denying one> --name aks-tunnel --collection-priority 100 --action Allow "
                f"--source-addresses {sources} ")
        if port == "tcp/443":
            return base + "--rule-type ApplicationRule --rule-name allow-apiserver --protocols Https=443 " \
                          "--fqdn-tags AzureKubernetesService"
        return base + (f"--rule-type NetworkRule --rule-name allow-{proto}-{number} --ip-protocols {proto.upper()} "
                       f"--destination-addresses AzureCloud.{snapshot.location} --destination-ports {number}")
    name = firewall.display_name
    rg = firewall.id.split("/")[4] if firewall.id.count("/") > 4 else "<resource-group>"
    if port == "tcp/443":
        return (f"az network firewall application-rule create --resource-group {rg} --firewall-name {name} "
                f"--collection-name aks-tunnel --name allow-apiserver --priority 100 --action Allow "
                f"--source-addresses {sources} --protocols Https=443 --fqdn-tags AzureKubernetesService")
    return (f"az network firewall network-rule create --resource-group {rg} --firewall-name {name} "
            f"--collection-name aks-tunnel --name allow-{proto}-{number} --priority 100 --action Allow "
            f"--source-addresses {sources} --protocols {proto.upper()} --destination-addresses "
            f"AzureCloud.{snapshot.location} --destination-ports {number}")


__all__ = ["EgressPath", "FirewallDecision", "HopVerdict", "allow_advice", "api_ip", "describe_firewall",
           "firewall_fix", "tls_exclusion_advice"]
