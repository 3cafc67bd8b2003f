"""Review of the `tunnel-unexplained` verdicts: inputs that could make them wrong.

- An open finding's node that still exists but was not asked in this run (NotReady: `choose_nodes` skips
  it whatever `must_check` says) must keep the finding open; a node the API's node list no longer has
  (scaled down) must not pin it open forever.
- A finding whose node list was cut to fit the row is resolved only by a run that asked every node.
- A cause this run tried to evaluate but could not (`unknown`, e.g. NSGs unreadable: 403) neither explains
  a node nor discards the open finding another run stored for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from shared.causes import REGISTRY, run_cause
from shared.kube.types import OK, TIMEOUT, AgentView, KubeNode, KubeView, NodeCondition, NodeSymptom
from shared.kube.unexplained import Explainer, explain_symptom
from shared.model import UNEXPLAINED_ID, CauseId, CauseResult, Status
from shared.monitor.cycle import _explainers
from shared.notify.message import ClusterRef
from shared.store.connection import Store
from shared.store.findings import Finding, list_findings
from shared.store.lifecycle import reconcile
from tests.azurite import isolated_store
from tests.builders import CLUSTER_ID, NSG_ID, SUB, nodes, probe, rule, snapshot

A, B, C = (n.name for n in nodes(3))
T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
REF = ClusterRef(id=CLUSTER_ID, name="aks1", subscription_id=SUB)


def kube_node(name: str, *, ready: bool = True) -> KubeNode:
    return KubeNode(name, "nodepool1", None, (NodeCondition("Ready", "True" if ready else "False"),))


def kube(*members: KubeNode) -> KubeView:
    return KubeView("https://aks1.hcp", "entra-id", members, AgentView((), (), None, None))


def asked(**results: str) -> tuple[NodeSymptom, ...]:
    names = {"a": A, "b": B, "c": C}
    return tuple(NodeSymptom(names[k], v, f"{v} detail") for k, v in results.items())


def all_probed() -> dict[str, object]:
    return {"probes": {n: probe(n) for n in (A, B, C)}, "probes_mode": "all"}


def unexplained_result(symptom: tuple[NodeSymptom, ...], view: KubeView,
                       results: list[CauseResult] | None = None) -> CauseResult:
    found = explain_symptom(snapshot(symptom=symptom, kube=view, **all_probed()), results or [])
    assert found is not None
    return found.to_result(CLUSTER_ID)


# ------------------------------------------------------------------ pure: what a run did not ask


def test_a_node_that_exists_but_was_not_asked_is_unchecked_without_changing_the_verdict() -> None:
    result = unexplained_result(asked(a=OK, b=OK), kube(kube_node(A), kube_node(B), kube_node(C, ready=False)))
    assert result.status is Status.CLEAR  # what was asked is fine
    assert C in result.unchecked  # but C was not asked: a finding listing C is not resolved by this run
    assert "NotReady" in result.unchecked[C]


def test_a_node_the_node_list_no_longer_has_is_not_unchecked() -> None:
    result = unexplained_result(asked(a=OK, b=OK), kube(kube_node(A), kube_node(B)))  # C scaled down
    assert result.status is Status.CLEAR
    assert result.unchecked == {}


def test_node_names_match_whatever_their_case() -> None:
    result = unexplained_result(asked(a=OK, b=OK), kube(kube_node(A.upper()), kube_node(B.upper())))
    assert result.unchecked == {}


# ------------------------------------------------------------------ pure: unknown causes


def test_nsg_unreadable_is_unknown_and_explains_nothing() -> None:
    denied = snapshot(subnet_rules=(rule("deny-kubelet", 100, "Deny"),), nsgs={},
                      nsg_errors={NSG_ID.lower(): "access denied (403 AuthorizationFailed) reading NSG agentpool-nsg"},
                      symptom=asked(a=TIMEOUT), **all_probed())
    nsg = run_cause(next(c for c in REGISTRY if c.id == CauseId.NSG), denied)
    assert nsg.status is Status.UNKNOWN
    found = explain_symptom(denied, [CauseResult(CauseId.UFW, Status.CLEAR, "t", "s"),
                                     CauseResult(CauseId.IPTABLES, Status.CLEAR, "t", "s"), nsg])
    assert found is not None
    assert found.status is Status.DETECTED  # never `clear` from an NSG nobody could read
    assert "not ruled out" in found.summary
    assert "403" in found.summary


def test_a_cause_this_run_could_not_evaluate_keeps_its_open_finding_as_the_explanation() -> None:
    # The nsg family's open finding names A; this run's own NSG evaluation (the probe family's
    # _explain_further) came back unknown. A is still explained by the open finding; only B is not.
    snap = snapshot(symptom=asked(a=TIMEOUT, b=TIMEOUT), **all_probed())
    unknown_nsg = CauseResult(CauseId.NSG, Status.UNKNOWN, "t", "s", reason="403 reading the NSG")
    found = explain_symptom(snap, [unknown_nsg], [Explainer.from_finding(str(CauseId.NSG), [A])])
    assert found is not None
    assert [n.node for n in found.unexplained] == [B]
    assert found.to_json()["explainedBy"] == {A: [str(CauseId.NSG)]}
    # Evaluated and clear: the stale open finding explains nothing (unchanged).
    cleared = explain_symptom(snap, [CauseResult(CauseId.NSG, Status.CLEAR, "t", "s")],
                              [Explainer.from_finding(str(CauseId.NSG), [A])])
    assert cleared is not None
    assert [n.node for n in cleared.unexplained] == [A, B]


def finding(cause: str, affected: tuple[str, ...]) -> Finding:
    return Finding(finding_id="f", cluster_id=CLUSTER_ID, cluster_name="aks1", subscription_id=SUB, cause=cause,
                   subject=f"{cause}-rule", status="open", episode=1, title="", summary="", evidence=(),
                   remediation=(), first_seen="", last_seen="", last_checked_at="", last_check_status="detected",
                   last_check_reason=None, last_notified_at=None, resolved_at=None, resolution=None,
                   affected=affected)


def test_the_probe_familys_own_open_findings_are_offered_as_explainers_but_never_the_unexplained_one() -> None:
    offered = _explainers([finding(str(CauseId.UFW), (B,)), finding(UNEXPLAINED_ID, (A,))])
    assert [e.cause for e in offered] == [str(CauseId.UFW)]
    snap = snapshot(symptom=asked(b=TIMEOUT), **all_probed())
    # Probes failed this run (UFW unknown): the UFW finding open on B still explains B's timeout, so the
    # cluster does not alert a second time for the same node.
    unknown_ufw = CauseResult(CauseId.UFW, Status.UNKNOWN, "t", "s", reason="run-command failed")
    found = explain_symptom(snap, [unknown_ufw], offered)
    assert found is not None
    assert found.status is Status.CLEAR
    # UFW evaluated and clear on B: the open finding is stale and explains nothing.
    stale = explain_symptom(snap, [CauseResult(CauseId.UFW, Status.CLEAR, "t", "s")], offered)
    assert stale is not None
    assert stale.status is Status.DETECTED


# ------------------------------------------------------------------ lifecycle (Azurite)


@pytest.fixture
def store(azurite_connection: str) -> Iterator[Store]:
    with isolated_store(azurite_connection) as s:
        yield s


def open_unexplained(store: Store) -> list[Finding]:
    return list_findings(store, "open", cause=UNEXPLAINED_ID)


def opened_on(store: Store, *broken: str) -> None:
    view = kube(*(kube_node(n) for n in (A, B, C)))
    symptom = tuple(NodeSymptom(n, TIMEOUT if n in broken else OK, "d") for n in (A, B, C))
    first = unexplained_result(symptom, view)
    assert first.status is Status.DETECTED
    assert len(reconcile(store, REF, [first], T0).opened) == 1


@pytest.mark.azurite
def test_a_notready_node_of_an_open_finding_keeps_it_open_and_a_deleted_one_lets_it_resolve(store: Store) -> None:
    opened_on(store, C)
    # C went NotReady: choose_nodes does not ask it; A and B are fine. Nobody looked at C.
    later = unexplained_result(asked(a=OK, b=OK), kube(kube_node(A), kube_node(B), kube_node(C, ready=False)))
    outcome = reconcile(store, REF, [later], T0 + timedelta(hours=1))
    assert outcome.resolved == []
    (kept,) = open_unexplained(store)
    assert kept.affected == (C,)
    # C was scaled down: the node list (read in this run) no longer has it; the finding resolves.
    gone = unexplained_result(asked(a=OK, b=OK), kube(kube_node(A), kube_node(B)))
    assert len(reconcile(store, REF, [gone], T0 + timedelta(hours=2)).resolved) == 1
    assert open_unexplained(store) == []


@pytest.mark.azurite
def test_another_node_breaking_updates_the_finding_in_place_and_keeps_an_unasked_node(store: Store) -> None:
    opened_on(store, C)
    # C is NotReady now (not asked), B broke: one finding, both nodes, no second `detected`.
    later = unexplained_result(asked(a=OK, b=TIMEOUT),
                               kube(kube_node(A), kube_node(B), kube_node(C, ready=False)))
    outcome = reconcile(store, REF, [later], T0 + timedelta(hours=1))
    assert outcome.opened == []
    assert outcome.resolved == []
    (kept,) = open_unexplained(store)
    assert set(kept.affected) == {B, C}
    # C asked again and fine: it drops out, B stays.
    again = unexplained_result(asked(a=OK, b=TIMEOUT, c=OK), kube(*(kube_node(n) for n in (A, B, C))))
    reconcile(store, REF, [again], T0 + timedelta(hours=2))
    (kept,) = open_unexplained(store)
    assert kept.affected == (B,)


@pytest.mark.azurite
def test_a_finding_whose_node_list_was_cut_is_resolved_only_by_a_run_that_asked_every_node(store: Store) -> None:
    many = tuple(f"aks-nodepool1-12345678-vmss{i:06d}" for i in range(600))  # more than the row holds
    view = kube(*(kube_node(n) for n in many))
    broken = tuple(NodeSymptom(n, TIMEOUT, "d") for n in many)
    explained = explain_symptom(snapshot(symptom=broken, kube=view, **all_probed()), [])
    assert explained is not None
    assert len(reconcile(store, REF, [explained.to_result(CLUSTER_ID)], T0).opened) == 1
    (cut,) = open_unexplained(store)
    assert len(cut.affected) < len(many)
    # A sample: the stored (cut) nodes plus two more were asked and answered ok; the rest were not asked.
    sample = tuple(NodeSymptom(n, OK, "d") for n in (*cut.affected, *[m for m in many if m not in cut.affected][:2]))
    sampled = explain_symptom(snapshot(symptom=sample, kube=view, **all_probed()), [])
    assert sampled is not None
    assert sampled.status is Status.CLEAR
    assert reconcile(store, REF, [sampled.to_result(CLUSTER_ID)], T0 + timedelta(hours=1)).resolved == []
    # Every node asked and fine: resolved.
    everyone = explain_symptom(snapshot(symptom=tuple(NodeSymptom(n, OK, "d") for n in many), kube=view,
                                        **all_probed()), [])
    assert everyone is not None
    assert len(reconcile(store, REF, [everyone.to_result(CLUSTER_ID)], T0 + timedelta(hours=2)).resolved) == 1


@pytest.mark.azurite
def test_a_poison_message_for_the_probe_family_keeps_an_open_finding_open_and_says_why(store: Store) -> None:
    from shared.monitor.cycle import Monitor
    from shared.settings import Settings

    opened_on(store, C)
    env = {"AzureWebJobsStorage": "unused", "NODE_PROBES": "sample"}
    monitor = Monitor(Settings.from_env(env), store, env=env, now=lambda: T0 + timedelta(hours=1))
    monitor.record_failure(CLUSTER_ID, ("probe",), "the check failed: RuntimeError: boom")
    (kept,) = open_unexplained(store)
    assert kept.last_check_status == str(Status.UNKNOWN)
    assert "boom" in (kept.last_check_reason or "")
    monitor.record_failure(CLUSTER_ID, ("nsg",), "nsg check failed")  # not the symptom's family: untouched
    (kept,) = open_unexplained(store)
    assert "boom" in (kept.last_check_reason or "")
