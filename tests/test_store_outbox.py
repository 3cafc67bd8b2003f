"""Outbox and dispatcher against a real Azurite: once-only delivery, independent channels, backoff."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from shared.model import CauseId, CauseResult, Evidence, Status
from shared.notify.delivery import DeliveryResult
from shared.notify.message import ClusterRef, from_json
from shared.store.connection import Store
from shared.store.lifecycle import reconcile
from shared.store.outbox import (
    DEAD,
    DELIVERED,
    PENDING,
    DeliveryOutcome,
    claim,
    dispatch_pending,
    list_outbox,
    pending,
    purge,
    scrub,
)
from tests.azurite import isolated_store

pytestmark = pytest.mark.azurite

SUB = "0b1f6471-1bf0-4dda-aec3-111122223333"
CLUSTER = ClusterRef(f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ContainerService/"
                     "managedClusters/aks-1", "aks-1", SUB)
T0 = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
HOOK = "https://prod-00.westeurope.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?sig=SECRETSIG"


@pytest.fixture
def store(azurite_connection: str) -> Iterator[Store]:
    with isolated_store(azurite_connection, channels=("teams", "webhook")) as s:
        yield s


def result(status: Status, subject: str = "node-0") -> CauseResult:
    return CauseResult(CauseId.UFW, status, "UFW blocks 10250", f"ufw says {status}",
                       evidence=(Evidence(subject, "DENY IN 10250/tcp"),), remediation=("ufw allow 10250",),
                       reason="timeout" if status is Status.UNKNOWN else None, subjects=(subject,))


def ok(channel: str) -> DeliveryResult:
    return DeliveryResult(channel, True, 200, None, False, "")


class Recorder:
    """A channel double: answers from `behaviour` and records (finding, event) per call."""

    def __init__(self, behaviour: Callable[[str, int], DeliveryOutcome] | None = None, delay_s: float = 0):
        self.calls: list[tuple[str, str]] = []
        self._behaviour = behaviour or (lambda channel, _n: ok(channel))
        self._delay_s = delay_s
        self._lock = threading.Lock()

    def __call__(self, channel: str, payload: str) -> DeliveryOutcome:
        n = from_json(payload)
        with self._lock:
            self.calls.append((n.finding_id, n.event))
            count = len(self.calls)
        if self._delay_s:
            time.sleep(self._delay_s)
        return self._behaviour(channel, count)


def test_each_notification_is_delivered_once_per_channel(store: Store) -> None:
    reconcile(store, CLUSTER, [result(Status.DETECTED)], T0)
    teams, webhook = Recorder(), Recorder()
    report = dispatch_pending(store, {"teams": teams, "webhook": webhook}, T0 + timedelta(seconds=1))
    assert (report.sent, report.failed, report.pending, report.dead) == (2, 0, 0, 0)
    again = dispatch_pending(store, {"teams": teams, "webhook": webhook}, T0 + timedelta(minutes=5))
    assert again.sent == 0
    assert [e for _, e in teams.calls] == ["detected"]
    assert [e for _, e in webhook.calls] == ["detected"]
    assert {i.status for i in list_outbox(store)} == {DELIVERED}
    assert pending(store, T0 + timedelta(days=1)) == []


def test_a_failing_channel_never_blocks_another(store: Store) -> None:
    reconcile(store, CLUSTER, [result(Status.DETECTED, "node-0"), result(Status.DETECTED, "node-1")], T0)

    def broken(_channel: str, _n: int) -> DeliveryOutcome:
        raise ConnectionError(f"could not reach {HOOK}")

    teams, webhook = Recorder(broken), Recorder()
    report = dispatch_pending(store, {"teams": teams, "webhook": webhook}, T0 + timedelta(seconds=1))
    assert report.sent == 2
    assert report.failed == 2
    assert report.pending == 2
    assert len(webhook.calls) == 2
    assert len(teams.calls) == 2
    failed = list_outbox(store, channel="teams")
    assert {i.status for i in failed} == {PENDING}
    assert {i.attempts for i in failed} == {1}
    for item in failed:
        assert item.last_error is not None
        assert "ConnectionError" in item.last_error
        assert "SECRETSIG" not in item.last_error
        assert "logic.azure.com" not in item.last_error
    # Nothing about where a channel points is ever stored.
    for entity in store.outbox.list_entities():
        assert not any("SECRETSIG" in str(v) or "logic.azure.com" in str(v) for v in entity.values())


def test_retry_after_is_honoured(store: Store) -> None:
    reconcile(store, CLUSTER, [result(Status.DETECTED)], T0)

    def throttled_then_ok(channel: str, n: int) -> DeliveryOutcome:
        if n == 1:
            return DeliveryResult(channel, False, 429, 120.0, False, "teams: throttled (429)")
        return ok(channel)

    teams = Recorder(throttled_then_ok)
    senders = {"teams": teams, "webhook": Recorder()}
    first = dispatch_pending(store, senders, T0)
    assert first.failed == 1
    assert first.sent == 1
    (item,) = list_outbox(store, channel="teams")
    assert item.last_status == 429
    assert item.next_attempt_at >= "2026-11-27T18:02:00"
    assert dispatch_pending(store, senders, T0 + timedelta(seconds=100)).sent == 0
    assert len(teams.calls) == 1
    late = dispatch_pending(store, senders, T0 + timedelta(seconds=121))
    assert late.sent == 1
    assert len(teams.calls) == 2
    (item,) = list_outbox(store, channel="teams")
    assert item.status == DELIVERED
    assert item.attempts == 2


def test_permanent_failure_is_dead_but_kept_visible(store: Store) -> None:
    reconcile(store, CLUSTER, [result(Status.DETECTED)], T0)

    def gone(channel: str, _n: int) -> DeliveryOutcome:
        return DeliveryResult(channel, False, 404, None, True, "teams: webhook not found (404)")

    report = dispatch_pending(store, {"teams": Recorder(gone), "webhook": Recorder()}, T0)
    assert report.dead == 1
    assert report.sent == 1
    (dead,) = list_outbox(store, status=DEAD)
    assert dead.channel == "teams"
    assert dead.last_status == 404
    assert dead.attempts == 1
    assert dispatch_pending(store, {"teams": Recorder(), "webhook": Recorder()}, T0 + timedelta(days=1)).sent == 0


def test_transient_failures_turn_dead_after_max_attempts(store: Store) -> None:
    reconcile(store, CLUSTER, [result(Status.DETECTED)], T0)

    def flaky(channel: str, _n: int) -> DeliveryOutcome:
        return DeliveryResult(channel, False, 503, None, False, "teams: 503")

    teams = Recorder(flaky)
    now = T0
    for _ in range(3):
        dispatch_pending(store, {"teams": teams}, now, max_attempts=3, backoff=lambda _a, _r: 10.0)
        now += timedelta(seconds=11)
    assert len(teams.calls) == 3
    (item,) = list_outbox(store, channel="teams")
    assert item.status == DEAD
    assert item.attempts == 3
    # The channel without a sender this run stays pending rather than being dropped.
    (waiting,) = list_outbox(store, channel="webhook")
    assert waiting.status == PENDING


def test_resolved_never_overtakes_an_undelivered_detected(store: Store) -> None:
    reconcile(store, CLUSTER, [result(Status.DETECTED)], T0)

    def down(channel: str, _n: int) -> DeliveryOutcome:
        return DeliveryResult(channel, False, 502, None, False, "bad gateway")

    dispatch_pending(store, {"webhook": Recorder(down)}, T0, backoff=lambda _a, _r: 600.0)
    reconcile(store, CLUSTER, [result(Status.CLEAR)], T0 + timedelta(minutes=1))
    webhook = Recorder()
    held = dispatch_pending(store, {"webhook": webhook}, T0 + timedelta(minutes=2))
    assert held.sent == 0
    assert webhook.calls == []
    released = dispatch_pending(store, {"webhook": webhook}, T0 + timedelta(minutes=11))
    assert released.sent == 2
    assert [e for _, e in webhook.calls] == ["detected", "resolved"]


def test_concurrent_dispatchers_deliver_once(store: Store) -> None:
    reconcile(store, CLUSTER, [result(Status.DETECTED, f"node-{i}") for i in range(5)], T0)
    teams, webhook = Recorder(delay_s=0.05), Recorder(delay_s=0.05)
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            dispatch_pending(store, {"teams": teams, "webhook": webhook}, T0 + timedelta(seconds=1))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert sorted(teams.calls) == sorted(set(teams.calls))
    assert len(teams.calls) == 5
    assert sorted(webhook.calls) == sorted(set(webhook.calls))
    assert len(webhook.calls) == 5
    assert {i.status for i in list_outbox(store)} == {DELIVERED}


def test_a_claim_that_is_never_finished_is_retried_after_the_lease(store: Store) -> None:
    """A dispatcher crashing after claiming (maybe after sending) costs a repeat, never a loss."""
    reconcile(store, CLUSTER, [result(Status.DETECTED)], T0)
    (item,) = pending(store, T0)[:1]
    assert claim(store, item, T0, lease=timedelta(minutes=5)) is not None
    assert claim(store, item, T0) is None  # the stale ETag loses
    webhook = Recorder()
    senders = {item.channel: webhook}
    assert dispatch_pending(store, senders, T0 + timedelta(minutes=1)).sent == 0
    assert dispatch_pending(store, senders, T0 + timedelta(minutes=6)).sent == 1


def test_purge_removes_only_old_delivered_rows(store: Store) -> None:
    reconcile(store, CLUSTER, [result(Status.DETECTED)], T0)
    dispatch_pending(store, {"teams": Recorder()}, T0)
    assert purge(store, T0 + timedelta(days=1)) == 1
    assert [i.channel for i in list_outbox(store)] == ["webhook"]


def test_scrub_removes_urls_and_secret_parameters() -> None:
    text = scrub(f"POST {HOOK} failed; retry with code=abc123&x=1 token=zzz")
    assert "SECRETSIG" not in text
    assert "abc123" not in text
    assert "zzz" not in text
    assert "<url>" in text


def test_end_to_end_through_the_real_webhook_channel(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """reconcile -> outbox -> notify.delivery.deliver -> a local HTTPS receiver, with a 429 on the way."""
    from shared.notify.channels import Channel
    from shared.notify.delivery import new_session
    from shared.notify.generic import verify
    from shared.store.outbox import senders_for
    from tests.https_receiver import HttpsReceiver

    secret = "s3cret-for-hmac"
    with HttpsReceiver() as rx:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", rx.ca_path)
        rx.fail_next(1, 429, headers={"Retry-After": "30"})
        channel = Channel("webhook", url=rx.url("/hooks/SECRETPATH?sig=SECRETSIG"), secret=secret)
        senders = senders_for([channel], session=new_session())
        outcome = reconcile(store, CLUSTER, [result(Status.DETECTED)], T0)
        first = dispatch_pending(store, senders, T0 + timedelta(seconds=1))
        assert first.failed == 1
        (item,) = list_outbox(store, channel="webhook")
        assert item.last_status == 429
        assert item.next_attempt_at >= "2026-11-27T18:00:31"
        assert dispatch_pending(store, senders, T0 + timedelta(seconds=20)).sent == 0
        assert dispatch_pending(store, senders, T0 + timedelta(seconds=32)).sent == 1
        assert len(rx.requests) == 2
        delivered = rx.requests[-1]
        assert verify(secret, delivered.headers, delivered.body, time.time())
        body = json.loads(delivered.body)
        assert body["event"] == "detected"
        assert body["findingId"] == outcome.opened[0].finding_id
    for entity in store.outbox.list_entities():
        assert not any(s in str(v) for v in entity.values() for s in ("SECRETPATH", "SECRETSIG", secret))
