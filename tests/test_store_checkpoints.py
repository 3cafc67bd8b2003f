"""Checkpoints, NSG snapshots and table bootstrap against a real Azurite."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from azure.data.tables import TableServiceClient

from shared.store.checkpoints import (
    get_activity_log_cursor,
    get_last_success,
    put_activity_log_cursor,
    put_last_success,
)
from shared.store.connection import Store, ensure_tables, open_store
from shared.store.snapshots import get_nsg_snapshot, put_nsg_snapshot, rule_set_hash
from shared.store.tables import DEFAULT_TABLES
from tests.azurite import isolated_store

pytestmark = pytest.mark.azurite

SUB = "0B1F6471-1bf0-4dda-aec3-111122223333"
NSG = f"/subscriptions/{SUB}/resourceGroups/My.RG_(1)/providers/Microsoft.Network/networkSecurityGroups/aks-nsg"
T0 = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)


@pytest.fixture
def store(azurite_connection: str) -> Iterator[Store]:
    with isolated_store(azurite_connection) as s:
        yield s


def test_activity_log_cursor_per_subscription(store: Store) -> None:
    assert get_activity_log_cursor(store, SUB) is None
    put_activity_log_cursor(store, SUB, T0 + timedelta(microseconds=123))
    put_activity_log_cursor(store, "other-sub", T0 - timedelta(days=1))
    assert get_activity_log_cursor(store, SUB.lower()) == T0 + timedelta(microseconds=123)
    put_activity_log_cursor(store, SUB, T0 + timedelta(minutes=15))
    assert get_activity_log_cursor(store, SUB) == T0 + timedelta(minutes=15)
    assert get_activity_log_cursor(store, "other-sub") == T0 - timedelta(days=1)


def test_last_success_per_check_family(store: Store) -> None:
    put_last_success(store, "nsg", T0, detail="42 clusters")
    put_last_success(store, "node-probes", T0 + timedelta(minutes=3))
    nsg = get_last_success(store, "nsg")
    assert nsg is not None
    assert nsg.at == T0
    assert nsg.detail == "42 clusters"
    probes = get_last_success(store, "node-probes")
    assert probes is not None
    assert probes.detail is None
    assert get_last_success(store, "snat") is None
    with pytest.raises(ValueError, match="timezone"):
        put_last_success(store, "nsg", datetime(2026, 1, 1))


def test_nsg_snapshot_detects_change(store: Store) -> None:
    rules = [{"name": "deny-10250", "priority": 100, "access": "Deny", "ports": ["10250"]}]
    same_rules_reordered = [{"ports": ["10250"], "access": "Deny", "priority": 100, "name": "deny-10250"}]
    first = rule_set_hash(rules)
    assert rule_set_hash(same_rules_reordered) == first
    assert put_nsg_snapshot(store, NSG, first, T0) is True
    assert put_nsg_snapshot(store, NSG.upper(), first, T0 + timedelta(minutes=1)) is False  # same NSG
    changed = rule_set_hash([{**rules[0], "access": "Allow"}])
    assert put_nsg_snapshot(store, NSG, changed, T0 + timedelta(minutes=2)) is True
    snapshot = get_nsg_snapshot(store, NSG)
    assert snapshot is not None
    assert snapshot.rule_hash == changed
    assert snapshot.nsg_id == NSG
    assert snapshot.seen_at == T0 + timedelta(minutes=2)
    assert get_nsg_snapshot(store, NSG + "-other") is None


def test_open_store_from_setting_creates_tables_idempotently(azurite_connection: str) -> None:
    names = DEFAULT_TABLES.namespaced("Boot" + str(T0.microsecond) + "x")
    env = {"AzureWebJobsStorage": azurite_connection}
    store = open_store(env, names=names, channels=("webhook",))
    service = TableServiceClient.from_connection_string(azurite_connection)
    try:
        ensure_tables(service, names)  # a second worker bootstrapping concurrently: 409 is fine
        existing = {t.name for t in service.list_tables()}
        assert set(names.all()) <= existing
        put_last_success(store, "nsg", T0)
        assert get_last_success(store, "nsg") is not None
    finally:
        for name in names.all():
            service.delete_table(name)
