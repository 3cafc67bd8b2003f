"""The one notification every channel renders, and the generic webhook body (a DESIGN.md contract).

Channels differ only in presentation; keeping a single frozen value here means the outbox can store
it once (`to_json`) and every retry renders exactly the same facts, whatever the channel.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args
from urllib.parse import quote

from shared.azure import ids as _ids
from shared.model import CauseResult, Evidence

Event = Literal["detected", "reminder", "resolved"]
EVENTS: tuple[Event, ...] = get_args(Event)

# The one cluster reference (shared.azure.ids.ClusterRef), importable from here as before.
ClusterRef = _ids.ClusterRef

PORTAL_BASE = "https://portal.azure.com/#@/resource"
_STORAGE_VERSION = 1


@dataclass(frozen=True)
class CauseRef:
    """Which cause, and its status at the time of the event (`clear` for a `resolved` event)."""

    id: str
    title: str
    status: str


@dataclass(frozen=True)
class Notification:
    """One finding transition, ready for any channel.

    Times are ISO 8601 UTC strings (as stored with the finding) rather than datetimes so that the
    idempotency key and the generic body carry the finding's own text byte for byte.
    """

    event: Event
    finding_id: str
    cluster: ClusterRef
    cause: CauseRef
    subject: str
    summary: str
    evidence: tuple[Evidence, ...]
    remediation: tuple[str, ...]
    first_seen: str
    last_seen: str

    def __post_init__(self) -> None:
        if self.event not in EVENTS:
            raise ValueError(f"notification event must be one of {list(EVENTS)}, not {self.event!r}")
        if not self.finding_id:
            raise ValueError("notification needs a finding_id (receivers de-duplicate on it)")
        for name in ("first_seen", "last_seen"):
            _require_utc_timestamp(name, getattr(self, name))
        # Tuples keep the value hashable and truly frozen even when callers hand over lists.
        object.__setattr__(self, "evidence", tuple(self.evidence))
        object.__setattr__(self, "remediation", tuple(self.remediation))

    @property
    def portal_url(self) -> str:
        """Deep link to the cluster's overview blade; `#@/` lets the portal pick the user's tenant."""
        return f"{PORTAL_BASE}{quote(self.cluster.id, safe='/()')}/overview"


def notification_for(
    *,
    event: Event,
    finding_id: str,
    cluster: ClusterRef,
    result: CauseResult,
    subject: str,
    first_seen: str,
    last_seen: str,
) -> Notification:
    """Builds a notification from a cause result, so callers never re-map its fields by hand."""
    return Notification(
        event=event,
        finding_id=finding_id,
        cluster=cluster,
        cause=CauseRef(id=str(result.id), title=result.title, status=str(result.status)),
        subject=subject,
        summary=result.summary,
        evidence=result.evidence,
        remediation=result.remediation,
        first_seen=first_seen,
        last_seen=last_seen,
    )


def format_utc(moment: datetime) -> str:
    """Second-precision `...Z` text, the same shape as `checkedAt` in the report."""
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware (UTC)")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def to_generic_body(n: Notification, sent_at: datetime) -> dict[str, Any]:
    """The generic webhook JSON body exactly as DESIGN.md specifies it (key names are the contract)."""
    return {**_finding_fields(n), "sentAt": format_utc(sent_at)}


def _finding_fields(n: Notification) -> dict[str, Any]:
    """Everything in the generic body except `sentAt`, which belongs to one delivery attempt."""
    return {
        "event": n.event,
        "findingId": n.finding_id,
        "cluster": {"id": n.cluster.id, "name": n.cluster.name, "subscriptionId": n.cluster.subscription_id},
        "cause": {"id": n.cause.id, "title": n.cause.title, "status": n.cause.status},
        "subject": n.subject,
        "summary": n.summary,
        "evidence": [e.to_json() for e in n.evidence],
        "remediation": list(n.remediation),
        "firstSeen": n.first_seen,
        "lastSeen": n.last_seen,
    }


def notification_id(n: Notification) -> str:
    """Idempotency key: the same triple a receiver uses to drop repeats (findingId + event + lastSeen).

    A unit separator joins the parts so that ("a-b", "c") and ("a", "b-c") can never collide.
    """
    key = "\x1f".join((n.finding_id, n.event, n.last_seen))
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def to_json(n: Notification) -> str:
    """Storage form for the outbox; versioned so a later shape can still read old rows."""
    doc = {"v": _STORAGE_VERSION, **_finding_fields(n)}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def from_json(text: str) -> Notification:
    """Reads `to_json` output back; a malformed row raises ValueError instead of half-loading."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"stored notification is not JSON: {exc.msg}") from None
    if not isinstance(doc, dict):
        raise ValueError("stored notification must be a JSON object")
    if doc.get("v") != _STORAGE_VERSION:
        raise ValueError(f"stored notification has unsupported version {doc.get('v')!r}")
    cluster = _obj(doc, "cluster")
    cause = _obj(doc, "cause")
    evidence = doc.get("evidence")
    remediation = doc.get("remediation")
    if not isinstance(evidence, list) or not all(
        isinstance(e, dict) and isinstance(e.get("resource"), str) and isinstance(e.get("detail"), str)
        for e in evidence
    ):
        raise ValueError("stored notification field 'evidence' must be a list of {resource, detail}")
    if not isinstance(remediation, list) or not all(isinstance(r, str) for r in remediation):
        raise ValueError("stored notification field 'remediation' must be a list of strings")
    event = _str(doc, "event")
    if event not in EVENTS:
        raise ValueError(f"stored notification has unknown event {event!r}")
    return Notification(
        event=event,
        finding_id=_str(doc, "findingId"),
        cluster=ClusterRef(
            id=_str(cluster, "id"), name=_str(cluster, "name"), subscription_id=_str(cluster, "subscriptionId")
        ),
        cause=CauseRef(id=_str(cause, "id"), title=_str(cause, "title"), status=_str(cause, "status")),
        subject=_str(doc, "subject"),
        summary=_str(doc, "summary"),
        evidence=tuple(Evidence(resource=e["resource"], detail=e["detail"]) for e in evidence),
        remediation=tuple(remediation),
        first_seen=_str(doc, "firstSeen"),
        last_seen=_str(doc, "lastSeen"),
    )


def _obj(doc: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = doc.get(key)
    if not isinstance(value, dict):
        raise ValueError(f"stored notification field {key!r} must be an object")
    return value


def _str(doc: Mapping[str, Any], key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str):
        raise ValueError(f"stored notification field {key!r} must be a string")
    return value


def _require_utc_timestamp(name: str, value: str) -> None:
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(f"notification {name} must be an ISO 8601 timestamp, not {value!r}") from None
    if parsed.utcoffset() is None or parsed.utcoffset() != UTC.utcoffset(None):
        raise ValueError(f"notification {name} must be in UTC (…Z or +00:00), not {value!r}")


ELLIPSIS = "…"


def truncate(text: str, limit: int) -> str:
    """Cuts `text` to at most `limit` characters, marking the cut with an ellipsis.

    Channels reject over-long fields outright (Slack answers `invalid_blocks`), so an alert that
    loses its tail is far better than one that is never delivered.
    """
    if limit < 1:
        raise ValueError("truncate limit must be at least 1")
    if len(text) <= limit:
        return text
    return text[: limit - 1] + ELLIPSIS
