"""Parse the three ways a node's iptables filter table reaches us into one compiled rule model.

Inputs are `iptables-save` (legacy or nf_tables), `iptables -S` and `iptables --list [-n] [-v]
--line-numbers` (what Microsoft's troubleshooting guide asks people to paste). All three become the same
`Ruleset`, so the evaluator never cares where rules came from. Matches are compiled once here into small
objects with a `test` method: a 20,000-rule kube-proxy/Calico dump must parse in well under a second, so
the hot path avoids shlex, regexes per token and `ipaddress`.

A match we cannot decide offline (ipsets, bpf, rate limits, host names in a listing...) compiles to an
`UnknownMatch` that answers None; the evaluator then explores both outcomes instead of guessing.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Final

from shared.netrules.errors import ParseError

BUILTIN_CHAINS: Final = frozenset({"INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING"})
EPHEMERAL_PORTS: Final = (32768, 60999)  # Linux default ip_local_port_range, what a client picks from
ALL_ONES: Final = 0xFFFFFFFF

PROTOCOLS: Final[Mapping[str, int]] = {
    "all": 0, "icmp": 1, "igmp": 2, "ipip": 4, "ipv4": 4, "ipencap": 4, "tcp": 6, "egp": 8, "udp": 17,
    "dccp": 33, "ipv6": 41,
    "gre": 47, "esp": 50, "ah": 51, "icmpv6": 58, "ipv6-icmp": 58, "ospf": 89, "pim": 103, "vrrp": 112,
    "l2tp": 115, "sctp": 132, "mh": 135, "udplite": 136,
}
# Names `iptables -L` (without -n) prints for ports; the fallback is the local services database.
SERVICES: Final[Mapping[str, int]] = {
    "tcpmux": 1, "echo": 7, "ftp-data": 20, "ftp": 21, "ssh": 22, "telnet": 23, "smtp": 25, "domain": 53,
    "bootps": 67, "bootpc": 68, "tftp": 69, "gopher": 70, "finger": 79, "http": 80, "kerberos": 88,
    "pop3": 110, "sunrpc": 111, "auth": 113, "ntp": 123, "netbios-ns": 137, "netbios-dgm": 138,
    "netbios-ssn": 139, "imap2": 143, "imap": 143, "snmp": 161, "snmp-trap": 162, "bgp": 179,
    "ldap": 389, "https": 443, "microsoft-ds": 445, "isakmp": 500, "syslog": 514, "submission": 587,
    "ldaps": 636, "rsync": 873, "imaps": 993, "pop3s": 995, "openvpn": 1194, "ms-sql-s": 1433,
    "nfs": 2049, "cisco-sccp": 2000, "mysql": 3306, "ms-wbt-server": 3389, "sip": 5060,
    "postgresql": 5432, "x11": 6000, "http-alt": 8080, "webcache": 8080,
}
# Numbers newer iptables print in the prot column, back to the names a rebuilt `-A` line should show.
_PROTO_NAMES: Final[Mapping[str, str]] = {
    str(v): k for k, v in PROTOCOLS.items() if k not in ("ipv4", "ipencap", "ipv6-icmp")}
_HOST_NAMES: Final[Mapping[str, str]] = {
    "localhost": "127.0.0.1", "loopback": "127.0.0.0", "link-local": "169.254.0.0",
}
TCP_FLAGS: Final[Mapping[str, int]] = {
    "FIN": 0x01, "SYN": 0x02, "RST": 0x04, "PSH": 0x08, "ACK": 0x10, "URG": 0x20, "ECE": 0x40,
    "CWR": 0x80, "ALL": 0xFF, "NONE": 0x00,
}
CT_STATES: Final = frozenset({"NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED", "SNAT", "DNAT"})
ADDR_TYPES: Final = frozenset({
    "UNSPEC", "UNICAST", "LOCAL", "BROADCAST", "ANYCAST", "MULTICAST", "BLACKHOLE", "UNREACHABLE",
    "PROHIBIT", "THROW", "NAT", "XRESOLVE",
})
# Targets that log, mark or tweak headers and then let the packet carry on to the next rule.
CONTINUING_TARGETS: Final = frozenset({
    "LOG", "NFLOG", "ULOG", "TRACE", "AUDIT", "CLASSIFY", "DSCP", "TOS", "TTL", "TCPMSS", "SECMARK",
    "CONNSECMARK", "CHECKSUM", "IDLETIMER", "LED", "RATEEST", "SET", "NOTRACK", "CT", "HMARK", "TEE",
})
_NO_EFFECT_TARGETS: Final = CONTINUING_TARGETS | {""}


# --------------------------------------------------------------------------------------------------
# The packet as matches see it


@dataclass(frozen=True, slots=True)
class PacketView:
    """A new connection's first packet in integer form, so each match test is a few int operations.

    `sport` None means "some ephemeral port": a port match then answers only when the whole ephemeral
    range falls inside (or outside) the rule's ports.
    """

    src: int
    dst: int
    dport: int
    sport: int | None
    proto: int
    iface: str
    ct_state: str
    src_type: str
    dst_type: str
    tcp_flags: int = TCP_FLAGS["SYN"]


class Match:
    """One compiled condition of a rule. `test` answers True/False, or None when undecidable offline."""

    __slots__ = ("guard", "negate")

    def __init__(self, negate: bool = False, guard: int = 0) -> None:
        self.negate = negate
        self.guard = guard  # protocol number the owning module needs (tcp match on a udp packet: no)

    def raw(self, p: PacketView, mark: int, ctmark: int) -> bool | None:
        raise NotImplementedError

    def describe(self) -> str:
        """What this match is, for a verdict that could not be decided because of it."""
        return type(self).__name__

    def test(self, p: PacketView, mark: int, ctmark: int) -> bool | None:
        if self.guard and p.proto != self.guard:
            return False
        r = self.raw(p, mark, ctmark)
        if r is None or not self.negate:
            return r
        return not r


class ProtoMatch(Match):
    __slots__ = ("proto",)

    def __init__(self, proto: int, negate: bool) -> None:
        super().__init__(negate)
        self.proto = proto

    def raw(self, p: PacketView, mark: int, ctmark: int) -> bool | None:
        return self.proto in (0, p.proto)


class AddrMatch(Match):
    __slots__ = ("mask", "net", "source")

    def __init__(self, source: bool, net: int, mask: int, negate: bool) -> None:
        super().__init__(negate)
        self.source, self.net, self.mask = source, net & mask, mask

    def raw(self, p: PacketView, mark: int, ctmark: int) -> bool | None:
        return ((p.src if self.source else p.dst) & self.mask) == self.net


class RangeAddrMatch(Match):
    __slots__ = ("high", "low", "source")

    def __init__(self, source: bool, low: int, high: int, negate: bool) -> None:
        super().__init__(negate)
        self.source, self.low, self.high = source, low, high

    def raw(self, p: PacketView, mark: int, ctmark: int) -> bool | None:
        return self.low <= (p.src if self.source else p.dst) <= self.high


class IfaceMatch(Match):
    """`-i eth0`, or `-i eth+` (a trailing + matches any interface with that prefix)."""

    __slots__ = ("name", "prefix")

    def __init__(self, name: str, negate: bool) -> None:
        super().__init__(negate)
        self.prefix = name.endswith("+")
        self.name = name[:-1] if self.prefix else name

    def raw(self, p: PacketView, mark: int, ctmark: int) -> bool | None:
        return p.iface.startswith(self.name) if self.prefix else p.iface == self.name


class FragmentMatch(Match):
    """`-f`: only second and later fragments; a connection's first packet never is one."""

    __slots__ = ()

    def raw(self, p: PacketView, mark: int, ctmark: int) -> bool | None:
        return False


