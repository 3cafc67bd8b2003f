"""The Kubernetes objects an emulated AKS cluster serves, built from its scenario (JSON in the API's shape).

A scenario cluster may carry a `kube` object (all keys optional):

    "kube": {
      "aad": true,                       # Entra ID cluster (aadProfile); false = local accounts
      "reachable": true,                 # or "private" / "authorized-ranges": the monitor gets no answer
      "rbac": "allow",                   # or "forbid" (every read 403), "no-logs" (pods/log 403),
                                         # "no-events" (events 403)
      "ladder": [[1, 2], [100, 3]],      # nodesToReplicas of konnectivity-agent-autoscaler; null = no configmap
      "deploymentReplicas": 2,           # spec.replicas of the konnectivity-agent deployment
      "agents": [{"node": "<name>" | 0, "phase": "Running", "ready": true, "waiting": "CrashLoopBackOff",
                  "restarts": 3, "lastTerminated": "OOMKilled", "lastTerminatedMinutesAgo": 5,
                  "pendingMessage": "0/3 nodes are available: 3 Insufficient memory."}],
      "daemonSets": ["kube-proxy"],      # DaemonSets with a pod on every running node
      "logDelaySeconds": 0,              # each pod-log answer waits this long (a hanging tunnel dial)
      "plainHttpNodes": ["<name>", 2],   # something else answers plain HTTP on that node's 10250 (name or index)
      "nodeConditions": {"<name>": [{"type": "MemoryPressure", "status": "True", "reason": "..."}]}
    }

Without `agents`, a Konnectivity cluster runs as many Ready agents as the ladder asks for, on distinct
nodes. Shapes are checked against the `kubernetes` client's own models in the tests.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from devtools.emulator.access import tunnel_bypassed
from devtools.emulator.scenario import ClusterSpec, NodeSpec

Json = dict[str, Any]
DEFAULT_LADDER = [[1, 2], [100, 3], [250, 4], [500, 5], [1000, 6], [5000, 10]]
NAMESPACE = "kube-system"
AGENT = "konnectivity-agent"


@dataclass(frozen=True)
class AgentPod:
    name: str
    node: str | None
    phase: str
    ready: bool
    waiting: str | None
    restarts: int
    last_terminated: str | None
    last_terminated_at: datetime | None
    pending_message: str


def kube_of(cluster: ClusterSpec) -> Mapping[str, Any]:
    raw = getattr(cluster, "kube", None)
    return raw if isinstance(raw, Mapping) else {}


def _uid(*parts: str) -> str:
    digest = hashlib.sha256("/".join(parts).encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def _suffix(*parts: str, size: int = 5) -> str:
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    return "".join(alphabet[b % len(alphabet)] for b in digest[:size])


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ladder_of(cluster: ClusterSpec) -> list[list[int]] | None:
    kube = kube_of(cluster)
    if "ladder" in kube:
        value = kube["ladder"]
        return None if value is None else [[int(a), int(b)] for a, b in value]
    return DEFAULT_LADDER


def expected(ladder: Sequence[Sequence[int]], nodes: int) -> int:
    chosen = int(ladder[0][1])
    for threshold, replicas in sorted((int(a), int(b)) for a, b in ladder):
        if nodes >= threshold:
            chosen = replicas
    return chosen


def running_nodes(cluster: ClusterSpec) -> list[NodeSpec]:
    return [n for n in cluster.nodes if n.running]


def agent_pods(cluster: ClusterSpec, now: datetime) -> list[AgentPod]:
    if cluster.tunnel != "konnectivity" or tunnel_bypassed(cluster):  # VNet integration: AKS deploys no agents
        return []
    kube = kube_of(cluster)
    nodes = running_nodes(cluster)
    rs = f"{AGENT}-{_suffix(cluster.id, 'rs', size=10)}"
    declared = kube.get("agents")
    if declared is None:
        ladder = ladder_of(cluster) or DEFAULT_LADDER
        count = expected(ladder, len(nodes))
        # Konnectivity routes a call to the agent on the destination node when there is one (destHost), so
        # a node-level block only shows from elsewhere: by default agents go to plain nodes (no ufw or
        # iptables declared), the first ones first; declare `agents` to place them anywhere.
        plain = [i for i, n in enumerate(nodes) if not (n.sim.get("ufw") or n.sim.get("iptables"))]
        order = plain + [i for i in range(len(nodes)) if i not in plain]
        declared = [{"node": order[i % len(order)]} for i in range(count)] if nodes else []
    pods: list[AgentPod] = []
    for index, raw in enumerate(declared):
        node_ref = raw.get("node")
        node = nodes[node_ref].name if isinstance(node_ref, int) and node_ref < len(nodes) else node_ref
        phase = str(raw.get("phase", "Running" if node else "Pending"))
        minutes = raw.get("lastTerminatedMinutesAgo")
        pods.append(AgentPod(
            name=f"{rs}-{_suffix(cluster.id, 'agent', str(index))}", node=node if phase != "Pending" or node else None,
            phase=phase, ready=bool(raw.get("ready", phase == "Running" and not raw.get("waiting"))),
            waiting=raw.get("waiting"), restarts=int(raw.get("restarts", 0)),
            last_terminated=raw.get("lastTerminated"),
            last_terminated_at=now - timedelta(minutes=float(minutes)) if minutes is not None else
            (now - timedelta(minutes=3) if raw.get("lastTerminated") else None),
            pending_message=str(raw.get("pendingMessage", "0/3 nodes are available: 3 Insufficient memory.")),
        ))
    return pods


# ------------------------------------------------------------------ objects


def node_json(cluster: ClusterSpec, node: NodeSpec, now: datetime) -> Json:
    extra = kube_of(cluster).get("nodeConditions", {}).get(node.name, [])
    ready = "True" if node.running else "Unknown"
    conditions = [{"type": t, "status": "False", "reason": f"KubeletHas{r}", "message": f"kubelet has {r.lower()}",
                   "lastHeartbeatTime": _iso(now), "lastTransitionTime": _iso(now - timedelta(days=1))}
                  for t, r in (("MemoryPressure", "SufficientMemory"), ("DiskPressure", "NoDiskPressure"),
                               ("PIDPressure", "SufficientPID"))]
    conditions.append({"type": "Ready", "status": ready, "reason": "KubeletReady" if node.running else
                       "NodeStatusUnknown", "message": "kubelet is posting ready status" if node.running else
                       "Kubelet stopped posting node status.", "lastHeartbeatTime": _iso(now),
                       "lastTransitionTime": _iso(now - timedelta(days=1))})
    for override in extra:
        conditions = [c for c in conditions if c["type"] != override["type"]]
        conditions.append({"lastHeartbeatTime": _iso(now), "lastTransitionTime": _iso(now), **override})
    return {
        "metadata": {"name": node.name, "uid": _uid(cluster.id, node.name), "resourceVersion": "1",
                     "creationTimestamp": _iso(now - timedelta(days=1)),
                     "labels": {"kubernetes.azure.com/agentpool": node.pool, "agentpool": node.pool,
                                "kubernetes.io/hostname": node.name, "kubernetes.io/os": "linux"}},
        "spec": {"providerID": f"azure://{cluster.node_resource_group}/{node.name}"},
        "status": {"addresses": [{"type": "InternalIP", "address": node.ip}, {"type": "Hostname",
                                                                             "address": node.name}],
                   "conditions": conditions, "nodeInfo": _node_info(cluster)},
    }


def _node_info(cluster: ClusterSpec) -> Json:
    return {"architecture": "amd64", "bootID": "", "containerRuntimeVersion": "containerd://1.7.20",
            "kernelVersion": "5.15.0-1071-azure", "kubeProxyVersion": "", "kubeletVersion":
            f"v{cluster.kubernetes_version}", "machineID": "", "operatingSystem": "linux",
            "osImage": "Ubuntu 22.04.4 LTS", "systemUUID": ""}


def _container_status(name: str, image: str, *, ready: bool, restarts: int = 0, waiting: str | None = None,
                      last: str | None = None, last_at: datetime | None = None, started: datetime) -> Json:
    state: Json = {"waiting": {"reason": waiting, "message": "back-off restarting failed container"}} if waiting \
        else {"running": {"startedAt": _iso(started)}}
    status: Json = {"name": name, "image": image, "imageID": f"{image}@sha256:{'0' * 64}", "ready": ready,
                    "restartCount": restarts, "started": not waiting, "state": state,
                    "containerID": f"containerd://{hashlib.sha256(name.encode()).hexdigest()}"}
    if last:
        moment = last_at or started
        status["lastState"] = {"terminated": {"reason": last, "exitCode": 137 if last == "OOMKilled" else 1,
                                              "startedAt": _iso(moment - timedelta(minutes=1)),
                                              "finishedAt": _iso(moment)}}
    return status


def _pod(cluster: ClusterSpec, name: str, labels: Mapping[str, str], owner: tuple[str, str, str], *,
         node: str | None, phase: str, ready: bool, containers: list[Json], now: datetime, pending: str = "") -> Json:
    kind, owner_name, api = owner
    conditions: list[Json] = [{"type": "PodScheduled", "status": "True" if node else "False",
                               "lastTransitionTime": _iso(now - timedelta(hours=1))}]
    if not node:
        conditions[0] |= {"reason": "Unschedulable", "message": pending}
    else:
        conditions.append({"type": "Ready", "status": "True" if ready else "False",
                           "lastTransitionTime": _iso(now - timedelta(hours=1))})
    spec: Json = {"containers": [{"name": c["name"], "image": c["image"]} for c in containers]}
    if node:
        spec["nodeName"] = node
    status: Json = {"phase": phase, "conditions": conditions}
    if node:
        status["containerStatuses"] = containers
        status["startTime"] = _iso(now - timedelta(hours=1))
    return {
        "metadata": {"name": name, "namespace": NAMESPACE, "uid": _uid(cluster.id, name), "labels": dict(labels),
                     "resourceVersion": "1", "creationTimestamp": _iso(now - timedelta(hours=1)),
                     "ownerReferences": [{"apiVersion": api, "kind": kind, "name": owner_name,
                                          "uid": _uid(cluster.id, owner_name), "controller": True}]},
        "spec": spec, "status": status,
    }


def pods_json(cluster: ClusterSpec, now: datetime) -> list[Json]:
    started = now - timedelta(hours=1)
    pods: list[Json] = []
    for ds in kube_of(cluster).get("daemonSets", ["kube-proxy"]):
        image = f"mcr.microsoft.com/oss/kubernetes/{ds}:v{cluster.kubernetes_version}"
        for node in running_nodes(cluster):
            name = f"{ds}-{_suffix(cluster.id, ds, node.name)}"
            pods.append(_pod(cluster, name, {"k8s-app": ds, "component": ds}, ("DaemonSet", ds, "apps/v1"),
                             node=node.name, phase="Running", ready=True,
                             containers=[_container_status(ds, image, ready=True, started=started)], now=now))
    image = "mcr.microsoft.com/oss/kubernetes/apiserver-network-proxy/agent:v0.30.3-hotfix.20240819"
    for agent in agent_pods(cluster, now):
        containers = [_container_status(AGENT, image, ready=agent.ready, restarts=agent.restarts,
                                        waiting=agent.waiting, last=agent.last_terminated,
                                        last_at=agent.last_terminated_at, started=started)]
        pods.append(_pod(cluster, agent.name, {"app": AGENT, "component": AGENT},
                         ("ReplicaSet", agent.name.rsplit("-", 1)[0], "apps/v1"), node=agent.node,
                         phase=agent.phase, ready=agent.ready, containers=containers, now=now,
                         pending=agent.pending_message))
    return pods


def events_json(cluster: ClusterSpec, now: datetime) -> list[Json]:
    events: list[Json] = []
    for agent in agent_pods(cluster, now):
        when = agent.last_terminated_at or now
        if agent.restarts or agent.waiting:
            events.append(_event(cluster, agent.name, "BackOff", "Back-off restarting failed container "
                                 f"{AGENT} in pod {agent.name}", count=agent.restarts or 1, when=when))
        if agent.phase == "Pending":
            events.append(_event(cluster, agent.name, "FailedScheduling", agent.pending_message, count=3, when=now))
    return events


def _event(cluster: ClusterSpec, pod: str, reason: str, message: str, *, count: int, when: datetime) -> Json:
    name = f"{pod}.{_suffix(cluster.id, pod, reason, size=8)}"
    return {"metadata": {"name": name, "namespace": NAMESPACE, "uid": _uid(cluster.id, name),
                         "resourceVersion": "1", "creationTimestamp": _iso(when)},
            "involvedObject": {"kind": "Pod", "namespace": NAMESPACE, "name": pod, "apiVersion": "v1",
                               "uid": _uid(cluster.id, pod)},
            "reason": reason, "message": message, "type": "Warning", "count": count,
            "firstTimestamp": _iso(when - timedelta(minutes=5)), "lastTimestamp": _iso(when),
            "source": {"component": "kubelet"}, "reportingComponent": "kubelet", "reportingInstance": ""}


def configmap_json(cluster: ClusterSpec) -> Json | None:
    ladder = ladder_of(cluster)
    if cluster.tunnel != "konnectivity" or ladder is None:
        return None
    name = f"{AGENT}-autoscaler"
    return {"metadata": {"name": name, "namespace": NAMESPACE, "uid": _uid(cluster.id, name),
                         "resourceVersion": "1"},
            "data": {"ladder": json.dumps({"coresToReplicas": [], "nodesToReplicas": ladder})}}


def deployment_json(cluster: ClusterSpec, now: datetime) -> Json | None:
    if cluster.tunnel != "konnectivity" or tunnel_bypassed(cluster):
        return None
    pods = agent_pods(cluster, now)
    replicas = int(kube_of(cluster).get("deploymentReplicas", len(pods)))
    ready = sum(1 for p in pods if p.ready)
    labels = {"app": AGENT}
    return {"metadata": {"name": AGENT, "namespace": NAMESPACE, "uid": _uid(cluster.id, AGENT),
                         "resourceVersion": "1", "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": AGENT, "image": "agent"}]}}},
            "status": {"replicas": len(pods), "readyReplicas": ready, "availableReplicas": ready}}


def selected(items: list[Json], selector: str | None) -> list[Json]:
    """Equality-based label selectors (`a=b,c=d`), the only kind the monitor sends."""
    if not selector:
        return items
    wanted = dict(part.split("=", 1) for part in selector.split(",") if "=" in part)
    return [i for i in items if all((i["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())]
