"""konnectivity-agent-unhealthy: details of the Kubernetes objects that gave wrong verdicts.

Each test names the input, the verdict it used to give, and the one it must give:
- an agent pod stuck Terminating (metadata.deletionTimestamp set, Ready until its container stops) was a
  Ready agent: it is not available, and past its grace period it is a problem "terminating since <time>";
- Windows nodes (the agent's nodeSelector is `kubernetes.io/os: linux`) made one Linux node an "all agents
  on one node" finding;
- cordoned nodes (spec.unschedulable) counted in the ladder although cluster-proportional-autoscaler counts
  schedulable nodes only, unless the ladder sets `includeUnschedulableNodes: true`;
- an events.k8s.io-style event (latest occurrence only in series.lastObservedTime) looked as old as its
  first occurrence and a recurring BackOff fell out of the window.

Objects go through the `kubernetes` client's own models (JSON as the API serves it), then the monitor's
conversion; the emulator scenarios run the real SDK and client end to end.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.causes import konnectivity_agent_unhealthy as konn
from shared.kube import client as kube_client
from shared.kube.collect import include_unschedulable, parse_ladder
from shared.kube.types import AgentView, ContainerState, KubeEvent, KubeNode, KubeView, NodeCondition, PodInfo
from shared.model import Status
from tests.builders import CLUSTER_ID
from tests.emulator_fixtures import emulator_fixture  # noqa: F401 (fixture)
from tests.kube_scenarios import Start, cause, cluster, fleet, node_names, run

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
READY = (NodeCondition("Ready", "True", "KubeletReady"),)
NOT_READY = (NodeCondition("Ready", "Unknown", "NodeStatusUnknown"),)


def _z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def model(obj: dict[str, Any], kind: str) -> Any:
    """The object as the `kubernetes` client deserialises it from the API's JSON."""
    from kubernetes import client

    return client.ApiClient().deserialize(json.dumps(obj), kind, "application/json")


def node_obj(name: str, labels: dict[str, str] | None = None, *, unschedulable: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"providerID": f"azure:///subscriptions/x/{name}"}
    if unschedulable:
        spec |= {"unschedulable": True, "taints": [{"key": "node.kubernetes.io/unschedulable",
                                                     "effect": "NoSchedule"}]}
    return {"metadata": {"name": name, "labels": {"kubernetes.azure.com/agentpool": name.split("-")[1],
                                                  **(labels or {})}},
            "spec": spec,
            "status": {"addresses": [{"type": "InternalIP", "address": "10.224.0.4"}],
                       "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}}


def agent_obj(name: str, node: str, *, deleted: datetime | None = None, grace: int = 30) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "kube-system", "labels": {"app": "konnectivity-agent"},
                            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                                 "name": "konnectivity-agent-7d9c", "uid": "u", "controller": True}]}
    if deleted is not None:  # the API server sets deletionTimestamp to the end of the grace period
        meta |= {"deletionTimestamp": _z(deleted + timedelta(seconds=grace)), "deletionGracePeriodSeconds": grace}
    return {"metadata": meta,
            "spec": {"nodeName": node, "containers": [{"name": "konnectivity-agent", "image": "agent"}]},
            "status": {"phase": "Running",
                       "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}],
                       "containerStatuses": [{"name": "konnectivity-agent", "image": "agent", "imageID": "",
                                              "ready": True, "restartCount": 0,
                                              "state": {"running": {"startedAt": _z(NOW - timedelta(hours=2))}}}]}}


def node(name: str, *, os: str = "linux", cordoned: bool = False, conditions: tuple[NodeCondition, ...] = READY,
         virtual: bool = False) -> KubeNode:
    return KubeNode(name, name.split("-")[1], "10.224.0.4", conditions, virtual=virtual, os=os,
                    unschedulable=cordoned)


def agent(name: str, on: str) -> PodInfo:
    return PodInfo(name, "kube-system", on, "Running", True, (ContainerState("konnectivity-agent", True, 0),),
                   "ReplicaSet", "konnectivity-agent-7d9c")


