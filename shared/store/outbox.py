"""The notification outbox: one row per (channel, notification), delivered by `dispatch_pending`.

Rows are keyed PK = channel, RK = notification id, so queueing the same notification twice is a
no-op (`enqueue` creates, never overwrites) and every channel keeps its own retry state: a webhook
that is down or throttling never holds back another channel. Delivery is exactly once in the normal
case (a row is claimed with an ETag lease before sending and marked delivered after) and at least
once after a crash between sending and marking (the lease expires and the row is sent again;
receivers de-duplicate on findingId + event + lastSeen).

Only the notification JSON (finding facts) is stored: no webhook URL, secret or signature, and
errors are scrubbed of URLs before they are stored or logged.

Pending index. `status` is not a key, so "which rows are pending" would scan the whole table on every
dispatch. Each pending row therefore has an index row in the partition `~pending` (a name `key_part`
can never produce, so no channel partition collides with it), RK = `<channel>|<notification id>`.
`enqueue` upserts the index row *before* creating the row (both idempotent), and a row leaves the
index when it is delivered or dead. Whatever a crash leaves behind heals itself: an index row whose
row is finished (or missing for longer than a lease) is deleted by the next dispatch, and
`reindex_pending` (run by the housekeeping timer) re-indexes pending rows that predate the index.

Housekeeping. The outbox is a queue, not an archive: `purge` deletes delivered and dead rows whose
retention (`OUTBOX_RETENTION_DAYS`) has passed since they were delivered / given up.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from shared.notify.channels import Channel
from shared.notify.delivery import backoff_delay, deliver
from shared.notify.message import from_json
from shared.redaction import redact_text
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
    text = _SECRETISH.sub(r"\1=<redacted>", _URL.sub("<url>", redact_text(error or "")))
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


INDEX_PARTITION = "~pending"
DEFAULT_RETENTION = timedelta(days=7)


def _row_key(notification_id: str) -> str:
    return join_key(key_part(notification_id))


def _index_keys(channel: str, notification_id: str) -> dict[str, str]:
    return {"PartitionKey": INDEX_PARTITION, "RowKey": join_key(key_part(channel), key_part(notification_id))}


def _index(store: Store, channel: str, notification_id: str, *, finding_id: str, event: str,
           created_at: str) -> None:
    """Idempotent (upsert): writing the index row again for the same notification changes nothing."""
    store.outbox.upsert_entity({**_index_keys(channel, notification_id), "channel": channel,
                                "notification_id": notification_id, "finding_id": finding_id,
                                "event": event, "created_at": created_at}, mode=UpdateMode.REPLACE)


def _unindex(store: Store, channel: str, notification_id: str) -> None:
    keys = _index_keys(channel, notification_id)
    with suppress(ResourceNotFoundError):
        store.outbox.delete_entity(keys["PartitionKey"], keys["RowKey"])


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
    _index(store, channel, notification_id, finding_id=finding_id, event=event, created_at=stamped)
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
    return _order(_item(e) for e in entities if e["PartitionKey"] != INDEX_PARTITION)


def pending_rows(store: Store, now: datetime, lease: timedelta = DEFAULT_LEASE) -> list[OutboxItem]:
    """Every pending row, found through the index partition (one partition query + a point read each).

    Index rows that no longer point at a pending row are removed on the way: finished rows, and rows
    missing for longer than `lease` (an `enqueue` that died between its two writes, never retried).
    """
    rows: list[OutboxItem] = []
    stale = stamp(now - lease)
    for index in store.outbox.query_entities(f"PartitionKey eq {odata_literal(INDEX_PARTITION)}"):
        channel, nid = str(index["channel"]), str(index["notification_id"])
        try:
            entity = store.outbox.get_entity(join_key(key_part(channel)), _row_key(nid))
        except ResourceNotFoundError:
            if str(index.get("created_at", "")) < stale:
                _unindex(store, channel, nid)
            continue
        if entity.get("status") != PENDING:
            _unindex(store, channel, nid)
            continue
        rows.append(_item(entity))
    return _order(rows)


def pending(store: Store, now: datetime) -> list[OutboxItem]:
    """Pending rows due at `now`, oldest first."""
    due = stamp(now)
    return [item for item in pending_rows(store, now) if item.next_attempt_at <= due]


def reindex_pending(store: Store) -> int:
    """Adds index rows for pending rows written before the index existed (a table scan: housekeeping only)."""
    count = 0
    for entity in store.outbox.query_entities(f"status eq {odata_literal(PENDING)}"):
        if entity["PartitionKey"] == INDEX_PARTITION:
            continue
        item = _item(entity)
        _index(store, item.channel, item.notification_id, finding_id=item.finding_id, event=item.event,
               created_at=item.created_at)
        count += 1
    return count


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
    _unindex(store, item.channel, item.notification_id)


def mark_attempt_failed(store: Store, item: OutboxItem, next_attempt_at: datetime, error: str | None,
                        *, status: int | None = None) -> None:
    _merge(store, item, {"attempts": item.attempts + 1, "next_attempt_at": stamp(next_attempt_at),
                         "last_error": scrub(error), "last_status": status}, conditional=True)


def mark_dead(store: Store, item: OutboxItem, now: datetime, error: str | None,
              *, status: int | None = None) -> None:
    """Gives up on a row but keeps it (status `dead`) so an operator can see what never arrived."""
    if _merge(store, item, {"status": DEAD, "attempts": item.attempts + 1, "dead_at": stamp(now),
                            "last_error": scrub(error), "last_status": status}, conditional=True) is not None:
        _unindex(store, item.channel, item.notification_id)


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
    rows = pending_rows(store, now, lease)
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


_FINISHED_AT = {DELIVERED: "delivered_at", DEAD: "dead_at"}


def purge(store: Store, before: datetime, statuses: Iterable[str] = (DELIVERED, DEAD)) -> int:
    """Deletes finished rows (delivered, dead) that finished before `before`; returns how many.

    A filtered scan, but only from the housekeeping timer, never per message. Pending rows are never
    purged, whatever their age.
    """
    cutoff = odata_literal(stamp(before))
    count = 0
    for status in statuses:
        if status == PENDING:
            raise ValueError("pending rows are never purged")
        field_name = _FINISHED_AT.get(status, "created_at")
        flt = f"status eq {odata_literal(status)} and {field_name} lt {cutoff}"
        for entity in store.outbox.query_entities(flt, select=["PartitionKey", "RowKey"]):
            with suppress(ResourceNotFoundError):
                store.outbox.delete_entity(entity["PartitionKey"], entity["RowKey"])
            count += 1
    return count


@dataclass(frozen=True)
class HousekeepingReport:
    purged: int
    reindexed: int


def housekeeping(store: Store, now: datetime, retention: timedelta = DEFAULT_RETENTION) -> HousekeepingReport:
    """The scheduled outbox chores: purge finished rows past retention, re-index stray pending rows."""
    if retention <= timedelta(0):
        raise ValueError("outbox retention must be positive")
    purged = purge(store, now - retention)
    reindexed = reindex_pending(store)
    log.info("outbox housekeeping: %d finished row(s) purged, %d pending row(s) indexed", purged, reindexed)
    return HousekeepingReport(purged=purged, reindexed=reindexed)


def senders_for(channels: Iterable[Channel], **deliver_options: Any) -> dict[str, Sender]:
    """Senders that POST through `shared.notify.delivery.deliver`; URLs and secrets stay in `Channel`."""

    def sender_for(channel: Channel) -> Sender:
        def send(_channel_name: str, payload_json: str) -> DeliveryOutcome:
            return deliver(channel, from_json(payload_json), **deliver_options)

        return send

    return {channel.name: sender_for(channel) for channel in channels}
