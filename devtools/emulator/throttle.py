"""ARM request throttling: a token bucket per subscription (and per read/write kind), as ARM does it.

Azure Resource Manager refills 25 reads per second up to a bucket of 250 per subscription (10/s and 200
for writes) and answers 429 with Retry-After when the bucket is empty. Off by default so tests are not
throttled unless they ask for it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

READS = "reads"
WRITES = "writes"


@dataclass(frozen=True)
class BucketConfig:
    capacity: float
    refill_per_second: float


ARM_DEFAULTS = {READS: BucketConfig(250, 25), WRITES: BucketConfig(200, 10)}


@dataclass(frozen=True)
class ThrottleDecision:
    allowed: bool
    remaining: int
    retry_after: int = 0


class TokenBuckets:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._enabled = False
        self._config = dict(ARM_DEFAULTS)
        self._levels: dict[tuple[str, str], tuple[float, float]] = {}

    @property
    def enabled(self) -> bool:
        return self._enabled

    def enable(self, *, reads: BucketConfig | None = None, writes: BucketConfig | None = None) -> None:
        with self._lock:
            self._enabled = True
            self._config = {READS: reads or ARM_DEFAULTS[READS], WRITES: writes or ARM_DEFAULTS[WRITES]}
            self._levels.clear()

    def disable(self) -> None:
        with self._lock:
            self._enabled = False
            self._levels.clear()

    def take(self, subscription: str, kind: str) -> ThrottleDecision:
        with self._lock:
            config = self._config[kind]
            if not self._enabled:
                return ThrottleDecision(True, int(config.capacity))
            key = (subscription.lower(), kind)
            now = self._clock()
            level, stamp = self._levels.get(key, (config.capacity, now))
            level = min(config.capacity, level + (now - stamp) * config.refill_per_second)
            if level >= 1:
                self._levels[key] = (level - 1, now)
                return ThrottleDecision(True, int(level - 1))
            self._levels[key] = (level, now)
            wait = (1 - level) / config.refill_per_second
            return ThrottleDecision(False, 0, max(1, math.ceil(wait)))
