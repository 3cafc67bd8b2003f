"""Outbox housekeeping on a real Azurite: retention purge, and pending rows found without a table scan."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.functions import context, ncrontab
from shared.functions.housekeeping import SCHEDULE, run_housekeeping
from shared.model import CauseId, CauseResult, Status
from shared.monitor.cycle import Monitor
from shared.notify.message import ClusterRef
from shared.settings import Settings, SettingsError
from shared.store.connection import Store
from shared.store.lifecycle import reconcile
from shared.store.outbox import (
    DEAD,
    DELIVERED,
    INDEX_PARTITION,
    PENDING,
    dispatch_pending,
    enqueue,
    housekeeping,
    list_outbox,
    purge,
)
from tests.azurite import isolated_store

pytestmark = pytest.mark.azurite

SUB = "0b1f6471-1bf0-4dda-aec3-111122223333"
T0 = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
CHANNELS = ("teams", "webhook")


@pytest.fixture
def store(azurite_connection: str) -> Iterator[Store]:
    with isolated_store(azurite_connection, channels=CHANNELS) as s:
        yield s


def cluster(i: int) -> ClusterRef:
    return ClusterRef(f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ContainerService/"
                      f"managedClusters/aks-{i}", f"aks-{i}", SUB)


def detected(status: Status = Status.DETECTED) -> CauseResult:
    return CauseResult(CauseId.SNAT, status, "SNAT exhaustion", "failed SNAT connections")


@dataclass
class Recorder:
    ok: bool = True
    sent: list[str] = field(default_factory=list)

    def __call__(self, channel: str, payload: str) -> Any:
        self.sent.append(channel)
        return _Outcome(self.ok)


@dataclass(frozen=True)
class _Outcome:
    delivered: bool
    status: int | None = 200
    retry_after_s: float | None = None
    permanent: bool = True
    error: str | None = "HTTP 404"


def index_rows(store: Store) -> list[dict[str, Any]]:
    return list(store.outbox.query_entities(f"PartitionKey eq '{INDEX_PARTITION}'"))


class CountingTable:
    """The outbox table, recording every query and how many entities each one returned."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.queries: list[tuple[str, int]] = []
        self.listed = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def query_entities(self, query_filter: str, **kwargs: Any) -> list[Any]:
        rows = list(self._real.query_entities(query_filter, **kwargs))
        self.queries.append((query_filter, len(rows)))
        return rows

    def list_entities(self, **kwargs: Any) -> list[Any]:
        self.listed += 1
        return list(self._real.list_entities(**kwargs))


def test_dispatch_reads_only_the_pending_index_not_the_whole_table(store: Store) -> None:
    for i in range(40):  # 80 delivered rows (2 channels) the dispatcher must not read
        reconcile(store, cluster(i), [detected()], T0)
    dispatch_pending(store, {"teams": Recorder(), "webhook": Recorder()}, T0)
    assert index_rows(store) == []
    reconcile(store, cluster(99), [detected()], T0 + timedelta(minutes=1))

    counting = CountingTable(store.outbox)
    teams, webhook = Recorder(), Recorder()
    report = dispatch_pending(replace(store, outbox=counting), {"teams": teams, "webhook": webhook},
                              T0 + timedelta(minutes=1))
    assert report.sent == 2
    assert counting.listed == 0
    assert counting.queries == [(f"PartitionKey eq '{INDEX_PARTITION}'", 2)]  # 2 index rows read, not 82
    assert index_rows(store) == []  # delivered rows leave the index


