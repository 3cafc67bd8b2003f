"""konnectivity-agent-unhealthy: the tunnel's node-side agents are sick, too few, or all on one node.

The Konnectivity agents (deployment `kube-system/konnectivity-agent`, pods labelled
`app=konnectivity-agent`) are the node end of the tunnel: when they are not Ready, crash-loop, stay
Pending, are OOMKilled or keep restarting, or when fewer run than the cluster-proportional autoscaler's
ladder (configmap `konnectivity-agent-autoscaler`, `nodesToReplicas`) asks for at the current node
count, `kubectl logs/exec` and webhooks fail although no NSG, firewall or node rule blocks anything
(cause 6 of Microsoft's tunnel connectivity article). All agents on one node is the same outage waiting
for that node to fail. Evidence names each pod, its node and that node's conditions.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.azure.ids import last_name, segment
from shared.causes.base import Cause
from shared.kube.types import AgentView, KubeNode, KubeView, PodInfo
from shared.model import CauseId, CauseResult, Evidence, Status
from shared.snapshot import ClusterSnapshot, Unavailable

TITLE = "Konnectivity agent pods are unhealthy"
SUBJECT = "kube-system/deployment/konnectivity-agent"
# Warning events on agent pods that mean crash, OOM or scheduling trouble within the window.
_EVENT_REASONS = {"OOMKilling": "OOMKilled", "BackOff": "restarting (BackOff)", "FailedScheduling": "Pending",
                  "Unhealthy": "failing its probes", "Evicted": "evicted"}


def _not_applicable(snapshot: ClusterSnapshot) -> str | None:
    if snapshot.tunnel in ("tunnel-front", "aks-link"):
        return f"the cluster's tunnel is {snapshot.tunnel}, not Konnectivity"
    no_tunnel = snapshot.tunnel_not_used()
    if no_tunnel:
        return f"{no_tunnel}: no Konnectivity agents"
    kube = snapshot.kube
    if isinstance(kube, KubeView) and kube.agent.desired_replicas is None and not kube.agent.pods \
            and snapshot.tunnel != "konnectivity":
        return ("no Konnectivity agent runs on this cluster (no deployment kube-system/konnectivity-agent and no "
                "app=konnectivity-agent pods): it does not use Konnectivity (API server VNet integration or an "
                "older tunnel)")
    return None


def expected_replicas(ladder: tuple[tuple[int, int], ...], nodes: int) -> int:
    """The cluster-proportional autoscaler's ladder: the last step whose node threshold is <= nodes
    (below the first step, the first step's replicas; no step at all, 1), as its
    `getExpectedReplicasFromEntries` does."""
    if not ladder:
        return 1
    steps = sorted(ladder)
    chosen = steps[0][1]
    for threshold, replicas in steps:
        if nodes >= threshold:
            chosen = replicas
    return chosen


def _evaluate(snapshot: ClusterSnapshot) -> CauseResult:
    kube = snapshot.kube
    if kube is None:
        return CAUSE.unknown("the Kubernetes API was not read in this run")
    if isinstance(kube, Unavailable):
        return CAUSE.unknown(kube.reason)
    return evaluate_agents(kube, snapshot.id, datetime.now(UTC))


def evaluate_agents(kube: KubeView, cluster_id: str, now: datetime) -> CauseResult:
    agent = kube.agent
    nodes = {n.name: n for n in kube.nodes}
    since = now - timedelta(minutes=agent.window_minutes)
    evidence: list[Evidence] = []
    affected: list[str] = []
    for pod in agent.pods:
        problems = _pod_problems(pod, agent, since)
        if problems:
            evidence.append(Evidence(f"kube-system/{pod.name}", _describe(pod, problems, nodes.get(pod.node or ""))))
            affected.append(pod.node or pod.name)
    if agent.desired_replicas is None and not agent.pods:
        evidence.append(Evidence(SUBJECT, "the deployment kube-system/konnectivity-agent does not exist and no "
                                          "app=konnectivity-agent pod runs, but the cluster uses Konnectivity"))
    ready = [p for p in agent.pods if p.phase == "Running" and p.ready]
    unchecked: dict[str, str] = {}
    want = expected_replicas(agent.ladder, len(kube.nodes)) if agent.ladder is not None else None
    if want is not None and len(ready) < want:
        assert agent.ladder is not None
        spec = "" if agent.desired_replicas is None else f"; the deployment asks for {agent.desired_replicas}"
        evidence.append(Evidence(SUBJECT, f"{len(ready)} Ready agent(s), fewer than the {want} that "
                                          f"nodesToReplicas {list(map(list, agent.ladder))} asks for at "
                                          f"{len(kube.nodes)} node(s){spec}"))
    elif agent.desired_replicas is not None and len(ready) < agent.desired_replicas:
        # The autoscaler writes max(nodes ladder, cores ladder) into spec.replicas: agents the deployment asks
        # for but that do not run (a ReplicaSet that cannot create them) are missing whatever the ladder says.
        evidence.append(Evidence(SUBJECT, f"{len(ready)} Ready agent(s), fewer than the {agent.desired_replicas} "
                                          "the deployment kube-system/konnectivity-agent asks for (spec.replicas)"))
    elif not ready and (agent.pods or agent.desired_replicas is not None):
        evidence.append(Evidence(SUBJECT, "no Konnectivity agent is Ready: nothing carries the tunnel"))
    if agent.ladder is None:
        unchecked["konnectivity-agent-autoscaler"] = agent.ladder_error or (
            "configmap kube-system/konnectivity-agent-autoscaler was not found: cannot tell how many agents the "
            "cluster should run")
    hosts = {p.node for p in ready if p.node}
    # Only nodes an agent could run on count: a virtual-kubelet node (ACI virtual nodes) runs no agent pod.
    if len(ready) >= 1 and len(hosts) == 1 and sum(1 for n in kube.nodes if not n.virtual) > 1:
        only = next(iter(hosts))
        evidence.append(Evidence(SUBJECT, f"all {len(ready)} Ready agent(s) run on one node, {only}: losing that "
                                          "node cuts the tunnel for the whole cluster"))
        affected.append(only)
    if evidence:
        return CAUSE.result(
            Status.DETECTED, _summary(evidence, len(ready)), evidence=tuple(evidence),
            remediation=_remediation(kube, cluster_id), subjects=(SUBJECT,),
            affected={SUBJECT: tuple(dict.fromkeys(affected)) or (cluster_id,)}, unchecked=unchecked)
    if unchecked:
        reason = next(iter(unchecked.values()))
        return CAUSE.unknown(reason, unchecked=unchecked)
    return CAUSE.result(Status.CLEAR, f"{len(ready)} Konnectivity agent(s) Ready on {len(hosts)} node(s), as many "
                                      "as the autoscaler ladder asks for; no crash, OOM or restart in the last "
                                      f"{agent.window_minutes} minutes")


def _pod_problems(pod: PodInfo, agent: AgentView, since: datetime) -> list[str]:
    problems: list[str] = []
    if pod.phase == "Pending":
        problems.append("Pending" + (f" ({pod.conditions_message})" if pod.conditions_message else ""))
    elif pod.phase != "Running":
        problems.append(f"phase {pod.phase}")
    elif not pod.ready:
        problems.append("not Ready")
    for c in pod.containers:
        if c.waiting_reason and c.waiting_reason not in ("ContainerCreating", "PodInitializing"):
            problems.append(f"container {c.name} waiting: {c.waiting_reason}")
        if c.terminated_reason:
            problems.append(f"container {c.name} terminated: {c.terminated_reason}")
        # An OOM kill is never hidden for want of a date; other undated terminations are not counted (the
        # kubelet writes an undated `ContainerStatusUnknown` when it lost track of a container, e.g. a reboot).
        undated_oom = c.last_terminated_reason == "OOMKilled" and not c.last_terminated_at
        if c.last_terminated_reason and (undated_oom or _within(c.last_terminated_at, since)):
            what = "OOMKilled" if c.last_terminated_reason == "OOMKilled" else \
                f"last exit {c.last_terminated_reason}"
            problems.append(f"container {c.name} restarted ({c.restarts} restarts; {what} at "
                            f"{c.last_terminated_at or 'an unknown time'})")
    for event in agent.events:
        if event.object_name == pod.name and event.type == "Warning" and event.reason in _EVENT_REASONS \
                and _within(event.last_seen, since):
            problems.append(f"event {event.reason} x{event.count} at {event.last_seen}: {event.message}")
    return list(dict.fromkeys(problems))


def _within(moment: str | None, since: datetime) -> bool:
    if not moment:
        return False
    try:
        parsed = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    except ValueError:
        return True  # a restart we cannot date counts: never hide it
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed >= since


def _describe(pod: PodInfo, problems: list[str], node: KubeNode | None) -> str:
    where = f"on node {pod.node}" if pod.node else "not scheduled on any node"
    text = f"{pod.name} {where}: {'; '.join(problems)}"
    if node is not None:
        bad = node.problems()
        text += "; node conditions: " + (", ".join(f"{c.type}={c.status}" + (f" ({c.reason})" if c.reason else "")
                                                   for c in bad) if bad else "Ready, no pressure")
    return text


def _summary(evidence: list[Evidence], ready: int) -> str:
    return f"{len(evidence)} problem(s) with the Konnectivity agents ({ready} Ready): {evidence[0].detail}"


def _remediation(kube: KubeView, cluster_id: str) -> tuple[str, ...]:
    agent = kube.agent
    steps = [
        "kubectl -n kube-system get pods -l app=konnectivity-agent -o wide",
        "kubectl top node",
    ]
    sick = [p for p in agent.pods if not (p.phase == "Running" and p.ready) or p.restarts]
    for pod in sick[:3]:
        steps.append(f"kubectl -n kube-system describe pod {pod.name}")
        if pod.restarts:
            steps.append(f"kubectl -n kube-system logs {pod.name} --previous")
    steps += [
        "kubectl -n kube-system rollout restart deployment konnectivity-agent",
        "kubectl -n kube-system rollout status deployment konnectivity-agent --timeout=5m",
    ]
    # The agents are AKS-managed (AKS sets their resources): relieve the nodes they run on, or add nodes.
    group, name = segment(cluster_id, "resourceGroups"), last_name(cluster_id)
    by_name = {n.name: n for n in kube.nodes}
    pools = sorted({by_name[p.node].pool for p in agent.pods if p.node in by_name and by_name[p.node].pool})
    for pool in pools[:2]:
        count = sum(1 for n in kube.nodes if n.pool == pool)
        steps.append(f"az aks nodepool scale --resource-group {group} --cluster-name {name} --name {pool} "
                     f"--node-count {count + 1}")
    return tuple(steps)


CAUSE = Cause(
    id=CauseId.KONNECTIVITY_AGENT,
    title=TITLE,
    description="The Konnectivity agent pods (the node end of the tunnel) are not Ready, crash, are OOMKilled, "
                "Pending or restarting, fewer than the autoscaler ladder asks for, or all on one node.",
    not_applicable=_not_applicable,
    evaluate=_evaluate,
)