class PortMatch(Match):
    """tcp/udp --dport/--sport and multiport lists; `which` is "d", "s" or "either" (--ports)."""

    __slots__ = ("ranges", "which")

    def __init__(self, which: str, ranges: tuple[tuple[int, int], ...], negate: bool, guard: int) -> None:
        super().__init__(negate, guard)
        self.which, self.ranges = which, ranges

    def _has(self, port: int) -> bool:
        return any(lo <= port <= hi for lo, hi in self.ranges)

    def _sport(self, sport: int | None) -> bool | None:
        if sport is not None:
            return self._has(sport)
        lo_e, hi_e = EPHEMERAL_PORTS
        covered = 0
        for lo, hi in self.ranges:
            covered += max(0, min(hi, hi_e) - max(lo, lo_e) + 1)
        if covered == 0:
            return False
        return True if covered >= hi_e - lo_e + 1 else None

    def describe(self) -> str:
        lo, hi = EPHEMERAL_PORTS
        ports = ",".join(f"{a}:{b}" if a != b else str(a) for a, b in self.ranges)
        return f"source port {ports} (the client's ephemeral port, {lo}-{hi}, is only partly inside)"

    def raw(self, p: PacketView, mark: int, ctmark: int) -> bool | None:
        if self.which == "d":
            return self._has(p.dport)
        if self.which == "s":
            return self._sport(p.sport)
        return True if self._has(p.dport) else self._sport(p.sport)


class TcpFlagsMatch(Match):
    __slots__ = ("comp", "mask")

    def __init__(self, mask: int, comp: int, negate: bool) -> None:
        super().__init__(negate, PROTOCOLS["tcp"])
        self.mask, self.comp = mask, comp

    def raw(self, p: PacketView, mark: int, ctmark: int) -> bool | None:
        return (p.tcp_flags & self.mask) == self.comp


class CtStateMatch(Match):
    __slots__ = ("states",)

    def __init__(self, states: frozenset[str], negate: bool) -> None:
        super().__init__(negate)
        self.states = states

    def raw(self, p: PacketView, mark: int, ctmark: int) -> bool | None:
        return p.ct_state in self.states


class AddrTypeMatch(Match):
    __slots__ = ("source", "types")

    def __init__(self, source: bool, types: frozenset[str], negate: bool) -> None:
        super().__init__(negate)
        self.source, self.types = source, types

    def raw(self, p: PacketView, mark: int, ctmark: int) -> bool | None:
        return (p.src_type if self.source else p.dst_type) in self.types


class MarkMatch(Match):
    """`-m mark` / `-m connmark`: decidable because a new connection starts with mark 0 and ctmark 0,
    and the evaluator tracks every MARK/CONNMARK target on the way."""

    __slots__ = ("conn", "mask", "value")

    def __init__(self, conn: bool, value: int, mask: int, negate: bool) -> None:
        super().__init__(negate)
        self.conn, self.value, self.mask = conn, value, mask

    def raw(self, p: PacketView, mark: int, ctmark: int) -> bool | None:
        return ((ctmark if self.conn else mark) & self.mask) == self.value


class ConstMatch(Match):
    __slots__ = ("value",)

    def __init__(self, value: bool, negate: bool = False, guard: int = 0) -> None:
        super().__init__(negate, guard)
        self.value = value

    def raw(self, p: PacketView, mark: int, ctmark: int) -> bool | None:
        return self.value


class UnknownMatch(Match):
    """A condition we cannot decide offline; `what` names it for the verdict's reason."""

    __slots__ = ("what",)

    def __init__(self, what: str, guard: int = 0) -> None:
        super().__init__(False, guard)
        self.what = what

    def raw(self, p: PacketView, mark: int, ctmark: int) -> bool | None:
        return None

    def describe(self) -> str:
        return self.what


# --------------------------------------------------------------------------------------------------
# Rules, targets, the rule set


@dataclass(frozen=True, slots=True)
class Target:
    """What a matching rule does. `kind`: accept, drop, reject, return, call (user chain or an
    unknown extension, resolved at evaluation), continue, mark, connmark, unknown."""

    kind: str
    name: str = ""
    goto: bool = False
    reject_with: str | None = None
    mark_mask: int = 0  # MARK / CONNMARK --set-xmark: new = (old & ~mask) ^ value
    mark_value: int = 0
    connmark_mode: str = ""  # "xset" | "save" | "restore"
    nfmask: int = ALL_ONES
    ctmask: int = ALL_ONES
    reason: str | None = None


