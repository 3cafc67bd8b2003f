"""NSG rule-set hashes, so a cycle can tell an NSG changed without diffing full rule lists.

PK = subscription key (the `subscriptions:<id>` head of the NSG id), RK = the NSG id's key form; the
NSG id itself is kept as a property for people reading the table.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import UpdateMode

from shared.store.connection import Store
from shared.store.keys import join_key, key_part


@dataclass(frozen=True)
class NsgSnapshot:
    nsg_id: str
    rule_hash: str
    seen_at: datetime


def rule_set_hash(rules: Any) -> str:
    """sha256 of canonical JSON (sorted keys): equal rule sets hash equal whatever the dict order."""
    canonical = json.dumps(rules, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _keys(nsg_id: str) -> tuple[str, str]:
    parts = nsg_id.strip().strip("/").split("/")
    subscription = parts[1] if len(parts) > 1 and parts[0].lower() == "subscriptions" else "unscoped"
    return join_key(key_part(f"subscriptions/{subscription}")), join_key(key_part(nsg_id))


def get_nsg_snapshot(store: Store, nsg_id: str) -> NsgSnapshot | None:
    pk, rk = _keys(nsg_id)
    try:
        entity = store.nsg_snapshots.get_entity(pk, rk)
    except ResourceNotFoundError:
        return None
    return NsgSnapshot(nsg_id=str(entity["nsg_id"]), rule_hash=str(entity["rule_hash"]),
                       seen_at=datetime.fromisoformat(str(entity["seen_at"])).astimezone(UTC))


def put_nsg_snapshot(store: Store, nsg_id: str, rule_hash: str, seen_at: datetime) -> bool:
    """Records the NSG's current hash; True when it differs from the last one (or is the first)."""
    if seen_at.tzinfo is None:
        raise ValueError("snapshot times must be timezone-aware")
    previous = get_nsg_snapshot(store, nsg_id)
    pk, rk = _keys(nsg_id)
    store.nsg_snapshots.upsert_entity(
        {"PartitionKey": pk, "RowKey": rk, "nsg_id": nsg_id, "rule_hash": rule_hash,
         "seen_at": seen_at.astimezone(UTC).isoformat(timespec="microseconds")},
        mode=UpdateMode.REPLACE,
    )
    return previous is None or previous.rule_hash != rule_hash
