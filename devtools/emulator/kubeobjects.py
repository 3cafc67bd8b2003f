"""The Kubernetes objects an emulated AKS cluster serves, built from its scenario (JSON in the API's shape).

A scenario cluster may carry a `kube` object (all keys optional):

    "kube": {
      "aad": true,                       # Entra ID cluster (aadProfile); false = local accounts
      "reachable": true,                 # or "private" / "authorized-ranges": the monitor gets no answer
      "rbac": "allow",                   # or "forbid" (every read 403), "no-logs" (pods/log 403),
                                         # "no-events" (events 403)
      "ladder": [[1, 2], [100, 3]],      # nodesToReplicas of konnectivity-agent-autoscaler; null = no configmap
      "includeUnschedulableNodes": true, # written into the ladder JSON when present (any JSON value)
      "deploymentReplicas": 2,           # spec.replicas of the konnectivity-agent deployment
      "agents": [{"node": "<name>" | 0, "phase": "Running", "ready": true, "waiting": "CrashLoopBackOff",
                  "restarts": 3, "lastTerminated": "OOMKilled", "lastTerminatedMinutesAgo": 5,
                  "pendingMessage": "0/3 nodes are available: 3 Insufficient memory.",
                  "terminatingMinutesAgo": 20,   # deletion asked that long ago (30 s grace): still Ready, going
                  "events": [{"reason": "BackOff", "minutesAgo": 2, "firstMinutesAgo": 300, "count": 40,
                              "message": "...", "type": "Warning"}]}],   # events of this pod besides the default
      "eventStyle": "core",              # or "events.k8s.io": repeats only in series (lastTimestamp empty)
      "windowsNodes": ["<name>", 2],     # labelled kubernetes.io/os=windows (name or index in the node order)
      "cordonedNodes": ["<name>", 1],    # spec.unschedulable: true with the unschedulable taint
      "daemonSets": ["kube-proxy"],      # DaemonSets with a pod on every running node
      "logDelaySeconds": 0,              # each pod-log answer waits this long (a hanging tunnel dial)
      "plainHttpNodes": ["<name>", 2],   # something else answers plain HTTP on that node's 10250 (name or index)
      "nodeConditions": {"<name>": [{"type": "MemoryPressure", "status": "True", "reason": "..."}]}
    }

Without `agents`, a Konnectivity cluster runs as many Ready agents as the ladder asks for at the node count
cluster-proportional-autoscaler computes (schedulable Ready nodes, or every node with
`includeUnschedulableNodes: true`), on distinct Linux, uncordoned nodes. Shapes are checked against the
`kubernetes` client's own models in the tests.
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
    deleted_at: datetime | None = None  # when its deletion was asked (Terminating since)
    events: tuple[Mapping[str, Any], ...] = ()


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


GRACE_SECONDS = 30  # the agent pod's terminationGracePeriodSeconds


def _marked(cluster: ClusterSpec, key: str, node: NodeSpec) -> bool:
    """Whether `kube[key]` (node names, or indexes in the cluster's node order) names this node."""
    listed = kube_of(cluster).get(key, ())
    return node.name in listed or cluster.nodes.index(node) in listed


def node_os(cluster: ClusterSpec, node: NodeSpec) -> str:
    return "windows" if _marked(cluster, "windowsNodes", node) else "linux"


def cordoned(cluster: ClusterSpec, node: NodeSpec) -> bool:
    return _marked(cluster, "cordonedNodes", node)


def autoscaler_nodes(cluster: ClusterSpec) -> int:
    """The node count cluster-proportional-autoscaler (1.10.1+) feeds its ladder: every node with
    `includeUnschedulableNodes: true`, else the schedulable Ready ones (not cordoned)."""
    if kube_of(cluster).get("includeUnschedulableNodes") is True:
        return len(cluster.nodes)
    return sum(1 for n in cluster.nodes if n.running and not cordoned(cluster, n))


def agent_pods(cluster: ClusterSpec, now: datetime) -> list[AgentPod]:
    if cluster.tunnel != "konnectivity" or tunnel_bypassed(cluster):  # VNet integration: AKS deploys no agents
        return []
    kube = kube_of(cluster)
    nodes = running_nodes(cluster)
    rs = f"{AGENT}-{_suffix(cluster.id, 'rs', size=10)}"
    declared = kube.get("agents")
    if declared is None:
        ladder = ladder_of(cluster) or DEFAULT_LADDER
        count = expected(ladder, autoscaler_nodes(cluster))
        # Konnectivity routes a call to the agent on the destination node when there is one (destHost), so
        # a node-level block only shows from elsewhere: by default agents go to plain nodes (no ufw or
        # iptables declared), the first ones first; declare `agents` to place them anywhere. Only Linux,
        # uncordoned nodes take one (the agent's nodeSelector, and the unschedulable taint).
        hosts = [i for i, n in enumerate(nodes) if node_os(cluster, n) == "linux" and not cordoned(cluster, n)]
        plain = [i for i in hosts if not (nodes[i].sim.get("ufw") or nodes[i].sim.get("iptables"))]
        order = plain + [i for i in hosts if i not in plain]
        declared = [{"node": order[i % len(order)]} for i in range(count)] if order else []
    pods: list[AgentPod] = []
    for index, raw in enumerate(declared):
        node_ref = raw.get("node")
        node = nodes[node_ref].name if isinstance(node_ref, int) and node_ref < len(nodes) else node_ref
        phase = str(raw.get("phase", "Running" if node else "Pending"))
        minutes = raw.get("lastTerminatedMinutesAgo")
        deleted = raw.get("terminatingMinutesAgo")
        pods.append(AgentPod(
            name=f"{rs}-{_suffix(cluster.id, 'agent', str(index))}", node=node if phase != "Pending" or node else None,
            phase=phase, ready=bool(raw.get("ready", phase == "Running" and not raw.get("waiting"))),
            waiting=raw.get("waiting"), restarts=int(raw.get("restarts", 0)),
            last_terminated=raw.get("lastTerminated"),
            last_terminated_at=now - timedelta(minutes=float(minutes)) if minutes is not None else
            (now - timedelta(minutes=3) if raw.get("lastTerminated") else None),
            pending_message=str(raw.get("pendingMessage", "0/3 nodes are available: 3 Insufficient memory.")),
            deleted_at=now - timedelta(minutes=float(deleted)) if deleted is not None else None,
            events=tuple(raw.get("events", ())),
        ))
    return pods


# ------------------------------------------------------------------ objects


def node_json(cluster: ClusterSpec, node: NodeSpec, now: datetime) -> Json:
    extra = kube_of(cluster).get("nodeConditions", {}).get(node.name, [])
    os_name = node_os(cluster, node)
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
                                "kubernetes.io/hostname": node.name, "kubernetes.io/os": os_name,
                                "beta.kubernetes.io/os": os_name}},
        "spec": _node_spec(cluster, node, now),
        "status": {"addresses": [{"type": "InternalIP", "address": node.ip}, {"type": "Hostname",
                                                                             "address": node.name}],
                   "conditions": conditions, "nodeInfo": _node_info(cluster, os_name)},
    }


