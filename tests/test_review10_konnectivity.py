"""Review of issue 10: inputs that made konnectivity-agent-unhealthy (and the reads behind it) wrong.

Each test names the input, the verdict it used to give, and the one it must give:
- the autoscaler ladder read the way cluster-proportional-autoscaler reads it (`ladder_controller.go`:
  no `nodesToReplicas` step means 1 replica from nodes; steps below 1 are refused; field names match
  case-insensitively; steps sorted);
- agents the deployment asks for that do not exist, or no Ready agent at all, are never `clear`;
- an OOM kill without a date is not hidden; an undated `ContainerStatusUnknown` is not a restart storm;
- a virtual node does not make "all agents on one node" out of a one-real-node cluster;
- agent pods labelled otherwise than `app=konnectivity-agent` are still found by their owner;
- the symptom reads a container that runs, not a crash-looping one beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from shared.causes import konnectivity_agent_unhealthy as konn
from shared.kube import collect
from shared.kube.collect import parse_ladder, pick_log_target
from shared.kube.types import AgentView, ContainerState, KubeEvent, KubeNode, KubeView, NodeCondition, PodInfo
from shared.model import Status
from tests.builders import CLUSTER_ID

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
READY = (NodeCondition("Ready", "True", "KubeletReady"),)
AKS_LADDER = '{"coresToReplicas":[],"nodesToReplicas":[[1,2],[100,3],[250,4],[500,5],[1000,6],[5000,7]]}'


def node(name: str, *, virtual: bool = False) -> KubeNode:
    return KubeNode(name, "system" if not virtual else "", "10.224.0.4", READY, virtual=virtual)


def agent(name: str, on: str, *, ready: bool = True, last: str | None = None,
          last_at: str | None = None, restarts: int = 0, phase: str = "Running") -> PodInfo:
    container = ContainerState("konnectivity-agent", ready, restarts, last_terminated_reason=last,
                               last_terminated_at=last_at)
    return PodInfo(name, "kube-system", on, phase, ready, (container,), "ReplicaSet", "konnectivity-agent-7d9c")


def view(pods: tuple[PodInfo, ...], nodes: tuple[KubeNode, ...], *,
         ladder: tuple[tuple[int, int], ...] | None = ((1, 2), (100, 3)), desired: int | None = 2) -> KubeView:
    return KubeView("https://aks1.hcp", "entra-id", nodes, AgentView(pods, (), ladder, desired))


def two_nodes() -> tuple[KubeNode, ...]:
    return node("aks-system-0"), node("aks-system-1")


def healthy() -> tuple[PodInfo, ...]:
    return agent("konnectivity-agent-7d9c-a", "aks-system-0"), agent("konnectivity-agent-7d9c-b", "aks-system-1")


def judge(kube: KubeView) -> tuple[Status, str]:
    result = konn.evaluate_agents(kube, CLUSTER_ID, NOW)
    return result.status, " | ".join(e.detail for e in result.evidence) + (result.reason or "")


# ------------------------------------------------------------------ the ladder, as the autoscaler reads it


def test_the_real_aks_ladder_parses() -> None:
    assert parse_ladder({"ladder": AKS_LADDER}) == (((1, 2), (100, 3), (250, 4), (500, 5), (1000, 6), (5000, 7)),
                                                    None)


@pytest.mark.parametrize("raw", [
    '{"coresToReplicas":[[1,1]],"nodesToReplicas":[]}',  # was: unknown ("nodesToReplicas is empty")
    '{"coresToReplicas":[[1,1]]}',                         # was: unknown ("not a JSON list")
    '{"coresToReplicas":[],"nodesToReplicas":null}',
])
def test_no_nodes_step_means_one_replica_from_nodes(raw: str) -> None:
    ladder, error = parse_ladder({"ladder": raw})
    assert (ladder, error) == ((), None)
    assert konn.expected_replicas((), 40) == 1
    status, why = judge(view(healthy(), two_nodes(), ladder=ladder))
    assert status is Status.CLEAR, why


@pytest.mark.parametrize("raw", [
    '{"nodesToReplicas":[[1,0]]}',     # was: ladder asking for 0 agents -> clear with none Ready
    '{"nodesToReplicas":[[0,2]]}',
    '{"nodesToReplicas":[[1,1.5]]}',   # was: int(1.5) = 1, silently
    '{"nodesToReplicas":[[1]]}',
    '{"nodesToReplicas":[[true,2]]}',
    '{"nodesToReplicas":"[[1,2]]"}',
])
def test_steps_the_autoscaler_refuses_are_refused(raw: str) -> None:
    ladder, error = parse_ladder({"ladder": raw})
    assert ladder is None
    assert error is not None
    assert "konnectivity-agent-autoscaler" in error


def test_string_numbers_case_insensitive_keys_and_unsorted_steps() -> None:
    assert parse_ladder({"ladder": '{"NodesToReplicas":[["100","3"],["1","2"]]}'}) == (((1, 2), (100, 3)), None)
    assert parse_ladder({"params": '{"nodestoreplicas":[[1,2]]}'}) == (((1, 2),), None)


def test_a_ladder_of_zero_replicas_and_no_agents_is_never_clear() -> None:
    # configmap `{"nodesToReplicas":[[1,0]]}` and a deployment scaled to 0: used to read clear with no agent.
    ladder, error = parse_ladder({"ladder": '{"nodesToReplicas":[[1,0]]}'})
    status, _ = judge(view((), two_nodes(), ladder=ladder, desired=0))
    assert status is not Status.CLEAR
    assert error is not None


def test_no_ready_agent_without_a_ladder_is_detected_not_unknown() -> None:
    pods = (agent("konnectivity-agent-7d9c-a", "aks-system-0", ready=False),)
    status, why = judge(view(pods, two_nodes(), ladder=None, desired=0))
    assert status is Status.DETECTED
    zero = view((), two_nodes(), ladder=None, desired=0)  # deployment scaled to 0, no configmap: was unknown
    status, why = judge(zero)
    assert status is Status.DETECTED
    assert "no Konnectivity agent is Ready" in why


def test_fewer_ready_agents_than_the_deployment_asks_for_is_detected() -> None:
    # The autoscaler writes max(nodes ladder, cores ladder) into spec.replicas: 3 asked, 2 run, ladder says 2.
    status, why = judge(view(healthy(), two_nodes(), desired=3))
    assert status is Status.DETECTED, why
    assert "fewer than the 3 the deployment kube-system/konnectivity-agent asks for" in why
    assert judge(view(healthy(), two_nodes(), desired=2))[0] is Status.CLEAR


# ------------------------------------------------------------------ restarts and placement


def test_an_undated_oom_kill_is_not_hidden() -> None:
    pods = (agent("konnectivity-agent-7d9c-a", "aks-system-0", last="OOMKilled", restarts=3), healthy()[1])
    status, why = judge(view(pods, two_nodes()))
    assert status is Status.DETECTED
    assert "OOMKilled at an unknown time" in why


def test_an_undated_container_status_unknown_is_not_a_restart_problem() -> None:
    pods = (agent("konnectivity-agent-7d9c-a", "aks-system-0", last="ContainerStatusUnknown", restarts=1),
            healthy()[1])
    assert judge(view(pods, two_nodes()))[0] is Status.CLEAR


def test_a_dated_old_oom_is_outside_the_window() -> None:
    old = (NOW - timedelta(hours=3)).isoformat()
    pods = (agent("konnectivity-agent-7d9c-a", "aks-system-0", last="OOMKilled", last_at=old, restarts=1),
            healthy()[1])
    assert judge(view(pods, two_nodes()))[0] is Status.CLEAR


def test_a_virtual_node_does_not_make_one_real_node_a_placement_problem() -> None:
    nodes = (node("aks-system-0"), node("virtual-node-aci-linux", virtual=True))
    pods = (agent("konnectivity-agent-7d9c-a", "aks-system-0"), agent("konnectivity-agent-7d9c-b", "aks-system-0"))
    status, why = judge(view(pods, nodes))
    assert status is Status.CLEAR, why  # was: detected "all 2 Ready agent(s) run on one node"
    real = (node("aks-system-0"), node("aks-system-1"))
    assert judge(view(pods, real))[0] is Status.DETECTED


# ------------------------------------------------------------------ collection


@dataclass
class FakeApi:
    labelled: tuple[PodInfo, ...] = ()
    events: tuple[KubeEvent, ...] = ()
    configmap: dict[str, str] | None = field(default_factory=lambda: {"ladder": AKS_LADDER})
    replicas: int | None = 2

    def list_pods(self, namespace: str, label_selector: str | None = None) -> tuple[PodInfo, ...]:
        return self.labelled

    def list_events(self, namespace: str) -> tuple[KubeEvent, ...]:
        return self.events

    def read_configmap(self, namespace: str, name: str) -> dict[str, str] | None:
        return self.configmap

    def deployment_replicas(self, namespace: str, name: str) -> int | None:
        return self.replicas


def test_agents_labelled_otherwise_are_found_by_their_owner() -> None:
    system = (*healthy(),
              PodInfo("konnectivity-agent-autoscaler-5f6d-x", "kube-system", "aks-system-0", "Running", True,
                      (ContainerState("autoscaler", True, 0),), "ReplicaSet", "konnectivity-agent-autoscaler-5f6d"),
              PodInfo("kube-proxy-abc", "kube-system", "aks-system-0", "Running", True,
                      (ContainerState("kube-proxy", True, 0),), "DaemonSet", "kube-proxy"))
    found = collect._agent_view(FakeApi(), system)  # type: ignore[arg-type]
    assert [p.name for p in found.pods] == [p.name for p in healthy()]
    status, why = judge(view(found.pods, two_nodes(), ladder=found.ladder, desired=found.desired_replicas))
    assert status is Status.CLEAR, why  # was: 0 Ready agents, detected on a healthy cluster
    labelled = collect._agent_view(FakeApi(labelled=healthy()[:1]), system)  # type: ignore[arg-type]
    assert [p.name for p in labelled.pods] == [healthy()[0].name]  # the label wins when it finds any


def test_the_symptom_reads_a_running_container() -> None:
    crashing = PodInfo("kube-proxy-abc", "kube-system", "aks-system-0", "Running", False,
                       (ContainerState("kube-proxy", False, 7, waiting_reason="CrashLoopBackOff"),),
                       "DaemonSet", "kube-proxy")
    running = PodInfo("cloud-node-manager-xyz", "kube-system", "aks-system-0", "Running", True,
                      (ContainerState("cloud-node-manager", True, 0),), "DaemonSet", "cloud-node-manager")
    assert pick_log_target("aks-system-0", (crashing, running)) == running
    sidecar = PodInfo("azure-cns-1", "kube-system", "aks-system-1", "Running", False,
                      (ContainerState("cni-installer", False, 0, terminated_reason="Completed"),
                       ContainerState("cns-container", True, 0)), "DaemonSet", "azure-cns")
    assert pick_log_target("aks-system-1", (sidecar,)) == sidecar
    assert collect.log_container(sidecar).name == "cns-container"
