"""Decide a flow the way Azure does: AVNM security admin rules first, then each NSG on the path.

Why compiled bitmasks instead of a loop over rules: a node NSG can hold up to 1,000 custom rules and a
fleet scan decides thousands of flows, so every rule table (one direction of one NSG, or the admin
rules) is compiled once. Bit i of every mask stands for the i-th rule in priority order; for each match
dimension (protocol, source/destination port, source/destination address) the flow's value is mapped
to the mask of rules that match it there, so the rules matching in every dimension are one AND away
and the first of them (the lowest set bit) is the one Azure applies.

Why two masks per dimension ("definitely matches" and "possibly matches"): a service tag such as
AzureCloud or Storage.WestEurope names address ranges this library does not know. A rule using one is
neither matched nor skipped: when it is the first rule that could apply, the answer is `unknown` with
a reason, never a guess.

Semantics worth knowing (kept identical in tests/nsg_reference.py):
- Ports only exist for Tcp and Udp. A rule applies to an Icmp/Esp/Ah flow only when its port fields
  cover every port (`*` or 0-65535), which is what Azure's portal and CLI require for such rules.
- `Internet` is every address outside the VirtualNetwork prefixes that is reachable on the public
  internet: private (RFC 1918), shared (100.64.0.0/10), loopback, link-local, multicast and reserved
  ranges are excluded (and their IPv6 counterparts).
- A rule side naming application security groups and only `*` (or nothing) as prefix means "only
  these ASGs"; Azure never stores both, and a placeholder `*` must not widen the rule to everything.
- Across a path the layers are a conjunction: a definite deny in any NSG on the path denies the flow
  even when another NSG on it is undecidable, because that deny holds whatever the unknown rule does.
"""

from __future__ import annotations

import ipaddress
import re
import threading
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from shared.netrules.nsg_types import (
    AddressContext,
    AdminRule,
    Direction,
    Flow,
    NetworkSecurityGroup,
    PathDecision,
    RuleDecision,
    SecurityRule,
)

__all__ = [
    "AVNM_CONTAINER_ID",
    "AVNM_CONTAINER_NAME",
    "MAX_CUSTOM_PRIORITY",
    "MIN_CUSTOM_PRIORITY",
    "CompiledAdminRules",
    "CompiledNsg",
    "NsgVerdict",
    "RuleNetwork",
    "compile_admin_rules",
    "compile_nsg",
    "default_rules",
    "evaluate_nsg",
    "evaluate_path",
    "first_free_priority_below",
    "rule_networks",
]

MIN_CUSTOM_PRIORITY = 100
MAX_CUSTOM_PRIORITY = 4096
AVNM_CONTAINER_ID = "avnm"
AVNM_CONTAINER_NAME = "Azure Virtual Network Manager security admin rules"
AZURE_LOAD_BALANCER_IP = "168.63.129.16"

# IPv4 and IPv6 share one integer line so that one interval map serves both: IPv6 values are shifted
# past the IPv4 space and no prefix ever spans the two families.
_V6_OFFSET = 1 << 32
_ADDRESS_END = _V6_OFFSET + (1 << 128)  # exclusive
_PORT_END = 65536  # exclusive

_WILDCARDS = frozenset({"*", "any"})
_VIRTUAL_NETWORK_TAGS = frozenset({"virtualnetwork", "virtual_network"})
_INTERNET_TAGS = frozenset({"internet"})
_LOAD_BALANCER_TAGS = frozenset({"azureloadbalancer", "azure_loadbalancer"})
_PORTED_PROTOCOLS = frozenset({"tcp", "udp"})

_NOT_INTERNET = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "::ffff:0:0/96",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
)

_ACCESS_SPELLING = {"allow": "Allow", "deny": "Deny", "alwaysallow": "AlwaysAllow"}


