"""The fleet page in a real browser (Debian's chromium through Playwright) against the demo fleet: the ARM
emulator, a real Azurite store filled by real monitoring cycles, and the local dev host serving the page.

Screenshots land in tests/artifacts/ (git-ignored); their paths are printed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest

from devtools.devhost import DevHost
from shared.monitor.cycle import Monitor
from shared.settings import Settings
from tests.azurite import isolated_store
from tests.dashboard_world import (
    AXE,
    Clock,
    browser_session,
    get_json,
    require_browser,
    screenshot,
    snat_series,
    wait_rendered,
)
from tests.emulator_fixtures import DEMO_SCENARIO, running_emulator

pytestmark = pytest.mark.timeout(600)

# aks-snat's busiest node climbs past the 75% warning line and starts failing connections.
USED = [30.0, 34.0, 38.0, 41.0, 45.0, 50.0, 55.0, 61.0]
FAILED = [0.0, 0.0, 0.0, 0.0, 0.0, 2.0, 9.0, 27.0]
ALLOCATED = 64.0
SNAT_CYCLES = len(USED)


def merged_reports(clusters: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """/api/clusters as one report per cluster (lower-case id). Answers with one report per check family
    are folded the documented way: each cause from the newest report that checked it."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for report in clusters:
        groups.setdefault(report["cluster"]["id"].lower(), []).append(report)
    out: dict[str, dict[str, Any]] = {}
    for cid, group in groups.items():
        if len(group) == 1:
            out[cid] = group[0]
            continue
        group.sort(key=lambda r: r["checkedAt"], reverse=True)
        causes = []
        for cause in group[0]["causes"]:
            candidates = [(r.get("checkedAt", ""), c) for r in group for c in r["causes"] if c["id"] == cause["id"]]
            checked = [(at, c) for at, c in candidates if c.get("reason") != "not checked by this check family"]
            causes.append(max(checked, key=lambda p: p[0])[1] if checked else candidates[0][1])
        verdict = ("problem" if any(c["status"] == "detected" for c in causes)
                   else "inconclusive" if any(c["status"] == "unknown" for c in causes) else "healthy")
        out[cid] = {**group[0], "causes": causes, "verdict": verdict}
    return out


@pytest.fixture(scope="module")
def world(azurite_connection: str) -> Iterator[dict[str, Any]]:
    executable = require_browser()
    with pytest.MonkeyPatch.context() as mp, running_emulator(DEMO_SCENARIO, mp) as emu, \
            isolated_store(azurite_connection, channels=("webhook",)) as store:
        env = {**emu.env(), "NODE_PROBES": "all", "AzureWebJobsStorage": azurite_connection}
        for key in ("ALERT_WEBHOOK_URL", "TEAMS_WEBHOOK_URL", "SLACK_WEBHOOK_URL", "MONITOR_SUBSCRIPTIONS"):
            mp.delenv(key, raising=False)
        clock = Clock()
        start = clock.now - timedelta(minutes=5 * SNAT_CYCLES)
        monitor = Monitor(Settings.from_env(env), store, env=env, now=clock)
        snat_id = next(str(c.id) for c in emu.state.fleet.clusters if c.name == "aks-snat")
        samples_at = []
        for i in range(SNAT_CYCLES):
            clock.now = start + timedelta(minutes=5 * (i + 1))
            emu.state.set_metrics(snat_id, snat_series([USED[i]] * 3, ALLOCATED, [0.0, 0.0, FAILED[i]]))
            families = ("snat", "nsg", "probe") if i == SNAT_CYCLES - 1 else ("snat",)
            summary = monitor.run_cycle(families)
            assert not summary.errors, summary.errors
            samples_at.append(clock.now)
        host = DevHost(lambda: monitor, 0, timers=False, env={})
        host.start()
        try:
            with browser_session(executable) as browser:
                yield {"emu": emu, "store": store, "monitor": monitor, "clock": clock, "host": host,
                       "base": f"http://127.0.0.1:{host.port}", "browser": browser, "snat_id": snat_id,
                       "samples_at": samples_at}
        finally:
            host.stop()


@pytest.fixture
def page(world: dict[str, Any]) -> Iterator[Any]:
    context = world["browser"].new_context(viewport={"width": 1680, "height": 1000}, bypass_csp=True,
                                           permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"the page logged errors: {errors}"


def open_page(page: Any, world: dict[str, Any], suffix: str = "") -> None:
    page.goto(f"{world['base']}/api/dashboard{suffix}")
    wait_rendered(page)


def api_clusters(world: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return merged_reports(get_json(f"{world['base']}/api/clusters")["clusters"])


def grid_cells(page: Any) -> dict[str, dict[str, Any]]:
    """What the grid shows: per row (lower-case id), the fixed fields and per cause cell status and text."""
    return page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('#fleet-table tbody tr')].map(tr => [
        tr.dataset.clusterId, {
          hidden: tr.hidden,
          fields: Object.fromEntries([...tr.querySelectorAll('td[data-field]')].map(td => [td.dataset.field, td.textContent.trim()])),
          causes: Object.fromEntries([...tr.querySelectorAll('td[data-cause]')].map(td => [td.dataset.cause,
              {status: td.dataset.status, text: td.textContent.trim(), title: td.title}])),
        }]))""")


def visible_ids(page: Any) -> set[str]:
    return set(page.evaluate(
        "() => [...document.querySelectorAll('#fleet-table tbody tr')].filter(r => !r.hidden).map(r => r.dataset.clusterId)"))


# ---------------------------------------------------------------- grid


def test_grid_matches_api_clusters_cell_for_cell(world: dict[str, Any], page: Any) -> None:
    open_page(page, world)
    reports = api_clusters(world)
    grid = grid_cells(page)
    assert set(grid) == set(reports), "one row per cluster of /api/clusters, keyed by the lower-case ARM id"
    assert len(reports) >= 8
    for cid, report in reports.items():
        row = grid[cid]
        cluster = report["cluster"]
        assert row["fields"]["subscription"] == cluster["subscriptionId"]
        assert row["fields"]["resourceGroup"] == cluster["resourceGroup"]
        assert row["fields"]["name"] == cluster["name"]
        assert row["fields"]["tunnel"] == cluster["tunnel"]
        assert row["fields"]["verdict"] == report["verdict"]
        assert list(row["causes"]) == [c["id"] for c in report["causes"]], "one cell per cause, in report order"
        for cause in report["causes"]:
            cell = row["causes"][cause["id"]]
            assert cell["status"] == cause["status"], (cid, cause["id"])
            assert cell["text"] == cause["status"].replace("_", " "), "the cell's text states the status"
            if cause["status"] == "unknown":
                assert cause["reason"] and cause["reason"] in cell["title"], "unknown reason on hover"
    statuses = {c["status"] for r in reports.values() for c in r["causes"]}
    assert {"detected", "clear", "not_applicable", "unknown"} <= statuses, "the demo fleet shows every status"
    # counts at the top agree with the grid
    counts = page.evaluate("() => Object.fromEntries([...document.querySelectorAll('#status-counts .tile')]"
                           ".map(t => [t.dataset.value, Number(t.dataset.count)]))")
    for status in ("detected", "unknown", "clear", "not_applicable"):
        assert counts[status] == sum(1 for r in reports.values() for c in r["causes"] if c["status"] == status)
    screenshot(page, "dashboard-grid.png")
