"""Persistence in Azure Table Storage: findings and their lifecycle, the notification outbox, cursors.

Table layout and key design: shared/store/tables.py; key encoding: shared/store/keys.py. Typical cycle::

    channels = channels_from_settings(os.environ)            # shared.notify.channels
    store = open_store(channels=tuple(c.name for c in channels))
    outcome = reconcile(store, cluster, results, checked_at)  # per cluster
    relay_stranded(store)                                     # optional: heal crashed relays fleet-wide
    dispatch_pending(store, senders_for(channels), now)
"""

from shared.store.checkpoints import (
    get_activity_log_cursor,
    get_last_success,
    put_activity_log_cursor,
    put_last_success,
)
from shared.store.connection import StorageNotConfiguredError, Store, open_store, settings_from_env
from shared.store.findings import Finding, FindingEvent, get_finding, history, list_findings
from shared.store.lifecycle import ReconcileConflictError, ReconcileOutcome, reconcile, relay_stranded
from shared.store.outbox import DispatchReport, Sender, dispatch_pending, list_outbox, senders_for
from shared.store.snapshots import get_nsg_snapshot, put_nsg_snapshot, rule_set_hash
from shared.store.tables import DEFAULT_TABLES, TableNames

__all__ = [
    "DEFAULT_TABLES",
    "DispatchReport",
    "Finding",
    "FindingEvent",
    "ReconcileConflictError",
    "ReconcileOutcome",
    "Sender",
    "StorageNotConfiguredError",
    "Store",
    "TableNames",
    "dispatch_pending",
    "get_activity_log_cursor",
    "get_finding",
    "get_last_success",
    "get_nsg_snapshot",
    "history",
    "list_findings",
    "list_outbox",
    "open_store",
    "put_activity_log_cursor",
    "put_last_success",
    "put_nsg_snapshot",
    "reconcile",
    "relay_stranded",
    "rule_set_hash",
    "senders_for",
    "settings_from_env",
]
