"""Scenario JSON -> `Fleet`: applies AKS defaults and naming, allocates node IPs, resolves references.

Scenario format (camelCase, Azure's own spelling wherever Azure has a word for it):

    {"tenantId": "...", "settings": {"pageSize": 100, "runCommandLatency": 0, "runCommandTimeout": 5400,
                                     "runCommandPerVmPerMinute": 4, "lroPollAfter": 1},
     "subscriptions": [{"id": "<guid>", "displayName": "...", "clusters": [{
        "name": "aks1", "resourceGroup": "rg1", "location": "westeurope",
        "private": false, "outboundType": "loadBalancer", "tunnel": "konnectivity",
        "loadBalancerProfile": {"allocatedOutboundPorts": 0, "managedOutboundIPCount": 1},
        "vnet": {"name", "resourceGroup", "addressSpace": [...], "peerings": [{"name", "remoteAddressSpace"}],
                 "subnets": [{"name", "addressPrefix", "nsg", "routeTable", "natGateway",
                              "delegations"}]},   # omit: AKS VNet
        "nsgs": [{"name", "resourceGroup", "rules": [<ARM security rule>]}], "nodeNsgRules": [...],
        "nicNsg": true, "routeTables": [{"name", "resourceGroup", "routes": [<ARM route>]}],
        "firewall": {"name", "resourceGroup", "privateIp", "networkRuleCollections", "applicationRuleCollections",
                     "firewallPolicy": "<policy name or id>", "threatIntelMode", "vnet": "<hub VNet name>",
                     "publicIp": "<address>"},
        "firewalls": [{<as firewall>}],   # more firewalls (each in its own hub VNet), for other route tables
        "firewallPolicies": [{"name", "resourceGroup", "basePolicy": "<name or id>", "threatIntelMode", "dnsProxy",
                              "sku", "ruleCollectionGroups": [<ARM rule collection group>]}],
        "ipGroups": [{"name", "resourceGroup", "ipAddresses": [...]}],
        "natGateway": {"name", "resourceGroup", "idleTimeoutInMinutes", "publicIpCount",
                       "publicIpPrefixes": [{"name", "ipPrefix", "resourceGroup"}]},
        "natGateways": [{<as natGateway>, "metrics": [<series>]}],   # more gateways, named by subnets
        "agentPools": [{"name", "count", "minCount", "maxCount", "type", "mode", "vmSize", "subnet",
                        "applicationSecurityGroups": [<asg id>],
                        "node": {<defaults for every node>}, "nodes": [{"index": 0, <overrides>}]}],
        "metrics": {"loadBalancer": [{"name", "dimensions": {...}, "values": [...]}], "natGateway": [...]},
        "activityLog": [{"operation", "nsg", "rule", "resourceId", "caller", "minutesAgo", "timestamp"}],
        "adminRules": [<AVNM admin rule properties plus "name">],
        "apiServerAccessProfile": {"authorizedIpRanges": [...], "enableVnetIntegration": false,
                                   "subnet": "<API server subnet name in the cluster vnet>"},
        "networkPluginMode": "overlay",
        "publicIpAddresses": {"<public IP or prefix name>": "<address or CIDR>"}}]}]}

Public IPs: every public IP the scenario implies (the load balancer's managed outbound IPs, NAT gateway
IPs, a firewall's `<name>-pip`) exists as a resource with a stable address derived from its id, unless
`publicIpAddresses` names it. `loadBalancerProfile` may instead bring the user's own outbound IPs or
prefixes: `"outboundIPs": [{"name", "ipAddress", "resourceGroup"}]`,
`"outboundIPPrefixes": [{"name", "ipPrefix", "resourceGroup"}]`.

Node keys `ip`, `powerState`, `outputLost` and `zone` are ARM-side facts; every other node key (iptables,
ufw, kubeletListening, containers, egressBlocked, ...) is passed untouched to the node simulation.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from devtools.emulator import naming
from devtools.emulator.metric_defaults import default_lb_metrics, default_nat_metrics
from devtools.emulator.nodebridge import node_state
from devtools.emulator.scenario import (
    ActivityEventSpec,
    ApiServerSpec,
    ClusterSpec,
    FirewallPolicySpec,
    FirewallSpec,
    Fleet,
    IpGroupSpec,
    JsonDict,
    LoadBalancerSpec,
    MetricSeries,
    NatGatewaySpec,
    NodeSpec,
    NsgSpec,
    PoolSpec,
    PublicIpPrefixSpec,
    PublicIpSpec,
    RouteTableSpec,
    Settings,
    SubnetSpec,
    SubscriptionSpec,
    VnetSpec,
)

NSG_TYPE = "Microsoft.Network/networkSecurityGroups"
VNET_TYPE = "Microsoft.Network/virtualNetworks"
RT_TYPE = "Microsoft.Network/routeTables"
FW_TYPE = "Microsoft.Network/azureFirewalls"
FWP_TYPE = "Microsoft.Network/firewallPolicies"
IPG_TYPE = "Microsoft.Network/ipGroups"
NAT_TYPE = "Microsoft.Network/natGateways"
LB_TYPE = "Microsoft.Network/loadBalancers"
PIP_TYPE = "Microsoft.Network/publicIPAddresses"
PREFIX_TYPE = "Microsoft.Network/publicIPPrefixes"
AKS_DELEGATION = "Microsoft.ContainerService/managedClusters"

TUNNEL_CONTAINERS = {"konnectivity": "konnectivity-agent", "tunnel-front": "tunnel-front", "aks-link": "aks-link"}
_ARM_NODE_KEYS = {"index", "ip", "powerState", "outputLost", "zone", "running"}
DEFAULT_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


class ScenarioError(ValueError):
    """The scenario contradicts itself (duplicate IPs, unknown references...): fail loudly at load."""


def load_scenario(path: str | Path, *, now: datetime | None = None) -> Fleet:
    with Path(path).open(encoding="utf-8") as handle:
        return fleet_from_json(json.load(handle), now=now)


def fleet_from_json(data: JsonDict, *, now: datetime | None = None) -> Fleet:
    builder = _FleetBuilder(now or datetime.now(UTC))
    subscriptions = tuple(builder.subscription(s, data.get("tenantId", DEFAULT_TENANT))
                          for s in data.get("subscriptions", ()))
    return Fleet(
        tenant_id=data.get("tenantId", DEFAULT_TENANT),
        subscriptions=subscriptions,
        nsgs=tuple(builder.nsgs.values()),
        route_tables=tuple(builder.route_tables.values()),
        firewalls=tuple(builder.firewalls.values()),
        nat_gateways=tuple(builder.nat_gateways.values()),
        vnets=tuple(builder.vnets.values()),
        settings=_settings(data.get("settings", {})),
        public_ips=tuple(builder.public_ips.values()),
        public_ip_prefixes=tuple(builder.prefixes.values()),
        firewall_policies=tuple(builder.firewall_policies.values()),
        ip_groups=tuple(builder.ip_groups.values()),
    )


def _settings(raw: JsonDict) -> Settings:
    base = Settings()
    return Settings(
        page_size=int(raw.get("pageSize", base.page_size)),
        run_command_latency=float(raw.get("runCommandLatency", base.run_command_latency)),
        run_command_timeout=float(raw.get("runCommandTimeout", base.run_command_timeout)),
        run_command_per_vm_per_minute=raw.get("runCommandPerVmPerMinute", base.run_command_per_vm_per_minute),
        lro_poll_after=float(raw.get("lroPollAfter", base.lro_poll_after)),
    )


@dataclass(frozen=True)
class _Where:
    """Where a cluster lives; most AKS names derive from it."""

    sub_id: str
    rg: str
    node_rg: str
    hash8: str
    location: str


class _FleetBuilder:
    """Accumulates shared network resources by id so that two clusters can share a VNet, NSG or firewall."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.nsgs: dict[str, NsgSpec] = {}
        self.route_tables: dict[str, RouteTableSpec] = {}
        self.firewalls: dict[str, FirewallSpec] = {}
        self.firewall_policies: dict[str, FirewallPolicySpec] = {}
        self.ip_groups: dict[str, IpGroupSpec] = {}
        self.nat_gateways: dict[str, NatGatewaySpec] = {}
        self.vnets: dict[str, VnetSpec] = {}
        self.public_ips: dict[str, PublicIpSpec] = {}
        self.prefixes: dict[str, PublicIpPrefixSpec] = {}
        self.cluster_ids: set[str] = set()

    def subscription(self, raw: JsonDict, tenant_id: str) -> SubscriptionSpec:
        sub_id = str(raw["id"])
        clusters = tuple(self.cluster(sub_id, c) for c in raw.get("clusters", ()))
        return SubscriptionSpec(id=sub_id, display_name=raw.get("displayName", f"Subscription {sub_id[:8]}"),
                                tenant_id=raw.get("tenantId", tenant_id), clusters=clusters)

    def _register(self, store: dict[str, Any], spec: Any) -> None:
        key = spec.id.lower()
        if key in store and store[key] != spec:
            raise ScenarioError(f"{spec.id} is declared twice with different content")
        store[key] = spec

    def cluster(self, sub_id: str, raw: JsonDict) -> ClusterSpec:
        name, rg, location = raw["name"], raw["resourceGroup"], raw.get("location", "westeurope")
        cid = naming.cluster_id(sub_id, rg, name)
        if cid.lower() in self.cluster_ids:
            raise ScenarioError(f"cluster {cid} is declared twice")
        self.cluster_ids.add(cid.lower())
        hash8 = naming.cluster_hash(cid)
        node_rg = raw.get("nodeResourceGroup", naming.node_resource_group(rg, name, location))
        private = bool(raw.get("private", False))
        outbound = raw.get("outboundType", "loadBalancer")
        tunnel = raw.get("tunnel", "konnectivity")
        if tunnel not in TUNNEL_CONTAINERS:
            raise ScenarioError(f"{name}: unknown tunnel {tunnel!r}")

        node_nsg = NsgSpec(id=naming.resource_id(sub_id, node_rg, NSG_TYPE, f"aks-agentpool-{hash8}-nsg"),
                           name=f"aks-agentpool-{hash8}-nsg", resource_group=node_rg, location=location,
                           rules=tuple(raw.get("nodeNsgRules", ())))
        self._register(self.nsgs, node_nsg)
        for nsg in raw.get("nsgs", ()):
            nsg_rg = nsg.get("resourceGroup", rg)
            self._register(self.nsgs, NsgSpec(
                id=naming.resource_id(sub_id, nsg_rg, NSG_TYPE, nsg["name"]), name=nsg["name"],
                resource_group=nsg_rg, location=location, rules=tuple(nsg.get("rules", ()))))
        for table in raw.get("routeTables", ()):
            rt_rg = table.get("resourceGroup", rg)
            self._register(self.route_tables, RouteTableSpec(
                id=naming.resource_id(sub_id, rt_rg, RT_TYPE, table["name"]), name=table["name"],
                resource_group=rt_rg, location=location, routes=tuple(table.get("routes", ()))))
        self._policies(sub_id, rg, location, raw)
        firewall_id = self._firewall(sub_id, rg, location, raw.get("firewall"))
        for extra_fw in raw.get("firewalls", ()):  # more firewalls, for route tables that point at them
            extra_id = self._firewall(sub_id, rg, location, extra_fw)
            assert extra_id is not None
            fw_rg = extra_fw.get("resourceGroup", rg)
            pid = naming.resource_id(sub_id, fw_rg, PIP_TYPE, f"{extra_fw['name']}-pip")
            self._register(self.public_ips, PublicIpSpec(pid, f"{extra_fw['name']}-pip", fw_rg, location,
                                                         extra_fw.get("publicIp") or _stable_address(pid)))
        where = _Where(sub_id=sub_id, rg=rg, node_rg=node_rg, hash8=hash8, location=location)
        nat_id = self._nat_gateway(where, outbound, raw.get("natGateway"))
        for extra in raw.get("natGateways", ()):  # more gateways, for subnets that name them
            self._nat_gateway(where, "userAssignedNATGateway", extra, own_metrics=True)

        custom_vnet = "vnet" in raw
        vnet = self._vnet(where, _delegate_api_subnet(raw), node_nsg.id,
                          nat_id if outbound == "managedNATGateway" else None,
                          vnet_integration=bool(raw.get("apiServerAccessProfile", {}).get("enableVnetIntegration")))
        nic_nsg_id = node_nsg.id if raw.get("nicNsg", custom_vnet) else None

        lb_profile = raw.get("loadBalancerProfile", {})
        ip_count = int(lb_profile.get("managedOutboundIPCount", 1))
        allocated = int(lb_profile.get("allocatedOutboundPorts", 0))
        idle = int(lb_profile.get("idleTimeoutInMinutes", 30))
        load_balancer = None
        if outbound == "loadBalancer":
            load_balancer = self._load_balancer(where, ip_count, allocated, idle)

        access = self._access(where, raw, vnet, load_balancer, nat_id=nat_id, firewall_id=firewall_id)
        profile = raw.get("apiServerAccessProfile", {})
        bypassed = bool(profile.get("enableVnetIntegration")) and str(raw.get("networkPluginMode", "")) != "overlay" \
            and raw.get("networkPlugin", "azure") not in ("kubenet", "none")
        pools = self._pools(raw, vnet, hash8, "" if bypassed else tunnel)  # no tunnel: no agent containers
        api = _api_server(raw.get("dnsPrefix", f"{name[:30]}-dns"), hash8, location, private, vnet)
        if access["api_server_vnet_integration"]:
            api = _integrated_api_server(api, vnet, access["api_server_subnet_id"])
        lb_metrics = _series(raw.get("metrics", {}).get("loadBalancer"))
        nat_metrics = _series(raw.get("metrics", {}).get("natGateway"))
        nodes = [n for p in pools for n in p.nodes]
        if load_balancer is not None and lb_metrics is None:
            lb_metrics = default_lb_metrics(nodes, allocated)
        if nat_id is not None and nat_metrics is None:
            nat_metrics = default_nat_metrics()
        return ClusterSpec(
            id=cid, name=name, subscription_id=sub_id, resource_group=rg, location=location,
            node_resource_group=node_rg, hash8=hash8, private=private, outbound_type=outbound, tunnel=tunnel,
            dns_prefix=raw.get("dnsPrefix", f"{name[:30]}-dns"),
            kubernetes_version=raw.get("kubernetesVersion", "1.31.2"),
            network_plugin=raw.get("networkPlugin", "azure"), api_server=api,
            managed_outbound_ip_count=ip_count, allocated_outbound_ports=allocated, idle_timeout_minutes=idle,
            pools=pools, vnet=vnet, node_nsg_id=node_nsg.id, nic_nsg_id=nic_nsg_id,
            load_balancer=load_balancer, nat_gateway_id=nat_id, firewall_id=firewall_id,
            lb_metrics=lb_metrics or (), nat_metrics=nat_metrics or (),
            activity=tuple(self._event(sub_id, rg, e, node_nsg) for e in raw.get("activityLog", ())),
            admin_rules=tuple(raw.get("adminRules", ())),
            kube=dict(raw.get("kube", {})),
            **access,
        )

    def _access(self, where: _Where, raw: JsonDict, vnet: VnetSpec, load_balancer: LoadBalancerSpec | None, *,
                nat_id: str | None, firewall_id: str | None) -> dict[str, Any]:
        """API server access settings, and a public IP / prefix resource for every egress address implied."""
        named = dict(raw.get("publicIpAddresses", {}))
        profile = raw.get("apiServerAccessProfile", {})
        lb_profile = raw.get("loadBalancerProfile", {})

        def pip(rg: str, name: str, address: str | None = None) -> str:
            pid = naming.resource_id(where.sub_id, rg, PIP_TYPE, name)
            self._register(self.public_ips, PublicIpSpec(pid, name, rg, where.location,
                                                         address or named.get(name) or _stable_address(pid)))
            return pid

        own_ips = tuple(pip(i.get("resourceGroup", where.rg), i["name"], i.get("ipAddress"))
                        for i in lb_profile.get("outboundIPs", ()))
        own_prefixes: list[str] = []
        for item in lb_profile.get("outboundIPPrefixes", ()):
            rg = item.get("resourceGroup", where.rg)
            pid = naming.resource_id(where.sub_id, rg, PREFIX_TYPE, item["name"])
            self._register(self.prefixes, PublicIpPrefixSpec(pid, item["name"], rg, where.location,
                                                             item.get("ipPrefix") or named.get(item["name"])
                                                             or str(ipaddress.ip_network(
                                                                 f"{_stable_address(pid)}/30", strict=False))))
            own_prefixes.append(pid)
        if load_balancer is not None and not own_ips and not own_prefixes:
            for frontend in load_balancer.frontend_ip_ids:
                pip(where.node_rg, frontend.rsplit("/", 1)[-1])
        if nat_id is not None:
            nat = self.nat_gateways[nat_id.lower()]
            for ip_id in nat.public_ip_ids:
                pip(nat.resource_group, ip_id.rsplit("/", 1)[-1])
        if firewall_id is not None:
            fw = self.firewalls[firewall_id.lower()]
            pip(fw.resource_group, f"{fw.name}-pip", (raw.get("firewall") or {}).get("publicIp"))
        subnet_id = None
        if profile.get("subnet"):
            subnet_id = _pick_subnet(vnet, profile["subnet"]).id
        return {"authorized_ip_ranges": tuple(profile.get("authorizedIpRanges", ())),
                "api_server_vnet_integration": bool(profile.get("enableVnetIntegration", False)),
                "api_server_subnet_id": subnet_id, "network_plugin_mode": raw.get("networkPluginMode"),
                "outbound_ip_ids": own_ips, "outbound_ip_prefix_ids": tuple(own_prefixes)}

    def _firewall(self, sub_id: str, rg: str, location: str, raw: JsonDict | None) -> str | None:
        if not raw:
            return None
        fw_rg = raw.get("resourceGroup", rg)
        hub = raw.get("vnet", "hub-vnet")
        spec = FirewallSpec(
            id=naming.resource_id(sub_id, fw_rg, FW_TYPE, raw["name"]), name=raw["name"], resource_group=fw_rg,
            location=location, private_ip=raw.get("privateIp", "10.0.1.4"),
            subnet_id=naming.subnet_id(sub_id, fw_rg, hub, "AzureFirewallSubnet"),
            network_rule_collections=tuple(raw.get("networkRuleCollections", ())),
            application_rule_collections=tuple(raw.get("applicationRuleCollections", ())),
            firewall_policy_id=self._policy_ref(sub_id, fw_rg, raw.get("firewallPolicy")),
            threat_intel_mode=raw.get("threatIntelMode", "Alert"))
        self._register(self.firewalls, spec)
        return spec.id

    def _policy_ref(self, sub_id: str, rg: str, value: str | None) -> str | None:
        if not value:
            return None
        if value.startswith("/subscriptions/"):
            return value
        for spec in self.firewall_policies.values():
            if spec.name == value:
                return spec.id
        return naming.resource_id(sub_id, rg, FWP_TYPE, value)

    def _policies(self, sub_id: str, rg: str, location: str, raw: JsonDict) -> None:
        """IP groups and Firewall Policies (parents first in the list), shared by id across clusters."""
        for group in raw.get("ipGroups", ()):
            group_rg = group.get("resourceGroup", rg)
            self._register(self.ip_groups, IpGroupSpec(
                id=naming.resource_id(sub_id, group_rg, IPG_TYPE, group["name"]), name=group["name"],
                resource_group=group_rg, location=location, ip_addresses=tuple(group.get("ipAddresses", ()))))
        for policy in raw.get("firewallPolicies", ()):
            policy_rg = policy.get("resourceGroup", rg)
            self._register(self.firewall_policies, FirewallPolicySpec(
                id=naming.resource_id(sub_id, policy_rg, FWP_TYPE, policy["name"]), name=policy["name"],
                resource_group=policy_rg, location=location,
                base_policy_id=self._policy_ref(sub_id, policy_rg, policy.get("basePolicy")),
                threat_intel_mode=policy.get("threatIntelMode", "Alert"), dns_proxy=bool(policy.get("dnsProxy")),
                sku_tier=policy.get("sku", "Standard"),
                rule_collection_groups=tuple(policy.get("ruleCollectionGroups", ()))))

    def _nat_gateway(self, where: _Where, outbound: str, raw: JsonDict | None, *,
                     own_metrics: bool = False) -> str | None:
        if raw is None and outbound != "managedNATGateway":
            return None
        raw = raw or {}
        sub_id, location = where.sub_id, where.location
        nat_rg = raw.get("resourceGroup", where.node_rg)
        name = raw.get("name", f"aks-natgw-{where.hash8}")
        ips = tuple(naming.resource_id(sub_id, nat_rg, PIP_TYPE, f"{name}-pip-{i}")
                    for i in range(int(raw.get("publicIpCount", 1))))
        prefixes = []
        for item in raw.get("publicIpPrefixes", ()):
            prefix_rg = item.get("resourceGroup", nat_rg)
            pid = naming.resource_id(sub_id, prefix_rg, PREFIX_TYPE, item["name"])
            self._register(self.prefixes, PublicIpPrefixSpec(pid, item["name"], prefix_rg, location, item["ipPrefix"]))
            prefixes.append(pid)
        metrics = _series(raw.get("metrics"))
        spec = NatGatewaySpec(id=naming.resource_id(sub_id, nat_rg, NAT_TYPE, name), name=name,
                              resource_group=nat_rg, location=location,
                              idle_timeout_minutes=int(raw.get("idleTimeoutInMinutes", 4)), public_ip_ids=ips,
                              public_ip_prefix_ids=tuple(prefixes),
                              metrics=metrics if metrics is not None or not own_metrics else default_nat_metrics())
        self._register(self.nat_gateways, spec)
        if own_metrics:  # the cluster's primary gateway gets its public IPs from _access
            for ip_id in ips:
                self._register(self.public_ips, PublicIpSpec(ip_id, ip_id.rsplit("/", 1)[-1], nat_rg, location,
                                                             _stable_address(ip_id)))
        return spec.id

    def _vnet(self, where: _Where, raw: JsonDict | None, node_nsg_id: str, managed_nat_id: str | None, *,
              vnet_integration: bool = False) -> VnetSpec:
        sub_id, rg, node_rg, hash8, location = where.sub_id, where.rg, where.node_rg, where.hash8, where.location
        if raw is None:  # AKS-managed VNet in the node resource group, node NSG on the subnet
            name = f"aks-vnet-{hash8}"
            subnet = SubnetSpec(id=naming.subnet_id(sub_id, node_rg, name, "aks-subnet"), name="aks-subnet",
                                prefix="10.224.0.0/16", nsg_id=node_nsg_id, nat_gateway_id=managed_nat_id)
            managed: tuple[SubnetSpec, ...] = (subnet,)
            if vnet_integration:  # AKS adds its delegated API server subnet (not reported as subnetId)
                managed += (SubnetSpec(id=naming.subnet_id(sub_id, node_rg, name, "aks-apiserver-subnet"),
                                       name="aks-apiserver-subnet", prefix="10.225.0.0/28",
                                       delegations=(AKS_DELEGATION,)),)
            spec = VnetSpec(id=naming.resource_id(sub_id, node_rg, VNET_TYPE, name), name=name,
                            resource_group=node_rg, location=location, address_space=("10.224.0.0/12",),
                            subnets=managed)
        else:
            vnet_rg = raw.get("resourceGroup", rg)
            name = raw["name"]
            subnets = tuple(self._subnet(sub_id, vnet_rg, name, s, managed_nat_id) for s in raw["subnets"])
            spec = VnetSpec(
                id=naming.resource_id(sub_id, vnet_rg, VNET_TYPE, name), name=name, resource_group=vnet_rg,
                location=location, address_space=tuple(raw.get("addressSpace", [s.prefix for s in subnets])),
                subnets=subnets,
                peerings=tuple((p["name"], tuple(p["remoteAddressSpace"])) for p in raw.get("peerings", ())))
        self._register(self.vnets, spec)
        if managed_nat_id is not None:
            nat = self.nat_gateways[managed_nat_id.lower()]
            self.nat_gateways[managed_nat_id.lower()] = NatGatewaySpec(
                **{**nat.__dict__, "subnet_ids": tuple(s.id for s in spec.subnets)})
        return spec

    def _subnet(self, sub_id: str, vnet_rg: str, vnet: str, raw: JsonDict, managed_nat_id: str | None) -> SubnetSpec:
        def ref(key: str, provider_type: str, store: Mapping[str, Any]) -> str | None:
            value = raw.get(key)
            if not value:
                return None
            if value.startswith("/subscriptions/"):
                return str(value)
            for spec in store.values():
                if spec.name == value:
                    return str(spec.id)
            return naming.resource_id(sub_id, vnet_rg, provider_type, value)

        nat_id = ref("natGateway", NAT_TYPE, self.nat_gateways) or managed_nat_id
        return SubnetSpec(id=naming.subnet_id(sub_id, vnet_rg, vnet, raw["name"]), name=raw["name"],
                          prefix=raw["addressPrefix"], nsg_id=ref("nsg", NSG_TYPE, self.nsgs),
                          route_table_id=ref("routeTable", RT_TYPE, self.route_tables), nat_gateway_id=nat_id,
                          delegations=tuple(raw.get("delegations", ())))

    def _load_balancer(self, where: _Where, ip_count: int, allocated: int, idle: int) -> LoadBalancerSpec:
        lb_id = naming.resource_id(where.sub_id, where.node_rg, LB_TYPE, "kubernetes")
        frontends = tuple(f"{lb_id}/frontendIPConfigurations/{where.hash8}-outbound-{i}" for i in range(ip_count))
        return LoadBalancerSpec(id=lb_id, name="kubernetes", resource_group=where.node_rg, location=where.location,
                                frontend_ip_ids=frontends, allocated_outbound_ports=allocated,
                                idle_timeout_minutes=idle,
                                backend_pool_id=f"{lb_id}/backendAddressPools/aksOutboundBackendPool")

    def _pools(self, raw: JsonDict, vnet: VnetSpec, hash8: str, tunnel: str) -> tuple[PoolSpec, ...]:
        allocator = _IpAllocator(vnet, raw.get("agentPools", ()))
        pools: list[PoolSpec] = []
        for pool in raw.get("agentPools", ({"name": "nodepool1", "count": 3},)):
            subnet = _pick_subnet(vnet, pool.get("subnet"))
            count = int(pool.get("count", 3))
            overrides = {int(n.get("index", i)): n for i, n in enumerate(pool.get("nodes", ()))}
            nodes = []
            for index in range(count):
                merged = {**pool.get("node", {}), **overrides.get(index, {})}
                name = naming.computer_name(pool["name"], hash8, index) \
                    if pool.get("type", "VirtualMachineScaleSets") == "VirtualMachineScaleSets" \
                    else f"aks-{pool['name']}-{hash8}-{index}"
                nodes.append(_node(name, pool["name"], index, merged,
                                   placement=(subnet, allocator.take(subnet, merged.get("ip"))), tunnel=tunnel))
            pools.append(PoolSpec(
                name=pool["name"], type=pool.get("type", "VirtualMachineScaleSets"),
                mode=pool.get("mode", "System" if not pools else "User"), count=count,
                vm_size=pool.get("vmSize", "Standard_D4ds_v5"), subnet_id=subnet.id,
                vmss_name=naming.vmss_name(pool["name"], hash8),
                min_count=pool.get("minCount"), max_count=pool.get("maxCount"),
                max_surge=str(pool.get("maxSurge", "10%")), nodes=tuple(nodes),
                asg_ids=tuple(pool.get("applicationSecurityGroups", ()))))
        return tuple(pools)

    def _event(self, sub_id: str, rg: str, raw: JsonDict, node_nsg: NsgSpec) -> ActivityEventSpec:
        resource = raw.get("resourceId")
        if resource is None:
            nsg_name = raw.get("nsg", node_nsg.name)
            matches = [n for n in self.nsgs.values() if n.name == nsg_name]
            nsg_id = matches[0].id if matches else naming.resource_id(sub_id, rg, NSG_TYPE, nsg_name)
            resource = f"{nsg_id}/securityRules/{raw['rule']}" if raw.get("rule") else nsg_id
        if "timestamp" in raw:
            stamp = str(raw["timestamp"])
        else:
            when = self.now - timedelta(minutes=float(raw.get("minutesAgo", 60)))
            stamp = when.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"
        default_op = ("Microsoft.Network/networkSecurityGroups/securityRules/write" if "/securityRules/" in resource
                      else "Microsoft.Network/networkSecurityGroups/write")
        return ActivityEventSpec(operation=raw.get("operation", default_op), resource_id=str(resource),
                                 caller=raw.get("caller", "admin@contoso.com"), timestamp=stamp,
                                 status=raw.get("status", "Succeeded"))


