"""Finding scope on a real Azurite: partial runs never resolve, one finding (and alert) per thing to fix.

Cause results are built with the real `fold_node_outcomes` and the real UFW cause object, the way the
node-level causes build them, so the tests exercise the same `subjects` / `affected` / `unchecked`
shapes the lifecycle gets in production.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.causes.common import NodeOutcome, fold_node_outcomes
from shared.causes.ufw_blocks_10250 import CAUSE as UFW
from shared.model import CauseId, CauseResult, Evidence, Status
from shared.notify.channels import channels_from_settings
from shared.notify.message import ClusterRef
from shared.store.connection import Store
from shared.store.findings import history, list_findings
from shared.store.lifecycle import reconcile
from shared.store.outbox import dispatch_pending, list_outbox, senders_for
from tests.azurite import isolated_store
from tests.https_receiver import HttpsReceiver

pytestmark = pytest.mark.azurite

SUB = "0b1f6471-1bf0-4dda-aec3-111122223333"
CLUSTER = ClusterRef(
    id=f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks-s",
    name="aks-s",
    subscription_id=SUB,
)
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
CHANNELS = ("teams", "webhook")
RULE_1 = "ufw: DENY IN 10250/tcp from 10.224.0.0/16 (rule 1)"
RULE_2 = "ufw: REJECT IN 10250/tcp (rule 3)"
NSG = f"/subscriptions/{SUB}/resourceGroups/net/providers/Microsoft.Network/networkSecurityGroups/nsg-a"
NSG_RULE_1 = f"{NSG}/securityRules/deny-10250-from-poolb"
NSG_RULE_2 = f"{NSG}/securityRules/deny-10250-all"


@pytest.fixture
def store(azurite_connection: str) -> Iterator[Store]:
    with isolated_store(azurite_connection, channels=CHANNELS) as s:
        yield s


def blocked(node: str, rule: str | None) -> NodeOutcome:
    return NodeOutcome(node, Status.DETECTED, f"{rule or 'default policy'} refuses 10250",
                       remediation=(f"ufw delete {rule}",) if rule else (), subject=rule)


def fine(node: str) -> NodeOutcome:
    return NodeOutcome(node, Status.CLEAR, "10250 allowed from the VNet")


def failed(node: str) -> NodeOutcome:
    return NodeOutcome(node, Status.UNKNOWN, "run-command failed: Conflict (409)")


def ufw(*outcomes: NodeOutcome) -> CauseResult:
    return fold_node_outcomes(UFW, outcomes, problem="UFW refuses 10250", not_applicable="no ufw")


def by_subject(store: Store, status: str = "all") -> dict[str, str]:
    return {f.subject: f.status for f in list_findings(store, status="open" if status == "open" else "all")}


@pytest.mark.parametrize("rule_b", [RULE_2, None], ids=["rule-subject", "node-subject"])
def test_node_b_unknown_keeps_its_finding_open_while_a_is_detected(store: Store, rule_b: str | None) -> None:
    subject_b = rule_b or "node-b"
    reconcile(store, CLUSTER, [ufw(blocked("node-a", RULE_1), blocked("node-b", rule_b))], T0)
    assert by_subject(store) == {RULE_1: "open", subject_b: "open"}

    # Node A still blocked, node B could not be checked: B's finding must not resolve.
    partial = ufw(blocked("node-a", RULE_1), failed("node-b"))
    assert partial.status is Status.DETECTED
    assert "node-b" in partial.unchecked
    outcome = reconcile(store, CLUSTER, [partial], T0 + timedelta(minutes=30))
    assert outcome.resolved == []
    assert outcome.notifications == []
    assert by_subject(store) == {RULE_1: "open", subject_b: "open"}
    kept = next(f for f in list_findings(store) if f.subject == subject_b)
    assert kept.last_check_status == "unknown"
    assert kept.last_check_reason is not None
    assert "node-b" in kept.last_check_reason
    assert kept.last_seen == "2026-12-01T09:00:00Z"  # not seen again: it was not checked

    # A later run that checks B conclusively (fixed) resolves it.
    done = reconcile(store, CLUSTER, [ufw(blocked("node-a", RULE_1), fine("node-b"))], T0 + timedelta(hours=1))
    assert [f.subject for f in done.resolved] == [subject_b]
    assert by_subject(store) == {RULE_1: "open", subject_b: "resolved"}


def test_rule_finding_stays_open_when_one_of_its_nodes_is_unchecked(store: Store) -> None:
    """The finding's scope is its affected nodes: unchecked B keeps rule 1 open, C outside it does not."""
    reconcile(store, CLUSTER, [ufw(blocked("node-a", RULE_1), blocked("node-b", RULE_1),
                                   blocked("node-c", RULE_2))], T0)
    (rule_1,) = [f for f in list_findings(store) if f.subject == RULE_1]
    assert rule_1.affected == ("node-a", "node-b")

    # A is fixed, B unreachable, D newly blocked by another rule; C (rule 2's node) is fixed too.
    later = ufw(fine("node-a"), failed("node-b"), fine("node-c"), blocked("node-d", "ufw: DENY 10250 (rule 9)"))
    outcome = reconcile(store, CLUSTER, [later], T0 + timedelta(minutes=30))
    assert [f.subject for f in outcome.resolved] == [RULE_2]  # C was checked conclusively
    states = by_subject(store)
    assert states[RULE_1] == "open"  # B, which it affects, was not checked
    assert states[RULE_2] == "resolved"


