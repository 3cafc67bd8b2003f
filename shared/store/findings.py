"""The findings and finding-events tables: keys, entity codec and the read side the HTTP API uses.

A finding is one (cluster, cause, subject) triple, e.g. "NSG rule X blocks 10250 on cluster C".
Its row lives in the cluster's partition so one cycle reads a cluster with one partition query; its id
is a short hash of the triple so it fits URLs and event partition keys whatever the ARM ids look like.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from shared.model import Evidence
from shared.store.connection import Store
from shared.store.keys import (
    TRUNCATION_MARKER,
    fit_json_list,
    join_key,
    key_part,
    odata_literal,
    truncate_text,
)

OPEN = "open"
RESOLVED = "resolved"

EVIDENCE_BUDGET = 24_000
REMEDIATION_BUDGET = 8_000
SUMMARY_BUDGET = 4_000
TITLE_BUDGET = 1_000
REASON_BUDGET = 2_000
AFFECTED_BUDGET = 16_000

_EVIDENCE_OMITTED = {"resource": TRUNCATION_MARKER, "detail": "{n} more evidence item(s) omitted (storage limit)"}


def cluster_key(cluster_id: str) -> str:
    """PartitionKey of a cluster's findings: its ARM id, lower-cased, `/` -> `:` (see keys.py)."""
    return join_key(key_part(cluster_id))


def subject_or_cluster(subject: str, cluster_id: str) -> str:
    return subject.strip() or cluster_id


def finding_row_key(cause_id: str, subject: str) -> str:
    """RowKey `<cause id>|<subject key>`: causes group together inside the cluster's partition."""
    return join_key(key_part(cause_id), key_part(subject))


def finding_id_for(cluster_id: str, cause_id: str, subject: str) -> str:
    """Stable id of the (cluster, cause, subject) triple: the same finding keeps it across episodes."""
    triple = "|".join((cluster_key(cluster_id), key_part(cause_id), key_part(subject)))
    return hashlib.sha256(triple.encode("ascii")).hexdigest()[:32]


def event_row_key(at: str, episode: int, event: str) -> str:
    """RowKey of a finding event: time first so a partition reads back in order of occurrence."""
    return join_key(at, f"e{episode:05d}", key_part(event))


def evidence_to_json(evidence: Sequence[Evidence]) -> str:
    return fit_json_list([e.to_json() for e in evidence], EVIDENCE_BUDGET, _EVIDENCE_OMITTED)


def evidence_from_json(text: str | None) -> tuple[Evidence, ...]:
    items = json.loads(text) if text else []
    return tuple(Evidence(resource=str(i.get("resource", "")), detail=str(i.get("detail", "")))
                 for i in items if isinstance(i, dict))


def affected_to_json(affected: Sequence[str]) -> str:
    """The nodes / flows a finding's subject hits: its scope for the lifecycle, evidence for people."""
    return fit_json_list(list(affected), AFFECTED_BUDGET)


def affected_from_json(text: str | None) -> tuple[str, ...]:
    items = json.loads(text) if text else []
    return tuple(str(i) for i in items if isinstance(i, str) and not i.startswith(TRUNCATION_MARKER))


def affected_complete(text: str | None) -> bool:
    """Whether the stored scope lists every affected node / flow (a cut list cannot bound the scope)."""
    items = json.loads(text) if text else []
    return bool(items) and not _cut(items)


def affected_truncated(text: str | None) -> bool:
    """Whether the stored scope was cut to fit the row (an empty list was never cut)."""
    return _cut(json.loads(text) if text else [])


def _cut(items: list[Any]) -> bool:
    return any(isinstance(i, str) and i.startswith(TRUNCATION_MARKER) for i in items)


def remediation_to_json(remediation: Sequence[str]) -> str:
    return fit_json_list(list(remediation), REMEDIATION_BUDGET)


def remediation_from_json(text: str | None) -> tuple[str, ...]:
    items = json.loads(text) if text else []
    return tuple(str(i) for i in items)


def bounded(text: str | None, budget: int) -> str:
    return truncate_text(text or "", budget)


@dataclass(frozen=True)
class Finding:
    """The current state of one finding, as the API and the lifecycle read it."""

    finding_id: str
    cluster_id: str
    cluster_name: str
    subscription_id: str
    cause: str
    subject: str
    status: str  # open | resolved
    episode: int
    title: str
    summary: str
    evidence: tuple[Evidence, ...]
    remediation: tuple[str, ...]
    first_seen: str
    last_seen: str
    last_checked_at: str
    last_check_status: str
    last_check_reason: str | None
    last_notified_at: str | None
    resolved_at: str | None
    resolution: str | None
    # The nodes / flows the subject hits (scope of the finding), and the probe coverage of the last run
    # that wrote it ("nodes probed of nodes in each pool"); both empty on rows written before they existed.
    affected: tuple[str, ...] = ()
    coverage: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "findingId": self.finding_id,
            "cluster": {"id": self.cluster_id, "name": self.cluster_name,
                        "subscriptionId": self.subscription_id},
            "cause": self.cause,
            "subject": self.subject,
            "status": self.status,
            "episode": self.episode,
            "title": self.title,
            "summary": self.summary,
            "evidence": [e.to_json() for e in self.evidence],
            "remediation": list(self.remediation),
            "firstSeen": self.first_seen,
            "lastSeen": self.last_seen,
            "lastCheckedAt": self.last_checked_at,
            "lastCheckStatus": self.last_check_status,
            "lastCheckReason": self.last_check_reason,
            "lastNotifiedAt": self.last_notified_at,
            "resolvedAt": self.resolved_at,
            "resolution": self.resolution,
            "affected": list(self.affected),
            "coverage": self.coverage,
        }


