"""The diagnosis report: the JSON object `diagnose --json` prints and the HTTP function returns."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from shared.kube.types import BROKEN, OK
from shared.kube.unexplained import SymptomExplanation
from shared.model import CauseResult, Status, Verdict, verdict_of
from shared.snapshot import ClusterSnapshot, Node, NodeProbe, Unavailable
from shared.tunnel import TUNNEL_CONTAINERS


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def cluster_json(snapshot: ClusterSnapshot) -> dict[str, Any]:
    return {
        "id": snapshot.id,
        "name": snapshot.name,
        "subscriptionId": snapshot.subscription_id,
        "resourceGroup": snapshot.resource_group,
        "location": snapshot.location,
        "nodeResourceGroup": snapshot.node_resource_group,
        "private": snapshot.private,
        "outboundType": snapshot.outbound_type,
        "tunnel": snapshot.tunnel,
    }


def symptom_json(snapshot: ClusterSnapshot) -> dict[str, Any]:
    """The reachability matrix folded into what the on-call engineer sees first."""
    nodes: tuple[Node, ...] = () if isinstance(snapshot.nodes, Unavailable) else snapshot.nodes
    name_by_ip = {n.private_ip: n.name for n in nodes if n.private_ip}
    probes = [p for p in snapshot.probes.values() if isinstance(p, NodeProbe)]
    tunnel = sorted(
        p.node for p in probes if p.containers and any(c in TUNNEL_CONTAINERS for c in p.containers)
    )
    unreachable = sorted(
        {name_by_ip.get(ip, ip) for p in probes for ip, outcome in p.reachability.items() if outcome != "ok"}
    )
    tested = any(p.reachability for p in probes)
    status = "unknown" if not tested else ("degraded" if unreachable else "ok")
    found: dict[str, Any] = {"status": status, "tunnelNodes": tunnel, "unreachableNodes": unreachable}
    if isinstance(snapshot.symptom, Unavailable):
        found |= {"nodes": [], "reason": snapshot.symptom.reason}
    elif snapshot.symptom:
        # The call through API server -> tunnel -> kubelet decides the status (DESIGN.md, symptom.nodes).
        results = {n.result for n in snapshot.symptom}
        found["status"] = "degraded" if results & BROKEN else ("ok" if results == {OK} else "unknown")
        found["nodes"] = [n.to_json() for n in snapshot.symptom]
    return found


def report_verdict(statuses: Iterable[Status], symptom: Mapping[str, Any]) -> Verdict:
    """The causes' verdict, except that a degraded symptom is a `problem` even when no cause explains it:
    the tunnel is broken for users whatever the configuration says. Merged reports use it too."""
    verdict = verdict_of(statuses)
    if symptom.get("status") == "degraded" and symptom.get("nodes"):
        return Verdict.PROBLEM
    return verdict


def coverage_json(snapshot: ClusterSnapshot) -> dict[str, Any]:
    """How much of the cluster the node probes saw: nodes probed of running nodes, per pool.

    In `sample` mode a `clear` from a node-level cause speaks for the probed nodes only; saying so in the
    report (and in findings) keeps the sample honest.
    """
    nodes: tuple[Node, ...] = () if isinstance(snapshot.nodes, Unavailable) else snapshot.nodes
    pools: dict[str, dict[str, int]] = {}
    for node in nodes:
        if not node.running:
            continue
        entry = pools.setdefault(node.pool, {"nodes": 0, "probed": 0})
        entry["nodes"] += 1
        entry["probed"] += int(isinstance(snapshot.probes.get(node.name), NodeProbe))
    return {
        "probes": snapshot.probes_mode,
        "pools": [{"pool": name, "probed": v["probed"], "nodes": v["nodes"]} for name, v in sorted(pools.items())],
    }


def coverage_text(coverage: dict[str, Any]) -> str:
    """One line for people: `sample: pool1 2/10, pool2 2/3 nodes probed`."""
    pools = ", ".join(f"{p['pool']} {p['probed']}/{p['nodes']}" for p in coverage.get("pools", []))
    return f"{coverage.get('probes', 'off')}: {pools or 'no nodes'} nodes probed"


def build_report(snapshot: ClusterSnapshot, results: Sequence[CauseResult], checked_at: datetime,
                 explanation: SymptomExplanation | None = None) -> dict[str, Any]:
    """`explanation`: the symptom against the detected causes (shared.kube.unexplained), as
    `symptom.explanation`; None when the symptom was not read."""
    symptom = symptom_json(snapshot)
    if explanation is not None:
        symptom["explanation"] = explanation.to_json()
    return {
        "cluster": cluster_json(snapshot),
        "checkedAt": iso_utc(checked_at),
        "verdict": str(report_verdict((r.status for r in results), symptom)),
        "causes": [r.to_json() for r in results],
        "symptom": symptom,
        "coverage": coverage_json(snapshot),
    }
