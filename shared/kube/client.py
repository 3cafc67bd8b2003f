"""A small read-only wrapper around the official `kubernetes` client: the few calls the monitor makes.

Answers are deserialised by the client's own models (so a shape the real API would not produce fails
here as it would in production) and converted at once into `shared.kube.types` values. Every failure is
a `KubeCallError` carrying the HTTP status (None when no HTTP answer came back) and the server's
message, so callers can say exactly why something is `unknown`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.kube.access import KeyFiles, KubeTarget
from shared.kube.classify import status_message
from shared.kube.types import ContainerState, KubeEvent, KubeNode, NodeCondition, PodInfo

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 15.0
# A log call waits while the API server dials the kubelet through the tunnel: the dial's own timeout (tens
# of seconds) must come back as the server's message, not be cut short by ours.
LOG_READ_TIMEOUT_S = 40.0
LOG_LIMIT_BYTES = 256
POOL_LABELS = ("kubernetes.azure.com/agentpool", "agentpool")
OS_LABELS = ("kubernetes.io/os", "beta.kubernetes.io/os")  # the second is the pre-1.14 name, still on old nodes
MALFORMED = 0  # KubeCallError.status for an HTTP answer the client could not read (not a transport failure)


class KubeCallError(Exception):
    def __init__(self, status: int | None, message: str, what: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.what = what


class KubeClient:
    """One cluster's API connection; close() it (or use `with`) to drop the pool and any key files."""

    def __init__(self, target: KubeTarget, *, max_connections: int = 8,
                 timeout: tuple[float, float] = (CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
                 log_timeout: float = LOG_READ_TIMEOUT_S) -> None:
        from kubernetes import client

        self.target = target
        self.timeout = timeout
        self.log_timeout = log_timeout
        self._keys: KeyFiles | None = None
        config = client.Configuration(host=target.server, ca_cert_data=target.ca_pem.decode("ascii"),
                                      retries=1, connection_pool_maxsize=max_connections)
        if target.token is not None:
            config.api_key = {"BearerToken": target.token}
            config.api_key_prefix = {"BearerToken": "Bearer"}
        elif target.client_cert_pem is not None and target.client_key_pem is not None:
            self._keys = KeyFiles(target.client_cert_pem, target.client_key_pem)
            config.cert_file, config.key_file = self._keys.cert, self._keys.key
        self._api = client.ApiClient(config)
        self.core = client.CoreV1Api(self._api)
        self.apps = client.AppsV1Api(self._api)

    def __enter__(self) -> KubeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._api.close()  # type: ignore[no-untyped-call]
        finally:
            if self._keys is not None:
                self._keys.close()

    # ------------------------------------------------------------ calls

    def _call(self, what: str, call: Any, *args: Any, read_timeout: float | None = None, **kwargs: Any) -> Any:
        import urllib3
        from kubernetes.client.exceptions import ApiException

        timeout = self.timeout if read_timeout is None else (self.timeout[0], read_timeout)
        try:
            return call(*args, _request_timeout=timeout, **kwargs)
        except ApiException as exc:
            raise KubeCallError(exc.status, status_message(exc.body, str(exc.reason or "")), what) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:  # connection/TLS/timeout: no HTTP answer at all
            raise KubeCallError(None, _transport_message(exc), what) from None
        except (ValueError, TypeError) as exc:  # an answer the client's models reject (pydantic raises ValueError)
            raise KubeCallError(MALFORMED, f"the answer does not fit the Kubernetes API's shape: "
                                           f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                                what) from None

    def list_nodes(self) -> tuple[KubeNode, ...]:
        answer = self._call("nodes", self.core.list_node)
        return tuple(_node(n) for n in answer.items or ())

    def list_pods(self, namespace: str, label_selector: str | None = None) -> tuple[PodInfo, ...]:
        what = f"pods in {namespace}" + (f" ({label_selector})" if label_selector else "")
        answer = self._call(what, self.core.list_namespaced_pod, namespace, label_selector=label_selector)
        return tuple(_pod(p) for p in answer.items or ())

    def list_events(self, namespace: str) -> tuple[KubeEvent, ...]:
        answer = self._call(f"events in {namespace}", self.core.list_namespaced_event, namespace)
        return tuple(_event(e) for e in answer.items or ())

    def read_configmap(self, namespace: str, name: str) -> dict[str, str] | None:
        """The configmap's data, or None when it does not exist (404)."""
        try:
            answer = self._call(f"configmap {namespace}/{name}", self.core.read_namespaced_config_map, name,
                                namespace)
        except KubeCallError as exc:
            if exc.status == 404:
                return None
            raise
        return dict(answer.data or {})

    def deployment_replicas(self, namespace: str, name: str) -> int | None:
        """spec.replicas of a deployment, or None when it does not exist (404)."""
        try:
            answer = self._call(f"deployment {namespace}/{name}", self.apps.read_namespaced_deployment, name,
                                namespace)
        except KubeCallError as exc:
            if exc.status == 404:
                return None
            raise
        spec = answer.spec
        return None if spec is None or spec.replicas is None else int(spec.replicas)

    def log_tail(self, namespace: str, pod: str, container: str | None,
                 limit_bytes: int = LOG_LIMIT_BYTES) -> str:
        """The last line of a container's log: the smallest call that crosses the tunnel to the kubelet."""
        return str(self._call(f"log of {namespace}/{pod}", self.core.read_namespaced_pod_log, pod, namespace,
                              container=container, tail_lines=1, limit_bytes=limit_bytes,
                              read_timeout=self.log_timeout))


# ------------------------------------------------------------ model -> value conversions


def _node(item: Any) -> KubeNode:
    labels = dict(item.metadata.labels or {}) if item.metadata else {}
    status = item.status
    addresses: Sequence[Any] = (status.addresses or ()) if status else ()
    internal = next((a.address for a in addresses if a.type == "InternalIP"), None)
    conditions = tuple(NodeCondition(c.type, c.status, c.reason or "", c.message or "")
                       for c in ((status.conditions or ()) if status else ()))
    pool = next((labels[k] for k in POOL_LABELS if labels.get(k)), "")
    os_name = next((labels[k] for k in OS_LABELS if labels.get(k)), "linux")  # no label: linux (the default OS)
    spec = item.spec
    return KubeNode(name=item.metadata.name, pool=pool, internal_ip=internal, conditions=conditions,
                    virtual=labels.get("type") == "virtual-kubelet", os=str(os_name).strip().lower(),
                    unschedulable=bool(spec.unschedulable) if spec is not None else False)


def _pod(item: Any) -> PodInfo:
    meta, spec, status = item.metadata, item.spec, item.status
    owners = (meta.owner_references or ()) if meta else ()
    owner = owners[0] if owners else None
    conditions = (status.conditions or ()) if status else ()
    ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
    unscheduled = next((c.message or c.reason or "" for c in conditions
                        if c.type == "PodScheduled" and c.status != "True"), "")
    containers = tuple(_container(c) for c in ((status.container_statuses or ()) if status else ()))
    due = meta.deletion_timestamp if meta else None
    grace = meta.deletion_grace_period_seconds if meta else None
    since = due - timedelta(seconds=int(grace)) if due is not None and grace else due
    return PodInfo(name=meta.name, namespace=meta.namespace or "", node=spec.node_name if spec else None,
                   phase=(status.phase if status else None) or "Unknown", ready=ready, containers=containers,
                   owner_kind=owner.kind if owner else "", owner_name=owner.name if owner else "",
                   conditions_message=unscheduled,
                   deletion_due=due.isoformat() if due is not None else None,
                   deleting_since=since.isoformat() if since is not None else None)


def _container(c: Any) -> ContainerState:
    state, last = c.state, c.last_state
    waiting = state.waiting.reason if state and state.waiting else None
    terminated = state.terminated.reason if state and state.terminated else None
    last_term = last.terminated if last and last.terminated else None
    finished = last_term.finished_at if last_term else None
    return ContainerState(name=c.name, ready=bool(c.ready), restarts=int(c.restart_count or 0),
                          waiting_reason=waiting, terminated_reason=terminated,
                          last_terminated_reason=last_term.reason if last_term else None,
                          last_terminated_at=finished.isoformat() if finished is not None else None)


def _event(item: Any) -> KubeEvent:
    """A core/v1 Event, old style (count, firstTimestamp, lastTimestamp) or events.k8s.io style (eventTime is the
    first occurrence; repeats go to series.count and series.lastObservedTime, the deprecated fields stay empty):
    its latest occurrence is the latest of the four times, its count the larger of the two counts."""
    involved, series = item.involved_object, item.series
    moments = [m for m in (item.last_timestamp, series.last_observed_time if series is not None else None,
                           item.event_time, item.first_timestamp) if isinstance(m, datetime)]
    moment = max(moments, key=_aware) if moments else \
        (item.metadata.creation_timestamp if item.metadata else None)
    count = max(int(item.count or 0), int(series.count or 0) if series is not None else 0, 1)
    return KubeEvent(object_kind=involved.kind or "", object_name=involved.name or "", reason=item.reason or "",
                     message=item.message or "", type=item.type or "", count=count,
                     last_seen=moment.isoformat() if moment is not None else "")


def _aware(moment: datetime) -> datetime:
    """Times the API gives without an offset are UTC (RFC 3339 `Z`): comparable with the ones that carry it."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _transport_message(exc: Exception) -> str:
    """urllib3 wraps the real cause (DNS, refused, timeout, TLS) several levels deep: name the innermost."""
    reason = getattr(exc, "reason", None)
    inner = reason if isinstance(reason, Exception) else exc
    text = str(inner) or type(inner).__name__
    return " ".join(text.split())
