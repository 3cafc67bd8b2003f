"""Fault injection: make chosen ARM calls fail or slow down, the way Azure sometimes does.

A fault targets an operation name (e.g. `NetworkSecurityGroups.Get`), a resource id (case-insensitive; an
id also covers everything beneath it, so a subscription id covers the whole subscription), or both, and
fires for the next `count` matching calls (None = until removed). Error bodies use the codes Azure
returns for that status, so the monitor sees exactly what it would see in production.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

DEFAULT_CODES = {
    400: "BadRequest", 401: "InvalidAuthenticationToken", 403: "AuthorizationFailed", 404: "ResourceNotFound",
    409: "Conflict", 429: "TooManyRequests", 500: "InternalServerError", 502: "BadGateway",
    503: "ServiceUnavailable", 504: "GatewayTimeout",
}


@dataclass
class Fault:
    status: int
    operation: str | None = None
    resource: str | None = None
    count: int | None = 1
    code: str | None = None
    message: str | None = None
    retry_after: int | None = None
    fired: int = field(default=0)

    def matches(self, operation: str, resource: str) -> bool:
        if self.operation is not None and self.operation.lower() != operation.lower():
            return False
        if self.resource is not None:
            wanted = self.resource.rstrip("/").lower()
            have = resource.rstrip("/").lower()
            if have != wanted and not have.startswith(wanted + "/"):
                return False
        return True


@dataclass(frozen=True)
class FaultResponse:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


class FaultInjector:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._latency: dict[str | None, float] = {}

    def add(self, status: int, *, operation: str | None = None, resource: str | None = None,
            count: int | None = 1, code: str | None = None, message: str | None = None,
            retry_after: int | None = None) -> Fault:
        """Fail the next `count` calls matching operation/resource with `status` (None count: every call)."""
        if operation is None and resource is None:
            raise ValueError("a fault needs an operation, a resource, or both")
        fault = Fault(status=status, operation=operation, resource=resource, count=count, code=code,
                      message=message, retry_after=retry_after)
        with self._lock:
            self._faults.append(fault)
        return fault

    def remove(self, fault: Fault) -> None:
        with self._lock:
            if fault in self._faults:
                self._faults.remove(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._latency.clear()

    def set_latency(self, seconds: float, operation: str | None = None) -> None:
        """Delay every call (operation None) or one operation's calls, before any other processing."""
        with self._lock:
            if seconds <= 0:
                self._latency.pop(operation, None)
            else:
                self._latency[operation] = seconds

    def latency_for(self, operation: str) -> float:
        with self._lock:
            specific = next((v for k, v in self._latency.items() if k and k.lower() == operation.lower()), 0.0)
            return specific + self._latency.get(None, 0.0)

    def take(self, operation: str, resource: str, action: str) -> FaultResponse | None:
        """Consume and render the first fault matching this call, if any."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(operation, resource):
                    fault.fired += 1
                    if fault.count is not None:
                        fault.count -= 1
                        if fault.count <= 0:
                            self._faults.remove(fault)
                    return _render(fault, resource, action)
        return None


def _render(fault: Fault, resource: str, action: str) -> FaultResponse:
    code = fault.code or DEFAULT_CODES.get(fault.status, "InternalServerError")
    message = fault.message or _default_message(fault.status, resource, action)
    headers: dict[str, str] = {}
    if fault.status in {429, 503} or fault.retry_after is not None:
        headers["Retry-After"] = str(fault.retry_after if fault.retry_after is not None else 1)
    return FaultResponse(status=fault.status, body={"error": {"code": code, "message": message}}, headers=headers)


def _default_message(status: int, resource: str, action: str) -> str:
    if status == 403:
        return (f"The client 'monitor-identity' with object id '00000000-0000-0000-0000-000000000001' does not "
                f"have authorization to perform action '{action}' over scope '{resource}' or the scope is "
                "invalid. If access was recently granted, please refresh your credentials.")
    if status == 404:
        return f"The Resource '{resource}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
    if status == 409:
        return "The request conflicts with the current state of the resource."
    if status == 429:
        return "The request is being throttled. Please retry after the time in the Retry-After header."
    return "The server encountered an internal error. Please retry the request."
