"""Pure converters from ARM REST JSON (the shapes in Azure's official examples) to snapshot types.

Kept free of I/O so that they can be tested on the official examples directly, and so that the SDK
generation (msrest or typespec models) never leaks past `clients.to_rest`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from shared.azure import rest_firewall
from shared.azure.ids import last_name, norm, segment
from shared.netrules.nsg_types import AdminRule, NetworkSecurityGroup, SecurityRule
from shared.snapshot import (
    ActivityEvent,
    AgentPool,
    Firewall,
    LoadBalancerProfile,
    Route,
    RouteTable,
    Subnet,
)

JSON = Mapping[str, Any]


def props(obj: JSON | None) -> JSON:
    """ARM puts most fields under `properties`; some SDK dumps flatten them. Accept both."""
    if not obj:
        return {}
    inner = obj.get("properties")
    return inner if isinstance(inner, Mapping) else obj


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def _ids(items: Any) -> tuple[str, ...]:
    return tuple(i["id"] for i in _list(items) if isinstance(i, Mapping) and i.get("id"))


def _prefixes(p: JSON, single: str, plural: str) -> tuple[str, ...]:
    values = [v for v in _list(p.get(plural)) if v]
    if p.get(single):
        values.insert(0, p[single])
    return tuple(values)


# ---------------------------------------------------------------- managed cluster


@dataclass(frozen=True)
class ClusterFacts:
    id: str
    name: str
    location: str
    node_resource_group: str
    private: bool
    outbound_type: str
    fqdn: str | None
    private_fqdn: str | None
    load_balancer_profile: LoadBalancerProfile | None
    pools: tuple[AgentPool, ...]
    unsupported_reason: str | None
    access: AccessFacts | None = None


def cluster_facts(cluster: JSON) -> ClusterFacts:
    p = props(cluster)
    network = p.get("networkProfile") or {}
    access = p.get("apiServerAccessProfile") or {}
    lb = network.get("loadBalancerProfile")
    pools: list[AgentPool] = []
    availability_sets: list[str] = []
    for pool in _list(p.get("agentPoolProfiles")):
        if str(pool.get("type", "VirtualMachineScaleSets")).lower() == "availabilityset":
            availability_sets.append(pool.get("name", "?"))
        count = int(pool.get("count") or 0)
        max_count = int(pool["maxCount"]) if pool.get("enableAutoScaling") and pool.get("maxCount") else None
        pools.append(AgentPool(
            name=pool.get("name", ""),
            subnet_id=pool.get("vnetSubnetID") or "",
            count=count,
            max_count=max_count,
            max_surge=surge_nodes((pool.get("upgradeSettings") or {}).get("maxSurge"), max(count, max_count or 0)),
        ))
    unsupported = (
        f"agent pool(s) {', '.join(availability_sets)} use availability sets; this monitor reads nodes from "
        "virtual machine scale sets only" if availability_sets else None
    )
    node_rg = p.get("nodeResourceGroup") or ""
    if not node_rg and unsupported is None:
        unsupported = "the cluster has no nodeResourceGroup yet (still provisioning?)"
    return ClusterFacts(
        id=cluster.get("id", ""),
        name=cluster.get("name", ""),
        location=cluster.get("location", ""),
        node_resource_group=node_rg,
        private=bool(access.get("enablePrivateCluster")),
        outbound_type=network.get("outboundType") or "loadBalancer",
        fqdn=p.get("fqdn"),
        private_fqdn=p.get("privateFQDN"),
        load_balancer_profile=_lb_profile(lb) if isinstance(lb, Mapping) else None,
        pools=tuple(pools),
        unsupported_reason=unsupported,
        access=access_facts(p),
    )


@dataclass(frozen=True)
class AccessFacts:
    """API server access and egress configuration: what authorized ranges and VNet integration need."""

    authorized_ip_ranges: tuple[str, ...] = ()
    vnet_integration: bool = False
    api_server_subnet_id: str | None = None
    network_plugin: str = ""
    network_plugin_mode: str = ""
    # Outbound public IP / prefix resource ids AKS reports for the load balancer or managed NAT gateway.
    lb_outbound_ip_ids: tuple[str, ...] = ()
    lb_outbound_prefix_ids: tuple[str, ...] = ()
    nat_outbound_ip_ids: tuple[str, ...] = ()


def access_facts(p: JSON) -> AccessFacts:
    """apiServerAccessProfile and the outbound IPs of networkProfile (load balancer / managed NAT gateway)."""
    access = p.get("apiServerAccessProfile") or {}
    network = p.get("networkProfile") or {}
    lb = network.get("loadBalancerProfile") or {}
    nat = network.get("natGatewayProfile") or {}
    # effectiveOutboundIPs may name prefixes too (outboundIPPrefixes): sort every reference by its type.
    outbound = (*_ids(lb.get("effectiveOutboundIPs")), *_ids((lb.get("outboundIPs") or {}).get("publicIPs")),
                *_ids((lb.get("outboundIPPrefixes") or {}).get("publicIPPrefixes")))
    return AccessFacts(
        authorized_ip_ranges=tuple(str(r).strip() for r in _list(access.get("authorizedIPRanges")
                                                                  or access.get("authorizedIpRanges"))
                                   if str(r).strip()),
        vnet_integration=bool(access.get("enableVnetIntegration")),
        api_server_subnet_id=access.get("subnetId") or None,
        network_plugin=str(network.get("networkPlugin") or ""),
        network_plugin_mode=str(network.get("networkPluginMode") or ""),
        lb_outbound_ip_ids=tuple(dict.fromkeys(i for i in outbound if not _is_prefix(i))),
        lb_outbound_prefix_ids=tuple(dict.fromkeys(i for i in outbound if _is_prefix(i))),
        nat_outbound_ip_ids=_ids(nat.get("effectiveOutboundIPs")),
    )


def _is_prefix(resource_id: str) -> bool:
    return "/publicipprefixes/" in resource_id.lower()


def public_ip_address(pip: JSON) -> str | None:
    """The address of a public IP resource (None while Azure has not allocated one)."""
    return props(pip).get("ipAddress") or None


def public_ip_prefix(prefix: JSON) -> str | None:
    """The CIDR of a public IP prefix resource (None while not allocated)."""
    return props(prefix).get("ipPrefix") or None


def nat_gateway_public_ips(nat: JSON) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(public IP ids, public IP prefix ids) of a NAT gateway; the ARM spelling is publicIpAddresses."""
    p = props(nat)
    return (_ids(p.get("publicIpAddresses") or p.get("publicIPAddresses")),
            _ids(p.get("publicIpPrefixes") or p.get("publicIPPrefixes")))


