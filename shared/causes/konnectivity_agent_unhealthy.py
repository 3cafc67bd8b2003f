"""konnectivity-agent-unhealthy: the tunnel's node-side agents are sick, too few, or all on one node.

The Konnectivity agents (deployment `kube-system/konnectivity-agent`, pods labelled
`app=konnectivity-agent`) are the node end of the tunnel: when they are not Ready, crash-loop, stay
Pending, are OOMKilled or keep restarting, are stuck Terminating, or when fewer run than the
cluster-proportional autoscaler's ladder (configmap `konnectivity-agent-autoscaler`, `nodesToReplicas`)
asks for at the node count it computes (schedulable nodes unless `includeUnschedulableNodes`),
`kubectl logs/exec` and webhooks fail although no NSG, firewall or node rule blocks anything (cause 6 of
Microsoft's tunnel connectivity article). A pod being deleted is never counted as an available agent.
All agents on one node, while other Linux, schedulable, real nodes exist, is the same outage waiting for
that node to fail. Evidence names each pod, its node and that node's conditions.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    if isinstance(kube, KubeView) and _no_agent_at_all(kube) and kube.agent.other_tunnel:
        return (f"the cluster runs the older {kube.agent.other_tunnel} tunnel (its pod is in kube-system) and no "
                "Konnectivity agent")
    return None


def _no_agent_at_all(kube: KubeView) -> bool:
    return kube.agent.desired_replicas is None and not kube.agent.pods


# Neither an agent nor an older tunnel's pod, and no probe saw which tunnel the nodes run: either a cluster on
# a tunnel the monitor does not see, or a Konnectivity cluster whose agents are all gone. Not clear, not n/a.
NO_TUNNEL_SEEN = ("no Konnectivity agent (no deployment kube-system/konnectivity-agent, no agent pod) and no "
                  "tunnelfront or aks-link pod in kube-system, and no node probe saw the tunnel component: a "
                  "Konnectivity cluster that lost every agent reads the same as a cluster on a tunnel not seen here")


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


def autoscaler_node_counts(nodes: Sequence[KubeNode], include_unschedulable: bool) -> tuple[int, ...]:
    """The node counts cluster-proportional-autoscaler feeds its ladder. It lists every node (Windows and
    virtual ones too: AKS gives it no `--nodelabels`); with `includeUnschedulableNodes: true` it counts them
    all, otherwise (the default) only schedulable ones: not cordoned, and since 1.10.1 also Ready. Both
    readings of the default are returned (the cluster's autoscaler version is not visible), lowest first."""
    if include_unschedulable:
        return (len(nodes),)
    schedulable = [n for n in nodes if not n.unschedulable]
    return tuple(sorted({sum(1 for n in schedulable if n.ready), len(schedulable)}))


def _evaluate(snapshot: ClusterSnapshot) -> CauseResult:
    kube = snapshot.kube
    if kube is None:
        return CAUSE.unknown("the Kubernetes API was not read in this run")
    if isinstance(kube, Unavailable):
        return CAUSE.unknown(kube.reason)
    if _no_agent_at_all(kube) and snapshot.tunnel != "konnectivity":
        return CAUSE.unknown(NO_TUNNEL_SEEN)
    return evaluate_agents(kube, snapshot.id, datetime.now(UTC))


def evaluate_agents(kube: KubeView, cluster_id: str, now: datetime) -> CauseResult:
    agent = kube.agent
    nodes = {n.name: n for n in kube.nodes}
    since = now - timedelta(minutes=agent.window_minutes)
    evidence: list[Evidence] = []
    affected: list[str] = []
    for pod in agent.pods:
        problems = _pod_problems(pod, agent, since, now)
        if problems:
            evidence.append(Evidence(f"kube-system/{pod.name}", _describe(pod, problems, nodes.get(pod.node or ""))))
            affected.append(pod.node or pod.name)
    if agent.desired_replicas is None and not agent.pods:
        evidence.append(Evidence(SUBJECT, "the deployment kube-system/konnectivity-agent does not exist and no "
                                          "app=konnectivity-agent pod runs, but the cluster uses Konnectivity"))
    # A pod being deleted keeps its Ready condition until its container stops, but it is on its way out.
    ready = [p for p in agent.pods if p.phase == "Running" and p.ready and not p.terminating]
    leaving = [p for p in agent.pods if p.phase == "Running" and p.ready and p.terminating]
    not_counted = "" if not leaving else "; not counted, being deleted: " + ", ".join(
        f"{p.name} (terminating since {p.deleting_since or p.deletion_due})" for p in leaving)
    unchecked: dict[str, str] = {}
    want, counted = None, 0
    if agent.ladder is not None:
        # Where the autoscaler's versions count differently (NotReady nodes), the smaller ask is the one held
        # against the cluster; a larger one the autoscaler did write shows in spec.replicas, checked below.
        want, counted = min(((expected_replicas(agent.ladder, n), n)
                             for n in autoscaler_node_counts(kube.nodes, agent.include_unschedulable)),
                            key=lambda pair: (pair[0], -pair[1]))
    if want is not None and len(ready) < want:
        assert agent.ladder is not None
        spec = "" if agent.desired_replicas is None else f"; the deployment asks for {agent.desired_replicas}"
        evidence.append(Evidence(SUBJECT, f"{len(ready)} Ready agent(s), fewer than the {want} that "
                                          f"nodesToReplicas {list(map(list, agent.ladder))} asks for at "
                                          f"{counted} node(s){spec}{_uncounted(kube.nodes, counted)}"
                                          f"{not_counted}"))
    elif agent.desired_replicas is not None and len(ready) < agent.desired_replicas:
        # The autoscaler writes max(nodes ladder, cores ladder) into spec.replicas: agents the deployment asks
        # for but that do not run (a ReplicaSet that cannot create them) are missing whatever the ladder says.
        evidence.append(Evidence(SUBJECT, f"{len(ready)} Ready agent(s), fewer than the {agent.desired_replicas} "
                                          "the deployment kube-system/konnectivity-agent asks for (spec.replicas)"
                                          f"{not_counted}"))
    elif not ready and (agent.pods or agent.desired_replicas is not None):
        evidence.append(Evidence(SUBJECT, f"no Konnectivity agent is Ready: nothing carries the tunnel{not_counted}"))
    if agent.ladder is None:
        unchecked["konnectivity-agent-autoscaler"] = agent.ladder_error or (
            "configmap kube-system/konnectivity-agent-autoscaler was not found: cannot tell how many agents the "
            "cluster should run")
    hosts = {p.node for p in ready if p.node}
    # Only nodes an agent could run on count: Linux (the agent's nodeSelector), not a virtual-kubelet node (ACI
    # virtual nodes run no agent pod), not cordoned. One such node and Windows/virtual/cordoned others is not
    # a placement problem: the agents have nowhere else to go.
    if len(ready) >= 1 and len(hosts) == 1 and sum(1 for n in kube.nodes if n.can_host_agent) > 1:
        only = next(iter(hosts))
        evidence.append(Evidence(SUBJECT, f"all {len(ready)} Ready agent(s) run on one node, {only}: losing that "
                                          "node cuts the tunnel for the whole cluster"))
        affected.append(only)
    if evidence:
        return CAUSE.result(
            Status.DETECTED, _summary(evidence, len(ready)), evidence=tuple(evidence),
            remediation=_remediation(kube, cluster_id, now), subjects=(SUBJECT,),
            affected={SUBJECT: tuple(dict.fromkeys(affected)) or (cluster_id,)}, unchecked=unchecked)
    if unchecked:
        reason = next(iter(unchecked.values()))
        return CAUSE.unknown(reason, unchecked=unchecked)
    return CAUSE.result(Status.CLEAR, f"{len(ready)} Konnectivity agent(s) Ready on {len(hosts)} node(s), as many "
                                      "as the autoscaler ladder asks for; no crash, OOM or restart in the last "
                                      f"{agent.window_minutes} minutes")


def _uncounted(nodes: Sequence[KubeNode], counted: int) -> str:
    """Why the ladder's node count is not the number of nodes listed, in the autoscaler's terms."""
    if counted == len(nodes):
        return ""
    cordoned = sum(1 for n in nodes if n.unschedulable)
    not_ready = len(nodes) - cordoned - counted
    parts = ([f"{cordoned} cordoned"] if cordoned else []) + ([f"{not_ready} NotReady"] if not_ready > 0 else [])
    return f" (of {len(nodes)} node(s), {' and '.join(parts)} not counted: cluster-proportional-autoscaler counts " \
           "only schedulable nodes, not cordoned and from 1.10.1 also Ready, unless its ladder sets " \
           "includeUnschedulableNodes)"


def _pod_problems(pod: PodInfo, agent: AgentView, since: datetime, now: datetime) -> list[str]:
    problems: list[str] = []
    if _stuck(pod, now):
        problems.append(f"terminating since {pod.deleting_since or pod.deletion_due} (past its grace period, due "
                        f"{pod.deletion_due}): being deleted, it carries no tunnel")
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


def _stuck(pod: PodInfo, now: datetime) -> bool:
    """Still there after its deletion was due (metadata.deletionTimestamp is the end of its grace period); a
    pod inside its grace period is an ordinary rollout or eviction, only not counted as available. A due time
    that cannot be read counts as stuck: never hide it."""
    due = _parse(pod.deletion_due)
    return pod.terminating and (due is None or due <= now)


def _parse(moment: str | None) -> datetime | None:
    if not moment:
        return None
    try:
        parsed = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _within(moment: str | None, since: datetime) -> bool:
    if not moment:
        return False
    parsed = _parse(moment)
    return parsed is None or parsed >= since  # a restart we cannot date counts: never hide it


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


def _remediation(kube: KubeView, cluster_id: str, now: datetime) -> tuple[str, ...]:
    agent = kube.agent
    steps = [
        "kubectl -n kube-system get pods -l app=konnectivity-agent -o wide",
        "kubectl top node",
    ]
    sick = [p for p in agent.pods if not (p.phase == "Running" and p.ready) or p.restarts or p.terminating]
    for pod in sick[:3]:
        steps.append(f"kubectl -n kube-system describe pod {pod.name}")
        if pod.restarts:
            steps.append(f"kubectl -n kube-system logs {pod.name} --previous")
    for pod in [p for p in agent.pods if _stuck(p, now)][:3]:
        where = f"node {pod.node}" if pod.node else "its node"
        steps.append(f"{pod.name} is stuck Terminating: check that {where} is Ready and its kubelet runs "
                     f"(kubectl get node {pod.node or '<node>'}); only when the node is gone or cannot finish the "
                     f"deletion, remove it: kubectl -n kube-system delete pod {pod.name} --grace-period=0 --force")
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
