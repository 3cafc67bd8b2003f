"""The diagnosis report: the JSON object `diagnose --json` prints and the HTTP function returns."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from shared.model import CauseResult, verdict_of
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
    return {"status": status, "tunnelNodes": tunnel, "unreachableNodes": unreachable}


def build_report(snapshot: ClusterSnapshot, results: Sequence[CauseResult], checked_at: datetime) -> dict[str, Any]:
    return {
        "cluster": cluster_json(snapshot),
        "checkedAt": iso_utc(checked_at),
        "verdict": str(verdict_of(r.status for r in results)),
        "causes": [r.to_json() for r in results],
        "symptom": symptom_json(snapshot),
    }
