"""Collection for API server access: the cluster's egress addresses and the API server subnet.

Kept apart from `collect.py` (topology, NSGs, firewall, SNAT) because it only runs for clusters that need
it: egress addresses only when authorized IP ranges are set on a public cluster (nothing else looks at
them), the API server subnet only with API Server VNet Integration. Every public IP, prefix and NAT
gateway is read through the Collector's memo, so a resource shared by many clusters is read once.

Which addresses are the egress, node subnet by node subnet (pools on different subnets may leave by
different paths, and the egress set is their union):
- a NAT gateway on a node subnet takes over that subnet's outbound traffic from the load balancer, so its
  addresses are the egress of that subnet (managedNATGateway / userAssignedNATGateway, or loadBalancer
  with a subnet NAT gateway); under loadBalancer, the subnets without one still leave through the
  outbound load balancer's public IPs and prefixes;
- userDefinedRouting: each node subnet's default route (0.0.0.0/0) leads to its own next hop, and each
  Azure Firewall reached that way contributes its public IPs. A subnet whose table could not be read,
  whose next hop is not an Azure Firewall the monitor could read (a third-party NVA, a gateway), or that
  has no default route to an appliance leaves the set incomplete: an error on that subnet's path.
Anything that cannot be read is an error on that source, never a silently smaller set.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

from shared.azure import rest
from shared.azure.ids import last_name, norm, segment
from shared.netrules.nsg_types import NetworkSecurityGroup
from shared.snapshot import ClusterSnapshot, EgressAddress, EgressIps, Route, RouteTable, Subnet, Unavailable

if TYPE_CHECKING:
    from shared.azure.collect import Collector

# Network plugins whose pod IPs are not VNet IPs: Microsoft keeps Konnectivity agents there even with API
# Server VNet Integration ("Examine node and pod health": agents are unneeded only with Azure CNI or Azure
# CNI with dynamic pod IP assignment).
_OVERLAY_REASON = ("pod IPs are not VNet addresses ({plugin}), so AKS still deploys Konnectivity agents to "
                   "reach pods even with API Server VNet Integration")


def tunnel_exception(access: rest.AccessFacts) -> str | None:
    """Why a VNet-integrated cluster still uses the tunnel (Microsoft's documented exception), or None."""
    if not access.vnet_integration:
        return None
    plugin, mode = access.network_plugin.lower(), access.network_plugin_mode.lower()
    if mode == "overlay":
        return _OVERLAY_REASON.format(plugin="Azure CNI Overlay")
    if plugin in ("kubenet", "none"):
        return _OVERLAY_REASON.format(plugin="kubenet" if plugin == "kubenet" else "bring-your-own CNI")
    if not plugin:
        return "the cluster's network plugin was not reported, so Microsoft's Konnectivity exception may apply"
    return None


def collect_egress_ips(
    collector: Collector,
    subscription: str,
    facts: rest.ClusterFacts,
    *,
    nat_by_subnet: Mapping[str, str],
    node_subnet_ids: Iterable[str],
    topology: ClusterSnapshot,
) -> EgressIps | Unavailable:
    """The cluster's egress addresses, with a reason for each source that could not be read.

    `topology` is the snapshot as collected so far: its node subnets, their route tables (read, or why
    not) and the appliance behind each virtual-appliance next hop.
    """
    access = facts.access or rest.AccessFacts()
    reader = _Reader(collector, subscription)
    outbound = facts.outbound_type.lower()
    node_subnet_ids = sorted({s for s in node_subnet_ids if s}, key=str.lower)
    nat_ids = sorted({g for s in node_subnet_ids if (g := nat_by_subnet.get(norm(s)))}, key=str.lower)
    # Node subnets known (read) to carry no NAT gateway: under loadBalancer they leave through the load balancer.
    without_nat = [s for s in node_subnet_ids if norm(s) in topology.subnets and not nat_by_subnet.get(norm(s))]
    if outbound in ("managednatgateway", "userassignednatgateway") or (outbound == "loadbalancer" and nat_ids):
        if not nat_ids and not access.nat_outbound_ip_ids:
            return Unavailable("no NAT gateway is attached to the node subnets, so the egress IPs are unknown")
        for ip_id in access.nat_outbound_ip_ids:
            reader.public_ip(ip_id, via="the managed NAT gateway")
        for nat_id in nat_ids:
            reader.nat_gateway(nat_id)
        if outbound == "loadbalancer" and without_nat:
            # A NAT gateway takes over only the subnets it is attached to; pools on the others still leave
            # through the load balancer's outbound IPs.
            if not access.lb_outbound_ip_ids and not access.lb_outbound_prefix_ids:
                reader.errors[facts.id] = (
                    f"node subnet(s) {', '.join(last_name(s) for s in without_nat)} have no NAT gateway and leave "
                    "through the load balancer, whose profile lists no effective outbound IPs or prefixes")
            _load_balancer(reader, access)
    elif outbound == "loadbalancer":
        if not access.lb_outbound_ip_ids and not access.lb_outbound_prefix_ids:
            return Unavailable("the load balancer profile lists no effective outbound IPs or prefixes")
        _load_balancer(reader, access)
    elif outbound == "userdefinedrouting":
        if not node_subnet_ids:
            return Unavailable("outboundType userDefinedRouting and no node subnet was found: the egress devices "
                               "and their public IPs are unknown")
        for subnet_id in node_subnet_ids:
            _routed_egress(reader, topology, subnet_id)
    else:
        return Unavailable(f"outboundType {facts.outbound_type}: the cluster's egress is outside what AKS "
                           "configures, so its egress IPs are unknown")
    return EgressIps(tuple(reader.addresses), dict(reader.errors))


def _load_balancer(reader: _Reader, access: rest.AccessFacts) -> None:
    for ip_id in access.lb_outbound_ip_ids:
        reader.public_ip(ip_id, via="the outbound load balancer")
    for prefix_id in access.lb_outbound_prefix_ids:
        reader.prefix(prefix_id, via="the outbound load balancer")


def default_route(table: RouteTable) -> Route | None:
    """The table's route for 0.0.0.0/0 (the one every public destination without a longer route takes),
    however the prefix is written."""
    return next((r for r in table.routes if _is_ipv4_default(r.address_prefix)), None)


def _is_ipv4_default(prefix: str) -> bool:
    text = prefix.strip()
    if text == "0/0":
        return True
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return net.prefixlen == 0 and net.version == 4


def _routed_egress(reader: _Reader, topology: ClusterSnapshot, subnet_id: str) -> None:
    """userDefinedRouting: the public IPs of the Azure Firewall behind this node subnet's default route, or an
    error saying why this subnet's egress addresses are unknown."""
    name = last_name(subnet_id)
    subnet = topology.subnets.get(norm(subnet_id))
    if subnet is None:
        reader.errors[subnet_id] = (f"node subnet {name} could not be read, so the egress device its default "
                                    "route leads to is unknown")
        return
    if not subnet.route_table_id:
        reader.errors[subnet_id] = (f"outboundType userDefinedRouting, but node subnet {name} has no route table: "
                                    "the egress device and the public IPs its traffic leaves from are unknown")
        return
    table_id = subnet.route_table_id
    if norm(table_id) in topology.unreadable_route_tables:
        reader.errors[table_id] = (f"the egress device of node subnet {name} is unknown: its route table "
                                   f"{last_name(table_id)} could not be read: "
                                   f"{topology.unreadable_route_tables[norm(table_id)]}")
        return
    table = topology.route_tables.get(norm(table_id)) or topology.route_tables.get(table_id)
    if table is None:
        reader.errors[table_id] = f"route table {last_name(table_id)} of node subnet {name} was not collected"
        return
    route = default_route(table)
    if route is not None and route.next_hop_type.lower() == "none":
        return  # 0.0.0.0/0 is dropped: nothing leaves this subnet, so it has no egress address
    if route is None or route.next_hop_type.lower() != "virtualappliance":
        hop = route.next_hop_type if route is not None else "no explicit route (the system route to Internet)"
        reader.errors[f"{table.id}/routes/{route.name if route else 'default'}"] = (
            f"outboundType userDefinedRouting, but node subnet {name} sends 0.0.0.0/0 to {hop}: the egress "
            "device and the public IPs its traffic leaves from are unknown")
        return
    ip = route.next_hop_ip or ""
    appliance = topology.appliances.get(ip)
    where = f"{table.id}/routes/{route.name}"
    if appliance is None:
        reader.errors[where] = (f"the egress device of node subnet {name} (virtual appliance {ip or '?'} on its "
                                "default route) was not read, so its public IPs are unknown")
    elif isinstance(appliance, Unavailable):
        reader.errors[where] = (f"the egress device on the default route of node subnet {name} could not be "
                                f"judged: {appliance.reason}")
    elif not appliance.public_ip_ids:
        reader.errors[appliance.id] = f"Azure Firewall {last_name(appliance.id)} lists no public IP configuration"
    else:
        for ip_id in appliance.public_ip_ids:
            reader.public_ip(ip_id, via=appliance.id)


class _Reader:
    """Reads public IPs, prefixes and NAT gateways once each, collecting addresses and per-source errors."""

    def __init__(self, collector: Collector, subscription: str) -> None:
        self.collector = collector
        self.subscription = subscription
        self.addresses: list[EgressAddress] = []
        self.errors: dict[str, str] = {}

    def _read(self, resource_id: str, what: str, operations: str, convert: Callable[[Any], Any]) -> Any:
        sub = (segment(resource_id, "subscriptions") or self.subscription).lower()
        return self.collector._safe(what, partial(self.collector._get, sub, resource_id, operations, convert))

    def _add(self, address: str | None, source: str, via: str, kind: str) -> None:
        if address is None:
            self.errors[source] = f"{kind} {last_name(source)} has no address allocated"
        elif not any(a.address == address and a.source == source for a in self.addresses):
            self.addresses.append(EgressAddress(address, source, via))

    def public_ip(self, ip_id: str, *, via: str) -> None:
        got = self._read(ip_id, f"public IP {last_name(ip_id)}", "public_ip_addresses", rest.public_ip_address)
        if isinstance(got, Unavailable):
            self.errors[ip_id] = got.reason
        else:
            self._add(got, ip_id, via, "public IP")

    def prefix(self, prefix_id: str, *, via: str) -> None:
        got = self._read(prefix_id, f"public IP prefix {last_name(prefix_id)}", "public_ip_prefixes",
                         rest.public_ip_prefix)
        if isinstance(got, Unavailable):
            self.errors[prefix_id] = got.reason
        else:
            self._add(got, prefix_id, via, "public IP prefix")

    def nat_gateway(self, nat_id: str) -> None:
        got = self._read(nat_id, f"NAT gateway {last_name(nat_id)}", "nat_gateways", rest.nat_gateway_public_ips)
        if isinstance(got, Unavailable):
            self.errors[nat_id] = got.reason
            return
        ip_ids, prefix_ids = got
        if not ip_ids and not prefix_ids:
            self.errors[nat_id] = f"NAT gateway {last_name(nat_id)} has no public IP or prefix"
        for ip_id in ip_ids:
            self.public_ip(ip_id, via=nat_id)
        for prefix_id in prefix_ids:
            self.prefix(prefix_id, via=nat_id)


def api_server_subnet(
    collector: Collector,
    subscription: str,
    subnet_id: str,
    subnets: Mapping[str, Subnet],
) -> tuple[Subnet | None, NetworkSecurityGroup | None, str | None]:
    """(API server subnet, its NSG, why either could not be read) for API Server VNet Integration.

    The subnet is usually in the node VNet (already read); otherwise its VNet is read here.
    """
    subnet = subnets.get(norm(subnet_id))
    if subnet is None:
        vnet_id = subnet_id.split("/subnets/", maxsplit=1)[0]
        sub = (segment(vnet_id, "subscriptions") or subscription).lower()
        vnet = collector._safe(f"virtual network {last_name(vnet_id)} of the API server subnet",
                               partial(collector._get, sub, vnet_id, "virtual_networks", rest.vnet_facts))
        if isinstance(vnet, Unavailable):
            return None, None, vnet.reason
        subnet = next((s for s in vnet.subnets if norm(s.id) == norm(subnet_id)), None)
        if subnet is None:
            return None, None, f"the API server subnet {last_name(subnet_id)} was not found in its VNet"
    if not subnet.nsg_id:
        return subnet, None, None
    sub = (segment(subnet.nsg_id, "subscriptions") or subscription).lower()
    nsg = collector._safe(f"NSG {last_name(subnet.nsg_id)} of the API server subnet",
                          partial(collector._get, sub, subnet.nsg_id, "network_security_groups",
                                  rest.network_security_group))
    if isinstance(nsg, Unavailable):
        return subnet, None, nsg.reason
    return subnet, nsg, None


AKS_DELEGATION = "microsoft.containerservice/managedclusters"


def delegated_subnet(subnets: Mapping[str, Subnet]) -> Subnet | None:
    """The one subnet of the node VNets delegated to AKS (the API server subnet), or None if not exactly one."""
    found = {norm(s.id): s for s in subnets.values() if AKS_DELEGATION in {d.lower() for d in s.delegations}}
    return next(iter(found.values())) if len(found) == 1 else None


def with_access(snapshot: ClusterSnapshot, facts: rest.ClusterFacts) -> ClusterSnapshot:
    """The access facts read from the cluster itself (no I/O): authorized ranges and VNet integration."""
    access = facts.access or rest.AccessFacts()
    return replace(snapshot, authorized_ip_ranges=access.authorized_ip_ranges,
                   api_server_vnet_integration=access.vnet_integration,
                   api_server_subnet_id=access.api_server_subnet_id,
                   tunnel_exception=tunnel_exception(access))


def add_access(collector: Collector, snapshot: ClusterSnapshot, facts: rest.ClusterFacts,
               nat_by_subnet: Mapping[str, str], parts: frozenset[str]) -> ClusterSnapshot:
    """Egress addresses (authorized ranges set, public cluster, the egress part asked for) and the API
    server subnet with its NSG (VNet integration, the network part asked for)."""
    from shared.azure.collect import EGRESS, NETWORK

    changes: dict[str, Any] = {}
    nodes = snapshot.nodes if not isinstance(snapshot.nodes, Unavailable) else ()
    if snapshot.authorized_ip_ranges and not snapshot.private and EGRESS in parts:
        changes["egress_ips"] = collect_egress_ips(
            collector, snapshot.subscription_id, facts, nat_by_subnet=nat_by_subnet,
            node_subnet_ids={n.subnet_id for n in nodes}, topology=snapshot)
    if snapshot.api_server_vnet_integration and not snapshot.api_server_subnet_id:
        found = delegated_subnet(snapshot.subnets)  # managed VNet: AKS does not report its API server subnet
        if found is not None:
            snapshot = replace(snapshot, api_server_subnet_id=found.id)
    if snapshot.api_server_vnet_integration and snapshot.api_server_subnet_id and NETWORK in parts:
        subnet, nsg, error = api_server_subnet(collector, snapshot.subscription_id, snapshot.api_server_subnet_id,
                                               snapshot.subnets)
        if subnet is not None and norm(subnet.id) not in snapshot.subnets:
            changes["subnets"] = {**snapshot.subnets, norm(subnet.id): subnet}
        if nsg is not None and isinstance(snapshot.nsgs, Mapping):
            changes["nsgs"] = {**snapshot.nsgs, nsg.id: nsg, norm(nsg.id): nsg}
        if error is not None:
            where = norm(subnet.nsg_id) if subnet is not None and subnet.nsg_id else norm(snapshot.api_server_subnet_id)
            changes["nsg_errors"] = {**snapshot.nsg_errors, where: error}
    return replace(snapshot, **changes) if changes else snapshot
