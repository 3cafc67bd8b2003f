"""Small cursors that let a cycle pick up where the last one stopped, and the state of cycles in flight.

PK = checkpoint kind, RK = the key within it, lower-cased through `key_part` so ARM casing never splits one
cursor into two. Kinds (all in the checkpoints table):

activitylog            RK = subscription: where the last Activity Log read stopped.
activityevents         RK = subscription: the NSG writes/deletes of the last ACTIVITY_WINDOW_HOURS, stored by
                       the nsg timer (one Activity Log read per subscription per cycle) for its workers.
cycle                  RK = family: when the family last completed a full cycle (`lastSuccessfulCycle`).
cyclerun               RK = family: the family's current cycle: id, start, how many clusters it fanned out to.
cycledone|<fam>|<id>   RK = cluster key: one row per cluster the cycle's workers finished (`ok` or `failed`).
                       Idempotent: a redelivered message rewrites its own row, so counting rows is counting
                       clusters. A cycle is complete when every cluster it fanned out to has a row, and
                       successful when it is complete, no row is `failed` and fleet discovery had no error.
runcommand             RK = VMSS VM key: a run-command in flight on that VM (start time, owning attempt).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from shared.snapshot import ActivityEvent, Unavailable
from shared.store.connection import Store
from shared.store.keys import join_key, join_property, key_part, odata_literal, split_property, truncate_text

log = logging.getLogger(__name__)

ACTIVITY_LOG = "activitylog"
ACTIVITY_EVENTS = "activityevents"
CYCLE = "cycle"
CYCLE_RUN = "cyclerun"
CYCLE_DONE = "cycledone"
RUN_COMMAND = "runcommand"
MAX_STORED_EVENTS = 2_000  # newest first; the events are evidence ("introduced by"), never a verdict


@dataclass(frozen=True)
class Checkpoint:
    kind: str
    key: str
    at: datetime
    detail: str | None = None


def _entity_keys(kind: str, key: str) -> tuple[str, str]:
    return join_key(key_part(kind)), join_key(key_part(key))


def get_checkpoint(store: Store, kind: str, key: str) -> Checkpoint | None:
    pk, rk = _entity_keys(kind, key)
    try:
        entity = store.checkpoints.get_entity(pk, rk)
    except ResourceNotFoundError:
        return None
    return Checkpoint(kind=kind, key=str(entity.get("key", key)), at=_parse(str(entity["at"])),
                      detail=entity.get("detail") or None)


def put_checkpoint(store: Store, kind: str, key: str, at: datetime, detail: str | None = None) -> None:
    """Last writer wins: a cursor that moves back only costs re-reading a little, never losing data."""
    pk, rk = _entity_keys(kind, key)
    store.checkpoints.upsert_entity(
        {"PartitionKey": pk, "RowKey": rk, "kind": kind, "key": key, "at": _format(at),
         "detail": truncate_text(detail, 2_000) if detail else None},
        mode=UpdateMode.REPLACE,
    )


def get_activity_log_cursor(store: Store, subscription_id: str) -> datetime | None:
    """Where the last Activity Log read (NSG writes/deletes) of this subscription stopped."""
    checkpoint = get_checkpoint(store, ACTIVITY_LOG, subscription_id)
    return checkpoint.at if checkpoint else None


def put_activity_log_cursor(store: Store, subscription_id: str, at: datetime) -> None:
    put_checkpoint(store, ACTIVITY_LOG, subscription_id, at)


def get_last_success(store: Store, family: str) -> Checkpoint | None:
    """When a check family (e.g. `nsg`, `node-probes`, `snat`) last completed a full cycle."""
    return get_checkpoint(store, CYCLE, family)


def put_last_success(store: Store, family: str, at: datetime, detail: str | None = None) -> None:
    put_checkpoint(store, CYCLE, family, at, detail)


def _format(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("checkpoint times must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# ---------------------------------------------------------------- Activity Log events per subscription


def put_activity_events(store: Store, subscription_id: str, events: Sequence[ActivityEvent] | Unavailable,
                        read_at: datetime) -> None:
    """The subscription's NSG changes for this cycle's workers (or why they could not be read)."""
    pk, rk = _entity_keys(ACTIVITY_EVENTS, subscription_id)
    entity: dict[str, object] = {"PartitionKey": pk, "RowKey": rk, "subscription_id": subscription_id,
                                 "read_at": _format(read_at)}
    if isinstance(events, Unavailable):
        entity["unavailable"] = truncate_text(events.reason, 2_000)
    else:
        newest = sorted(events, key=lambda e: e.timestamp, reverse=True)[:MAX_STORED_EVENTS]
        rows = [[e.operation, e.resource_id, e.caller, e.timestamp, e.status] for e in newest]
        entity.update(split_property("events", json.dumps(rows, separators=(",", ":"))))
    store.checkpoints.upsert_entity(entity, mode=UpdateMode.REPLACE)


def get_activity_events(store: Store, subscription_id: str) -> tuple[tuple[ActivityEvent, ...] | Unavailable,
                                                                     datetime | None]:
    """(events or why they are missing, when they were read); never read the Activity Log per cluster."""
    pk, rk = _entity_keys(ACTIVITY_EVENTS, subscription_id)
    try:
        entity = store.checkpoints.get_entity(pk, rk)
    except ResourceNotFoundError:
        return Unavailable("the subscription's Activity Log has not been read by the nsg timer yet"), None
    read_at = _parse(str(entity["read_at"]))
    if entity.get("unavailable"):
        return Unavailable(str(entity["unavailable"])), read_at
    rows = json.loads(join_property(entity, "events") or "[]")
    return tuple(ActivityEvent(str(o), str(r), str(c), str(t), str(st)) for o, r, c, t, st in rows), read_at


# ---------------------------------------------------------------- cycle progress


@dataclass(frozen=True)
class CycleProgress:
    family: str
    cycle_id: str
    started: datetime
    clusters: int
    done: int
    failed: int
    errors: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return self.done >= self.clusters

    @property
    def successful(self) -> bool:
        return self.complete and not self.failed and not self.errors

    def to_json(self) -> dict[str, object]:
        return {"cycleId": self.cycle_id, "startedAt": _format(self.started).replace("+00:00", "Z"),
                "clusters": self.clusters, "done": self.done, "failed": self.failed,
                "complete": self.complete, "errors": list(self.errors)}


def _done_partition(family: str, cycle_id: str) -> str:
    return join_key(key_part(CYCLE_DONE), key_part(family), key_part(cycle_id))


def start_cycle(store: Store, family: str, cycle_id: str, started: datetime, *, clusters: int,
                errors: Sequence[str] = ()) -> None:
    """The timer's record of a new cycle; the previous one is settled first so its success is not lost."""
    settle_cycle(store, family)
    pk, rk = _entity_keys(CYCLE_RUN, family)
    store.checkpoints.upsert_entity(
        {"PartitionKey": pk, "RowKey": rk, "family": family, "cycle_id": cycle_id, "started": _format(started),
         "clusters": clusters, "errors": truncate_text(json.dumps(list(errors)[:20]), 8_000)},
        mode=UpdateMode.REPLACE,
    )