def firewall_public_ip_ids(fw: JSON) -> tuple[str, ...]:
    """Public IPs of an Azure Firewall's IP configurations (its SNAT addresses; not the management IP)."""
    return tuple(dict.fromkeys(pid for c in _list(props(fw).get("ipConfigurations"))
                               if (pid := (props(c).get("publicIPAddress") or {}).get("id"))))


def surge_nodes(max_surge: Any, node_count: int) -> int:
    """AKS maxSurge is a count ("3") or a percentage ("33%") of the pool, rounded up; default one node."""
    if max_surge in (None, ""):
        return 1
    text = str(max_surge).strip()
    if text.endswith("%"):
        percent = float(text[:-1] or 0)
        return max(1, -(-int(node_count * percent) // 100)) if percent > 0 else 0
    return int(text) if text.isdigit() else 1


def _lb_profile(lb: JSON) -> LoadBalancerProfile:
    """The outbound IP kind the user chose: their own IPs, their prefixes, or a managed count (AKS's default).

    With prefixes the IP count is unknown here (it needs each prefix's length): `outbound_ip_count` is then
    the number of prefixes, a floor that collection replaces with the real count (SnatMetrics).
    """
    effective = _list(lb.get("effectiveOutboundIPs"))
    managed = (lb.get("managedOutboundIPs") or {}).get("count")
    explicit = _ids((lb.get("outboundIPs") or {}).get("publicIPs"))
    prefixes = _ids((lb.get("outboundIPPrefixes") or {}).get("publicIPPrefixes"))
    if explicit:
        kind, count = "ips", len(explicit)
    elif prefixes:
        kind, count = "prefixes", len(prefixes)
    else:
        kind, count = "managed", int(managed or 0) or len(effective) or 1
    return LoadBalancerProfile(
        allocated_outbound_ports=int(lb.get("allocatedOutboundPorts") or 0),
        outbound_ip_count=count,
        idle_timeout_minutes=int(lb.get("idleTimeoutInMinutes") or 30),
        kind=kind,
        managed_ip_count=int(managed) if managed is not None and kind == "managed" else None,
        outbound_ip_ids=explicit,
        outbound_ip_prefix_ids=prefixes,
    )



# ---------------------------------------------------------------- VMSS, instances, NICs


@dataclass(frozen=True)
class ScaleSet:
    id: str
    name: str
    pool: str
    computer_name_prefix: str
    # From the scale set model's NIC configurations: enough for the SNAT family to find the outbound load
    # balancer (backend pools) or NAT gateway (subnets) without reading every NIC.
    backend_pool_ids: tuple[str, ...] = ()
    subnet_ids: tuple[str, ...] = ()


_AKS_VMSS = re.compile(r"^aks-(?P<pool>[a-z0-9]+)-\d+-vmss$", re.IGNORECASE)


def scale_set(vmss: JSON) -> ScaleSet:
    tags = vmss.get("tags") or {}
    name = vmss.get("name") or last_name(vmss.get("id", ""))
    matched = _AKS_VMSS.match(name)
    pool = tags.get("aks-managed-poolName") or (matched.group("pool") if matched else name)
    model = props(vmss).get("virtualMachineProfile") or {}
    os_profile = model.get("osProfile") or {}
    ip_configs = [props(ip) for nic in _list((model.get("networkProfile") or {}).get("networkInterfaceConfigurations"))
                  for ip in _list(props(nic).get("ipConfigurations"))]
    return ScaleSet(
        vmss.get("id", ""), name, pool, os_profile.get("computerNamePrefix") or f"{name}",
        backend_pool_ids=tuple(dict.fromkeys(
            i for ip in ip_configs for i in _ids(ip.get("loadBalancerBackendAddressPools")))),
        subnet_ids=tuple(dict.fromkeys(s for ip in ip_configs if (s := (ip.get("subnet") or {}).get("id")))),
    )


def node_name(vmss: ScaleSet, instance_id: str) -> str:
    """AKS node names are the VMSS computer name prefix plus the instance id in base 36, six digits."""
    number = int(instance_id) if instance_id.isdigit() else 0
    digits = ""
    while True:
        number, rem = divmod(number, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[rem] + digits
        if number == 0:
            break
    return f"{vmss.computer_name_prefix}{digits.rjust(6, '0')}"


@dataclass(frozen=True)
class InstanceState:
    instance_id: str
    computer_name: str | None
    running: bool | None  # None when the power state was not returned
    power_state: str


def instance_state(vm: JSON) -> InstanceState:
    p = props(vm)
    instance_id = str(vm.get("instanceId") or last_name(vm.get("id", "")))
    computer = (p.get("osProfile") or {}).get("computerName")
    statuses = _list((p.get("instanceView") or {}).get("statuses"))
    power = next((s.get("code", "") for s in statuses if str(s.get("code", "")).startswith("PowerState/")), "")
    running = None if not power else power.lower() == "powerstate/running"
    return InstanceState(instance_id, computer, running, power.split("/", 1)[-1] if power else "unknown")


@dataclass(frozen=True)
class NicFacts:
    instance_id: str
    private_ip: str | None
    subnet_id: str
    nsg_id: str | None
    asg_ids: tuple[str, ...]
    backend_pool_ids: tuple[str, ...]


def nic_facts(nic: JSON) -> NicFacts:
    p = props(nic)
    vm_id = (p.get("virtualMachine") or {}).get("id", "")
    configs = _list(p.get("ipConfigurations"))
    primary = next((c for c in configs if props(c).get("primary")), configs[0] if configs else {})
    cp = props(primary)
    return NicFacts(
        instance_id=last_name(vm_id) if vm_id else (segment(nic.get("id", ""), "virtualMachines") or ""),
        private_ip=cp.get("privateIPAddress"),
        subnet_id=(cp.get("subnet") or {}).get("id", ""),
        nsg_id=(p.get("networkSecurityGroup") or {}).get("id"),
        asg_ids=_ids(cp.get("applicationSecurityGroups")),
        backend_pool_ids=_ids(cp.get("loadBalancerBackendAddressPools")),
    )


# ---------------------------------------------------------------- network


@dataclass(frozen=True)
class VnetFacts:
    id: str
    address_space: tuple[str, ...]
    peered_prefixes: tuple[str, ...]
    subnets: tuple[Subnet, ...]
    nat_gateways: Mapping[str, str]  # subnet id (lower) -> NAT gateway id
    firewall_ip_configs: tuple[str, ...]  # AzureFirewallSubnet ipConfiguration ids (-> firewall ids)
    peered_vnet_ids: tuple[str, ...] = ()  # hub VNets: where a shared Azure Firewall usually lives


def vnet_facts(vnet: JSON) -> VnetFacts:
    p = props(vnet)
    subnets: list[Subnet] = []
    nat: dict[str, str] = {}
    firewall_configs: list[str] = []
    for s in _list(p.get("subnets")):
        sp = props(s)
        sid = s.get("id", "")
        subnets.append(Subnet(
            id=sid,
            prefixes=_prefixes(sp, "addressPrefix", "addressPrefixes"),
            nsg_id=(sp.get("networkSecurityGroup") or {}).get("id"),
            route_table_id=(sp.get("routeTable") or {}).get("id"),
            delegations=tuple(str(sn) for d in _list(sp.get("delegations"))
                              if (sn := props(d).get("serviceName"))),
        ))
        if (sp.get("natGateway") or {}).get("id"):
            nat[norm(sid)] = sp["natGateway"]["id"]
        if (s.get("name") or last_name(sid)).lower() == "azurefirewallsubnet":
            firewall_configs.extend(_ids(sp.get("ipConfigurations")))
    peered: list[str] = []
    peered_ids: list[str] = []
    for peering in _list(p.get("virtualNetworkPeerings")):
        pp = props(peering)
        if str(pp.get("peeringState", "Connected")).lower() != "connected":
            continue
        if (pp.get("remoteVirtualNetwork") or {}).get("id"):
            peered_ids.append(pp["remoteVirtualNetwork"]["id"])
        peered.extend(_list((pp.get("remoteAddressSpace") or {}).get("addressPrefixes")))
        peered.extend(_list((pp.get("remoteVirtualNetworkAddressSpace") or {}).get("addressPrefixes")))
    return VnetFacts(
        id=vnet.get("id", ""),
        address_space=tuple(_list((p.get("addressSpace") or {}).get("addressPrefixes"))),
        peered_prefixes=tuple(dict.fromkeys(peered)),
        subnets=tuple(subnets),
        nat_gateways=nat,
        firewall_ip_configs=tuple(firewall_configs),
        peered_vnet_ids=tuple(peered_ids),
    )


def security_rule(rule: JSON, *, default: bool = False) -> SecurityRule:
    p = props(rule)
    return SecurityRule(
        name=rule.get("name", ""),
        priority=int(p.get("priority") or 0),
        direction=p.get("direction", "Inbound"),
        access=p.get("access", "Deny"),
        protocol=p.get("protocol", "*"),
        source_prefixes=_prefixes(p, "sourceAddressPrefix", "sourceAddressPrefixes"),
        source_ports=_prefixes(p, "sourcePortRange", "sourcePortRanges") or ("*",),
        destination_prefixes=_prefixes(p, "destinationAddressPrefix", "destinationAddressPrefixes"),
        destination_ports=_prefixes(p, "destinationPortRange", "destinationPortRanges") or ("*",),
        source_asgs=_ids(p.get("sourceApplicationSecurityGroups")),
        destination_asgs=_ids(p.get("destinationApplicationSecurityGroups")),
        id=rule.get("id", ""),
        default=default,
    )


def network_security_group(nsg: JSON) -> NetworkSecurityGroup:
    p = props(nsg)
    return NetworkSecurityGroup(
        id=nsg.get("id", ""),
        name=nsg.get("name") or last_name(nsg.get("id", "")),
        rules=tuple(security_rule(r) for r in _list(p.get("securityRules"))),
    )


def route_table(table: JSON) -> RouteTable:
    return RouteTable(
        id=table.get("id", ""),
        routes=tuple(
            Route(
                name=r.get("name", ""),
                address_prefix=props(r).get("addressPrefix", ""),
                next_hop_type=props(r).get("nextHopType", ""),
                next_hop_ip=props(r).get("nextHopIpAddress"),
            )
            for r in _list(props(table).get("routes"))
        ),
    )


def firewall(fw: JSON) -> Firewall:
    """Classic rules and the Firewall Policy reference (read separately): see shared.azure.rest_firewall."""
    return rest_firewall.firewall(fw)


def admin_rules(items: Iterable[JSON]) -> tuple[AdminRule, ...]:
    """AVNM effective security admin rules (listNetworkManagerEffectiveSecurityAdminRules `value`)."""
    out: list[AdminRule] = []
    for item in items:
        p = props(item)
        if "priority" not in p:
            continue
        out.append(AdminRule(
            name=last_name(item.get("id", "")) or item.get("name", ""),
            priority=int(p["priority"]),
            direction=p.get("direction", "Inbound"),
            access=p.get("access", "Allow"),
            protocol=p.get("protocol", "Any") if p.get("protocol") != "Any" else "*",
            sources=tuple(a.get("addressPrefix", "*") for a in _list(p.get("sources"))) or ("*",),
            destinations=tuple(a.get("addressPrefix", "*") for a in _list(p.get("destinations"))) or ("*",),
            source_ports=tuple(_list(p.get("sourcePortRanges"))) or ("*",),
            destination_ports=tuple(_list(p.get("destinationPortRanges"))) or ("*",),
            id=item.get("id", ""),
        ))
    return tuple(out)


# ---------------------------------------------------------------- monitor


NSG_OPERATIONS = (
    "microsoft.network/networksecuritygroups/write",
    "microsoft.network/networksecuritygroups/delete",
    "microsoft.network/networksecuritygroups/securityrules/write",
    "microsoft.network/networksecuritygroups/securityrules/delete",
)


def activity_event(event: JSON) -> ActivityEvent | None:
    """An NSG / security rule write or delete, or None for any other Microsoft.Network event."""
    operation = event.get("operationName") or {}
    op = operation.get("value", "") if isinstance(operation, Mapping) else str(operation)
    if op.lower() not in NSG_OPERATIONS:
        return None
    status = event.get("status") or {}
    return ActivityEvent(
        operation=op,
        resource_id=event.get("resourceId", ""),
        caller=event.get("caller", "") or "unknown caller",
        timestamp=event.get("eventTimestamp", ""),
        status=status.get("value", "") if isinstance(status, Mapping) else str(status),
    )


def metric_series(response: JSON, metric: str, dimension: str | None) -> dict[str, list[float]]:
    """{dimension value (lower case) or '' : [values]} for one metric; names matched case-insensitively."""
    out: dict[str, list[float]] = {}
    for m in _list(response.get("value")):
        name = (m.get("name") or {}).get("value", "")
        if name.lower() != metric.lower():
            continue
        for series in _list(m.get("timeseries")):
            key = ""
            if dimension:
                for meta in _list(series.get("metadatavalues")):
                    if str((meta.get("name") or {}).get("value", "")).lower() == dimension.lower():
                        key = str(meta.get("value", "")).lower()
            values = out.setdefault(key, [])
            for point in _list(series.get("data")):
                for field in ("total", "maximum", "average", "count"):
                    if point.get(field) is not None:
                        values.append(float(point[field]))
                        break
    return out
