"""Collection of the node subnets' egress path: route tables, and the Azure Firewall behind each next hop.

A virtual-appliance next hop is judged only when it is an Azure Firewall the monitor can read in full:
its classic rules, or its Firewall Policy with every parent policy, every rule collection group and
every IP group the rules name. Anything else (a third-party NVA, a firewall in a hub the identity cannot
read, a policy whose groups could not be listed) becomes an `Unavailable` with the reason, and the
egress cause lets the node probe decide. An IP group that could not be read is recorded per group, so
only the rules naming it become undecidable.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any

from shared.azure import rest, rest_firewall
from shared.azure.clients import to_rest
from shared.azure.ids import last_name, norm, segment
from shared.netrules.firewall_types import Firewall, FirewallRule
from shared.snapshot import Node, RouteTable, Subnet, Unavailable

if TYPE_CHECKING:
    from shared.azure.collect import Collector

# An AzureFirewallSubnet's ipConfigurations point into the firewall (`.../azureFirewalls/<name>/...`).
_FIREWALL_ID = re.compile(r"(.*/providers/Microsoft\.Network/azureFirewalls/[^/]+)(/|$)", re.IGNORECASE)
MAX_POLICY_DEPTH = 5  # Azure allows one parent level today; a longer chain or a loop is refused, not followed
MAX_APPLIANCES = 8  # distinct virtual-appliance next hops judged per cluster


@dataclass
class EgressFacts:
    tables: dict[str, RouteTable] = field(default_factory=dict)
    firewall: Firewall | Unavailable | None = None  # behind the first routed subnet's default route
    appliances: dict[str, Firewall | Unavailable] = field(default_factory=dict)
    unreadable_tables: dict[str, str] = field(default_factory=dict)


def read_egress(collector: Collector, subscription: str, nodes: tuple[Node, ...], subnets: dict[str, Subnet],
                vnets: list[rest.VnetFacts]) -> EgressFacts:
    facts = EgressFacts()
    table_ids = sorted({s.route_table_id for n in nodes if (s := subnets.get(norm(n.subnet_id)))
                        and s.route_table_id}, key=str.lower)
    for table_id in table_ids:
        got = collector._safe(f"route table {last_name(table_id)}",
                              partial(collector._get, subscription, table_id, "route_tables", rest.route_table))
        if isinstance(got, Unavailable):
            facts.unreadable_tables[norm(table_id)] = got.reason
            if facts.firewall is None:
                facts.firewall = got
            continue
        facts.tables[norm(table_id)] = got
        for route in got.routes:
            ip = route.next_hop_ip or ""
            if route.next_hop_type.lower() != "virtualappliance" or not ip or ip in facts.appliances:
                continue
            if len(facts.appliances) >= MAX_APPLIANCES:
                break
            facts.appliances[ip] = _appliance_at(collector, subscription, ip, vnets)
            if route.address_prefix == "0.0.0.0/0" and facts.firewall is None:
                facts.firewall = facts.appliances[ip]
    return facts


def _appliance_at(collector: Collector, subscription: str, ip: str,
                  vnets: list[rest.VnetFacts]) -> Firewall | Unavailable:
    """The Azure Firewall owning next-hop `ip`: in a node VNet, else in a peered (hub) VNet."""
    candidates = list(vnets)
    unread: list[str] = []
    for vnet in vnets:
        for hub_id in vnet.peered_vnet_ids:
            hub_sub = (segment(hub_id, "subscriptions") or subscription).lower()
            hub = collector._safe(f"peered virtual network {last_name(hub_id)}",
                                  partial(collector._get, hub_sub, hub_id, "virtual_networks", rest.vnet_facts))
            if isinstance(hub, Unavailable):
                unread.append(hub.reason)
            else:
                candidates.append(hub)
    for vnet in candidates:
        for config_id in vnet.firewall_ip_configs:
            found = _FIREWALL_ID.match(config_id)
            if found is None:
                continue
            fw_id = found.group(1)
            got = read_firewall(collector, subscription, fw_id)
            if isinstance(got, Unavailable):
                return got
            if got.private_ip == ip:
                return got
    why = f" (not read: {'; '.join(unread)})" if unread else ""
    return Unavailable(f"next hop {ip} is a virtual appliance that is not an Azure Firewall the monitor can read "
                       f"in the node or peered VNets{why}; its rules cannot be judged")


def read_firewall(collector: Collector, subscription: str, fw_id: str) -> Firewall | Unavailable:
    fw_sub = (segment(fw_id, "subscriptions") or subscription).lower()
    got = collector._safe(f"Azure Firewall {last_name(fw_id)}",
                          partial(collector._get, fw_sub, fw_id, "azure_firewalls", rest.firewall))
    if isinstance(got, Unavailable) or got.policy_id is None:
        return got if isinstance(got, Unavailable) else _with_ip_groups(collector, fw_sub, got)
    policy = _read_policy(collector, got)
    if isinstance(policy, Unavailable):
        return policy
    return _with_ip_groups(collector, fw_sub, policy)


def _read_policy(collector: Collector, fw: Firewall) -> Firewall | Unavailable:
    """Attach the policy's rules: parents first (layer 0 = the top-most parent), every rule collection group."""
    chain: list[rest_firewall.PolicyFacts] = []
    policy_id: str | None = fw.policy_id
    seen: set[str] = set()
    while policy_id:
        if norm(policy_id) in seen or len(chain) >= MAX_POLICY_DEPTH:
            return Unavailable(f"Firewall Policy {last_name(policy_id)}: parent policies form a loop or a chain "
                               f"deeper than {MAX_POLICY_DEPTH}; its rules cannot be ordered")
        seen.add(norm(policy_id))
        sub = (segment(policy_id, "subscriptions") or "").lower()
        read = partial(collector._get, sub, policy_id, "firewall_policies", rest_firewall.firewall_policy)
        got = collector._safe(f"Firewall Policy {last_name(policy_id)} of Azure Firewall {fw.display_name}", read)
        if isinstance(got, Unavailable):
            return got
        chain.append(got)
        policy_id = got.base_policy_id
    rules: list[FirewallRule] = []
    for layer, policy in enumerate(reversed(chain)):
        groups = collector._safe(f"rule collection groups of Firewall Policy {policy.name}",
                                 partial(_list_groups, collector, policy))
        if isinstance(groups, Unavailable):
            return groups
        for group in groups:
            rules.extend(rest_firewall.rule_collection_group(group, layer=layer, policy_id=policy.id))
    strictest = "Deny" if any(p.threat_intel_mode.lower() == "deny" for p in chain) else chain[0].threat_intel_mode
    return replace(
        fw, rules=tuple(rules), policy_chain=tuple(p.id for p in chain), threat_intel_mode=strictest,
        dns_proxy=any(p.dns_proxy for p in chain), sku_tier=chain[0].sku_tier or fw.sku_tier,
    )