class _IpAllocator:
    """Hands out node IPs per subnet from .4 upwards (Azure reserves the first four), skipping every IP a
    scenario pinned anywhere in the VNet, and refuses duplicates: nodes of one VNet must be distinct."""

    def __init__(self, vnet: VnetSpec, pools: Sequence[JsonDict]) -> None:
        self.vnet = vnet
        self.used: set[str] = set()
        self.pinned: set[str] = set()
        for pool in pools:
            for node in [pool.get("node", {}), *pool.get("nodes", ())]:
                if "ip" in node:
                    self.pinned.add(str(node["ip"]))
        self._cursors: dict[str, Iterator[ipaddress.IPv4Address]] = {}

    def take(self, subnet: SubnetSpec, wanted: str | None) -> str:
        if wanted is not None:
            if wanted in self.used:
                raise ScenarioError(f"IP {wanted} is used twice in {self.vnet.name}")
            if ipaddress.IPv4Address(wanted) not in ipaddress.IPv4Network(subnet.prefix):
                raise ScenarioError(f"IP {wanted} is outside subnet {subnet.name} ({subnet.prefix})")
            self.used.add(wanted)
            return wanted
        cursor = self._cursors.setdefault(subnet.id, _hosts_from_fourth(subnet.prefix))
        for candidate in cursor:
            text = str(candidate)
            if text not in self.used and text not in self.pinned:
                self.used.add(text)
                return text
        raise ScenarioError(f"subnet {subnet.name} ({subnet.prefix}) has no free IP left")