def view(pods: tuple[PodInfo, ...], nodes: tuple[KubeNode, ...], *, ladder: tuple[tuple[int, int], ...] | None =
         ((1, 2), (100, 3)), desired: int | None = 2, events: tuple[KubeEvent, ...] = (),
         include: bool = False) -> KubeView:
    return KubeView("https://aks1.hcp", "entra-id", nodes,
                    AgentView(pods, events, ladder, desired, include_unschedulable=include))


def judge(kube: KubeView, now: datetime = NOW) -> tuple[Status, str, tuple[str, ...]]:
    result = konn.evaluate_agents(kube, CLUSTER_ID, now)
    return result.status, " | ".join(e.detail for e in result.evidence) + (result.reason or ""), result.remediation


def linux_pair() -> tuple[KubeNode, ...]:
    return node("aks-system-0"), node("aks-system-1")


# ------------------------------------------------------------------ 1. pods stuck Terminating


def test_a_pod_stuck_terminating_is_not_an_available_agent() -> None:
    deleted = NOW - timedelta(minutes=20)
    stuck = kube_client._pod(model(agent_obj("konnectivity-agent-7d9c-a", "aks-system-0", deleted=deleted),
                                   "V1Pod"))
    assert stuck.ready  # Kubernetes still says Ready
    assert stuck.terminating
    assert stuck.deleting_since is not None
    assert datetime.fromisoformat(stuck.deleting_since) == deleted.replace(microsecond=0)
    pods = (stuck, agent("konnectivity-agent-7d9c-b", "aks-system-1"))
    status, why, remediation = judge(view(pods, linux_pair()))
    assert status is Status.DETECTED, why  # was: clear, two "Ready" agents on two nodes
    assert f"terminating since {deleted.replace(microsecond=0).isoformat()}" in why
    assert "1 Ready agent(s), fewer than the 2" in why
    assert "kubectl -n kube-system describe pod konnectivity-agent-7d9c-a" in remediation
    assert any("--grace-period=0 --force" in step and "konnectivity-agent-7d9c-a" in step for step in remediation)


def test_a_pod_inside_its_grace_period_is_not_counted_but_a_rollout_is_not_a_finding() -> None:
    leaving = kube_client._pod(model(agent_obj("konnectivity-agent-old-a", "aks-system-0",
                                               deleted=NOW - timedelta(seconds=10)), "V1Pod"))
    fresh = (agent("konnectivity-agent-7d9c-a", "aks-system-0"), agent("konnectivity-agent-7d9c-b", "aks-system-1"))
    status, why, _ = judge(view((leaving, *fresh), linux_pair()))
    assert status is Status.CLEAR, why  # its replacements are Ready: an ordinary rollout
    alone = judge(view((leaving, fresh[1]), linux_pair()))
    assert alone[0] is Status.DETECTED  # was: clear (2 "Ready")
    assert "1 Ready agent(s), fewer than the 2" in alone[1]
    assert "not counted, being deleted: konnectivity-agent-old-a (terminating since" in alone[1]
    only = judge(view((leaving,), linux_pair(), desired=1, ladder=((1, 1),)))
    assert only[0] is Status.DETECTED, only[1]  # was: clear, one "Ready" agent
    assert "no Konnectivity agent is Ready" in only[1] or "0 Ready agent(s)" in only[1]


def test_a_pod_without_deletion_is_unchanged() -> None:
    plain = kube_client._pod(model(agent_obj("konnectivity-agent-7d9c-a", "aks-system-0"), "V1Pod"))
    assert not plain.terminating
    assert plain.deleting_since is None
    assert plain.deletion_due is None


def test_scenario_agent_stuck_terminating(emulator: Start) -> None:
    emu = emulator(fleet(cluster("aks-term", kube={"agents": [{"node": 0, "terminatingMinutesAgo": 25},
                                                              {"node": 1}]})))
    konn_ = cause(run(emu, "aks-term"), "konnectivity-agent-unhealthy")
    assert konn_["status"] == "detected", konn_
    first = node_names(emu, "aks-term")[0]
    assert any("terminating since" in e["detail"] and first in e["detail"] for e in konn_["evidence"])


