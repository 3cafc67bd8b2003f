"""The finding lifecycle: turn one cycle's cause results into open/resolved findings and notifications.

Commit point. Each transition (detected, reminder, resolved) is committed by ONE conditional write
of the finding row (create, or replace with If-Match on its ETag). That same write stores the
notification it implies as a "pending" marker inside the row, so the state change and the promise to
notify are atomic: there is no window in which one exists without the other. Only after the commit
are the marker's event row and per-channel outbox rows written (both keyed deterministically from
the marker, so writing them twice is a no-op), and then the marker is cleared.

Why not write the outbox first: a worker that loses the race (or crashes before its transition
commits) would leave a notification for a transition that never happened. With the marker, losers
write nothing, and a crash after the commit leaves the marker in the row: the next reconcile of the
cluster (a re-run of the same message, or the next cycle) or `relay_stranded` finishes the job with
the same ids, so nothing is lost and nothing is doubled.

Conflicts (412 on replace, 409 on create) re-read the row and decide again, a bounded number of
times. Results older than the row's last check are ignored, so a late duplicate queue message can
neither reopen nor resolve a finding behind a newer cycle's back.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableEntity, UpdateMode

from shared.model import CauseId, CauseResult, Evidence, Status
from shared.notify.message import (
    CauseRef,
    ClusterRef,
    Event,
    Notification,
    format_utc,
    from_json,
    notification_id,
    to_json,
)
from shared.store.connection import Store
from shared.store.findings import (
    OPEN,
    REASON_BUDGET,
    RESOLVED,
    SUMMARY_BUDGET,
    TITLE_BUDGET,
    Finding,
    FindingEvent,
    affected_complete,
    affected_from_json,
    affected_to_json,
    affected_truncated,
    bounded,
    cluster_key,
    event_entity,
    evidence_from_json,
    evidence_to_json,
    finding_from_entity,
    finding_id_for,
    finding_row_key,
    remediation_from_json,
    remediation_to_json,
    subject_or_cluster,
)
from shared.store.keys import join_property, odata_literal, split_property
from shared.store.outbox import enqueue

log = logging.getLogger(__name__)

DEFAULT_REMINDER_INTERVAL = timedelta(hours=24)
MAX_CONFLICT_RETRIES = 8


class ReconcileConflictError(RuntimeError):
    """The row kept changing under us; the whole reconcile can safely be run again."""


# Causes judged from node probes only: in a sampled run, the nodes outside the sample were not looked at.
PROBED_NODE_CAUSES = frozenset({str(CauseId.UFW), str(CauseId.IPTABLES), str(CauseId.EGRESS)})


@dataclass(frozen=True)
class ReconcileOutcome:
    """What this call changed. `still_open` = the cluster's open findings it did not open itself."""

    opened: list[Finding] = field(default_factory=list)
    resolved: list[Finding] = field(default_factory=list)
    reminded: list[Finding] = field(default_factory=list)
    still_open: list[Finding] = field(default_factory=list)
    notifications: list[Notification] = field(default_factory=list)


@dataclass(frozen=True)
class _Detected:
    result: CauseResult
    subject: str
    affected: tuple[str, ...]  # nodes / flows this subject hits in this run (its scope)


@dataclass(frozen=True)
class _Resolve:
    status: str  # clear | not_applicable
    summary: str
    evidence: tuple[Evidence, ...]


@dataclass(frozen=True)
class _Unknown:
    reason: str


_Observation = _Detected | _Resolve | _Unknown


@dataclass(frozen=True)
class _Cycle:
    """What stays fixed across one reconcile call."""

    cluster: ClusterRef
    pk: str
    at: str  # checked_at as stored (second precision, ...Z)
    checked_at: datetime
    reminder_interval: timedelta
    coverage: str | None = None  # e.g. "probed 2 of 5 nodes in pool a; 3 of 3 in pool b" (sample mode)
    sampled: bool = False  # node probes looked at a sample: some running node was not probed in this run