def _hosts_from_fourth(prefix: str) -> Iterator[ipaddress.IPv4Address]:
    network = ipaddress.IPv4Network(prefix)
    first = int(network.network_address) + 4
    last = int(network.broadcast_address) - 1
    for value in range(first, last + 1):
        yield ipaddress.IPv4Address(value)


def _pick_subnet(vnet: VnetSpec, name: str | None) -> SubnetSpec:
    if name is None:
        return vnet.subnets[0]
    for subnet in vnet.subnets:
        if subnet.name == name:
            return subnet
    raise ScenarioError(f"subnet {name!r} is not in {vnet.name}")


def _node(name: str, pool: str, index: int, raw: JsonDict, *, placement: tuple[SubnetSpec, str],
          tunnel: str) -> NodeSpec:
    subnet, ip = placement
    power = raw.get("powerState", "running" if raw.get("running", True) else "deallocated")
    sim = {k: v for k, v in raw.items() if k not in _ARM_NODE_KEYS}
    sim.setdefault("containers", [TUNNEL_CONTAINERS[tunnel]] if tunnel else [])
    spec = NodeSpec(name=name, pool=pool, instance_id=index, ip=ip, subnet_id=subnet.id, power_state=power,
                    output_lost=bool(raw.get("outputLost", False)), zone=raw.get("zone"), sim=sim)
    try:
        node_state(spec)
    except (TypeError, ValueError) as err:
        raise ScenarioError(str(err)) from err
    return spec


