"""konnectivity-agent-unhealthy: agent pod states, events, the autoscaler ladder, placement; and every way of
not knowing (API unread, configmap missing) ending `unknown`, never `clear`.

The first half evaluates hand-built views; the second runs the scenarios through the real SDK and the real
`kubernetes` client against the emulator, so the emulated objects also pass the client's own models.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.causes import konnectivity_agent_unhealthy as konn
from shared.causes.base import run_cause
from shared.kube.collect import parse_ladder
from shared.kube.types import AgentView, ContainerState, KubeEvent, KubeNode, KubeView, NodeCondition, PodInfo
from shared.model import Status
from shared.snapshot import Unavailable
from tests.builders import CLUSTER_ID, snapshot
from tests.emulator_fixtures import emulator_fixture  # noqa: F401 (fixture)
from tests.kube_scenarios import Start, cause, cluster, fleet, node_names, run

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
LADDER = ((1, 2), (100, 3), (250, 4), (500, 5), (1000, 6), (5000, 10))
READY = (NodeCondition("Ready", "True", "KubeletReady"),)


def node(name: str, *conditions: NodeCondition, pool: str = "system") -> KubeNode:
    return KubeNode(name, pool, "10.224.0.4", conditions or READY)


def agent(name: str, on: str | None, *, phase: str = "Running", ready: bool = True, restarts: int = 0,
          waiting: str | None = None, last: str | None = None, last_at: datetime | None = None) -> PodInfo:
    container = ContainerState("konnectivity-agent", ready, restarts, waiting_reason=waiting,
                               last_terminated_reason=last,
                               last_terminated_at=last_at.isoformat() if last_at else None)
    return PodInfo(name, "kube-system", on, phase, ready, (container,) if on else (), "ReplicaSet",
                   "konnectivity-agent-7d9c", "0/3 nodes are available: 3 Insufficient memory." if not on else "")


def view(pods: tuple[PodInfo, ...], nodes: int = 3, *, events: tuple[KubeEvent, ...] = (),
         ladder: tuple[tuple[int, int], ...] | None = LADDER, desired: int | None = 2,
         extra_nodes: tuple[KubeNode, ...] = ()) -> KubeView:
    taken = {n.name for n in extra_nodes}
    plain = [f"aks-system-{i:05d}" for i in range(nodes) if f"aks-system-{i:05d}" not in taken]
    members = extra_nodes + tuple(node(name) for name in plain[: nodes - len(extra_nodes)])
    return KubeView("https://aks1.hcp", "entra-id", members, AgentView(pods, events, ladder, desired))


def healthy_pods() -> tuple[PodInfo, ...]:
    return agent("konnectivity-agent-7d9c-a", "aks-system-00000"), agent("konnectivity-agent-7d9c-b",
                                                                          "aks-system-00001")


def evaluate(kube: KubeView) -> tuple[Status, str, tuple[str, ...]]:
    result = konn.evaluate_agents(kube, CLUSTER_ID, NOW)
    return result.status, " | ".join(e.detail for e in result.evidence), result.remediation


def test_healthy_agents_are_clear() -> None:
    status, evidence, _ = evaluate(view(healthy_pods()))
    assert status is Status.CLEAR, evidence


def test_oomkilled_recently_is_detected_with_node_and_its_conditions() -> None:
    pressure = node("aks-system-00000", *READY, NodeCondition("MemoryPressure", "True", "KubeletHasInsufficientMemory"))
    pods = (agent("konnectivity-agent-7d9c-a", "aks-system-00000", restarts=4, last="OOMKilled",
                  last_at=NOW - timedelta(minutes=7)), healthy_pods()[1])
    status, evidence, remediation = evaluate(view(pods, extra_nodes=(pressure,)))
    assert status is Status.DETECTED
    assert "OOMKilled" in evidence
    assert "on node aks-system-00000" in evidence
    assert "MemoryPressure=True (KubeletHasInsufficientMemory)" in evidence
    assert "kubectl -n kube-system rollout restart deployment konnectivity-agent" in remediation
    assert "kubectl -n kube-system logs konnectivity-agent-7d9c-a --previous" in remediation
    assert any(r.startswith("az aks nodepool scale --resource-group rg --cluster-name aks1 --name system")
               for r in remediation)


def test_an_old_restart_outside_the_window_is_not_a_problem() -> None:
    pods = (agent("konnectivity-agent-7d9c-a", "aks-system-00000", restarts=1, last="OOMKilled",
                  last_at=NOW - timedelta(hours=5)), healthy_pods()[1])
    assert evaluate(view(pods))[0] is Status.CLEAR


def test_crashloop_not_ready_and_pending_are_detected() -> None:
    pods = (agent("a", "aks-system-00000", ready=False, waiting="CrashLoopBackOff", restarts=9),
            agent("b", None, phase="Pending", ready=False), agent("c", "aks-system-00001"),
            agent("d", "aks-system-00002", ready=False))
    status, evidence, _ = evaluate(view(pods, desired=4))
    assert status is Status.DETECTED
    assert "waiting: CrashLoopBackOff" in evidence
    assert "b not scheduled on any node: Pending (0/3 nodes are available: 3 Insufficient memory.)" in evidence
    assert "d on node aks-system-00002: not Ready" in evidence


def test_warning_events_within_the_window_count() -> None:
    pods = healthy_pods()
    event = KubeEvent("Pod", pods[0].name, "BackOff", "Back-off restarting failed container", "Warning", 5,
                      (NOW - timedelta(minutes=2)).isoformat())
    status, evidence, _ = evaluate(view(pods, events=(event,)))
    assert status is Status.DETECTED
    assert "event BackOff x5" in evidence


def test_fewer_ready_agents_than_the_ladder_asks_for() -> None:
    pods = (agent("a", "aks-system-00000"), agent("b", "aks-system-00001"))
    status, evidence, _ = evaluate(view(pods, nodes=120, desired=2))
    assert status is Status.DETECTED
    assert "2 Ready agent(s), fewer than the 3 that nodesToReplicas" in evidence
    assert "at 120 node(s); the deployment asks for 2" in evidence


def test_all_agents_on_one_node() -> None:
    pods = (agent("a", "aks-system-00000"), agent("b", "aks-system-00000"))
    status, evidence, _ = evaluate(view(pods))
    assert status is Status.DETECTED
    assert "all 2 Ready agent(s) run on one node, aks-system-00000" in evidence


@pytest.mark.parametrize(("nodes", "want"), [(1, 2), (99, 2), (100, 3), (249, 3), (250, 4), (999, 5), (5000, 10)])
def test_ladder_follows_the_cluster_proportional_autoscaler(nodes: int, want: int) -> None:
    assert konn.expected_replicas(LADDER, nodes) == want


def test_ladder_parsing_and_its_failures() -> None:
    ok = parse_ladder({"ladder": '{"coresToReplicas": [], "nodesToReplicas": [[1, 2], [100, 3]]}'})
    assert ok == (((1, 2), (100, 3)), None)
    assert parse_ladder(None) == (None, None)
    assert parse_ladder({"ladder": "not json"})[1] is not None
    assert parse_ladder({"other": "x"})[1] == "configmap konnectivity-agent-autoscaler has no ladder"


def test_missing_ladder_is_unknown_unless_something_is_already_wrong() -> None:
    unknown = konn.evaluate_agents(view(healthy_pods(), ladder=None), CLUSTER_ID, NOW)
    assert unknown.status is Status.UNKNOWN
    assert "konnectivity-agent-autoscaler was not found" in (unknown.reason or "")
    sick = (agent("a", "aks-system-00000", ready=False),)
    detected = konn.evaluate_agents(view(sick, ladder=None), CLUSTER_ID, NOW)
    assert detected.status is Status.DETECTED
    assert "konnectivity-agent-autoscaler" in detected.unchecked


def test_not_applicable_and_unknown_paths() -> None:
    cause_ = konn.CAUSE
    assert run_cause(cause_, snapshot(tunnel="tunnel-front", kube=view(()))).status is Status.NOT_APPLICABLE
    assert run_cause(cause_, snapshot(tunnel="aks-link")).status is Status.NOT_APPLICABLE
    vnet = run_cause(cause_, snapshot(api_server_vnet_integration=True, kube=view(healthy_pods())))
    assert vnet.status is Status.NOT_APPLICABLE
    assert "VNet Integration" in vnet.summary
    none = view((), desired=None)
    # No agent, no older tunnel's pod, no probe: a Konnectivity cluster that lost every agent looks the same.
    lost = run_cause(cause_, snapshot(tunnel="unknown", kube=none))
    assert lost.status is Status.UNKNOWN
    assert "lost every agent" in (lost.reason or "")
    older = replace(none, agent=replace(none.agent, other_tunnel="tunnel-front"))
    assert run_cause(cause_, snapshot(tunnel="unknown", kube=older)).status is Status.NOT_APPLICABLE
    # A Konnectivity cluster (probes saw the agent container) without the deployment: detected, not n/a.
    assert run_cause(cause_, snapshot(tunnel="konnectivity", kube=none)).status is Status.DETECTED
    unread = run_cause(cause_, snapshot(kube=Unavailable("Kubernetes RBAC forbids the monitor's identity")))
    assert unread.status is Status.UNKNOWN
    assert unread.reason == "Kubernetes RBAC forbids the monitor's identity"
    assert run_cause(cause_, snapshot()).status is Status.UNKNOWN  # not read in this run: never clear


def test_clear_needs_a_real_view() -> None:
    clear = run_cause(konn.CAUSE, replace(snapshot(), kube=view(healthy_pods())))
    assert clear.status is Status.CLEAR


# ------------------------------------------------------------------ emulator scenarios (real clients)


def test_scenario_healthy(emulator: Start) -> None:
    emu = emulator(fleet(cluster("aks-fine")))
    found = run(emu, "aks-fine")
    assert cause(found, "konnectivity-agent-unhealthy")["status"] == "clear"


def test_scenario_agent_oom(emulator: Start) -> None:
    emu = emulator(fleet(cluster("aks-oom", kube={"agents": [
        {"node": 0, "restarts": 6, "lastTerminated": "OOMKilled", "lastTerminatedMinutesAgo": 4},
        {"node": 1}]})))
    found = run(emu, "aks-oom")
    konn_ = cause(found, "konnectivity-agent-unhealthy")
    assert konn_["status"] == "detected"
    first = node_names(emu, "aks-oom")[0]
    assert any("OOMKilled" in e["detail"] and first in e["detail"] for e in konn_["evidence"])
    assert any("event BackOff" in e["detail"] for e in konn_["evidence"])


def test_scenario_too_few_replicas(emulator: Start) -> None:
    emu = emulator(fleet(cluster("aks-few", count=4, kube={"ladder": [[1, 3]], "agents": [{"node": 0}, {"node": 1}],
                                                           "deploymentReplicas": 2})))
    found = run(emu, "aks-few")
    konn_ = cause(found, "konnectivity-agent-unhealthy")
    assert konn_["status"] == "detected"
    assert any("fewer than the 3" in e["detail"] for e in konn_["evidence"])


def test_scenario_pending_agents(emulator: Start) -> None:
    emu = emulator(fleet(cluster("aks-pending", kube={"agents": [
        {"node": 0},
        {"phase": "Pending", "ready": False, "pendingMessage": "0/3 nodes are available: 3 Too many pods."}]})))
    found = run(emu, "aks-pending")
    konn_ = cause(found, "konnectivity-agent-unhealthy")
    assert konn_["status"] == "detected"
    assert any("Pending (0/3 nodes are available: 3 Too many pods.)" in e["detail"] for e in konn_["evidence"])


def test_scenario_no_autoscaler_configmap_is_unknown(emulator: Start) -> None:
    emu = emulator(fleet(cluster("aks-noladder", kube={"ladder": None})))
    konn_ = cause(run(emu, "aks-noladder"), "konnectivity-agent-unhealthy")
    assert konn_["status"] == "unknown"
    assert "konnectivity-agent-autoscaler was not found" in konn_["reason"]


def test_scenario_tunnel_front_is_not_applicable(emulator: Start) -> None:
    emu = emulator(fleet(cluster("aks-tf", tunnel="tunnel-front")))
    assert cause(run(emu, "aks-tf"), "konnectivity-agent-unhealthy")["status"] == "not_applicable"