def test_enqueue_is_idempotent_and_a_crash_between_its_writes_heals(store: Store) -> None:
    assert enqueue(store, "teams", "n1", "{}", finding_id="f", event="detected", available_at=T0)
    assert not enqueue(store, "teams", "n1", "{}", finding_id="f", event="detected", available_at=T0)
    assert len(index_rows(store)) == 1
    assert len(list_outbox(store)) == 1  # the index partition is not an outbox row

    class DiesAfterIndexing:
        def __init__(self, real: Any) -> None:
            self._real = real

        def __getattr__(self, name: str) -> Any:
            return getattr(self._real, name)

        def create_entity(self, *_a: Any, **_k: Any) -> None:
            raise RuntimeError("worker killed")

    with pytest.raises(RuntimeError):
        enqueue(replace(store, outbox=DiesAfterIndexing(store.outbox)), "teams", "n2", "{}", finding_id="g",
                event="detected", available_at=T0)
    assert len(index_rows(store)) == 2
    # A young orphan stays (its enqueue may still be running); the retried enqueue completes it.
    dispatch_pending(store, {}, T0 + timedelta(minutes=1))
    assert len(index_rows(store)) == 2
    assert enqueue(store, "teams", "n2", "{}", finding_id="g", event="detected", available_at=T0)
    assert dispatch_pending(store, {"teams": Recorder()}, T0 + timedelta(minutes=2)).sent == 2
    assert index_rows(store) == []
    # A replayed relay after delivery re-creates only the index row; the next dispatch drops it unsent.
    assert not enqueue(store, "teams", "n1", "{}", finding_id="f", event="detected", available_at=T0)
    assert len(index_rows(store)) == 1
    again = Recorder()
    assert dispatch_pending(store, {"teams": again}, T0 + timedelta(minutes=3)).sent == 0
    assert again.sent == []
    assert index_rows(store) == []
    # An orphan never completed is dropped once it is older than the lease.
    with pytest.raises(RuntimeError):
        enqueue(replace(store, outbox=DiesAfterIndexing(store.outbox)), "teams", "n3", "{}", finding_id="h",
                event="detected", available_at=T0)
    dispatch_pending(store, {}, T0 + timedelta(hours=1))
    assert index_rows(store) == []


def test_purge_removes_delivered_and_dead_rows_after_retention_only(store: Store) -> None:
    reconcile(store, cluster(1), [detected()], T0)
    dispatch_pending(store, {"teams": Recorder(), "webhook": Recorder(ok=False)}, T0)  # webhook: 404 -> dead
    assert sorted(i.status for i in list_outbox(store)) == [DEAD, DELIVERED]
    reconcile(store, cluster(2), [detected()], T0)  # pending, and never delivered (no sender)
    week = timedelta(days=7)
    assert housekeeping(store, T0 + week - timedelta(minutes=1), week).purged == 0
    report = housekeeping(store, T0 + week + timedelta(minutes=1), week)
    assert report.purged == 2
    assert sorted((i.status, i.channel) for i in list_outbox(store)) == [(PENDING, "teams"), (PENDING, "webhook")]
    assert purge(store, T0 + timedelta(days=365)) == 0  # pending rows are never purged, however old
    with pytest.raises(ValueError, match="never purged"):
        purge(store, T0, statuses=(PENDING,))


def test_housekeeping_indexes_pending_rows_written_before_the_index(store: Store) -> None:
    reconcile(store, cluster(1), [detected()], T0)
    for row in index_rows(store):  # as a deployment that queued them before the index existed
        store.outbox.delete_entity(row["PartitionKey"], row["RowKey"])
    teams = Recorder()
    assert dispatch_pending(store, {"teams": teams}, T0).sent == 0
    assert housekeeping(store, T0).reindexed == 2
    assert dispatch_pending(store, {"teams": teams}, T0).sent == 1


def test_the_timer_uses_the_retention_setting(store: Store) -> None:
    settings = Settings.from_env({"OUTBOX_RETENTION_DAYS": "2"})
    assert settings.outbox_retention_days == 2
    assert Settings.from_env({}).outbox_retention_days == 7
    with pytest.raises(SettingsError, match="OUTBOX_RETENTION_DAYS"):
        Settings.from_env({"OUTBOX_RETENTION_DAYS": "0"})
    reconcile(store, cluster(1), [detected()], T0)
    dispatch_pending(store, {"teams": Recorder(), "webhook": Recorder()}, T0)
    clock = [T0 + timedelta(days=1)]
    context.use_monitor(Monitor(settings, store, env={}, now=lambda: clock[0]))
    try:
        assert run_housekeeping() == (0, 0)
        clock[0] = T0 + timedelta(days=2, minutes=1)
        assert run_housekeeping() == (2, 0)
    finally:
        context.reset()
    assert list_outbox(store) == []
    assert ncrontab.parse(SCHEDULE).hours == frozenset({3})  # daily, at night
