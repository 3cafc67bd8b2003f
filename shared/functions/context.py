"""The per-process Monitor the functions share: built on first use, so indexing the app stays cheap."""

from __future__ import annotations

import threading
from typing import Any

_lock = threading.Lock()
_monitor: Any = None


def get_monitor() -> Any:
    """Settings, storage and SDK clients, created once per worker process and reused across invocations."""
    global _monitor
    with _lock:
        if _monitor is None:
            from shared.monitor.factory import build_monitor

            _monitor = build_monitor()
        return _monitor


def use_monitor(monitor: Any) -> None:
    """Install a prepared Monitor (tests, the local dev host) instead of building one from settings."""
    global _monitor
    with _lock:
        _monitor = monitor


def reset() -> None:
    """Forget the cached Monitor (tests change settings between cases)."""
    global _monitor
    with _lock:
        _monitor = None
