"""`ufw status` (plain, verbose, numbered) -> typed rules, and whether ufw lets TCP 10250 in from a source.

ufw evaluates its user rules in order, first match wins, then falls back to the default incoming
policy; the parser keeps that order and every row's number so the verdict can point at the exact rule
a person must delete. Parsing is strict (a ParseError names the line) because guessing on mangled
output could report `clear` for a node that is actually blocked.

Row layout, from ufw 0.36's backend (`"%-26s %-12s%-26s%s%s"`): To, Action (+ IN/OUT/FWD), From,
optional ` (log)` / ` (log-all)` / ` (out)` attributes, optional ` # comment`; numbered output prefixes
`[ n] `. A To longer than 26 characters pushes the action right, so columns are only a first guess.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Literal

from shared.netrules.errors import ParseError

Action = Literal["allow", "deny", "reject", "limit"]
Direction = Literal["in", "out", "fwd"]
Decision = Literal["allow", "deny", "reject", "unknown"]
OutputForm = Literal["plain", "verbose", "numbered"]
PortRanges = tuple[tuple[int, int], ...]
Match = Literal["yes", "no", "maybe"]

# Linux's default net.ipv4.ip_local_port_range: where a client's (e.g. the API server tunnel's)
# source port comes from, so a rule restricting the source port can sometimes still be decided.
EPHEMERAL_PORTS: tuple[int, int] = (32768, 60999)

_TO_WIDTH = 26
_NUMBER_PREFIX = re.compile(r"^\[\s*(\d+)\] ")
_ACTION = re.compile(r"(ALLOW|DENY|REJECT|LIMIT)(?: (IN|OUT|FWD))?(?=\s|$)")
_ATTRIBUTES = re.compile(r"\s\(((?:log|log-all|in|out)(?:, (?:log|log-all|in|out))*)\)$")
_PORT_SPEC = re.compile(r"^(\d+(?::\d+)?(?:,\d+(?::\d+)?)*)(?:/([a-z][a-z0-9]*))?$")
_APP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _\-.+]*$")
_ON_IFACE = re.compile(r"\s+on\s+(\S+)$")
_VERBOSE_APP = re.compile(r"\s\(([A-Za-z0-9][A-Za-z0-9 _\-.+]*?)( \(v6\))?\)$")
_PROTO_SUFFIX = re.compile(r"/([a-z][a-z0-9]*)$")
_DEFAULTS = re.compile(
    r"^Default: (\w+) \(incoming\), (\w+) \(outgoing\), (\w+) \(routed\)$"
)
_HEADER = re.compile(r"^\s*To\s+Action\s+From\s*$")
_SEPARATOR = re.compile(r"^\s*--\s+------\s+----\s*$")

# Profiles whose ports are well known (ufw's own applications.d plus common distro packages). Any other
# profile name is opaque in plain/numbered output; verbose output spells out every profile's ports.
WELL_KNOWN_PROFILES: dict[str, str] = {
    "OpenSSH": "22/tcp", "SSH": "22/tcp", "Telnet": "23/tcp",
    "Apache": "80/tcp", "Apache Secure": "443/tcp", "Apache Full": "80,443/tcp",
    "Nginx HTTP": "80/tcp", "Nginx HTTPS": "443/tcp", "Nginx Full": "80,443/tcp",
    "WWW": "80/tcp", "WWW Secure": "443/tcp", "WWW Full": "80,443/tcp", "WWW Cache": "8080/tcp",
    "Transparent Proxy": "8081/tcp", "Socks": "1080/tcp",
    "Postfix": "25/tcp", "Postfix SMTPS": "465/tcp", "Postfix Submission": "587/tcp",
    "SMTP": "25/tcp", "Mail submission": "587/tcp", "POP3": "110/tcp", "POP3S": "995/tcp",
    "IMAP": "143/tcp", "IMAPS": "993/tcp", "Dovecot IMAP": "143/tcp", "Dovecot Secure IMAP": "993/tcp",
    "Dovecot POP3": "110/tcp", "Dovecot Secure POP3": "995/tcp",
    "DNS": "53", "Bind9": "53", "LDAP": "389/tcp", "LDAPS": "636/tcp",
    "Kerberos KDC": "88", "Kerberos Admin": "749/tcp", "Kerberos Password": "464/udp",
    "Kerberos Full": "88,749/tcp|464/udp",
    "CIFS": "137,138/udp|139,445/tcp", "Samba": "137,138/udp|139,445/tcp",
    "NFS": "2049,111/tcp|2049,111/udp", "IPP": "631", "CUPS": "631", "LPD": "515/tcp",
    "VNC": "5900/tcp", "svnserve": "3690/tcp", "AIM": "5190/tcp", "MSN": "1863|6891:6900/tcp|6901",
    "MSN SSL": "443/tcp", "Yahoo": "5050", "XMPP": "5222/tcp|5269/tcp",
    "Bonjour": "5353/udp|5298", "PeopleNearby": "5353/udp|5298",
    "Transmission": "51413", "Deluge": "6881:6891/tcp", "KTorrent": "6881/tcp|4444/udp",
    "qBittorrent": "6881/tcp",
}


@dataclass(frozen=True)
class UfwEndpoint:
    """One side (To or From) of a rule. None means "any" for address, ports and protocol."""

    address: str | None = None  # IP or CIDR as shown; None = Anywhere
    ports: PortRanges | None = None
    protocol: str | None = None
    app: str | None = None  # application profile name, when the row names one
    interface: str | None = None
    v6_marker: bool = False


@dataclass(frozen=True)
class UfwRule:
    """One row of the rule table.

    `number` is what `ufw status numbered` shows (or would show); `number_exact` is False when the
    listing reorders rows (plain/verbose output put OUT and FWD rules in their own sections), so a
    person must confirm the number with `ufw status numbered` before deleting.
    """

    number: int
    number_exact: bool
    line: int
    raw: str
    to: UfwEndpoint
    action: Action
    direction: Direction
    source: UfwEndpoint
    protocol: str | None
    ipv6: bool
    log: str | None = None
    comment: str | None = None


@dataclass(frozen=True)
class UfwDefaults:
    incoming: str
    outgoing: str
    routed: str


@dataclass(frozen=True)
class UfwStatus:
    active: bool
    form: OutputForm
    rules: tuple[UfwRule, ...] = ()
    logging: str | None = None
    defaults: UfwDefaults | None = None  # only `ufw status verbose` shows them
    new_profiles: str | None = None


@dataclass(frozen=True)
class UfwVerdict:
    """What ufw does to one flow. `rule` is the deciding row, None when the default policy (or nothing) did.

    `possible` lists every outcome still possible: more than one means `decision` is "unknown". A rule
    that might match (unknown interface, opaque app profile) only matters if its action differs.
    """

    decision: Decision
    active: bool
    rule: UfwRule | None
    reason: str
    source_ip: str
    port: int
    proto: str
    uncertain_rules: tuple[UfwRule, ...] = ()
    possible: frozenset[str] = field(default_factory=frozenset)
    default_policy: str | None = None

    @property
    def blocked(self) -> bool | None:
        """True if every possible outcome refuses the flow, False if it is let in, None if it depends."""
        if not self.possible or "unknown" in self.possible:
            return None
        if self.possible <= {"deny", "reject"}:
            return True
        if self.possible == {"allow"}:
            return False
        return None


# ---------------------------------------------------------------------------------------------------
# Parsing


def parse_ufw_status(text: str) -> UfwStatus:
    """Parse `ufw status`, `ufw status verbose` or `ufw status numbered` (English, as ufw prints it)."""
    lines = text.replace("\r\n", "\n").split("\n")
    index = _skip_blank(lines, 0)
    if index >= len(lines):
        raise ParseError(1, "'Status: active' or 'Status: inactive'", "<empty input>")
    first = lines[index].strip()
    if first == "Status: inactive":
        _expect_only_blank(lines, index + 1, "nothing after 'Status: inactive'")
        return UfwStatus(active=False, form="plain")
    if first != "Status: active":
        raise ParseError(index + 1, "'Status: active' or 'Status: inactive'", first)
    index += 1

    logging: str | None = None
    defaults: UfwDefaults | None = None
    new_profiles: str | None = None
    while index < len(lines) and lines[index].strip():
        line = lines[index].strip()
        if line.startswith("Logging: "):
            logging = line.removeprefix("Logging: ")
        elif match := _DEFAULTS.match(line):
            defaults = UfwDefaults(match.group(1), match.group(2), match.group(3))
        elif line.startswith("New profiles: "):
            new_profiles = line.removeprefix("New profiles: ")
        else:
            raise ParseError(index + 1, "'Logging:', 'Default:' or 'New profiles:' (verbose header)", line)
        index += 1
    verbose = defaults is not None or logging is not None or new_profiles is not None

    index = _skip_blank(lines, index)
    if index >= len(lines):
        return UfwStatus(True, "verbose" if verbose else "plain", (), logging, defaults, new_profiles)
    if not _HEADER.match(lines[index]):
        raise ParseError(index + 1, "the rule table header 'To  Action  From'", lines[index].strip())
    numbered = lines[index].startswith("     To")
    index += 1
    if index >= len(lines) or not _SEPARATOR.match(lines[index]):
        got = lines[index].strip() if index < len(lines) else "<end of input>"
        raise ParseError(index + 1, "the separator '--  ------  ----'", got)
    index += 1

    form: OutputForm = "numbered" if numbered else ("verbose" if verbose else "plain")
    rows: list[tuple[int, str]] = [
        (i + 1, lines[i].rstrip()) for i in range(index, len(lines)) if lines[i].strip()
    ]
    rules = _number_rules([_parse_row(line_no, raw, numbered) for line_no, raw in rows], form)
    return UfwStatus(True, form, tuple(rules), logging, defaults, new_profiles)


def _skip_blank(lines: list[str], index: int) -> int:
    while index < len(lines) and not lines[index].strip():
        index += 1
    return index


def _expect_only_blank(lines: list[str], index: int, expected: str) -> None:
    end = _skip_blank(lines, index)
    if end < len(lines):
        raise ParseError(end + 1, expected, lines[end].strip())


@dataclass(frozen=True)
class _Row:
    line: int
    raw: str
    shown_number: int | None
    to: UfwEndpoint
    action: Action
    direction: Direction
    source: UfwEndpoint
    log: str | None
    comment: str | None
    attributes: tuple[str, ...]


def _parse_row(line_no: int, raw: str, numbered: bool) -> _Row:
    body = raw
    shown_number: int | None = None
    if numbered:
        prefix = _NUMBER_PREFIX.match(body)
        if prefix is None:
            raise ParseError(line_no, "a numbered rule row '[ n] To Action From'", raw.strip())
        shown_number = int(prefix.group(1))
        body = body[prefix.end():]
    elif _NUMBER_PREFIX.match(body):
        raise ParseError(line_no, "an unnumbered rule row (the header was not numbered)", raw.strip())

    action_match = _find_action(body)
    if action_match is None:
        raise ParseError(line_no, "a rule row with an action ALLOW/DENY/REJECT/LIMIT", raw.strip())
    to_text = body[: action_match.start()].strip()
    rest = body[action_match.end():].strip()
    if not to_text or not rest:
        raise ParseError(line_no, "a rule row 'To Action From'", raw.strip())

    comment: str | None = None
    if "#" in rest:
        rest, comment_text = rest.split("#", 1)
        rest = rest.rstrip()
        comment = comment_text.strip()
    attributes: tuple[str, ...] = ()
    if attr_match := _ATTRIBUTES.search(rest):
        attributes = tuple(a.strip() for a in attr_match.group(1).split(","))
        rest = rest[: attr_match.start()].rstrip()
    log = next((a for a in attributes if a.startswith("log")), None)

    direction_word = (action_match.group(2) or "IN").lower()
    direction: Direction = "out" if direction_word == "out" else "fwd" if direction_word == "fwd" else "in"
    if "out" in attributes:
        direction = "out"
    action: Action = _ACTION_WORDS[action_match.group(1)]
    to = _parse_endpoint(to_text, line_no, "To")
    source = _parse_endpoint(rest, line_no, "From")
    return _Row(line_no, raw, shown_number, to, action, direction, source, log, comment, attributes)


_ACTION_WORDS: dict[str, Action] = {"ALLOW": "allow", "DENY": "deny", "REJECT": "reject", "LIMIT": "limit"}


def _find_action(body: str) -> re.Match[str] | None:
    """The action column: at ufw's fixed column when the To text fits, else the first action word."""
    if len(body) > _TO_WIDTH and body[_TO_WIDTH] == " " and body[:_TO_WIDTH].strip():
        at_column = _ACTION.match(body, _TO_WIDTH + 1)
        if at_column is not None:
            return at_column
    for candidate in _ACTION.finditer(body):
        if candidate.start() > 0 and body[candidate.start() - 1] == " ":
            return candidate
    return None


