"""Read one cluster's Kubernetes API into the snapshot: nodes, the Konnectivity agent, the per-node symptom.

Every path that cannot read the API leaves `snapshot.kube` (and, when no node could be asked,
`snapshot.symptom`) as an `Unavailable` whose reason says exactly why: no credential (ARM 403), no
token, private API without line of sight, authorized IP ranges that exclude the monitor, RBAC that
forbids it. Calls are bounded: a few at a time per cluster, a fleet-wide cap across clusters, a time
budget per cluster, and at most one log call per node per read.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from shared.azure.clients import ArmClients
from shared.kube.access import AccessError, KubeTarget, fetch_target
from shared.kube.classify import classify
from shared.kube.client import MALFORMED, KubeCallError, KubeClient
from shared.kube.types import (
    ERROR,
    FORBIDDEN,
    UNREACHABLE,
    AgentView,
    ContainerState,
    KubeNode,
    KubeView,
    NodeSymptom,
    PodInfo,
)
from shared.logcontext import run_in_context
from shared.snapshot import ClusterSnapshot, Unavailable

log = logging.getLogger(__name__)

NAMESPACE = "kube-system"
AGENT_LABEL = "app=konnectivity-agent"
AGENT_DEPLOYMENT = "konnectivity-agent"
AUTOSCALER_CONFIGMAP = "konnectivity-agent-autoscaler"
# DaemonSets whose pods run on every node, most preferred first; any other DaemonSet pod also serves.
PREFERRED_DAEMONSETS = ("kube-proxy", "cloud-node-manager", "azure-ip-masq-agent", "azure-cns")
PER_CLUSTER = 8  # concurrent log calls per cluster
FLEET_CALLS = threading.BoundedSemaphore(64)  # concurrent log calls across every cluster of this process
CLUSTER_BUDGET_S = 90.0  # symptom calls not started within this budget are reported as not checked


@dataclass(frozen=True)
class KubeOptions:
    mode: str = "sample"  # all | sample | off (off still samples: the symptom is an API call, not a run-command)
    per_pool: int = 2
    rotation: int | None = None
    per_cluster: int = PER_CLUSTER
    budget_s: float = CLUSTER_BUDGET_S
    fleet: threading.BoundedSemaphore | None = None  # None = the process-wide FLEET_CALLS
    # Nodes asked whatever the sample (an open finding's nodes): a rotating sample must never resolve a
    # finding on nodes it did not look at.
    must_check: frozenset[str] = frozenset()


def read_cluster(clients: ArmClients, cluster: dict[str, Any], snapshot: ClusterSnapshot,
                 options: KubeOptions | None = None,
                 connect: Callable[[KubeTarget], KubeClient] | None = None) -> ClusterSnapshot:
    """The snapshot with `kube` and `symptom` filled (or `Unavailable` with the exact reason)."""
    opts = options or KubeOptions()
    if snapshot.unsupported_reason:
        return snapshot
    try:
        return _read(clients, cluster, snapshot, opts, connect)
    except Exception as exc:  # a bug or an unforeseen answer must cost this read, never the whole diagnosis
        log.exception("kubernetes read failed")
        return _unavailable(snapshot, f"the Kubernetes API read failed: {type(exc).__name__}: {exc}", ERROR, opts)


def _read(clients: ArmClients, cluster: dict[str, Any], snapshot: ClusterSnapshot, opts: KubeOptions,
          connect: Callable[[KubeTarget], KubeClient] | None) -> ClusterSnapshot:
    try:
        target = fetch_target(clients, cluster)
    except AccessError as exc:
        return _unavailable(snapshot, str(exc), FORBIDDEN if exc.forbidden else UNREACHABLE, opts)
    with (connect or _connect(opts))(target) as api:
        try:
            nodes = api.list_nodes()
        except KubeCallError as exc:
            result = FORBIDDEN if exc.status in (401, 403) else UNREACHABLE if exc.status is None else ERROR
            return _unavailable(snapshot, unreachable_reason(exc, cluster, target), result, opts)
        chosen = choose_nodes(nodes, opts)
        symptom: tuple[NodeSymptom, ...]
        system_pods: tuple[PodInfo, ...] = ()
        daemon_pods: tuple[PodInfo, ...] = ()
        try:  # the symptom needs only this list: an unreadable agent view must not stop it
            system_pods = api.list_pods(NAMESPACE)
            daemon_pods = tuple(p for p in system_pods if p.owner_kind == "DaemonSet")
            symptom = run_symptom(api, chosen, daemon_pods, opts)
        except KubeCallError as exc:
            result = FORBIDDEN if exc.status in (401, 403) else UNREACHABLE if exc.status is None else ERROR
            reason = unreachable_reason(exc, cluster, target)
            symptom = tuple(NodeSymptom(n.name, result, f"not checked: {reason}") for n in chosen)
        view: KubeView | Unavailable
        try:
            view = KubeView(server=target.server, auth=target.auth, nodes=nodes,
                            agent=_agent_view(api, system_pods), daemonset_pods=daemon_pods)
        except KubeCallError as exc:
            view = Unavailable(unreachable_reason(exc, cluster, target))
    return replace(snapshot, kube=view, symptom=symptom)


def _connect(opts: KubeOptions) -> Callable[[KubeTarget], KubeClient]:
    return lambda target: KubeClient(target, max_connections=opts.per_cluster)


def unreachable_reason(exc: KubeCallError, cluster: dict[str, Any], target: KubeTarget) -> str:
    """The exact reason the API could not be read, naming the cause when the cluster's settings show it."""
    host = urlsplit(target.server).hostname or target.server
    props = cluster.get("properties") or {}
    access = props.get("apiServerAccessProfile") or {}
    ranges = [str(r) for r in access.get("authorizedIPRanges") or ()]
    if exc.status == 401:
        return f"the Kubernetes API server rejected the monitor's credentials (401 Unauthorized) reading " \
               f"{exc.what}: {exc.message}"
    if exc.status == 403:
        return f"Kubernetes RBAC forbids the monitor's identity ({target.auth}) reading {exc.what}: {exc.message}"
    if exc.status == MALFORMED:
        return f"the Kubernetes API's answer reading {exc.what} could not be read: {exc.message}"
    if exc.status is not None:
        return f"the Kubernetes API answered HTTP {exc.status} reading {exc.what}: {exc.message}"
    if access.get("enablePrivateCluster"):
        return f"private cluster: the monitor has no network line of sight to the API server {host} " \
               f"({exc.message})"
    if ranges:
        return f"API server authorized IP ranges ({', '.join(ranges)}) exclude the monitor: the API server " \
               f"{host} did not answer ({exc.message})"
    return f"the Kubernetes API server {host} could not be reached: {exc.message}"


