"""Client-side pacing of ARM calls per subscription, and the call counters every cycle reports.

ARM refills a subscription's read budget at about 25 requests/s (burst 250) per principal and answers
429 once it is empty. Waiting a few milliseconds here is far cheaper than a 429 and its Retry-After, and it
keeps one large subscription from starving the others during a fleet scan.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.core.rest import HttpRequest, HttpResponse

_SUBSCRIPTION = re.compile(r"/subscriptions/([0-9a-fA-F-]{36})", re.IGNORECASE)


class TokenBucket:
    """Blocking token bucket: `take()` waits until a token is free."""

    def __init__(self, rate_per_s: float, burst: int, clock: Any = time.monotonic, sleep: Any = time.sleep) -> None:
        self.rate = rate_per_s
        self.burst = burst
        self._tokens = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._stamp = clock()
        self._lock = threading.Lock()

    def take(self) -> float:
        """Take one token; returns how long the caller waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return waited
                delay = (1 - self._tokens) / self.rate
            self._sleep(delay)
            waited += delay


@dataclass
class CallStats:
    """Counts of ARM requests (every attempt, retries included) for cycle telemetry and benchmarks."""

    reads: int = 0
    writes: int = 0
    throttled: int = 0
    errors: int = 0
    by_operation: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, method: str, path: str, status: int | None) -> None:
        with self._lock:
            if method == "GET":
                self.reads += 1
            else:
                self.writes += 1
            if status == 429:
                self.throttled += 1
            elif status is None or status >= 400:
                self.errors += 1
            self.by_operation[f"{method} {_operation_of(path)}"] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"reads": self.reads, "writes": self.writes, "throttled": self.throttled,
                    "errors": self.errors}


def _operation_of(path: str) -> str:
    """`.../providers/Microsoft.Network/networkSecurityGroups/x/securityRules/y` -> namespace + resource types."""
    segments = [s for s in path.split("?", 1)[0].split("/") if s]
    lowered = [s.lower() for s in segments]
    if "providers" not in lowered:
        return "/".join(segments[0::2])
    after = segments[len(lowered) - lowered[::-1].index("providers") :]
    return "/".join([after[0], *after[1::2]]) if after else "providers"


class PacingPolicy(SansIOHTTPPolicy[HttpRequest, HttpResponse]):
    """Waits for the subscription's bucket before each attempt and records the outcome."""

    def __init__(self, buckets: BucketRegistry, stats: CallStats) -> None:
        self._buckets = buckets
        self._stats = stats

    def on_request(self, request: PipelineRequest[HttpRequest]) -> None:
        match = _SUBSCRIPTION.search(request.http_request.url)
        self._buckets.bucket(match.group(1).lower() if match else "").take()

    def on_response(
        self, request: PipelineRequest[HttpRequest], response: PipelineResponse[HttpRequest, HttpResponse]
    ) -> None:
        http = request.http_request
        self._stats.record(http.method, http.url.split("://", 1)[-1].split("/", 1)[-1],
                           response.http_response.status_code)

    def on_exception(self, request: PipelineRequest[HttpRequest]) -> None:
        http = request.http_request
        self._stats.record(http.method, http.url, None)


class BucketRegistry:
    def __init__(self, rate_per_s: float, burst: int) -> None:
        self._rate = rate_per_s
        self._burst = burst
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def bucket(self, subscription: str) -> TokenBucket:
        with self._lock:
            found = self._buckets.get(subscription)
            if found is None:
                found = self._buckets[subscription] = TokenBucket(self._rate, self._burst)
            return found
