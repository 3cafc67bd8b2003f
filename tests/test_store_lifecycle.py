"""Finding lifecycle against a real Azurite: transitions, idempotency, races, size limits, odd ids."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from shared.model import CauseId, CauseResult, Evidence, Status
from shared.notify.message import ClusterRef, from_json
from shared.store.connection import Store
from shared.store.findings import cluster_key, finding_id_for, get_finding, history, list_findings
from shared.store.keys import TRUNCATION_MARKER
from shared.store.lifecycle import reconcile, relay_stranded
from shared.store.outbox import list_outbox
from tests.azurite import isolated_store

pytestmark = pytest.mark.azurite

SUB = "0b1f6471-1bf0-4dda-aec3-111122223333"
CLUSTER = ClusterRef(
    id=f"/subscriptions/{SUB}/resourceGroups/Prod-RG/providers/Microsoft.ContainerService/managedClusters/aks-1",
    name="aks-1",
    subscription_id=SUB,
)
RULE = (f"/subscriptions/{SUB}/resourceGroups/net/providers/Microsoft.Network/networkSecurityGroups/"
        "nsg-a/securityRules/deny-10250")
T0 = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
CHANNELS = ("teams", "webhook")


@pytest.fixture
def store(azurite_connection: str) -> Iterator[Store]:
    with isolated_store(azurite_connection, channels=CHANNELS) as s:
        yield s


def nsg(status: Status, *subjects: str, reason: str | None = None, evidence: tuple[Evidence, ...] = ()
        ) -> CauseResult:
    summary = {Status.DETECTED: "NSG rule denies 10250", Status.CLEAR: "No NSG rule denies 10250",
               Status.NOT_APPLICABLE: "n/a", Status.UNKNOWN: "could not read NSGs"}[status]
    return CauseResult(CauseId.NSG, status, "NSG blocks 10250", summary,
                       evidence=evidence or (Evidence(RULE, "priority 100 Deny TCP 10250"),),
                       remediation=("az network nsg rule delete ...",), reason=reason, subjects=subjects)


def snat(status: Status) -> CauseResult:
    return CauseResult(CauseId.SNAT, status, "SNAT exhaustion", "failed SNAT connections",
                       reason="metrics throttled" if status is Status.UNKNOWN else None)


def events_in_outbox(store: Store, channel: str = "webhook") -> list[str]:
    return [item.event for item in list_outbox(store, channel=channel)]


def test_detected_then_still_open_then_resolved(store: Store) -> None:
    first = reconcile(store, CLUSTER, [nsg(Status.DETECTED, RULE), snat(Status.CLEAR)], T0)
    assert [f.subject for f in first.opened] == [RULE]
    assert [n.event for n in first.notifications] == ["detected"]
    fid = first.opened[0].finding_id
    assert fid == finding_id_for(CLUSTER.id, "nsg-blocks-10250", RULE)

    second = reconcile(store, CLUSTER, [nsg(Status.DETECTED, RULE)], T0 + timedelta(minutes=15))
    assert second.opened == []
    assert second.notifications == []
    assert [f.finding_id for f in second.still_open] == [fid]
    assert second.still_open[0].last_seen == "2026-11-27T18:15:00Z"
    assert second.still_open[0].first_seen == "2026-11-27T18:00:00Z"

    third = reconcile(store, CLUSTER, [nsg(Status.CLEAR)], T0 + timedelta(minutes=30))
    assert [f.finding_id for f in third.resolved] == [fid]
    assert [n.event for n in third.notifications] == ["resolved"]
    assert third.notifications[0].cause.status == "clear"
    assert third.notifications[0].last_seen == "2026-11-27T18:15:00Z"

    assert list_findings(store) == []
    (resolved,) = list_findings(store, status="all")
    assert resolved.status == "resolved"
    assert resolved.resolved_at == "2026-11-27T18:30:00Z"
    assert [e.event for e in history(store, fid)] == ["detected", "resolved"]
    for channel in CHANNELS:
        assert events_in_outbox(store, channel) == ["detected", "resolved"]


def test_unknown_never_resolves_and_records_reason(store: Store) -> None:
    reconcile(store, CLUSTER, [nsg(Status.DETECTED, RULE)], T0)
    later = reconcile(store, CLUSTER, [nsg(Status.UNKNOWN, reason="403 reading NSG")], T0 + timedelta(hours=1))
    assert later.resolved == []
    assert later.notifications == []
    (kept,) = later.still_open
    assert kept.status == "open"
    assert kept.last_check_status == "unknown"
    assert kept.last_check_reason == "403 reading NSG"
    assert kept.last_seen == "2026-11-27T18:00:00Z"  # not seen: it was not checked
    # A cycle in which the cause is missing entirely changes nothing either.
    untouched = reconcile(store, CLUSTER, [snat(Status.CLEAR)], T0 + timedelta(hours=2))
    assert [f.cause for f in untouched.still_open] == ["nsg-blocks-10250"]
    assert [f.status for f in list_findings(store)] == ["open"]


def test_not_applicable_and_vanished_subject_resolve(store: Store) -> None:
    other = RULE.replace("deny-10250", "deny-all")
    reconcile(store, CLUSTER, [nsg(Status.DETECTED, RULE, other)], T0)
    assert len(list_findings(store)) == 2
    # Still detected, but only on `other`: the first subject is resolved (detected is conclusive).
    outcome = reconcile(store, CLUSTER, [nsg(Status.DETECTED, other)], T0 + timedelta(minutes=5))
    assert [f.subject for f in outcome.resolved] == [RULE]
    assert [f.subject for f in outcome.still_open] == [other]
    outcome = reconcile(store, CLUSTER, [nsg(Status.NOT_APPLICABLE)], T0 + timedelta(minutes=10))
    assert [f.subject for f in outcome.resolved] == [other]
    assert outcome.notifications[0].cause.status == "not_applicable"


def test_empty_subjects_use_cluster_id_and_reopen_is_a_new_episode(store: Store) -> None:
    first = reconcile(store, CLUSTER, [snat(Status.DETECTED)], T0)
    assert first.opened[0].subject == CLUSTER.id
    reconcile(store, CLUSTER, [snat(Status.CLEAR)], T0 + timedelta(minutes=5))
    again = reconcile(store, CLUSTER, [snat(Status.DETECTED)], T0 + timedelta(minutes=10))
    (reopened,) = again.opened
    assert reopened.finding_id == first.opened[0].finding_id
    assert reopened.episode == 2
    assert [(e.event, e.episode) for e in history(store, reopened.finding_id)] == [
        ("detected", 1), ("resolved", 1), ("detected", 2)]
    assert events_in_outbox(store) == ["detected", "resolved", "detected"]


def test_reminder_after_interval_with_injected_clock(store: Store) -> None:
    interval = timedelta(hours=24)
    reconcile(store, CLUSTER, [nsg(Status.DETECTED, RULE)], T0, reminder_interval=interval)
    almost = reconcile(store, CLUSTER, [nsg(Status.DETECTED, RULE)], T0 + timedelta(hours=23, minutes=59),
                       reminder_interval=interval)
    assert almost.reminded == []
    assert almost.notifications == []
    due = reconcile(store, CLUSTER, [nsg(Status.DETECTED, RULE)], T0 + timedelta(hours=24, minutes=5),
                    reminder_interval=interval)
    assert len(due.reminded) == 1
    assert [n.event for n in due.notifications] == ["reminder"]
    # The clock restarts at the reminder: the next one is another full interval later.
    soon = reconcile(store, CLUSTER, [nsg(Status.DETECTED, RULE)], T0 + timedelta(hours=30),
                     reminder_interval=interval)
    assert soon.reminded == []
    assert events_in_outbox(store) == ["detected", "reminder"]


def test_same_results_twice_notify_once(store: Store) -> None:
    results = [nsg(Status.DETECTED, RULE), snat(Status.DETECTED)]
    first = reconcile(store, CLUSTER, results, T0)
    replay = reconcile(store, CLUSTER, results, T0)
    assert len(first.notifications) == 2
    assert replay.notifications == []
    assert replay.opened == []
    assert len(replay.still_open) == 2
    assert events_in_outbox(store) == ["detected", "detected"]
    for finding in list_findings(store):
        assert len(history(store, finding.finding_id)) == 1


def test_stale_message_cannot_undo_a_newer_cycle(store: Store) -> None:
    reconcile(store, CLUSTER, [nsg(Status.DETECTED, RULE)], T0 + timedelta(minutes=10))
    stale = reconcile(store, CLUSTER, [nsg(Status.CLEAR)], T0)
    assert stale.resolved == []
    assert [f.status for f in list_findings(store)] == ["open"]


@pytest.mark.parametrize("stagger", [False, True])
def test_two_workers_racing_on_one_cluster_notify_once(store: Store, stagger: bool) -> None:
    results = [nsg(Status.DETECTED, RULE), snat(Status.DETECTED)]
    barrier = threading.Barrier(4)
    outcomes = []
    errors: list[BaseException] = []

    def worker(offset_s: int) -> None:
        try:
            barrier.wait()
            when = T0 + timedelta(seconds=offset_s if stagger else 0)
            outcomes.append(reconcile(store, CLUSTER, results, when))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert sum(len(o.notifications) for o in outcomes) == 2
    assert sum(len(o.opened) for o in outcomes) == 2
    assert sorted(events_in_outbox(store)) == ["detected", "detected"]
    assert sorted(events_in_outbox(store, "teams")) == ["detected", "detected"]
    findings = list_findings(store)
    assert len(findings) == 2
    for finding in findings:
        assert [e.event for e in history(store, finding.finding_id)] == ["detected"]


def test_huge_evidence_is_truncated_with_a_marker(store: Store) -> None:
    evidence = tuple(Evidence(f"{RULE}/{i}", "x" * 5_000) for i in range(400))  # ~2 MB of evidence
    giant_detail = (Evidence(RULE, "😀" * 40_000),)  # astral chars: 2 UTF-16 units each
    results = [nsg(Status.DETECTED, RULE, evidence=evidence),
               CauseResult(CauseId.UFW, Status.DETECTED, "UFW", "s" * 100_000, evidence=giant_detail,
                           remediation=tuple("ufw allow 10250" * 50 for _ in range(500)), subjects=("node-0",))]
    outcome = reconcile(store, CLUSTER, results, T0)
    assert len(outcome.opened) == 2
    by_cause = {f.cause: f for f in list_findings(store)}
    nsg_finding = by_cause["nsg-blocks-10250"]
    assert 1 < len(nsg_finding.evidence) < 400
    assert nsg_finding.evidence[-1].resource == TRUNCATION_MARKER
    assert "more evidence item(s) omitted" in nsg_finding.evidence[-1].detail
    ufw = by_cause["ufw-blocks-10250"]
    assert ufw.evidence[0].detail.endswith(TRUNCATION_MARKER)
    assert ufw.summary.endswith(TRUNCATION_MARKER)
    assert TRUNCATION_MARKER in ufw.remediation[-1]
    # The queued notifications carry the same bounded facts and still parse.
    for item in list_outbox(store, channel="webhook"):
        n = from_json(item.payload)
        assert n.evidence[-1].detail.endswith(TRUNCATION_MARKER) or n.evidence[-1].resource == TRUNCATION_MARKER
    for finding in by_cause.values():
        (event,) = history(store, finding.finding_id)
        assert event.evidence  # the event kept (bounded) evidence too


@pytest.mark.parametrize(
    "cluster_id",
    [
        f"/subscriptions/{SUB}/resourceGroups/my.rg_(1)/providers/Microsoft.ContainerService/managedClusters/A",
        f"/SUBSCRIPTIONS/{SUB.upper()}/resourcegroups/MY.RG_(1)/providers/microsoft.containerservice/"
        "managedClusters/" + "n" * 63,
        f"/subscriptions/{SUB}/resourceGroups/weird#rg?x\\y/providers/Microsoft.ContainerService/"
        "managedClusters/c~1|2",
    ],
)
def test_odd_arm_ids_make_valid_keys(store: Store, cluster_id: str) -> None:
    cluster = ClusterRef(cluster_id, "odd", SUB)
    subject = "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/" + (
        "Very-Long-NSG-Name-" * 40) + "/securityRules/Deny#10250?"
    outcome = reconcile(store, cluster, [nsg(Status.DETECTED, subject)], T0)
    (opened,) = outcome.opened
    assert opened.subject == subject
    assert opened.cluster_id == cluster_id
    # Same cluster in different casing is the same partition, hence the same finding.
    again = reconcile(store, ClusterRef(cluster_id.upper(), "odd", SUB), [nsg(Status.DETECTED, subject)],
                      T0 + timedelta(minutes=1))
    assert again.opened == []
    assert len(again.still_open) == 1
    assert [f.finding_id for f in list_findings(store, cluster=cluster_id)] == [opened.finding_id]
    assert get_finding(store, opened.finding_id) is not None
    assert "/" not in cluster_key(cluster_id)


def test_list_findings_filters(store: Store) -> None:
    other_sub = "99999999-0000-0000-0000-000000000000"
    other = ClusterRef(f"/subscriptions/{other_sub}/resourceGroups/rg/providers/Microsoft.ContainerService/"
                       "managedClusters/aks-2", "aks-2", other_sub)
    reconcile(store, CLUSTER, [nsg(Status.DETECTED, RULE), snat(Status.DETECTED)], T0)
    reconcile(store, other, [snat(Status.DETECTED)], T0)
    reconcile(store, other, [snat(Status.CLEAR)], T0 + timedelta(minutes=1))
    assert len(list_findings(store)) == 2
    assert len(list_findings(store, status="all")) == 3
    assert [f.cluster_name for f in list_findings(store, status="all", subscription=other_sub.upper())] == ["aks-2"]
    assert [f.cause for f in list_findings(store, cause="snat-port-exhaustion")] == ["snat-port-exhaustion"]
    assert len(list_findings(store, cluster=CLUSTER.id.lower())) == 2
    assert list_findings(store, cluster=other.id) == []
    assert history(store, "not-a-hex-id' or true") == []
    payload = list_findings(store)[0].to_json()
    assert json.loads(json.dumps(payload))["cluster"]["subscriptionId"] == SUB
    with pytest.raises(ValueError, match="status"):
        list_findings(store, status="closed")  # type: ignore[arg-type]


class CrashingEvents:
    """Stands in for the events table of a worker that dies right after committing a transition."""

    def create_entity(self, *_args: object, **_kwargs: object) -> None:
        raise RuntimeError("worker killed")


def test_stranded_transition_is_finished_by_the_sweeper(store: Store) -> None:
    """A cluster that is never reconciled again (deleted, dropped from the fleet) still gets its
    committed notification out: `relay_stranded` finishes the relay fleet-wide."""
    events_table = store.finding_events
    store.finding_events = CrashingEvents()  # type: ignore[assignment]
    with pytest.raises(RuntimeError, match="worker killed"):
        reconcile(store, CLUSTER, [nsg(Status.DETECTED, RULE)], T0)
    store.finding_events = events_table
    (finding,) = list_findings(store)  # the transition itself is committed...
    assert list_outbox(store) == []  # ...but nothing was queued yet
    assert relay_stranded(store) == 1
    assert relay_stranded(store) == 0
    assert [e.event for e in history(store, finding.finding_id)] == ["detected"]
    assert sorted(i.channel for i in list_outbox(store)) == sorted(CHANNELS)
