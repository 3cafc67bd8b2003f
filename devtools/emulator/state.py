"""The emulator's live world: the fleet, lookups by ARM id, and the mutations tests use to "fix" things.

Every mutation replaces immutable specs and rebuilds the indexes under one lock, so a request handler
always sees one consistent fleet. Fleets are small enough (even 1,000 clusters) that a rebuild per
mutation is cheaper than the bugs of incremental index maintenance.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from devtools.emulator.scenario import (
    ActivityEventSpec,
    ClusterSpec,
    FirewallPolicySpec,
    FirewallSpec,
    Fleet,
    IpGroupSpec,
    JsonDict,
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


@dataclass(frozen=True)
class NodeRef:
    cluster: ClusterSpec
    pool: PoolSpec
    node: NodeSpec


@dataclass
class _Index:
    subscriptions: dict[str, SubscriptionSpec]
    clusters: dict[str, ClusterSpec]
    resource_groups: set[tuple[str, str]]
    vmss: dict[tuple[str, str, str], tuple[ClusterSpec, PoolSpec]]
    nodes: dict[str, NodeRef]
    nsgs: dict[str, NsgSpec]
    route_tables: dict[str, RouteTableSpec]
    firewalls: dict[str, FirewallSpec]
    nat_gateways: dict[str, NatGatewaySpec]
    vnets: dict[str, VnetSpec]
    load_balancers: dict[str, ClusterSpec]
    nat_owner: dict[str, ClusterSpec]
    public_ips: dict[str, PublicIpSpec]
    public_ip_prefixes: dict[str, PublicIpPrefixSpec]
    firewall_policies: dict[str, FirewallPolicySpec] = dataclasses.field(default_factory=dict)
    ip_groups: dict[str, IpGroupSpec] = dataclasses.field(default_factory=dict)


class EmulatorState:
    def __init__(self, fleet: Fleet) -> None:
        self._lock = threading.RLock()
        self._fleet = fleet
        self.settings: Settings = fleet.settings
        self._index = self._build(fleet)
        self.on_node_state: Any = None  # set by the Emulator: forwards NodeState changes to executors

    # --- reads ------------------------------------------------------------------------------------

    @property
    def fleet(self) -> Fleet:
        with self._lock:
            return self._fleet

    @property
    def tenant_id(self) -> str:
        return self._fleet.tenant_id

    def subscriptions(self) -> list[SubscriptionSpec]:
        with self._lock:
            return list(self._fleet.subscriptions)

    def subscription(self, sub_id: str) -> SubscriptionSpec | None:
        return self._index.subscriptions.get(sub_id.lower())

    def has_resource_group(self, sub_id: str, rg: str) -> bool:
        return (sub_id.lower(), rg.lower()) in self._index.resource_groups

    def clusters_in(self, sub_id: str) -> list[ClusterSpec]:
        sub = self.subscription(sub_id)
        return list(sub.clusters) if sub else []

    def cluster(self, cluster_id: str) -> ClusterSpec | None:
        return self._index.clusters.get(cluster_id.rstrip("/").lower())

    def find_cluster(self, sub_id: str, rg: str, name: str) -> ClusterSpec | None:
        for cluster in self.clusters_in(sub_id):
            if cluster.resource_group.lower() == rg.lower() and cluster.name.lower() == name.lower():
                return cluster
        return None

    def pools_in_node_rg(self, sub_id: str, rg: str) -> list[tuple[ClusterSpec, PoolSpec]]:
        return [v for (s, r, _), v in self._index.vmss.items() if s == sub_id.lower() and r == rg.lower()]

    def vmss(self, sub_id: str, rg: str, name: str) -> tuple[ClusterSpec, PoolSpec] | None:
        return self._index.vmss.get((sub_id.lower(), rg.lower(), name.lower()))

    def node_by_name(self, name: str) -> NodeRef | None:
        return self._index.nodes.get(name.lower())

    def nsg(self, resource: str) -> NsgSpec | None:
        return self._index.nsgs.get(resource.lower())

    def route_table(self, resource: str) -> RouteTableSpec | None:
        return self._index.route_tables.get(resource.lower())

    def firewall(self, resource: str) -> FirewallSpec | None:
        return self._index.firewalls.get(resource.lower())

    def firewall_policy(self, resource: str) -> FirewallPolicySpec | None:
        return self._index.firewall_policies.get(resource.lower())

    def ip_group(self, resource: str) -> IpGroupSpec | None:
        return self._index.ip_groups.get(resource.lower())

    def nat_gateway(self, resource: str) -> NatGatewaySpec | None:
        return self._index.nat_gateways.get(resource.lower())

    def vnet(self, resource: str) -> VnetSpec | None:
        return self._index.vnets.get(resource.lower())

    def public_ip(self, resource: str) -> PublicIpSpec | None:
        return self._index.public_ips.get(resource.lower())

    def public_ip_prefix(self, resource: str) -> PublicIpPrefixSpec | None:
        return self._index.public_ip_prefixes.get(resource.lower())

    def egress_addresses(self, cluster_id: str) -> tuple[str, ...]:
        """The cluster's egress addresses (IPs and prefixes) as its scenario wires them, for tests and the
        Kubernetes side (an agent dialling from outside the authorized ranges gets no connection)."""
        from devtools.emulator.resources import egress_resource_ids

        cluster = self._require_cluster(cluster_id)
        out: list[str] = []
        for rid in egress_resource_ids(cluster, self._fleet):
            pip, prefix = self.public_ip(rid), self.public_ip_prefix(rid)
            if pip is not None:
                out.append(pip.ip_address)
            elif prefix is not None:
                out.append(prefix.ip_prefix)
        return tuple(out)

    def load_balancer_owner(self, resource: str) -> ClusterSpec | None:
        return self._index.load_balancers.get(resource.lower())

    def nat_owner(self, resource: str) -> ClusterSpec | None:
        return self._index.nat_owner.get(resource.lower())

    def subnets_using(self, attribute: str, resource: str) -> list[str]:
        """Back-references Azure includes on NSGs and route tables (`subnets: [{id}]`)."""
        wanted = resource.lower()
        return [s.id for v in self._index.vnets.values() for s in v.subnets
                if (getattr(s, attribute) or "").lower() == wanted]

    def nics_using_nsg(self, resource: str) -> list[str]:
        from devtools.emulator.resources import vm_id

        wanted = resource.lower()
        return [f"{vm_id(c, p, n)}/networkInterfaces/{p.vmss_name}" for c in self._index.clusters.values()
                if (c.nic_nsg_id or "").lower() == wanted for p in c.pools for n in p.nodes]

    def clusters_on_vnet(self, vnet_id: str) -> list[ClusterSpec]:
        return [c for c in self._index.clusters.values() if c.vnet.id.lower() == vnet_id.lower()]

    # --- mutations --------------------------------------------------------------------------------

    def configure(self, **changes: Any) -> None:
        """Change behaviour knobs, e.g. `configure(page_size=2, run_command_latency=0.2)`."""
        with self._lock:
            self.settings = dataclasses.replace(self.settings, **changes)

    def set_nsg_rules(self, nsg: str, rules: Sequence[JsonDict]) -> None:
        """Replace an NSG's custom rules (by id or name); rules use Azure's JSON spelling."""
        with self._lock:
            spec = self._require_nsg(nsg)
            self._replace_fleet(nsgs=tuple(dataclasses.replace(n, rules=tuple(rules)) if n is spec else n
                                           for n in self._fleet.nsgs))

    def add_nsg_rule(self, nsg: str, rule: JsonDict, *, caller: str | None = None) -> None:
        """Add or replace one rule; with `caller`, also log the write in the Activity Log like Azure would."""
        with self._lock:
            spec = self._require_nsg(nsg)
            rules = [r for r in spec.rules if r["name"] != rule["name"]] + [rule]
            self.set_nsg_rules(spec.id, rules)
            if caller:
                self._log_rule_event(spec, rule["name"], "write", caller)

    def remove_nsg_rule(self, nsg: str, rule_name: str, *, caller: str | None = None) -> None:
        with self._lock:
            spec = self._require_nsg(nsg)
            self.set_nsg_rules(spec.id, [r for r in spec.rules if r["name"] != rule_name])
            if caller:
                self._log_rule_event(spec, rule_name, "delete", caller)

    def set_routes(self, route_table: str, routes: Sequence[JsonDict]) -> None:
        with self._lock:
            spec = self._require(self._fleet.route_tables, route_table, "route table")
            self._replace_fleet(route_tables=tuple(dataclasses.replace(t, routes=tuple(routes)) if t is spec else t
                                                   for t in self._fleet.route_tables))

    def set_firewall_rules(self, firewall: str, *, network: Sequence[JsonDict] | None = None,
                           application: Sequence[JsonDict] | None = None) -> None:
        with self._lock:
            spec = self._require(self._fleet.firewalls, firewall, "firewall")
            changed = dataclasses.replace(
                spec,
                network_rule_collections=tuple(network) if network is not None else spec.network_rule_collections,
                application_rule_collections=tuple(application) if application is not None
                else spec.application_rule_collections)
            self._replace_fleet(firewalls=tuple(changed if f is spec else f for f in self._fleet.firewalls))

    def set_rule_collection_groups(self, policy: str, groups: Sequence[JsonDict]) -> None:
        """Replace a Firewall Policy's rule collection groups (id or name), as a PUT of each would."""
        with self._lock:
            spec = self._require(self._fleet.firewall_policies, policy, "firewall policy")
            changed = dataclasses.replace(spec, rule_collection_groups=tuple(groups))
            self._replace_fleet(firewall_policies=tuple(changed if p is spec else p
                                                        for p in self._fleet.firewall_policies))

    def set_subnet(self, subnet_id: str, **changes: Any) -> None:
        """Re-point a subnet's nsg_id / route_table_id / nat_gateway_id (None detaches)."""
        with self._lock:
            vnets = []
            for vnet in self._fleet.vnets:
                subnets = tuple(dataclasses.replace(s, **changes) if s.id.lower() == subnet_id.lower() else s
                                for s in vnet.subnets)
                vnets.append(dataclasses.replace(vnet, subnets=subnets))
            self._replace_fleet(vnets=tuple(vnets))

    def set_metrics(self, resource: str, series: Sequence[MetricSeries | JsonDict]) -> None:
        """Replace the series of a load balancer or NAT gateway (or of a cluster's outbound resource)."""
        parsed = tuple(s if isinstance(s, MetricSeries) else
                       MetricSeries(s["name"], dict(s.get("dimensions", {})), tuple(float(v) for v in s["values"]))
                       for s in series)
        with self._lock:
            lb_owner = self.load_balancer_owner(resource)
            nat_owner = self.nat_owner(resource)
            cluster = self.cluster(resource)
            if lb_owner is None and cluster is not None and cluster.load_balancer is not None:
                lb_owner = cluster
            if lb_owner is not None:
                self._replace_cluster(dataclasses.replace(lb_owner, lb_metrics=parsed))
                return
            own = self.nat_gateway(resource)
            if own is not None and (own.metrics is not None or nat_owner is None):  # a gateway's own series
                changed = dataclasses.replace(own, metrics=parsed)
                self._replace_fleet(nat_gateways=tuple(changed if n is own else n for n in self._fleet.nat_gateways))
                return
            nat_id = resource if nat_owner is not None else (cluster.nat_gateway_id if cluster else None)
            if not nat_id:
                raise KeyError(f"no load balancer, NAT gateway or cluster {resource}")
            for owner in [c for c in self._fleet.clusters if (c.nat_gateway_id or "").lower() == nat_id.lower()]:
                self._replace_cluster(dataclasses.replace(owner, nat_metrics=parsed))

    def add_activity_event(self, cluster_id: str, event: ActivityEventSpec) -> None:
        with self._lock:
            cluster = self._require_cluster(cluster_id)
            self._replace_cluster(dataclasses.replace(cluster, activity=(*cluster.activity, event)))

    def set_authorized_ip_ranges(self, cluster_id: str, ranges: Sequence[str]) -> None:
        """`az aks update --api-server-authorized-ip-ranges` (empty turns the restriction off)."""
        with self._lock:
            cluster = self._require_cluster(cluster_id)
            self._replace_cluster(dataclasses.replace(cluster, authorized_ip_ranges=tuple(ranges)))

    def set_admin_rules(self, cluster_id: str, rules: Sequence[JsonDict]) -> None:
        with self._lock:
            cluster = self._require_cluster(cluster_id)
            self._replace_cluster(dataclasses.replace(cluster, admin_rules=tuple(rules)))

    def set_node(self, node_name: str, **changes: Any) -> None:
        """Change ARM-side node facts: power_state ("running" | "deallocated" | "stopped"), output_lost, ip."""
        with self._lock:
            ref = self._require_node(node_name)
            self._replace_node(ref, dataclasses.replace(ref.node, **changes))

    def patch_node_sim(self, node_name: str, **sim: Any) -> None:
        """Change in-node simulation fields (scenario spelling) and push the new NodeState to its executor."""
        with self._lock:
            ref = self._require_node(node_name)
            self._replace_node(ref, dataclasses.replace(ref.node, sim={**ref.node.sim, **sim}))
            callback = self.on_node_state
        if callback is not None:
            callback(node_name, None)

    def update_node(self, node_state: Any) -> None:
        """Install a new `devtools.emulator.nodes.NodeState` for its node (matched by `.name`)."""
        ref = self._require_node(str(node_state.name))
        with self._lock:
            callback = self.on_node_state
        if callback is not None:
            callback(ref.node.name, node_state)

    # --- internals --------------------------------------------------------------------------------

    def _require(self, items: Sequence[Any], key: str, kind: str) -> Any:
        for item in items:
            if item.id.lower() == key.lower() or item.name.lower() == key.lower():
                return item
        raise KeyError(f"no {kind} {key}")

    def _require_nsg(self, key: str) -> NsgSpec:
        spec: NsgSpec = self._require(self._fleet.nsgs, key, "NSG")
        return spec

    def _require_cluster(self, key: str) -> ClusterSpec:
        spec: ClusterSpec = self._require(self._fleet.clusters, key, "cluster")
        return spec

    def _require_node(self, name: str) -> NodeRef:
        ref = self.node_by_name(name)
        if ref is None:
            raise KeyError(f"no node {name}")
        return ref

    def _log_rule_event(self, nsg: NsgSpec, rule: str, verb: str, caller: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"
        event = ActivityEventSpec(operation=f"Microsoft.Network/networkSecurityGroups/securityRules/{verb}",
                                  resource_id=f"{nsg.id}/securityRules/{rule}", caller=caller, timestamp=stamp)
        owners = [c for c in self._index.clusters.values()
                  if nsg.id.lower() in {(c.node_nsg_id or "").lower(), (c.nic_nsg_id or "").lower()}
                  | {(s.nsg_id or "").lower() for s in c.vnet.subnets}]
        for owner in owners[:1]:
            self._replace_cluster(dataclasses.replace(owner, activity=(*owner.activity, event)))

    def _replace_node(self, ref: NodeRef, node: NodeSpec) -> None:
        pools = tuple(dataclasses.replace(p, nodes=tuple(node if n is ref.node else n for n in p.nodes))
                      if p is ref.pool else p for p in ref.cluster.pools)
        self._replace_cluster(dataclasses.replace(ref.cluster, pools=pools))

    def _replace_cluster(self, changed: ClusterSpec) -> None:
        subs = tuple(dataclasses.replace(s, clusters=tuple(changed if c.id == changed.id else c for c in s.clusters))
                     for s in self._fleet.subscriptions)
        self._replace_fleet(subscriptions=subs)

    def _replace_fleet(self, **changes: Any) -> None:
        fleet = dataclasses.replace(self._fleet, **changes)
        if "vnets" in changes:  # clusters keep a copy of their VNet: refresh it
            vnets = {v.id.lower(): v for v in fleet.vnets}
            subs = tuple(dataclasses.replace(s, clusters=tuple(
                dataclasses.replace(c, vnet=vnets.get(c.vnet.id.lower(), c.vnet)) for c in s.clusters))
                for s in fleet.subscriptions)
            fleet = dataclasses.replace(fleet, subscriptions=subs)
        self._fleet = fleet
        self._index = self._build(fleet)

    @staticmethod
    def _build(fleet: Fleet) -> _Index:
        index = _Index({}, {}, set(), {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})
        for sub in fleet.subscriptions:
            index.subscriptions[sub.id.lower()] = sub
            for cluster in sub.clusters:
                _index_cluster(index, cluster)
        for nsg in fleet.nsgs:
            index.nsgs[nsg.id.lower()] = nsg
        for table in fleet.route_tables:
            index.route_tables[table.id.lower()] = table
        for firewall in fleet.firewalls:
            index.firewalls[firewall.id.lower()] = firewall
        for nat in fleet.nat_gateways:
            index.nat_gateways[nat.id.lower()] = nat
        for vnet in fleet.vnets:
            index.vnets[vnet.id.lower()] = vnet
        for pip in fleet.public_ips:
            index.public_ips[pip.id.lower()] = pip
        for prefix in fleet.public_ip_prefixes:
            index.public_ip_prefixes[prefix.id.lower()] = prefix
        for policy in fleet.firewall_policies:
            index.firewall_policies[policy.id.lower()] = policy
        for ip_group in fleet.ip_groups:
            index.ip_groups[ip_group.id.lower()] = ip_group
        for group in (fleet.nsgs, fleet.route_tables, fleet.firewalls, fleet.nat_gateways, fleet.vnets,
                      fleet.public_ips, fleet.public_ip_prefixes, fleet.firewall_policies, fleet.ip_groups):
            for spec in group:
                parts = spec.id.split("/")
                index.resource_groups.add((parts[2].lower(), parts[4].lower()))
        return index


def _index_cluster(index: _Index, cluster: ClusterSpec) -> None:
    sub = cluster.subscription_id.lower()
    index.clusters[cluster.id.lower()] = cluster
    index.resource_groups.add((sub, cluster.resource_group.lower()))
    index.resource_groups.add((sub, cluster.node_resource_group.lower()))
    for pool in cluster.pools:
        if pool.type == "VirtualMachineScaleSets":
            index.vmss[(sub, cluster.node_resource_group.lower(), pool.vmss_name.lower())] = (cluster, pool)
        for node in pool.nodes:
            index.nodes[node.name.lower()] = NodeRef(cluster, pool, node)
    if cluster.load_balancer is not None:
        index.load_balancers[cluster.load_balancer.id.lower()] = cluster
    if cluster.nat_gateway_id:
        index.nat_owner.setdefault(cluster.nat_gateway_id.lower(), cluster)


def subnet_in(vnet: VnetSpec, name: str) -> SubnetSpec | None:
    return next((s for s in vnet.subnets if s.name.lower() == name.lower()), None)


def as_mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