_Kind = Literal["opened", "reminded", "resolved", "kept", "none"]


def _plan(cluster: ClusterRef, results: Sequence[CauseResult],
          existing_open: Iterable[Mapping[str, Any]], *, sampled: bool = False) -> dict[str, _Observation]:
    """RowKey -> what this cycle says about it. Causes absent from `results` are left untouched."""
    by_cause: dict[str, list[CauseResult]] = {}
    for result in results:
        by_cause.setdefault(str(result.id), []).append(result)
    plan: dict[str, _Observation] = {}
    for cause, cause_results in by_cause.items():
        for result in cause_results:
            if result.status is not Status.DETECTED:
                continue
            for raw in result.subjects or (cluster.id,):
                subject = subject_or_cluster(raw, cluster.id)
                affected = tuple(dict.fromkeys(result.affected.get(raw, ())))
                plan.setdefault(finding_row_key(cause, subject), _Detected(result, subject, affected))
        for entity in existing_open:
            if entity["cause"] == cause and entity["RowKey"] not in plan:
                plan[entity["RowKey"]] = _verdict_for_undetected(cause, cause_results, entity, sampled=sampled)
    return plan


def finding_scope(entity: Mapping[str, Any]) -> set[str]:
    """What an open finding covers: its subject and the nodes / flows stored as affected (case-folded)."""
    return {str(entity.get("subject", "")).strip().lower(),
            *(a.strip().lower() for a in affected_from_json(entity.get("affected_json")))} - {""}


def _verdict_for_undetected(cause: str, results: Sequence[CauseResult],
                            entity: Mapping[str, Any], *, sampled: bool = False) -> _Observation:
    """What happens to an open finding of this cause whose subject was not detected this time.

    It resolves only when this run was conclusive for everything the finding covers: an `unknown`
    result never resolves anything, and neither does a result (of any status) that lists one of the
    finding's affected nodes / flows (or its subject) as unchecked. A finding stored without a
    complete affected scope (older rows, cluster-wide subjects, a list cut to fit the row) stays open
    while anything at all is unchecked, because nothing says the unchecked piece is outside it.
    """
    unknown = [r for r in results if r.status is Status.UNKNOWN]
    if unknown:  # partial knowledge never resolves anything
        return _Unknown("; ".join(r.reason or "unknown" for r in unknown))
    if sampled and cause in PROBED_NODE_CAUSES and affected_truncated(entity.get("affected_json")):
        # Its node list was cut to fit the row: the nodes past the cut were neither forced into the sample
        # nor listed as unchecked, so a sampled run cannot say it re-checked them all.
        return _Unknown("probes looked at a sample and this finding's node list was cut to fit storage, so not "
                        "every affected node was re-checked; a run with NODE_PROBES=all (or `diagnose`) settles it")
    unchecked = {k: v for r in results for k, v in r.unchecked.items()}
    if unchecked:
        scope = finding_scope(entity)
        scoped = affected_complete(entity.get("affected_json"))
        touched = [k for k in unchecked if k.strip().lower() in scope] if scoped else list(unchecked)
        if touched:
            return _Unknown("not checked conclusively in this run: "
                            + "; ".join(f"{k}: {unchecked[k]}" for k in touched))
    conclusive = [r for r in results if r.status in (Status.CLEAR, Status.NOT_APPLICABLE)]
    if conclusive:
        first = conclusive[0]
        return _Resolve(str(first.status), first.summary, first.evidence)
    # Only `detected` results remain: they are conclusive for this finding's scope, and its subject is
    # not among the detected ones.
    return _Resolve(str(Status.CLEAR), f"No longer among the subjects the latest {cause} check detected.", ())