@dataclass(slots=True)
class Rule:
    """One rule, treated as immutable. `exact` says `text` is iptables' own spelling (save/-S), so
    `iptables -D CHAIN <args>` deletes precisely this rule; a listing only gives a rebuilt text."""

    chain: str
    index: int
    line: int
    text: str
    exact: bool
    matches: tuple[Match, ...]
    target: Target
    assumption: str | None = None

    @property
    def args(self) -> tuple[str, ...] | None:
        """The spec after `-A CHAIN`, split as the shell would; split on demand because only the one
        deciding rule ever needs it."""
        if not self.exact:
            return None
        parts = self.text.split(None, 2)
        return tuple(split_args(parts[2], self.line)) if len(parts) > 2 else ()

    def test(self, p: PacketView, mark: int, ctmark: int) -> bool | None:
        """AND of all matches; a failing known match wins over an undecidable one."""
        unknown = False
        for m in self.matches:
            r = m.test(p, mark, ctmark)
            if r is False:
                return False
            if r is None:
                unknown = True
        return None if unknown else True

    def undecided(self, p: PacketView, mark: int, ctmark: int) -> list[str]:
        """Names of the matches that cannot be decided for this packet (for the verdict's reason)."""
        return [m.describe() for m in self.matches if m.test(p, mark, ctmark) is None]


@dataclass(frozen=True)
class Ruleset:
    """The *filter table. `policies` holds built-in chains only; `source_format` is save, spec or
    listing; `interfaces_visible` is False for a listing printed without -v (no in/out columns)."""

    chains: Mapping[str, tuple[Rule, ...]]
    policies: Mapping[str, str]
    source_format: str
    has_filter: bool = True
    interfaces_visible: bool = True
    notes: tuple[str, ...] = field(default=())


# --------------------------------------------------------------------------------------------------
# Small value parsers (fast, no ipaddress)


def ipv4_to_int(text: str) -> int | None:
    """Strict dotted-quad to int (inet_pton: no octal, no short forms)."""
    try:
        return int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
    except OSError:
        return None


def parse_cidr(text: str) -> tuple[int, int] | None:
    """'10.0.0.0/8', '10.0.0.1', '10.0.0.0/255.0.0.0' -> (net, mask); None if not an IPv4 address."""
    addr, _, bits = text.partition("/")
    ip = ipv4_to_int(addr)
    if ip is None:
        named = _HOST_NAMES.get(addr)
        if named is None:
            return None
        ip = ipv4_to_int(named)
        assert ip is not None
    if not bits:
        return ip, ALL_ONES
    if bits.isdigit() and int(bits) <= 32:
        n = int(bits)
        return ip, (ALL_ONES << (32 - n)) & ALL_ONES
    mask = ipv4_to_int(bits)
    return None if mask is None else (ip, mask)


def parse_port(text: str, proto: str = "tcp") -> int | None:
    if text.isdigit():
        value = int(text)
        return value if value <= 65535 else None
    known = SERVICES.get(text)
    if known is not None:
        return known
    try:
        return socket.getservbyname(text, proto)
    except OSError:
        return None


def parse_port_list(text: str, proto: str = "tcp") -> tuple[tuple[int, int], ...] | None:
    """'80,443,1000:2000' (and ':1024', '1024:') -> ranges; None when a name cannot be resolved."""
    out: list[tuple[int, int]] = []
    for item in text.split(","):
        if ":" in item:
            a, _, b = item.partition(":")
            lo = parse_port(a, proto) if a else 0
            hi = parse_port(b, proto) if b else 65535
        else:
            lo = hi = parse_port(item, proto)
        if lo is None or hi is None:
            return None
        out.append((min(lo, hi), max(lo, hi)))
    return tuple(out)


def parse_tcp_flags(text: str) -> int | None:
    if text.startswith("0x"):
        try:
            return int(text, 16)
        except ValueError:
            return None
    value = 0
    for name in text.split(","):
        bit = TCP_FLAGS.get(name.upper())
        if bit is None:
            return None
        value |= bit
    return value


def parse_mark(text: str) -> tuple[int, int] | None:
    """'0x8000/0x8000' -> (value, mask); a bare value means mask 0xffffffff."""
    value, _, mask = text.partition("/")
    try:
        return int(value, 0), (int(mask, 0) if mask else ALL_ONES)
    except ValueError:
        return None


def _split_double_quoted(text: str) -> list[str] | None:
    """Split where every double-quoted string is a whole token (iptables-save's comments and log
    prefixes); None sends anything fancier to the careful splitter."""
    parts = text.split('"')
    if len(parts) % 2 == 0:
        return None
    out: list[str] = []
    last = len(parts) - 1
    for i, seg in enumerate(parts):
        if i % 2 == 0:
            out.extend(seg.split())
        elif (parts[i - 1] and not parts[i - 1][-1].isspace()) or (
                i < last and parts[i + 1] and not parts[i + 1][0].isspace()):
            return None
        else:
            out.append(seg)
    return out


def split_args(text: str, line: int) -> list[str]:
    """Shell-like split as iptables-save quotes (double quotes with backslash escapes); fast path when
    nothing is quoted, which is nearly every line."""
    if "'" not in text and "\\" not in text:
        if '"' not in text:
            return text.split()
        fast = _split_double_quoted(text)
        if fast is not None:
            return fast
    out: list[str] = []
    buf: list[str] = []
    in_token = False
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t":
            if in_token:
                out.append("".join(buf))
                buf, in_token = [], False
            i += 1
            continue
        in_token = True
        if c == "\\" and i + 1 < n:
            buf.append(text[i + 1])
            i += 2
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                buf.append(text[i])
                i += 1
            if i >= n:
                raise ParseError(line, 'a closing " for the quoted argument', text)
            i += 1
        elif c == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise ParseError(line, "a closing ' for the quoted argument", text)
            buf.append(text[i + 1:end])
            i = end + 1
        else:
            buf.append(c)
            i += 1
    if in_token:
        out.append("".join(buf))
    return out


# --------------------------------------------------------------------------------------------------
# Compiling `-A CHAIN ...` argument lists


_TOP_LEVEL: Final = frozenset({
    "-p", "--protocol", "-s", "--source", "--src", "-d", "--destination", "--dst", "-i", "--in-interface",
    "-o", "--out-interface", "-f", "--fragment", "-m", "--match", "-j", "--jump", "-g", "--goto", "-c",
    "--set-counters",
})
_TARGET_FLAGS: Final = frozenset({"-j", "--jump", "-g", "--goto"})
_GOTO_FLAGS: Final = frozenset({"-g", "--goto"})
_KNOWN_MODULES: Final = frozenset({
    "tcp", "udp", "multiport", "state", "conntrack", "addrtype", "comment", "mark", "connmark", "iprange",
    "pkttype", "icmp",
})


