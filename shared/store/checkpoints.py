"""Small cursors that let a cycle pick up where the last one stopped.

PK = checkpoint kind (`activitylog`, `cycle`), RK = the key within it (a subscription id, a check
family), lower-cased through `key_part` so ARM casing never splits one cursor into two.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import UpdateMode

from shared.store.connection import Store
from shared.store.keys import join_key, key_part, truncate_text

ACTIVITY_LOG = "activitylog"
CYCLE = "cycle"


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
