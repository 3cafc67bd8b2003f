"""iptables-blocks-10250: the node's netfilter INPUT path drops or rejects TCP 10250 from the VNet.

A refusal inside UFW's own chains is left to ufw-blocks-10250 only when `ufw status` on the same node
explains it (same effect, from a user rule or the default policy). Rules in /etc/ufw/before.rules or
after.rules, or hand-added to a `ufw-*` chain, are invisible to `ufw status`: they are reported here, naming
the chain, the rule and the file it most likely comes from.
"""

from __future__ import annotations

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
from shared.netrules.iptables import (
    IptablesVerdict,
    Packet,
    evaluate,
    parse_iptables,
    removal_command,
    rule_subject,
)
from shared.netrules.ufw import decide, parse_ufw_status
from shared.snapshot import ClusterSnapshot, Node, NodeProbe, Unavailable


def _evaluate(snapshot: ClusterSnapshot) -> CauseResult:
    return evaluate_probed_nodes(CAUSE, snapshot, _node_outcome,
                                 problem=f"iptables drops or rejects TCP {KUBELET_PORT}",
                                 not_applicable="no probed node has iptables.")


def _node_outcome(snapshot: ClusterSnapshot, node: Node, probe: NodeProbe | Unavailable) -> NodeOutcome:
    if isinstance(probe, Unavailable):
        return NodeOutcome(node.name, Status.UNKNOWN, probe.reason)
    if probe.iptables_save is None:
        return NodeOutcome(node.name, Status.UNKNOWN,
                           probe.iptables_error or "the probe found no iptables on the node")
    sources, guessed = tunnel_sources(snapshot, node)
    destination = node.private_ip
    if not sources or destination is None:
        return NodeOutcome(node.name, Status.UNKNOWN, "no VNet source address to test from")
    try:
        ruleset = parse_iptables(probe.iptables_save)
    except ParseError as exc:
        return NodeOutcome(node.name, Status.UNKNOWN, f"could not read the iptables rules: {exc}")
    vnet = snapshot.address_context.vnet_prefixes

    def from_source(source: str) -> NodeOutcome:
        verdict = evaluate(ruleset, Packet(source_ip=source, destination_ip=destination,
                                           destination_port=KUBELET_PORT))
        return iptables_outcome(node.name, verdict, source, ufw_explains=_ufw_status_explains(probe, source, verdict),
                                allow_from=vnet[0] if vnet else None)

    return from_every_source(node.name, sources, guessed, from_source)


def _ufw_status_explains(probe: NodeProbe, source: str, verdict: IptablesVerdict) -> str | None:
    """Why `ufw status` on this node accounts for a refusal in UFW's chains, or None when it does not."""
    if not verdict.in_ufw_chain or verdict.verdict not in ("drop", "reject") or probe.ufw_status is None:
        return None
    try:
        status_verdict = decide(parse_ufw_status(probe.ufw_status), source, KUBELET_PORT)
    except ParseError:
        return None
    if not ufw_chains.status_explains(status_verdict, verdict):
        return None
    return status_verdict.reason


def iptables_outcome(node: str, verdict: IptablesVerdict, source: str, *, port: int = KUBELET_PORT,
                     ufw_explains: str | None = None, allow_from: str | None = None) -> NodeOutcome:
    """Map an evaluator verdict to an outcome (shared with `analyze iptables`, where no ufw status exists).

    `ufw_explains` is `ufw status`'s own account of the same refusal; only then is a refusal inside UFW's
    chains left to ufw-blocks-10250.
    """
    path = " -> ".join(verdict.chain_path)
    rule = verdict.rule
    if verdict.verdict == "unknown":
        return NodeOutcome(node, Status.UNKNOWN, verdict.reason or "the INPUT path could not be evaluated")
    if verdict.verdict == "accept":
        return NodeOutcome(node, Status.CLEAR, f"INPUT accepts TCP {port} from {source} (via {path})")
    where = (f"rule {rule.index} of {rule.chain}: {rule.text}" if rule is not None
             else f"the {path.split(' -> ')[-1] or 'INPUT'} policy")
    if verdict.in_ufw_chain and ufw_explains is not None:
        return NodeOutcome(node, Status.CLEAR,
                           f"TCP {port} is refused inside UFW's chains ({where}) as `ufw status` says "
                           f"({ufw_explains}); reported under ufw-blocks-10250")
    line = f" (INPUT line {verdict.input_line})" if verdict.input_line is not None else ""
    fix = removal_command(verdict)
    if verdict.in_ufw_chain:
        origin = ufw_chains.source_file(rule.chain if rule else None)
        return NodeOutcome(
            node, Status.DETECTED,
            f"{verdict.verdict.upper()} for TCP {port} from {source} inside UFW's chain "
            f"{rule.chain if rule else 'INPUT (policy)'} by {where}{line}; `ufw status` does not show it; most "
            f"likely from {origin}; path {path}",
            ufw_chains.remediation(verdict, fix, allow_from=allow_from or source, port=port),
            rule_subject(verdict),
        )
    return NodeOutcome(
        node, Status.DETECTED,
        f"{verdict.verdict.upper()} for TCP {port} from {source} by {where}{line}; path {path}",
        (f"sudo {fix}",) if fix else (
            f"sudo iptables --insert INPUT 1 --protocol tcp --source {allow_from or source} --dport {port} "
            "--jump ACCEPT",
        ),
        rule_subject(verdict),
    )


CAUSE = Cause(
    id=CauseId.IPTABLES,
    title="iptables on a node drops or rejects TCP 10250",
    description=(
        "The node's netfilter INPUT path (following jumps into user chains) ends in DROP or REJECT for TCP 10250 "
        "from the VNet."
    ),
    not_applicable=always_applicable,
    evaluate=_evaluate,
)