def _parse_endpoint(text: str, line_no: int, column: str) -> UfwEndpoint:
    """One To/From cell: `[addr][/proto] [ports[/proto] | App Name] [(App)] [(v6)] [on iface]`."""
    rest = text.strip()
    interface: str | None = None
    if on := _ON_IFACE.search(rest):
        interface = on.group(1)
        rest = rest[: on.start()]
    app: str | None = None
    v6_marker = False
    if rest.endswith(" (v6)"):
        v6_marker = True
        rest = rest.removesuffix(" (v6)")
    elif verbose_app := _VERBOSE_APP.search(rest):
        app = verbose_app.group(1)
        v6_marker = verbose_app.group(2) is not None
        rest = rest[: verbose_app.start()]
    rest = rest.strip()
    if not rest:
        raise ParseError(line_no, f"a {column} address, port or app profile", text.strip())

    address: str | None = None
    protocol: str | None = None
    head, _, tail = rest.partition(" ")
    if head == "Anywhere" or head.startswith("Anywhere/"):
        protocol = head.partition("/")[2] or None
        if tail:
            raise ParseError(line_no, f"nothing after 'Anywhere' in the {column} column", text.strip())
        return UfwEndpoint(None, None, protocol, app, interface, v6_marker)
    parsed_address = _parse_address(head)
    if parsed_address is not None:
        address, protocol = parsed_address
        rest = tail.strip()
        if not rest:
            return UfwEndpoint(address, None, protocol, app, interface, v6_marker)

    ports: PortRanges | None = None
    if spec := _PORT_SPEC.match(rest):
        ports = _port_ranges(spec.group(1), line_no)
        protocol = spec.group(2) or protocol
    elif _APP_NAME.match(rest) and app is None:
        app = rest
    else:
        raise ParseError(line_no, f"a {column} port, port range/list or app profile name", rest)
    return UfwEndpoint(address, ports, protocol, app, interface, v6_marker)


