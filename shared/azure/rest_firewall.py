"""Pure converters for Azure Firewall, Firewall Policy, rule collection groups and IP groups (ARM JSON).

Shapes follow Azure's official examples (tests/fixtures/azure-rest-api-specs/Network/2024-07-01). Both
rule forms end as flat `FirewallRule`s carrying what Azure orders by, so one evaluator judges them all:
classic collections (`networkRuleCollections`, `applicationRuleCollections`; `natRuleCollections` only
translate inbound traffic and are kept as kind "nat") and policy rule collection groups, whose
`FirewallPolicyFilterRuleCollection`s hold `NetworkRule`s and `ApplicationRule`s and whose
`FirewallPolicyNatRuleCollection`s hold DNAT rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.azure.ids import last_name
from shared.netrules.firewall_types import Firewall, FirewallRule

JSON = Mapping[str, Any]


def _props(obj: JSON | None) -> JSON:
    if not obj:
        return {}
    inner = obj.get("properties")
    return inner if isinstance(inner, Mapping) else obj


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in _list(value) if v not in (None, ""))


def _sources(rule: JSON) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(addresses, IP groups); a rule naming only IP groups must not read as "from anywhere"."""
    addresses, groups = _strings(rule.get("sourceAddresses")), _strings(rule.get("sourceIpGroups"))
    return (addresses if addresses or groups else ("*",)), groups


def _app_protocols(rule: JSON) -> tuple[str, ...]:
    out: list[str] = []
    for item in _list(rule.get("protocols")):
        if isinstance(item, Mapping):
            out.append(f"{item.get('protocolType', '')}:{item.get('port', '')}")
        elif isinstance(item, str):
            out.append(item)
    return tuple(out)


def _action(collection: JSON, default: str = "Deny") -> str:
    action = collection.get("action")
    if isinstance(action, Mapping):
        return str(action.get("type") or default)
    return str(action or default)


def firewall(fw: JSON) -> Firewall:
    """An Azure Firewall: its private IP, policy reference and classic rules (none when a policy is attached)."""
    p = _props(fw)
    fw_id = str(fw.get("id", ""))
    policy_id = (p.get("firewallPolicy") or {}).get("id") or None
    ip = next((_props(c).get("privateIPAddress") for c in _list(p.get("ipConfigurations"))
               if _props(c).get("privateIPAddress")), None)
    ip = ip or (p.get("hubIPAddresses") or {}).get("privateIPAddress") or ""
    extra = p.get("additionalProperties") or {}
    public_ips = tuple(dict.fromkeys(pid for c in _list(p.get("ipConfigurations"))
                                     if (pid := (_props(c).get("publicIPAddress") or {}).get("id"))))
    rules: list[FirewallRule] = []
    if not policy_id:
        for kind, key in (("network", "networkRuleCollections"), ("application", "applicationRuleCollections"),
                          ("nat", "natRuleCollections")):
            for coll in _list(p.get(key)):
                cp = _props(coll)
                coll_id = str(coll.get("id") or f"{fw_id}/{key}/{coll.get('name', '')}")
                for r in _list(cp.get("rules")):
                    rules.append(_classic_rule(kind, coll, cp, coll_id, r))
    return Firewall(
        id=fw_id, private_ip=str(ip), rules=tuple(rules), public_ip_ids=public_ips, policy_id=policy_id,
        threat_intel_mode=str(p.get("threatIntelMode") or "Alert"),
        dns_proxy=str(extra.get("Network.DNS.EnableProxy", "")).lower() == "true",
        sku_tier=str((p.get("sku") or {}).get("tier") or ""), name=str(fw.get("name") or last_name(fw_id)),
    )


def _classic_rule(kind: str, coll: JSON, cp: JSON, coll_id: str, r: JSON) -> FirewallRule:
    sources, source_groups = _sources(r)
    common: dict[str, Any] = {
        "collection": str(coll.get("name", "")), "collection_priority": int(cp.get("priority") or 0),
        "action": _action(cp), "name": str(r.get("name", "")), "kind": kind,
        "source_addresses": sources, "source_ip_groups": source_groups, "collection_id": coll_id,
    }
    if kind == "application":
        return FirewallRule(protocols=_app_protocols(r), destination_fqdns=_strings(r.get("targetFqdns")),
                            fqdn_tags=_strings(r.get("fqdnTags")), **common)
    return FirewallRule(
        protocols=_strings(r.get("protocols")), destination_addresses=_strings(r.get("destinationAddresses")),
        destination_fqdns=_strings(r.get("destinationFqdns")), destination_ports=_strings(r.get("destinationPorts")),
        destination_ip_groups=_strings(r.get("destinationIpGroups")), **common)


