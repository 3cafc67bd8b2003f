"""Helpers the node-level causes share: which nodes are probed, where tunnel traffic comes from."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shared.causes.base import Cause
from shared.model import CauseResult, Evidence, Status
from shared.snapshot import ClusterSnapshot, Node, NodeProbe, Unavailable
from shared.tunnel import KUBELET_PORT, TUNNEL_COMPONENT, TUNNEL_CONTAINERS

__all__ = ["KUBELET_PORT", "TUNNEL_COMPONENT", "TUNNEL_CONTAINERS"]



def running_nodes(snapshot: ClusterSnapshot) -> tuple[Node, ...] | Unavailable:
    if isinstance(snapshot.nodes, Unavailable):
        return snapshot.nodes
    return tuple(n for n in snapshot.nodes if n.running and n.private_ip)


def tunnel_nodes(snapshot: ClusterSnapshot) -> tuple[Node, ...]:
    """Nodes running a tunnel agent (per crictl); all running nodes when nobody could tell."""
    nodes = running_nodes(snapshot)
    if isinstance(nodes, Unavailable):
        return ()
    hosting = tuple(
        n
        for n in nodes
        if isinstance(probe := snapshot.probes.get(n.name), NodeProbe)
        and probe.containers
        and any(c in TUNNEL_CONTAINERS for c in probe.containers)
    )
    return hosting or nodes


def vnet_source_ip(snapshot: ClusterSnapshot, destination: Node) -> str | None:
    """A source inside the VNet for 10250 checks: a tunnel node other than the destination if possible."""
    candidates = [n for n in tunnel_nodes(snapshot) if n.name != destination.name] or list(tunnel_nodes(snapshot))
    for node in candidates:
        if node.private_ip:
            return node.private_ip
    return None


def probes_off_reason(snapshot: ClusterSnapshot) -> str | None:
    if snapshot.probes_mode == "off" or not snapshot.probes:
        return ("node probes are off (NODE_PROBES=off or --no-probes), so the node's own firewall "
                "was not inspected")
    return None


@dataclass(frozen=True)
class NodeOutcome:
    """One node's answer for a node-level cause, before the answers are folded into one result."""

    node: str
    status: Status
    detail: str
    remediation: tuple[str, ...] = ()
    # The thing to fix (a UFW rule, an iptables rule, a firewall, a route): one finding however many nodes
    # it hits. None: the node itself is the subject (nothing narrower is known).
    subject: str | None = None


def fold_node_outcomes(cause: Cause, outcomes: Sequence[NodeOutcome], *, problem: str,
                       not_applicable: str) -> CauseResult:
    """Any detected node makes the cause detected; otherwise any unknown node makes it unknown.

    A cause is only `clear` when every inspected node answered conclusively, and `not_applicable`
    only when no node could have it at all (e.g. none has ufw installed). Detected nodes are grouped by
    what to fix (`NodeOutcome.subject`), so one rule on a hundred nodes is one subject; nodes that could
    not be checked are listed in `unchecked` even when another node is detected, so that a partial run
    never resolves a finding it did not re-check.
    """
    by_status: dict[Status, list[NodeOutcome]] = {s: [] for s in Status}
    for outcome in outcomes:
        by_status[outcome.status].append(outcome)
    detected, unknown = by_status[Status.DETECTED], by_status[Status.UNKNOWN]
    evidence = tuple(Evidence(o.node, o.detail) for o in (*detected, *unknown))
    unchecked = {o.node: o.detail for o in unknown}
    if detected:
        affected: dict[str, list[str]] = {}
        for o in detected:
            nodes = affected.setdefault(o.subject or o.node, [])
            if o.node not in nodes:
                nodes.append(o.node)
        names = ", ".join(dict.fromkeys(o.node for o in detected))
        remediation = tuple(dict.fromkeys(r for o in detected for r in o.remediation))
        summary = f"{problem} on {len({o.node for o in detected})} node(s): {names}."
        if unknown:
            summary += f" Not checked: {', '.join(unchecked)}."
        return cause.result(Status.DETECTED, summary, evidence=evidence, remediation=remediation,
                            subjects=tuple(affected), affected={k: tuple(v) for k, v in affected.items()},
                            unchecked=unchecked)
    if unknown:
        reason = "; ".join(f"{o.node}: {o.detail}" for o in unknown)
        return cause.unknown(reason, evidence=evidence, unchecked=unchecked)
    clear = by_status[Status.CLEAR]
    if clear:
        return cause.result(
            Status.CLEAR,
            f"Checked {len(clear)} node(s): " + ", ".join(o.node for o in clear) + ".",
            evidence=tuple(Evidence(o.node, o.detail) for o in clear),
        )
    if by_status[Status.NOT_APPLICABLE]:
        return cause.result(Status.NOT_APPLICABLE, not_applicable,
                            evidence=tuple(Evidence(o.node, o.detail) for o in by_status[Status.NOT_APPLICABLE]))
    return cause.unknown("no node was inspected")


def always_applicable(snapshot: ClusterSnapshot) -> str | None:
    """Applicability rule of causes that can hit any cluster."""
    return None


NodeCheck = Callable[[ClusterSnapshot, Node, NodeProbe | Unavailable], NodeOutcome]


def evaluate_probed_nodes(cause: Cause, snapshot: ClusterSnapshot, check: NodeCheck, *, problem: str,
                          not_applicable: str) -> CauseResult:
    """Run a node-level check on every probed running node and fold the answers (unknown if probes were off)."""
    if (off := probes_off_reason(snapshot)) is not None:
        return cause.unknown(off)
    nodes = running_nodes(snapshot)
    if isinstance(nodes, Unavailable):
        return cause.unknown(nodes.reason)
    outcomes = [check(snapshot, node, snapshot.probes[node.name]) for node in nodes if node.name in snapshot.probes]
    return fold_node_outcomes(cause, outcomes, problem=problem, not_applicable=not_applicable)
