"""The notification outbox: one row per (channel, notification), delivered by `dispatch_pending`.

Rows are keyed PK = channel, RK = notification id, so queueing the same notification twice is a
no-op (`enqueue` creates, never overwrites) and every channel keeps its own retry state: a webhook
that is down or throttling never holds back another channel. Delivery is exactly once in the normal
case (a row is claimed with an ETag lease before sending and marked delivered after) and at least
once after a crash between sending and marking (the lease expires and the row is sent again;
receivers de-duplicate on findingId + event + lastSeen).

Only the notification JSON (finding facts) is stored: no webhook URL, secret or signature, and
errors are scrubbed of URLs before they are stored or logged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from shared.notify.channels import Channel
from shared.notify.delivery import backoff_delay, deliver
from shared.notify.message import from_json
from shared.store.connection import Store
from shared.store.keys import join_key, join_property, key_part, odata_literal, split_property, truncate_text

log = logging.getLogger(__name__)

PENDING = "pending"
DELIVERED = "delivered"
DEAD = "dead"

DEFAULT_MAX_ATTEMPTS = 8
DEFAULT_LEASE = timedelta(minutes=5)
_ERROR_BUDGET = 1_000
_EVENT_RANK = {"detected": 0, "reminder": 1, "resolved": 2}


class DeliveryOutcome(Protocol):
    """What a sender reports; `shared.notify.delivery.DeliveryResult` has this shape."""

    @property
    def delivered(self) -> bool: ...
    @property
    def status(self) -> int | None: ...
    @property
    def retry_after_s(self) -> float | None: ...
    @property
    def permanent(self) -> bool: ...
    @property
    def error(self) -> str | None: ...


# (channel name, notification JSON as stored) -> outcome. Senders hold their URLs/secrets themselves.
Sender = Callable[[str, str], DeliveryOutcome]
Backoff = Callable[[int, float | None], float]


def stamp(moment: datetime) -> str:
    """Fixed-width UTC text, so string order is time order inside OData filters."""
    if moment.tzinfo is None:
        raise ValueError("outbox timestamps must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)
_SECRETISH = re.compile(r"(?i)\b(sig|signature|code|key|token|secret|password)=[^&\s]+")


def scrub(error: str | None) -> str:
    """Error text safe to store and log: URLs (webhook URLs are credentials) and key=value secrets go."""
    text = _SECRETISH.sub(r"\1=<redacted>", _URL.sub("<url>", error or ""))
    return truncate_text(text, _ERROR_BUDGET)


@dataclass(frozen=True)
class OutboxItem:
    channel: str
    notification_id: str
    finding_id: str
    event: str
    status: str
    attempts: int
    created_at: str
    next_attempt_at: str
    payload: str
    last_error: str | None
    last_status: int | None
    delivered_at: str | None
    etag: str | None = None


@dataclass(frozen=True)
class DispatchReport:
    """`failed` were attempted and will be retried; `pending` is everything still waiting afterwards."""

    sent: int
    failed: int
    pending: int
    dead: int = 0


def _row_key(notification_id: str) -> str:
    return join_key(key_part(notification_id))


def enqueue(store: Store, channel: str, notification_id: str, payload_json: str, *, finding_id: str,
            event: str, available_at: datetime) -> bool:
    """Queues a notification for one channel; False when it was already queued (idempotent)."""
    stamped = stamp(available_at)
    entity: dict[str, Any] = {
        "PartitionKey": join_key(key_part(channel)),
        "RowKey": _row_key(notification_id),
        "channel": channel,
        "notification_id": notification_id,
        "finding_id": finding_id,
        "event": event,
        "status": PENDING,
        "attempts": 0,
        "created_at": stamped,
        "next_attempt_at": stamped,
        **split_property("payload", payload_json),
    }
    try:
        store.outbox.create_entity(entity)
    except ResourceExistsError:
        return False
    return True


def _item(entity: Mapping[str, Any]) -> OutboxItem:
    metadata = getattr(entity, "metadata", {}) or {}
    last_status = entity.get("last_status")
    return OutboxItem(
        channel=str(entity["channel"]),
        notification_id=str(entity["notification_id"]),
        finding_id=str(entity.get("finding_id", "")),
        event=str(entity.get("event", "")),
        status=str(entity["status"]),
        attempts=int(entity.get("attempts", 0)),
        created_at=str(entity["created_at"]),
        next_attempt_at=str(entity["next_attempt_at"]),
        payload=join_property(entity, "payload"),
        last_error=entity.get("last_error") or None,
        last_status=int(last_status) if last_status is not None else None,
        delivered_at=entity.get("delivered_at") or None,
        etag=metadata.get("etag"),
    )


def _order(items: Iterable[OutboxItem]) -> list[OutboxItem]:
    return sorted(items, key=lambda i: (i.created_at, _EVENT_RANK.get(i.event, 9), i.notification_id))


def list_outbox(store: Store, status: str | None = None, channel: str | None = None) -> list[OutboxItem]:
    """Rows for operators and tests; dead rows stay here, visible, until someone purges them."""
    clauses = []
    if status:
        clauses.append(f"status eq {odata_literal(status)}")
    if channel:
        clauses.append(f"PartitionKey eq {odata_literal(join_key(key_part(channel)))}")
    entities = (store.outbox.query_entities(" and ".join(clauses)) if clauses
                else store.outbox.list_entities())
    return _order(_item(e) for e in entities)


def pending(store: Store, now: datetime) -> list[OutboxItem]:
    """Pending rows due at `now`, oldest first."""
    flt = f"status eq {odata_literal(PENDING)} and next_attempt_at le {odata_literal(stamp(now))}"
    return _order(_item(e) for e in store.outbox.query_entities(flt))


def _keys(item: OutboxItem) -> dict[str, str]:
    return {"PartitionKey": join_key(key_part(item.channel)), "RowKey": _row_key(item.notification_id)}


def _merge(store: Store, item: OutboxItem, changes: Mapping[str, Any], *, conditional: bool) -> str | None:
    """Merges `changes`; with `conditional`, only if the row is unchanged since `item` was read."""
    entity = {**_keys(item), **changes}
    try:
        if conditional and item.etag:
            meta = store.outbox.update_entity(entity, mode=UpdateMode.MERGE, etag=item.etag,
                                              match_condition=MatchConditions.IfNotModified)
        else:
            meta = store.outbox.update_entity(entity, mode=UpdateMode.MERGE)
    except (ResourceModifiedError, ResourceNotFoundError):
        return None
    return str(meta.get("etag")) if meta and meta.get("etag") else None


def claim(store: Store, item: OutboxItem, now: datetime, lease: timedelta = DEFAULT_LEASE) -> OutboxItem | None:
    """Takes a lease on a due row so a concurrent dispatcher skips it; None when someone else has it."""
    until = stamp(now + lease)
    etag = _merge(store, item, {"next_attempt_at": until}, conditional=True)
    if etag is None:
        return None
    return replace(item, next_attempt_at=until, etag=etag)


def mark_delivered(store: Store, item: OutboxItem, now: datetime, status: int | None = None) -> None:
    """Unconditional: once a channel accepted it, nothing may send it again."""
    _merge(store, item, {"status": DELIVERED, "delivered_at": stamp(now), "attempts": item.attempts + 1,
                         "last_status": status, "last_error": None}, conditional=False)


def mark_attempt_failed(store: Store, item: OutboxItem, next_attempt_at: datetime, error: str | None,
                        *, status: int | None = None) -> None:
    _merge(store, item, {"attempts": item.attempts + 1, "next_attempt_at": stamp(next_attempt_at),
                         "last_error": scrub(error), "last_status": status}, conditional=True)


def mark_dead(store: Store, item: OutboxItem, now: datetime, error: str | None,
              *, status: int | None = None) -> None:
    """Gives up on a row but keeps it (status `dead`) so an operator can see what never arrived."""
    _merge(store, item, {"status": DEAD, "attempts": item.attempts + 1, "dead_at": stamp(now),
                         "last_error": scrub(error), "last_status": status}, conditional=True)


@dataclass(frozen=True)
class _SenderCrashed:
    error: str
    delivered: bool = False
    status: int | None = None
    retry_after_s: float | None = None
    permanent: bool = False


def _send(sender: Sender, item: OutboxItem) -> DeliveryOutcome:
    try:
        return sender(item.channel, item.payload)
    except Exception as exc:  # a broken channel must not stop the others
        return _SenderCrashed(error=f"{type(exc).__name__}: {exc}")


def dispatch_pending(store: Store, senders: Mapping[str, Sender], now: datetime, *,
                     max_attempts: int = DEFAULT_MAX_ATTEMPTS, backoff: Backoff = backoff_delay,
                     lease: timedelta = DEFAULT_LEASE) -> DispatchReport:
    """Sends every due row through its channel's sender; channels progress independently.

    Within one (channel, finding) rows go out in order: a `resolved` never overtakes the `detected`
    still waiting for a retry. A channel that asked to back off (Retry-After) is left alone for the
    rest of this run instead of being hammered row after row.
    """
    rows = [_item(e) for e in store.outbox.query_entities(f"status eq {odata_literal(PENDING)}")]
    now_text = stamp(now)
    held: set[tuple[str, str]] = set()
    backing_off: set[str] = set()
    sent = failed = dead = waiting = 0
    for row in _order(rows):
        lane = (row.channel, row.finding_id)
        sender = senders.get(row.channel)
        if lane in held or row.channel in backing_off or sender is None or row.next_attempt_at > now_text:
            held.add(lane)
            waiting += 1
            continue
        claimed = claim(store, row, now, lease)
        if claimed is None:
            held.add(lane)
            waiting += 1
            continue
        outcome = _send(sender, claimed)
        if outcome.delivered:
            mark_delivered(store, claimed, now, outcome.status)
            sent += 1
            continue
        held.add(lane)
        attempts = claimed.attempts + 1
        if outcome.permanent or attempts >= max_attempts:
            mark_dead(store, claimed, now, outcome.error, status=outcome.status)
            log.warning("notification %s on channel %s is dead after %d attempt(s): %s",
                        row.notification_id, row.channel, attempts, scrub(outcome.error))
            dead += 1
            continue
        delay = backoff(attempts, outcome.retry_after_s)
        mark_attempt_failed(store, claimed, now + timedelta(seconds=delay), outcome.error, status=outcome.status)
        log.info("notification %s on channel %s failed (attempt %d, retry in %.0fs): %s",
                 row.notification_id, row.channel, attempts, delay, scrub(outcome.error))
        if outcome.retry_after_s:
            backing_off.add(row.channel)
        failed += 1
        waiting += 1
    return DispatchReport(sent=sent, failed=failed, pending=waiting, dead=dead)


def purge(store: Store, before: datetime, statuses: Iterable[str] = (DELIVERED,)) -> int:
    """Deletes finished rows older than `before` (the outbox is a queue, not an archive)."""
    cutoff = odata_literal(stamp(before))
    count = 0
    for status in statuses:
        flt = f"status eq {odata_literal(status)} and created_at lt {cutoff}"
        for entity in store.outbox.query_entities(flt):
            store.outbox.delete_entity(entity["PartitionKey"], entity["RowKey"])
            count += 1
    return count


def senders_for(channels: Iterable[Channel], **deliver_options: Any) -> dict[str, Sender]:
    """Senders that POST through `shared.notify.delivery.deliver`; URLs and secrets stay in `Channel`."""

    def sender_for(channel: Channel) -> Sender:
        def send(_channel_name: str, payload_json: str) -> DeliveryOutcome:
            return deliver(channel, from_json(payload_json), **deliver_options)

        return send

    return {channel.name: sender_for(channel) for channel in channels}