# ------------------------------------------------------------------ 2. node OS


@pytest.mark.parametrize(("labels", "os"), [
    ({"kubernetes.io/os": "windows"}, "windows"),
    ({"beta.kubernetes.io/os": "windows"}, "windows"),  # older nodes: only the beta label
    ({"kubernetes.io/os": "linux", "beta.kubernetes.io/os": "windows"}, "linux"),  # the GA label wins
    ({}, "linux"),  # no label: assume linux
])
def test_node_os_is_read_from_its_labels(labels: dict[str, str], os: str) -> None:
    assert kube_client._node(model(node_obj("aks-win-0", labels), "V1Node")).os == os


def test_windows_nodes_do_not_make_one_linux_node_a_placement_problem() -> None:
    nodes = (kube_client._node(model(node_obj("aks-system-0", {"kubernetes.io/os": "linux"}), "V1Node")),
             kube_client._node(model(node_obj("aks-win-0", {"kubernetes.io/os": "windows"}), "V1Node")),
             kube_client._node(model(node_obj("aks-win-1", {"beta.kubernetes.io/os": "windows"}), "V1Node")))
    pods = (agent("konnectivity-agent-7d9c-a", "aks-system-0"), agent("konnectivity-agent-7d9c-b", "aks-system-0"))
    status, why, _ = judge(view(pods, nodes))
    assert status is Status.CLEAR, why  # was: detected "all 2 Ready agent(s) run on one node"
    # A second Linux node where an agent could go: still a finding.
    with_linux = (*nodes, node("aks-system-1"))
    status, why, _ = judge(view(pods, with_linux))
    assert status is Status.DETECTED
    assert "all 2 Ready agent(s) run on one node, aks-system-0" in why


def test_scenario_windows_nodes(emulator: Start) -> None:
    emu = emulator(fleet(cluster("aks-win", count=3, kube={"windowsNodes": [1, 2]})))
    konn_ = cause(run(emu, "aks-win"), "konnectivity-agent-unhealthy")
    assert konn_["status"] == "clear", konn_  # both agents on the only Linux node, as they must be


# ------------------------------------------------------------------ 3. cordoned nodes and the ladder


def test_cordoned_nodes_are_read() -> None:
    assert kube_client._node(model(node_obj("aks-system-0", unschedulable=True), "V1Node")).unschedulable
    assert not kube_client._node(model(node_obj("aks-system-1"), "V1Node")).unschedulable


def test_the_ladder_counts_schedulable_nodes_by_default() -> None:
    ladder = ((1, 2), (3, 3))
    nodes = (node("aks-system-0"), node("aks-system-1"), node("aks-system-2", cordoned=True))
    pods = (agent("konnectivity-agent-7d9c-a", "aks-system-0"), agent("konnectivity-agent-7d9c-b", "aks-system-1"))
    status, why, _ = judge(view(pods, nodes, ladder=ladder))
    assert status is Status.CLEAR, why  # was: detected "fewer than the 3 ... at 3 node(s)"
    every = judge(view(pods, nodes, ladder=ladder, include=True))
    assert every[0] is Status.DETECTED  # includeUnschedulableNodes: true counts the cordoned node
    assert "2 Ready agent(s), fewer than the 3 that nodesToReplicas [[1, 2], [3, 3]] asks for at 3 node(s)" in every[1]
    more = (*nodes, node("aks-system-3"))  # 3 schedulable + 1 cordoned: the ladder asks 3 again
    status, why, _ = judge(view(pods, more, ladder=ladder))
    assert status is Status.DETECTED
    assert "asks for at 3 node(s); the deployment asks for 2 (of 4 node(s), 1 cordoned not counted" in why


