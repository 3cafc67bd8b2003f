"""Per-operation call counting, so tests and benchmarks can assert how many ARM calls a cycle made."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StatsSnapshot:
    calls: dict[str, int]
    calls_by_resource: dict[tuple[str, str], int]
    statuses: dict[tuple[str, int], int]
    throttled: int

    def total(self) -> int:
        return sum(self.calls.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "callsByResource": [{"operation": op, "resource": res, "count": n}
                                for (op, res), n in sorted(self.calls_by_resource.items())],
            "statuses": [{"operation": op, "status": st, "count": n} for (op, st), n in sorted(self.statuses.items())],
            "throttled": self.throttled,
            "total": self.total(),
        }


class CallStats:
    """Counts every routed call (including ones answered with an injected fault or a 429)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: Counter[str] = Counter()
        self._by_resource: Counter[tuple[str, str]] = Counter()
        self._statuses: Counter[tuple[str, int]] = Counter()
        self._throttled = 0

    def record(self, operation: str, resource: str, status: int) -> None:
        with self._lock:
            self._calls[operation] += 1
            self._by_resource[(operation, resource.lower())] += 1
            self._statuses[(operation, status)] += 1
            if status == 429:
                self._throttled += 1

    def calls(self, operation: str, resource: str | None = None) -> int:
        with self._lock:
            if resource is None:
                return self._calls[operation]
            return self._by_resource[(operation, resource.rstrip("/").lower())]

    @property
    def throttled(self) -> int:
        with self._lock:
            return self._throttled

    def snapshot(self) -> StatsSnapshot:
        with self._lock:
            return StatsSnapshot(dict(self._calls), dict(self._by_resource), dict(self._statuses), self._throttled)

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
            self._by_resource.clear()
            self._statuses.clear()
            self._throttled = 0