def _parse_address(token: str) -> tuple[str, str | None] | None:
    """`10.0.0.0/8`, `10.0.0.4/tcp`, `10.0.0.0/8/tcp`, `2001:db8::/32` -> (address, protocol)."""
    protocol: str | None = None
    candidate = token
    if suffix := _PROTO_SUFFIX.search(token):
        protocol = suffix.group(1)
        candidate = token[: suffix.start()]
    if not any(ch in candidate for ch in ".:") or _PORT_SPEC.match(candidate):
        return None
    try:
        ipaddress.ip_network(candidate, strict=False)
    except ValueError:
        return None
    return candidate, protocol


def _port_ranges(spec: str, line_no: int) -> PortRanges:
    ranges: list[tuple[int, int]] = []
    for part in spec.split(","):
        low, _, high = part.partition(":")
        first, last = int(low), int(high or low)
        if not 0 < first <= last <= 65535:
            raise ParseError(line_no, "ports within 1-65535 (low:high)", spec)
        ranges.append((first, last))
    return tuple(ranges)


def _number_rules(rows: list[_Row], form: OutputForm) -> list[UfwRule]:
    """Give every row the number `ufw status numbered` shows for it.

    ufw numbers its rule list (all IPv4 rules, then all IPv6 rules), hiding repeats of the same app
    profile rule in non-verbose listings. Plain/verbose listings move OUT and FWD rules to the end,
    so their positions equal ufw's numbers only when no such rows exist.
    """
    reordered = any(r.direction != "in" for r in rows) and form != "numbered"
    rules: list[UfwRule] = []
    seen_app_rules: set[tuple[object, ...]] = set()
    position = 0
    for row in rows:
        if form == "verbose" and (row.to.app or row.source.app):
            key = (row.to.address, row.to.app or row.to.ports, row.source.address,
                   row.source.app or row.source.ports, row.to.interface, row.direction, row.to.v6_marker)
            if key not in seen_app_rules:
                position += 1
            seen_app_rules.add(key)
        else:
            position += 1
        number = row.shown_number if row.shown_number is not None else position
        protocol = row.to.protocol or row.source.protocol
        ipv6 = row.to.v6_marker or row.source.v6_marker or any(
            e.address is not None and ":" in e.address for e in (row.to, row.source)
        )
        rules.append(UfwRule(number, not reordered, row.line, row.raw.strip(), row.to, row.action,
                             row.direction, row.source, protocol, ipv6, row.log, row.comment))
    return rules