def test_not_ready_nodes_the_newer_autoscaler_leaves_out_do_not_make_a_shortfall() -> None:
    """cluster-proportional-autoscaler 1.10.1+ counts only Ready schedulable nodes; older ones all schedulable
    nodes. The smaller ask is held against the cluster; spec.replicas shows a larger one the autoscaler wrote."""
    ladder = ((1, 2), (3, 3))
    nodes = (node("aks-system-0"), node("aks-system-1"), node("aks-system-2", conditions=NOT_READY))
    pods = (agent("konnectivity-agent-7d9c-a", "aks-system-0"), agent("konnectivity-agent-7d9c-b", "aks-system-1"))
    assert konn.autoscaler_node_counts(nodes, False) == (2, 3)
    assert konn.autoscaler_node_counts(nodes, True) == (3,)
    assert judge(view(pods, nodes, ladder=ladder, desired=2))[0] is Status.CLEAR  # was: detected
    status, why, _ = judge(view(pods, nodes, ladder=ladder, desired=3))
    assert status is Status.DETECTED  # an older autoscaler asked for 3: the missing one still shows
    assert "fewer than the 3 the deployment kube-system/konnectivity-agent asks for" in why


def test_a_cordoned_node_does_not_count_for_placement() -> None:
    nodes = (node("aks-system-0"), node("aks-system-1", cordoned=True))
    pods = (agent("konnectivity-agent-7d9c-a", "aks-system-0"), agent("konnectivity-agent-7d9c-b", "aks-system-0"))
    status, why, _ = judge(view(pods, nodes))
    assert status is Status.CLEAR, why  # was: detected "all 2 Ready agent(s) run on one node"


def test_include_unschedulable_nodes_is_read_as_the_autoscaler_reads_it() -> None:
    base = '{"coresToReplicas":[],"nodesToReplicas":[[1,2],[100,3]]'
    assert include_unschedulable({"ladder": base + "}"}) is False
    assert include_unschedulable({"ladder": base + ',"includeUnschedulableNodes":true}'}) is True
    assert include_unschedulable({"ladder": base + ',"IncludeUnschedulableNodes":true}'}) is True  # Go: any case
    assert include_unschedulable({"ladder": base + ',"includeUnschedulableNodes":false}'}) is False
    assert include_unschedulable(None) is False
    assert parse_ladder({"ladder": base + ',"includeUnschedulableNodes":true}'}) == (((1, 2), (100, 3)), None)
    ladder, error = parse_ladder({"ladder": base + ',"includeUnschedulableNodes":"yes"}'})
    assert ladder is None  # Go refuses it
    assert error is not None
    assert "includeUnschedulableNodes" in error


def test_scenario_cordoned_node(emulator: Start) -> None:
    emu = emulator(fleet(cluster("aks-cordon", count=3, kube={"ladder": [[1, 2], [3, 3]], "cordonedNodes": [2]}),
                         cluster("aks-cordon-all", count=3, kube={
                             "ladder": [[1, 2], [3, 3]], "cordonedNodes": [2], "includeUnschedulableNodes": True,
                             "agents": [{"node": 0}, {"node": 1}], "deploymentReplicas": 2})))
    konn_ = cause(run(emu, "aks-cordon"), "konnectivity-agent-unhealthy")
    assert konn_["status"] == "clear", konn_  # was: detected "fewer than the 3 ... at 3 node(s)"
    counted = cause(run(emu, "aks-cordon-all"), "konnectivity-agent-unhealthy")
    assert counted["status"] == "detected", counted
    assert any("fewer than the 3" in e["detail"] for e in counted["evidence"])


# ------------------------------------------------------------------ 4. events.k8s.io-style events


def series_event(pod: str, *, first: datetime, last: datetime, count: int) -> dict[str, Any]:
    micro = "%Y-%m-%dT%H:%M:%S.%fZ"
    return {"metadata": {"name": f"{pod}.1870a", "namespace": "kube-system", "creationTimestamp": _z(first)},
            "involvedObject": {"kind": "Pod", "namespace": "kube-system", "name": pod},
            "reason": "BackOff", "message": "Back-off restarting failed container", "type": "Warning",
            "eventTime": first.strftime(micro), "action": "BackOff", "reportingComponent": "kubelet",
            "reportingInstance": "aks-system-0", "firstTimestamp": None, "lastTimestamp": None,
            "series": {"count": count, "lastObservedTime": last.strftime(micro)}}


