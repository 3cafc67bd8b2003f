"""ARM's request pipeline, in ARM's order: route, api-version, bearer token, latency, throttling, injected
faults, then the resource provider (handler). Every routed call is counted, whatever its answer."""

from __future__ import annotations

import re
import time
import uuid

from devtools.emulator.faults import FaultInjector
from devtools.emulator.handlers import ArmHandlers
from devtools.emulator.http_types import ArmError, Request, Response
from devtools.emulator.identity import TokenIssuer
from devtools.emulator.routes import Route, build_routes, find_route, known_path
from devtools.emulator.stats import CallStats
from devtools.emulator.throttle import READS, WRITES, TokenBuckets

STATS_PATH = "/_emulator/stats"


class ArmDispatcher:
    def __init__(self, handlers: ArmHandlers, issuer: TokenIssuer, faults: FaultInjector, buckets: TokenBuckets,
                 stats: CallStats) -> None:
        self.routes: list[Route] = build_routes(handlers)
        self.issuer = issuer
        self.faults = faults
        self.buckets = buckets
        self.stats = stats

    def __call__(self, req: Request) -> Response:
        if req.path == STATS_PATH and req.method == "GET":
            return Response(200, self.stats.snapshot().to_json())
        found = find_route(self.routes, req.method, req.path)
        if found is None:
            return _finish(_unrouted(self.routes, req), req)
        route, groups = found
        req = Request(req.method, req.path, req.query, req.headers, req.body, req.base_url, groups)
        scope = route.scope(req)
        response = self._process(route, req, scope)
        self.stats.record(route.operation, scope, response.status)
        return _finish(response, req)

    def _process(self, route: Route, req: Request, scope: str) -> Response:
        if not req.query.get("api-version"):
            return ArmError(400, "MissingApiVersionParameter",
                            "The api-version query parameter (?api-version=) is required for all requests.").response()
        check = self.issuer.check(req.headers.get("authorization"))
        if not check.ok:
            error = ArmError(401, check.code, check.message,
                             {"WWW-Authenticate": f'Bearer authorization_uri="{req.base_url}", error="invalid_token", '
                                                  f'error_description="{check.message}"'})
            return error.response()
        delay = self.faults.latency_for(route.operation)
        if delay > 0:
            time.sleep(delay)
        kind = READS if req.method == "GET" else WRITES
        subscription = req.groups.get("sub") or _subscription_in(req.path) or "tenant"
        decision = self.buckets.take(subscription, kind)
        limit_header = f"x-ms-ratelimit-remaining-subscription-{kind}"
        if not decision.allowed:
            return ArmError(429, "TooManyRequests",
                            f"Number of {kind[:-1]} requests for subscription '{subscription}' exceeded the limit. "
                            f"Please retry after {decision.retry_after} seconds.",
                            {"Retry-After": str(decision.retry_after), limit_header: "0"}).response()
        fault = self.faults.take(route.operation, scope, route.action)
        if fault is not None:
            return Response(fault.status, fault.body, dict(fault.headers))
        try:
            response = route.handler(req)
        except ArmError as err:
            response = err.response()
        response.headers.setdefault(limit_header, str(decision.remaining))
        return response


def _unrouted(routes: list[Route], req: Request) -> Response:
    if known_path(routes, req.path):
        return ArmError(405, "MethodNotAllowed",
                        f"The requested resource does not support http method '{req.method}'.").response()
    return ArmError(400, "InvalidResourceType",
                    f"The emulator does not serve '{req.method} {req.path}': it emulates only the ARM operations "
                    "the monitor uses (see DESIGN.md).").response()


def _finish(response: Response, req: Request) -> Response:
    request_id = str(uuid.uuid4())
    response.headers.setdefault("x-ms-request-id", request_id)
    response.headers.setdefault("x-ms-correlation-request-id", req.headers.get("x-ms-correlation-request-id",
                                                                               request_id))
    if "x-ms-client-request-id" in req.headers:
        response.headers.setdefault("x-ms-client-request-id", req.headers["x-ms-client-request-id"])
    return response


_SUBSCRIPTION_IN_PATH = re.compile(r"/subscriptions/([0-9a-fA-F-]{36})", re.IGNORECASE)


def _subscription_in(path: str) -> str | None:
    """Routes like `{resourceUri}/providers/Microsoft.Insights/metrics` carry the subscription inside the
    resource URI; ARM still charges the call to that subscription's bucket."""
    found = _SUBSCRIPTION_IN_PATH.search(path)
    return found.group(1) if found else None
