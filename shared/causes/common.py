"""Helpers the node-level causes share: which nodes are probed, where tunnel traffic comes from."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shared.causes.base import Cause
from shared.model import CauseResult, Evidence, Status
from shared.snapshot import ClusterSnapshot, Node, NodeProbe, Unavailable

KUBELET_PORT = 10250
TUNNEL_CONTAINERS = ("konnectivity-agent", "tunnel-front", "aks-link")
TUNNEL_COMPONENT = {"konnectivity-agent": "konnectivity", "tunnel-front": "tunnel-front", "aks-link": "aks-link"}


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


def fold_node_outcomes(cause: Cause, outcomes: Sequence[NodeOutcome], *, problem: str,
                       not_applicable: str) -> CauseResult:
    """Any detected node makes the cause detected; otherwise any unknown node makes it unknown.

    A cause is only `clear` when every inspected node answered conclusively, and `not_applicable`
    only when no node could have it at all (e.g. none has ufw installed).
    """
    by_status: dict[Status, list[NodeOutcome]] = {s: [] for s in Status}
    for outcome in outcomes:
        by_status[outcome.status].append(outcome)
    detected, unknown = by_status[Status.DETECTED], by_status[Status.UNKNOWN]
    evidence = tuple(Evidence(o.node, o.detail) for o in (*detected, *unknown))
    if detected:
        names = ", ".join(o.node for o in detected)
        remediation = tuple(dict.fromkeys(r for o in detected for r in o.remediation))
        return cause.result(Status.DETECTED, f"{problem} on {len(detected)} node(s): {names}.",
                            evidence=evidence, remediation=remediation,
                            subjects=tuple(o.node for o in detected))
    if unknown:
        reason = "; ".join(f"{o.node}: {o.detail}" for o in unknown)
        return cause.unknown(reason, evidence=evidence)
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
