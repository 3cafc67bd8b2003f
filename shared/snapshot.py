"""Typed snapshot of one cluster: everything the cause evaluators may look at, and nothing from the SDK.

Collection (ARM, metrics, run-command) fills it; evaluation reads it. Any piece that could not be
collected is an `Unavailable` carrying the reason, so that an evaluator can answer `unknown` with that
reason instead of mistaking missing data for a clean bill of health.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from shared.kube.types import KubeView, NodeSymptom
from shared.netrules.firewall_types import Firewall, FirewallRule
from shared.netrules.nsg_types import AddressContext, AdminRule, NetworkSecurityGroup

# Firewall types live with their evaluator (shared.netrules); re-exported for the snapshot's users.
__all__ = ["Firewall", "FirewallRule"]

T = TypeVar("T")


@dataclass(frozen=True)
class Unavailable:
    """A piece of evidence that could not be collected, and why (403, throttled, truncated output...)."""

    reason: str


@dataclass(frozen=True)
class Node:
    name: str
    pool: str
    private_ip: str | None
    subnet_id: str
    vmss_id: str = ""
    instance_id: str = ""
    nic_nsg_id: str | None = None
    running: bool = True
    # Application security groups of the NIC's primary IP configuration: NSG rules may name them as
    # source or destination, so two nodes on one subnet and NSG can still be treated differently.
    asg_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class AgentPool:
    name: str
    subnet_id: str
    count: int
    max_count: int | None = None  # autoscaler max when autoscaling is on
    max_surge: int = 1  # extra nodes during upgrade; AKS default is one
    vmss_id: str = ""


@dataclass(frozen=True)
class Subnet:
    id: str
    prefixes: tuple[str, ...]
    nsg_id: str | None = None
    route_table_id: str | None = None
    # Services the subnet is delegated to (e.g. Microsoft.ContainerService/managedClusters: an API Server
    # VNet Integration subnet).
    delegations: tuple[str, ...] = ()


@dataclass(frozen=True)
class Route:
    name: str
    address_prefix: str
    next_hop_type: str  # Internet | VirtualAppliance | VnetLocal | VirtualNetworkGateway | None
    next_hop_ip: str | None = None


@dataclass(frozen=True)
class RouteTable:
    id: str
    routes: tuple[Route, ...] = ()


@dataclass(frozen=True)
class LoadBalancerProfile:
    """The cluster's outbound settings. `kind` says how the user chose the outbound IPs, because a fix
    must keep that choice: `managed` (AKS creates `managed_ip_count` IPs), `ips` (the user's own public
    IPs, `outbound_ip_ids`) or `prefixes` (the user's public IP prefixes, `outbound_ip_prefix_ids`).
    `outbound_ip_count` is what the profile itself says; with prefixes the real count needs each
    prefix's length, which collection reads (SnatMetrics.outbound_ip_count)."""

    allocated_outbound_ports: int = 0  # 0 means AKS's default table
    outbound_ip_count: int = 1
    idle_timeout_minutes: int = 30
    kind: str = "managed"  # managed | ips | prefixes
    managed_ip_count: int | None = None
    outbound_ip_ids: tuple[str, ...] = ()
    outbound_ip_prefix_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class SnatMetrics:
    """SNAT metric series over the window, for the load balancer or NAT gateway on the outbound path.

    `used_ports` / `allocated_ports` are per backend IP (the node), one value per interval.
    """

    source_id: str
    source_kind: str  # "loadBalancer" | "natGateway"
    window_minutes: int
    failed_connections: float
    successful_connections: float = 0.0
    used_ports: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    allocated_ports: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    packet_drops: float = 0.0
    # Metrics Azure answered with no time series at all: no data is not "no failures".
    missing: tuple[str, ...] = ()
    # Public IPs behind this source as read now (prefixes expanded by their length); None: not known.
    outbound_ip_count: int | None = None
    outbound_ips_error: str | None = None  # why the IPs / prefixes behind it could not be read
    public_ip_ids: tuple[str, ...] = ()  # NAT gateway: its public IPs (a fix must keep them)
    public_ip_prefix_ids: tuple[str, ...] = ()  # NAT gateway: its public IP prefixes
    # NAT gateways: a cluster's node subnets may use several. The others read are in `also`; those that
    # could not be read are in `unread` (id -> why), so that one unread gateway never reads as clear.
    also: tuple[SnatMetrics, ...] = ()
    unread: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ActivityEvent:
    """One NSG or security rule write/delete from the Activity Log."""

    operation: str  # e.g. Microsoft.Network/networkSecurityGroups/securityRules/write
    resource_id: str
    caller: str
    timestamp: str
    status: str = "Succeeded"


@dataclass(frozen=True)
class TlsCheck:
    """The node's own TLS handshake to the API server on 443, offering ALPN `konnectivity`.

    `verified` is whether the served chain verifies against the cluster CA the node already holds
    (None: could not tell); `alpn` is the protocol the server selected (None: none negotiated). A chain
    from another issuer or a missing ALPN means TLS inspection or ALPN stripping on the egress path.
    `error` says why the handshake could not be made or judged (no openssl, no CA file, no answer).
    """

    verified: bool | None
    alpn: str | None
    issuer: str = ""
    error: str | None = None


@dataclass(frozen=True)
class NodeProbe:
    """What the node probe script saw on one node (parsed from its framed output).

    Raw tool outputs are kept as text so that the same parsers serve `analyze` and the monitor.
    `ufw_status` is None when ufw is not installed; `containers` is None when crictl is absent.
    `reachability` maps a node IP to the netcat outcome of TCP 10250 from this node;
    `egress` maps "tcp/443", "tcp/9000", "udp/1194" to the outcome towards the API server: ok, timeout,
    refused, noroute, error, unresolved, or (UDP only) `silent`: no answer and no ICMP error, which
    proves nothing (a drop and a listening server that ignores the datagram look the same). UDP 1194 is
    `ok` only when an aks-link (OpenVPN) server answered the probe's client hard-reset.
    `container_states` maps a tunnel container name to its crictl state (e.g. "running", "exited").
    """

    node: str
    ufw_status: str | None = None
    iptables_save: str | None = None
    containers: tuple[str, ...] | None = None
    reachability: Mapping[str, str] = field(default_factory=dict)
    egress: Mapping[str, str] = field(default_factory=dict)
    api_server_ip: str | None = None
    tls: TlsCheck | None = None
    container_states: Mapping[str, str] = field(default_factory=dict)
    # Why a section could not be read (too large, the tool failed): only that cause turns unknown.
    ufw_error: str | None = None
    iptables_error: str | None = None


@dataclass(frozen=True)
class EgressAddress:
    """One public address (or whole prefix) the cluster's outbound traffic can leave from.

    `address` is an IP or a CIDR prefix (an outbound public IP prefix: every address in it may be used);
    `source` is the ARM id of the public IP / prefix resource, `via` the thing that uses it (the outbound
    load balancer, a NAT gateway, the hub firewall), so evidence can say where a missing IP comes from.
    """

    address: str
    source: str
    via: str


@dataclass(frozen=True)
class EgressIps:
    """The cluster's egress addresses as far as they could be read.

    `errors` maps each egress source that could not be read (a public IP 403, an unreadable firewall or
    prefix) to why: an address missing from the authorized ranges is still reported, but a cluster whose
    egress is only partly known is never judged clear.
    """

    addresses: tuple[EgressAddress, ...] = ()
    errors: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ClusterSnapshot:
    id: str
    name: str
    subscription_id: str
    resource_group: str
    location: str
    node_resource_group: str
    private: bool
    outbound_type: str  # loadBalancer | managedNATGateway | userAssignedNATGateway | userDefinedRouting | none
    tunnel: str = "konnectivity"  # konnectivity | tunnel-front | aks-link | unknown
    fqdn: str | None = None
    private_fqdn: str | None = None
    load_balancer_profile: LoadBalancerProfile | None = None
    pools: tuple[AgentPool, ...] = ()
    nodes: tuple[Node, ...] | Unavailable = ()
    subnets: Mapping[str, Subnet] = field(default_factory=dict)
    nsgs: Mapping[str, NetworkSecurityGroup] | Unavailable = field(default_factory=dict)
    address_context: AddressContext = field(default_factory=AddressContext)
    # NSGs attached on some node's path that could not be read (id lower case -> why): the flows through
    # them are undecided, while flows elsewhere (and denies that hold whatever they say) are still judged.
    nsg_errors: Mapping[str, str] = field(default_factory=dict)
    admin_rules: tuple[AdminRule, ...] | Unavailable = ()
    route_tables: Mapping[str, RouteTable] = field(default_factory=dict)
    firewall: Firewall | Unavailable | None = None  # on the first node subnet's default route (legacy view)
    # Every virtual-appliance next hop on the node subnets' routes, by next-hop IP: the Azure Firewall that
    # owns it (with its policy read), or why it cannot be judged (an NVA, a firewall that could not be read).
    appliances: Mapping[str, Firewall | Unavailable] = field(default_factory=dict)
    # Route tables on node subnets that could not be read, by id (lower case) -> why.
    unreadable_route_tables: Mapping[str, str] = field(default_factory=dict)
    snat: SnatMetrics | Unavailable | None = None
    nsg_changes: tuple[ActivityEvent, ...] | Unavailable = ()
    probes: Mapping[str, NodeProbe | Unavailable] = field(default_factory=dict)
    probes_mode: str = "off"  # off | sample | all
    unsupported_reason: str | None = None  # e.g. availability-set clusters: every cause is unknown
    # The cluster's Kubernetes API (shared.kube): None = not read in this run (offline, or not asked for).
    kube: KubeView | Unavailable | None = None
    # The symptom call per node through API server -> tunnel -> kubelet; None = not made in this run.
    symptom: tuple[NodeSymptom, ...] | Unavailable | None = None
    # apiServerAccessProfile.authorizedIpRanges (empty: not restricted) and the egress addresses that
    # must fall inside them (None: not collected in this run, e.g. a hand-built snapshot).
    authorized_ip_ranges: tuple[str, ...] = ()
    egress_ips: EgressIps | Unavailable | None = None
    # API Server VNet Integration: the API server sits behind an internal load balancer in
    # `api_server_subnet_id` and dials kubelets directly, so the tunnel is not used unless
    # `tunnel_exception` says why it still is (Microsoft: agents stay where pod IPs are not VNet IPs).
    api_server_vnet_integration: bool = False
    api_server_subnet_id: str | None = None
    tunnel_exception: str | None = None

    def subnet_of(self, node: Node) -> Subnet | None:
        return self.subnets.get(node.subnet_id.lower()) or self.subnets.get(node.subnet_id)

    def tunnel_not_used(self) -> str | None:
        """Why the API-server-to-node tunnel is not used by this cluster, or None when it is (or may be).

        With API Server VNet Integration the API server reaches kubelets over the VNet; Microsoft's
        documented exception is a pod network whose IPs are not VNet IPs (Azure CNI Overlay, kubenet,
        bring-your-own CNI), where Konnectivity agents are still deployed to reach pods.
        """
        if not self.api_server_vnet_integration or self.tunnel_exception:
            return None
        return ("API Server VNet Integration: the API server reaches the nodes' kubelets directly from its "
                "delegated subnet, so no tunnel is used")