def nsg(status: Status, *subjects: str, affected: dict[str, tuple[str, ...]] | None = None,
        unchecked: dict[str, str] | None = None, reason: str | None = None) -> CauseResult:
    return CauseResult(CauseId.NSG, status, "NSG blocks 10250", f"NSG {status}",
                       evidence=tuple(Evidence(s, "Deny TCP 10250") for s in subjects), reason=reason,
                       subjects=subjects, affected=affected or {}, unchecked=unchecked or {})


FLOW_B = "aks-poolb-vmss_0 -> aks-poola-vmss_1:10250"
FLOW_C = "aks-poolc-vmss_0 -> aks-poola-vmss_1:10250"


def test_nsg_undecided_flows_keep_findings_open_until_a_conclusive_clear(store: Store) -> None:
    reconcile(store, CLUSTER, [nsg(Status.DETECTED, NSG_RULE_1, NSG_RULE_2,
                                   affected={NSG_RULE_1: (FLOW_B,), NSG_RULE_2: (FLOW_C,)})], T0)
    # Rule 2 still denies C's flow, B's flow could not be decided (ASG membership unreadable).
    undecided = {FLOW_B: "source ASG membership could not be read (403)"}
    outcome = reconcile(store, CLUSTER, [nsg(Status.DETECTED, NSG_RULE_2, affected={NSG_RULE_2: (FLOW_C,)},
                                             unchecked=undecided)], T0 + timedelta(minutes=5))
    assert outcome.resolved == []
    assert by_subject(store, "open") == {NSG_RULE_1: "open", NSG_RULE_2: "open"}
    (rule_1,) = [f for f in list_findings(store) if f.subject == NSG_RULE_1]
    assert rule_1.last_check_status == "unknown"
    assert "ASG" in (rule_1.last_check_reason or "")

    # Unknown with undecided flows: still nothing resolves.
    unknown = nsg(Status.UNKNOWN, unchecked=undecided, reason="1 flow undecided")
    assert reconcile(store, CLUSTER, [unknown], T0 + timedelta(minutes=10)).resolved == []
    # A run that decides every flow and finds none blocked resolves both.
    clear = reconcile(store, CLUSTER, [nsg(Status.CLEAR)], T0 + timedelta(minutes=15))
    assert sorted(f.subject for f in clear.resolved) == sorted([NSG_RULE_1, NSG_RULE_2])
    assert [n.event for n in clear.notifications] == ["resolved", "resolved"]


def test_finding_without_stored_scope_stays_open_while_anything_is_unchecked(store: Store) -> None:
    """Rows written before `affected` existed (or cluster-wide subjects) have no scope to compare with."""
    reconcile(store, CLUSTER, [nsg(Status.DETECTED, NSG_RULE_1)], T0)  # no affected flows
    later = nsg(Status.DETECTED, NSG_RULE_2, affected={NSG_RULE_2: (FLOW_C,)}, unchecked={FLOW_B: "undecided"})
    assert reconcile(store, CLUSTER, [later], T0 + timedelta(minutes=5)).resolved == []
    conclusive = nsg(Status.DETECTED, NSG_RULE_2, affected={NSG_RULE_2: (FLOW_C,)})
    assert [f.subject for f in reconcile(store, CLUSTER, [conclusive], T0 + timedelta(minutes=10)).resolved] == [
        NSG_RULE_1]