def finding_from_entity(entity: Mapping[str, Any]) -> Finding:
    return Finding(
        finding_id=str(entity["finding_id"]),
        cluster_id=str(entity["cluster_id"]),
        cluster_name=str(entity.get("cluster_name", "")),
        subscription_id=str(entity.get("subscription_id", "")),
        cause=str(entity["cause"]),
        subject=str(entity["subject"]),
        status=str(entity["status"]),
        episode=int(entity.get("episode", 1)),
        title=str(entity.get("title", "")),
        summary=str(entity.get("summary", "")),
        evidence=evidence_from_json(entity.get("evidence_json")),
        remediation=remediation_from_json(entity.get("remediation_json")),
        first_seen=str(entity["first_seen"]),
        last_seen=str(entity["last_seen"]),
        last_checked_at=str(entity.get("last_checked_at", entity["last_seen"])),
        last_check_status=str(entity.get("last_check_status", "")),
        last_check_reason=entity.get("last_check_reason") or None,
        last_notified_at=entity.get("last_notified_at") or None,
        resolved_at=entity.get("resolved_at") or None,
        resolution=entity.get("resolution") or None,
        affected=affected_from_json(entity.get("affected_json")),
        coverage=entity.get("coverage") or None,
    )


@dataclass(frozen=True)
class FindingEvent:
    """One transition of a finding with the evidence that caused it."""

    finding_id: str
    at: str
    episode: int
    event: str  # detected | reminder | resolved
    cause_status: str
    summary: str
    evidence: tuple[Evidence, ...]
    remediation: tuple[str, ...]
    reason: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "findingId": self.finding_id,
            "at": self.at,
            "episode": self.episode,
            "event": self.event,
            "causeStatus": self.cause_status,
            "summary": self.summary,
            "evidence": [e.to_json() for e in self.evidence],
            "remediation": list(self.remediation),
            "reason": self.reason,
        }


def event_entity(event: FindingEvent, cluster_id: str, cause: str, subject: str) -> dict[str, Any]:
    return {
        "PartitionKey": event.finding_id,
        "RowKey": event_row_key(event.at, event.episode, event.event),
        "at": event.at,
        "episode": event.episode,
        "event": event.event,
        "cause_status": event.cause_status,
        "cluster_id": bounded(cluster_id, TITLE_BUDGET),
        "cause": cause,
        "subject": bounded(subject, TITLE_BUDGET),
        "summary": bounded(event.summary, SUMMARY_BUDGET),
        "evidence_json": evidence_to_json(event.evidence),
        "remediation_json": remediation_to_json(event.remediation),
        "reason": bounded(event.reason, REASON_BUDGET) if event.reason else None,
    }


def event_from_entity(entity: Mapping[str, Any]) -> FindingEvent:
    return FindingEvent(
        finding_id=str(entity["PartitionKey"]),
        at=str(entity["at"]),
        episode=int(entity["episode"]),
        event=str(entity["event"]),
        cause_status=str(entity.get("cause_status", "")),
        summary=str(entity.get("summary", "")),
        evidence=evidence_from_json(entity.get("evidence_json")),
        remediation=remediation_from_json(entity.get("remediation_json")),
        reason=entity.get("reason") or None,
    )


StatusFilter = Literal["open", "all"]


def list_findings(store: Store, status: StatusFilter = "open", subscription: str | None = None,
                  cluster: str | None = None, cause: str | None = None) -> list[Finding]:
    """Findings for the API: one partition when `cluster` is given, else a filtered fleet-wide scan."""
    if status not in ("open", "all"):
        raise ValueError(f"status must be 'open' or 'all', not {status!r}")
    clauses: list[str] = []
    if cluster:
        clauses.append(f"PartitionKey eq {odata_literal(cluster_key(cluster))}")
    if status == "open":
        clauses.append(f"status eq {odata_literal(OPEN)}")
    if subscription:
        clauses.append(f"subscription_key eq {odata_literal(subscription.strip().lower())}")
    if cause:
        clauses.append(f"cause eq {odata_literal(cause)}")
    entities: Iterable[Mapping[str, Any]] = (
        store.findings.query_entities(" and ".join(clauses)) if clauses else store.findings.list_entities()
    )
    found = [finding_from_entity(e) for e in entities]
    return sorted(found, key=lambda f: (f.cluster_id.lower(), f.cause, f.subject.lower()))


def history(store: Store, finding_id: str) -> list[FindingEvent]:
    """Every recorded transition of a finding, oldest first (RowKeys sort by time)."""
    if not finding_id or not all(c in "0123456789abcdef" for c in finding_id):
        return []  # ids are hex; anything else cannot exist and must not reach a filter
    entities = store.finding_events.query_entities(f"PartitionKey eq {odata_literal(finding_id)}")
    return sorted((event_from_entity(e) for e in entities), key=lambda ev: (ev.at, ev.episode))


def get_finding(store: Store, finding_id: str) -> Finding | None:
    """Looks a finding up by id (a filtered scan: ids are hashes, not keys)."""
    if not finding_id or not all(c in "0123456789abcdef" for c in finding_id):
        return None
    for entity in store.findings.query_entities(f"finding_id eq {odata_literal(finding_id)}"):
        return finding_from_entity(entity)
    return None
