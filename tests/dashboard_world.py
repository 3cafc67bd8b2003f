"""The fleet page's test world: the demo fleet on the ARM emulator, a real Azurite store, the local dev host
serving the page, and Debian's chromium driven by Playwright (the system browser; nothing is downloaded).

Used by tests/test_dashboard_browser.py and bench/bench_dashboard.py.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "tests" / "artifacts"
AXE = REPO / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def chromium_path() -> str | None:
    for candidate in (os.environ.get("CHROMIUM_PATH", ""), *CHROMIUM_CANDIDATES):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("chromium")
    return found


def require_browser() -> str:
    """The chromium executable; skips with the reason (fails under REQUIRE_BROWSER=1, as CI sets)."""
    problems = []
    path = chromium_path()
    if path is None:
        problems.append("Debian's chromium is not installed (make test installs it as root: apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problems.append("the playwright Python package is missing (pip install -r requirements-dev.txt)")
    if problems:
        reason = "; ".join(problems)
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    assert path is not None
    return path


@contextmanager
def browser_session(executable: str) -> Iterator[Any]:
    """A headless chromium (root needs --no-sandbox) from Playwright, launched from the system executable."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))

    def __call__(self) -> datetime:
        return self.now


def snat_series(used: list[float], allocated: float, failed: list[float], backend: str = "10.224.0.4"
                ) -> list[dict[str, Any]]:
    """Load balancer metric series in the emulator's scenario form, one backend."""
    successful = [400.0 for _ in used]
    return [
        {"name": "SnatConnectionCount", "dimensions": {"BackendIPAddress": backend, "ConnectionState": "successful"},
         "values": successful},
        {"name": "SnatConnectionCount", "dimensions": {"BackendIPAddress": backend, "ConnectionState": "failed"},
         "values": failed},
        {"name": "AllocatedSnatPorts", "dimensions": {"BackendIPAddress": backend, "ProtocolType": "TCP"},
         "values": [allocated for _ in used]},
        {"name": "UsedSnatPorts", "dimensions": {"BackendIPAddress": backend, "ProtocolType": "TCP"},
         "values": used},
    ]


def get_json(url: str) -> Any:
    import json
    import urllib.request

    with urllib.request.urlopen(url, timeout=60) as reply:
        return json.loads(reply.read())


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=False)
    print(f"screenshot: {path}")
    return path


def wait_rendered(page: Any, renders: int = 1) -> None:
    page.wait_for_function(f"Number(document.documentElement.dataset.renders || 0) >= {renders}", timeout=30_000)
