"""On-demand diagnosis of one cluster: collect, probe, evaluate, report.

Collection, probing, the Kubernetes read and evaluation are shared.monitor.assess over every cause: the
code the queue workers and `scan` run, so a diagnosis and a monitoring cycle cannot disagree.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.azure.clients import ArmClients
from shared.azure.collect import Collector
from shared.azure.ids import parse_cluster_id
from shared.azure.probes import RunCommandLedger
from shared.causes import evaluate_all
from shared.logcontext import log_context
from shared.model import CauseResult, Status
from shared.progress import Progress
from shared.report import build_report
from shared.settings import Settings
from shared.snapshot import ClusterSnapshot


@dataclass(frozen=True)
class Diagnosis:
    report: dict[str, Any]
    snapshot: ClusterSnapshot
    results: list[CauseResult]


def diagnose_snapshot(snapshot: ClusterSnapshot, checked_at: datetime) -> Diagnosis:
    from shared.kube.unexplained import explain_symptom

    results = evaluate_all(snapshot)
    return Diagnosis(build_report(snapshot, results, checked_at, explain_symptom(snapshot, results)), snapshot,
                     results)


def diagnose(
    cluster_id: str,
    *,
    settings: Settings,
    clients: ArmClients | None = None,
    probes: bool = True,
    progress: Progress | None = None,
    now: Callable[[], datetime] | None = None,
    budget_s: float | None = None,
    ledger: RunCommandLedger | None = None,
) -> Diagnosis:
    """Raises InvalidResourceId, ClusterNotFound, AccessDenied or CollectionError for the cluster itself.

    `budget_s` bounds the node probes (the queue worker passes one well inside functionTimeout); `ledger`
    records run-commands in flight so a redelivered request does not start a second one on a node.
    """
    from shared.monitor.assess import ProbeOptions, assess
    from shared.monitor.families import ALL_FAMILIES

    ref = parse_cluster_id(cluster_id)
    clock = now or (lambda: datetime.now(UTC))
    own_clients = clients is None
    arm = clients or ArmClients(settings)
    try:
        with log_context(cluster_id=ref.id):
            collector = Collector(arm, now=clock)
            deadline = time.monotonic() + budget_s if budget_s is not None else None
            options = ProbeOptions(settings.node_probes if probes else "off", settings.probe_sample_per_pool,
                                   deadline, ledger, progress=progress, kube_mode=settings.node_probes)
            result = assess(collector, collector.managed_cluster(ref), ALL_FAMILIES, options, every_cause=True)
            return Diagnosis(build_report(result.snapshot, result.results, clock(), result.explanation),
                             result.snapshot, result.results)
    finally:
        if own_clients:
            arm.close()


STATUS_MARK = {
    Status.DETECTED: "DETECTED",
    Status.CLEAR: "clear",
    Status.NOT_APPLICABLE: "n/a",
    Status.UNKNOWN: "UNKNOWN",
}


def render_table(report: dict[str, Any]) -> str:
    """Readable form for a terminal: verdict, then one block per cause with its fix."""
    cluster = report["cluster"]
    lines = [
        f"{cluster['name']} ({cluster['resourceGroup']}, {cluster['location']}): {report['verdict'].upper()}",
        f"  private={cluster['private']} outboundType={cluster['outboundType']} tunnel={cluster['tunnel']}"
        f"  checked {report['checkedAt']}",
        "",
        f"  {'cause':<28} {'status':<9} summary",
    ]
    for cause in report["causes"]:
        lines.append(f"  {cause['id']:<28} {STATUS_MARK[Status(cause['status'])]:<9} {cause['summary']}")
        if cause["status"] == "unknown" and cause["reason"] and cause["reason"] not in cause["summary"]:
            lines.append(f"  {'':<38} reason: {cause['reason']}")
        if cause["status"] == "detected":
            for item in cause["evidence"][:5]:
                lines.append(f"  {'':<38} evidence: {item['detail']}")
            for step in cause["remediation"]:
                lines.append(f"  {'':<38} fix: {step}")
    symptom = report["symptom"]
    lines.append("")
    lines.append(
        f"  symptom: {symptom['status']}; tunnel nodes: {', '.join(symptom['tunnelNodes']) or '-'}; "
        f"unreachable on 10250: {', '.join(symptom['unreachableNodes']) or '-'}"
    )
    lines.extend(_symptom_lines(symptom))
    return "\n".join(lines)


def _symptom_lines(symptom: dict[str, Any]) -> list[str]:
    """The API server -> tunnel -> kubelet call per node (failures first, oks folded) and what explains it."""
    nodes = symptom.get("nodes") or []
    if symptom.get("reason"):
        return [f"  {'':<11}through the API server: not checked: {symptom['reason']}"]
    failed = [n for n in nodes if n["result"] != "ok"]
    lines = [f"  {'':<11}{n['node']}: {n['result']}: {n['detail']}" for n in failed[:20]]
    if len(failed) > 20:
        lines.append(f"  {'':<11}... and {len(failed) - 20} more node(s) failing")
    if ok := len(nodes) - len(failed):
        lines.append(f"  {'':<11}{ok} node(s) ok through the API server")
    explanation = symptom.get("explanation")
    if explanation and explanation.get("status") in ("detected", "clear") and failed:
        lines.append(f"  {'':<11}{explanation['summary']}")
    return lines
