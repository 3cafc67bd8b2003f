"""Which broken nodes a detected cause explains (shared.kube.unexplained), over hand-built snapshots.

Every case here is an input that could make the `tunnel-unexplained` verdict wrong: a cause of the wrong
kind (UFW does not explain `No agent available`), a cause found on another node that checked this node
clean, a stale open finding of a cause this run evaluated clear, partial answers, unread symptom.
"""

from __future__ import annotations

from datetime import UTC, datetime

from shared.kube.types import ERROR, FORBIDDEN, NO_AGENT, OK, PLAIN_HTTP, TIMEOUT, NodeSymptom
from shared.kube.unexplained import Explainer, explain_symptom
from shared.model import UNEXPLAINED_ID, CauseId, CauseResult, Status
from shared.report import build_report
from shared.snapshot import Unavailable
from tests.builders import CLUSTER_ID, nodes, probe, snapshot

A, B, C = (n.name for n in nodes(3))
NOW = datetime(2026, 12, 3, tzinfo=UTC)


def symptom(**results: str) -> tuple[NodeSymptom, ...]:
    names = {"a": A, "b": B, "c": C}
    return tuple(NodeSymptom(names[k], v, f"{v} detail") for k, v in results.items())


def detected(cause: CauseId, *on: str, unchecked: tuple[str, ...] = ()) -> CauseResult:
    subject = f"{cause}-rule"
    return CauseResult(cause, Status.DETECTED, "t", "s", subjects=(subject,), affected={subject: on},
                       unchecked=dict.fromkeys(unchecked, "not answered"))


def clear(cause: CauseId) -> CauseResult:
    return CauseResult(cause, Status.CLEAR, "t", "clear")


def all_probed() -> dict[str, object]:
    return {"probes": {n: probe(n) for n in (A, B, C)}, "probes_mode": "all"}


def test_symptom_not_read_is_none_and_unread_is_unknown_with_the_reason() -> None:
    assert explain_symptom(snapshot(), []) is None
    unread = explain_symptom(snapshot(symptom=Unavailable("RBAC forbids nodes list")), [])
    assert unread is not None
    assert unread.status is Status.UNKNOWN
    result = unread.to_result(CLUSTER_ID)
    assert result.id == UNEXPLAINED_ID
    assert result.status is Status.UNKNOWN
    assert "RBAC forbids" in (result.reason or "")


def test_every_node_ok_is_clear_and_only_inconclusive_answers_are_unknown() -> None:
    ok = explain_symptom(snapshot(symptom=symptom(a=OK, b=OK)), [])
    assert ok is not None
    assert ok.status is Status.CLEAR
    partial = explain_symptom(snapshot(symptom=symptom(a=OK, b=FORBIDDEN)), [])
    assert partial is not None
    assert partial.status is Status.UNKNOWN
    assert partial.to_result(CLUSTER_ID).unchecked == {B: "forbidden: forbidden detail"}


def test_broken_node_without_any_detected_cause_is_detected_naming_the_node() -> None:
    found = explain_symptom(snapshot(symptom=symptom(a=OK, b=TIMEOUT, c=ERROR), **all_probed()),
                            [clear(CauseId.UFW), clear(CauseId.IPTABLES)])
    assert found is not None
    assert found.status is Status.DETECTED
    result = found.to_result(CLUSTER_ID)
    assert result.subjects == (CLUSTER_ID,)
    assert result.affected == {CLUSTER_ID: (B,)}
    assert result.unchecked == {C: "error: error detail"}  # a finding touching C is never resolved by this run
    assert B in result.summary
    assert "no documented cause explains it" in result.summary
    assert result.evidence[0].resource == B


def test_a_cause_of_the_wrong_kind_does_not_explain_the_node() -> None:
    # UFW on B explains a kubelet timeout, not `No agent available`; egress explains no-agent, not a timeout.
    probes = all_probed()
    no_agent = explain_symptom(snapshot(symptom=symptom(b=NO_AGENT), **probes), [detected(CauseId.UFW, B)])
    assert no_agent is not None
    assert no_agent.status is Status.DETECTED
    timeout = explain_symptom(snapshot(symptom=symptom(b=TIMEOUT), **probes), [detected(CauseId.EGRESS)])
    assert timeout is not None
    assert timeout.status is Status.DETECTED
    explained = explain_symptom(snapshot(symptom=symptom(b=NO_AGENT), **probes), [detected(CauseId.EGRESS)])
    assert explained is not None
    assert explained.status is Status.CLEAR
    assert explained.to_json()["explainedBy"] == {B: [str(CauseId.EGRESS)]}


def test_something_else_answering_on_10250_is_never_explained_by_a_documented_cause() -> None:
    found = explain_symptom(snapshot(symptom=symptom(a=PLAIN_HTTP), **all_probed()),
                            [detected(c, A) for c in (CauseId.NSG, CauseId.UFW, CauseId.IPTABLES, CauseId.EGRESS)])
    assert found is not None
    assert found.status is Status.DETECTED


