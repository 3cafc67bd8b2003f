"""Walk the filter INPUT chain for one new TCP connection the way netfilter does.

Semantics follow the kernel's rule traversal (ipt_do_table / nft): `-j CHAIN` pushes a return point,
`-g CHAIN` does not, so a RETURN (or running off the end) of a goto'd chain resumes after the rule that
called the chain which did the goto, and with nothing left on the stack the INPUT policy decides.
MARK/CONNMARK targets are tracked, because a later `-m mark` on a fresh connection is decidable.

When a rule's matches cannot be decided offline (an ipset, a rate limit...) the walk forks: both the
"matches" and "does not match" continuations are explored. Agreement gives a verdict; disagreement
gives `unknown`, naming the rule and both outcomes, so nobody acts on a guess.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field, replace
from typing import Final, Literal

from shared.netrules.iptables_parse import (
    ALL_ONES,
    PROTOCOLS,
    PacketView,
    Rule,
    Ruleset,
    ipv4_to_int,
)

VerdictKind = Literal["accept", "drop", "reject", "unknown"]
UFW_CHAIN_PREFIXES: Final = ("ufw-", "ufw6-")
_MAX_FORKS: Final = 256
_MAX_STEPS: Final = 2_000_000
_MAX_DEPTH: Final = 64  # the kernel refuses deeper jump nesting anyway


@dataclass(frozen=True)
class Packet:
    """A new inbound connection. `source_port` None means "an ephemeral port" (32768-60999);
    `local_addresses` None treats the destination as one of the node's own addresses (INPUT)."""

    source_ip: str
    destination_ip: str
    destination_port: int = 10250
    protocol: str = "tcp"
    in_interface: str = "eth0"
    source_port: int | None = None
    ct_state: str = "NEW"
    local_addresses: frozenset[str] | None = None


@dataclass(frozen=True)
class DecidingRule:
    """`text` is the rule in `-A CHAIN ...` form; `args` the exact spec (None when rebuilt from a
    listing, where only the line number identifies the rule reliably)."""

    chain: str
    index: int
    text: str
    args: tuple[str, ...] | None = None


@dataclass(frozen=True)
class IptablesVerdict:
    verdict: VerdictKind
    rule: DecidingRule | None
    chain_path: tuple[str, ...]
    input_line: int | None
    reason: str | None
    in_ufw_chain: bool
    reject_with: str | None = None
    assumptions: tuple[str, ...] = field(default=())
    possible: tuple[str, ...] = field(default=())  # for unknown: the verdicts it could turn out to be


def removal_command(verdict: IptablesVerdict) -> str | None:
    """The command that deletes the rule that blocked the connection, or None if no rule did."""
    rule = verdict.rule
    if verdict.verdict not in ("drop", "reject") or rule is None:
        return None
    if rule.chain == "INPUT":
        return f"iptables --delete INPUT {rule.index}"
    if rule.args is not None:
        return f"iptables -D {shlex.quote(rule.chain)} {shlex.join(rule.args)}".rstrip()
    return f"iptables -D {shlex.quote(rule.chain)} {rule.index}"


def rule_subject(verdict: IptablesVerdict) -> str | None:
    """What to fix, identical on every node that carries the same rule: the deciding rule in `-A CHAIN ...`
    form (no line number, no counters) or the INPUT policy. None when nothing refuses the connection."""
    if verdict.verdict not in ("drop", "reject"):
        return None
    if verdict.rule is None:
        return f"iptables: INPUT policy {verdict.verdict.upper()}"
    return f"iptables: {' '.join(verdict.rule.text.split())}"


def _addr_type(ip: str, value: int, local: frozenset[str] | None, assume_local: bool) -> str:
    if (value >> 24) == 127 or (local is not None and ip in local) or (local is None and assume_local):
        return "LOCAL"
    if (value >> 28) == 0xE:
        return "MULTICAST"
    if value == ALL_ONES:
        return "BROADCAST"
    return "UNICAST"


def packet_view(packet: Packet) -> PacketView:
    src, dst = ipv4_to_int(packet.source_ip), ipv4_to_int(packet.destination_ip)
    if src is None or dst is None:
        raise ValueError(f"not IPv4 addresses: {packet.source_ip!r} -> {packet.destination_ip!r}")
    proto = PROTOCOLS.get(packet.protocol.lower())
    if proto is None:
        raise ValueError(f"unknown protocol {packet.protocol!r}")
    return PacketView(
        src=src, dst=dst, dport=packet.destination_port, sport=packet.source_port, proto=proto,
        iface=packet.in_interface, ct_state=packet.ct_state.upper(),
        src_type=_addr_type(packet.source_ip, src, packet.local_addresses, assume_local=False),
        dst_type=_addr_type(packet.destination_ip, dst, packet.local_addresses, assume_local=True),
    )