def reconcile(store: Store, cluster: ClusterRef, results: Sequence[CauseResult], checked_at: datetime, *,
              reminder_interval: timedelta = DEFAULT_REMINDER_INTERVAL,
              coverage: str | Mapping[str, Any] | None = None) -> ReconcileOutcome:
    """Applies one cycle's results for one cluster; safe to repeat and to race (see module doc).

    One finding per (cause, subject): the subject is the thing to fix, and the nodes it affects are
    stored with it (`affected`), updated in place as they change, without a new `detected` alert.
    `coverage` (the report's probe coverage, nodes probed of nodes per pool: `report["coverage"]` as
    is, or a line of text) is stored on every finding this run writes.
    """
    cycle = _Cycle(cluster, cluster_key(cluster.id), format_utc(checked_at), checked_at, reminder_interval,
                   _coverage_text(coverage), _sampled(coverage))
    partition = f"PartitionKey eq {odata_literal(cycle.pk)}"
    rows = {e["RowKey"]: e for e in store.findings.query_entities(partition)}
    for row_key, entity in list(rows.items()):  # finish what a crashed run committed but never relayed
        if _markers(entity):
            _relay(store, entity)
            fresh = _read(store, cycle.pk, row_key)
            if fresh is not None:
                rows[row_key] = fresh
    plan = _plan(cluster, results, [e for e in rows.values() if e.get("status") == OPEN], sampled=cycle.sampled)
    outcome = ReconcileOutcome()
    for row_key, observation in plan.items():
        kind, finding, notification = _apply(store, cycle, row_key, observation, rows.get(row_key))
        if notification is not None:
            outcome.notifications.append(notification)
        if finding is None:
            continue
        if kind == "opened":
            outcome.opened.append(finding)
        elif kind == "resolved":
            outcome.resolved.append(finding)
        elif finding.status == OPEN:
            outcome.still_open.append(finding)
            if kind == "reminded":
                outcome.reminded.append(finding)
    # Open findings of causes this cycle did not report on at all stay open, untouched.
    outcome.still_open.extend(finding_from_entity(e) for key, e in rows.items()
                              if key not in plan and e.get("status") == OPEN)
    return outcome


def _apply(store: Store, cycle: _Cycle, row_key: str, observation: _Observation,
           current: TableEntity | None) -> tuple[_Kind, Finding | None, Notification | None]:
    """Optimistic-concurrency loop for one finding row: decide, write conditionally, re-read on conflict."""
    entity = current
    for _ in range(MAX_CONFLICT_RETRIES):
        kind, new_entity, marker = _decide(cycle, row_key, observation, entity)
        if new_entity is None:
            if entity is None:
                return kind, None, None
            if _markers(entity):
                _relay(store, entity)
            return kind, finding_from_entity(entity), None
        try:
            if entity is None:
                meta = store.findings.create_entity(new_entity)
            else:
                meta = store.findings.update_entity(new_entity, mode=UpdateMode.REPLACE,
                                                    etag=entity.metadata["etag"],
                                                    match_condition=MatchConditions.IfNotModified)
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
            entity = _read(store, cycle.pk, row_key)
            continue
        written = TableEntity(new_entity)
        written._metadata = {"etag": meta["etag"], "timestamp": None}
        _relay(store, written)
        notification = from_json(marker["notification"]) if marker else None
        return kind, finding_from_entity(new_entity), notification
    raise ReconcileConflictError(f"finding {row_key} in {cycle.pk} kept changing; giving up after "
                                 f"{MAX_CONFLICT_RETRIES} attempts")


def _read(store: Store, pk: str, row_key: str) -> TableEntity | None:
    try:
        return store.findings.get_entity(pk, row_key)
    except ResourceNotFoundError:
        return None


