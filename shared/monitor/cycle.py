"""The Monitor (what one process reuses: settings, SDK clients, storage) and its per-cluster check.

`scan` and the Functions app run the same pipeline (shared.monitor.pipeline): a timer plans a cycle per
check family (one message per cluster), a worker runs `check_cluster` for one message. `scan` executes
that same fan-out in-process. Collection, probing and evaluation are `shared.monitor.assess`, which
`diagnose` uses too.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.azure.clients import ArmClients
from shared.azure.collect import Collector, describe_http_error
from shared.azure.ids import ClusterRef, parse_cluster_id, segment
from shared.azure.probes import RunCommandLedger
from shared.kube.unexplained import Explainer, SymptomExplanation
from shared.logcontext import log_context
from shared.model import UNEXPLAINED_ID
from shared.monitor.assess import ProbeOptions, assess
from shared.monitor.families import ALL_FAMILIES, FAMILIES, SPECS, owned_causes
from shared.monitor.queues import DEFAULT_QUEUES, QueueNames
from shared.report import build_report
from shared.settings import Settings
from shared.snapshot import ActivityEvent, ClusterSnapshot, Unavailable
from shared.store.connection import Store
from shared.store.findings import Finding

log = logging.getLogger(__name__)

__all__ = ["ALL_FAMILIES", "FAMILIES", "ClusterOutcome", "CycleSummary", "FleetMember", "Monitor"]
CLUSTER_WORKERS = 32


@dataclass(frozen=True)
class FleetMember:
    cluster_id: str
    subscription_id: str
    cluster: dict[str, Any] | None = None  # the list answer, so the cycle does not GET it again


@dataclass
class CycleSummary:
    started: datetime
    families: tuple[str, ...]
    reports: list[dict[str, Any]] = field(default_factory=list)  # one merged report per cluster
    opened: int = 0
    resolved: int = 0
    still_open: int = 0
    reminded: int = 0
    notifications_sent: int = 0
    notifications_failed: int = 0
    errors: list[str] = field(default_factory=list)
    clusters: int = 0
    run_commands: int = 0
    arm: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0
    family_reports: list[dict[str, Any]] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, outcome: ClusterOutcome) -> None:
        with self._lock:
            self.family_reports.append(outcome.report)
            self.opened += outcome.opened
            self.resolved += outcome.resolved
            self.still_open += outcome.still_open
            self.reminded += outcome.reminded
            self.run_commands += outcome.run_commands

    def to_json(self) -> dict[str, Any]:
        return {
            "clusters": sorted(self.reports, key=lambda r: r["cluster"]["id"].lower()),
            "opened": self.opened,
            "resolved": self.resolved,
            "stillOpen": self.still_open,
            "notificationsSent": self.notifications_sent,
            "errors": list(self.errors),
        }

    def metrics(self) -> dict[str, Any]:
        """Counts every cycle records for telemetry (App Insights custom dimensions)."""
        return {
            "clusters": self.clusters, "armCalls": self.arm.get("reads", 0) + self.arm.get("writes", 0),
            "armThrottled": self.arm.get("throttled", 0), "runCommands": self.run_commands,
            "failures": len(self.errors), "durationSeconds": round(self.duration_s, 3),
            "opened": self.opened, "resolved": self.resolved,
        }


@dataclass(frozen=True)
class ClusterOutcome:
    report: dict[str, Any]  # the checked families' causes only, with `family` when there is one
    opened: int = 0
    resolved: int = 0
    still_open: int = 0
    reminded: int = 0
    run_commands: int = 0


class Monitor:
    """Holds what one process reuses across clusters: settings, SDK clients, storage, queue names.

    Build it from settings with `shared.monitor.factory.build_monitor` (Functions, CLI and dev tools do).
    """

    def __init__(self, settings: Settings, store: Store, *, clients: ArmClients | None = None,
                 env: Mapping[str, str] | None = None, now: Callable[[], datetime] | None = None,
                 queues: QueueNames = DEFAULT_QUEUES) -> None:
        self.settings = settings
        self.store = store
        self.clients = clients or ArmClients(settings)
        self.env = dict(os.environ if env is None else env)
        self.now = now or (lambda: datetime.now(UTC))
        self.queues = queues

    # ------------------------------------------------------------ fleet

    def discover(self, collector: Collector) -> tuple[list[FleetMember], list[str]]:
        """Clusters in the configured subscriptions (or every one the identity can list)."""
        errors: list[str] = []
        subscriptions = list(self.settings.subscriptions)
        if not subscriptions:
            try:
                subscriptions = collector.list_subscriptions()
            except Exception as exc:  # recorded on the cycle (health shows it), never a silent empty fleet
                return [], [describe_http_error(exc, "the subscriptions this identity can see")]
        members: list[FleetMember] = []
        with ThreadPoolExecutor(max_workers=min(16, max(1, len(subscriptions)))) as pool:
            futures = {pool.submit(collector.list_clusters, s): s for s in subscriptions}
            for future in as_completed(futures):
                sub = futures[future]
                try:
                    clusters = future.result()
                except Exception as exc:
                    errors.append(describe_http_error(exc, f"the clusters of subscription {sub}"))
                    continue
                members.extend(FleetMember(c["id"], sub, c) for c in clusters if c.get("id"))
        members.sort(key=lambda m: m.cluster_id.lower())
        return members, errors

    # ------------------------------------------------------------ one cluster

    def check_cluster(
        self,
        member: FleetMember,
        families: Sequence[str],
        collector: Collector,
        *,
        activity: tuple[ActivityEvent, ...] | Unavailable | None = None,
        deadline: float | None = None,
        ledger: RunCommandLedger | None = None,
    ) -> ClusterOutcome:
        """Collect what the families need, probe (probe family), evaluate and reconcile their causes only."""
        with log_context(cluster_id=member.cluster_id):
            return self._check_cluster(member, families, collector, activity=activity, deadline=deadline,
                                       ledger=ledger)

    def _check_cluster(self, member: FleetMember, families: Sequence[str], collector: Collector, *,
                       activity: tuple[ActivityEvent, ...] | Unavailable | None, deadline: float | None,
                       ledger: RunCommandLedger | None) -> ClusterOutcome:
        from shared.store.lifecycle import reconcile
        from shared.store.snat_samples import record_snat_sample
        from shared.store.status import save_cluster_status

        checked_at = self.now()
        cluster = member.cluster or collector.managed_cluster(parse_cluster_id(member.cluster_id))
        probing = any(SPECS[f].probes for f in families) and self.settings.node_probes != "off"
        reads_kube = any(SPECS[f].kube for f in families)
        owned = {str(c) for c in owned_causes(families)} | ({UNEXPLAINED_ID} if reads_kube else set())
        open_findings = self._open_findings(member.cluster_id) if probing or reads_kube else []
        options = ProbeOptions(self.settings.node_probes, self.settings.probe_sample_per_pool, deadline, ledger,
                               _must_check(open_findings), kube_mode=self.settings.node_probes)
        result = assess(collector, cluster, families, options, activity=activity,
                        explainers=_explainers(open_findings))
        record_snat_sample(self.store, result.snapshot, checked_at, families=families)  # fleet page; never raises
        report = family_report(result.snapshot, result.results, checked_at, families, result.explanation)
        # The symptom's own finding rides with the family that reads it (None: not read, left untouched).
        findings = [*result.results,
                    *([result.explanation.to_result(result.snapshot.id)] if result.explanation else [])]
        # The probes' coverage goes on the findings this run writes (and tells the lifecycle it was a sample).
        outcome = reconcile(self.store, _cluster_ref(result.snapshot), findings, checked_at,
                            reminder_interval=timedelta(hours=self.settings.reminder_hours),
                            coverage=report["coverage"] if probing else None)
        save_cluster_status(self.store, report, families)
        still_open = [f for f in outcome.still_open if f.cause in owned]  # other families' are theirs to count
        return ClusterOutcome(report, len(outcome.opened), len(outcome.resolved), len(still_open),
                              len(outcome.reminded), result.run_commands)

    def _open_findings(self, cluster_id: str) -> list[Finding]:
        from shared.store.findings import list_findings

        return list_findings(self.store, "open", cluster=cluster_id)

    def record_failure(self, cluster_id: str, families: Sequence[str], reason: str, *,
                       cycle_id: str | None = None) -> None:
        """A cluster whose check keeps failing (poison message): its causes turn `unknown`, visibly.

        The cycle's completion row says `failed`, so the cycle completes (every cluster reported) but does
        not count as successful in /api/health.
        """
        from shared.causes import REGISTRY, run_cause
        from shared.store.checkpoints import complete_cluster
        from shared.store.lifecycle import reconcile
        from shared.store.status import save_cluster_status

        ref = parse_cluster_id(cluster_id)
        snapshot = ClusterSnapshot(
            id=cluster_id, name=ref.name, subscription_id=ref.subscription_id, resource_group=ref.resource_group,
            location="", node_resource_group="", private=False, outbound_type="unknown",
            unsupported_reason=reason,
        )
        owned = owned_causes(families)
        results = [run_cause(c, snapshot) for c in REGISTRY if c.id in owned]
        checked_at = self.now()
        unread = ([SymptomExplanation.unread(reason).to_result(cluster_id)]
                  if any(SPECS[f].kube for f in families) else [])
        reconcile(self.store, _cluster_ref(snapshot), [*results, *unread], checked_at)
        save_cluster_status(self.store, family_report(snapshot, results, checked_at, families), families)
        if cycle_id:
            for family in families:
                complete_cluster(self.store, family, cycle_id, cluster_id, ok=False, detail=reason)

    # ------------------------------------------------------------ whole cycle

    def run_cycle(self, families: Sequence[str] = ALL_FAMILIES, *,
                  progress: Callable[[int, int, str], None] | None = None) -> CycleSummary:
        """`scan`: the timers' fan-out and the workers' checks, executed in this process."""
        from shared.monitor.pipeline import run_in_process

        return run_in_process(self, families, progress=progress)

    def deliver_notifications(self) -> tuple[int, int]:
        """Send what the outbox holds; returns (sent, failed). One failing channel never blocks another."""
        from shared.notify.channels import channels_from_settings
        from shared.store.outbox import dispatch_pending, senders_for

        channels = channels_from_settings(self.env)
        if not channels:
            return 0, 0
        report = dispatch_pending(self.store, senders_for(channels), self.now())
        return report.sent, report.failed


def family_report(snapshot: ClusterSnapshot, results: Sequence[Any], checked_at: datetime,
                  families: Sequence[str], explanation: SymptomExplanation | None = None) -> dict[str, Any]:
    """The report of one family check: its own causes and verdict (what the worker logs and stores)."""
    report = build_report(snapshot, results, checked_at, explanation)
    if len(families) == 1:
        report["family"] = families[0]
    return report


def _must_check(open_findings: Sequence[Finding]) -> frozenset[str]:
    """Nodes an open node-level finding (or the unexplained-symptom finding) touches: always probed and
    asked through the API server, so a rotating sample never leaves a finding's scope unchecked cycle
    after cycle, and never resolves it on nodes it did not look at."""
    node_causes = {str(c) for c in FAMILIES["probe"]} | {UNEXPLAINED_ID}
    return frozenset(name for f in open_findings if f.cause in node_causes for name in (f.subject, *f.affected))


def _explainers(open_findings: Sequence[Finding]) -> list[Explainer]:
    """Causes found before (open findings) that may explain a broken symptom: other families' causes, and
    this family's own, which count only when this run could not evaluate them (`explain_symptom` lets a
    cause this run evaluated speak for itself)."""
    return [Explainer.from_finding(f.cause, f.affected) for f in open_findings if f.cause != UNEXPLAINED_ID]


def _cluster_ref(snapshot: ClusterSnapshot) -> ClusterRef:
    return ClusterRef(id=snapshot.id, name=snapshot.name,
                      subscription_id=snapshot.subscription_id or (segment(snapshot.id, "subscriptions") or ""),
                      resource_group=snapshot.resource_group)
