"""Azurite going away in the middle of a cycle: the cycle fails loudly, and a re-run loses nothing
and doubles nothing (exactly one finding, one event and one delivery per channel)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from azure.core.exceptions import AzureError
from azure.data.tables import TableClient, TableServiceClient

from shared.model import CauseId, CauseResult, Evidence, Status
from shared.notify.delivery import DeliveryResult
from shared.notify.message import ClusterRef, from_json
from shared.store.connection import Store, store_from_service
from shared.store.findings import history, list_findings
from shared.store.lifecycle import reconcile, relay_stranded
from shared.store.outbox import DeliveryOutcome, dispatch_pending, list_outbox
from shared.store.tables import DEFAULT_TABLES, TableNames
from tests.azurite import AzuriteServer, private_azurite

pytestmark = [pytest.mark.azurite, pytest.mark.slow]

SUB = "0b1f6471-1bf0-4dda-aec3-111122223333"
T0 = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
CHANNELS = ("teams", "webhook")
# Fail fast while the emulator is down instead of sitting in azure-core's connection retries.
FAST_FAIL = {"retry_total": 1, "retry_backoff_factor": 0.05, "connection_timeout": 2}


def cluster(n: int) -> ClusterRef:
    return ClusterRef(f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ContainerService/"
                      f"managedClusters/aks-{n}", f"aks-{n}", SUB)


RESULTS = [CauseResult(CauseId.NSG, Status.DETECTED, "NSG blocks 10250", "deny rule",
                       evidence=(Evidence("nsg-a", "priority 100 Deny 10250"),), subjects=("nsg-a/deny",))]


@pytest.fixture(scope="module")
def azurite() -> Iterator[AzuriteServer]:
    with private_azurite() as server:  # always private: these tests stop and restart it
        yield server


@pytest.fixture
def names() -> TableNames:
    return DEFAULT_TABLES.namespaced("R" + uuid.uuid4().hex[:10])


def open_store(server: AzuriteServer, names: TableNames) -> Store:
    """A fresh client per 'process', as a re-run after a crash would have."""
    service = TableServiceClient.from_connection_string(server.connection_string, **FAST_FAIL)
    return store_from_service(service, names=names, channels=CHANNELS)


class StopAzuriteBefore:
    """Wraps a TableClient: the `nth` call of `method` first stops Azurite, then goes ahead (and fails)."""

    def __init__(self, inner: Any, method: str, server: AzuriteServer, nth: int = 1) -> None:
        self._inner, self._method, self._server, self._left = inner, method, server, nth
        self.fired = False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name != self._method:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self._left -= 1
            if self._left == 0:
                self.fired = True
                self._server.stop()
            return attr(*args, **kwargs)

        return call


class Counter:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, channel: str, payload: str) -> DeliveryOutcome:
        n = from_json(payload)
        self.calls.append((n.finding_id, n.event))
        return DeliveryResult(channel, True, 200, None, False, "")


def assert_exactly_once(store: Store, clusters: int = 1) -> None:
    findings = list_findings(store, status="all")
    assert len(findings) == clusters
    assert {f.status for f in findings} == {"open"}
    for finding in findings:
        assert [e.event for e in history(store, finding.finding_id)] == ["detected"]
    for channel in CHANNELS:
        assert [i.event for i in list_outbox(store, channel=channel)] == ["detected"] * clusters
    teams, webhook = Counter(), Counter()
    report = dispatch_pending(store, {"teams": teams, "webhook": webhook}, T0 + timedelta(minutes=1))
    assert report.sent == 2 * clusters
    assert report.pending == 0
    assert len(teams.calls) == clusters
    assert len(set(teams.calls)) == clusters
    assert len(webhook.calls) == clusters
    assert dispatch_pending(store, {"teams": teams, "webhook": webhook}, T0 + timedelta(hours=1)).sent == 0


@pytest.mark.parametrize(
    ("table", "method"),
    [
        ("findings", "create_entity"),  # down before the transition commits
        ("finding_events", "create_entity"),  # committed, down before the event row
        ("outbox", "create_entity"),  # committed, down before the outbox rows
        ("findings", "update_entity"),  # everything written, down before the markers are cleared
    ],
)
def test_rerun_after_restart_mid_reconcile(azurite: AzuriteServer, names: TableNames, table: str,
                                           method: str) -> None:
    store = open_store(azurite, names)
    trap = StopAzuriteBefore(getattr(store, table), method, azurite)
    setattr(store, table, trap)
    try:
        with pytest.raises(AzureError):
            reconcile(store, cluster(1), RESULTS, T0)
        assert trap.fired
    finally:
        azurite.start()
    rerun = reconcile(open_store(azurite, names), cluster(1), RESULTS, T0)
    assert len(rerun.opened) + len(rerun.still_open) == 1
    assert_exactly_once(open_store(azurite, names))


def test_rerun_of_a_whole_cycle_after_restart(azurite: AzuriteServer, names: TableNames) -> None:
    """Three clusters; Azurite dies while the second one is relayed, so the third is never reached.
    The re-run of all three (same results, same cycle) ends with one notification per finding."""
    store = open_store(azurite, names)
    trap = StopAzuriteBefore(store.outbox, "create_entity", azurite, nth=3)  # cluster 1 = 2 rows
    store.outbox = cast(TableClient, trap)
    try:
        reconcile(store, cluster(1), RESULTS, T0)
        with pytest.raises(AzureError):
            reconcile(store, cluster(2), RESULTS, T0)
        assert trap.fired
    finally:
        azurite.start()
    store = open_store(azurite, names)
    for n in (1, 2, 3):
        reconcile(store, cluster(n), RESULTS, T0)
    assert relay_stranded(store) == 0
    assert_exactly_once(store, clusters=3)


def test_restart_between_send_and_mark_redelivers_rather_than_loses(azurite: AzuriteServer,
                                                                    names: TableNames) -> None:
    """At-least-once under crashes: the row stays claimed, then goes out again after the lease."""
    store = open_store(azurite, names)
    reconcile(store, cluster(1), RESULTS, T0)
    outbox = store.outbox
    store.outbox = cast(TableClient, StopAzuriteBefore(outbox, "update_entity", azurite, nth=2))  # 1 = claim, 2 = mark
    webhook = Counter()
    try:
        with pytest.raises(AzureError):
            dispatch_pending(store, {"webhook": webhook}, T0)
    finally:
        azurite.start()
    assert len(webhook.calls) == 1
    store = open_store(azurite, names)
    assert dispatch_pending(store, {"webhook": webhook}, T0 + timedelta(minutes=1)).sent == 0  # leased
    assert dispatch_pending(store, {"webhook": webhook}, T0 + timedelta(minutes=6)).sent == 1
    assert len(webhook.calls) == 2
    assert [i.status for i in list_outbox(store, channel="webhook")] == ["delivered"]
