"""Decide one outbound flow through Azure Firewall the way Azure does, from classic rules or a Firewall Policy.

Azure's processing order (Microsoft Learn, "Azure Firewall rule processing logic"):
- DNAT rules, then network rules, then application rules, *regardless* of rule collection group
  priority, rule collection priority or policy inheritance. DNAT only translates traffic sent to the
  firewall's own public address, so it never decides a node's outbound flow and is skipped here.
- Within a kind: a parent (base) policy's rules before its child's, then rule collection group priority,
  then rule collection priority (lowest number first). Classic firewalls have no groups or parents.
- The first matching rule decides. A matching network rule ends processing: application rules are not
  consulted. Nothing matching means deny.
- Application rules only see HTTP/HTTPS/MSSQL: a TLS flow matches an `Https:<port>` rule by its SNI.
  Tunnel ports that are not TLS to the API FQDN (TCP 9000, UDP 1194) are judged by network rules only.

Matching is three-valued. A rule side naming something whose members are unknown here (a service tag
such as `AzureCloud.eastus`, a web category, an IP group that could not be read, the API server's IP
when no node resolved it, a network-rule FQDN without the firewall's DNS proxy) *possibly* matches.
Such a rule cannot be skipped and cannot be applied: if it could change the answer, the decision is
undecidable (`allowed is None`) and names it, never a guess. Everything here is pure; the property
tests compare it with a deliberately naive reference (tests/firewall_reference.py).
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

from shared.netrules.firewall_types import Firewall, FirewallRule

__all__ = ["AKS_FQDN_TAG", "CompiledFirewall", "FirewallDecision", "Match", "Packet", "compile_firewall",
           "evaluate_firewall", "ordered_rules"]

AKS_FQDN_TAG = "azurekubernetesservice"
_PHASES = ("network", "application")


class Match(Enum):
    NO = 0
    MAYBE = 1
    YES = 2


def _any(values: Iterable[Match]) -> Match:
    best = Match.NO
    for value in values:
        if value is Match.YES:
            return Match.YES
        if value is Match.MAYBE:
            best = Match.MAYBE
    return best


def _all(values: Iterable[Match]) -> Match:
    worst = Match.YES
    for value in values:
        if value is Match.NO:
            return Match.NO
        if value is Match.MAYBE:
            worst = Match.MAYBE
    return worst


@dataclass(frozen=True)
class Packet:
    """The flow to judge: from a node to the API server.

    `host` is the API server FQDN, or a wildcard such as `*.hcp.eastus.azmk8s.io` when only its domain
    is known; `destination_ip` is None when no node resolved it. `tls` says the flow is TLS carrying the
    host as SNI (Konnectivity on 443), which is what lets an application rule see it.
    """

    source_ip: str
    protocol: str  # TCP | UDP
    port: int
    host: str
    destination_ip: str | None = None
    tls: bool = False


@dataclass(frozen=True)
class FirewallDecision:
    """`allowed` True/False, or None when a rule that could change the answer cannot be decided.

    `rule` is the rule that decides (None: Azure's default deny, or undecidable); `undecided` lists
    the rules whose match depends on something unknown and that stand before the decision.
    """

    allowed: bool | None
    rule: FirewallRule | None
    detail: str
    undecided: tuple[FirewallRule, ...] = ()


def ordered_rules(firewall: Firewall) -> list[FirewallRule]:
    """Network rules, then application rules; each by parent policy first, group, then collection priority."""
    phase = {kind: i for i, kind in enumerate(_PHASES)}
    indexed = [(i, r) for i, r in enumerate(firewall.rules) if r.kind in phase]
    indexed.sort(key=lambda item: (phase[item[1].kind], item[1].layer, item[1].group_priority,
                                   item[1].collection_priority, item[0]))
    return [r for _, r in indexed]


# ------------------------------------------------------------------ parsing (once per firewall)

_Range = tuple[int, int, int]  # (ip version, first, last)


def _parse_address(item: str) -> _Range | str | None:
    """A range for IPs, CIDRs and `a-b` ranges; "*" for any; None for anything else (a service tag)."""
    text = item.strip()
    if text in ("*", "any", "Any", "0.0.0.0/0"):
        return "*"
    try:
        if "-" in text:
            low, high = (ipaddress.ip_address(p.strip()) for p in text.split("-", 1))
            return (low.version, int(low), int(high))
        net = ipaddress.ip_network(text, strict=False)
        return (net.version, int(net.network_address), int(net.broadcast_address))
    except ValueError:
        return None


def _parse_port(spec: str) -> tuple[int, int] | None:
    text = spec.strip()
    if text in ("*", ""):
        return (0, 65535)
    try:
        if "-" in text:
            low, high = text.split("-", 1)
            return (int(low), int(high))
        return (int(text), int(text))
    except ValueError:
        return None


@dataclass(frozen=True)
class _Addresses:
    ranges: tuple[_Range, ...]
    any: bool
    unknown: tuple[str, ...]  # service tags and anything unparsable

    @staticmethod
    def of(items: Sequence[str]) -> _Addresses:
        ranges: list[_Range] = []
        unknown: list[str] = []
        star = False
        for item in items:
            parsed = _parse_address(item)
            if parsed == "*":
                star = True
            elif parsed is None:
                unknown.append(item)
            else:
                assert not isinstance(parsed, str)
                ranges.append(parsed)
        return _Addresses(tuple(ranges), star, tuple(unknown))

    def match(self, ip: _Ip | None) -> Match:
        if self.any:
            return Match.YES
        if ip is None:
            return Match.MAYBE if (self.ranges or self.unknown) else Match.NO
        version, value = ip
        if any(v == version and lo <= value <= hi for v, lo, hi in self.ranges):
            return Match.YES
        return Match.MAYBE if self.unknown else Match.NO


_Ip = tuple[int, int]  # (version, integer value): parsed once per flow, not once per rule


def _ip(text: str | None) -> _Ip | None:
    if text is None:
        return None
    address = ipaddress.ip_address(text)
    return (address.version, int(address))


def fqdn_match(pattern: str, host: str) -> Match:
    """Does an FQDN pattern (Azure wildcards: `*`, `*.contoso.com`, `*contoso.com`) cover the host?

    With the host itself only known as `*.<domain>`, a pattern covers it when it covers every name in
    that domain; a specific name inside the domain possibly matches.
    """
    pat, name = pattern.strip().lower().rstrip("."), host.strip().lower().rstrip(".")
    if not pat:
        return Match.NO
    if not name.startswith("*"):
        return Match.YES if fnmatch.fnmatchcase(name, pat) else Match.NO
    domain = name.lstrip("*")  # ".hcp.eastus.azmk8s.io"
    if pat == "*" or (pat.startswith("*") and "*" not in pat[1:] and domain.endswith(pat[1:])):
        return Match.YES
    return Match.MAYBE if fnmatch.fnmatchcase(pat, name) or fnmatch.fnmatchcase(name, pat) else Match.NO


@dataclass(frozen=True)
class _Compiled:
    rule: FirewallRule
    protocols: frozenset[str]  # network: TCP/UDP/ANY...; application: HTTPS:443 ...
    ports: tuple[tuple[int, int], ...]
    bad_ports: bool
    sources: _Addresses
    source_groups: tuple[str, ...]
    destinations: _Addresses
    destination_groups: tuple[str, ...]


def _compile_rule(rule: FirewallRule) -> _Compiled:
    ports = [_parse_port(p) for p in rule.destination_ports]
    return _Compiled(
        rule=rule,
        protocols=frozenset(p.strip().upper().replace(" ", "") for p in rule.protocols),
        ports=tuple(p for p in ports if p is not None),
        bad_ports=any(p is None for p in ports),
        sources=_Addresses.of(rule.source_addresses),
        source_groups=tuple(g.lower() for g in rule.source_ip_groups),
        destinations=_Addresses.of(rule.destination_addresses),
        destination_groups=tuple(g.lower() for g in rule.destination_ip_groups),
    )


@dataclass(frozen=True)
class _Flow:
    packet: Packet
    source: _Ip | None
    destination: _Ip | None


class CompiledFirewall:
    """A firewall's rules parsed and ordered once, for judging many nodes and ports."""

    def __init__(self, firewall: Firewall) -> None:
        self.firewall = firewall
        self._rules = [_compile_rule(r) for r in ordered_rules(firewall)]
        self._groups = {k.lower(): _Addresses.of(v) for k, v in firewall.ip_groups.items()}
        self._unreadable = {k.lower() for k in firewall.unreadable}
        self._by_destination: dict[tuple[str, int, bool, str, str | None], list[tuple[_Compiled, Match]]] = {}

    def _group_match(self, group: str, ip: _Ip | None) -> Match:
        addresses = self._groups.get(group)
        if addresses is None:  # not read (or unreadable): its members are unknown
            return Match.MAYBE
        return addresses.match(ip)

    def _source(self, rule: _Compiled, flow: _Flow) -> Match:
        return _any([rule.sources.match(flow.source),
                     *(self._group_match(g, flow.source) for g in rule.source_groups)])

    def _network(self, rule: _Compiled, flow: _Flow) -> Match:
        """Everything but the source: the same for every node, so it is computed once per destination."""
        packet = flow.packet
        if not (rule.protocols & {packet.protocol.upper(), "ANY"}):
            return Match.NO
        port = Match.YES if any(lo <= packet.port <= hi for lo, hi in rule.ports) else (
            Match.MAYBE if rule.bad_ports else Match.NO)
        if port is Match.NO:
            return Match.NO
        fqdns = [fqdn_match(f, packet.host) for f in rule.rule.destination_fqdns]
        if not self.firewall.dns_proxy:  # FQDNs in network rules resolve only through the DNS proxy
            fqdns = [Match.MAYBE if m is not Match.NO else m for m in fqdns]
        destination = _any([rule.destinations.match(flow.destination),
                            *(self._group_match(g, flow.destination) for g in rule.destination_groups),
                            *fqdns])
        return _all([port, destination])

    def _application(self, rule: _Compiled, flow: _Flow) -> Match:
        packet = flow.packet
        if not (packet.tls and packet.protocol.upper() == "TCP"):
            return Match.NO
        if f"HTTPS:{packet.port}" not in rule.protocols:
            return Match.NO
        return _any([
            *(fqdn_match(f, packet.host) for f in rule.rule.destination_fqdns),
            Match.YES if any(t.lower() == AKS_FQDN_TAG for t in rule.rule.fqdn_tags) else Match.NO,
            Match.MAYBE if rule.rule.web_categories else Match.NO,
            *(Match.MAYBE if fqdn_match(u.split("/", 1)[0], packet.host) is not Match.NO else Match.NO
              for u in rule.rule.target_urls),
            rule.destinations.match(flow.destination) if rule.rule.destination_addresses else Match.NO,
        ])

    def _candidates(self, flow: _Flow) -> list[tuple[_Compiled, Match]]:
        """Rules whose destination side can match this flow, in order, with that match (cached per destination:
        a cluster's nodes differ only by source)."""
        packet = flow.packet
        key = (packet.protocol.upper(), packet.port, packet.tls, packet.host.lower(), packet.destination_ip)
        found = self._by_destination.get(key)
        if found is None:
            found = []
            for rule in self._rules:
                part = self._network(rule, flow) if rule.rule.kind == "network" else self._application(rule, flow)
                if part is not Match.NO:
                    found.append((rule, part))
            self._by_destination[key] = found
        return found

    def evaluate(self, packet: Packet) -> FirewallDecision:
        flow = _Flow(packet, _ip(packet.source_ip), _ip(packet.destination_ip))
        undecided: list[FirewallRule] = []
        actions: set[bool] = set()
        for rule, part in self._candidates(flow):
            found = _all([part, self._source(rule, flow)])
            if found is Match.NO:
                continue
            allow = rule.rule.action.strip().lower() == "allow"
            actions.add(allow)
            if found is Match.MAYBE:
                undecided.append(rule.rule)
                continue
            return _decision(allow, rule.rule, actions, undecided)
        actions.add(False)
        return _decision(False, None, actions, undecided)


def _decision(allow: bool, rule: FirewallRule | None, actions: set[bool],
              undecided: list[FirewallRule]) -> FirewallDecision:
    if len(actions) > 1:
        names = ", ".join(f"'{r.name}' ({r.kind} rule in {r.collection})" for r in undecided)
        return FirewallDecision(None, None, f"the outcome depends on rule(s) whose match cannot be decided here: "
                                            f"{names}", tuple(undecided))
    where = (f"{rule.kind} rule '{rule.name}' in rule collection '{rule.collection}'"
             + (f" (group '{rule.group}')" if rule.group else "")) if rule else "no rule matches (default deny)"
    return FirewallDecision(allow, rule, f"{'allowed' if allow else 'denied'} by {where}", tuple(undecided))


def compile_firewall(firewall: Firewall) -> CompiledFirewall:
    return CompiledFirewall(firewall)


def evaluate_firewall(firewall: Firewall, packet: Packet) -> FirewallDecision:
    return CompiledFirewall(firewall).evaluate(packet)
