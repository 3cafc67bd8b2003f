"""iptables-blocks-10250: the node's netfilter INPUT path drops or rejects TCP 10250 from the VNet.

Decisions taken inside UFW's own chains are UFW's problem and are reported under ufw-blocks-10250, so the
same block is never reported twice with two different fixes.
"""

from __future__ import annotations

from shared.causes.base import Cause
from shared.causes.common import (
    KUBELET_PORT,
    NodeOutcome,
    always_applicable,
    evaluate_probed_nodes,
    vnet_source_ip,
)
from shared.model import CauseId, CauseResult, Status
from shared.netrules.errors import ParseError
from shared.netrules.iptables import IptablesVerdict, Packet, evaluate, parse_iptables, removal_command
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
    source = vnet_source_ip(snapshot, node)
    if source is None or node.private_ip is None:
        return NodeOutcome(node.name, Status.UNKNOWN, "no VNet source address to test from")
    try:
        ruleset = parse_iptables(probe.iptables_save)
    except ParseError as exc:
        return NodeOutcome(node.name, Status.UNKNOWN, f"could not read the iptables rules: {exc}")
    verdict = evaluate(ruleset, Packet(source_ip=source, destination_ip=node.private_ip, destination_port=KUBELET_PORT))
    return iptables_outcome(node.name, verdict, source)


def iptables_outcome(subject: str, verdict: IptablesVerdict, source: str, *, port: int = KUBELET_PORT) -> NodeOutcome:
    """Map an evaluator verdict to an outcome (shared with `analyze iptables`)."""
    path = " -> ".join(verdict.chain_path)
    rule = verdict.rule
    if verdict.verdict == "unknown":
        return NodeOutcome(subject, Status.UNKNOWN, verdict.reason or "the INPUT path could not be evaluated")
    if verdict.verdict == "accept":
        return NodeOutcome(subject, Status.CLEAR, f"INPUT accepts TCP {port} from {source} (via {path})")
    where = (f"rule {rule.index} of {rule.chain}: {rule.text}" if rule is not None
             else f"the {path.split(' -> ')[-1] or 'INPUT'} policy")
    if verdict.in_ufw_chain:
        return NodeOutcome(subject, Status.CLEAR,
                           f"TCP {port} is refused inside UFW's chains ({where}); reported as a UFW block")
    line = f" (INPUT line {verdict.input_line})" if verdict.input_line is not None else ""
    fix = removal_command(verdict)
    return NodeOutcome(
        subject, Status.DETECTED,
        f"{verdict.verdict.upper()} for TCP {port} from {source} by {where}{line}; path {path}",
        (f"sudo {fix}",) if fix else (
            f"sudo iptables --insert INPUT 1 --protocol tcp --source {source} --dport {port} --jump ACCEPT",
        ),
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
