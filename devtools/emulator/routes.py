"""The ARM URL table: which path shape is which operation, its RBAC action, and what resource it is about.

Operation names follow the SDK operation groups (`ManagedClusters.Get`), and are what call counters and
fault injection use. ARM paths are case-insensitive (the compute SDK writes `virtualMachines`, the REST
docs `virtualmachines`), so every pattern matches ignoring case.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from devtools.emulator.handlers import ArmHandlers
from devtools.emulator.http_types import Request, Response

_SUB = r"/subscriptions/(?P<sub>[^/]+)"
_RG = _SUB + r"/resourceGroups/(?P<rg>[^/]+)"
_NET = _RG + r"/providers/Microsoft\.Network"
_VMSS = _RG + r"/providers/Microsoft\.Compute/virtualMachineScaleSets/(?P<vmss>[^/]+)"


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    operation: str
    action: str  # RBAC action, quoted in 403 messages
    handler: Callable[[Request], Response]
    scope: Callable[[Request], str]  # the resource id the call is about (stats, fault targeting)

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if method != self.method:
            return None
        found = self.pattern.fullmatch(path)
        return found.groupdict() if found else None


def _path(req: Request) -> str:
    return req.path


def _parent(req: Request) -> str:
    return req.path.rsplit("/", 1)[0]


def _subscription(req: Request) -> str:
    return f"/subscriptions/{req.groups['sub']}"


def build_routes(h: ArmHandlers) -> list[Route]:
    def route(method: str, pattern: str, operation: str, action: str, handler: Callable[[Request], Response],
              *, scope: Callable[[Request], str] = _path) -> Route:
        return Route(method, re.compile(pattern, re.IGNORECASE), operation, action, handler, scope)

    return [
        route("GET", r"(?P<uri>/subscriptions/.+?)/providers/Microsoft\.Insights/metrics", "Metrics.List",
              "Microsoft.Insights/metrics/read", h.list_metrics, scope=lambda r: r.groups["uri"]),
        route("GET", _SUB + r"/providers/Microsoft\.Insights/eventtypes/management/values", "ActivityLogs.List",
              "Microsoft.Insights/eventtypes/values/read", h.list_activity, scope=_subscription),
        route("GET", r"/subscriptions", "Subscriptions.List", "Microsoft.Resources/subscriptions/read",
              h.list_subscriptions),
        route("GET", _SUB + r"/providers/Microsoft\.ContainerService/managedClusters", "ManagedClusters.List",
              "Microsoft.ContainerService/managedClusters/read", h.list_clusters, scope=_subscription),
        route("GET", _RG + r"/providers/Microsoft\.ContainerService/managedClusters/(?P<name>[^/]+)",
              "ManagedClusters.Get", "Microsoft.ContainerService/managedClusters/read", h.get_cluster),
        route("POST", _RG + r"/providers/Microsoft\.ContainerService/managedClusters/(?P<name>[^/]+)"
              r"/listClusterUserCredential", "ManagedClusters.ListClusterUserCredentials",
              "Microsoft.ContainerService/managedClusters/listClusterUserCredential/action",
              h.list_user_credential, scope=_parent),
        route("POST", _RG + r"/providers/Microsoft\.ContainerService/managedClusters/(?P<name>[^/]+)"
              r"/listClusterMonitoringUserCredential", "ManagedClusters.ListClusterMonitoringUserCredentials",
              "Microsoft.ContainerService/managedClusters/listClusterMonitoringUserCredential/action",
              h.list_monitoring_credential, scope=_parent),
        route("GET", _RG + r"/providers/Microsoft\.Compute/virtualMachineScaleSets", "VirtualMachineScaleSets.List",
              "Microsoft.Compute/virtualMachineScaleSets/read", h.list_vmss, scope=_parent),
        route("GET", _VMSS + r"/virtualMachines", "VirtualMachineScaleSetVMs.List",
              "Microsoft.Compute/virtualMachineScaleSets/virtualMachines/read", h.list_vmss_vms, scope=_parent),
        route("POST", _VMSS + r"/virtualMachines/(?P<instance>[^/]+)/runCommand",
              "VirtualMachineScaleSetVMs.RunCommand",
              "Microsoft.Compute/virtualMachineScaleSets/virtualMachines/runCommand/action", h.run_command,
              scope=_parent),
        route("GET", _SUB + r"/providers/Microsoft\.Compute/locations/(?P<location>[^/]+)"
              r"/operations/(?P<operation>[^/]+)",
              "ComputeOperations.Get", "Microsoft.Compute/locations/operations/read", h.get_operation),
        route("GET", _VMSS + r"/networkInterfaces", "NetworkInterfaces.ListVirtualMachineScaleSetNetworkInterfaces",
              "Microsoft.Compute/virtualMachineScaleSets/networkInterfaces/read", h.list_vmss_nics, scope=_parent),
        route("GET", _NET + r"/virtualNetworks/(?P<name>[^/]+)", "VirtualNetworks.Get",
              "Microsoft.Network/virtualNetworks/read", h.get_vnet),
        route("GET", _NET + r"/virtualNetworks/(?P<name>[^/]+)/subnets/(?P<subnet>[^/]+)", "Subnets.Get",
              "Microsoft.Network/virtualNetworks/subnets/read", h.get_subnet),
        route("POST", _NET + r"/virtualNetworks/(?P<name>[^/]+)/listNetworkManagerEffectiveSecurityAdminRules",
              "NetworkManagerEffectiveSecurityAdminRules.List",
              "Microsoft.Network/virtualNetworks/listNetworkManagerEffectiveSecurityAdminRules/action",
              h.list_admin_rules, scope=_parent),
        route("GET", _NET + r"/networkSecurityGroups/(?P<name>[^/]+)", "NetworkSecurityGroups.Get",
              "Microsoft.Network/networkSecurityGroups/read", h.get_nsg),
        route("GET", _NET + r"/routeTables/(?P<name>[^/]+)", "RouteTables.Get", "Microsoft.Network/routeTables/read",
              h.get_route_table),
        route("GET", _NET + r"/loadBalancers/(?P<name>[^/]+)", "LoadBalancers.Get",
              "Microsoft.Network/loadBalancers/read", h.get_load_balancer),
        route("GET", _NET + r"/natGateways/(?P<name>[^/]+)", "NatGateways.Get", "Microsoft.Network/natGateways/read",
              h.get_nat_gateway),
        route("GET", _NET + r"/azureFirewalls/(?P<name>[^/]+)", "AzureFirewalls.Get",
              "Microsoft.Network/azureFirewalls/read", h.get_firewall),
        route("GET", _NET + r"/firewallPolicies/(?P<name>[^/]+)", "FirewallPolicies.Get",
              "Microsoft.Network/firewallPolicies/read", h.get_firewall_policy),
        route("GET", _NET + r"/firewallPolicies/(?P<name>[^/]+)/ruleCollectionGroups",
              "FirewallPolicyRuleCollectionGroups.List", "Microsoft.Network/firewallPolicies/ruleCollectionGroups/read",
              h.list_rule_collection_groups, scope=_parent),
        route("GET", _NET + r"/firewallPolicies/(?P<name>[^/]+)/ruleCollectionGroups/(?P<group>[^/]+)",
              "FirewallPolicyRuleCollectionGroups.Get", "Microsoft.Network/firewallPolicies/ruleCollectionGroups/read",
              h.get_rule_collection_group),
        route("GET", _NET + r"/ipGroups/(?P<name>[^/]+)", "IpGroups.Get", "Microsoft.Network/ipGroups/read",
              h.get_ip_group),
        route("GET", _NET + r"/publicIPAddresses/(?P<name>[^/]+)", "PublicIPAddresses.Get",
              "Microsoft.Network/publicIPAddresses/read", h.get_public_ip),
        route("GET", _NET + r"/publicIPPrefixes/(?P<name>[^/]+)", "PublicIPPrefixes.Get",
              "Microsoft.Network/publicIPPrefixes/read", h.get_public_ip_prefix),
    ]


def find_route(routes: list[Route], method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    for candidate in routes:
        groups = candidate.match(method, path)
        if groups is not None:
            return candidate, groups
    return None


def known_path(routes: list[Route], path: str) -> bool:
    """True when the path exists for some other method (to answer 405 rather than 404)."""
    return any(r.pattern.fullmatch(path) for r in routes)