def _node_spec(cluster: ClusterSpec, node: NodeSpec, now: datetime) -> Json:
    spec: Json = {"providerID": f"azure://{cluster.node_resource_group}/{node.name}"}
    if cordoned(cluster, node):  # what `kubectl cordon` (or an upgrade's drain) leaves
        spec["unschedulable"] = True
        spec["taints"] = [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule",
                           "timeAdded": _iso(now - timedelta(minutes=30))}]
    return spec


def _node_info(cluster: ClusterSpec, os_name: str = "linux") -> Json:
    windows = os_name == "windows"
    return {"architecture": "amd64", "bootID": "", "containerRuntimeVersion": "containerd://1.7.20",
            "kernelVersion": "10.0.20348.2582" if windows else "5.15.0-1071-azure", "kubeProxyVersion": "",
            "kubeletVersion": f"v{cluster.kubernetes_version}", "machineID": "", "operatingSystem": os_name,
            "osImage": "Windows Server 2022 Datacenter" if windows else "Ubuntu 22.04.4 LTS", "systemUUID": ""}


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
         node: str | None, phase: str, ready: bool, containers: list[Json], now: datetime, pending: str = "",
         deleted_at: datetime | None = None) -> Json:
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
    metadata: Json = {"name": name, "namespace": NAMESPACE, "uid": _uid(cluster.id, name), "labels": dict(labels),
                      "resourceVersion": "1", "creationTimestamp": _iso(now - timedelta(hours=1)),
                      "ownerReferences": [{"apiVersion": api, "kind": kind, "name": owner_name,
                                           "uid": _uid(cluster.id, owner_name), "controller": True}]}
    if deleted_at is not None:  # Terminating: the API server sets the end of the grace period
        metadata["deletionTimestamp"] = _iso(deleted_at + timedelta(seconds=GRACE_SECONDS))
        metadata["deletionGracePeriodSeconds"] = GRACE_SECONDS
    return {"metadata": metadata, "spec": spec, "status": status}


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
    older = {"tunnel-front": ("tunnelfront", "tunnel-front"), "aks-link": ("aks-link", "openvpn-client")}
    nodes = running_nodes(cluster)
    if cluster.tunnel in older and not tunnel_bypassed(cluster) and nodes:  # AKS ran them as one-replica deployments
        deployment, container = older[cluster.tunnel]
        replica_set = f"{deployment}-{_suffix(cluster.id, deployment, size=9)}"
        image = f"mcr.microsoft.com/aks/hcp/{deployment}:v1"
        pods.append(_pod(cluster, f"{replica_set}-{_suffix(cluster.id, replica_set)}", {"component": "tunnel"},
                         ("ReplicaSet", replica_set, "apps/v1"), node=nodes[0].name, phase="Running", ready=True,
                         containers=[_container_status(container, image, ready=True, started=started)], now=now))
    image = "mcr.microsoft.com/oss/kubernetes/apiserver-network-proxy/agent:v0.30.3-hotfix.20240819"
    for agent in agent_pods(cluster, now):
        containers = [_container_status(AGENT, image, ready=agent.ready, restarts=agent.restarts,
                                        waiting=agent.waiting, last=agent.last_terminated,
                                        last_at=agent.last_terminated_at, started=started)]
        pods.append(_pod(cluster, agent.name, {"app": AGENT, "component": AGENT},
                         ("ReplicaSet", agent.name.rsplit("-", 1)[0], "apps/v1"), node=agent.node,
                         phase=agent.phase, ready=agent.ready, containers=containers, now=now,
                         pending=agent.pending_message, deleted_at=agent.deleted_at))
    return pods


