"""Collection: ARM reads through the real SDK clients into one typed ClusterSnapshot.

Every resource is read at most once per collector (a collector lives for one diagnosis or one cycle),
and each piece of evidence that fails becomes an `Unavailable` with the reason, so a 403 on metrics
turns only the SNAT cause into `unknown` and leaves the rest of the diagnosis intact.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from shared.azure import egress_ips, egress_path, rest
from shared.azure.clients import ArmClients, to_rest
from shared.azure.ids import ClusterRef, last_name, norm, segment
from shared.netrules.nsg_types import AddressContext, AdminRule, NetworkSecurityGroup
from shared.snapshot import (
    ActivityEvent,
    ClusterSnapshot,
    Node,
    SnatMetrics,
    Subnet,
    Unavailable,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# What a snapshot may collect, so each check family reads only what its causes look at (issue 9).
NODES = "nodes"  # scale sets and their NICs: node names, IPs, NIC NSGs, ASG members
NETWORK = "network"  # VNets, subnets and the NSGs on the node path
ADMIN = "admin"  # AVNM effective security admin rules of the node VNets
EGRESS = "egress"  # route tables of the node subnets and the Azure Firewall on the default route
SNAT = "snat"  # SNAT metrics of the outbound load balancer / NAT gateway
ACTIVITY = "activity"  # NSG writes and deletes from the Activity Log
ALL_PARTS: frozenset[str] = frozenset({NODES, NETWORK, ADMIN, EGRESS, SNAT, ACTIVITY})


class CollectionError(Exception):
    """The cluster itself cannot be read: the whole diagnosis stops with this one-line message."""


class ClusterNotFound(CollectionError):
    pass


class AccessDenied(CollectionError):
    pass


def describe_http_error(exc: Exception, what: str) -> str:
    """One line naming what failed and how, for `unknown` reasons and CLI errors."""
    status = getattr(exc, "status_code", None)
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None) or ""
    if status == 403:
        return f"access denied (403 {code or 'AuthorizationFailed'}) reading {what}"
    if status == 404:
        return f"{what} was not found (404 {code})".replace(" )", ")")
    if status == 429:
        return f"ARM kept throttling (429) reading {what}; retries exhausted"
    if status is not None:
        return f"reading {what} failed with HTTP {status} {code}".strip()
    return f"reading {what} failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


class Collector:
    def __init__(self, clients: ArmClients, *, now: Callable[[], datetime] | None = None) -> None:
        self.clients = clients
        self.settings = clients.settings
        self._now = now or (lambda: datetime.now(UTC))
        self._memo: dict[str, Any] = {}
        self._memo_lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}

    # ------------------------------------------------------------ memo: no resource read twice

    def _once(self, key: str, fetch: Callable[[], T]) -> T:
        key = key.lower()
        with self._memo_lock:
            if key in self._memo:
                return self._memo[key]  # type: ignore[no-any-return]
            lock = self._key_locks.setdefault(key, threading.Lock())
        with lock:
            with self._memo_lock:
                if key in self._memo:
                    return self._memo[key]  # type: ignore[no-any-return]
            value = fetch()
            with self._memo_lock:
                self._memo[key] = value
            return value

    def _safe(self, what: str, fetch: Callable[[], T]) -> T | Unavailable:
        from azure.core.exceptions import AzureError

        try:
            return fetch()
        except AzureError as exc:
            reason = describe_http_error(exc, what)
            log.warning("collection failed: %s", reason)
            return Unavailable(reason)

    # ------------------------------------------------------------ cluster

    def managed_cluster(self, ref: ClusterRef) -> dict[str, Any]:
        from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

        def fetch() -> dict[str, Any]:
            client = self.clients.container(ref.subscription_id)
            return to_rest(client.managed_clusters.get(ref.resource_group, ref.name))

        try:
            return self._once(ref.id, fetch)
        except ClientAuthenticationError as exc:
            raise AccessDenied(f"could not authenticate to Azure: {str(exc).splitlines()[0]}") from None
        except HttpResponseError as exc:
            if exc.status_code == 404:
                code = getattr(exc.error, "code", "") or "404"
                raise ClusterNotFound(f"cluster not found: {ref.id} ({code})") from None
            if exc.status_code in (401, 403):
                raise AccessDenied(describe_http_error(exc, f"cluster {ref.id}")) from None
            raise CollectionError(describe_http_error(exc, f"cluster {ref.id}")) from None

    def list_clusters(self, subscription: str) -> list[dict[str, Any]]:
        client = self.clients.container(subscription)
        clusters = [to_rest(c) for c in client.managed_clusters.list()]
        with self._memo_lock:
            for c in clusters:
                if c.get("id"):
                    self._memo[c["id"].lower()] = c
        return clusters

    def list_subscriptions(self) -> list[str]:
        client = self.clients.subscriptions()
        return [str(to_rest(s).get("subscriptionId", "")).lower() for s in client.subscriptions.list()]

    # ------------------------------------------------------------ topology

    def snapshot(
        self,
        cluster: dict[str, Any],
        *,
        with_instances: bool,
        activity: tuple[ActivityEvent, ...] | Unavailable | None = None,
        parts: frozenset[str] = ALL_PARTS,
    ) -> ClusterSnapshot:
        """Control-plane snapshot of the `parts` asked for; probes are added afterwards by the Prober.

        Pieces outside `parts` keep their empty defaults: evaluate only the causes whose inputs were asked for.
        """
        facts = rest.cluster_facts(cluster)
        subscription = (segment(facts.id, "subscriptions") or "").lower()
        base = ClusterSnapshot(
            id=facts.id, name=facts.name, subscription_id=subscription,
            resource_group=segment(facts.id, "resourceGroups") or "", location=facts.location,
            node_resource_group=facts.node_resource_group, private=facts.private,
            outbound_type=facts.outbound_type, tunnel="unknown", fqdn=facts.fqdn, private_fqdn=facts.private_fqdn,
            load_balancer_profile=facts.load_balancer_profile, pools=facts.pools,
            unsupported_reason=facts.unsupported_reason,
        )
        base = egress_ips.with_access(base, facts)
        if facts.unsupported_reason:
            return base
        if not with_instances and not parts & {NODES, NETWORK, ADMIN, EGRESS}:
            return self._snat_only(base, facts, subscription) if SNAT in parts else base
        nodes_or_error = self._safe("the node pools' scale sets and NICs",
                                    lambda: self._nodes(subscription, facts.node_resource_group, with_instances))
        if isinstance(nodes_or_error, Unavailable):
            return _replace(base, nodes=nodes_or_error, nsgs=nodes_or_error)
        nodes, pools_by_name, nics = nodes_or_error
        network = self._network(subscription, nodes, nics, parts)
        lb_ids = {pool_id.split("/backendAddressPools/")[0] for nic in nics for pool_id in nic.backend_pool_ids
                  if "/loadbalancers/" in pool_id.lower()}
        node_subnets = {n.subnet_id for n in nodes if n.subnet_id}
        unread_subnets = {s: (network["nsgs"].reason if isinstance(network["nsgs"], Unavailable) else "not read")
                          for s in node_subnets if norm(s) not in network["subnets"]}
        snat = (self._snat(subscription, facts, network["nat"], node_subnets,
                           node_count=len(nodes), lb_ids=lb_ids, unread_subnets=unread_subnets)
                if SNAT in parts else None)
        changes: tuple[ActivityEvent, ...] | Unavailable = ()
        if ACTIVITY in parts:
            changes = activity if activity is not None else self.activity_log(subscription)
        if not isinstance(changes, Unavailable):
            path = {norm(i) for i in network["nsgs_ids"]}
            changes = tuple(e for e in changes if any(norm(e.resource_id).startswith(p) for p in path))
        pools = tuple(
            _replace(p, vmss_id=pools_by_name.get(p.name, "")) if p.name in pools_by_name else p
            for p in facts.pools
        )
        snapshot = _replace(
            base,
            pools=pools,
            nodes=nodes,
            subnets=network["subnets"],
            nsgs=network["nsgs"],
            nsg_errors=network["nsg_errors"],
            address_context=network["context"],
            admin_rules=network["admin"],
            route_tables=network["routes"],
            firewall=network["firewall"],
            appliances=network["egress"].appliances,
            unreadable_route_tables=network["egress"].unreadable_tables,
            snat=snat,
            nsg_changes=changes,
        )
        return egress_ips.add_access(self, snapshot, facts, network["nat"], parts)

    def _snat_only(self, base: ClusterSnapshot, facts: rest.ClusterFacts, subscription: str) -> ClusterSnapshot:
        """SNAT needs only the outbound resource: found from the scale set models, without reading NICs."""
        if facts.private or facts.outbound_type.lower() in ("userdefinedrouting", "none"):
            return base
        node_count = sum(p.count for p in facts.pools)
        # Bring-your-own subnets (vnetSubnetID on the pools) may carry a NAT gateway, which takes over their
        # outbound traffic from the load balancer: their VNets are read (once each, shared with the other
        # clusters of the VNet). AKS's own VNet (in the node resource group) has none, so clusters without
        # BYO subnets read nothing more.
        byo = {p.subnet_id for p in facts.pools if p.subnet_id
               and (segment(p.subnet_id, "resourceGroups") or "").lower() != facts.node_resource_group.lower()}
        if facts.outbound_type.lower() == "loadbalancer":
            # AKS names its outbound load balancer `kubernetes`, in the node resource group (Microsoft's own
            # examples: `az network lb outbound-rule list -g MC_... --lb-name kubernetes`): no listing needed.
            # Should it not exist, the scale set models below still find the one the nodes use.
            known = (f"/subscriptions/{subscription}/resourceGroups/{facts.node_resource_group}"
                     "/providers/Microsoft.Network/loadBalancers/kubernetes")
            nat, unread = self._subnet_nat_gateways(subscription, byo)
            direct = self._snat(subscription, facts, nat, byo, node_count=node_count, lb_ids={known},
                                unread_subnets=unread)
            if not (isinstance(direct, Unavailable) and "not found" in direct.reason):
                return _replace(base, snat=direct)
        scale_sets = self._safe("the node pools' scale sets",
                                lambda: self._scale_sets(subscription, facts.node_resource_group))
        if isinstance(scale_sets, Unavailable):
            return _replace(base, snat=scale_sets)
        subnet_ids = {i for vmss in scale_sets for i in vmss.subnet_ids}
        lb_ids = {i.split("/backendAddressPools/")[0] for vmss in scale_sets for i in vmss.backend_pool_ids
                  if "/loadbalancers/" in i.lower()}
        if facts.outbound_type in ("managedNATGateway", "userAssignedNATGateway"):
            nat, unread = self._subnet_nat_gateways(subscription, subnet_ids)
            if unread:
                return _replace(base, snat=Unavailable(next(iter(unread.values()))))
        else:
            nat, unread = self._subnet_nat_gateways(subscription, subnet_ids if byo else set())
        return _replace(base, snat=self._snat(subscription, facts, nat, subnet_ids, node_count=node_count,
                                              lb_ids=lb_ids, unread_subnets=unread))

    def _subnet_nat_gateways(self, subscription: str,
                             subnet_ids: set[str]) -> tuple[dict[str, str], dict[str, str]]:
        """(subnet id -> NAT gateway id, subnet id -> why its VNet could not be read), one read per VNet."""
        nat: dict[str, str] = {}
        unread: dict[str, str] = {}
        for vnet_id in sorted({i.split("/subnets/")[0] for i in subnet_ids if "/subnets/" in i}, key=str.lower):
            owner = (segment(vnet_id, "subscriptions") or subscription).lower()
            got = self._safe(f"virtual network {last_name(vnet_id)}",
                             partial(self._get, owner, vnet_id, "virtual_networks", rest.vnet_facts))
            if isinstance(got, Unavailable):
                unread.update({s: got.reason for s in subnet_ids if s.lower().startswith(vnet_id.lower() + "/")})
                continue
            nat.update(got.nat_gateways)
        return nat, unread

    def _scale_sets(self, subscription: str, node_rg: str) -> list[rest.ScaleSet]:
        compute = self.clients.compute(subscription)
        return self._once(
            f"/subscriptions/{subscription}/resourceGroups/{node_rg}#vmss",
            lambda: [rest.scale_set(to_rest(v)) for v in compute.virtual_machine_scale_sets.list(node_rg)],
        )

    def _nodes(
        self, subscription: str, node_rg: str, with_instances: bool
    ) -> tuple[tuple[Node, ...], dict[str, str], list[rest.NicFacts]]:
        scale_sets = self._scale_sets(subscription, node_rg)
        nodes: list[Node] = []
        all_nics: list[rest.NicFacts] = []
        pools: dict[str, str] = {}
        for vmss in scale_sets:
            pools[vmss.pool] = vmss.id
            nics = self._vmss_nics(subscription, node_rg, vmss)
            all_nics.extend(nics)
            states: dict[str, rest.InstanceState] = {}
            if with_instances:
                states = self._vmss_states(subscription, node_rg, vmss)
            for nic in nics:
                state = states.get(nic.instance_id)
                nodes.append(Node(
                    name=(state.computer_name if state and state.computer_name
                          else rest.node_name(vmss, nic.instance_id)),
                    pool=vmss.pool,
                    private_ip=nic.private_ip,
                    subnet_id=nic.subnet_id,
                    vmss_id=vmss.id,
                    instance_id=nic.instance_id,
                    nic_nsg_id=nic.nsg_id,
                    asg_ids=nic.asg_ids,
                    running=True if state is None or state.running is None else state.running,
                ))
        nodes.sort(key=lambda n: (n.pool, n.name))
        return tuple(nodes), pools, all_nics

    def _vmss_nics(self, subscription: str, node_rg: str, vmss: rest.ScaleSet) -> list[rest.NicFacts]:
        network = self.clients.network(subscription)

        def fetch() -> list[rest.NicFacts]:
            pages = network.network_interfaces.list_virtual_machine_scale_set_network_interfaces(node_rg, vmss.name)
            return [rest.nic_facts(to_rest(n)) for n in pages]

        return self._once(f"{vmss.id}#nics", fetch)

    def _vmss_states(self, subscription: str, node_rg: str, vmss: rest.ScaleSet) -> dict[str, rest.InstanceState]:
        compute = self.clients.compute(subscription)

        def fetch() -> dict[str, rest.InstanceState]:
            vms = compute.virtual_machine_scale_set_vms.list(node_rg, vmss.name, expand="instanceView")
            states = (rest.instance_state(to_rest(vm)) for vm in vms)
            return {state.instance_id: state for state in states}

        return self._once(f"{vmss.id}#vms", fetch)

    def _get(self, subscription: str, resource_id: str, operations: str, convert: Callable[[Any], T]) -> T:
        """GET one network resource by id through `client.<operations>.get(rg, name)`, once per collector.

        The JSON is kept by id and each conversion by (id, converter): two checks that read different
        facts of one resource (a prefix's range for egress IPs, its size for SNAT) cost one GET, and
        neither ever receives the other's converted value.
        """
        client = getattr(self.clients.network(subscription), operations)
        group, name = segment(resource_id, "resourceGroups"), last_name(resource_id)
        raw = self._once(f"{resource_id}#json", lambda: to_rest(client.get(group, name)))
        return self._once(f"{resource_id}#{convert.__module__}.{convert.__qualname__}", lambda: convert(raw))

    def _network(self, subscription: str, nodes: tuple[Node, ...], nics: list[rest.NicFacts],
                 parts: frozenset[str] = ALL_PARTS) -> dict[str, Any]:
        vnet_ids = sorted({n.subnet_id.split("/subnets/")[0] for n in nodes if "/subnets/" in n.subnet_id},
                          key=str.lower)
        subnets: dict[str, Subnet] = {}
        vnets: list[rest.VnetFacts] = []
        vnet_errors: list[Unavailable] = []
        for vnet_id in vnet_ids:
            got = self._safe(f"virtual network {last_name(vnet_id)}",
                             partial(self._get, subscription, vnet_id, "virtual_networks", rest.vnet_facts))
            if isinstance(got, Unavailable):
                vnet_errors.append(got)
                continue
            vnets.append(got)
            for s in got.subnets:
                subnets[norm(s.id)] = s
        nsg_ids = sorted({i for n in nodes for i in (n.nic_nsg_id, _subnet_nsg(subnets, n)) if i}, key=str.lower)
        nsgs: dict[str, NetworkSecurityGroup] | Unavailable = {}
        nsg_errors: dict[str, str] = {}
        if vnet_errors:
            nsgs = vnet_errors[0]
        elif NETWORK in parts:
            # One unreadable NSG leaves only the flows through it undecided (see ClusterSnapshot.nsg_errors).
            for nsg_id in nsg_ids:
                got_nsg = self._safe(f"NSG {last_name(nsg_id)}", partial(
                    self._get, subscription, nsg_id, "network_security_groups", rest.network_security_group))
                if isinstance(got_nsg, Unavailable):
                    nsg_errors[norm(nsg_id)] = got_nsg.reason
                    continue
                assert isinstance(nsgs, dict)
                nsgs[nsg_id] = got_nsg
                nsgs[norm(nsg_id)] = got_nsg
        members: dict[str, set[str]] = {}
        for nic in nics:
            for asg in nic.asg_ids:
                if nic.private_ip:
                    members.setdefault(norm(asg), set()).add(nic.private_ip)
        context = AddressContext(
            vnet_prefixes=tuple(dict.fromkeys(p for v in vnets for p in (*v.address_space, *v.peered_prefixes))),
            asg_members={k: frozenset(v) for k, v in members.items()},
        )
        admin: tuple[AdminRule, ...] | Unavailable = ()
        if vnet_errors:
            admin = vnet_errors[0]
        elif ADMIN in parts:
            admin = self._admin_rules(subscription, vnets)
        egress = self._egress(subscription, nodes, subnets, vnets) if EGRESS in parts else egress_path.EgressFacts()
        routes, firewall = egress.tables, egress.firewall
        nat = {k: v for vnet in vnets for k, v in vnet.nat_gateways.items()}
        return {"subnets": subnets, "nat": nat, "nsgs": nsgs, "nsgs_ids": nsg_ids, "context": context, "admin": admin,
                "routes": routes, "firewall": firewall, "nsg_errors": nsg_errors,
                "egress": egress}

    def _admin_rules(self, subscription: str, vnets: list[rest.VnetFacts]) -> tuple[AdminRule, ...] | Unavailable:
        network = self.clients.network(subscription)
        collected: list[AdminRule] = []
        for vnet in vnets:
            def fetch(v: rest.VnetFacts = vnet) -> tuple[AdminRule, ...]:
                items: list[Any] = []
                token: str | None = None
                for _ in range(100):  # skipToken paging, bounded
                    page = to_rest(network.list_network_manager_effective_security_admin_rules(
                        segment(v.id, "resourceGroups"), last_name(v.id), {"skipToken": token} if token else {}))
                    items.extend(page.get("value") or [])
                    token = page.get("skipToken")
                    if not token:
                        break
                return rest.admin_rules(items)

            got = self._safe(f"AVNM security admin rules of {last_name(vnet.id)}",
                             partial(self._once, f"{vnet.id}#avnm", fetch))
            if isinstance(got, Unavailable):
                return got
            collected.extend(got)
        return tuple(collected)

    def _egress(self, subscription: str, nodes: tuple[Node, ...], subnets: dict[str, Subnet],
                vnets: list[rest.VnetFacts]) -> egress_path.EgressFacts:
        """Route tables of the node subnets and the Azure Firewall (with its policy) behind each next hop."""
        return egress_path.read_egress(self, subscription, nodes, subnets, vnets)

    # ------------------------------------------------------------ evidence

    def _snat(self, subscription: str, facts: rest.ClusterFacts, nat_by_subnet: Mapping[str, str],
              subnet_ids: set[str], *, node_count: int, lb_ids: set[str],
              unread_subnets: Mapping[str, str] | None = None) -> SnatMetrics | Unavailable | None:
        """The outbound load balancer's and/or every node-subnet NAT gateway's SNAT metrics (see snat_collect)."""
        from shared.azure.snat_collect import SnatQuery, collect_snat

        query = SnatQuery(self.settings.snat_window_minutes, self._now(), node_count)
        return collect_snat(_SnatReads(self, subscription), facts, query, nat_by_subnet=nat_by_subnet,
                            subnet_ids=subnet_ids, lb_ids=lb_ids, unread_subnets=unread_subnets)

    def activity_log(self, subscription: str, since: datetime | None = None) -> tuple[ActivityEvent, ...] | Unavailable:
        end = self._now()
        start = since or end - timedelta(hours=self.settings.activity_window_hours)
        monitor = self.clients.monitor(subscription)
        flt = (f"eventTimestamp ge '{_arm_time(start)}' and eventTimestamp le '{_arm_time(end)}' and "
               "resourceProvider eq 'Microsoft.Network'")

        def fetch() -> tuple[ActivityEvent, ...]:
            events = (rest.activity_event(to_rest(e)) for e in monitor.activity_logs.list(
                filter=flt, select="eventTimestamp,operationName,resourceId,caller,status"))
            return tuple(e for e in events if e is not None)

        return self._safe("the Activity Log", lambda: self._once(f"/subscriptions/{subscription}#activity", fetch))


class _SnatReads:
    """The collector's guarded, memoised reads, as shared.azure.snat_collect asks for them."""

    def __init__(self, collector: Collector, subscription: str) -> None:
        self._collector = collector
        self._subscription = subscription

    def safe(self, what: str, fetch: Callable[[], T]) -> T | Unavailable:
        return self._collector._safe(what, fetch)

    def get(self, resource_id: str, operations: str, convert: Callable[[Any], T]) -> T:
        owner = (segment(resource_id, "subscriptions") or self._subscription).lower()
        return self._collector._get(owner, resource_id, operations, convert)

    def monitor(self) -> Any:
        return self._collector.clients.monitor(self._subscription)


def _arm_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _subnet_nsg(subnets: dict[str, Subnet], node: Node) -> str | None:
    subnet = subnets.get(norm(node.subnet_id))
    return subnet.nsg_id if subnet else None


def _replace(obj: T, **changes: Any) -> T:
    from dataclasses import replace

    return replace(obj, **changes)  # type: ignore[type-var]
