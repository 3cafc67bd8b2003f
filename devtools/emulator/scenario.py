"""The emulated fleet, resolved: every subscription, cluster, network resource and node with final names.

A scenario file describes the fleet at a high level (see `scenario_load`); these types hold the result
after defaults, AKS naming and IP allocation were applied, so that the ARM JSON builders only translate
and never invent. Rules, routes and firewall rule collections stay in Azure's own JSON spelling: a
scenario author writes what they would see in the portal's JSON view, and the emulator returns it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

JsonDict = Mapping[str, Any]


@dataclass(frozen=True)
class Settings:
    """Behaviour knobs; tests usually override them in Python (see `EmulatorState`)."""

    page_size: int = 100
    run_command_latency: float = 0.0  # seconds from accept to result (Azure takes ~20-40 s)
    run_command_timeout: float = 5400.0  # Azure gives up on an action run-command after 90 minutes
    run_command_per_vm_per_minute: int | None = 4
    lro_poll_after: float = 1.0  # Retry-After hint on run-command 202/polls, in seconds


@dataclass(frozen=True)
class NodeSpec:
    """One VMSS instance. `sim` carries the in-node state handed to the node simulation (NodeState):
    iptables rules, ufw, kubelet listener, tunnel containers, blocked egress."""

    name: str  # computer name, e.g. aks-nodepool1-12345678-vmss000000
    pool: str
    instance_id: int
    ip: str
    subnet_id: str
    power_state: str = "running"  # running | deallocated | stopped
    output_lost: bool = False  # runs the script but the result never reaches Azure
    zone: str | None = None
    sim: JsonDict = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.power_state == "running"


@dataclass(frozen=True)
class PoolSpec:
    name: str
    type: str  # VirtualMachineScaleSets | AvailabilitySet
    mode: str
    count: int
    vm_size: str
    subnet_id: str
    vmss_name: str
    min_count: int | None = None
    max_count: int | None = None
    max_surge: str = "10%"
    nodes: tuple[NodeSpec, ...] = ()
    asg_ids: tuple[str, ...] = ()  # application security groups on the pool's NICs

    @property
    def autoscaling(self) -> bool:
        return self.max_count is not None


@dataclass(frozen=True)
class SubnetSpec:
    id: str
    name: str
    prefix: str
    nsg_id: str | None = None
    route_table_id: str | None = None
    nat_gateway_id: str | None = None
    delegations: tuple[str, ...] = ()  # e.g. Microsoft.ContainerService/managedClusters (API server subnet)


@dataclass(frozen=True)
class VnetSpec:
    id: str
    name: str
    resource_group: str
    location: str
    address_space: tuple[str, ...]
    subnets: tuple[SubnetSpec, ...]
    peerings: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (peering name, remote address space)


@dataclass(frozen=True)
class NsgSpec:
    id: str
    name: str
    resource_group: str
    location: str
    rules: tuple[JsonDict, ...] = ()  # security rules in ARM flat-or-properties form


@dataclass(frozen=True)
class RouteTableSpec:
    id: str
    name: str
    resource_group: str
    location: str
    routes: tuple[JsonDict, ...] = ()


@dataclass(frozen=True)
class FirewallSpec:
    id: str
    name: str
    resource_group: str
    location: str
    private_ip: str
    subnet_id: str
    network_rule_collections: tuple[JsonDict, ...] = ()
    application_rule_collections: tuple[JsonDict, ...] = ()
    firewall_policy_id: str | None = None  # a policy replaces the classic rule collections
    threat_intel_mode: str = "Alert"


@dataclass(frozen=True)
class FirewallPolicySpec:
    """A Firewall Policy; `rule_collection_groups` hold ARM rule collection groups ({"name", "priority",
    "ruleCollections": [...]}, flat or under "properties") exactly as a portal JSON view shows them."""

    id: str
    name: str
    resource_group: str
    location: str
    base_policy_id: str | None = None
    threat_intel_mode: str = "Alert"
    dns_proxy: bool = False
    sku_tier: str = "Standard"
    rule_collection_groups: tuple[JsonDict, ...] = ()


@dataclass(frozen=True)
class IpGroupSpec:
    id: str
    name: str
    resource_group: str
    location: str
    ip_addresses: tuple[str, ...] = ()


@dataclass(frozen=True)
class NatGatewaySpec:
    id: str
    name: str
    resource_group: str
    location: str
    idle_timeout_minutes: int = 4
    public_ip_ids: tuple[str, ...] = ()
    subnet_ids: tuple[str, ...] = ()
    public_ip_prefix_ids: tuple[str, ...] = ()
    # The gateway's own SNAT series (a cluster with several gateways); None: the owning cluster's nat_metrics.
    metrics: tuple[MetricSeries, ...] | None = None


@dataclass(frozen=True)
class LoadBalancerSpec:
    """The AKS-managed `kubernetes` load balancer that owns outbound SNAT for outboundType loadBalancer."""

    id: str
    name: str
    resource_group: str
    location: str
    frontend_ip_ids: tuple[str, ...]
    allocated_outbound_ports: int
    idle_timeout_minutes: int
    backend_pool_id: str


@dataclass(frozen=True)
class MetricSeries:
    """One metric time series: `values` are per-interval numbers, replayed oldest to newest."""

    name: str
    dimensions: Mapping[str, str]
    values: tuple[float, ...]


@dataclass(frozen=True)
class ActivityEventSpec:
    operation: str  # e.g. Microsoft.Network/networkSecurityGroups/securityRules/write
    resource_id: str
    caller: str
    timestamp: str  # ISO 8601 UTC
    status: str = "Succeeded"


@dataclass(frozen=True)
class PublicIpSpec:
    """A public IP resource (load balancer frontend, NAT gateway, firewall, or the user's own outbound IP)."""

    id: str
    name: str
    resource_group: str
    location: str
    ip_address: str


@dataclass(frozen=True)
class PublicIpPrefixSpec:
    id: str
    name: str
    resource_group: str
    location: str
    ip_prefix: str


@dataclass(frozen=True)
class ApiServerSpec:
    fqdn: str
    ip: str
    private_fqdn: str | None = None


@dataclass(frozen=True)
class ClusterSpec:
    id: str
    name: str
    subscription_id: str
    resource_group: str
    location: str
    node_resource_group: str
    hash8: str
    private: bool
    outbound_type: str
    tunnel: str  # konnectivity | tunnel-front | aks-link
    dns_prefix: str
    kubernetes_version: str
    network_plugin: str
    api_server: ApiServerSpec
    managed_outbound_ip_count: int
    allocated_outbound_ports: int
    idle_timeout_minutes: int
    pools: tuple[PoolSpec, ...]
    vnet: VnetSpec
    node_nsg_id: str  # the AKS-managed aks-agentpool-<hash>-nsg in the node resource group
    nic_nsg_id: str | None  # NSG on the nodes' NICs (AKS puts its NSG there for custom VNets)
    load_balancer: LoadBalancerSpec | None
    nat_gateway_id: str | None
    firewall_id: str | None
    lb_metrics: tuple[MetricSeries, ...] = ()
    nat_metrics: tuple[MetricSeries, ...] = ()
    activity: tuple[ActivityEventSpec, ...] = ()
    admin_rules: tuple[JsonDict, ...] = ()
    kube: JsonDict = field(default_factory=dict)  # the Kubernetes API side (devtools.emulator.kubeobjects)
    # API server access: authorized IP ranges (empty = unrestricted), API Server VNet Integration and the
    # delegated subnet it uses, and the pod network mode (Azure CNI Overlay keeps the tunnel).
    authorized_ip_ranges: tuple[str, ...] = ()
    api_server_vnet_integration: bool = False
    api_server_subnet_id: str | None = None
    network_plugin_mode: str | None = None
    # The user's own load balancer outbound public IPs / prefixes (instead of AKS-managed outbound IPs).
    outbound_ip_ids: tuple[str, ...] = ()
    outbound_ip_prefix_ids: tuple[str, ...] = ()

    @property
    def nodes(self) -> tuple[NodeSpec, ...]:
        return tuple(node for pool in self.pools for node in pool.nodes)


@dataclass(frozen=True)
class SubscriptionSpec:
    id: str
    display_name: str
    tenant_id: str
    clusters: tuple[ClusterSpec, ...] = ()


@dataclass(frozen=True)
class Fleet:
    """Everything the emulator serves; network resources are indexed by id in `EmulatorState`."""

    tenant_id: str
    subscriptions: tuple[SubscriptionSpec, ...]
    nsgs: tuple[NsgSpec, ...] = ()
    route_tables: tuple[RouteTableSpec, ...] = ()
    firewalls: tuple[FirewallSpec, ...] = ()
    nat_gateways: tuple[NatGatewaySpec, ...] = ()
    vnets: tuple[VnetSpec, ...] = ()
    settings: Settings = field(default_factory=Settings)
    public_ips: tuple[PublicIpSpec, ...] = ()
    public_ip_prefixes: tuple[PublicIpPrefixSpec, ...] = ()
    firewall_policies: tuple[FirewallPolicySpec, ...] = ()
    ip_groups: tuple[IpGroupSpec, ...] = ()

    @property
    def clusters(self) -> tuple[ClusterSpec, ...]:
        return tuple(c for s in self.subscriptions for c in s.clusters)