def complete_cluster(store: Store, family: str, cycle_id: str, cluster_id: str, *, ok: bool,
                     detail: str | None = None) -> None:
    """A worker finished this cluster for this cycle (idempotent: redelivery rewrites the same row)."""
    store.checkpoints.upsert_entity(
        {"PartitionKey": _done_partition(family, cycle_id), "RowKey": join_key(key_part(cluster_id)),
         "cluster_id": cluster_id, "outcome": "ok" if ok else "failed",
         "detail": truncate_text(detail, 2_000) if detail else None},
        mode=UpdateMode.REPLACE,
    )


def cycle_progress(store: Store, family: str) -> CycleProgress | None:
    """How far the family's current cycle got (one small partition query over its completion rows)."""
    pk, rk = _entity_keys(CYCLE_RUN, family)
    try:
        run = store.checkpoints.get_entity(pk, rk)
    except ResourceNotFoundError:
        return None
    cycle_id = str(run["cycle_id"])
    rows = store.checkpoints.query_entities(
        f"PartitionKey eq {odata_literal(_done_partition(family, cycle_id))}", select=["RowKey", "outcome"])
    done = failed = 0
    for row in rows:
        done += 1
        failed += row.get("outcome") == "failed"
    return CycleProgress(family, cycle_id, _parse(str(run["started"])), int(run["clusters"]), done, failed,
                         tuple(json.loads(run.get("errors") or "[]")))


