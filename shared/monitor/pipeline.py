"""The fan-out every cycle goes through, in Azure and in `scan` alike.

    timer (per family)  plan_cycle: discover the fleet, read what is per subscription (the Activity Log,
                        once, from its stored cursor), record the cycle, one CheckMessage per cluster
    queue               the messages (Functions: a Storage queue; `scan`: a list in memory)
    worker (per msg)    run_check: the cluster's check for the message's families, then an idempotent
                        completion row for (family, cycle, cluster)
    settle              a family's cycle is complete when every cluster it fanned out to has a completion
                        row; it is successful when none of them failed and discovery had no error. Then
                        `lastSuccessfulCycle` advances (health, the next timer and `scan` all settle).

`scan` (Monitor.run_cycle) calls the same three functions in one process, so what the CLI shows is what
the deployed app does: same reads, same findings, same alerts, same checkpoints.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from shared.azure.collect import Collector
from shared.monitor.families import SPECS
from shared.monitor.queues import CheckMessage
from shared.snapshot import ActivityEvent, Unavailable

if TYPE_CHECKING:
    from shared.monitor.cycle import ClusterOutcome, CycleSummary, FleetMember, Monitor

log = logging.getLogger(__name__)

# host.json functionTimeout is 10 minutes; node probes must be over well before it, leaving time to
# evaluate, reconcile and notify. A run-command not back by then is `unknown` with that reason.
PROBE_BUDGET_S = 360.0
ACTIVITY_OVERLAP = timedelta(minutes=10)  # re-read a little before the cursor: late-arriving log entries


@dataclass
class CyclePlan:
    family: str
    cycle_id: str
    started: datetime
    messages: list[CheckMessage] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def plan_cycle(monitor: Monitor, family: str, collector: Collector | None = None, *,
               fleet: tuple[list[FleetMember], list[str]] | None = None) -> CyclePlan:
    """The timer's half: who to check this cycle, and everything read once per subscription.

    `fleet`: the discovery already made in this process (`scan` discovers once for every family)."""
    from shared.store.checkpoints import start_cycle

    if family not in SPECS:
        raise ValueError(f"unknown check family {family!r}")
    collector = collector or Collector(monitor.clients, now=monitor.now)
    started = monitor.now()
    members, errors = fleet if fleet is not None else monitor.discover(collector)
    if SPECS[family].activity_log:
        refresh_activity(monitor, collector, sorted({m.subscription_id for m in members}))
    cycle_id = uuid.uuid4().hex
    start_cycle(monitor.store, family, cycle_id, started, clusters=len(members), errors=errors)
    messages = [CheckMessage(m.cluster_id, m.subscription_id, (family,), cycle_id, m.cluster) for m in members]
    return CyclePlan(family, cycle_id, started, messages, errors)


def refresh_activity(monitor: Monitor, collector: Collector, subscriptions: Sequence[str]) -> None:
    """One Activity Log read per subscription per cycle, from the stored cursor; workers read the result.

    New events are merged with the stored ones still inside ACTIVITY_WINDOW_HOURS, so the workers see the
    whole window while ARM is only asked for what is new since the last read.
    """
    from shared.store.checkpoints import (
        get_activity_events,
        get_activity_log_cursor,
        put_activity_events,
        put_activity_log_cursor,
    )

    window = timedelta(hours=monitor.settings.activity_window_hours)
    for sub in subscriptions:
        now = monitor.now()
        cursor = get_activity_log_cursor(monitor.store, sub)
        stored, _ = get_activity_events(monitor.store, sub)
        if cursor is None or isinstance(stored, Unavailable):
            since = now - window
            kept: tuple[ActivityEvent, ...] = ()
        else:
            since = max(cursor - ACTIVITY_OVERLAP, now - window)
            oldest = (now - window).strftime("%Y-%m-%dT%H:%M:%S")
            kept = tuple(e for e in stored if e.timestamp[:19] >= oldest)
        events = collector.activity_log(sub, since=since)
        if isinstance(events, Unavailable):
            put_activity_events(monitor.store, sub, events, now)
            continue
        merged = {(e.operation, e.resource_id.lower(), e.timestamp): e for e in (*kept, *events)}
        put_activity_events(monitor.store, sub, tuple(merged.values()), now)
        put_activity_log_cursor(monitor.store, sub, now)


def run_check(monitor: Monitor, message: CheckMessage, *, attempt: str | None = None,
              budget_s: float = PROBE_BUDGET_S, collector: Collector | None = None) -> ClusterOutcome:
    """The worker's half: one cluster, the message's families, then the completion rows.

    `attempt` names this delivery of the message (run-commands it starts are recorded under it, so a
    redelivery does not start a second one on a node); an exception propagates, so the host retries and
    finally hands the message to the poison handler, which records the failure.
    """
    from shared.monitor.cycle import FleetMember
    from shared.store.checkpoints import TableRunCommandLedger, complete_cluster, get_activity_events

    started = time.monotonic()
    collector = collector or Collector(monitor.clients, now=monitor.now)  # `scan` shares one per cluster
    activity: tuple[ActivityEvent, ...] | Unavailable | None = None
    if any(SPECS[f].activity_log for f in message.families):
        activity, _ = get_activity_events(monitor.store, message.subscription_id)
    ledger = TableRunCommandLedger(monitor.store, attempt or uuid.uuid4().hex)
    member = FleetMember(message.cluster_id, message.subscription_id, message.cluster)
    outcome = monitor.check_cluster(member, message.families, collector, activity=activity,
                                    deadline=started + budget_s, ledger=ledger)
    for family in message.families:
        complete_cluster(monitor.store, family, message.cycle_id, message.cluster_id, ok=True)
    return outcome


def run_in_process(monitor: Monitor, families: Sequence[str], *,
                   progress: Callable[[int, int, str], None] | None = None) -> CycleSummary:
    """`scan`: plan every family, run every message here (threads instead of queue workers), settle."""
    from shared.monitor.cycle import CLUSTER_WORKERS, CycleSummary
    from shared.monitor.merge import merge_by_cluster
    from shared.store.checkpoints import settle_cycle

    started = time.monotonic()
    summary = CycleSummary(monitor.now(), tuple(families))
    collector = Collector(monitor.clients, now=monitor.now)  # the timers' collector (discovery, Activity Log)
    before = monitor.clients.stats.snapshot()
    fleet = monitor.discover(collector)  # once for every family
    plans = [plan_cycle(monitor, family, collector, fleet=fleet) for family in families]
    for plan in plans:
        summary.errors.extend(e for e in plan.errors if e not in summary.errors)
    messages = [m for plan in plans for m in plan.messages]
    summary.clusters = len({m.cluster_id.lower() for m in messages})
    # One cluster's families run one after another in one thread, sharing one collector: what the nsg check
    # read (scale sets, NICs, VNets, NSGs) the probe check does not read again, and the families' findings
    # are reconciled in family order (the probe family sees the nsg family's findings). Clusters run in
    # parallel. In Azure each family is its own queue message on its own schedule; the code is the same.
    groups: dict[str, list[CheckMessage]] = {}
    for message in messages:
        groups.setdefault(message.cluster_id.lower(), []).append(message)
    done = 0
    with ThreadPoolExecutor(max_workers=min(CLUSTER_WORKERS, max(1, len(groups))),
                            thread_name_prefix="cluster") as pool:
        futures = [pool.submit(_run_group, monitor, group) for group in groups.values()]
        for future in as_completed(futures):
            for message, outcome in future.result():
                if isinstance(outcome, Exception):  # one cluster never stops the fleet (as the poison handler)
                    reason = f"the check failed: {type(outcome).__name__}: {outcome}"
                    summary.errors.append(f"{message.cluster_id} ({', '.join(message.families)}): {reason}")
                    record_failure_safely(monitor, message, reason)
                else:
                    summary.add(outcome)
                done += 1
                if progress is not None:
                    progress(done, len(messages), message.cluster_id.rsplit("/", 1)[-1])
    summary.reports = merge_by_cluster(summary.family_reports)
    sent, failed = monitor.deliver_notifications()
    summary.notifications_sent, summary.notifications_failed = sent, failed
    for family in families:
        settle_cycle(monitor.store, family)
    after = monitor.clients.stats.snapshot()
    summary.arm = {k: after[k] - before.get(k, 0) for k in after}
    summary.duration_s = time.monotonic() - started
    log.info("cycle finished", extra={"custom_dimensions": summary.metrics()})
    return summary


def _run_group(monitor: Monitor,
               group: Sequence[CheckMessage]) -> list[tuple[CheckMessage, ClusterOutcome | Exception]]:
    """`scan`: one cluster's messages in order with one collector; each outcome or the exception it raised."""
    collector = Collector(monitor.clients, now=monitor.now)
    done: list[tuple[CheckMessage, ClusterOutcome | Exception]] = []
    for message in group:
        try:
            done.append((message, run_check(monitor, message, collector=collector)))
        except Exception as exc:
            log.exception("cluster check failed", extra={"cluster_id": message.cluster_id})
            done.append((message, exc))
    return done


def record_failure_safely(monitor: Monitor, message: CheckMessage, reason: str) -> None:
    """Poison handling (and `scan`'s equivalent): the cluster's causes turn unknown with the reason."""
    try:
        monitor.record_failure(message.cluster_id, message.families, reason, cycle_id=message.cycle_id)
    except Exception:
        log.exception("could not record the failure", extra={"cluster_id": message.cluster_id})