def _unavailable(snapshot: ClusterSnapshot, reason: str, result: str, opts: KubeOptions) -> ClusterSnapshot:
    """API not readable: the cause is unknown, and each node the symptom would ask is listed as such."""
    names = [] if isinstance(snapshot.nodes, Unavailable) else \
        [n.name for n in snapshot.nodes if n.running]
    symptom: tuple[NodeSymptom, ...] | Unavailable = \
        tuple(NodeSymptom(name, result, reason) for name in names) if names else Unavailable(reason)
    log.warning("kubernetes API not readable: %s", reason)
    return replace(snapshot, kube=Unavailable(reason), symptom=symptom)


def _agent_view(api: KubeClient, system_pods: Sequence[PodInfo] = ()) -> AgentView:
    pods = api.list_pods(NAMESPACE, AGENT_LABEL)
    if not pods:  # agents labelled otherwise (upstream manifests use k8s-app=): known by their owner instead
        pods = tuple(p for p in system_pods if is_agent_owner(p.owner_kind, p.owner_name))
    names = {p.name for p in pods}
    events = tuple(e for e in api.list_events(NAMESPACE)
                   if e.object_name in names or e.object_name.startswith(AGENT_DEPLOYMENT))
    configmap = api.read_configmap(NAMESPACE, AUTOSCALER_CONFIGMAP)
    ladder, ladder_error = parse_ladder(configmap)
    return AgentView(pods=pods, events=events, ladder=ladder, ladder_error=ladder_error,
                     desired_replicas=api.deployment_replicas(NAMESPACE, AGENT_DEPLOYMENT),
                     include_unschedulable=include_unschedulable(configmap), other_tunnel=other_tunnel(system_pods))


