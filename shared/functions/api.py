"""The HTTP API as plain functions: (query, body) in, (status, JSON, headers) out.

Both the Functions blueprint and the local dev host (`python -m shared serve`) call these, so the two
can never drift. Nothing from a request reaches a node script: the only request value used to act is
the cluster id, which is parsed into validated parts, and probes run the fixed script with addresses
read from ARM.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.model import FINDING_IDS

log = logging.getLogger(__name__)

STATUS_FILTERS = ("open", "all", "resolved")


@dataclass(frozen=True)
class ApiResponse:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)

    def json_bytes(self) -> bytes:
        """Compact: `indent` switches Python's json to its pure-Python encoder, the largest cost of a
        1,000-cluster /api/clusters answer (measured in bench/bench_dashboard.py); clients parse, people pipe to jq."""
        return json.dumps(self.body, separators=(",", ":")).encode()


def error(status: int, message: str, *, field_name: str | None = None, headers: dict[str, str] | None = None
          ) -> ApiResponse:
    body: dict[str, Any] = {"error": {"message": message}}
    if field_name:
        body["error"]["field"] = field_name
    return ApiResponse(status, body, headers or {})


Handler = Callable[[str, list[str], Mapping[str, str], bytes], ApiResponse]


class Api:
    """`context` builds the Monitor lazily (settings, storage and SDK clients) on first use.

    Other route families (e.g. the fleet page) `mount` a handler under their first path segment; the
    local dev host's `route` then serves them exactly like the built-in routes.
    """

    def __init__(self, context: Callable[[], Any]) -> None:
        self._context = context
        self._mounted: dict[str, Handler] = {}

    def mount(self, segment: str, handler: Handler) -> None:
        """Serve /api/<segment>/... with `handler(method, parts after /api, query, body)`."""
        self._mounted[segment] = handler

    @property
    def monitor(self) -> Any:
        return self._context()

    # ------------------------------------------------------------ diagnose

    def diagnose(self, query: Mapping[str, str], body: Mapping[str, Any] | None = None) -> ApiResponse:
        from shared.azure.collect import AccessDenied, ClusterNotFound, CollectionError
        from shared.azure.ids import InvalidResourceId, parse_cluster_id
        from shared.diagnose import diagnose

        params = {**(body or {}), **query}
        cluster_id = str(params.get("clusterId", "")).strip()
        if not cluster_id:
            return error(400, "clusterId is required (a managed cluster resource id)", field_name="clusterId")
        try:
            parse_cluster_id(cluster_id)
        except InvalidResourceId as exc:
            return error(400, str(exc), field_name="clusterId")
        probes = str(params.get("probes", "false")).lower()
        if probes not in ("true", "false", "1", "0"):
            return error(400, "probes must be true or false", field_name="probes")
        if probes in ("true", "1"):
            return self._start_probe_diagnosis(cluster_id)
        monitor = self.monitor
        try:
            result = diagnose(cluster_id, settings=monitor.settings, clients=monitor.clients, probes=False)
        except ClusterNotFound as exc:
            return error(404, str(exc), field_name="clusterId")
        except AccessDenied as exc:
            return error(403, str(exc))
        except CollectionError as exc:
            if "throttl" in str(exc).lower() or "429" in str(exc):
                return error(503, str(exc), headers={"Retry-After": "30"})
            return error(502, str(exc))
        return ApiResponse(200, result.report)

    def _start_probe_diagnosis(self, cluster_id: str) -> ApiResponse:
        """Node probes take minutes: queue the work and answer 202 with where to poll (230 s HTTP limit)."""
        from shared.monitor.queues import DIAGNOSE_QUEUE, send_message
        from shared.store.status import save_diagnosis

        request_id = uuid.uuid4().hex
        monitor = self.monitor
        save_diagnosis(monitor.store, request_id, cluster_id, "pending", None)
        queue = getattr(getattr(monitor, "queues", None), "diagnose", DIAGNOSE_QUEUE)
        send_message(queue, {"requestId": request_id, "clusterId": cluster_id}, monitor.env)
        location = f"/api/diagnoses/{request_id}"
        return ApiResponse(202, {"requestId": request_id, "status": "pending", "statusUrl": location},
                           {"Location": location, "Retry-After": "30"})

    def diagnosis_status(self, request_id: str) -> ApiResponse:
        from shared.store.status import load_diagnosis

        if not request_id.isalnum() or len(request_id) > 64:
            return error(400, "not a diagnosis request id", field_name="requestId")
        found = load_diagnosis(self.monitor.store, request_id)
        if found is None:
            return error(404, f"no diagnosis request {request_id}", field_name="requestId")
        if found["status"] == "pending":
            return ApiResponse(202, found, {"Retry-After": "30"})
        return ApiResponse(200, found)

    # ------------------------------------------------------------ findings

    def findings(self, query: Mapping[str, str]) -> ApiResponse:
        from shared.azure.ids import is_guid
        from shared.store.findings import list_findings

        status = query.get("status", "open").lower()
        if status not in STATUS_FILTERS:
            return error(400, f"status must be one of {', '.join(STATUS_FILTERS)}", field_name="status")
        cause = query.get("cause")
        if cause is not None and cause not in FINDING_IDS:
            return error(400, f"unknown cause id {cause!r}", field_name="cause")
        cluster = query.get("cluster")
        if (bad := _bad_cluster_filter(cluster)) is not None:
            return bad
        subscription = query.get("subscription")
        if subscription is not None and not is_guid(subscription):
            return error(400, "subscription must be a subscription id (GUID)", field_name="subscription")
        rows = list_findings(self.monitor.store, "open" if status == "open" else "all",
                             subscription=subscription, cluster=cluster, cause=cause)
        items = [f.to_json() for f in rows]
        if status == "resolved":
            items = [i for i in items if i.get("status") == "resolved"]
        return ApiResponse(200, {"count": len(items), "findings": items})

    def history(self, finding_id: str) -> ApiResponse:
        from shared.store.findings import get_finding, history

        if not finding_id.isalnum() or len(finding_id) > 64:
            return error(400, "not a finding id", field_name="findingId")
        store = self.monitor.store
        finding = get_finding(store, finding_id)
        if finding is None:
            return error(404, f"no finding {finding_id}", field_name="findingId")
        events = [e.to_json() for e in history(store, finding_id)]
        return ApiResponse(200, {"finding": finding.to_json(), "events": events})

    def clusters(self, query: Mapping[str, str]) -> ApiResponse:
        """One merged report per cluster: each cause from the family that checked it last, with its
        `checkedAt`; shows `unknown` (with reasons) that findings cannot."""
        from shared.monitor.merge import merge_by_cluster
        from shared.store.status import list_cluster_status

        cluster = query.get("cluster")
        if (bad := _bad_cluster_filter(cluster)) is not None:
            return bad
        items = merge_by_cluster(list_cluster_status(self.monitor.store, cluster))
        return ApiResponse(200, {"count": len(items), "clusters": items})

    # ------------------------------------------------------------ health

    def health(self) -> ApiResponse:
        """Storage reachability, and per family what the workers did: the last cycle in which every cluster
        reported without failure (`lastSuccessfulCycle`) and the current cycle's progress (`cycles`)."""
        from shared.monitor.families import ALL_FAMILIES
        from shared.store.checkpoints import get_last_success, settle_cycle

        try:
            store = self.monitor.store
            progress = {family: settle_cycle(store, family) for family in ALL_FAMILIES}
            last = {family: get_last_success(store, family) for family in ALL_FAMILIES}
        except Exception as exc:
            log.warning("health check: storage unreachable: %s", type(exc).__name__)
            return ApiResponse(503, {"status": "unhealthy", "storage": f"unreachable: {type(exc).__name__}"},
                               {"Retry-After": "30"})
        return ApiResponse(200, {
            "status": "healthy",
            "storage": "reachable",
            "checkedAt": datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
            "lastSuccessfulCycle": {f: (c.at.isoformat().replace("+00:00", "Z") if c else None)
                                    for f, c in last.items()},
            "cycles": {f: (p.to_json() if p else None) for f, p in progress.items()},
        })

    # ------------------------------------------------------------ routing (local dev host)

    def route(self, method: str, path: str, query: Mapping[str, str], body: bytes) -> ApiResponse:
        parts = [p for p in path.split("?", 1)[0].split("/") if p]
        if parts[:1] != ["api"]:
            return error(404, f"no route {path}")
        parts = parts[1:]
        payload: Mapping[str, Any] | None = None
        if body:
            try:
                loaded = json.loads(body)
            except ValueError:
                return error(400, "request body is not JSON", field_name="body")
            if not isinstance(loaded, dict):
                return error(400, "request body must be a JSON object", field_name="body")
            payload = loaded
        if parts == ["diagnose"] and method in ("GET", "POST"):
            return self.diagnose(query, payload)
        if len(parts) == 2 and parts[0] == "diagnoses" and method == "GET":
            return self.diagnosis_status(parts[1])
        if parts == ["findings"] and method == "GET":
            return self.findings(query)
        if len(parts) == 3 and parts[0] == "findings" and parts[2] == "history" and method == "GET":
            return self.history(parts[1])
        if parts == ["clusters"] and method == "GET":
            return self.clusters(query)
        if parts == ["health"] and method == "GET":
            return self.health()
        if parts and parts[0] in self._mounted:
            return self._mounted[parts[0]](method, parts, query, body)
        return error(404, f"no route {method} {path}")


def _bad_cluster_filter(cluster: str | None) -> ApiResponse | None:
    """A `cluster` query filter must be a managed cluster id; None when absent or valid."""
    from shared.azure.ids import InvalidResourceId, parse_cluster_id

    if not cluster:
        return None
    try:
        parse_cluster_id(cluster)
    except InvalidResourceId as exc:
        return error(400, str(exc), field_name="cluster")
    return None
