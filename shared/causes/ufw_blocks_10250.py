"""ufw-blocks-10250: UFW is active on a node and refuses TCP 10250 from the VNet.

Read from `ufw status verbose` as the probe captured it, so the verdict is the one ufw itself would apply:
first matching rule in order, else the default incoming policy.
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
from shared.netrules.ufw import UfwVerdict, decide, parse_ufw_status, remediation
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
    source = vnet_source_ip(snapshot, node)
    if source is None:
        return NodeOutcome(node.name, Status.UNKNOWN, "no VNet source address to test from")
    try:
        verdict = decide(parse_ufw_status(probe.ufw_status), source, KUBELET_PORT)
    except ParseError as exc:
        return NodeOutcome(node.name, Status.UNKNOWN, f"could not read `ufw status verbose`: {exc}")
    vnet = snapshot.address_context.vnet_prefixes
    return ufw_outcome(node.name, verdict, source, allow_from=vnet[0] if vnet else None)


def ufw_outcome(subject: str, verdict: UfwVerdict, source: str, *, port: int = KUBELET_PORT,
                allow_from: str | None = None) -> NodeOutcome:
    """Map a ufw decision to an outcome (shared with `analyze ufw`)."""
    rule = verdict.rule
    where = f"rule {rule.number} '{rule.raw.strip()}'" if rule is not None else "the default incoming policy"
    if not verdict.active:
        return NodeOutcome(subject, Status.CLEAR, "ufw is inactive")
    blocked = verdict.blocked
    if blocked is None:
        return NodeOutcome(subject, Status.UNKNOWN, verdict.reason or "ufw's decision could not be determined")
    if not blocked:
        return NodeOutcome(subject, Status.CLEAR, f"ufw is active and allows TCP {port} from {source} ({where})")
    verb = "rejects" if verdict.decision == "reject" else "denies"
    return NodeOutcome(
        subject, Status.DETECTED,
        f"ufw is active and {verb} TCP {port} from {source} ({where})",
        remediation(verdict, allow_from),
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
