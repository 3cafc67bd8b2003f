"""A deliberately naive Azure Firewall evaluator, written straight from Microsoft's rule-processing page.

Only the property tests use it: shared/netrules/firewall.py must agree with it on random firewalls and
flows. It shares no code with the real evaluator: it re-parses every string on every call and walks the
rules in nested loops that spell the documented order literally:

    for kind in (network, application):          # DNAT never sees outbound traffic
        for layer in parent policy ... child:     # a base policy's rules come first
            for group priority (ascending):
                for collection priority (ascending):
                    rules in the order they were written

Matching is three-valued: True (matches), False (does not), None (depends on something unknown here:
a service tag, a web category, an unread IP group, the API server's IP when nobody resolved it, a
network-rule FQDN without DNS proxy). The first True decides; every None before it is remembered; if
the remembered rules' actions differ from the decision, the answer is None (undecidable).
"""

from __future__ import annotations

import fnmatch
import ipaddress
from dataclasses import dataclass

from shared.netrules.firewall import Packet
from shared.netrules.firewall_types import Firewall, FirewallRule


@dataclass(frozen=True)
class RefDecision:
    allowed: bool | None
    rule_name: str | None  # None: default deny, or undecidable


def _or(values: list[bool | None]) -> bool | None:
    if True in values:
        return True
    if None in values:
        return None
    return False


def _and(values: list[bool | None]) -> bool | None:
    if False in values:
        return False
    if None in values:
        return None
    return True


def ref_address(item: str, ip: str | None) -> bool | None:
    if item.strip() in ("*", "any", "Any", "0.0.0.0/0"):
        return True
    text = item.strip()
    try:
        if "-" in text:
            first, last = text.split("-", 1)
            low, high = ipaddress.ip_address(first.strip()), ipaddress.ip_address(last.strip())
            if ip is None:
                return None
            target = ipaddress.ip_address(ip)
            return target.version == low.version and low <= target <= high  # type: ignore[operator]
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None  # a service tag: its ranges are not known here
    if ip is None:
        return None
    return ipaddress.ip_address(ip) in network


def ref_group(firewall: Firewall, group: str, ip: str | None) -> bool | None:
    for key, addresses in firewall.ip_groups.items():
        if key.lower() == group.lower():
            return _or([ref_address(a, ip) for a in addresses])
    return None


def ref_fqdn(pattern: str, host: str) -> bool | None:
    pattern, host = pattern.lower().strip().rstrip("."), host.lower().strip().rstrip(".")
    if not pattern:
        return False
    if host.startswith("*."):
        domain = host[1:]
        if pattern == "*":
            return True
        if pattern.startswith("*") and pattern.count("*") == 1 and domain.endswith(pattern[1:]):
            return True
        if fnmatch.fnmatchcase(pattern, host) or fnmatch.fnmatchcase(host, pattern):
            return None
        return False
    return fnmatch.fnmatchcase(host, pattern)


def ref_port(specs: tuple[str, ...], port: int) -> bool | None:
    result: list[bool | None] = []
    for raw in specs:
        spec = raw.strip()
        if spec in ("*", ""):
            result.append(True)
            continue
        try:
            low, _, high = spec.partition("-")
            result.append(int(low) <= port <= int(high or low))
        except ValueError:
            result.append(None)
    return _or(result)


def ref_source(firewall: Firewall, rule: FirewallRule, packet: Packet) -> bool | None:
    return _or([ref_address(a, packet.source_ip) for a in rule.source_addresses]
               + [ref_group(firewall, g, packet.source_ip) for g in rule.source_ip_groups])


def ref_match(firewall: Firewall, rule: FirewallRule, packet: Packet) -> bool | None:
    if rule.kind == "network":
        protocols = [p.upper() for p in rule.protocols]
        if packet.protocol.upper() not in protocols and "ANY" not in protocols:
            return False
        fqdns: list[bool | None] = []
        for f in rule.destination_fqdns:
            m = ref_fqdn(f, packet.host)
            fqdns.append(m if firewall.dns_proxy or m is False else None)
        destination = _or([ref_address(a, packet.destination_ip) for a in rule.destination_addresses]
                          + [ref_group(firewall, g, packet.destination_ip) for g in rule.destination_ip_groups]
                          + fqdns)
        return _and([ref_port(rule.destination_ports, packet.port), destination,
                     ref_source(firewall, rule, packet)])
    if rule.kind == "application":
        if not packet.tls or packet.protocol.upper() != "TCP":
            return False
        if f"https:{packet.port}" not in [p.lower().replace(" ", "") for p in rule.protocols]:
            return False
        targets: list[bool | None] = [ref_fqdn(f, packet.host) for f in rule.destination_fqdns]
        targets.append("azurekubernetesservice" in [t.lower() for t in rule.fqdn_tags])
        if rule.web_categories:
            targets.append(None)
        for url in rule.target_urls:
            targets.append(None if ref_fqdn(url.split("/")[0], packet.host) is not False else False)
        if rule.destination_addresses:
            targets.append(_or([ref_address(a, packet.destination_ip) for a in rule.destination_addresses]))
        return _and([_or(targets), ref_source(firewall, rule, packet)])
    return False  # DNAT: inbound only


def ref_evaluate(firewall: Firewall, packet: Packet) -> RefDecision:
    seen_actions: list[bool] = []
    for kind in ("network", "application"):
        rules = [r for r in firewall.rules if r.kind == kind]
        for layer in sorted({r.layer for r in rules}):
            in_layer = [r for r in rules if r.layer == layer]
            for group_priority in sorted({r.group_priority for r in in_layer}):
                in_group = [r for r in in_layer if r.group_priority == group_priority]
                for collection_priority in sorted({r.collection_priority for r in in_group}):
                    for rule in [r for r in in_group if r.collection_priority == collection_priority]:
                        matched = ref_match(firewall, rule, packet)
                        if matched is False:
                            continue
                        allow = rule.action.lower() == "allow"
                        seen_actions.append(allow)
                        if matched is None:
                            continue
                        if any(a != allow for a in seen_actions):
                            return RefDecision(None, None)
                        return RefDecision(allow, rule.name)
    if any(seen_actions):
        return RefDecision(None, None)
    return RefDecision(False, None)