def _api_server(dns_prefix: str, hash8: str, location: str, private: bool, vnet: VnetSpec) -> ApiServerSpec:
    fqdn = f"{dns_prefix}-{hash8}.hcp.{location}.azmk8s.io"
    if private:
        # A private cluster's API server answers on a private endpoint in the cluster's address space, put
        # outside the nodes' /16 (the node lab routes that /16 on-link and the API server beyond it).
        subnet = ipaddress.IPv4Network(vnet.subnets[0].prefix)
        node_net = subnet.supernet(new_prefix=16) if subnet.prefixlen > 16 else subnet
        endpoint = ipaddress.IPv4Address(int(node_net.broadcast_address) + 5)
        guid = uuid.uuid5(uuid.NAMESPACE_DNS, fqdn)
        return ApiServerSpec(fqdn=fqdn, ip=str(endpoint),
                             private_fqdn=f"{dns_prefix}-{hash8}.{guid}.privatelink.{location}.azmk8s.io")
    value = int(hash8)
    return ApiServerSpec(fqdn=fqdn, ip=f"20.{50 + value % 100}.{(value // 100) % 256}.{(value // 25600) % 254 + 1}")


def _integrated_api_server(api: ApiServerSpec, vnet: VnetSpec, subnet_id: str | None) -> ApiServerSpec:
    """With API Server VNet Integration nodes reach the API server on its internal load balancer: the first
    usable address of the delegated subnet (the named one, else the one AKS delegated in its managed VNet)."""
    delegated = [s for s in vnet.subnets if (subnet_id and s.id.lower() == subnet_id.lower())
                 or (not subnet_id and AKS_DELEGATION in s.delegations)]
    if not delegated:
        return api
    network = ipaddress.IPv4Network(delegated[0].prefix)
    return replace(api, ip=str(network.network_address + 4))


def _delegate_api_subnet(raw: JsonDict) -> JsonDict | None:
    """The scenario's VNet with the API server subnet delegated to AKS, as API Server VNet Integration requires."""
    vnet = raw.get("vnet")
    name = raw.get("apiServerAccessProfile", {}).get("subnet")
    if vnet is None or not name:
        return vnet
    return {**vnet, "subnets": [{**s, "delegations": sorted({*s.get("delegations", ()), AKS_DELEGATION})}
                                if s["name"] == name else s for s in vnet["subnets"]]}


def _stable_address(resource_id: str) -> str:
    """A public-looking address that stays the same for a resource id across runs (52.x.y.z)."""
    value = int(hashlib.sha256(resource_id.lower().encode()).hexdigest()[:12], 16)
    return f"52.{value % 200 + 1}.{(value >> 8) % 256}.{(value >> 16) % 252 + 2}"


def _series(raw: Sequence[JsonDict] | None) -> tuple[MetricSeries, ...] | None:
    if raw is None:
        return None
    return tuple(MetricSeries(name=s["name"], dimensions=dict(s.get("dimensions", {})),
                              values=tuple(float(v) for v in s.get("values", (0,)))) for s in raw)


def now_utc() -> datetime:
    return datetime.now(UTC)