def default_rules(direction: Direction) -> tuple[SecurityRule, ...]:
    """Azure's implied rules for one direction; they cannot be removed, only beaten by priority."""
    if direction.lower() == "inbound":
        return (
            SecurityRule(
                "AllowVnetInBound",
                65000,
                "Inbound",
                "Allow",
                "*",
                source_prefixes=("VirtualNetwork",),
                destination_prefixes=("VirtualNetwork",),
                default=True,
            ),
            SecurityRule(
                "AllowAzureLoadBalancerInBound",
                65001,
                "Inbound",
                "Allow",
                "*",
                source_prefixes=("AzureLoadBalancer",),
                default=True,
            ),
            SecurityRule("DenyAllInBound", 65500, "Inbound", "Deny", "*", default=True),
        )
    return (
        SecurityRule(
            "AllowVnetOutBound",
            65000,
            "Outbound",
            "Allow",
            "*",
            source_prefixes=("VirtualNetwork",),
            destination_prefixes=("VirtualNetwork",),
            default=True,
        ),
        SecurityRule(
            "AllowInternetOutBound",
            65001,
            "Outbound",
            "Allow",
            "*",
            destination_prefixes=("Internet",),
            default=True,
        ),
        SecurityRule("DenyAllOutBound", 65500, "Outbound", "Deny", "*", default=True),
    )


def first_free_priority_below(nsg: NetworkSecurityGroup, priority: int, direction: Direction) -> int | None:
    """The closest custom priority that beats `priority`, so a suggested allow rule wins against it.

    Closest rather than lowest so that the new rule jumps over as few existing rules as possible.
    """
    used = {rule.priority for rule in nsg.rules if rule.direction.lower() == direction.lower()}
    for candidate in range(min(priority - 1, MAX_CUSTOM_PRIORITY), MIN_CUSTOM_PRIORITY - 1, -1):
        if candidate not in used:
            return candidate
    return None


@dataclass(frozen=True)
class NsgVerdict:
    """How one NSG treats a flow: allowed True/False with the deciding rule, or None with a reason."""

    allowed: bool | None
    decision: RuleDecision | None = None
    reason: str | None = None


# --------------------------------------------------------------------------------------------------
# Parsing of Azure's address and port notations into half-open integer ranges.


def _ip_key(ip: str) -> int:
    """A point on the shared IPv4/IPv6 line; raises ValueError for something that is not an address."""
    address = ipaddress.ip_address(ip.strip())
    return int(address) if address.version == 4 else int(address) + _V6_OFFSET


def _prefix_range(prefix: str) -> tuple[int, int] | None:
    """[start, end) of a CIDR or single address, or None when the text is not one (then it is a tag)."""
    try:
        network = ipaddress.ip_network(prefix.strip(), strict=False)
    except ValueError:
        return None
    offset = 0 if network.version == 4 else _V6_OFFSET
    start = int(network.network_address) + offset
    return start, start + network.num_addresses


_PORT_SPEC = re.compile(r"(\d+)(?:\s*-\s*(\d+))?", re.ASCII)


def _port_range(text: str) -> tuple[int, int] | None:
    """[start, end) of `*`, `80` or `10000-11000`; None when Azure would not have accepted the text."""
    text = text.strip()
    if text.lower() in _WILDCARDS:
        return 0, _PORT_END
    spec = _PORT_SPEC.fullmatch(text)
    if spec is None:
        return None
    first = int(spec[1])
    last = int(spec[2]) if spec[2] is not None else first
    if first > last or last >= _PORT_END:
        return None
    return first, last + 1


def _address_kind(item: str) -> str:
    """What an address item names: any, virtual_network, internet, load_balancer, prefix or unknown."""
    word = item.strip().lower()
    if word in _WILDCARDS:
        return "any"
    if word in _VIRTUAL_NETWORK_TAGS:
        return "virtual_network"
    if word in _INTERNET_TAGS:
        return "internet"
    if word in _LOAD_BALANCER_TAGS:
        return "load_balancer"
    return "prefix" if _prefix_range(item) is not None else "unknown"


