"""egress-tunnel-port-blocked: the node cannot reach the API server on the tunnel's port.

Konnectivity dials TCP 443 to `*.hcp.<region>.azmk8s.io` (TLS with ALPN `konnectivity`, which TLS
inspection or ALPN stripping breaks); the older tunnel-front dials TCP 9000 and aks-link UDP 1194.

Evidence rules (issue 8):
- The probe's own attempt from the node is the strongest evidence: a timeout/refusal is `detected`,
  a connection (or, for UDP, an aks-link answer) is `clear`. UDP silence proves nothing: `unknown`.
- The control plane (NSG outbound rules, the route, the Azure Firewall behind it, shared.causes.egress_hops)
  may *detect* a block, and names the thing to fix, but never proves the path open: without a probe that
  reached the API server the answer is `unknown` ("not confirmed from a node"). With such a probe, a hop
  the monitor could not read is a note in the evidence; a definite deny in configuration stays `detected`
  (with the probe's success as a note), since the rule is there to fix.
- With the tunnel component unknown every tunnel port is judged: all of them failing is `detected`
  (whichever component runs, its port failed); some failing while another is reachable or undecided is
  `unknown` naming the failing ports (the tunnel may use one that works). Never `clear` on a failed port.
- One finding per problem: the subject is the hop to fix (NSG rule, firewall rule collection group or
  policy, route), or `<cluster id>/egress/<proto>-<port>` when only the probe saw it; nodes are `affected`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from shared.causes.base import Cause
from shared.causes.common import NodeOutcome, fold_node_outcomes, probes_off_reason, running_nodes
from shared.causes.egress_hops import EgressPath, HopVerdict, allow_advice, describe_firewall, tls_exclusion_advice
from shared.model import CauseId, CauseResult, Status
from shared.snapshot import ClusterSnapshot, Node, NodeProbe, Unavailable
from shared.tunnel import api_host, tunnel_ports

__all__ = ["api_host", "tunnel_ports"]

BLOCKED_OUTCOMES = {"timeout", "refused", "noroute"}
SILENT_UDP = "UDP 1194: no answer and no ICMP error; silence proves nothing (a drop looks the same)"
NOT_CONFIRMED = "not confirmed from a node"
BAD_CONTAINER_STATES = {"exited", "restarting", "unknown", "created"}


@dataclass(frozen=True)
class PortVerdict:
    status: Status  # DETECTED | CLEAR | UNKNOWN
    detail: str
    subject: str | None = None
    remediation: tuple[str, ...] = ()


def _not_applicable(snapshot: ClusterSnapshot) -> str | None:
    why = snapshot.tunnel_not_used()
    return f"no tunnel: {why}" if why else None


def _evaluate(snapshot: ClusterSnapshot) -> CauseResult:
    nodes = running_nodes(snapshot)
    if isinstance(nodes, Unavailable):
        return CAUSE.unknown(nodes.reason)
    ports = tunnel_ports(snapshot)
    path = EgressPath(snapshot)
    sampled = any(n.name in snapshot.probes for n in nodes)
    outcomes: list[NodeOutcome] = []
    for node in nodes:
        probe = snapshot.probes.get(node.name)
        verdicts = {port: _port_verdict(snapshot, path, node, probe, port) for port in ports}
        node_outcomes = _node_outcomes(snapshot, node, verdicts)
        if probe is None and sampled:
            # Sample mode: a node outside this cycle's sample counts only when configuration shows a block.
            node_outcomes = [o for o in node_outcomes if o.status is Status.DETECTED]
        outcomes.extend(node_outcomes)
    if not outcomes:
        return CAUSE.unknown("no running node to check")
    result = fold_node_outcomes(
        CAUSE, outcomes,
        problem=f"Tunnel egress ({', '.join(ports)} to {api_host(snapshot)}) is blocked",
        not_applicable="no egress path to check",
    )
    if result.status is Status.UNKNOWN:  # one line per distinct reason, not one per node (1,000-node pools)
        reason = _grouped_reason(outcomes)
        result = replace(result, reason=reason, summary=f"Could not be checked: {reason}")
    return result


def _grouped_reason(outcomes: list[NodeOutcome]) -> str:
    by_detail: dict[str, list[str]] = {}
    for o in outcomes:
        if o.status is Status.UNKNOWN:
            by_detail.setdefault(o.detail, []).append(o.node)
    parts = []
    for detail, nodes in by_detail.items():
        names = ", ".join(nodes[:3]) + (f" and {len(nodes) - 3} more" if len(nodes) > 3 else "")
        parts.append(f"{names}: {detail}")
    return "; ".join(parts)


def _cluster_subject(snapshot: ClusterSnapshot, port: str) -> str:
    return f"{snapshot.id}/egress/{port.replace('/', '-')}"


def _port_verdict(snapshot: ClusterSnapshot, path: EgressPath, node: Node, probe: NodeProbe | Unavailable | None,
                  port: str) -> PortVerdict:
    hop = path.judge(node, port)
    notes = list(hop.notes)
    outcome = probe.egress.get(port) if isinstance(probe, NodeProbe) else None
    if isinstance(probe, NodeProbe) and port == "udp/1194":
        state = probe.container_states.get("aks-link")
        if state and state.lower() in BAD_CONTAINER_STATES:
            notes.append(f"the aks-link container on the node is {state}")
    verdict = _combine(snapshot, probe, port, hop, outcome)
    if port == "tcp/443" and isinstance(probe, NodeProbe):
        verdict = _tls(snapshot, probe, hop, verdict)
    if notes:
        verdict = replace(verdict, detail=f"{verdict.detail}; note: {'; '.join(notes)}")
    return verdict


def _combine(snapshot: ClusterSnapshot, probe: NodeProbe | Unavailable | None, port: str, hop: HopVerdict,
             outcome: str | None) -> PortVerdict:
    host = api_host(snapshot)
    if outcome in BLOCKED_OUTCOMES:
        assert isinstance(probe, NodeProbe)
        said = f"connection from the node to {host} ({probe.api_server_ip or 'unresolved'}): {port} {outcome}"
        if hop.kind == "deny":
            return PortVerdict(Status.DETECTED, f"{said}; {hop.detail}", hop.subject, hop.remediation)
        where = f"; the hop that cannot be judged: {hop.detail}" if hop.kind == "unknown" else ""
        subject = hop.subject if hop.kind == "unknown" and hop.subject and "/routes/" in hop.subject else None
        return PortVerdict(Status.DETECTED, said + where, subject or _cluster_subject(snapshot, port),
                           (allow_advice(snapshot, port),))
    if outcome == "ok":
        if hop.kind == "deny":  # a definite deny in configuration stays a finding: the rule is there to fix
            return PortVerdict(Status.DETECTED, f"{hop.detail}; note: the node's own connection on {port} reached "
                                                f"{host} this time (another path, or the rule not yet in force)",
                               hop.subject, hop.remediation)
        said = f"reached {host} on {port} from the node"
        if hop.kind == "unknown":
            said += f" (configuration not fully judged: {hop.detail})"
        return PortVerdict(Status.CLEAR, said)
    if hop.kind == "deny":
        return PortVerdict(Status.DETECTED, hop.detail, hop.subject, hop.remediation)
    if outcome == "silent":
        return PortVerdict(Status.UNKNOWN, SILENT_UDP)
    if isinstance(probe, NodeProbe):
        why = f"{port}: {outcome or 'not tested'} from the node"
    elif isinstance(probe, Unavailable):
        why = f"the node probe failed: {probe.reason}"
    else:
        why = probes_off_reason(snapshot) or "the node was not probed"
    cp = hop.detail if hop.kind == "unknown" else f"configuration allows it ({hop.detail})"
    return PortVerdict(Status.UNKNOWN, f"{port} {NOT_CONFIRMED} ({why}); {cp}")


def _tls(snapshot: ClusterSnapshot, probe: NodeProbe, hop: HopVerdict, verdict: PortVerdict) -> PortVerdict:
    """Konnectivity's TLS: a chain from another issuer or no ALPN `konnectivity` means inspection/stripping."""
    tls = probe.tls
    if tls is None:
        return verdict
    if tls.error:
        return replace(verdict, detail=f"{verdict.detail}; note: TLS check could not judge: {tls.error}")
    problems = []
    if tls.verified is False:
        problems.append("the API server's certificate chain seen from the node does not verify against the "
                        "cluster CA")
    if tls.alpn != "konnectivity":
        problems.append(f"ALPN 'konnectivity' was not negotiated (got {tls.alpn or 'none'})")
    if not problems:
        return verdict
    issuer = f" (issuer: {tls.issuer})" if tls.issuer else ""
    said = (f"TLS from the node to {api_host(snapshot)}: {'; '.join(problems)}{issuer}: TLS inspection or ALPN "
            "stripping on the egress path breaks Konnectivity")
    if verdict.status is Status.DETECTED:
        return replace(verdict, detail=f"{verdict.detail}; {said}")
    fw = hop.firewall
    subject = (fw.policy_id or fw.id) if fw is not None else f"{snapshot.id}/egress/tls-443"
    if fw is not None:
        said += f" (the route goes through {describe_firewall(fw)})"
    return PortVerdict(Status.DETECTED, said, subject, (tls_exclusion_advice(snapshot),))