def test_hundred_nodes_one_rule_is_one_finding_and_one_alert_per_channel(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    first_nodes = [f"aks-pool1-vmss_{i:03d}" for i in range(60)]
    all_nodes = [f"aks-pool1-vmss_{i:03d}" for i in range(100)]
    with HttpsReceiver() as rx:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", rx.ca_path)
        channels = channels_from_settings({
            "TEAMS_WEBHOOK_URL": rx.url("/workflows/x/triggers/manual/paths/invoke?sig=s1"),
            "ALERT_WEBHOOK_URL": rx.url("/hook"), "ALERT_WEBHOOK_SECRET": "k", "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        })
        senders = senders_for(channels)

        opened = reconcile(store, CLUSTER, [ufw(*(blocked(n, RULE_1) for n in first_nodes))], T0)
        assert len(opened.opened) == 1
        assert len(opened.notifications) == 1
        dispatch_pending(store, senders, T0)
        assert len(rx.requests) == 2  # one `detected` per channel

        # The rule spreads to 40 more nodes: the same finding, updated in place, no new alert.
        grown = reconcile(store, CLUSTER, [ufw(*(blocked(n, RULE_1) for n in all_nodes))],
                          T0 + timedelta(minutes=30))
        assert grown.opened == []
        assert grown.notifications == []
        dispatch_pending(store, senders, T0 + timedelta(minutes=30))
        assert len(rx.requests) == 2

    (finding,) = list_findings(store)
    assert finding.subject == RULE_1
    assert finding.affected == tuple(all_nodes)
    assert "100 node(s)" in finding.summary
    assert all_nodes[-1] in finding.summary
    assert {e.resource for e in finding.evidence} == set(all_nodes)
    assert [e.event for e in history(store, finding.finding_id)] == ["detected"]
    for channel in CHANNELS:
        assert [i.event for i in list_outbox(store, channel=channel)] == ["detected"]


def test_affected_nodes_that_were_not_rechecked_stay_in_scope(store: Store) -> None:
    reconcile(store, CLUSTER, [ufw(blocked("node-a", RULE_1), blocked("node-b", RULE_1))], T0)
    reconcile(store, CLUSTER, [ufw(blocked("node-a", RULE_1), failed("node-b"))], T0 + timedelta(minutes=5))
    (finding,) = list_findings(store)
    assert finding.affected == ("node-a", "node-b")
    assert "Not re-checked in this run: node-b" in finding.summary
    reconcile(store, CLUSTER, [ufw(blocked("node-a", RULE_1), fine("node-b"))], T0 + timedelta(minutes=10))
    (finding,) = list_findings(store)
    assert finding.affected == ("node-a",)


def test_coverage_is_stored_on_the_finding(store: Store) -> None:
    coverage = "probed 2 of 5 nodes in pool nodepool1; 3 of 3 in pool system"
    reconcile(store, CLUSTER, [ufw(blocked("node-a", RULE_1))], T0, coverage=coverage)
    (finding,) = list_findings(store)
    assert finding.coverage == coverage
    assert finding.to_json()["coverage"] == coverage
    reconcile(store, CLUSTER, [ufw(blocked("node-a", RULE_1))], T0 + timedelta(minutes=5),
              coverage="probed 5 of 5 nodes in pool nodepool1")
    assert list_findings(store)[0].coverage == "probed 5 of 5 nodes in pool nodepool1"
    # The report's own coverage object is accepted as is.
    report_coverage = {"probes": "sample", "pools": [{"pool": "nodepool1", "probed": 2, "nodes": 10}]}
    reconcile(store, CLUSTER, [ufw(blocked("node-a", RULE_1))], T0 + timedelta(minutes=10), coverage=report_coverage)
    assert list_findings(store)[0].coverage == "sample: nodepool1 2/10 nodes probed"


class _FindingsRacedByAResolver:
    """The findings table as one worker sees it while another commits a resolve in between.

    Before this worker's first conditional write, the other worker resolves the finding and dies
    before relaying (its `resolved` marker is left in the row). This worker's write then fails with
    412, it re-reads the row and re-opens the finding on that row.
    """

    def __init__(self, real: object, race: threading.Event, other: Store) -> None:
        self._real, self._race, self._other = real, race, other

    def __getattr__(self, name: str) -> object:
        return getattr(self._real, name)

    def update_entity(self, *args: object, **kwargs: object) -> object:
        if not self._race.is_set():
            self._race.set()
            with pytest.raises(RuntimeError, match="worker killed"):
                reconcile(self._other, CLUSTER, [ufw(fine("node-a"))], T0 + timedelta(minutes=10))
        return self._real.update_entity(*args, **kwargs)  # type: ignore[attr-defined]


class _CrashingEvents:
    def create_entity(self, *_args: object, **_kwargs: object) -> None:
        raise RuntimeError("worker killed")


def test_reopening_keeps_pending_markers_of_the_row(store: Store) -> None:
    reconcile(store, CLUSTER, [ufw(blocked("node-a", RULE_1))], T0)
    (finding,) = list_findings(store)
    other = replace(store, finding_events=_CrashingEvents())
    racing = replace(store, findings=_FindingsRacedByAResolver(store.findings, threading.Event(), other))
    outcome = reconcile(racing, CLUSTER, [ufw(blocked("node-a", RULE_1))], T0 + timedelta(minutes=20))
    assert [f.episode for f in outcome.opened] == [2]  # re-opened on the row the resolver committed
    # The resolver's `resolved` was committed; it must still reach history and every channel.
    assert [(e.event, e.episode) for e in history(store, finding.finding_id)] == [
        ("detected", 1), ("resolved", 1), ("detected", 2)]
    for channel in CHANNELS:
        assert [i.event for i in list_outbox(store, channel=channel)] == ["detected", "resolved", "detected"]


def test_a_scope_cut_to_fit_the_row_keeps_the_finding_open_while_anything_is_unchecked(store: Store) -> None:
    nodes = [f"aks-verylongpoolname-{i:05d}-vmss-with-a-long-suffix" for i in range(600)]  # > 16 KB of names
    reconcile(store, CLUSTER, [ufw(*(blocked(n, RULE_1) for n in nodes))], T0)
    (finding,) = list_findings(store)
    assert 0 < len(finding.affected) < len(nodes)  # the stored list was cut
    later = ufw(*(fine(n) for n in nodes[:-1]), failed(nodes[-1]), blocked("other", RULE_2))
    assert reconcile(store, CLUSTER, [later], T0 + timedelta(minutes=5)).resolved == []
    assert by_subject(store, "open")[RULE_1] == "open"


def test_a_sampled_run_never_resolves_a_finding_whose_node_list_was_cut(store: Store) -> None:
    # 600 nodes behind one rule: the stored list keeps fewer, so the nodes past the cut are neither forced
    # into the next sample nor listed unchecked by it. A sample that finds its probed nodes clean must not
    # resolve the finding; a run that probed every node does.
    nodes = [f"aks-verylongpoolname-{i:05d}-vmss-with-a-long-suffix" for i in range(600)]
    reconcile(store, CLUSTER, [ufw(*(blocked(n, RULE_1) for n in nodes))], T0)
    (finding,) = list_findings(store)
    assert len(finding.affected) < len(nodes)
    sample = {"probes": "sample", "pools": [{"pool": "nodepool1", "probed": len(finding.affected) + 2,
                                             "nodes": len(nodes)}]}
    sampled = ufw(*(fine(n) for n in [*finding.affected, nodes[-1], nodes[-2]]))
    assert reconcile(store, CLUSTER, [sampled], T0 + timedelta(minutes=5), coverage=sample).resolved == []
    (still,) = list_findings(store)
    assert still.last_check_status == "unknown"
    assert "cut to fit" in (still.last_check_reason or "")
    everything = {"probes": "all", "pools": [{"pool": "nodepool1", "probed": len(nodes), "nodes": len(nodes)}]}
    done = reconcile(store, CLUSTER, [ufw(*(fine(n) for n in nodes))], T0 + timedelta(minutes=10),
                     coverage=everything)
    assert [f.subject for f in done.resolved] == [RULE_1]