def _decide(cycle: _Cycle, row_key: str, observation: _Observation, entity: Mapping[str, Any] | None,
            ) -> tuple[_Kind, dict[str, Any] | None, dict[str, Any] | None]:
    """The pure lifecycle rule: (row, observation) -> (what happened, row to write, marker)."""
    at = cycle.at
    if entity is not None and at < str(entity.get("last_checked_at", "")):
        return "none", None, None  # an older cycle arriving late
    is_open = entity is not None and entity.get("status") == OPEN
    if isinstance(observation, _Detected):
        if not is_open:
            return _open(cycle, row_key, observation, entity)
        assert entity is not None
        return _still_detected(cycle, observation, entity)
    if not is_open:
        return "none", None, None
    assert entity is not None
    if isinstance(observation, _Unknown):
        if entity.get("last_check_status") == str(Status.UNKNOWN) and entity.get("last_checked_at") == at:
            return "kept", None, None
        row = _copy(entity)
        row.update(last_checked_at=at, last_check_status=str(Status.UNKNOWN),
                   last_check_reason=bounded(observation.reason, REASON_BUDGET))
        _set_coverage(row, cycle)
        return "kept", row, None
    return _resolve(cycle, observation, entity)


def _open(cycle: _Cycle, row_key: str, seen: _Detected, previous: Mapping[str, Any] | None,
          ) -> tuple[_Kind, dict[str, Any], dict[str, Any]]:
    cluster, at = cycle.cluster, cycle.at
    episode = int(previous.get("episode", 0)) + 1 if previous is not None else 1
    cause = str(seen.result.id)
    row: dict[str, Any] = {
        "PartitionKey": cycle.pk,
        "RowKey": row_key,
        "finding_id": finding_id_for(cluster.id, cause, seen.subject),
        "cause": cause,
        "subject": bounded(seen.subject, TITLE_BUDGET),
        "status": OPEN,
        "episode": episode,
        "first_seen": at,
        "last_seen": at,
        "last_checked_at": at,
        "last_notified_at": at,
        "reminders": 0,
        "last_check_status": str(Status.DETECTED),
    }
    _set_cluster(row, cluster)
    _set_detection(row, seen, previous=None)
    _set_coverage(row, cycle)
    marker = _marker(row, "detected", episode=episode, seq=0, at=at, cluster=cluster,
                     cause_status=str(Status.DETECTED))
    # A resolved row may still hold markers not yet relayed (its `resolved`, say): they stay, or that
    # notification would be lost.
    _set_markers(row, [*(_markers(previous) if previous is not None else []), marker])
    return "opened", row, marker


def _still_detected(cycle: _Cycle, seen: _Detected, entity: Mapping[str, Any],
                    ) -> tuple[_Kind, dict[str, Any] | None, dict[str, Any] | None]:
    cluster, at = cycle.cluster, cycle.at
    if entity.get("last_checked_at") == at and entity.get("last_check_status") == str(Status.DETECTED):
        return "kept", None, None  # the same cycle applied again
    row = _copy(entity)
    row.update(last_seen=at, last_checked_at=at, last_check_status=str(Status.DETECTED), last_check_reason=None)
    _set_cluster(row, cluster)
    _set_detection(row, seen, previous=entity)  # affected nodes changed: updated in place, no new alert
    _set_coverage(row, cycle)
    last_notified = datetime.fromisoformat(str(entity.get("last_notified_at") or entity["first_seen"]))
    if cycle.checked_at - last_notified < cycle.reminder_interval:
        return "kept", row, None
    seq = int(entity.get("reminders", 0)) + 1
    row.update(last_notified_at=at, reminders=seq)
    marker = _marker(row, "reminder", episode=int(row["episode"]), seq=seq, at=at, cluster=cluster,
                     cause_status=str(Status.DETECTED))
    _set_markers(row, [*_markers(entity), marker])
    return "reminded", row, marker


def _resolve(cycle: _Cycle, verdict: _Resolve, entity: Mapping[str, Any],
             ) -> tuple[_Kind, dict[str, Any], dict[str, Any]]:
    at = cycle.at
    row = _copy(entity)
    row.update(status=RESOLVED, resolved_at=at, last_checked_at=at, last_check_status=verdict.status,
               last_check_reason=None, resolution=bounded(verdict.summary, SUMMARY_BUDGET))
    _set_coverage(row, cycle)
    marker = _marker(row, "resolved", episode=int(row["episode"]), seq=0, at=at, cluster=cycle.cluster,
                     cause_status=verdict.status, resolution=(verdict.summary, verdict.evidence))
    _set_markers(row, [*_markers(entity), marker])
    return "resolved", row, marker


