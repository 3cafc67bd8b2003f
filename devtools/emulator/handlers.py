"""One handler per emulated ARM operation: look the resource up, refuse like Azure, answer Azure's JSON."""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from devtools.emulator import resources
from devtools.emulator.activity import ActivityFilterError, parse_filter, select_events
from devtools.emulator.http_types import (
    ArmError,
    Request,
    Response,
    resource_group_not_found,
    resource_not_found,
    subscription_not_found,
)
from devtools.emulator.isotime import format_instant
from devtools.emulator.metrics import MetricsQueryError, run_query
from devtools.emulator.runcommand import FAILED, IN_PROGRESS, Operation, RunCommandRefused, RunCommandService
from devtools.emulator.scenario import ClusterSpec, PoolSpec
from devtools.emulator.state import EmulatorState, subnet_in


class ArmHandlers:
    def __init__(self, state: EmulatorState, runcommands: RunCommandService,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.state = state
        self.runcommands = runcommands
        self.now = clock
        self.kube: Any = None  # devtools.emulator.kubeapi.KubeApiService, set by the Emulator

    # --- helpers ----------------------------------------------------------------------------------

    def _sub(self, req: Request) -> str:
        sub = req.groups["sub"]
        if self.state.subscription(sub) is None:
            raise subscription_not_found(sub)
        return sub

    def _rg(self, req: Request) -> tuple[str, str]:
        sub = self._sub(req)
        rg = req.groups["rg"]
        if not self.state.has_resource_group(sub, rg):
            raise resource_group_not_found(rg)
        return sub, rg

    def _page(self, req: Request, items: Sequence[Any]) -> Response:
        """`{"value": [...], "nextLink": ...}` with an opaque $skiptoken, like ARM list operations."""
        size = max(1, self.state.settings.page_size)
        offset = _decode_token(req.query.get("$skiptoken"))
        body: dict[str, Any] = {"value": list(items[offset:offset + size])}
        if offset + size < len(items):
            query = {k: v for k, v in req.query.items() if k != "$skiptoken"}
            query["$skiptoken"] = _encode_token(offset + size)
            body["nextLink"] = f"{req.base_url}{req.path}?{urlencode(query)}"
        return Response(200, body)

    def _vmss(self, req: Request) -> tuple[ClusterSpec, PoolSpec]:
        sub, rg = self._rg(req)
        found = self.state.vmss(sub, rg, req.groups["vmss"])
        if found is None:
            raise resource_not_found("Microsoft.Compute/virtualMachineScaleSets", req.groups["vmss"], rg)
        return found

    def _network(self, req: Request, provider_type: str, lookup: Callable[[str], Any]) -> Any:
        sub, rg = self._rg(req)
        resource = f"/subscriptions/{sub}/resourceGroups/{rg}/providers/{provider_type}/{req.groups['name']}"
        spec = lookup(resource)
        if spec is None:
            raise resource_not_found(provider_type, req.groups["name"], rg)
        return spec

    # --- Resources / ContainerService ------------------------------------------------------------

    def list_subscriptions(self, req: Request) -> Response:
        return self._page(req, [resources.subscription_json(s) for s in self.state.subscriptions()])

    def list_clusters(self, req: Request) -> Response:
        sub = self._sub(req)
        return self._page(req, [resources.cluster_json(c) for c in self.state.clusters_in(sub)])

    def get_cluster(self, req: Request) -> Response:
        sub, rg = self._rg(req)
        cluster = self.state.find_cluster(sub, rg, req.groups["name"])
        if cluster is None:
            raise resource_not_found("Microsoft.ContainerService/managedClusters", req.groups["name"], rg)
        return Response(200, resources.cluster_json(cluster))

    def list_user_credential(self, req: Request) -> Response:
        return self.kube.list_user_credential(req, self._cluster(req))  # type: ignore[no-any-return]

    def list_monitoring_credential(self, req: Request) -> Response:
        return self.kube.list_monitoring_credential(req, self._cluster(req))  # type: ignore[no-any-return]

    def _cluster(self, req: Request) -> ClusterSpec:
        sub, rg = self._rg(req)
        cluster = self.state.find_cluster(sub, rg, req.groups["name"])
        if cluster is None:
            raise resource_not_found("Microsoft.ContainerService/managedClusters", req.groups["name"], rg)
        return cluster

    # --- Compute ---------------------------------------------------------------------------------

    def list_vmss(self, req: Request) -> Response:
        sub, rg = self._rg(req)
        return self._page(req, [resources.vmss_json(c, p) for c, p in self.state.pools_in_node_rg(sub, rg)])

    def list_vmss_vms(self, req: Request) -> Response:
        cluster, pool = self._vmss(req)
        expand = (req.query.get("$expand") or "").lower() == "instanceview"
        return self._page(req, [resources.vmss_vm_json(cluster, pool, n, instance_view=expand) for n in pool.nodes])

    def run_command(self, req: Request) -> Response:
        cluster, pool = self._vmss(req)
        instance = req.groups["instance"]
        node = next((n for n in pool.nodes if str(n.instance_id) == instance), None)
        if node is None:
            raise resource_not_found(f"Microsoft.Compute/virtualMachineScaleSets/{pool.vmss_name}/virtualMachines",
                                     instance, cluster.node_resource_group)
        vm = resources.vm_id(cluster, pool, node)
        display = f"{pool.vmss_name}_{node.instance_id}"
        try:
            operation = self.runcommands.start(cluster, node, vm.lower(), display, req.json())
        except RunCommandRefused as refused:
            raise ArmError(refused.status, refused.error["code"], refused.error["message"], refused.headers) from None
        headers = {"Location": self._operation_url(req, operation, monitor=True),
                   "Azure-AsyncOperation": self._operation_url(req, operation, monitor=False),
                   **self._poll_hint()}
        return Response(202, None, headers)

    def _operation_url(self, req: Request, operation: Operation, *, monitor: bool) -> str:
        version = req.query.get("api-version", "")
        query = {"monitor": "true", "api-version": version} if monitor else {"p": operation.vm_key[-8:],
                                                                             "api-version": version}
        return (f"{req.base_url}/subscriptions/{operation.subscription_id}/providers/Microsoft.Compute/locations/"
                f"{operation.location}/operations/{operation.id}?{urlencode(query)}")

    def _poll_hint(self) -> dict[str, str]:
        """Retry-After in whole seconds like Azure; sub-second test settings use retry-after-ms instead
        (azure-core treats `Retry-After: 0` as absent and would fall back to a 30 s poll interval)."""
        delay = self.state.settings.lro_poll_after
        if delay >= 1:
            return {"Retry-After": str(int(delay))}
        return {"retry-after-ms": str(max(1, int(delay * 1000)))}

    def get_operation(self, req: Request) -> Response:
        self._sub(req)
        operation = self.runcommands.operation(req.groups["operation"])
        if operation is None or operation.subscription_id.lower() != req.groups["sub"].lower():
            raise ArmError(404, "NotFound", "The entity was not found in this Azure location.")
        status = self.runcommands.status_of(operation)
        monitor = (req.query.get("monitor") or "").lower() == "true"
        if monitor:  # the Location URL: 202 while running, then the final result (or the error)
            if status == IN_PROGRESS:
                return Response(202, None, {"Location": f"{req.base_url}{req.path}?{urlencode(req.query)}",
                                            **self._poll_hint()})
            if status == FAILED:
                failure = self.runcommands.failure_of(operation)
                return Response(500, {"error": failure})
            return Response(200, operation.result)
        body: dict[str, Any] = {"startTime": format_instant(operation.accepted_utc), "status": status,
                                "name": operation.id}
        elapsed = self.runcommands.now() - operation.accepted_at
        if status != IN_PROGRESS:
            body["endTime"] = format_instant(operation.accepted_utc + timedelta(seconds=elapsed))
        if status == FAILED:
            body["error"] = self.runcommands.failure_of(operation)
        elif status != IN_PROGRESS:
            body["properties"] = {"output": operation.result}
        headers = self._poll_hint() if status == IN_PROGRESS else {}
        return Response(200, body, headers)

    # --- Network ---------------------------------------------------------------------------------

    def list_vmss_nics(self, req: Request) -> Response:
        cluster, pool = self._vmss(req)
        return self._page(req, [resources.vmss_nic_json(cluster, pool, n) for n in pool.nodes])

    def get_vnet(self, req: Request) -> Response:
        firewalls = self.state.fleet.firewalls
        hub = self._hub_vnet(req, firewalls)
        if hub is not None:
            return Response(200, hub)
        vnet = self._network(req, "Microsoft.Network/virtualNetworks", self.state.vnet)
        return Response(200, resources.vnet_json(vnet, firewalls))

    def _hub_vnet(self, req: Request, firewalls: Any) -> Any:
        """The hub VNet a scenario firewall lives in (its AzureFirewallSubnet), when that is what was asked."""
        sub, rg = self._rg(req)
        wanted = f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network/virtualNetworks/" \
                 f"{req.groups['name']}".lower()
        for fw in firewalls:
            if fw.subnet_id.lower().startswith(wanted + "/subnets/") and self.state.vnet(wanted) is None:
                return resources.hub_vnet_json(fw)
        return None

    def get_subnet(self, req: Request) -> Response:
        vnet = self._network(req, "Microsoft.Network/virtualNetworks", self.state.vnet)
        subnet = subnet_in(vnet, req.groups["subnet"])
        if subnet is None:
            raise resource_not_found(f"Microsoft.Network/virtualNetworks/{vnet.name}/subnets", req.groups["subnet"],
                                     vnet.resource_group)
        return Response(200, resources.subnet_json(vnet, subnet))

    def get_nsg(self, req: Request) -> Response:
        nsg = self._network(req, "Microsoft.Network/networkSecurityGroups", self.state.nsg)
        return Response(200, resources.nsg_json(nsg, subnet_ids=self.state.subnets_using("nsg_id", nsg.id),
                                                nic_ids=self.state.nics_using_nsg(nsg.id)))

    def get_route_table(self, req: Request) -> Response:
        table = self._network(req, "Microsoft.Network/routeTables", self.state.route_table)
        return Response(200, resources.route_table_json(
            table, subnet_ids=self.state.subnets_using("route_table_id", table.id)))

    def get_load_balancer(self, req: Request) -> Response:
        owner = self._network(req, "Microsoft.Network/loadBalancers", self.state.load_balancer_owner)
        assert owner.load_balancer is not None
        return Response(200, resources.load_balancer_json(owner.load_balancer, owner))

    def get_nat_gateway(self, req: Request) -> Response:
        nat = self._network(req, "Microsoft.Network/natGateways", self.state.nat_gateway)
        subnets = {s.lower(): s for s in (*nat.subnet_ids, *self.state.subnets_using("nat_gateway_id", nat.id))}
        body = resources.nat_gateway_json(nat)
        body["properties"]["subnets"] = [{"id": s} for s in subnets.values()]
        return Response(200, body)

    def get_firewall(self, req: Request) -> Response:
        firewall = self._network(req, "Microsoft.Network/azureFirewalls", self.state.firewall)
        return Response(200, resources.firewall_json(firewall))

    def get_firewall_policy(self, req: Request) -> Response:
        policy = self._network(req, "Microsoft.Network/firewallPolicies", self.state.firewall_policy)
        fleet = self.state.fleet
        firewalls = [f.id for f in fleet.firewalls if (f.firewall_policy_id or "").lower() == policy.id.lower()]
        children = [p.id for p in fleet.firewall_policies if (p.base_policy_id or "").lower() == policy.id.lower()]
        return Response(200, resources.firewall_policy_json(policy, firewall_ids=firewalls, child_ids=children))

    def list_rule_collection_groups(self, req: Request) -> Response:
        policy = self._network(req, "Microsoft.Network/firewallPolicies", self.state.firewall_policy)
        return self._page(req, [resources.rule_collection_group_json(policy, g) for g in policy.rule_collection_groups])

    def get_rule_collection_group(self, req: Request) -> Response:
        policy = self._network(req, "Microsoft.Network/firewallPolicies", self.state.firewall_policy)
        wanted = req.groups["group"].lower()
        group = next((g for g in policy.rule_collection_groups if str(g["name"]).lower() == wanted), None)
        if group is None:
            raise resource_not_found(f"Microsoft.Network/firewallPolicies/{policy.name}/ruleCollectionGroups",
                                     req.groups["group"], policy.resource_group)
        return Response(200, resources.rule_collection_group_json(policy, group))

    def get_ip_group(self, req: Request) -> Response:
        group = self._network(req, "Microsoft.Network/ipGroups", self.state.ip_group)
        policies = [p.id for p in self.state.fleet.firewall_policies
                    if any(group.id.lower() in str(g).lower() for g in p.rule_collection_groups)]
        return Response(200, resources.ip_group_json(group, firewall_policy_ids=policies))

    def get_public_ip(self, req: Request) -> Response:
        pip = self._network(req, "Microsoft.Network/publicIPAddresses", self.state.public_ip)
        return Response(200, resources.public_ip_json(pip))

    def get_public_ip_prefix(self, req: Request) -> Response:
        prefix = self._network(req, "Microsoft.Network/publicIPPrefixes", self.state.public_ip_prefix)
        return Response(200, resources.public_ip_prefix_json(prefix))

    def list_admin_rules(self, req: Request) -> Response:
        vnet = self._network(req, "Microsoft.Network/virtualNetworks", self.state.vnet)
        rules: dict[str, dict[str, Any]] = {}
        for cluster in self.state.clusters_on_vnet(vnet.id):
            for rule in cluster.admin_rules:
                body = resources.admin_rule_json(rule, cluster)
                rules.setdefault(body["id"].lower(), body)
        items = list(rules.values())
        payload = req.json() or {}
        offset = _decode_token(payload.get("skipToken") if isinstance(payload, dict) else None)
        top = int(req.query.get("$top") or self.state.settings.page_size)
        size = max(1, min(top, self.state.settings.page_size))
        body_out: dict[str, Any] = {"value": items[offset:offset + size]}
        if offset + size < len(items):
            body_out["skipToken"] = _encode_token(offset + size)
        return Response(200, body_out)

    # --- Insights --------------------------------------------------------------------------------

    def list_metrics(self, req: Request) -> Response:
        uri = req.groups["uri"]
        lb_owner = self.state.load_balancer_owner(uri)
        if lb_owner is not None:
            return self._metrics(req, uri, "loadBalancers", lb_owner.location, lb_owner.lb_metrics)
        nat = self.state.nat_gateway(uri)
        if nat is not None:
            owner = self.state.nat_owner(uri)
            series = nat.metrics if nat.metrics is not None else (owner.nat_metrics if owner else ())
            return self._metrics(req, uri, "natGateways", nat.location, series)
        raise ArmError(404, "ResourceNotFound", f"The Resource '{uri}' was not found. For more details please go "
                                                "to https://aka.ms/ARMResourceNotFoundFix")

    def _metrics(self, req: Request, uri: str, kind: str, region: str, series: Sequence[Any]) -> Response:
        try:
            return Response(200, run_query(uri, kind, region=region, series=series, params=req.query,
                                           now=self.now()))
        except MetricsQueryError as err:
            raise ArmError(400, "BadRequest", str(err)) from None

    def list_activity(self, req: Request) -> Response:
        sub = self._sub(req)
        try:
            query = parse_filter(req.query.get("$filter"), self.now())
        except ActivityFilterError as err:
            raise ArmError(400, "BadRequest", str(err)) from None
        events = [e for c in self.state.clusters_in(sub) for e in c.activity]
        unique = {(e.resource_id.lower(), e.timestamp, e.operation): e for e in events}
        chosen = select_events(unique.values(), query)
        items = [resources.event_json(e, sub, self.state.tenant_id) for e in chosen]
        select = req.query.get("$select")
        if select:
            keys = {k.strip() for k in select.split(",")}
            items = [{k: v for k, v in item.items() if k in keys} for item in items]
        return self._page(req, items)


def _encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def _decode_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        padded = token + "=" * (-len(token) % 4)
        text = base64.urlsafe_b64decode(padded.encode()).decode()
        if not text.startswith("offset:"):
            raise ValueError(text)
        return max(0, int(text.split(":", 1)[1]))
    except ValueError as err:
        raise ArmError(400, "InvalidSkipToken", "The provided skip token is invalid.") from err