def _node_outcomes(snapshot: ClusterSnapshot, node: Node, verdicts: dict[str, PortVerdict]) -> list[NodeOutcome]:
    """One node's answer: its port's verdict, or, with the tunnel component unknown, all ports folded.

    With the component unknown the cluster needs exactly one of the ports, but which one is not known:
    every port failing is `detected` (whichever component runs, its port fails); every port reachable is
    `clear`; anything in between (a port failing while another is reachable or undecided) is `unknown`,
    naming the failing ports: the tunnel may use one that works.
    """
    detected = {p: v for p, v in verdicts.items() if v.status is Status.DETECTED}
    unknown = {p: v for p, v in verdicts.items() if v.status is Status.UNKNOWN}
    caveat = ""
    if len(verdicts) > 1:
        if detected and len(detected) < len(verdicts):
            said = "; ".join(f"{p}: {v.detail}" for p, v in detected.items())
            rest = ", ".join(f"{p} {'reachable' if v.status is Status.CLEAR else 'undecided'}"
                             for p, v in verdicts.items() if p not in detected)
            undecided = "".join(f"; {p}: {v.detail}" for p, v in unknown.items())
            return [NodeOutcome(node.name, Status.UNKNOWN, (
                f"tunnel component unknown (crictl absent or no tunnel container seen): {', '.join(detected)} "
                f"blocked but {rest}, and the tunnel may use a port that works ({said}{undecided})"))]
        caveat = (" (tunnel component unknown: every tunnel port failed from this node, so whichever "
                  "component runs, its port is blocked)")
    if detected:
        return [NodeOutcome(node.name, Status.DETECTED, f"{p}: {v.detail}{caveat}", v.remediation, v.subject)
                for p, v in detected.items()]
    if unknown:
        return [NodeOutcome(node.name, Status.UNKNOWN, "; ".join(v.detail for v in unknown.values()))]
    return [NodeOutcome(node.name, Status.CLEAR, "; ".join(v.detail for v in verdicts.values()))]


CAUSE = Cause(
    id=CauseId.EGRESS,
    title="Egress for the tunnel port is blocked",
    description=(
        "The node cannot reach the API server on the tunnel's port: TCP 443 (Konnectivity), TCP 9000 (tunnel-front) "
        "or UDP 1194 (aks-link)."
    ),
    not_applicable=_not_applicable,
    evaluate=_evaluate,
)