# The older tunnels' pods in kube-system (AKS ran them as deployments `tunnelfront` and `aks-link`).
OLDER_TUNNEL_PODS = (("tunnelfront-", "tunnel-front"), ("aks-link-", "aks-link"))


def other_tunnel(pods: Sequence[PodInfo]) -> str | None:
    """The older tunnel a pod in kube-system belongs to, if any."""
    return next((tunnel for p in pods for prefix, tunnel in OLDER_TUNNEL_PODS if p.name.startswith(prefix)), None)


# The agent deployment's ReplicaSets are `konnectivity-agent-<pod-template-hash>`; the autoscaler's own
# deployment (`konnectivity-agent-autoscaler-<hash>`) is not an agent.
_AGENT_REPLICASET = re.compile(rf"^{AGENT_DEPLOYMENT}-[a-z0-9]+$")


def is_agent_owner(kind: str, name: str) -> bool:
    return (kind == "ReplicaSet" and bool(_AGENT_REPLICASET.match(name))) or \
        (kind == "DaemonSet" and name == AGENT_DEPLOYMENT)


def parse_ladder(data: dict[str, str] | None) -> tuple[tuple[tuple[int, int], ...] | None, str | None]:
    """`nodesToReplicas` from the cluster-proportional autoscaler's configmap (key `ladder`, JSON), read as
    the autoscaler reads it: field names match case-insensitively (Go's encoding/json), a missing or empty
    `nodesToReplicas` is no step at all (the autoscaler then asks for 1 from nodes: an empty tuple here), and
    a step that is not two whole numbers >= 1 is refused as the autoscaler refuses it (numbers written as
    strings are read: the intent is plain)."""
    if data is None:
        return None, None
    if _ladder_json(data) is None:
        return None, f"configmap {AUTOSCALER_CONFIGMAP} has no ladder"
    bad = f"configmap {AUTOSCALER_CONFIGMAP}: nodesToReplicas is not a JSON list of [nodes, replicas]"
    params = _ladder_params(data)
    if params is None:
        return None, bad
    flag = _param(params, "includeUnschedulableNodes")
    if flag is not None and not isinstance(flag, bool):  # Go's encoding/json refuses it, and so the whole ladder
        return None, f"configmap {AUTOSCALER_CONFIGMAP}: includeUnschedulableNodes is {json.dumps(flag)}, not true " \
                     "or false (the autoscaler refuses the whole ladder)"
    steps = _param(params, "nodesToReplicas")
    if steps is None:
        return (), None
    if not isinstance(steps, list):
        return None, bad
    ladder: list[tuple[int, int]] = []
    for step in steps:
        pair = [_whole(v) for v in step] if isinstance(step, list) else []
        if len(pair) != 2 or pair[0] is None or pair[1] is None:
            return None, f"{bad}: step {json.dumps(step)}"
        if pair[0] < 1 or pair[1] < 1:
            return None, f"configmap {AUTOSCALER_CONFIGMAP}: nodesToReplicas step {json.dumps(step)} is below 1 " \
                         "(the autoscaler refuses the whole ladder)"
        ladder.append((pair[0], pair[1]))
    return tuple(sorted(ladder)), None


def include_unschedulable(data: dict[str, str] | None) -> bool:
    """The ladder's `includeUnschedulableNodes` (cluster-proportional-autoscaler 1.9 and later): true, the
    autoscaler counts every node; absent or false (its default), only schedulable ones. Anything else is
    refused with the ladder by `parse_ladder`."""
    params = _ladder_params(data) if data is not None else None
    return params is not None and _param(params, "includeUnschedulableNodes") is True


def _ladder_json(data: dict[str, str]) -> str | None:
    return data.get("ladder") or next((v for v in data.values() if "nodestoreplicas" in v.lower()), None)


def _ladder_params(data: dict[str, str]) -> dict[str, Any] | None:
    """The ladder's JSON object; None when the configmap has none or it is not a JSON object."""
    raw = _ladder_json(data)
    try:
        params = json.loads(raw) if raw is not None else None
    except ValueError:
        return None
    return params if isinstance(params, dict) else None