def _is_option(tok: str) -> bool:
    return len(tok) > 1 and tok[0] == "-" and not tok[1].isdigit()


def _addr_match(source: bool, value: str, negate: bool, flag: str) -> Match:
    if "," in value:
        return UnknownMatch(f"{flag} {value} (several addresses in one rule)")
    cidr = parse_cidr(value)
    if cidr is None:
        return UnknownMatch(f"{flag} {value} (not an IPv4 address)")
    if cidr[1] == 0:
        return ConstMatch(True, negate)
    return AddrMatch(source, cidr[0], cidr[1], negate)


def _proto_match(value: str, negate: bool) -> Match:
    low = value.lower()
    num = PROTOCOLS.get(low)
    if num is None and low.isdigit():
        num = int(low)
    if num is None:
        try:
            num = socket.getprotobyname(low)
        except OSError:
            return UnknownMatch(f"-p {value} (unknown protocol)")
    return ProtoMatch(num, negate)


def _module_option(module: str, opt: str, vals: list[str], negate: bool, proto: str) -> Match | None:
    """Compile one option of a known module; None means it does not constrain the packet."""
    guard = PROTOCOLS.get(proto, 0)
    v0 = vals[0] if vals else ""
    shown = f"-m {module} {'! ' if negate else ''}{opt} {' '.join(vals)}".rstrip()
    if module in ("tcp", "udp"):
        pnum = PROTOCOLS[module]
        if opt in ("--dport", "--destination-port", "--sport", "--source-port"):
            ranges = parse_port_list(v0, module)
            if ranges is None or len(ranges) != 1:
                return UnknownMatch(shown, pnum)
            return PortMatch("d" if "d" in opt[2:4] else "s", ranges, negate, pnum)
        if module == "tcp" and opt == "--tcp-flags" and len(vals) == 2:
            mask, comp = parse_tcp_flags(vals[0]), parse_tcp_flags(vals[1])
            if mask is not None and comp is not None:
                return TcpFlagsMatch(mask, comp, negate)
        if module == "tcp" and opt == "--syn":
            return TcpFlagsMatch(0x17, 0x02, negate)
        return UnknownMatch(shown, pnum)
    if module == "multiport":
        ranges = parse_port_list(v0, proto if proto in ("tcp", "udp") else "tcp")
        which = {"--dports": "d", "--destination-ports": "d", "--sports": "s", "--source-ports": "s",
                 "--ports": "either"}.get(opt)
        if ranges is None or which is None:
            return UnknownMatch(shown, guard)
        return PortMatch(which, ranges, negate, guard)
    if module in ("state", "conntrack") and opt in ("--state", "--ctstate"):
        states = frozenset(s.upper() for s in v0.split(","))
        if not states <= CT_STATES:
            return UnknownMatch(shown)
        return CtStateMatch(states, negate)
    if module == "addrtype":
        if opt in ("--limit-iface-in", "--limit-iface-out"):
            return None
        types = frozenset(t.upper() for t in v0.split(","))
        if opt in ("--src-type", "--dst-type") and types <= ADDR_TYPES:
            return AddrTypeMatch(opt == "--src-type", types, negate)
        return UnknownMatch(shown)
    if module == "comment":
        return None
    if module in ("mark", "connmark") and opt == "--mark":
        mv = parse_mark(v0)
        if mv is not None:
            return MarkMatch(module == "connmark", mv[0], mv[1], negate)
        return UnknownMatch(shown)
    if module == "iprange" and opt in ("--src-range", "--dst-range"):
        lo_s, _, hi_s = v0.partition("-")
        lo, hi = ipv4_to_int(lo_s), ipv4_to_int(hi_s or lo_s)
        if lo is not None and hi is not None:
            return RangeAddrMatch(opt == "--src-range", lo, hi, negate)
        return UnknownMatch(shown)
    if module == "pkttype" and opt == "--pkt-type":
        return ConstMatch(v0.lower() == "unicast", negate)  # a connection to a node IP is unicast
    if module == "icmp":
        return UnknownMatch(shown, PROTOCOLS["icmp"])
    return UnknownMatch(shown, guard)


def compile_target(name: str, goto: bool, args: list[str]) -> Target:
    """Turn `-j NAME args` into a Target; user chains stay "call" until evaluation resolves them."""
    if goto:
        return Target("call", name, goto=True)
    if name == "ACCEPT":
        return Target("accept", name)
    if name == "DROP":
        return Target("drop", name)
    if name == "RETURN":
        return Target("return", name)
    if name == "REJECT":
        with_ = args[args.index("--reject-with") + 1] if "--reject-with" in args[:-1] else \
            "icmp-port-unreachable"
        return Target("reject", name, reject_with=with_)
    if name in CONTINUING_TARGETS:
        return Target("continue", name)
    if name in ("MARK", "CONNMARK"):
        return _mark_target(name, args)
    if name in ("QUEUE", "NFQUEUE"):
        return Target("unknown", name, reason=f"-j {name} hands the packet to a userspace program")
    return Target("call", name)


def _mark_target(name: str, args: list[str]) -> Target:
    opts: dict[str, str] = {}
    i = 0
    while i < len(args):
        key = args[i]
        if i + 1 < len(args) and not args[i + 1].startswith("--"):
            opts[key] = args[i + 1]
            i += 2
        else:
            opts[key] = ""
            i += 1
    unknown = Target("unknown", name, reason=f"-j {name} {' '.join(args)} (unsupported form)")
    value_mask: tuple[int, int] | None = None
    if "--set-xmark" in opts:
        value_mask = parse_mark(opts["--set-xmark"])
    elif "--set-mark" in opts:
        vm = parse_mark(opts["--set-mark"])
        value_mask = None if vm is None else (vm[0], vm[0] | vm[1])
    elif "--or-mark" in opts:
        vm = parse_mark(opts["--or-mark"])
        value_mask = None if vm is None else (vm[0], vm[0])
    elif "--and-mark" in opts:
        vm = parse_mark(opts["--and-mark"])
        value_mask = None if vm is None else (0, ~vm[0] & ALL_ONES)
    elif "--xor-mark" in opts:
        vm = parse_mark(opts["--xor-mark"])
        value_mask = None if vm is None else (vm[0], 0)
    if value_mask is not None:
        mode = "xset" if name == "CONNMARK" else ""
        return Target("mark" if name == "MARK" else "connmark", name, mark_value=value_mask[0],
                      mark_mask=value_mask[1], connmark_mode=mode)
    if name == "CONNMARK" and ("--save-mark" in opts or "--restore-mark" in opts):
        try:
            both = int(opts["--mask"], 0) if opts.get("--mask") else ALL_ONES
            nf = int(opts["--nfmask"], 0) if opts.get("--nfmask") else both
            ct = int(opts["--ctmask"], 0) if opts.get("--ctmask") else both
        except ValueError:
            return unknown
        return Target("connmark", name, connmark_mode="save" if "--save-mark" in opts else "restore",
                      nfmask=nf, ctmask=ct)
    return unknown