def test_a_node_level_cause_explains_the_nodes_it_names_or_could_not_check_but_not_a_node_it_found_clean() -> None:
    results = [detected(CauseId.IPTABLES, A)]
    checked_clean = explain_symptom(snapshot(symptom=symptom(a=TIMEOUT, b=TIMEOUT), **all_probed()), results)
    assert checked_clean is not None
    assert checked_clean.status is Status.DETECTED
    assert [n.node for n in checked_clean.unexplained] == [B]
    assert checked_clean.to_json()["explainedBy"] == {A: [str(CauseId.IPTABLES)]}
    # B not probed at all (sampled out): the rule seen on A is most likely the same on B.
    unprobed = explain_symptom(snapshot(symptom=symptom(a=TIMEOUT, b=TIMEOUT),
                                        probes={A: probe(A)}, probes_mode="sample"), results)
    assert unprobed is not None
    assert unprobed.status is Status.CLEAR
    # B probed but its iptables read failed (the cause lists it unchecked): same.
    failed = explain_symptom(snapshot(symptom=symptom(b=TIMEOUT), **all_probed()),
                             [detected(CauseId.IPTABLES, A, unchecked=(B,))])
    assert failed is not None
    assert failed.status is Status.CLEAR


def test_an_nsg_rule_affecting_the_node_explains_it_and_a_cluster_wide_cause_explains_every_node() -> None:
    nsg = explain_symptom(snapshot(symptom=symptom(a=TIMEOUT, b=TIMEOUT), **all_probed()),
                          [detected(CauseId.NSG, A, B)])
    assert nsg is not None
    assert nsg.status is Status.CLEAR
    snat = CauseResult(CauseId.SNAT, Status.DETECTED, "t", "s")  # no affected nodes: the whole cluster
    agents = explain_symptom(snapshot(symptom=symptom(a=NO_AGENT, b=NO_AGENT)), [snat])
    assert agents is not None
    assert agents.status is Status.CLEAR


def test_other_families_open_findings_explain_unless_this_run_evaluated_that_cause() -> None:
    snap = snapshot(symptom=symptom(b=TIMEOUT), **all_probed())
    open_nsg = Explainer.from_finding(str(CauseId.NSG), [B])
    by_finding = explain_symptom(snap, [clear(CauseId.UFW)], [open_nsg])
    assert by_finding is not None
    assert by_finding.status is Status.CLEAR
    # This run evaluated the NSG cause and found it clear: the stale open finding explains nothing.
    stale = explain_symptom(snap, [clear(CauseId.UFW), clear(CauseId.NSG)], [open_nsg])
    assert stale is not None
    assert stale.status is Status.DETECTED
    # An open finding on another node does not explain B.
    elsewhere = explain_symptom(snap, [], [Explainer.from_finding(str(CauseId.NSG), [A])])
    assert elsewhere is not None
    assert elsewhere.status is Status.DETECTED


def test_report_carries_the_explanation_and_a_degraded_symptom_is_a_problem() -> None:
    snap = snapshot(symptom=symptom(a=OK, b=TIMEOUT), **all_probed())
    results = [clear(c) for c in CauseId]
    explanation = explain_symptom(snap, results)
    report = build_report(snap, results, NOW, explanation)
    assert report["verdict"] == "problem"
    assert [c["id"] for c in report["causes"]] == [str(c) for c in CauseId]  # never in `causes`
    assert report["symptom"]["explanation"]["status"] == "detected"
    assert report["symptom"]["explanation"]["unexplainedNodes"] == [B]


def test_an_agent_path_cause_explains_no_agent_on_every_node_not_only_where_its_agents_run() -> None:
    agents = detected(CauseId.KONNECTIVITY_AGENT, A)  # the sick agent runs on A; B's calls find no agent too
    found = explain_symptom(snapshot(symptom=symptom(a=NO_AGENT, b=NO_AGENT), **all_probed()), [agents])
    assert found is not None
    assert found.status is Status.CLEAR


def test_an_open_findings_nodes_are_always_asked_whatever_the_rotating_sample() -> None:
    from shared.kube.collect import KubeOptions, choose_nodes
    from shared.kube.types import KubeNode, NodeCondition

    ready = (NodeCondition("Ready", "True"),)
    cluster_nodes = [KubeNode(f"aks-pool-{i}", "pool", f"10.0.0.{i}", ready) for i in range(6)]
    sampled = {n.name for n in choose_nodes(cluster_nodes, KubeOptions(per_pool=2, rotation=0))}
    assert "aks-pool-4" not in sampled
    forced = choose_nodes(cluster_nodes, KubeOptions(per_pool=2, rotation=0, must_check=frozenset({"AKS-POOL-4"})))
    assert {n.name for n in forced} == sampled | {"aks-pool-4"}


def test_a_cause_that_could_not_be_checked_is_named_as_not_ruled_out() -> None:
    unknown = CauseResult(CauseId.EGRESS, Status.UNKNOWN, "t", "s", reason="node probes are off (NODE_PROBES=off)")
    found = explain_symptom(snapshot(symptom=symptom(a=NO_AGENT)), [unknown, clear(CauseId.UFW)])
    assert found is not None
    assert found.status is Status.DETECTED  # still alerts: the tunnel is broken for users
    assert "not ruled out: egress-tunnel-port-blocked (node probes are off (NODE_PROBES=off))" in found.summary
    assert "ufw" not in found.summary  # a kubelet-path cause says nothing about no-agent