def _copy(entity: Mapping[str, Any]) -> dict[str, Any]:
    return dict(entity.items())


def _set_cluster(row: dict[str, Any], cluster: ClusterRef) -> None:
    row.update(cluster_id=bounded(cluster.id, TITLE_BUDGET), cluster_name=bounded(cluster.name, TITLE_BUDGET),
               subscription_id=cluster.subscription_id, subscription_key=cluster.subscription_id.strip().lower())


def _set_detection(row: dict[str, Any], seen: _Detected, previous: Mapping[str, Any] | None) -> None:
    """Title, summary, evidence and remediation of this subject, and the nodes / flows it affects.

    Nodes the finding affected before that this run could not check stay in its scope (nobody knows
    they are fixed); nodes checked and no longer hit drop out.
    """
    result = seen.result
    unchecked = {k.strip().lower() for k in result.unchecked}
    now_hit = {a.strip().lower() for a in seen.affected}
    kept = [a for a in (affected_from_json(previous.get("affected_json")) if previous is not None else ())
            if a.strip().lower() in unchecked and a.strip().lower() not in now_hit]
    affected = (*seen.affected, *kept)
    row.update(title=bounded(result.title, TITLE_BUDGET),
               summary=bounded(_subject_summary(seen, affected, kept), SUMMARY_BUDGET),
               evidence_json=evidence_to_json(_subject_evidence(seen, affected)),
               remediation_json=remediation_to_json(result.remediation),
               affected_json=affected_to_json(affected), affected_count=len(affected))


def _subject_summary(seen: _Detected, affected: Sequence[str], kept: Sequence[str]) -> str:
    """The result's summary, plus which nodes this subject hits when the summary does not already say."""
    summary = seen.result.summary
    if affected and (len(seen.result.subjects) > 1 or not all(a in summary for a in affected)):
        summary += f" {seen.subject} affects {len(affected)}: {', '.join(affected)}."
    if kept:
        summary += f" Not re-checked in this run: {', '.join(kept)}."
    return summary


def _subject_evidence(seen: _Detected, affected: Sequence[str]) -> tuple[Evidence, ...]:
    """Evidence about this subject and its nodes; all of it when the result has a single subject."""
    evidence = seen.result.evidence
    if len(seen.result.subjects) <= 1:
        return evidence
    scope = {seen.subject.lower(), *(a.lower() for a in affected)}
    mine = tuple(e for e in evidence if e.resource.lower() in scope)
    return mine or evidence


def _coverage_text(coverage: str | Mapping[str, Any] | None) -> str | None:
    if coverage is None or isinstance(coverage, str):
        return coverage
    from shared.report import coverage_text

    return coverage_text(dict(coverage))


def _sampled(coverage: str | Mapping[str, Any] | None) -> bool:
    """From the report's coverage object: some running node was not probed (a line of text says nothing)."""
    if not isinstance(coverage, Mapping):
        return False
    return any(int(p.get("probed", 0)) < int(p.get("nodes", 0)) for p in coverage.get("pools", ()))


def _set_coverage(row: dict[str, Any], cycle: _Cycle) -> None:
    if cycle.coverage is not None:
        row["coverage"] = bounded(cycle.coverage, SUMMARY_BUDGET)