def _split_items(values: Iterable[str]) -> list[str]:
    """Azure lists arrive as tuples; a comma-joined string (as some exports write them) means the same."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def _covers_everything(ranges: Sequence[tuple[int, int]], end: int) -> bool:
    reach = 0
    for start, stop in sorted(ranges):
        if start > reach:
            return False
        reach = max(reach, stop)
    return reach >= end


# --------------------------------------------------------------------------------------------------
# Interval maps: point -> bitmask of the rules whose ranges contain the point.


class _IntervalMap:
    """Piecewise-constant map from a point to a rule mask, built once by a sweep over range ends."""

    __slots__ = ("_masks", "_starts")

    def __init__(self, ranges: Iterable[tuple[int, int, int]]) -> None:
        events: list[tuple[int, int, int]] = []
        for start, stop, bit in ranges:
            if start < stop:
                events.append((start, 1, bit))
                events.append((stop, -1, bit))
        events.sort()
        starts, masks = [0], [0]
        depth: dict[int, int] = {}
        mask = 0
        i = 0
        while i < len(events):
            point = events[i][0]
            while i < len(events) and events[i][0] == point:
                _, delta, bit = events[i]
                count = depth.get(bit, 0) + delta
                depth[bit] = count
                if delta > 0 and count == 1:
                    mask |= 1 << bit
                elif delta < 0 and count == 0:
                    mask &= ~(1 << bit)
                i += 1
            if point == starts[-1]:
                masks[-1] = mask
            elif mask != masks[-1]:
                starts.append(point)
                masks.append(mask)
        self._starts = starts
        self._masks = masks

    def lookup(self, point: int) -> int:
        return self._masks[bisect_right(self._starts, point) - 1]


# --------------------------------------------------------------------------------------------------
# Rule tables.


@dataclass(frozen=True, slots=True)
class _RuleSpec:
    """NSG and admin rules reduced to what matching needs, sides already normalised."""

    name: str
    rule_id: str
    priority: int
    access: str
    protocol: str
    sources: tuple[str, ...]
    destinations: tuple[str, ...]
    source_ports: tuple[str, ...]
    destination_ports: tuple[str, ...]
    source_asgs: tuple[str, ...] = ()
    destination_asgs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _RuleInfo:
    """What a decision or an `unknown` reason must be able to say about rule i."""

    name: str
    rule_id: str
    priority: int
    access: str
    unresolved: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]
    # ^ per dimension (source address, destination address, source port, destination port): the
    #   items that could not be resolved, for the reason text.


class _PortSide:
    """Port dimension of a table: parsed ranges, rules that accept every port, unparseable specs."""

    __slots__ = ("every", "map", "unparseable")

    def __init__(self, specs: Sequence[tuple[str, ...]]) -> None:
        ranges: list[tuple[int, int, int]] = []
        self.every = 0
        self.unparseable = 0
        for bit, spec in enumerate(specs):
            parsed: list[tuple[int, int]] = []
            for item in _split_items(spec) or ["*"]:
                span = _port_range(item)
                if span is None:
                    self.unparseable |= 1 << bit
                else:
                    parsed.append(span)
            ranges.extend((start, stop, bit) for start, stop in parsed)
            if _covers_everything(parsed, _PORT_END):
                self.every |= 1 << bit
        self.map = _IntervalMap(ranges)


class _AddressSide:
    """Address dimension of a table: static ranges plus the rules naming each context-dependent set."""

    __slots__ = ("asg", "internet", "map", "unknown", "virtual_network")

    def __init__(self, prefix_sides: Sequence[tuple[str, ...]], asg_sides: Sequence[tuple[str, ...]]) -> None:
        ranges: list[tuple[int, int, int]] = []
        self.virtual_network = 0
        self.internet = 0
        self.unknown = 0
        self.asg: dict[str, int] = {}
        for bit, (prefixes, asgs) in enumerate(zip(prefix_sides, asg_sides, strict=True)):
            flag = 1 << bit
            for asg in asgs:
                key = asg.strip().lower()
                self.asg[key] = self.asg.get(key, 0) | flag
            for item in prefixes:
                kind = _address_kind(item)
                if kind == "any":
                    ranges.append((0, _ADDRESS_END, bit))
                elif kind == "virtual_network":
                    self.virtual_network |= flag
                elif kind == "internet":
                    self.internet |= flag
                elif kind == "load_balancer":
                    start = _ip_key(AZURE_LOAD_BALANCER_IP)
                    ranges.append((start, start + 1, bit))
                elif (span := _prefix_range(item)) is not None:
                    ranges.append((*span, bit))
                else:
                    self.unknown |= flag
        self.map = _IntervalMap(ranges)

    def matching(self, endpoint: _Endpoint) -> int:
        mask = self.map.lookup(endpoint.key)
        if endpoint.in_virtual_network:
            mask |= self.virtual_network
        if endpoint.on_internet:
            mask |= self.internet
        for asg in endpoint.asgs:
            mask |= self.asg.get(asg, 0)
        return mask


@dataclass(frozen=True, slots=True)
class _Endpoint:
    """One side of a flow, resolved against the context once per path evaluation."""

    key: int
    in_virtual_network: bool
    on_internet: bool
    asgs: frozenset[str]


@dataclass(frozen=True, slots=True)
class _PreparedFlow:
    protocol: str
    has_ports: bool
    source_port: int
    destination_port: int
    source: _Endpoint
    destination: _Endpoint


@dataclass(frozen=True, slots=True)
class _Match:
    """The first rule that could apply: `definite` False means an unresolved item decides whether it does."""

    index: int
    definite: bool
    unresolved: tuple[str, ...] = ()


class _RuleTable:
    """All rules of one direction of one container, compiled for first-match lookup."""

    __slots__ = (
        "any_protocol",
        "destination_addresses",
        "destination_ports",
        "protocols",
        "rules",
        "source_addresses",
        "source_ports",
    )

    def __init__(self, specs: Iterable[_RuleSpec]) -> None:
        ordered = sorted(specs, key=lambda spec: spec.priority)  # stable: ties keep their given order
        self.any_protocol = 0
        self.protocols: dict[str, int] = {}
        for bit, spec in enumerate(ordered):
            word = spec.protocol.strip().lower()
            if word in _WILDCARDS:
                self.any_protocol |= 1 << bit
            else:
                self.protocols[word] = self.protocols.get(word, 0) | 1 << bit
        self.source_ports = _PortSide([spec.source_ports for spec in ordered])
        self.destination_ports = _PortSide([spec.destination_ports for spec in ordered])
        self.source_addresses = _AddressSide([spec.sources for spec in ordered], [spec.source_asgs for spec in ordered])
        self.destination_addresses = _AddressSide(
            [spec.destinations for spec in ordered], [spec.destination_asgs for spec in ordered]
        )
        self.rules = tuple(_describe(spec) for spec in ordered)

    def first_match(self, flow: _PreparedFlow) -> _Match | None:
        possible = self.any_protocol | self.protocols.get(flow.protocol, 0)
        if not possible:
            return None
        if flow.has_ports:
            sure_source_port = self.source_ports.map.lookup(flow.source_port)
            sure_destination_port = self.destination_ports.map.lookup(flow.destination_port)
        else:
            sure_source_port = self.source_ports.every
            sure_destination_port = self.destination_ports.every
        sure_source = self.source_addresses.matching(flow.source)
        sure_destination = self.destination_addresses.matching(flow.destination)
        sure = (sure_source, sure_destination, sure_source_port, sure_destination_port)
        maybe = (
            sure_source | self.source_addresses.unknown,
            sure_destination | self.destination_addresses.unknown,
            sure_source_port | self.source_ports.unparseable,
            sure_destination_port | self.destination_ports.unparseable,
        )
        for mask in maybe:
            possible &= mask
        if not possible:
            return None
        index = (possible & -possible).bit_length() - 1
        undecided = [dim for dim in range(4) if not sure[dim] >> index & 1]
        if not undecided:
            return _Match(index, definite=True)
        unresolved = self.rules[index].unresolved
        return _Match(index, definite=False, unresolved=tuple(u for dim in undecided for u in unresolved[dim]))


def _describe(spec: _RuleSpec) -> _RuleInfo:
    def unresolved_addresses(items: tuple[str, ...], side: str) -> tuple[str, ...]:
        return tuple(f"{side} service tag '{item}'" for item in items if _address_kind(item) == "unknown")

    def unresolved_ports(items: tuple[str, ...], side: str) -> tuple[str, ...]:
        return tuple(f"{side} port '{item}'" for item in _split_items(items) if _port_range(item) is None)

    return _RuleInfo(
        name=spec.name,
        rule_id=spec.rule_id,
        priority=spec.priority,
        access=spec.access,
        unresolved=(
            unresolved_addresses(spec.sources, "source"),
            unresolved_addresses(spec.destinations, "destination"),
            unresolved_ports(spec.source_ports, "source"),
            unresolved_ports(spec.destination_ports, "destination"),
        ),
    )


def _address_side(prefixes: tuple[str, ...], asgs: tuple[str, ...]) -> tuple[str, ...]:
    """Prefixes that count on a rule side: a lone `*` beside ASGs is a placeholder, not "everything"."""
    items = tuple(_split_items(prefixes))
    if asgs and all(item.lower() in _WILDCARDS for item in items):
        return ()
    if not items and not asgs:
        return ("*",)
    return items


def _canonical_access(access: str, allowed: Iterable[str], where: str) -> str:
    spelled = _ACCESS_SPELLING.get(access.strip().lower())
    if spelled is None or spelled not in allowed:
        raise ValueError(f"{where}: access {access!r} is not one of {sorted(allowed)}")
    return spelled


# --------------------------------------------------------------------------------------------------
# Compiled containers.


class CompiledNsg:
    """One NSG (custom + default rules) compiled per direction; build once, evaluate many flows."""

    __slots__ = ("_tables", "nsg")

    def __init__(self, nsg: NetworkSecurityGroup) -> None:
        self.nsg = nsg
        self._tables = {direction.lower(): _RuleTable(self._specs(direction)) for direction in ("Inbound", "Outbound")}

    def _specs(self, direction: Direction) -> list[_RuleSpec]:
        rules = [rule for rule in self.nsg.rules if rule.direction.lower() == direction.lower()]
        present = {rule.name.lower() for rule in rules}
        rules += [rule for rule in default_rules(direction) if rule.name.lower() not in present]
        return [self._spec(rule) for rule in rules]

    def _spec(self, rule: SecurityRule) -> _RuleSpec:
        rule_id = rule.id or (
            f"{self.nsg.id}/defaultSecurityRules/{rule.name}"
            if rule.default
            else f"{self.nsg.id}/securityRules/{rule.name}"
        )
        return _RuleSpec(
            name=rule.name,
            rule_id=rule_id,
            priority=rule.priority,
            access=_canonical_access(rule.access, ("Allow", "Deny"), f"NSG {self.nsg.name} rule {rule.name}"),
            protocol=rule.protocol,
            sources=_address_side(rule.source_prefixes, rule.source_asgs),
            destinations=_address_side(rule.destination_prefixes, rule.destination_asgs),
            source_ports=rule.source_ports,
            destination_ports=rule.destination_ports,
            source_asgs=rule.source_asgs,
            destination_asgs=rule.destination_asgs,
        )

    def evaluate(self, flow: Flow, context: AddressContext) -> NsgVerdict:
        return self._evaluate(_prepare(flow, _compiled_context(context)), flow.direction)

    def _evaluate(self, flow: _PreparedFlow, direction: str) -> NsgVerdict:
        table = self._tables[direction.lower()]
        match = table.first_match(flow)
        if match is None:  # unreachable while the DenyAll default is present; never call it allowed
            return NsgVerdict(None, reason=f"NSG {self.nsg.name}: no rule, not even a default rule, matched")
        rule = table.rules[match.index]
        if not match.definite:
            return NsgVerdict(None, reason=_undecidable(f"NSG '{self.nsg.name}'", rule, match))
        decision = RuleDecision(self.nsg.id, self.nsg.name, rule.name, rule.rule_id, rule.priority, rule.access)
        return NsgVerdict(rule.access == "Allow", decision)


class CompiledAdminRules:
    """AVNM security admin rules compiled per direction; evaluated before any NSG."""

    __slots__ = ("_tables",)

    def __init__(self, rules: Iterable[AdminRule]) -> None:
        by_direction: dict[str, list[_RuleSpec]] = {"inbound": [], "outbound": []}
        for rule in rules:
            by_direction.setdefault(rule.direction.lower(), []).append(
                _RuleSpec(
                    name=rule.name,
                    rule_id=rule.id,
                    priority=rule.priority,
                    access=_canonical_access(rule.access, ("Allow", "Deny", "AlwaysAllow"), f"admin rule {rule.name}"),
                    protocol=rule.protocol,
                    sources=_address_side(rule.sources, ()),
                    destinations=_address_side(rule.destinations, ()),
                    source_ports=rule.source_ports,
                    destination_ports=rule.destination_ports,
                )
            )
        self._tables = {direction: _RuleTable(specs) for direction, specs in by_direction.items()}

    def _evaluate(self, flow: _PreparedFlow, direction: str) -> _AdminOutcome | None:
        """None when no admin rule applies, so that the NSGs decide alone."""
        table = self._tables.get(direction.lower())
        match = table.first_match(flow) if table is not None else None
        if table is None or match is None:
            return None
        rule = table.rules[match.index]
        if not match.definite:
            return _AdminOutcome(rule.access, None, _undecidable("AVNM", rule, match))
        decision = RuleDecision(
            AVNM_CONTAINER_ID, AVNM_CONTAINER_NAME, rule.name, rule.rule_id, rule.priority, rule.access
        )
        return _AdminOutcome(rule.access, decision)


@dataclass(frozen=True, slots=True)
class _AdminOutcome:
    """The admin rule that applies: `decision` None means it only might apply (`reason` says why)."""

    access: str  # "Allow" (NSGs decide next), "Deny" or "AlwaysAllow" (both final)
    decision: RuleDecision | None
    reason: str | None = None


def _undecidable(where: str, rule: _RuleInfo, match: _Match) -> str:
    """Why a verdict is unknown, naming the rule and the items (tags whose ranges are not collected,
    malformed ports) that decide whether it applies."""
    items = ", ".join(match.unresolved) or "an item that cannot be resolved"
    return (
        f"{where} rule '{rule.name}' (priority {rule.priority}, {rule.access}) may apply to this flow: "
        f"that depends on {items}, which cannot be resolved here"
    )


# --------------------------------------------------------------------------------------------------
# Context: what VirtualNetwork, Internet and the ASGs mean for this cluster.


class _CompiledContext:
    __slots__ = ("_asgs_of", "_internet_excluded", "_virtual_network")

    def __init__(self, context: AddressContext) -> None:
        self._virtual_network = _IntervalMap(
            (*_required_range(prefix, "VirtualNetwork prefix"), 0) for prefix in _split_items(context.vnet_prefixes)
        )
        self._internet_excluded = _IntervalMap((*_required_range(p, "special range"), 0) for p in _NOT_INTERNET)
        asgs_of: dict[int, set[str]] = {}
        for asg, members in context.asg_members.items():
            for member in members:
                asgs_of.setdefault(_ip_key(member), set()).add(asg.strip().lower())
        self._asgs_of = {key: frozenset(ids) for key, ids in asgs_of.items()}

    def endpoint(self, ip: str) -> _Endpoint:
        key = _ip_key(ip)
        in_virtual_network = bool(self._virtual_network.lookup(key))
        return _Endpoint(
            key=key,
            in_virtual_network=in_virtual_network,
            on_internet=not in_virtual_network and not self._internet_excluded.lookup(key),
            asgs=self._asgs_of.get(key, frozenset()),
        )


def _required_range(prefix: str, what: str) -> tuple[int, int]:
    span = _prefix_range(prefix)
    if span is None:
        raise ValueError(f"{what} {prefix!r} is not an IP prefix")
    return span


def _prepare(flow: Flow, context: _CompiledContext) -> _PreparedFlow:
    protocol = flow.protocol.strip().lower()
    return _PreparedFlow(
        protocol=protocol,
        has_ports=protocol in _PORTED_PROTOCOLS,
        source_port=flow.source_port,
        destination_port=flow.destination_port,
        source=context.endpoint(flow.source_ip),
        destination=context.endpoint(flow.destination_ip),
    )


# --------------------------------------------------------------------------------------------------
# Identity caches: hashing a frozen 1,000-rule NSG costs more than deciding a flow in it, so compiled
# forms are keyed by object identity. Entries hold the object itself, so its id cannot be reused while
# the entry lives; only immutable inputs (frozen dataclasses, tuples) are cached.

_K = TypeVar("_K")
_V = TypeVar("_V")


class _IdentityCache(Generic[_K, _V]):
    def __init__(self, maxsize: int) -> None:
        self._maxsize = maxsize
        self._entries: OrderedDict[int, tuple[_K, _V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, source: _K, build: Callable[[_K], _V]) -> _V:
        key = id(source)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] is source:
                self._entries.move_to_end(key)
                return entry[1]
        value = build(source)
        with self._lock:
            self._entries[key] = (source, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._maxsize:
                self._entries.popitem(last=False)
        return value


_NSG_CACHE: _IdentityCache[NetworkSecurityGroup, CompiledNsg] = _IdentityCache(256)
_ADMIN_CACHE: _IdentityCache[tuple[AdminRule, ...], CompiledAdminRules] = _IdentityCache(64)
_CONTEXT_CACHE: _IdentityCache[AddressContext, _CompiledContext] = _IdentityCache(64)
_NO_ADMIN_RULES = CompiledAdminRules(())


def compile_nsg(nsg: NetworkSecurityGroup) -> CompiledNsg:
    """The compiled form of `nsg`, built on first use and reused while the same object is passed."""
    return _NSG_CACHE.get(nsg, CompiledNsg)


def compile_admin_rules(rules: Sequence[AdminRule]) -> CompiledAdminRules:
    """Compiled admin rules; tuples are cached by identity, other (mutable) sequences compiled afresh."""
    if not rules:
        return _NO_ADMIN_RULES
    if isinstance(rules, tuple):
        return _ADMIN_CACHE.get(rules, CompiledAdminRules)
    return CompiledAdminRules(rules)


def _compiled_context(context: AddressContext) -> _CompiledContext:
    return _CONTEXT_CACHE.get(context, _CompiledContext)


# --------------------------------------------------------------------------------------------------
# Public evaluation.


def evaluate_nsg(flow: Flow, nsg: NetworkSecurityGroup, context: AddressContext) -> NsgVerdict:
    """How one NSG alone treats `flow` (custom and default rules of the flow's direction)."""
    return compile_nsg(nsg).evaluate(flow, context)


def evaluate_path(
    flow: Flow,
    nsgs: Sequence[NetworkSecurityGroup | None],
    *,
    context: AddressContext,
    admin_rules: Sequence[AdminRule] | CompiledAdminRules = (),
) -> PathDecision:
    """Verdict for `flow` across AVNM admin rules and then each NSG in `nsgs`, in the order given.

    Callers pass inbound as [subnet NSG, NIC NSG] and outbound as [NIC NSG, subnet NSG]; None means no
    NSG at that place, which lets everything through. A flow must pass every NSG, so a definite deny
    anywhere on the path wins over another NSG that is undecidable (its reason is then not reported).
    NSGs, admin-rule tuples and contexts are compiled once per object: treat them as immutable.
    """
    prepared = _prepare(flow, _compiled_context(context))
    admin = admin_rules if isinstance(admin_rules, CompiledAdminRules) else compile_admin_rules(admin_rules)
    outcome = admin._evaluate(prepared, flow.direction)
    decisions: list[RuleDecision] = []
    if outcome is not None:
        if outcome.decision is None:
            return PathDecision(None, (), outcome.reason)
        decisions.append(outcome.decision)
        if outcome.access != "Allow":  # Deny ends it; AlwaysAllow ends it without asking the NSGs
            return PathDecision(outcome.access == "AlwaysAllow", tuple(decisions))
    first_unknown: str | None = None
    for nsg in nsgs:
        if nsg is None:
            continue
        verdict = compile_nsg(nsg)._evaluate(prepared, flow.direction)
        if verdict.allowed is None:
            first_unknown = first_unknown or verdict.reason
            continue
        assert verdict.decision is not None
        decisions.append(verdict.decision)
        if not verdict.allowed:
            return PathDecision(False, tuple(decisions))
    if first_unknown is not None:
        return PathDecision(None, tuple(decisions), first_unknown)
    return PathDecision(True, tuple(decisions))


RuleNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def rule_networks(nsgs: Mapping[str, NetworkSecurityGroup], admin_rules: Iterable[AdminRule],
                  extra: Iterable[str] = ()) -> list[RuleNetwork]:
    """Every IP prefix an NSG rule, an AVNM admin rule (or `extra`, e.g. the VNet's prefixes) can test.

    These are the only boundaries at which a node's or a subnet's IP can change a verdict; service tags
    are skipped, because they decide the same way for every address of one kind.
    """
    texts: set[str] = set(extra)
    for nsg in {id(n): n for n in nsgs.values()}.values():
        for rule in nsg.rules:
            texts.update(rule.source_prefixes)
            texts.update(rule.destination_prefixes)
    for admin_rule in admin_rules:
        texts.update(admin_rule.sources)
        texts.update(admin_rule.destinations)
    networks: list[RuleNetwork] = []
    for text in {t.strip() for value in texts for t in value.split(",") if t.strip()}:
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            continue
    return networks
