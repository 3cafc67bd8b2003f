"""What the monitor read from a cluster's Kubernetes API, as plain typed values (no kubernetes client types).

Collection (`shared.kube.collect`) fills these; the snapshot carries them; causes and the report read them.
Keeping them free of the `kubernetes` package means evaluation, tests and `analyze` never import it.
"""

from __future__ import annotations

from dataclasses import dataclass

# Per-node results of the symptom call (DESIGN.md, report `symptom.nodes[].result`).
OK = "ok"
TIMEOUT = "timeout"
REFUSED = "refused"
NO_AGENT = "no-agent"
PLAIN_HTTP = "plain-http"
FORBIDDEN = "forbidden"
UNREACHABLE = "unreachable"
ERROR = "error"
RESULTS = (OK, TIMEOUT, REFUSED, NO_AGENT, PLAIN_HTTP, FORBIDDEN, UNREACHABLE, ERROR)
# Results that prove the tunnel path to that node is broken (the report's `degraded`).
BROKEN = frozenset({TIMEOUT, REFUSED, NO_AGENT, PLAIN_HTTP})


@dataclass(frozen=True)
class NodeCondition:
    type: str  # Ready | MemoryPressure | DiskPressure | PIDPressure | NetworkUnavailable ...
    status: str  # "True" | "False" | "Unknown"
    reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class KubeNode:
    name: str
    pool: str  # the `kubernetes.azure.com/agentpool` (or `agentpool`) label; "" when absent
    internal_ip: str | None
    conditions: tuple[NodeCondition, ...] = ()
    virtual: bool = False  # a virtual-kubelet node (ACI virtual nodes): no kubelet behind a tunnel
    os: str = "linux"  # label `kubernetes.io/os` (else `beta.kubernetes.io/os`); a node without either is linux
    unschedulable: bool = False  # spec.unschedulable: cordoned (`kubectl cordon`, or drained by an upgrade)

    @property
    def ready(self) -> bool:
        return any(c.type == "Ready" and c.status == "True" for c in self.conditions)

    @property
    def can_host_agent(self) -> bool:
        """A node the Konnectivity agent can be scheduled on: its nodeSelector is `kubernetes.io/os: linux`,
        a virtual-kubelet node runs no agent pod, and a cordoned node takes no new pod."""
        return self.os == "linux" and not self.virtual and not self.unschedulable

    def problems(self) -> tuple[NodeCondition, ...]:
        """Conditions worth showing next to a sick agent: not Ready, or any pressure/network condition True."""
        return tuple(c for c in self.conditions
                     if (c.type == "Ready" and c.status != "True") or (c.type != "Ready" and c.status == "True"))


@dataclass(frozen=True)
class ContainerState:
    name: str
    ready: bool
    restarts: int
    waiting_reason: str | None = None  # CrashLoopBackOff, ImagePullBackOff, ContainerCreating ...
    terminated_reason: str | None = None  # current state terminated (OOMKilled, Error, Completed)
    last_terminated_reason: str | None = None  # lastState.terminated.reason
    last_terminated_at: str | None = None  # lastState.terminated.finishedAt, ISO 8601


@dataclass(frozen=True)
class PodInfo:
    name: str
    namespace: str
    node: str | None  # spec.nodeName; None while Pending unscheduled
    phase: str  # Pending | Running | Succeeded | Failed | Unknown
    ready: bool  # the pod's Ready condition
    containers: tuple[ContainerState, ...] = ()
    owner_kind: str = ""  # ReplicaSet | DaemonSet | ...
    owner_name: str = ""
    conditions_message: str = ""  # e.g. PodScheduled=False message ("0/3 nodes are available: ...")
    # Set while the pod is being deleted (Terminating): metadata.deletionTimestamp, ISO 8601, is when the grace
    # period ends; `deleting_since` is when the deletion was asked (that minus deletionGracePeriodSeconds).
    # The pod keeps its Ready condition until its containers stop, but it is going away: it serves nothing.
    deletion_due: str | None = None
    deleting_since: str | None = None

    @property
    def terminating(self) -> bool:
        return self.deletion_due is not None

    @property
    def restarts(self) -> int:
        return sum(c.restarts for c in self.containers)


@dataclass(frozen=True)
class KubeEvent:
    object_kind: str
    object_name: str
    reason: str  # OOMKilling, BackOff, FailedScheduling, Unhealthy, Killing ...
    message: str
    type: str  # Normal | Warning
    count: int
    # ISO 8601 UTC ("" when the API gave none): the latest of lastTimestamp, series.lastObservedTime, eventTime
    # and firstTimestamp (events.k8s.io-style events leave the deprecated lastTimestamp empty and carry their
    # latest occurrence only in the series).
    last_seen: str


@dataclass(frozen=True)
class AgentView:
    """The Konnectivity agent as the API shows it: its pods, recent events, the autoscaler ladder.

    `ladder` is the `nodesToReplicas` list of configmap `konnectivity-agent-autoscaler` (None: the
    configmap does not exist or has no ladder; `ladder_error` says why it could not be used).
    `desired_replicas` is the deployment's spec.replicas (None: no deployment).
    `include_unschedulable` is the ladder's `includeUnschedulableNodes` (cluster-proportional-autoscaler
    >= 1.9): true counts every node, false (the default) only schedulable ones.
    """

    pods: tuple[PodInfo, ...]
    events: tuple[KubeEvent, ...]
    ladder: tuple[tuple[int, int], ...] | None
    desired_replicas: int | None
    ladder_error: str | None = None
    window_minutes: int = 60
    include_unschedulable: bool = False
    # A pod of an older tunnel in kube-system (tunnelfront-*, aks-link-*): "tunnel-front" | "aks-link" | None.
    # With no agent at all it tells a cluster on an older tunnel from a Konnectivity cluster that lost its agents.
    other_tunnel: str | None = None


@dataclass(frozen=True)
class KubeView:
    """One read of a cluster's Kubernetes API: its nodes and the Konnectivity agent."""

    server: str  # the kubeconfig's server URL (what was reached)
    auth: str  # "entra-id" | "monitoring-user"
    nodes: tuple[KubeNode, ...]
    agent: AgentView
    daemonset_pods: tuple[PodInfo, ...] = ()  # pods of DaemonSets in kube-system (symptom call targets)


@dataclass(frozen=True)
class NodeSymptom:
    """The symptom call for one node: API server -> tunnel -> that node's kubelet."""

    node: str
    result: str  # one of RESULTS
    detail: str  # the API server's message (or why the call could not be made)

    def to_json(self) -> dict[str, str]:
        return {"node": self.node, "result": self.result, "detail": self.detail}