@dataclass(frozen=True)
class PolicyFacts:
    id: str
    name: str
    base_policy_id: str | None
    threat_intel_mode: str
    dns_proxy: bool
    group_ids: tuple[str, ...]
    sku_tier: str


def firewall_policy(policy: JSON) -> PolicyFacts:
    p = _props(policy)
    policy_id = str(policy.get("id", ""))
    return PolicyFacts(
        id=policy_id, name=str(policy.get("name") or last_name(policy_id)),
        base_policy_id=(p.get("basePolicy") or {}).get("id") or None,
        threat_intel_mode=str(p.get("threatIntelMode") or "Alert"),
        dns_proxy=bool((p.get("dnsSettings") or {}).get("enableProxy")),
        group_ids=tuple(str(g["id"]) for g in _list(p.get("ruleCollectionGroups"))
                        if isinstance(g, Mapping) and g.get("id")),
        sku_tier=str((p.get("sku") or {}).get("tier") or ""),
    )


def rule_collection_group(group: JSON, *, layer: int = 0, policy_id: str = "") -> tuple[FirewallRule, ...]:
    """Every rule of one rule collection group, flattened with group and collection priorities."""
    gp = _props(group)
    group_id = str(group.get("id", ""))
    group_name = str(group.get("name") or last_name(group_id))
    group_priority = int(gp.get("priority") or 0)
    rules: list[FirewallRule] = []
    for coll in _list(gp.get("ruleCollections")):
        nat = str(coll.get("ruleCollectionType", "")).lower() == "firewallpolicynatrulecollection"
        for r in _list(coll.get("rules")):
            rule_type = str(r.get("ruleType", "")).lower() or _infer_rule_type(r)
            kind = "nat" if nat or rule_type == "natrule" else (
                "application" if rule_type == "applicationrule" else "network")
            sources, source_groups = _sources(r)
            common: dict[str, Any] = {
                "collection": str(coll.get("name", "")), "collection_priority": int(coll.get("priority") or 0),
                "action": _action(coll), "name": str(r.get("name", "")), "kind": kind,
                "source_addresses": sources, "source_ip_groups": source_groups,
                "destination_addresses": _strings(r.get("destinationAddresses")),
                "layer": layer, "group": group_name, "group_priority": group_priority,
                "collection_id": group_id, "policy_id": policy_id,
            }
            if kind == "application":
                rules.append(FirewallRule(
                    protocols=_app_protocols(r), destination_fqdns=_strings(r.get("targetFqdns")),
                    fqdn_tags=_strings(r.get("fqdnTags")), web_categories=_strings(r.get("webCategories")),
                    target_urls=_strings(r.get("targetUrls")), terminate_tls=bool(r.get("terminateTLS")),
                    **common))
            else:
                rules.append(FirewallRule(
                    protocols=_strings(r.get("ipProtocols")), destination_fqdns=_strings(r.get("destinationFqdns")),
                    destination_ports=_strings(r.get("destinationPorts")),
                    destination_ip_groups=_strings(r.get("destinationIpGroups")), **common))
    return tuple(rules)


def _infer_rule_type(rule: JSON) -> str:
    """Without the `ruleType` discriminator, an application rule still shows by its fields."""
    app_fields = ("targetFqdns", "fqdnTags", "webCategories", "targetUrls")
    if any(rule.get(k) for k in app_fields) or any(isinstance(p, Mapping) for p in _list(rule.get("protocols"))):
        return "applicationrule"
    return "networkrule"


def ip_group_addresses(group: JSON) -> tuple[str, ...]:
    return _strings(_props(group).get("ipAddresses"))


def referenced_ip_groups(rules: tuple[FirewallRule, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(g for r in rules for g in (*r.source_ip_groups, *r.destination_ip_groups)))