def _marker(row: Mapping[str, Any], event: Event, *, episode: int, seq: int, at: str, cluster: ClusterRef,
            cause_status: str, resolution: tuple[str, tuple[Evidence, ...]] | None = None) -> dict[str, Any]:
    """The notification a transition owes, frozen at commit time (sizes already bounded)."""
    if resolution is None:
        summary = str(row["summary"])
        evidence = evidence_from_json(row.get("evidence_json"))
        remediation = remediation_from_json(row.get("remediation_json"))
    else:
        summary = bounded(resolution[0], SUMMARY_BUDGET)
        evidence = evidence_from_json(evidence_to_json(resolution[1]))
        remediation = ()
    notification = Notification(
        event=event,
        finding_id=str(row["finding_id"]),
        cluster=cluster,
        cause=CauseRef(id=str(row["cause"]), title=str(row.get("title", "")), status=cause_status),
        subject=str(row["subject"]),
        summary=summary,
        evidence=evidence,
        remediation=remediation,
        first_seen=str(row["first_seen"]),
        last_seen=at if event != "resolved" else str(row["last_seen"]),
    )
    return {"event": event, "episode": episode, "seq": seq, "at": at, "notification": to_json(notification)}


def _markers(entity: Mapping[str, Any]) -> list[dict[str, Any]]:
    text = join_property(entity, "pending")
    return list(json.loads(text)) if text else []


def _set_markers(row: dict[str, Any], markers: list[dict[str, Any]]) -> None:
    for name in [k for k in row if k.startswith("pending_")]:
        del row[name]
    if markers:
        row.update(split_property("pending", json.dumps(markers, ensure_ascii=False, separators=(",", ":"))))
    else:
        row["pending_parts"] = 0


def _marker_id(marker: Mapping[str, Any]) -> tuple[str, int, int]:
    return str(marker["event"]), int(marker["episode"]), int(marker["seq"])


def _relay(store: Store, entity: TableEntity) -> None:
    """Writes the event row and outbox rows a committed transition owes, then clears its markers."""
    markers = _markers(entity)
    if not markers:
        return
    for marker in markers:
        n = from_json(str(marker["notification"]))
        event = FindingEvent(
            finding_id=n.finding_id, at=str(marker["at"]), episode=int(marker["episode"]), event=n.event,
            cause_status=n.cause.status, summary=n.summary, evidence=n.evidence, remediation=n.remediation,
            reason=None,
        )
        with suppress(ResourceExistsError):  # already written by an earlier relay of this marker
            store.finding_events.create_entity(event_entity(event, n.cluster.id, n.cause.id, n.subject))
        available_at = datetime.fromisoformat(str(marker["at"]))
        nid = notification_id(n)
        for channel in store.channels:
            enqueue(store, channel, nid, str(marker["notification"]), finding_id=n.finding_id, event=n.event,
                    available_at=available_at)
    _clear_markers(store, entity, {_marker_id(m) for m in markers})


def _clear_markers(store: Store, entity: TableEntity, relayed: set[tuple[str, int, int]]) -> None:
    current: TableEntity | None = entity
    for _ in range(MAX_CONFLICT_RETRIES):
        if current is None:
            return
        remaining = [m for m in _markers(current) if _marker_id(m) not in relayed]
        if len(remaining) == len(_markers(current)):
            return  # someone else cleared them already
        row = _copy(current)
        _set_markers(row, remaining)
        try:
            store.findings.update_entity(row, mode=UpdateMode.REPLACE, etag=current.metadata["etag"],
                                         match_condition=MatchConditions.IfNotModified)
            return
        except (ResourceModifiedError, ResourceNotFoundError):
            current = _read(store, str(entity["PartitionKey"]), str(entity["RowKey"]))
    # Harmless to leave: the markers are relayed again (idempotently) on the next pass.
    log.info("could not clear relayed markers on %s/%s; they will be relayed again",
             entity["PartitionKey"], entity["RowKey"])


def relay_stranded(store: Store) -> int:
    """Finishes transitions whose relay was cut short (crash, outage), fleet-wide; returns how many."""
    count = 0
    for entity in store.findings.query_entities("pending_parts gt 0"):
        _relay(store, entity)
        count += 1
    return count