# ---------------------------------------------------------------------------------------------------
# Decision


def decide(status: UfwStatus, source_ip: str, port: int = 10250, proto: str = "tcp",
           interface: str | None = None, *, dest_ip: str | None = None) -> UfwVerdict:
    """What ufw does to `proto`/`port` arriving from `source_ip` (on `interface`, to `dest_ip` if known).

    First matching IN rule wins (LIMIT admits the first connection, so it counts as allow), else the
    default incoming policy. Rows that *might* match (unknown interface/destination, an opaque app
    profile, a source-port range partly inside the ephemeral range) are carried along: the decision is
    only certain when every still-possible outcome agrees.
    """
    source = ipaddress.ip_address(source_ip)
    dest = ipaddress.ip_address(dest_ip) if dest_ip else None

    def verdict(decision: Decision, rule: UfwRule | None, reason: str, possible: frozenset[str], *,
                uncertain: tuple[UfwRule, ...] = (), default: str | None = None) -> UfwVerdict:
        return UfwVerdict(decision, status.active, rule, reason, source_ip, port, proto, uncertain,
                          possible, default)

    if not status.active:
        return verdict("allow", None, "ufw is inactive: it filters nothing", frozenset({"allow"}))

    uncertain: list[tuple[UfwRule, str]] = []
    for rule in status.rules:
        if rule.direction != "in" or rule.ipv6 != (source.version == 6):
            continue
        match, why = _rule_matches(rule, source, port, proto, interface=interface, dest=dest)
        if match == "no":
            continue
        if match == "maybe":
            uncertain.append((rule, why))
            continue
        effect = _effect(rule.action)
        possible = frozenset({effect, *(_effect(r.action) for r, _ in uncertain)})
        here = f"rule {rule.number} ('{_shown(rule)}') is the first rule matching {proto}/{port} from {source_ip}"
        if len(possible) == 1:
            limit_note = " (LIMIT: rate-limited, the first connections pass)" if rule.action == "limit" else ""
            return verdict(effect, rule, f"{here}: {effect}{limit_note}", possible,
                           uncertain=tuple(r for r, _ in uncertain))
        return verdict("unknown", rule, f"{here}, but {_describe_uncertain(uncertain)}", possible,
                       uncertain=tuple(r for r, _ in uncertain))

    default = status.defaults.incoming if status.defaults else None
    uncertain_rules = tuple(r for r, _ in uncertain)
    if default is None:
        reason = (f"no rule matches {proto}/{port} from {source_ip} and `ufw status` does not show the "
                  "default incoming policy: run `sudo ufw status verbose`")
        if uncertain:
            reason += f"; also {_describe_uncertain(uncertain)}"
        possible = frozenset({"unknown", *(_effect(r.action) for r in uncertain_rules)})
        return verdict("unknown", None, reason, possible, uncertain=uncertain_rules)
    effect = _effect(default)
    possible = frozenset({effect, *(_effect(r.action) for r in uncertain_rules)})
    reason = f"no rule matches {proto}/{port} from {source_ip}: the default incoming policy is {default}"
    if len(possible) == 1:
        return verdict(effect, None, reason, possible, uncertain=uncertain_rules, default=default)
    return verdict("unknown", None, f"{reason}, but {_describe_uncertain(uncertain)}", possible,
                   uncertain=uncertain_rules, default=default)