def _list_groups(collector: Collector, policy: rest_firewall.PolicyFacts) -> list[dict[str, Any]]:
    sub = (segment(policy.id, "subscriptions") or "").lower()
    client = collector.clients.network(sub).firewall_policy_rule_collection_groups
    fetch: Callable[[], list[dict[str, Any]]] = lambda: [  # noqa: E731
        to_rest(g) for g in client.list(segment(policy.id, "resourceGroups"), policy.name)]
    return collector._once(f"{policy.id}#ruleCollectionGroups", fetch)


def _with_ip_groups(collector: Collector, subscription: str, fw: Firewall) -> Firewall:
    groups: dict[str, tuple[str, ...]] = {}
    unreadable: dict[str, str] = dict(fw.unreadable)
    for group_id in rest_firewall.referenced_ip_groups(fw.rules):
        if not segment(group_id, "resourceGroups"):
            unreadable[norm(group_id)] = f"IP group id {group_id} names no resource group"
            continue
        sub = (segment(group_id, "subscriptions") or subscription).lower()
        got = collector._safe(f"IP group {last_name(group_id)}",
                              partial(collector._get, sub, group_id, "ip_groups", rest_firewall.ip_group_addresses))
        if isinstance(got, Unavailable):
            unreadable[norm(group_id)] = got.reason
        else:
            groups[norm(group_id)] = got
    return replace(fw, ip_groups=groups, unreadable=unreadable)