def compile_rule_args(tokens: list[str], line: int) -> tuple[list[Match], Target]:
    """Compile the argument list after `-A CHAIN` (iptables-save / -S spelling)."""
    matches: list[Match] = []
    target = Target("continue", "")
    proto = ""
    module = ""
    unknown_module: list[str] | None = None
    negate = False
    i, n = 0, len(tokens)
    while i < n:
        tok = tokens[i]
        if tok == "!":
            negate = True
            i += 1
            continue
        if tok in _TOP_LEVEL:
            unknown_module = None
            if tok in _TARGET_FLAGS:
                if i + 1 >= n:
                    raise ParseError(line, f"a target after {tok}", " ".join(tokens))
                target = compile_target(tokens[i + 1], tok in _GOTO_FLAGS, tokens[i + 2:])
                break
            if tok in ("-f", "--fragment"):
                matches.append(FragmentMatch(negate))
                negate = False
                i += 1
                continue
            if i + 1 >= n:
                raise ParseError(line, f"a value after {tok}", " ".join(tokens))
            val = tokens[i + 1]
            i += 2
            if tok in ("-m", "--match"):
                if val == "comment" and i + 1 < n and tokens[i] == "--comment":
                    i += 2  # the most common module by far, and it never constrains the packet
                    negate = False
                    continue
                module = val
                if val not in _KNOWN_MODULES:
                    unknown_module = [f"-m {val}"]
                    matches.append(UnknownMatch(f"-m {val}"))
            elif tok in ("-p", "--protocol"):
                proto = val.lower()
                matches.append(_proto_match(val, negate))
            elif tok in ("-s", "--source", "--src"):
                matches.append(_addr_match(True, val, negate, "-s"))
            elif tok in ("-d", "--destination", "--dst"):
                matches.append(_addr_match(False, val, negate, "-d"))
            elif tok in ("-i", "--in-interface"):
                matches.append(IfaceMatch(val, negate))
            elif tok in ("-o", "--out-interface"):
                matches.append(UnknownMatch(f"-o {val} (an output interface on the input path)"))
            elif tok in ("-c", "--set-counters"):
                i += 1  # packets and bytes: two values
            negate = False
            continue
        if not _is_option(tok):
            raise ParseError(line, "an iptables option such as -p, -s, -m or -j", tok)
        # A module option: values run until the next option or "!".
        i += 1
        vals: list[str] = []
        if i < n and tokens[i] == "!" and i + 1 < n and not _is_option(tokens[i + 1]):
            negate = not negate  # old `--dport ! 22` spelling
            i += 1
        if tok == "--comment":
            vals.append(tokens[i] if i < n else "")
            i += 1
        else:
            while i < n and tokens[i] != "!" and not _is_option(tokens[i]):
                vals.append(tokens[i])
                i += 1
        if unknown_module is not None:
            last = matches[-1]
            assert isinstance(last, UnknownMatch)
            last.what += f" {'! ' if negate else ''}{tok} {' '.join(vals)}".rstrip()
        else:
            owner = module or proto  # `-p tcp --dport 22` loads the tcp module implicitly
            compiled = _module_option(owner, tok, vals, negate, proto)
            if compiled is not None:
                matches.append(compiled)
        negate = False
    return matches, target


# --------------------------------------------------------------------------------------------------
# Formats


_COMMENT_OPTION = re.compile(r"""-m comment --comment (?:"(?:[^"\\]|\\.)*"|'[^']*'|[^\s"']+)(?=\s|$)""")


class _Builder:
    """Collects chains and rules in input order, numbering rules per chain as iptables does."""

    def __init__(self) -> None:
        self.chains: dict[str, list[Rule]] = {}
        self.policies: dict[str, str] = {}
        # Rules that differ only in their comment (Calico, kube-proxy) share one compiled form; matches
        # are never mutated after compiling, so sharing is safe.
        self.compiled: dict[str, tuple[tuple[Match, ...], Target]] = {}

    def chain(self, name: str, policy: str | None = None) -> None:
        self.chains.setdefault(name, [])
        if policy is not None and name in BUILTIN_CHAINS:
            self.policies[name] = policy

    def add(self, chain: str, line: int, text: str, *, exact: bool, matches: tuple[Match, ...],
            target: Target, assumption: str | None = None) -> None:
        rules = self.chains.setdefault(chain, [])
        rules.append(Rule(chain, len(rules) + 1, line, text, exact, matches, target, assumption))

    def build(self, fmt: str, has_filter: bool = True, interfaces_visible: bool = True) -> Ruleset:
        return Ruleset({k: tuple(v) for k, v in self.chains.items()}, dict(self.policies), fmt,
                       has_filter, interfaces_visible)


def _add_spec_rule(b: _Builder, line_no: int, text: str) -> None:
    parts = text.split(None, 2)
    if len(parts) < 2:
        raise ParseError(line_no, "a chain name after -A", text)
    chain = parts[1]
    spec = parts[2] if len(parts) > 2 else ""
    if '"' in spec or "'" in spec or "\\" in spec:
        # Comments are what gets quoted, and they never constrain a packet: drop them before splitting.
        spec = _COMMENT_OPTION.sub("", spec)
    compiled = b.compiled.get(spec)
    if compiled is None:
        matches, target = compile_rule_args(split_args(spec, line_no), line_no)
        compiled = b.compiled[spec] = (tuple(matches), target)
    b.add(chain, line_no, text, exact=True, matches=compiled[0], target=compiled[1])


