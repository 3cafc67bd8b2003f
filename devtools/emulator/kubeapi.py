"""An emulated Kubernetes API server per AKS cluster, and the two ARM credential operations that name it.

Each cluster gets its own HTTPS server on loopback (started on its first credential request) with its
own CA, like an AKS control plane: `listClusterUserCredential` / `listClusterMonitoringUserCredential`
return kubeconfigs pointing at it. It authenticates a bearer token minted by the emulator's identity
endpoint for the AKS server application (Entra ID clusters) or the monitoring user's client
certificate (local accounts), and serves the read-only calls the monitor makes: nodes, pods, events,
configmaps and deployments in kube-system, and pod logs.

A pod-log call crosses the "tunnel" for real when the node lab runs (root): an agent is connected when
its pod is Ready and its node reaches the API server on 443 (`nc` from the node's network namespace, so
egress blocks in the lab's hub count); the kubelet dial is `nc` from that agent's node to the target
node's 10250, so iptables/UFW/NSG-style drops produce the real timeout and a REJECT the real refusal.
Without root the same decisions come from the in-process responder's evaluation of the declared state,
and every such answer carries the header `X-Emulator-Dial: in-process (approximate)`.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import trustme

from devtools.emulator import kubeobjects as objects
from devtools.emulator.access import agents_locked_out, direct_dial
from devtools.emulator.http_types import ArmError, Request, Response
from devtools.emulator.nodes import NodeState
from devtools.emulator.runcommand import RunCommandService
from devtools.emulator.scenario import ClusterSpec, NodeSpec
from devtools.emulator.server import TlsPerConnectionServer
from devtools.emulator.state import EmulatorState
from shared.tunnel import PORTS_BY_TUNNEL

log = logging.getLogger(__name__)

AKS_SERVER_APP = "6dae42f8-4368-4678-94ff-3960e28e3630"
MONITORING_USER_CN = "clusterMonitoringUser"
KUBELET_PORT = 10250
_DIAL_TIMEOUT_S = 2
_LOG_LINE = "I1203 09:00:00.000000       1 proxier.go:805] \"SyncProxyRules complete\" elapsed=\"12.3ms\"\n"


@dataclass
class _ClusterApi:
    cluster_id: str
    ca: trustme.CA
    client_cert: trustme.LeafCert
    server: _KubeServer | None
    url: str


class KubeApiService:
    """The per-cluster API servers of one emulator; `latency` (seconds) delays every API answer."""

    def __init__(self, state: EmulatorState, runcommands: RunCommandService,
                 token_resource: Callable[[str], str | None]) -> None:
        self.state = state
        self.runcommands = runcommands
        self.token_resource = token_resource
        self.latency = 0.0
        self.calls: dict[str, int] = {}
        self.dials: dict[str, int] = {}  # how kubelet dials were decided: kernel or in-process
        self.in_flight = 0
        self.max_in_flight = 0  # the most API calls answered at once (benchmarks and bound checks)
        self._apis: dict[str, _ClusterApi] = {}
        self._pods: dict[str, tuple[ClusterSpec, float, list[dict[str, Any]]]] = {}
        self._lock = threading.Lock()
        self._dir = Path(tempfile.mkdtemp(prefix="aks-kubeapi-"))

    # ------------------------------------------------------------ ARM operations

    def list_user_credential(self, req: Request, cluster: ClusterSpec) -> Response:
        return self._credential(cluster, monitoring=False)

    def list_monitoring_credential(self, req: Request, cluster: ClusterSpec) -> Response:
        if cluster.kube.get("aad", True) and cluster.kube.get("disableLocalAccounts", False):
            raise ArmError(400, "BadRequest", "Getting static credential is not allowed because this cluster is "
                                              "set to disable local accounts.")
        return self._credential(cluster, monitoring=True)

    def _credential(self, cluster: ClusterSpec, *, monitoring: bool) -> Response:
        api = self._api(cluster)
        user = f"{'clusterMonitoringUser' if monitoring else 'clusterUser'}_{cluster.resource_group}_{cluster.name}"
        if monitoring:
            entry: dict[str, Any] = {
                "client-certificate-data": _b64(api.client_cert.cert_chain_pems[0].bytes()),
                "client-key-data": _b64(api.client_cert.private_key_pem.bytes()),
            }
        else:
            entry = {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": "kubelogin",
                              "args": ["get-token", "--environment", "AzurePublicCloud", "--server-id",
                                       AKS_SERVER_APP, "--client-id", "80faf920-1908-4b52-b5ef-a8e7bedfc67a",
                                       "--tenant-id", self.state.tenant_id, "--login", "devicecode"],
                              "env": None, "interactiveMode": "IfAvailable", "provideClusterInfo": False}}
        config = {"apiVersion": "v1", "kind": "Config", "current-context": cluster.name, "preferences": {},
                  "clusters": [{"name": cluster.name, "cluster": {
                      "certificate-authority-data": _b64(api.ca.cert_pem.bytes()), "server": api.url}}],
                  "contexts": [{"name": cluster.name, "context": {"cluster": cluster.name, "user": user}}],
                  "users": [{"name": user, "user": entry}]}
        text = json.dumps(config, indent=2)  # JSON is YAML: kubeconfig readers accept it
        name = "clusterMonitoringUser" if monitoring else "clusterUser"
        return Response(200, {"kubeconfigs": [{"name": name, "value": _b64(text.encode())}]})

    # ------------------------------------------------------------ servers

    def _api(self, cluster: ClusterSpec) -> _ClusterApi:
        key = cluster.id.lower()
        with self._lock:
            found = self._apis.get(key)
            if found is not None:
                return found
            ca = trustme.CA(organization_name=f"AKS {cluster.name}")
            api = _ClusterApi(cluster.id, ca, ca.issue_cert(common_name=MONITORING_USER_CN), None, "")
            reachable = cluster.kube.get("reachable", True)
            if reachable is True:
                context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
                ca.configure_trust(context)
                context.verify_mode = ssl.CERT_OPTIONAL
                server = _KubeServer(("127.0.0.1", 0), self, cluster.id, context)
                threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True,
                                 name=f"kubeapi-{cluster.name}").start()
                api.server, api.url = server, f"https://127.0.0.1:{server.server_address[1]}"
            else:  # private without line of sight / authorized ranges without us: nothing answers
                api.url = f"https://127.0.0.1:{_closed_port()}"
            self._apis[key] = api
            return api

    def pods(self, cluster: ClusterSpec, now: datetime) -> list[dict[str, Any]]:
        """kube-system's pods, rebuilt when the cluster's spec changes (or after a second: timestamps)."""
        with self._lock:
            cached = self._pods.get(cluster.id)
        if cached is not None and cached[0] is cluster and time.monotonic() - cached[1] < 1.0:
            return cached[2]
        pods = objects.pods_json(cluster, now)
        with self._lock:
            self._pods[cluster.id] = (cluster, time.monotonic(), pods)
        return pods

    def close(self) -> None:
        with self._lock:
            apis = list(self._apis.values())
            self._apis.clear()
        for api in apis:
            if api.server is not None:
                api.server.shutdown()
                api.server.server_close()

    # ------------------------------------------------------------ the API

    def handle(self, cluster_id: str, method: str, target: str, headers: dict[str, str],
               peer: dict[str, Any] | None) -> tuple[int, str, bytes, dict[str, str]]:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return self._handle(cluster_id, method, target, headers, peer)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _handle(self, cluster_id: str, method: str, target: str, headers: dict[str, str],
                peer: dict[str, Any] | None) -> tuple[int, str, bytes, dict[str, str]]:
        if self.latency > 0:
            time.sleep(self.latency)
        cluster = self.state.cluster(cluster_id)
        if cluster is None:
            return _status(503, "ServiceUnavailable", "the cluster is gone")
        split = urlsplit(target)
        path, query = split.path.rstrip("/"), dict(parse_qsl(split.query))
        with self._lock:
            self.calls[_kind(path)] = self.calls.get(_kind(path), 0) + 1
        who = self._authenticate(cluster, headers, peer)
        if who is None:
            return _status(401, "Unauthorized", "Unauthorized")
        if method != "GET":
            return _status(405, "MethodNotAllowed", f"the server does not allow this method on {path}")
        now = datetime.now(UTC)
        rbac = cluster.kube.get("rbac", "allow")
        parts = path.strip("/").split("/")
        if rbac == "forbid":
            return _forbidden(who, "list" if len(parts) % 2 == 1 else "get", parts)
        if parts[:3] == ["api", "v1", "nodes"] and len(parts) == 3:
            return _list("NodeList", [objects.node_json(cluster, n, now) for n in cluster.nodes])
        if parts[:3] != ["api", "v1", "namespaces"] and parts[:3] != ["apis", "apps", "v1"]:
            return _status(404, "NotFound", f"the server could not find the requested resource ({path})")
        if parts[:3] == ["apis", "apps", "v1"]:
            if parts[3:5] == ["namespaces", objects.NAMESPACE] and parts[5:6] == ["deployments"] and len(parts) == 7:
                found = objects.deployment_json(cluster, now) if parts[6] == objects.AGENT else None
                return _json(found) if found else _not_found("deployments.apps", parts[6])
            return _status(404, "NotFound", f"the server could not find the requested resource ({path})")
        namespace, resource = parts[3], parts[4] if len(parts) > 4 else ""
        if namespace != objects.NAMESPACE:
            return _list(f"{resource[:-1].capitalize()}List", [])
        if resource == "pods" and len(parts) == 5:
            return _list("PodList", objects.selected(self.pods(cluster, now), query.get("labelSelector")))
        if resource == "pods" and len(parts) == 7 and parts[6] == "log":
            if rbac == "no-logs":
                return _status(403, "Forbidden", f'pods "{parts[5]}" is forbidden: User "{who}" cannot get resource '
                                                 f'"pods/log" in API group "" in the namespace "{namespace}"')
            return self._log(cluster, parts[5], query, now)
        if resource == "events" and len(parts) == 5:
            if rbac == "no-events":
                return _forbidden(who, "list", parts)
            return _list("EventList", objects.events_json(cluster, now))
        if resource == "configmaps" and len(parts) == 6:
            found = objects.configmap_json(cluster) if parts[5] == f"{objects.AGENT}-autoscaler" else None
            return _json(found) if found else _not_found("configmaps", parts[5])
        return _status(404, "NotFound", f"the server could not find the requested resource ({path})")

    def _authenticate(self, cluster: ClusterSpec, headers: dict[str, str], peer: dict[str, Any] | None) -> str | None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token:
            if cluster.kube.get("aad", True) and self.token_resource(token) == AKS_SERVER_APP:
                return "00000000-0000-0000-0000-000000000001"  # the monitor identity's object id
            return None
        if peer:
            subject = dict(item[0] for item in peer.get("subject", ()))
            if subject.get("commonName") == MONITORING_USER_CN:
                return MONITORING_USER_CN
        return None

    # ------------------------------------------------------------ the tunnel

    def _log(self, cluster: ClusterSpec, pod_name: str, query: dict[str, str],
             now: datetime) -> tuple[int, str, bytes, dict[str, str]]:
        pod = next((p for p in self.pods(cluster, now) if p["metadata"]["name"] == pod_name), None)
        if pod is None:
            return _not_found("pods", pod_name)
        node_name = pod["spec"].get("nodeName")
        target = next((n for n in cluster.nodes if n.name == node_name), None)
        if target is None:
            return _status(400, "BadRequest", f"pod {pod_name} is not scheduled on a node")
        container = query.get("container") or pod["spec"]["containers"][0]["name"]
        limit = int(query.get("limitBytes") or 0)
        url = (f"https://{target.ip}:{KUBELET_PORT}/containerLogs/{objects.NAMESPACE}/{pod_name}/{container}?"
               + "&".join(f"{k}={query[k]}" for k in ("limitBytes", "tailLines") if k in query))
        delay = float(cluster.kube.get("logDelaySeconds", 0))  # a tunnel dial that hangs
        if delay > 0:
            time.sleep(delay)
        outcome, how = self.dial(cluster, target, now)
        with self._lock:
            self.dials[how] = self.dials.get(how, 0) + 1
        headers = {"X-Emulator-Dial": how}
        plain = cluster.kube.get("plainHttpNodes", ())  # node names, or indexes in the cluster's node order
        if outcome == "ok" and (target.name in plain or cluster.nodes.index(target) in plain):
            return _status(500, "InternalError", f'Get "{url}": http: server gave HTTP response to HTTPS client',
                           headers)
        if outcome == "ok":
            line = _LOG_LINE.encode()
            return 200, "text/plain", line[:limit] if limit else line, headers
        return _status(500, "InternalError", f'Get "{url}": {_GO_ERRORS.get(outcome, outcome).format(ip=target.ip)}',
                       headers)

    def dial(self, cluster: ClusterSpec, target: NodeSpec, now: datetime) -> tuple[str, str]:
        """(outcome, how): outcome is ok | no-agent | timeout | refused | noroute."""
        locked_out = agents_locked_out(self.state, cluster)
        if locked_out is not None:  # no agent could connect to the API server at all
            return "no-agent", locked_out
        direct = direct_dial(self.runcommands.executor_for(cluster), self.runcommands.current_state, cluster, target)
        if direct is not None:  # API Server VNet Integration: no agents, the API server dials the kubelet
            return direct
        # A pod being deleted (Terminating) keeps its Ready condition but is shutting down: it carries nothing.
        agents = [p for p in objects.agent_pods(cluster, now)
                  if p.phase == "Running" and p.ready and p.node and p.deleted_at is None]
        nodes = {n.name: n for n in cluster.nodes}
        executor = self.runcommands.executor_for(cluster)
        exec_in_node = getattr(executor, "exec_in_node", None)
        how = "kernel (nc in the agent node's network namespace)" if exec_in_node else "in-process (approximate)"
        api_ip = cluster.api_server.ip
        # destHost: the server prefers the agent on the destination node itself (AKS runs the agents with
        # the host network, so that dial is node-local), then any other connected agent.
        ranked = sorted(agents, key=lambda a: (a.node != target.name, a.name))
        # tunnel-front / aks-link: one tunnel pod, on the first plain running node.
        sources = [nodes[a.node] for a in ranked if a.node in nodes] if cluster.tunnel == "konnectivity" else \
            sorted((n for n in cluster.nodes if n.running), key=lambda n: bool(n.sim.get("ufw") or
                                                                                n.sim.get("iptables")))[:1]
        egress = PORTS_BY_TUNNEL.get(cluster.tunnel, ("tcp/443",))[0]  # the agent's own connection
        for source in sources:
            state = self.runcommands.current_state(source)
            if not source.running or (egress == "tcp/443" and state.tls_inspected):
                continue  # a TLS-inspecting proxy breaks the agent's mTLS + ALPN: it never connects
            if exec_in_node is not None:
                proto, port = egress.split("/")
                reached = _nc(exec_in_node, source.name, api_ip, int(port)) == "ok" if proto == "tcp" else \
                    egress not in state.egress_blocked  # nc cannot prove UDP: the declared state decides
                if not reached:
                    continue
                return _nc(exec_in_node, source.name, target.ip, KUBELET_PORT), how
            if egress in state.egress_blocked:
                continue
            return _responder_outcome(state, self.runcommands.current_state(target)), how
        return "no-agent", how


def _responder_outcome(source: NodeState, target: NodeState) -> str:
    from devtools.emulator.responder import kubelet_outcome

    return kubelet_outcome(source, target)


_NODE_LOCKS: dict[str, threading.Lock] = {}
_WARM: set[str] = set()
_NODE_LOCKS_GUARD = threading.Lock()


def _nc(exec_in_node: Any, node: str, ip: str, port: int) -> str:
    argv = ["nc", "-vz", "-w", str(_DIAL_TIMEOUT_S), ip, str(port)]
    # The lab's first command in a node builds its PATH farm, which two concurrent first commands race on
    # (FileExistsError): the first one per lab and node runs alone, the rest in parallel.
    key = f"{getattr(getattr(exec_in_node, '__self__', None), 'tag', '')}/{node}"  # labs carry a random tag
    with _NODE_LOCKS_GUARD:
        lock = _NODE_LOCKS.setdefault(key, threading.Lock())
        warm = key in _WARM
    if warm:
        done = exec_in_node(node, argv, timeout=30)
    else:
        with lock:
            done = exec_in_node(node, argv, timeout=30)
            with _NODE_LOCKS_GUARD:
                _WARM.add(key)
    text = (done.stdout + done.stderr).lower()
    if done.returncode == 0 and "succeeded" in text:
        return "ok"
    if "refused" in text:
        return "refused"
    if "no route" in text or "unreachable" in text:
        return "noroute"
    return "timeout"


_GO_ERRORS = {
    "no-agent": "No agent available",
    "timeout": "dial tcp {ip}:10250: i/o timeout",
    "refused": "dial tcp {ip}:10250: connect: connection refused",
    "noroute": "dial tcp {ip}:10250: connect: no route to host",
}


class _KubeServer(TlsPerConnectionServer):
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], service: KubeApiService, cluster_id: str,
                 tls: ssl.SSLContext) -> None:
        self.service, self.cluster_id, self.tls = service, cluster_id, tls
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle on, a keep-alive client's delayed ACK adds ~40 ms.
    disable_nagle_algorithm = True
    server: _KubeServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: benchmarks make thousands of calls."""

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        peer = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
        try:
            status, ctype, body, headers = self.server.service.handle(
                self.server.cluster_id, self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                peer or None)
        except Exception as err:  # answer like an API server bug would, never drop the connection
            status, ctype, body, headers = _status(500, "InternalError", f"emulator bug: {err!r}")
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except (TimeoutError, BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True


# ------------------------------------------------------------ answers


def _json(obj: dict[str, Any], status: int = 200,
          headers: dict[str, str] | None = None) -> tuple[int, str, bytes, dict[str, str]]:
    return status, "application/json", json.dumps(obj).encode(), headers or {}


def _list(kind: str, items: list[dict[str, Any]]) -> tuple[int, str, bytes, dict[str, str]]:
    return _json({"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items})


def _status(code: int, reason: str, message: str,
            headers: dict[str, str] | None = None) -> tuple[int, str, bytes, dict[str, str]]:
    return _json({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
                  "reason": reason, "code": code}, code, headers)


def _not_found(resource: str, name: str) -> tuple[int, str, bytes, dict[str, str]]:
    return _status(404, "NotFound", f'{resource} "{name}" not found')


def _forbidden(who: str, verb: str, parts: list[str]) -> tuple[int, str, bytes, dict[str, str]]:
    namespaced = len(parts) > 4 and parts[2] == "namespaces"
    resource = parts[4] if namespaced else parts[-1] if len(parts) % 2 == 1 else parts[-2]
    scope = f'in the namespace "{parts[3]}"' if namespaced else "at the cluster scope"
    group = "apps" if parts[0] == "apis" else ""
    name = f' "{parts[5]}"' if namespaced and len(parts) > 5 else ""
    return _status(403, "Forbidden", f'{resource}{name} is forbidden: User "{who}" cannot {verb} resource '
                                     f'"{resource}" in API group "{group}" {scope}')


def _kind(path: str) -> str:
    parts = path.strip("/").split("/")
    if parts[-1:] == ["log"]:
        return "log"
    return parts[-1] if len(parts) % 2 == 1 else parts[-2]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _closed_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = int(probe.getsockname()[1])
    probe.close()
    return port
