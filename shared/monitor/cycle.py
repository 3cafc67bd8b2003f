"""One monitoring cycle: discover the fleet, check each cluster, persist findings, send notifications.

The same functions serve `python -m shared scan` (everything in one process) and the Functions app
(a timer enqueues one message per cluster and check family; a queue worker calls `check_cluster`), so
what is tested locally is what runs in Azure.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.azure.clients import ArmClients
from shared.azure.collect import Collector, describe_http_error
from shared.azure.ids import parse_cluster_id, segment
from shared.azure.probes import Prober
from shared.causes import evaluate_all
from shared.logcontext import log_context
from shared.model import CauseId, CauseResult, Status
from shared.report import build_report
from shared.settings import Settings
from shared.snapshot import ActivityEvent, ClusterSnapshot, Unavailable
from shared.store.connection import Store

log = logging.getLogger(__name__)

# Which causes each timer owns. A family only ever reconciles its own causes, so a fast SNAT timer never
# resolves a finding that only a node probe can see.
FAMILIES: Mapping[str, tuple[CauseId, ...]] = {
    "snat": (CauseId.SNAT,),
    "nsg": (CauseId.NSG,),
    "probe": (CauseId.UFW, CauseId.IPTABLES, CauseId.EGRESS),
}
ALL_FAMILIES = tuple(FAMILIES)
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
    reports: list[dict[str, Any]] = field(default_factory=list)
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
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, outcome: ClusterOutcome) -> None:
        with self._lock:
            self.reports.append(outcome.report)
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
    report: dict[str, Any]
    opened: int = 0
    resolved: int = 0
    still_open: int = 0
    reminded: int = 0
    run_commands: int = 0


class Monitor:
    """Holds what one process reuses across clusters: settings, SDK clients, storage."""

    def __init__(self, settings: Settings, store: Store, *, clients: ArmClients | None = None,
                 env: Mapping[str, str] | None = None, now: Callable[[], datetime] | None = None) -> None:
        self.settings = settings
        self.store = store
        self.clients = clients or ArmClients(settings)
        self.env = dict(os.environ if env is None else env)
        self.now = now or (lambda: datetime.now(UTC))

    # ------------------------------------------------------------ fleet

    def discover(self, collector: Collector) -> tuple[list[FleetMember], list[str]]:
        """Clusters in the configured subscriptions (or every one the identity can list)."""
        errors: list[str] = []
        subscriptions = list(self.settings.subscriptions)
        if not subscriptions:
            subscriptions = collector.list_subscriptions()
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
    ) -> ClusterOutcome:
        """Collect, probe (if the probe family is asked for), evaluate, and reconcile the family's causes."""
        with log_context(cluster_id=member.cluster_id):
            return self._check_cluster(member, families, collector, activity)

    def _check_cluster(self, member: FleetMember, families: Sequence[str], collector: Collector,
                       activity: tuple[ActivityEvent, ...] | Unavailable | None) -> ClusterOutcome:
        from shared.store.lifecycle import reconcile
        from shared.store.snat_samples import record_snat_sample
        from shared.store.status import save_cluster_status

        checked_at = self.now()
        cluster = member.cluster or collector.managed_cluster(parse_cluster_id(member.cluster_id))
        probing = "probe" in families and self.settings.node_probes != "off"
        snapshot = collector.snapshot(cluster, with_instances=probing, activity=activity)
        run_commands = 0
        if probing:
            prober = Prober(collector.clients)
            snapshot = prober.probe(
                snapshot, self.settings.node_probes, per_pool=self.settings.probe_sample_per_pool,
                must_probe=self._open_probe_subjects(snapshot),
            )
            run_commands = prober.run_commands
        results = evaluate_all(snapshot)
        record_snat_sample(self.store, snapshot, checked_at, families=families)  # fleet page chart; never raises
        owned = {c for f in families for c in FAMILIES[f]}
        mine = [r for r in results if r.id in owned]
        report = build_report(snapshot, [_hide(r, owned) for r in results], checked_at)
        outcome = reconcile(self.store, _cluster_ref(snapshot), mine, checked_at,
                            reminder_interval=timedelta(hours=self.settings.reminder_hours))
        save_cluster_status(self.store, report, families)
        return ClusterOutcome(report, len(outcome.opened), len(outcome.resolved), len(outcome.still_open),
                              len(outcome.reminded), run_commands)

    def _open_probe_subjects(self, snapshot: ClusterSnapshot) -> set[str]:
        """Nodes with an open node-level finding: always re-probed, so a sample never resolves them blindly."""
        from shared.store.findings import list_findings

        node_causes = {str(c) for c in FAMILIES["probe"]}
        return {f.subject for f in list_findings(self.store, "open", cluster=snapshot.id) if f.cause in node_causes}

    def record_failure(self, cluster_id: str, families: Sequence[str], reason: str) -> None:
        """A cluster whose check keeps failing (poison message): its causes turn `unknown`, visibly."""
        from shared.store.lifecycle import reconcile
        from shared.store.status import save_cluster_status

        ref = parse_cluster_id(cluster_id)
        snapshot = ClusterSnapshot(
            id=cluster_id, name=ref.name, subscription_id=ref.subscription_id, resource_group=ref.resource_group,
            location="", node_resource_group="", private=False, outbound_type="unknown",
            unsupported_reason=reason,
        )
        owned = {c for f in families for c in FAMILIES[f]}
        results = [r for r in evaluate_all(snapshot) if r.id in owned]
        checked_at = self.now()
        reconcile(self.store, _cluster_ref(snapshot), results, checked_at)
        save_cluster_status(self.store, build_report(snapshot, evaluate_all(snapshot), checked_at), families)

    # ------------------------------------------------------------ whole cycle

    def run_cycle(self, families: Sequence[str] = ALL_FAMILIES, *,
                  progress: Callable[[int, int, str], None] | None = None) -> CycleSummary:
        from shared.store.checkpoints import put_last_success

        started = time.monotonic()
        summary = CycleSummary(self.now(), tuple(families))
        collector = Collector(self.clients, now=self.now)
        before = self.clients.stats.snapshot()
        members, errors = self.discover(collector)
        summary.errors.extend(errors)
        summary.clusters = len(members)
        activity = self._activity(collector, members) if "nsg" in families else {}
        done = 0
        with ThreadPoolExecutor(max_workers=min(CLUSTER_WORKERS, max(1, len(members))),
                                thread_name_prefix="cluster") as pool:
            futures = {pool.submit(self.check_cluster, m, families, collector,
                                   activity=activity.get(m.subscription_id)): m for m in members}
            for future in as_completed(futures):
                member = futures[future]
                try:
                    summary.add(future.result())
                except Exception as exc:  # one cluster never stops the fleet
                    log.exception("cluster check failed", extra={"cluster_id": member.cluster_id})
                    summary.errors.append(f"{member.cluster_id}: {type(exc).__name__}: {exc}")
                done += 1
                if progress is not None:
                    progress(done, len(members), member.cluster_id.rsplit("/", 1)[-1])
        sent, failed = self.deliver_notifications()
        summary.notifications_sent, summary.notifications_failed = sent, failed
        after = self.clients.stats.snapshot()
        summary.arm = {k: after[k] - before.get(k, 0) for k in after}
        summary.duration_s = time.monotonic() - started
        if not summary.errors:
            for family in families:
                put_last_success(self.store, family, summary.started, detail=f"{summary.clusters} clusters")
        log.info("cycle finished", extra={"custom_dimensions": summary.metrics()})
        return summary

    def _activity(self, collector: Collector,
                  members: Iterable[FleetMember]) -> dict[str, tuple[ActivityEvent, ...] | Unavailable]:
        """One Activity Log read per subscription per cycle, from the stored cursor (with overlap)."""
        from shared.store.checkpoints import get_activity_log_cursor, put_activity_log_cursor

        out: dict[str, tuple[ActivityEvent, ...] | Unavailable] = {}
        window = timedelta(hours=self.settings.activity_window_hours)
        for sub in sorted({m.subscription_id for m in members}):
            now = self.now()
            cursor = get_activity_log_cursor(self.store, sub)
            since = max(cursor - timedelta(minutes=10), now - window) if cursor else now - window
            events = collector.activity_log(sub, since=since)
            out[sub] = events
            if not isinstance(events, Unavailable):
                put_activity_log_cursor(self.store, sub, now)
        return out

    def deliver_notifications(self) -> tuple[int, int]:
        """Send what the outbox holds; returns (sent, failed). One failing channel never blocks another."""
        from shared.notify.channels import channels_from_settings
        from shared.store.outbox import dispatch_pending, senders_for

        channels = channels_from_settings(self.env)
        if not channels:
            return 0, 0
        report = dispatch_pending(self.store, senders_for(channels), self.now())
        return report.sent, report.failed


def _hide(result: CauseResult, owned: set[CauseId]) -> CauseResult:
    """Causes a family did not check are reported as unknown, never as a stale or default clear."""
    if result.id in owned:
        return result
    reason = "not checked by this check family"
    return replace(result, status=Status.UNKNOWN, summary=f"Could not be checked: {reason}", evidence=(),
                   remediation=(), reason=reason)


def _cluster_ref(snapshot: ClusterSnapshot) -> Any:
    from shared.notify.message import ClusterRef

    return ClusterRef(id=snapshot.id, name=snapshot.name,
                      subscription_id=snapshot.subscription_id or (segment(snapshot.id, "subscriptions") or ""))