def parse_save(lines: list[str]) -> Ruleset:
    b = _Builder()
    table: str | None = None
    seen_filter = False
    for no, raw in enumerate(lines, 1):
        s = raw.strip()
        if not s or s[0] == "#":
            continue
        c = s[0]
        if c == "*":
            if table is not None:
                raise ParseError(no, f"COMMIT to close *{table} before the next table", s)
            table = s[1:].strip()
            seen_filter = seen_filter or table == "filter"
            continue
        if s == "COMMIT":
            if table is None:
                raise ParseError(no, "a table header such as *filter before COMMIT", s)
            table = None
            continue
        if table is None:
            raise ParseError(no, "a table header such as *filter", s)
        if c == "[":  # iptables-save -c: "[packets:bytes] -A ..."
            close = s.find("]")
            if close < 0:
                raise ParseError(no, "[packets:bytes] counters", s)
            s = s[close + 1:].lstrip()
            c = s[:1]
        if c == ":":
            parts = s[1:].split()
            if not parts or (len(parts) > 1 and parts[1] not in ("ACCEPT", "DROP", "-", "RETURN")):
                raise ParseError(no, ":CHAIN POLICY [packets:bytes]", s)
            if table == "filter":
                b.chain(parts[0], parts[1] if len(parts) > 1 else None)
        elif s.startswith("-A "):
            if table == "filter":
                _add_spec_rule(b, no, s)
        elif s.startswith(("-N ", "-I ", "-X", "-F", "-P ")) and table != "filter":
            continue
        else:
            raise ParseError(no, "a chain line (:CHAIN POLICY [packets:bytes]), a rule (-A CHAIN ...) or "
                             "COMMIT", s)
    if table is not None:
        raise ParseError(len(lines) + 1, f"COMMIT to close *{table}", "end of input")
    return b.build("save", has_filter=seen_filter)


def parse_spec(lines: list[str]) -> Ruleset:
    b = _Builder()
    for no, raw in enumerate(lines, 1):
        s = raw.strip()
        if not s or s[0] == "#":
            continue
        if s.startswith("-A "):
            _add_spec_rule(b, no, s)
            continue
        parts = s.split()
        if parts[0] == "-P" and len(parts) == 3 and parts[2] in ("ACCEPT", "DROP"):
            b.chain(parts[1], parts[2])
        elif parts[0] == "-N" and len(parts) == 2:
            b.chain(parts[1])
        else:
            raise ParseError(no, "an `iptables -S` line (-P CHAIN POLICY, -N CHAIN or -A CHAIN ...)", s)
    return b.build("spec")


# --- `iptables --list` ---------------------------------------------------------------------------

_CHAIN_HEADER = re.compile(
    r"Chain (\S+) \((?:policy (\w+)(?: \d+ packets, \d+ bytes)?|(\d+) references)\)$")
_COMMENT = re.compile(r"/\* (.*?) \*/")
_TARGET_INFO: Final[Mapping[str, re.Pattern[str]]] = {
    "REJECT": re.compile(r"(?:^|\s)reject-with \S+"),
    "LOG": re.compile(r"(?:^|\s)LOG (?:flags|level)"),
    "NFLOG": re.compile(r"(?:^|\s)nflog-"),
    "ULOG": re.compile(r"(?:^|\s)ULOG "),
    "MARK": re.compile(r"(?:^|\s)MARK "),
    "CONNMARK": re.compile(r"(?:^|\s)CONNMARK "),
}
_LOG_PREFIX = re.compile(r'prefix "(.*)"')
_HIDDEN_IFACE = "the rule's -i interface, which a listing without -v does not show (use -L -n -v or iptables-save)"


def _row_pattern(numbered: bool, verbose: bool) -> re.Pattern[str]:
    num = r"(?P<num>\d+)\s+" if numbered else ""
    counters = r"\S+\s+\S+\s+" if verbose else ""
    iface = r"(?P<in>\S+)\s+(?P<out>\S+)\s+" if verbose else ""
    return re.compile(
        rf"^{num}{counters}(?:(?P<target>\S+)\s+)?(?P<prot>!?\S+)\s+(?P<opt>--|-f|!f)\s+{iface}"
        r"(?P<src>\S+)\s+(?P<dst>\S+)(?:\s+(?P<rest>.*))?$")


def _neg(value: str) -> tuple[bool, str]:
    return (True, value[1:]) if value.startswith("!") else (False, value)


def _listing_addr(source: bool, value: str, spec: list[str]) -> Match | None:
    negate, value = _neg(value)
    if value in ("anywhere", "0.0.0.0/0"):
        return ConstMatch(False) if negate else None
    shown = value if "/" in value or ipv4_to_int(value) is None else f"{value}/32"
    spec += (["!"] if negate else []) + ["-s" if source else "-d", shown]
    return _addr_match(source, value, negate, "-s" if source else "-d")