def settle_cycle(store: Store, family: str) -> CycleProgress | None:
    """Advance `lastSuccessfulCycle` when the current cycle has completed without failures; returns progress.

    Called by health, by the next timer before it starts a new cycle, and by `scan` at its end: whoever
    looks first records it, and recording twice writes the same value.
    """
    progress = cycle_progress(store, family)
    if progress is None or not progress.successful:
        return progress
    last = get_last_success(store, family)
    if last is None or last.at < progress.started:
        put_last_success(store, family, progress.started,
                         detail=f"{progress.clusters} clusters (cycle {progress.cycle_id})")
    return progress


# ---------------------------------------------------------------- run-commands in flight


class TableRunCommandLedger:
    """In-flight run-commands per VMSS VM, so a redelivered check never starts a second one next to the first.

    `claim` is an insert (409 if the row exists); a row older than `stale_after` belongs to an attempt
    that is long gone and is taken over with an ETag-conditional replace, so two attempts cannot both win.
    A run-command whose wait timed out is deliberately not released: it may still be running.
    """

    def __init__(self, store: Store, owner: str, *, stale_after: timedelta = timedelta(minutes=20)) -> None:
        self.store = store
        self.owner = owner
        self.stale_after = stale_after

    def _keys(self, node_key: str) -> tuple[str, str]:
        return _entity_keys(RUN_COMMAND, node_key)

    def claim(self, node_key: str, *, again: bool = True) -> str | None:
        """None when this attempt may start the run-command; otherwise why not (never raises: a storage error
        leaves that one node unknown instead of failing the whole cluster check)."""
        from azure.core.exceptions import AzureError

        try:
            return self._claim(node_key, again=again)
        except AzureError as exc:
            log.warning("run-command ledger unavailable: %s", type(exc).__name__)
            return (f"could not record the run-command in storage ({type(exc).__name__}), so it was not started "
                    "(a redelivered check could otherwise start a second one); the node is probed next cycle")

    def _claim(self, node_key: str, *, again: bool) -> str | None:
        pk, rk = self._keys(node_key)
        now = datetime.now(UTC)
        entity = {"PartitionKey": pk, "RowKey": rk, "node": truncate_text(node_key, 2_000), "owner": self.owner,
                  "started": _format(now)}
        try:
            self.store.checkpoints.create_entity(entity)
            return None
        except ResourceExistsError:
            pass
        try:
            current = self.store.checkpoints.get_entity(pk, rk)
        except ResourceNotFoundError:  # released in between: try once more
            return self._claim(node_key, again=False) if again else "the node's run-command slot kept changing"
        started = _parse(str(current["started"]))
        if current.get("owner") == self.owner:
            return None
        if now - started < self.stale_after:
            return (f"a run-command started on this node at {_format(started)} by an earlier attempt of this "
                    "check may still be running; not starting a second one (the node is probed next cycle)")
        try:
            self.store.checkpoints.update_entity(entity, mode=UpdateMode.REPLACE, etag=current.metadata["etag"],
                                                 match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError):
            return "another attempt of this check took this node's run-command slot at the same moment"
        return None

    def release(self, node_key: str) -> None:
        """Best effort: a slot left behind only delays the next attempt on that node until it is stale."""
        from azure.core.exceptions import AzureError

        pk, rk = self._keys(node_key)
        try:
            current = self.store.checkpoints.get_entity(pk, rk)
            if current.get("owner") == self.owner:
                self.store.checkpoints.delete_entity(pk, rk, etag=current.metadata["etag"],
                                                     match_condition=MatchConditions.IfNotModified)
        except (ResourceNotFoundError, ResourceModifiedError):
            return
        except AzureError as exc:
            log.warning("run-command ledger: could not release a slot: %s", type(exc).__name__)