_EFFECTS: dict[str, Decision] = {"allow": "allow", "limit": "allow", "deny": "deny", "reject": "reject"}


def _effect(action: str) -> Decision:
    """A rule action or default policy as the connection sees it (LIMIT lets the first ones through)."""
    return _EFFECTS.get(action, "unknown")


def _shown(rule: UfwRule) -> str:
    """The row without ufw's column padding, for messages."""
    return " ".join(rule.raw.split())


def _describe_uncertain(uncertain: list[tuple[UfwRule, str]]) -> str:
    parts = [f"rule {r.number} ('{_shown(r)}', {r.action}) might match first: {why}" for r, why in uncertain]
    return "; ".join(parts)


def _rule_matches(rule: UfwRule, source: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int,
                  proto: str, *, interface: str | None,
                  dest: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> tuple[Match, str]:
    checks = [
        _dest_ports_match(rule, port, proto),
        _address_match(rule.source.address, source, "source"),
        _source_ports_match(rule, proto),
        _address_match(rule.to.address, dest, "destination"),
        _interface_match(rule.to.interface, interface),
    ]
    if any(m == "no" for m, _ in checks):
        return "no", ""
    reasons = [why for m, why in checks if m == "maybe"]
    return ("maybe", "; ".join(reasons)) if reasons else ("yes", "")


def _dest_ports_match(rule: UfwRule, port: int, proto: str) -> tuple[Match, str]:
    if rule.to.ports is not None:
        return _ports_contain(rule.to.ports, rule.protocol, port, proto), ""
    if rule.to.app is not None:
        return _profile_contains(rule.to.app, port, proto)
    if rule.protocol is not None and rule.protocol != proto:
        return "no", ""
    return "yes", ""


def _source_ports_match(rule: UfwRule, proto: str) -> tuple[Match, str]:
    """A client's source port is ephemeral: decide only when the rule's ports cover or avoid that range."""
    if rule.source.ports is not None:
        spans: list[tuple[PortRanges, str | None]] = [(rule.source.ports, rule.protocol)]
    elif rule.source.app is not None:
        known = _profile_ports(rule.source.app)
        if known is None:
            return "maybe", f"source app profile {rule.source.app!r} has ports unknown here"
        spans = known
    else:
        return "yes", ""
    low, high = EPHEMERAL_PORTS
    covered = 0
    for ranges, rule_proto in spans:
        if rule_proto not in (None, proto):
            continue
        for first, last in ranges:
            covered += max(0, min(last, high) - max(first, low) + 1)
    if covered == 0:
        return "no", ""
    if covered >= high - low + 1:
        return "yes", ""
    return "maybe", "the rule matches only some ephemeral source ports"


def _ports_contain(ranges: PortRanges, rule_proto: str | None, port: int, proto: str) -> Match:
    if rule_proto is not None and rule_proto != proto:
        return "no"
    return "yes" if any(first <= port <= last for first, last in ranges) else "no"


def _profile_ports(app: str) -> list[tuple[PortRanges, str | None]] | None:
    spec = WELL_KNOWN_PROFILES.get(app)
    if spec is None:
        return None
    result: list[tuple[PortRanges, str | None]] = []
    for part in spec.split("|"):
        parsed = _PORT_SPEC.match(part)
        if parsed is None:  # pragma: no cover - the table above is static
            raise ValueError(f"bad well-known profile spec {spec!r}")
        result.append((_port_ranges(parsed.group(1), 0), parsed.group(2)))
    return result


def _profile_contains(app: str, port: int, proto: str) -> tuple[Match, str]:
    known = _profile_ports(app)
    if known is None:
        return "maybe", (f"app profile {app!r} is not a well-known one, so its ports are unknown here "
                         f"(`sudo ufw status verbose` or `sudo ufw app info '{app}'` shows them)")
    hit = any(_ports_contain(ranges, rule_proto, port, proto) == "yes" for ranges, rule_proto in known)
    return ("yes" if hit else "no"), ""


def _address_match(address: str | None, actual: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
                   role: str) -> tuple[Match, str]:
    if address is None:
        return "yes", ""
    if actual is None:
        return "maybe", f"the rule is limited to {role} {address} and the {role} address was not given"
    network = ipaddress.ip_network(address, strict=False)
    if network.version != actual.version:
        return "no", ""
    return ("yes" if actual in network else "no"), ""


def _interface_match(rule_iface: str | None, interface: str | None) -> tuple[Match, str]:
    if rule_iface is None:
        return "yes", ""
    if interface is None:
        return "maybe", f"the rule applies only on interface {rule_iface} and the interface is unknown"
    if rule_iface.endswith("+"):  # iptables-style wildcard
        return ("yes" if interface.startswith(rule_iface[:-1]) else "no"), ""
    return ("yes" if interface == rule_iface else "no"), ""


# ---------------------------------------------------------------------------------------------------
# Subjects


def subject(verdict: UfwVerdict) -> str | None:
    """What to fix, the same on every node that carries it: the deciding rule as ufw shows it (no number,
    no padding, no comment), or the default incoming policy. None when ufw does not refuse the flow."""
    if verdict.blocked is not True:
        return None
    if verdict.rule is None:
        return f"ufw: default incoming {verdict.default_policy or verdict.decision}"
    return rule_subject(verdict.rule)


def rule_subject(rule: UfwRule) -> str:
    """`ufw: DENY IN 10250/tcp from Anywhere` for the row `10250/tcp   DENY IN   Anywhere`."""
    body = _NUMBER_PREFIX.sub("", rule.raw.strip())
    found = _find_action(body)
    if found is None:  # pragma: no cover - a parsed rule always has its action
        return f"ufw: {' '.join(body.split())}"
    to_text = " ".join(body[: found.start()].split())
    rest = body[found.end():].split("#", 1)[0]
    action = f"{found.group(1)} {found.group(2) or 'IN'}"
    return f"ufw: {action} {to_text} from {' '.join(rest.split())}"


# ---------------------------------------------------------------------------------------------------
# Remediation


def remediation(verdict: UfwVerdict, allow_from: str | None = None) -> tuple[str, ...]:
    """Commands that would let the flow in, empty unless ufw blocks it.

    `sudo ufw allow 10250/tcp` appends a rule, which is useless behind an earlier DENY: a blocking rule
    must be deleted or out-ranked with `insert 1`. `allow_from` is the VNet CIDR to allow (defaults to
    the verdict's source address).
    """
    if verdict.blocked is not True:
        return ()
    target = f"{verdict.port}/{verdict.proto}"
    source = allow_from or verdict.source_ip
    steps: list[str] = []
    rule = verdict.rule
    if rule is not None:
        if rule.number_exact:
            steps.append(f"sudo ufw delete {rule.number}")
        else:
            steps.append(f"sudo ufw status numbered  # find the number of the rule '{_shown(rule)}'")
            steps.append("sudo ufw delete <that number>")
        steps.append(f"sudo ufw insert 1 allow from {source} to any port {verdict.port} proto {verdict.proto}"
                     "  # alternative: keeps the blocking rule but allows the VNet before it")
    else:
        steps.append(f"sudo ufw allow {target}")
    steps.append("sudo ufw disable  # documented alternative: turns ufw off on this node")
    return tuple(steps)