def _save_quote(text: str) -> str:
    """Quote as iptables-save does, so a rebuilt rule text reads exactly like the saved one."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _listing_matches(rest: str, proto: str, spec: list[str], comments: list[str]) -> list[Match]:
    """Compile the free-text column of `iptables -L` (what each match module prints). Comments come
    in as \\x00<n> placeholders so they keep their place in the rebuilt rule text."""
    out: list[Match] = []
    toks = rest.split()
    guard = PROTOCOLS.get(proto, 0)
    i, n = 0, len(toks)
    negate = False
    while i < n:
        t = toks[i]
        nxt = toks[i + 1] if i + 1 < n else ""
        if t == "!":
            negate, i = True, i + 1
            continue
        if t[0] == "\x00":
            spec += ["-m", "comment", "--comment", _save_quote(comments[int(t[1:])])]
            i += 1
            continue
        if t in ("tcp", "udp") and nxt[:4] in ("dpt:", "spt:", "dpts", "spts", "flag", "opti"):
            pnum = PROTOCOLS[t]
            i += 1
            while i < n and toks[i][:4] in ("dpt:", "spt:", "dpts", "spts", "flag", "opti"):
                key, _, val = toks[i].partition(":")
                neg, val = _neg(val)
                if key in ("dpt", "dpts", "spt", "spts"):
                    ranges = parse_port_list(val, t)
                    if ranges is None:
                        out.append(UnknownMatch(f"{t} {toks[i]} (unknown service name)", pnum))
                    else:
                        out.append(PortMatch("d" if key[0] == "d" else "s", ranges, neg, pnum))
                        spec += ["-m", t] + (["!"] if neg else []) + [
                            "--dport" if key[0] == "d" else "--sport", val]
                elif key == "flags":
                    mask_s, _, comp_s = val.partition("/")
                    mask, comp = parse_tcp_flags(mask_s), parse_tcp_flags(comp_s)
                    if mask is None or comp is None:
                        out.append(UnknownMatch(f"tcp {toks[i]}", pnum))
                    else:
                        out.append(TcpFlagsMatch(mask, comp, neg))
                        spec += ["-m", "tcp"] + (["!"] if neg else []) + ["--tcp-flags", mask_s, comp_s]
                else:
                    out.append(UnknownMatch(f"{t} {toks[i]}", pnum))
                i += 1
            continue
        if t == "multiport" and nxt in ("dports", "sports", "ports") and i + 2 < n:
            j = i + 2
            neg = toks[j] == "!"
            j += 1 if neg else 0
            neg2, val = _neg(toks[j])
            which = {"dports": "d", "sports": "s", "ports": "either"}[nxt]
            ranges = parse_port_list(val, proto if proto in ("tcp", "udp") else "tcp")
            if ranges is None:
                out.append(UnknownMatch(f"multiport {nxt} {val} (unknown service name)", guard))
            else:
                out.append(PortMatch(which, ranges, neg or neg2, guard))
                spec += ["-m", "multiport"] + (["!"] if neg or neg2 else []) + [f"--{nxt}", val]
            i = j + 1
            continue
        if t in ("state", "ctstate") and nxt:
            states = frozenset(nxt.split(","))
            if states <= CT_STATES:
                out.append(CtStateMatch(states, negate))
                opt = "--state" if t == "state" else "--ctstate"
                spec += ["-m", "state" if t == "state" else "conntrack"] + (["!"] if negate else []) + [
                    opt, nxt]
            else:
                out.append(UnknownMatch(f"{t} {nxt}"))
            negate, i = False, i + 2
            continue
        if t == "ADDRTYPE" and nxt == "match":
            i += 2
            while i + 1 < n and toks[i] in ("src-type", "dst-type"):
                neg, val = _neg(toks[i + 1])
                types = frozenset(val.split(","))
                src = toks[i] == "src-type"
                out.append(AddrTypeMatch(src, types, neg) if types <= ADDR_TYPES
                           else UnknownMatch(f"addrtype {toks[i]} {val}"))
                spec += ["-m", "addrtype"] + (["!"] if neg else []) + [f"--{toks[i]}", val]
                i += 2
            while i < n and toks[i] in ("limit-in", "limit-out"):
                i += 1
            continue
        if t in ("mark", "connmark") and nxt == "match":
            j = i + 2
            neg = j < n and toks[j] == "!"
            j += 1 if neg else 0
            mv = parse_mark(toks[j]) if j < n else None
            if mv is None:
                out.append(UnknownMatch(" ".join(toks[i:j + 1])))
            else:
                out.append(MarkMatch(t == "connmark", mv[0], mv[1], neg))
                spec += ["-m", t] + (["!"] if neg else []) + ["--mark", toks[j]]
            i = j + 1
            continue
        if t in ("source", "destination") and toks[i + 1:i + 3] == ["IP", "range"]:
            j = i + 3
            neg = j < n and toks[j] == "!"
            j += 1 if neg else 0
            lo_s, _, hi_s = (toks[j] if j < n else "").partition("-")
            lo, hi = ipv4_to_int(lo_s), ipv4_to_int(hi_s)
            if lo is None or hi is None:
                out.append(UnknownMatch(" ".join(toks[i:j + 1])))
            else:
                out.append(RangeAddrMatch(t == "source", lo, hi, neg))
                spec += ["-m", "iprange"] + (["!"] if neg else []) + [f"--{t[:3]}-range", toks[j]]
            i = j + 1
            continue
        if t == "PKTTYPE" and nxt == "=" and i + 2 < n:
            neg, val = _neg(toks[i + 2])
            out.append(ConstMatch(val.lower() == "unicast", neg))
            spec += ["-m", "pkttype"] + (["!"] if neg else []) + ["--pkt-type", val]
            i += 3
            continue
        # Anything else (match-set, limit, socket, icmp types...) cannot be decided: keep it whole.
        what = " ".join(f"/* {comments[int(x[1:])]} */" if x[0] == "\x00" else x for x in toks[i:])
        out.append(UnknownMatch(f"{'! ' if negate else ''}{what}", guard if t in ("icmp", "icmptype") else 0))
        spec += ["[listing:", what + "]"]
        break
    return out


def _listing_target(target: str, goto: bool, info: str) -> Target:
    """Targets as `iptables -L` prints them, with their info text (reject-with, MARK set ...)."""
    toks = info.split()
    if target == "REJECT":
        return Target("reject", target, reject_with=toks[1] if len(toks) > 1 else "icmp-port-unreachable")
    if target in ("MARK", "CONNMARK") and toks:
        return _listing_mark_target(target, toks[1:])
    return compile_target(target, goto, [])


def _listing_mark_target(target: str, toks: list[str]) -> Target:
    unknown = Target("unknown", target, reason=f"{target} {' '.join(toks)} (unsupported form)")
    op = toks[0] if toks else ""
    arg = toks[1] if len(toks) > 1 else ""
    vm = parse_mark(arg) if arg else None
    if op in ("set", "xset", "or", "and", "xor") and vm is not None:
        value, mask = vm
        if op == "set":
            mask = ALL_ONES if mask == ALL_ONES else value | mask
        elif op == "or":
            mask = value
        elif op == "and":
            value, mask = 0, ~value & ALL_ONES
        elif op == "xor":
            mask = 0
        kind = "mark" if target == "MARK" else "connmark"
        return Target(kind, target, mark_value=value, mark_mask=mask,
                      connmark_mode="xset" if kind == "connmark" else "")
    if target == "CONNMARK" and op in ("save", "restore"):
        masks = dict(zip(toks[1::2], toks[2::2], strict=False))
        try:
            both = int(masks["mask"], 0) if "mask" in masks else ALL_ONES
            nf = int(masks["nfmask"], 0) if "nfmask" in masks else both
            ct = int(masks["ctmask"], 0) if "ctmask" in masks else both
        except ValueError:
            return unknown
        return Target("connmark", target, connmark_mode=op, nfmask=nf, ctmask=ct)
    return unknown


def parse_listing(lines: list[str]) -> Ruleset:
    b = _Builder()
    chain: str | None = None
    pattern: re.Pattern[str] | None = None
    verbose_seen = True
    awaiting_header = False
    for no, raw in enumerate(lines, 1):
        s = raw.strip()
        if not s or s[0] == "#":
            continue
        if s.startswith("Chain "):
            m = _CHAIN_HEADER.match(s)
            if m is None:
                raise ParseError(no, "a chain header such as `Chain INPUT (policy ACCEPT)` or "
                                 "`Chain NAME (1 references)`", s)
            chain = m.group(1)
            b.chain(chain, m.group(2))
            awaiting_header = True
            continue
        if chain is None:
            raise ParseError(no, "a `Chain NAME (...)` header", s)
        if awaiting_header:
            cols = s.split()
            if not {"target", "prot", "opt", "source", "destination"} <= set(cols):
                raise ParseError(no, "the column header `num target prot opt source destination`", s)
            verbose = "in" in cols
            verbose_seen = verbose_seen and verbose
            pattern = _row_pattern(cols[0] == "num", verbose)
            awaiting_header = False
            continue
        assert pattern is not None
        row = pattern.match(s)
        if row is None:
            raise ParseError(no, "a rule row (num target prot opt source destination [matches])", s)
        _add_listing_row(b, chain, no, row, verbose="in" in pattern.groupindex)
    return b.build("listing", interfaces_visible=verbose_seen)


def _add_listing_row(b: _Builder, chain: str, no: int, row: re.Match[str], verbose: bool) -> None:
    target = row.group("target") or ""
    rest = row.group("rest") or ""
    comments: list[str] = []

    def _placeholder(found: re.Match[str]) -> str:
        comments.append(found.group(1))
        return f" \x00{len(comments) - 1} "

    rest = _COMMENT.sub(_placeholder, rest)
    goto = "[goto]" in rest
    if goto:
        rest = rest.replace("[goto]", " ")
    info = ""
    info_re = _TARGET_INFO.get(target)
    if info_re is not None:
        found = info_re.search(rest)
        if found is not None:
            info = rest[found.start():].strip()
            rest = rest[:found.start()]
    # Built in iptables-save's order (-s -d -i -o -p -f, then modules) so the text reads like one.
    spec: list[str] = []
    matches: list[Match] = []
    for m in (_listing_addr(True, row.group("src"), spec), _listing_addr(False, row.group("dst"), spec)):
        if m is not None:
            matches.append(m)
    assumption: str | None = None
    if verbose:
        for col, flag in (("in", "-i"), ("out", "-o")):
            neg_i, name = _neg(row.group(col))
            if name not in ("*", "any"):
                spec += (["!"] if neg_i else []) + [flag, name]
                matches.append(IfaceMatch(name, neg_i) if flag == "-i" else
                               UnknownMatch(f"-o {name} (an output interface on the input path)"))
    elif target in ("DROP", "REJECT"):
        # A DROP shown in the listing is taken as unconditional on interface (the guide's own reading),
        # and the verdict says so; anything that could let the packet through instead is not assumed.
        assumption = "interfaces are hidden in a listing without -v; assumed the rule applies on any interface"
    elif target not in _NO_EFFECT_TARGETS:
        matches.append(UnknownMatch(_HIDDEN_IFACE))
    neg_p, prot = _neg(row.group("prot"))
    if prot not in ("all", "0"):
        matches.append(_proto_match(prot, neg_p))
        spec += (["!"] if neg_p else []) + ["-p", _PROTO_NAMES.get(prot, prot)]
    opt = row.group("opt")
    if opt != "--":
        matches.append(FragmentMatch(opt == "!f"))
        spec += (["!"] if opt == "!f" else []) + ["-f"]
    matches += _listing_matches(rest.strip(), prot.lower(), spec, comments)
    tgt = _listing_target(target, goto, info) if target else Target("continue", "")
    if target:
        spec += ["-g" if goto else "-j", target]
        if tgt.reject_with:
            spec += ["--reject-with", tgt.reject_with]
        prefix = _LOG_PREFIX.search(info) if target == "LOG" else None
        if prefix is not None:
            spec += ["--log-prefix", _save_quote(prefix.group(1))]
    text = " ".join(["-A", chain, *spec])
    b.add(chain, no, text, exact=False, matches=tuple(matches), target=tgt, assumption=assumption)


# --------------------------------------------------------------------------------------------------
# Entry point

_FORMATS: Final[Mapping[str, Callable[[list[str]], Ruleset]]] = {
    "save": parse_save, "spec": parse_spec, "listing": parse_listing,
}


def detect_format(lines: list[str]) -> str:
    """Which of the three outputs this is, from its first meaningful line."""
    for no, raw in enumerate(lines, 1):
        s = raw.strip()
        if not s:
            continue
        if s.startswith("# Generated by"):
            return "save"
        if s[0] == "#":
            continue
        if s[0] in "*:":
            return "save"
        if s.startswith("Chain "):
            return "listing"
        if s.startswith(("-P ", "-N ", "-A ")):
            return "spec"
        raise ParseError(no, "iptables-save, `iptables -S` or `iptables --list` output", s)
    warning = next((n for n, line in enumerate(lines, 1) if _LEGACY_WARNING in line), None)
    if warning is not None:
        raise ParseError(warning, "rules (this output only says the rules are in iptables-legacy tables: "
                         "use iptables-legacy-save)", lines[warning - 1].strip())
    raise ParseError(1, "iptables-save, `iptables -S` or `iptables --list` output", "empty input")


_LEGACY_WARNING = "iptables-legacy tables present"
LEGACY_NOTE = ("iptables-legacy tables are also present on the node and are not in this output; rules there "
               "were not checked (iptables-legacy-save shows them)")


def parse_iptables(text: str) -> Ruleset:
    """Parse any of the three outputs (format auto-detected) into the filter table's rules.

    iptables-nft tools warn when legacy tables exist too: the kernel runs both, so the warning is kept
    as a note that an `accept` cannot vouch for rules we were not shown."""
    lines = text.splitlines()
    ruleset = _FORMATS[detect_format(lines)](lines)
    if _LEGACY_WARNING in text:
        ruleset = replace(ruleset, notes=(*ruleset.notes, LEGACY_NOTE))
    return ruleset