def _outcomes(verdict: IptablesVerdict) -> tuple[str, ...]:
    return verdict.possible if verdict.verdict == "unknown" else (verdict.verdict,)


class _State:
    """Where the walk is: current chain and position, return stack, marks. Copied at each fork."""

    __slots__ = ("assumptions", "chain", "ctmark", "idx", "input_line", "mark", "path", "stack")

    def __init__(self) -> None:
        self.chain = "INPUT"
        self.idx = 0
        self.stack: list[tuple[str, int, tuple[str, ...]]] = []
        self.path: tuple[str, ...] = ("INPUT",)
        self.mark = 0
        self.ctmark = 0
        self.input_line: int | None = None
        self.assumptions: tuple[str, ...] = ()

    def copy(self) -> _State:
        other = _State()
        other.chain, other.idx, other.stack, other.path = self.chain, self.idx, list(self.stack), self.path
        other.mark, other.ctmark, other.input_line = self.mark, self.ctmark, self.input_line
        other.assumptions = self.assumptions
        return other


def _is_ufw(chain: str) -> bool:
    return chain.startswith(UFW_CHAIN_PREFIXES)


class _Walker:
    def __init__(self, ruleset: Ruleset, view: PacketView) -> None:
        self.rs = ruleset
        self.p = view
        self.forks = 0
        self.steps = 0
        # Forked walks often reconverge (both outcomes of an ipset jump come back to the same INPUT rule
        # with the same marks); remembering each fork point's result keeps that linear, not 2^n.
        self.memo: dict[tuple[object, ...], IptablesVerdict] = {}
        # UFW writes the INPUT policy itself (`ufw default deny incoming`), so when its chains are
        # hooked into INPUT a policy decision is UFW's, not a stray iptables rule's.
        self.ufw_owns_policy = any(_is_ufw(r.target.name) for r in ruleset.chains.get("INPUT", ()))

    def _verdict(self, kind: VerdictKind, st: _State, rule: Rule | None, reason: str | None = None,
                 reject_with: str | None = None) -> IptablesVerdict:
        assumptions = st.assumptions
        if rule is not None and rule.assumption and kind in ("drop", "reject"):
            assumptions = (*assumptions, rule.assumption)
        return IptablesVerdict(
            verdict=kind,
            rule=None if rule is None else DecidingRule(rule.chain, rule.index, rule.text, rule.args),
            chain_path=st.path,
            input_line=st.input_line if rule is not None else None,
            reason=reason,
            in_ufw_chain=_is_ufw(rule.chain) if rule is not None else self.ufw_owns_policy,
            reject_with=reject_with,
            assumptions=tuple(dict.fromkeys(assumptions)),
        )

    def _policy(self, st: _State) -> IptablesVerdict:
        st.chain, st.path = "INPUT", ("INPUT",)
        policy = self.rs.policies.get("INPUT")
        if policy == "ACCEPT":
            return self._verdict("accept", st, None, "INPUT chain policy ACCEPT")
        if policy == "DROP":
            return self._verdict("drop", st, None, "INPUT chain policy DROP")
        return self._verdict("unknown", st, None, "the INPUT chain's policy is not in the input "
                             "(output truncated?)")

    def _leave_chain(self, st: _State) -> IptablesVerdict | None:
        if not st.stack:
            return self._policy(st)
        st.chain, st.idx, st.path = st.stack.pop()
        return None

    def _apply(self, st: _State, rule: Rule) -> IptablesVerdict | None:
        """Run a matching rule's target; a verdict ends the walk, None continues from `st`."""
        t = rule.target
        kind = t.kind
        if kind == "continue":
            return None
        if kind == "accept":
            return self._verdict("accept", st, rule)
        if kind == "drop":
            return self._verdict("drop", st, rule)
        if kind == "reject":
            return self._verdict("reject", st, rule, reject_with=t.reject_with)
        if kind == "return":
            return self._leave_chain(st)
        if kind == "mark":
            st.mark = ((st.mark & ~t.mark_mask) ^ t.mark_value) & ALL_ONES
            return None
        if kind == "connmark":
            if t.connmark_mode == "save":
                st.ctmark = ((st.ctmark & ~t.ctmask) ^ (st.mark & t.nfmask)) & ALL_ONES
            elif t.connmark_mode == "restore":
                st.mark = ((st.mark & ~t.nfmask) ^ (st.ctmark & t.ctmask)) & ALL_ONES
            else:
                st.ctmark = ((st.ctmark & ~t.mark_mask) ^ t.mark_value) & ALL_ONES
            return None
        if kind == "call":
            if t.name not in self.rs.chains or t.name in ("INPUT", "FORWARD", "OUTPUT"):
                return self._verdict("unknown", st, rule, f"target {t.name} is neither a chain in the "
                                     "input nor a target this checker understands")
            if not t.goto:
                if len(st.stack) >= _MAX_DEPTH:
                    return self._verdict("unknown", st, rule, "jumps nest too deep (a loop?)")
                st.stack.append((st.chain, st.idx, st.path))
            st.chain, st.idx, st.path = t.name, 0, (*st.path, t.name)
            return None
        return self._verdict("unknown", st, rule, t.reason or f"target {t.name} is not understood")

    def run(self, st: _State) -> IptablesVerdict:
        chains = self.rs.chains
        p = self.p
        while True:
            rules = chains[st.chain]
            if st.idx >= len(rules):
                left = self._leave_chain(st)
                if left is not None:
                    return left
                continue
            rule = rules[st.idx]
            st.idx += 1
            if st.chain == "INPUT":
                st.input_line = rule.index
            self.steps += 1
            if self.steps > _MAX_STEPS:
                return self._verdict("unknown", st, rule, "rule walk did not finish (a loop?)")
            hit = rule.test(p, st.mark, st.ctmark)
            if hit is False:
                continue
            if hit is None:
                if rule.target.kind == "continue":
                    continue  # a LOG/NFLOG behind an undecidable match changes nothing either way
                return self._fork(st, rule)
            out = self._apply(st, rule)
            if out is not None:
                return out

    def _fork(self, st: _State, rule: Rule) -> IptablesVerdict:
        key = (st.chain, st.idx, tuple(st.stack), st.path, st.mark, st.ctmark, st.input_line, st.assumptions)
        known = self.memo.get(key)
        if known is None:
            known = self.memo[key] = self._fork_uncached(st, rule)
        return known

    def _fork_uncached(self, st: _State, rule: Rule) -> IptablesVerdict:
        what = "; ".join(rule.undecided(self.p, st.mark, st.ctmark)) or "a match"
        if self.forks >= _MAX_FORKS:
            return self._verdict("unknown", st, rule, f"too many undecidable matches (last: {what})")
        self.forks += 1
        at = st.copy()
        hit_state = st.copy()
        hit = self._apply(hit_state, rule) or self.run(hit_state)
        miss = self.run(st)
        if hit.verdict == miss.verdict != "unknown":
            if (hit.rule, hit.input_line) == (miss.rule, miss.input_line):
                return hit
            other = f"{miss.rule.chain} rule {miss.rule.index}" if miss.rule else "the INPUT policy"
            note = (f"{hit.reason + '; ' if hit.reason else ''}also {miss.verdict} by {other} if "
                    f"`{what}` does not match")
            return replace(hit, reason=note)
        possible = tuple(sorted({*_outcomes(hit), *_outcomes(miss)}))
        detail = f"{rule.chain} rule {rule.index} (`{rule.text}`) depends on `{what}`, which cannot be " \
                 f"decided offline; possible outcomes: {', '.join(possible) or 'none decidable'}"
        unexplored = next((v.reason for v in (hit, miss) if v.verdict == "unknown" and not v.possible), None)
        if unexplored:
            detail += f"; other paths could not be followed: {unexplored}"
        return replace(self._verdict("unknown", at, rule, detail), possible=possible)


def evaluate(ruleset: Ruleset, packet: Packet) -> IptablesVerdict:
    """What the node's filter INPUT path does with `packet` (the first packet of a new connection)."""
    view = packet_view(packet)
    walker = _Walker(ruleset, view)
    st = _State()
    if not ruleset.has_filter:
        return walker._verdict("unknown", st, None, "the input has no *filter table")
    if "INPUT" not in ruleset.chains:
        return walker._verdict("unknown", st, None, "the INPUT chain is not in the input (output truncated?)")
    verdict = walker.run(st)
    if verdict.verdict == "accept" and ruleset.notes:
        verdict = replace(verdict, assumptions=(*verdict.assumptions, *ruleset.notes))
    return verdict