def events_json(cluster: ClusterSpec, now: datetime) -> list[Json]:
    events: list[Json] = []
    series = kube_of(cluster).get("eventStyle") == "events.k8s.io"
    for agent in agent_pods(cluster, now):
        when = agent.last_terminated_at or now
        if agent.restarts or agent.waiting:
            events.append(_event(cluster, agent.name, "BackOff", "Back-off restarting failed container "
                                 f"{AGENT} in pod {agent.name}", count=agent.restarts or 1, when=when,
                                 first=when - timedelta(minutes=5), series=series))
        if agent.phase == "Pending":
            events.append(_event(cluster, agent.name, "FailedScheduling", agent.pending_message, count=3, when=now,
                                 first=now - timedelta(minutes=5), series=series))
        for raw in agent.events:
            last = now - timedelta(minutes=float(raw.get("minutesAgo", 1)))
            first = now - timedelta(minutes=float(raw.get("firstMinutesAgo", raw.get("minutesAgo", 1))))
            events.append(_event(cluster, agent.name, str(raw["reason"]), str(raw.get("message", raw["reason"])),
                                 count=int(raw.get("count", 1)), when=last, first=first, series=series,
                                 type_=str(raw.get("type", "Warning"))))
    return events


def _event(cluster: ClusterSpec, pod: str, reason: str, message: str, *, count: int, when: datetime,
           first: datetime, series: bool = False, type_: str = "Warning") -> Json:
    """A core/v1 Event as the API serves it. Old style (client-go's record package, the kubelet's): count,
    firstTimestamp, lastTimestamp. events.k8s.io style (client-go's events package): eventTime is the first
    occurrence, repeats only in series {count, lastObservedTime}; the deprecated fields stay empty."""
    name = f"{pod}.{_suffix(cluster.id, pod, reason, size=8)}"
    event: Json = {"metadata": {"name": name, "namespace": NAMESPACE, "uid": _uid(cluster.id, name),
                                "resourceVersion": "1", "creationTimestamp": _iso(first)},
                   "involvedObject": {"kind": "Pod", "namespace": NAMESPACE, "name": pod, "apiVersion": "v1",
                                      "uid": _uid(cluster.id, pod)},
                   "reason": reason, "message": message, "type": type_}
    if not series:
        return event | {"count": count, "firstTimestamp": _iso(first), "lastTimestamp": _iso(when),
                        "source": {"component": "kubelet"}, "reportingComponent": "kubelet",
                        "reportingInstance": ""}
    micro = "%Y-%m-%dT%H:%M:%S.%fZ"  # MicroTime
    event |= {"eventTime": first.astimezone(UTC).strftime(micro), "firstTimestamp": None, "lastTimestamp": None,
              "action": reason, "reportingComponent": "kubelet", "reportingInstance": "kubelet",
              "source": {}}
    if count > 1:
        event["series"] = {"count": count, "lastObservedTime": when.astimezone(UTC).strftime(micro)}
    return event


def configmap_json(cluster: ClusterSpec) -> Json | None:
    ladder = ladder_of(cluster)
    if cluster.tunnel != "konnectivity" or ladder is None:
        return None
    name = f"{AGENT}-autoscaler"
    return {"metadata": {"name": name, "namespace": NAMESPACE, "uid": _uid(cluster.id, name),
                         "resourceVersion": "1"},
            "data": {"ladder": json.dumps({"coresToReplicas": [], "nodesToReplicas": ladder, **(
                {"includeUnschedulableNodes": kube_of(cluster)["includeUnschedulableNodes"]}
                if "includeUnschedulableNodes" in kube_of(cluster) else {})})}}


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