def test_an_event_series_is_as_recent_as_its_last_observation() -> None:
    first, last = NOW - timedelta(hours=5), NOW - timedelta(minutes=2)
    event = kube_client._event(model(series_event("konnectivity-agent-7d9c-a", first=first, last=last, count=40),
                                     "CoreV1Event"))
    assert datetime.fromisoformat(event.last_seen) == last  # was: the first occurrence (eventTime)
    assert event.count == 40  # series.count, not the empty deprecated count
    pods = (agent("konnectivity-agent-7d9c-a", "aks-system-0"), agent("konnectivity-agent-7d9c-b", "aks-system-1"))
    status, why, _ = judge(view(pods, linux_pair(), events=(event,)))
    assert status is Status.DETECTED, why  # was: clear, the BackOff taken for 5 hours old
    assert "event BackOff x40" in why


def test_the_latest_of_the_event_times_wins() -> None:
    recent, old = NOW - timedelta(minutes=1), NOW - timedelta(hours=3)
    both = series_event("p", first=old, last=old, count=2) | {"lastTimestamp": _z(recent), "count": 5}
    event = kube_client._event(model(both, "CoreV1Event"))
    assert datetime.fromisoformat(event.last_seen) == recent
    assert event.count == 5
    only_first = {k: v for k, v in series_event("p", first=old, last=old, count=1).items()
                  if k not in ("eventTime", "series")} | {"firstTimestamp": _z(recent)}
    assert datetime.fromisoformat(kube_client._event(model(only_first, "CoreV1Event")).last_seen) == recent


def test_scenario_recurring_backoff_in_an_event_series(emulator: Start) -> None:
    emu = emulator(fleet(cluster("aks-series", kube={"eventStyle": "events.k8s.io", "agents": [
        {"node": 0, "events": [{"reason": "BackOff", "message": "Back-off restarting failed container",
                                "minutesAgo": 3, "firstMinutesAgo": 400, "count": 40}]},
        {"node": 1}]})))
    konn_ = cause(run(emu, "aks-series"), "konnectivity-agent-unhealthy")
    assert konn_["status"] == "detected", konn_  # was: clear
    assert any("event BackOff x40" in e["detail"] for e in konn_["evidence"])


# ------------------------------------------------------------------ emulated shapes


def test_new_emulated_shapes_fit_the_clients_models() -> None:
    from devtools.emulator import kubeobjects
    from devtools.emulator.scenario_load import fleet_from_json

    spec = fleet_from_json(fleet(cluster("aks-shapes", count=3, kube={
        "windowsNodes": [1], "cordonedNodes": [2], "eventStyle": "events.k8s.io", "includeUnschedulableNodes": True,
        "agents": [{"node": 0, "terminatingMinutesAgo": 5, "restarts": 2, "lastTerminated": "Error"},
                   {"node": 0, "events": [{"reason": "Unhealthy", "minutesAgo": 1, "firstMinutesAgo": 90,
                                           "count": 3}]}]}))).clusters[0]
    now = datetime.now(UTC)
    nodes = model({"items": [kubeobjects.node_json(spec, n, now) for n in spec.nodes], "metadata": {}},
                  "V1NodeList").items
    read = [kube_client._node(n) for n in nodes]
    assert [(n.os, n.unschedulable) for n in read] == [("linux", False), ("windows", False), ("linux", True)]
    pods = model({"items": kubeobjects.pods_json(spec, now), "metadata": {}}, "V1PodList").items
    agents = [kube_client._pod(p) for p in pods if (p.metadata.labels or {}).get("app") == "konnectivity-agent"]
    assert [a.terminating for a in agents] == [True, False]
    events = model({"items": kubeobjects.events_json(spec, now), "metadata": {}}, "CoreV1EventList").items
    assert all(e.last_timestamp is None and e.event_time is not None for e in events)
    read_events = {e.reason: kube_client._event(e) for e in events}
    assert read_events["Unhealthy"].count == 3
    assert now - datetime.fromisoformat(read_events["Unhealthy"].last_seen) < timedelta(minutes=2)
    configmap = kubeobjects.configmap_json(spec)
    assert configmap is not None
    ladder = model(configmap, "V1ConfigMap").data
    assert include_unschedulable(ladder) is True
