"""ufw-blocks-10250: UFW is active on a node and refuses TCP 10250 from the VNet.

Read from `ufw status verbose` as the probe captured it, so the verdict is the one ufw itself would apply:
first matching rule in order, else the default incoming policy. `ufw status` does not show the rules UFW
loads from /etc/ufw/before.rules and after.rules (nor rules hand-added to its chains), so when the status
lets the connection in, the same probe's iptables rules must agree before the node counts as clear: a
refusal inside UFW's chains makes this cause detected, and unreadable rules make it unknown.
"""

from __future__ import annotations

from functools import lru_cache

from shared.causes.base import Cause
from shared.causes.common import (
    KUBELET_PORT,
    NodeOutcome,
    always_applicable,
    evaluate_probed_nodes,
)
from shared.causes.node_sources import from_every_source, tunnel_sources
from shared.model import CauseId, CauseResult, Status
from shared.netrules import ufw_chains
from shared.netrules.errors import ParseError
from shared.netrules.iptables import Packet, Ruleset, evaluate, parse_iptables, removal_command
from shared.netrules.ufw import UfwVerdict, decide, parse_ufw_status, remediation, subject
from shared.snapshot import ClusterSnapshot, Node, NodeProbe, Unavailable


def _evaluate(snapshot: ClusterSnapshot) -> CauseResult:
    return evaluate_probed_nodes(CAUSE, snapshot, _node_outcome, problem=f"UFW refuses TCP {KUBELET_PORT}",
                                 not_applicable="ufw is not installed on any probed node.")


def _node_outcome(snapshot: ClusterSnapshot, node: Node, probe: NodeProbe | Unavailable) -> NodeOutcome:
    if isinstance(probe, Unavailable):
        return NodeOutcome(node.name, Status.UNKNOWN, probe.reason)
    if probe.ufw_error is not None:
        return NodeOutcome(node.name, Status.UNKNOWN, probe.ufw_error)
    if probe.ufw_status is None:
        return NodeOutcome(node.name, Status.NOT_APPLICABLE, "ufw is not installed")
    sources, guessed = tunnel_sources(snapshot, node)
    if not sources:
        return NodeOutcome(node.name, Status.UNKNOWN, "no VNet source address to test from")
    try:
        status = parse_ufw_status(probe.ufw_status)
    except ParseError as exc:
        return NodeOutcome(node.name, Status.UNKNOWN, f"could not read `ufw status verbose`: {exc}")
    vnet = snapshot.address_context.vnet_prefixes
    allow_from = vnet[0] if vnet else None

    def from_source(source: str) -> NodeOutcome:
        verdict = decide(status, source, KUBELET_PORT)
        outcome = ufw_outcome(node.name, verdict, source, allow_from=allow_from)
        if outcome.status is Status.CLEAR and verdict.active:
            return _hidden_rules_outcome(node, probe, source, outcome, allow_from)
        return outcome

    return from_every_source(node.name, sources, guessed, from_source)


def _hidden_rules_outcome(node: Node, probe: NodeProbe, source: str, status_says: NodeOutcome,
                          allow_from: str | None) -> NodeOutcome:
    """`ufw status` lets the connection in: do UFW's chains in the kernel agree (before/after.rules)?"""
    hidden = "rules in /etc/ufw/before.rules and after.rules are not shown by `ufw status`"
    if probe.iptables_save is None:
        why = probe.iptables_error or "the probe found no iptables-save on the node"
        return NodeOutcome(node.name, Status.UNKNOWN,
                           f"{status_says.detail}, but {hidden} and the iptables rules that would show them could "
                           f"not be read: {why}")
    if node.private_ip is None:
        return NodeOutcome(node.name, Status.UNKNOWN, "the node has no private IP to test UFW's chains against")
    try:
        kernel = evaluate(_parsed(probe.iptables_save),
                          Packet(source_ip=source, destination_ip=node.private_ip, destination_port=KUBELET_PORT))
    except ParseError as exc:
        return NodeOutcome(node.name, Status.UNKNOWN,
                           f"{status_says.detail}, but {hidden} and the iptables rules could not be read: {exc}")
    if kernel.verdict == "unknown":
        return NodeOutcome(node.name, Status.UNKNOWN,
                           f"{status_says.detail}, but {hidden} and the kernel's INPUT path could not be decided: "
                           f"{kernel.reason}")
    if kernel.verdict == "accept" or not kernel.in_ufw_chain:
        return status_says  # accepted, or refused outside UFW (iptables-blocks-10250 reports that)
    rule = kernel.rule
    origin = ufw_chains.source_file(rule.chain if rule else None)
    where = f"{rule.chain} rule {rule.index} '{rule.text}'" if rule else "the INPUT policy"
    return NodeOutcome(
        node.name, Status.DETECTED,
        f"`ufw status` allows TCP {KUBELET_PORT} from {source}, but UFW's own chains "
        f"{'drop' if kernel.verdict == 'drop' else 'reject'} it: {where}, most likely from {origin}, which "
        "`ufw status` does not show",
        ufw_chains.remediation(kernel, removal_command(kernel), allow_from=allow_from or source, port=KUBELET_PORT),
        f"ufw ({origin}): {' '.join(rule.text.split())}" if rule else f"ufw ({origin}): INPUT policy",
    )


@lru_cache(maxsize=8)
def _parsed(iptables_save: str) -> Ruleset:
    """One parse per node's rules, however many tunnel sources the node is checked from."""
    return parse_iptables(iptables_save)


def ufw_outcome(node: str, verdict: UfwVerdict, source: str, *, port: int = KUBELET_PORT,
                allow_from: str | None = None) -> NodeOutcome:
    """Map a ufw decision to an outcome (shared with `analyze ufw`); a refusal's subject is the rule."""
    rule = verdict.rule
    where = f"rule {rule.number} '{rule.raw.strip()}'" if rule is not None else "the default incoming policy"
    if not verdict.active:
        return NodeOutcome(node, Status.CLEAR, "ufw is inactive")
    blocked = verdict.blocked
    if blocked is None:
        return NodeOutcome(node, Status.UNKNOWN, verdict.reason or "ufw's decision could not be determined")
    if not blocked:
        return NodeOutcome(node, Status.CLEAR, f"ufw is active and allows TCP {port} from {source} ({where})")
    verb = "rejects" if verdict.decision == "reject" else "denies"
    return NodeOutcome(
        node, Status.DETECTED,
        f"ufw is active and {verb} TCP {port} from {source} ({where})",
        remediation(verdict, allow_from),
        subject(verdict),
    )


CAUSE = Cause(
    id=CauseId.UFW,
    title="UFW on a node blocks TCP 10250",
    description=(
        "UFW is active on a node and its first matching rule, or its default incoming policy, refuses TCP 10250 "
        "from the VNet."
    ),
    not_applicable=always_applicable,
    evaluate=_evaluate,
)