def _param(params: dict[str, Any], name: str) -> Any:
    """A ladder field, its name matched case-insensitively as Go's encoding/json matches it."""
    return next((v for k, v in params.items() if str(k).lower() == name.lower()), None)


def _whole(value: object) -> int | None:
    """A whole number from JSON (an int, an integral float, or a string of one); None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def choose_nodes(nodes: Sequence[KubeNode], opts: KubeOptions) -> list[KubeNode]:
    """Every node (`all`), else a rotating sample per pool with the node probes' rule.

    Only Ready, real nodes: a NotReady node's kubelet does not answer whatever the tunnel does (its own
    heartbeat is another path), and a virtual-kubelet node has no kubelet behind the tunnel.
    """
    nodes = [n for n in nodes if n.ready and not n.virtual]
    if opts.mode == "all":
        return list(nodes)
    turn = int(time.time() // 1800) if opts.rotation is None else opts.rotation
    chosen: list[KubeNode] = []
    for pool in sorted({n.pool for n in nodes}):
        members = sorted((n for n in nodes if n.pool == pool), key=lambda n: n.name)
        start = turn % len(members)
        chosen.extend((members[start:] + members[:start])[: opts.per_pool])
    wanted = {name.lower() for name in opts.must_check}
    chosen += [n for n in nodes if n.name.lower() in wanted and n not in chosen]
    return chosen


def pick_log_target(node: str, pods: Sequence[PodInfo]) -> PodInfo | None:
    """A running DaemonSet pod on that node, preferring one whose container runs (the kubelet answers a
    waiting container with an error of its own, which would hide what the tunnel did), then the DaemonSets
    present on every AKS node."""
    here = [p for p in pods if p.node == node and p.phase == "Running" and p.containers]
    if not here:
        return None
    rank = {name: i for i, name in enumerate(PREFERRED_DAEMONSETS)}
    return min(here, key=lambda p: (not _running(log_container(p)), rank.get(p.owner_name, len(rank)),
                                    p.owner_name, p.name))


def log_container(pod: PodInfo) -> ContainerState:
    """The container to read a line from: the first one running (neither waiting nor terminated)."""
    return next((c for c in pod.containers if _running(c)), pod.containers[0])


def _running(container: ContainerState) -> bool:
    return not container.waiting_reason and not container.terminated_reason


def run_symptom(api: KubeClient, nodes: Sequence[KubeNode], pods: Sequence[PodInfo],
                opts: KubeOptions) -> tuple[NodeSymptom, ...]:
    """One log call per node, PER_CLUSTER at a time, under the fleet cap and the cluster's time budget."""
    fleet = opts.fleet or FLEET_CALLS
    deadline = time.monotonic() + opts.budget_s

    def one(node: KubeNode) -> NodeSymptom:
        pod = pick_log_target(node.name, pods)
        if pod is None:
            return NodeSymptom(node.name, ERROR, "not checked: no running DaemonSet pod on this node to read a "
                                                 "log line from")
        with fleet:
            if time.monotonic() > deadline:
                return NodeSymptom(node.name, ERROR, f"not checked: the cluster's symptom time budget "
                                                     f"({opts.budget_s:g} s) ran out")
            container = log_container(pod).name
            try:
                api.log_tail(pod.namespace, pod.name, container)
            except KubeCallError as exc:
                if exc.status is None:  # the API answered the lists, then not this call: say so, judge nothing
                    return NodeSymptom(node.name, ERROR, f"no answer from the API server for {pod.name}'s log: "
                                                         f"{exc.message}")
                result, detail = classify(exc.status, exc.message)
                return NodeSymptom(node.name, result, detail)
        return NodeSymptom(node.name, "ok", f"read the last log line of {pod.namespace}/{pod.name} "
                                            f"({container}) through the tunnel")

    if not nodes:
        return ()
    with ThreadPoolExecutor(max_workers=max(1, min(opts.per_cluster, len(nodes))),
                            thread_name_prefix="symptom") as pool:
        return tuple(pool.map(run_in_context(one), nodes))
