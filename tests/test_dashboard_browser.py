"""The fleet page in a real browser (Debian's chromium through Playwright) against the demo fleet: the ARM
emulator, a real Azurite store filled by real monitoring cycles, and the local dev host serving the page.

Screenshots land in tests/artifacts/ (git-ignored); their paths are printed.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

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

# aks-snat's busiest node: a spike over the 75% warning line (opened), back under it (resolved), then a
# climb that ends in failed connections (opened again).
USED = [30.0, 52.0, 40.0, 36.0, 45.0, 50.0, 55.0, 61.0]
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
    page.console_errors = errors  # a test that makes requests fail on purpose empties it
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
    grid: dict[str, dict[str, Any]] = page.evaluate("""() => Object.fromEntries(
      [...document.querySelectorAll('#fleet-table tbody tr')].map(tr => [
        tr.dataset.clusterId, {
          hidden: tr.hidden,
          fields: Object.fromEntries([...tr.querySelectorAll('td[data-field]')]
              .map(td => [td.dataset.field, td.textContent.trim()])),
          causes: Object.fromEntries([...tr.querySelectorAll('td[data-cause]')].map(td => [td.dataset.cause,
              {status: td.dataset.status, text: td.textContent.trim(), title: td.title}])),
        }]))""")
    return grid


def visible_ids(page: Any) -> set[str]:
    return set(page.evaluate("() => [...document.querySelectorAll('#fleet-table tbody tr')]"
                             ".filter(r => !r.hidden).map(r => r.dataset.clusterId)"))


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
                assert cause["reason"], (cid, cause["id"])
                assert cause["reason"] in cell["title"], "unknown reason on hover"
    statuses = {c["status"] for r in reports.values() for c in r["causes"]}
    assert {"detected", "clear", "not_applicable", "unknown"} <= statuses, "the demo fleet shows every status"
    # counts at the top agree with the grid
    counts = page.evaluate("() => Object.fromEntries([...document.querySelectorAll('#status-counts .tile')]"
                           ".map(t => [t.dataset.value, Number(t.dataset.count)]))")
    for status in ("detected", "unknown", "clear", "not_applicable"):
        assert counts[status] == sum(1 for r in reports.values() for c in r["causes"] if c["status"] == status)
    # fleet health names every family the API reports, with when it last completed
    health = get_json(f"{world['base']}/api/health")
    shown = page.eval_on_selector_all("#families li[data-family]",
                                      "ls => Object.fromEntries(ls.map(l => [l.dataset.family, l.textContent]))")
    assert set(shown) == set(health["lastSuccessfulCycle"])
    for family, at in health["lastSuccessfulCycle"].items():
        assert at is not None
        assert shown[family].endswith("ago"), shown
    screenshot(page, "dashboard-grid.png")


def test_filters_sort_and_count_tiles(world: dict[str, Any], page: Any) -> None:
    open_page(page, world)
    reports = api_clusters(world)
    everyone = set(reports)
    assert visible_ids(page) == everyone

    subscription = sorted({r["cluster"]["subscriptionId"] for r in reports.values()})[0]
    page.select_option("#f-sub", subscription.lower())
    assert visible_ids(page) == {cid for cid, r in reports.items() if r["cluster"]["subscriptionId"] == subscription}
    page.select_option("#f-sub", "")

    page.select_option("#f-cause", "nsg-blocks-10250")
    page.select_option("#f-status", "detected")
    wanted = {cid for cid, r in reports.items() for c in r["causes"]
              if c["id"] == "nsg-blocks-10250" and c["status"] == "detected"}
    assert wanted
    assert visible_ids(page) == wanted
    page.select_option("#f-cause", "")
    page.select_option("#f-status", "unknown")
    unknown = {cid for cid, r in reports.items() if any(c["status"] == "unknown" for c in r["causes"])}
    assert visible_ids(page) == unknown
    page.click("#f-clear")
    assert visible_ids(page) == everyone

    page.fill("#f-text", "aks-snat")
    assert {reports[c]["cluster"]["name"] for c in visible_ids(page)} == {"aks-snat"}
    page.fill("#f-text", "rg-legacy")
    assert {reports[c]["cluster"]["resourceGroup"] for c in visible_ids(page)} == {"rg-legacy"}
    page.fill("#f-text", "availability sets")  # an unknown's reason is searchable too
    assert {reports[c]["cluster"]["name"] for c in visible_ids(page)} == {"aks-legacy-as"}
    page.fill("#f-text", "")
    assert page.text_content("#shown") == f"showing {len(everyone)} of {len(everyone)} clusters"

    page.click(".tile[data-filter='verdict'][data-value='problem']")
    assert visible_ids(page) == {cid for cid, r in reports.items() if r["verdict"] == "problem"}
    page.click(".tile[data-filter='verdict'][data-value='problem']")  # a second click lifts it
    assert visible_ids(page) == everyone

    page.click("th[data-sort-key='name'] button")
    names = page.eval_on_selector_all("#grid-body tr td[data-field='name']", "tds => tds.map(t => t.textContent)")
    assert names == sorted(names, key=str.lower)
    assert page.get_attribute("th[data-sort-key='name']", "aria-sort") == "ascending"
    page.click("th[data-sort-key='name'] button")
    names = page.eval_on_selector_all("#grid-body tr td[data-field='name']", "tds => tds.map(t => t.textContent)")
    assert names == sorted(names, key=str.lower, reverse=True)
    page.click("th[data-sort-key='cause:snat-port-exhaustion'] button")
    first = page.get_attribute("#grid-body tr:first-child td[data-cause='snat-port-exhaustion']", "data-status")
    assert first == "detected", "sorting by a cause puts its detected clusters first"


def open_detail_by_click(page: Any, name: str) -> None:
    row = page.locator("#grid-body tr").filter(has=page.locator("td[data-field='name']", has_text=name))
    row.first.locator("td[data-field='verdict']").click()
    page.wait_for_selector("#detail:not([hidden])")
    page.wait_for_function("Number(document.documentElement.dataset.detailLoads || 0) >= 1")


def test_detail_shows_remediation_evidence_and_timeline(world: dict[str, Any], page: Any) -> None:
    reports = api_clusters(world)
    report = next(r for r in reports.values() if r["cluster"]["name"] == "aks-nsg-deny")
    # deep link with the ARM id as the API spells it (mixed case)
    open_page(page, world, "#cluster=" + report["cluster"]["id"])
    page.wait_for_function("Number(document.documentElement.dataset.detailLoads || 0) >= 1")
    assert page.get_attribute("#detail", "data-cluster-id") == report["cluster"]["id"].lower()
    codes = page.eval_on_selector_all("#detail code", "cs => cs.map(c => c.textContent)")
    expected = [cmd for c in report["causes"] for cmd in c.get("remediation") or []]
    assert expected, "the NSG finding carries remediation"
    assert codes == expected, "every remediation command, each in its own <code>"
    nsg = report_cause(report, "nsg-blocks-10250")
    card = "#detail details[data-cause='nsg-blocks-10250']"
    assert page.get_attribute(card, "data-status") == "detected"
    assert page.get_attribute(card, "open") is not None
    evidence = page.eval_on_selector_all(f"{card} [data-list='evidence'] li[data-resource]",
                                         "ls => ls.map(l => l.textContent)")
    assert len(evidence) == len(nsg["evidence"])
    for item, line in zip(nsg["evidence"], evidence, strict=True):
        assert item["detail"] in line
    timeline = page.eval_on_selector_all("#detail-timeline li", "ls => ls.map(l => [l.dataset.event, l.dataset.cause])")
    assert ["opened", "nsg-blocks-10250"] in timeline

    # an unknown cause's reason is in the detail (another cluster, through a hash change)
    vague = next(r for r in reports.values() if any(c["status"] == "unknown" for c in r["causes"]))
    unknown = next(c for c in vague["causes"] if c["status"] == "unknown")
    page.evaluate("id => { location.hash = 'cluster=' + id; }", vague["cluster"]["id"])
    page.wait_for_function("id => document.getElementById('detail').dataset.clusterId === id",
                           arg=vague["cluster"]["id"].lower())
    assert unknown["reason"] in page.text_content(f"#detail details[data-cause='{unknown['id']}'] .reason")

    # the SNAT cluster's timeline: opened, resolved, opened again (from /api/findings + history)
    close = page.locator("#detail-close")
    close.click()
    assert page.is_hidden("#detail")
    open_detail_by_click(page, "aks-snat")
    page.wait_for_function("document.querySelectorAll('#detail-timeline li').length >= 3")
    events = page.eval_on_selector_all("#detail-timeline li[data-cause='snat-port-exhaustion']",
                                       "ls => ls.map(l => l.dataset.event)")
    assert events == ["opened", "resolved", "opened"], "newest first"
    findings = get_json(f"{world['base']}/api/findings?status=all&cluster={quote(world['snat_id'])}")["findings"]
    history = [e for f in findings
               for e in get_json(f"{world['base']}/api/findings/{f['findingId']}/history")["events"]]
    assert len(history) == len(page.query_selector_all("#detail-timeline li"))


def report_cause(report: dict[str, Any], cause_id: str) -> dict[str, Any]:
    return next(c for c in report["causes"] if c["id"] == cause_id)


def test_snat_chart_draws_the_stored_samples(world: dict[str, Any], page: Any) -> None:
    open_page(page, world)
    open_detail_by_click(page, "aks-snat")
    page.wait_for_selector("#detail-snat svg[data-chart='snat']")
    stored = get_json(f"{world['base']}/api/snat?cluster={quote(world['snat_id'])}")["samples"]
    assert len(stored) >= SNAT_CYCLES
    points = page.eval_on_selector_all(
        "#detail-snat circle.pt-used",
        "cs => cs.map(c => [c.dataset.at, Number(c.dataset.used), Number(c.dataset.allocated)])")
    assert points == [[s["at"], s["usedPorts"], s["allocatedPorts"]] for s in stored]
    assert [p[1] for p in points[:SNAT_CYCLES]] == USED
    assert {p[2] for p in points} == {ALLOCATED}
    bars = page.eval_on_selector_all("#detail-snat rect.bar-failed", "rs => rs.map(r => Number(r.dataset.failed))")
    assert bars == [s["failedConnections"] for s in stored]
    assert bars[0] == 0
    assert bars[SNAT_CYCLES - 1] > 0
    for series in ("used", "allocated", "threshold"):
        assert page.query_selector(f"#detail-snat path[data-series='{series}']") is not None
    # the threshold line sits at 75% of the allocated ports: its y equals a used point's y at 48 of 64 ports
    label = page.get_attribute("#detail-snat svg", "aria-label")
    assert "warning threshold 75%" in label
    page.locator("#detail-snat").scroll_into_view_if_needed()
    screenshot(page, "dashboard-detail-snat.png")
    page.locator("#detail-body").evaluate("b => b.scrollTop = 0")
    screenshot(page, "dashboard-detail.png")


def test_copy_button_copies_the_command(world: dict[str, Any], page: Any) -> None:
    open_page(page, world)
    open_detail_by_click(page, "aks-nsg-deny")
    first = page.locator("#detail li.cmd").first
    command = first.locator("code").text_content()
    first.locator("button.copy").click()
    page.wait_for_function("document.querySelector('#detail li.cmd button.copy').textContent === 'Copied'")
    assert page.evaluate("() => navigator.clipboard.readText()") == command


def test_stale_banner_when_the_newest_check_is_old(world: dict[str, Any], page: Any) -> None:
    open_page(page, world)
    assert page.is_hidden("#banner"), "fresh data: no banner"
    fresh_families = page.eval_on_selector_all("#families li[data-family] .v.bad", "vs => vs.length")
    assert fresh_families == 0
    later = world["clock"].now + timedelta(hours=2)
    page.clock.set_fixed_time(later)
    page.reload()
    wait_rendered(page)
    assert page.is_visible("#banner")
    assert page.get_attribute("#banner", "data-kind") == "stale"
    assert "stale" in page.text_content("#banner").lower()
    assert page.get_attribute("html", "data-stale") == "true"
    assert page.eval_on_selector_all("#families li[data-family] .v.bad", "vs => vs.length") == 3
    screenshot(page, "dashboard-stale.png")


def test_page_only_reads_and_passes_the_function_key_on(world: dict[str, Any], page: Any) -> None:
    requests: list[tuple[str, str]] = []
    page.on("request", lambda r: requests.append((r.method, r.url)))
    open_page(page, world, "?code=k3y-Value_1&refresh=2")
    open_detail_by_click(page, "aks-snat")
    page.locator("#detail li.cmd button.copy").first.click()
    page.select_option("#f-status", "detected")
    page.wait_for_function("Number(document.documentElement.dataset.renders) >= 2", timeout=20_000)
    assert requests
    allowed = re.compile(
        r"^/api/(dashboard(/[a-z.]+)?|clusters|findings|findings/[0-9a-f]+/history|health|outbox|snat)$")
    for method, url in requests:
        parts = urlsplit(url)
        if parts.scheme == "data":
            continue
        assert method == "GET", url
        assert allowed.match(parts.path), url
        assert parse_qs(parts.query).get("code") == ["k3y-Value_1"], url


def test_accessibility_no_serious_violations(world: dict[str, Any], page: Any) -> None:
    if not AXE.is_file():
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"axe-core is missing at {AXE}: run npm ci")
        pytest.skip(f"axe-core is missing at {AXE}: run npm ci")
    open_page(page, world)
    page.add_script_tag(path=str(AXE))
    serious = axe_serious(page)
    assert not serious, json.dumps(serious, indent=1)[:4000]
    open_detail_by_click(page, "aks-snat")
    page.wait_for_selector("#detail-snat svg[data-chart='snat']")
    serious = axe_serious(page)
    assert not serious, json.dumps(serious, indent=1)[:4000]


def axe_serious(page: Any) -> list[dict[str, Any]]:
    result = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
                           ".map(v => ({id: v.id, impact: v.impact, help: v.help,"
                           " nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))")
    return [v for v in result if v["impact"] in ("serious", "critical")]


def test_live_refresh_keeps_filters_and_scroll(world: dict[str, Any], page: Any) -> None:
    page.set_viewport_size({"width": 900, "height": 520})
    open_page(page, world, "?refresh=2")
    page.fill("#f-text", "aks")
    page.select_option("#f-status", "attention")
    shown = visible_ids(page)
    page.evaluate("() => { window.scrollTo(0, 10000); document.getElementById('table-wrap').scrollLeft = 400; }")
    before = page.evaluate("() => [window.scrollY, document.getElementById('table-wrap').scrollLeft]")
    assert before[0] > 0
    assert before[1] > 0
    checked_before = page.get_attribute("#grid-body tr td[data-cause='snat-port-exhaustion']", "title")
    # a new SNAT cycle lands while the page is open
    world["clock"].now += timedelta(minutes=5)
    assert not world["monitor"].run_cycle(("snat",)).errors
    renders = int(page.get_attribute("html", "data-renders"))
    page.wait_for_function(f"Number(document.documentElement.dataset.renders) >= {renders + 2}", timeout=30_000)
    assert page.input_value("#f-text") == "aks"
    assert page.input_value("#f-status") == "attention"
    assert visible_ids(page) == shown
    after = page.evaluate("() => [window.scrollY, document.getElementById('table-wrap').scrollLeft]")
    assert after == before
    reports = api_clusters(world)
    assert max(r["checkedAt"] for r in reports.values()) > min(r["checkedAt"] for r in reports.values()) or \
        checked_before is not None
    grid = grid_cells(page)
    for cid, report in reports.items():
        assert {k: v["status"] for k, v in grid[cid]["causes"].items()} == {
            c["id"]: c["status"] for c in report["causes"]}


def test_an_unchanged_refresh_keeps_the_rows_and_moves_their_times_on(world: dict[str, Any], page: Any) -> None:
    """A refresh with the same data touches no row (no rebuild, so no relayout of 1,000 rows), yet the times that
    tick with the clock ("checked ... ago", "open since") follow it."""
    open_page(page, world, "?refresh=2")
    page.evaluate("() => { for (const tr of document.querySelectorAll('#grid-body tr')) tr.dataset.probe = 'kept'; }")
    opened = page.eval_on_selector_all("#grid-body tr td[data-field='since']", "tds => tds.map(t => t.title)")
    assert any(t != "no open finding" for t in opened), "some cluster has an open finding"
    page.clock.set_fixed_time(world["clock"].now + timedelta(hours=3))
    renders = int(page.get_attribute("html", "data-renders"))
    page.wait_for_function(f"Number(document.documentElement.dataset.renders) > {renders}", timeout=30_000)
    rows = page.evaluate("""() => [...document.querySelectorAll('#grid-body tr')].map(tr => ({
        kept: tr.dataset.probe === 'kept',
        checked: tr.querySelector("td[data-field='checkedAt']").textContent,
        since: tr.querySelector("td[data-field='since']").textContent,
        open: tr.querySelector("td[data-field='since']").title !== 'no open finding'}))""")
    assert rows
    assert all(r["kept"] for r in rows), "an unchanged refresh rebuilt rows"
    assert all(re.fullmatch(r"(2|3) h \d+ min ago", r["checked"]) for r in rows), rows
    assert all(re.fullmatch(r"(2|3) h \d+ min", r["since"]) for r in rows if r["open"]), rows


def test_rows_stay_clickable_beside_an_open_detail(world: dict[str, Any], page: Any) -> None:
    """At Playwright's default viewport a check may click one row after another without closing the detail:
    the detail sits beside the grid, not over it."""
    page.set_viewport_size({"width": 1280, "height": 720})
    open_page(page, world)
    reports = api_clusters(world)
    for cid in sorted(reports)[:4]:
        page.click(f"tr[data-cluster-id='{cid}']", timeout=5_000)
        page.wait_for_function("id => document.getElementById('detail').dataset.clusterId === id", arg=cid)
        assert page.text_content("#detail-title").startswith(reports[cid]["cluster"]["name"])
        assert page.url.endswith("#cluster=" + reports[cid]["cluster"]["id"])
    screenshot(page, "dashboard-detail-1280.png")
    page.keyboard.press("Escape")
    assert page.is_hidden("#detail")


def test_fleet_health_groups_unknown_reasons(world: dict[str, Any], page: Any) -> None:
    """A 403 on one cluster's metrics and persistent 429s on another's: their SNAT cause turns unknown, and
    fleet health counts them under forbidden and throttled. (Last in the module: it changes the fleet.)"""
    emu, monitor, clock = world["emu"], world["monitor"], world["clock"]
    reports = {r["cluster"]["name"]: r for r in api_clusters(world).values()}
    forbidden = reports["aks-healthy"]["cluster"]
    throttled = reports["aks-nsg-deny"]["cluster"]
    node_rg = "/subscriptions/{subscriptionId}/resourceGroups/{nodeResourceGroup}"
    emu.faults.add(403, operation="Metrics.List", resource=node_rg.format(**forbidden), count=None)
    emu.faults.add(429, operation="Metrics.List", resource=node_rg.format(**throttled), count=None, retry_after=1)
    try:
        clock.now += timedelta(minutes=5)
        monitor.run_cycle(("snat",))
    finally:
        emu.faults.clear()
    after = {r["cluster"]["name"]: r for r in api_clusters(world).values()}
    for name in ("aks-healthy", "aks-nsg-deny"):
        assert report_cause(after[name], "snat-port-exhaustion")["status"] == "unknown", name
    open_page(page, world)
    groups = page.eval_on_selector_all("#unknown-reasons li[data-reason]",
                                       "ls => Object.fromEntries(ls.map(l => [l.dataset.reason, l.textContent]))")
    assert "1 cluster" in groups["forbidden"], groups
    assert "1 cluster" in groups["throttled"], groups
    unknown_clusters = sum(1 for r in after.values() if any(c["status"] == "unknown" for c in r["causes"]))
    assert page.text_content("#unknown-title") == f"Unknown: {unknown_clusters} clusters"
    cell = f"tr[data-cluster-id='{throttled['id'].lower()}'] td[data-cause='snat-port-exhaustion']"
    assert page.get_attribute(cell, "data-status") == "unknown"
    assert report_cause(after["aks-nsg-deny"], "snat-port-exhaustion")["reason"] in page.get_attribute(cell, "title")
    screenshot(page, "dashboard-unknown-reasons.png")


def test_per_family_answers_are_folded_into_one_row(world: dict[str, Any], page: Any) -> None:
    """An older server answered /api/clusters with one report per check family (`family`, other families'
    causes unknown "not checked by this check family"): the page folds them into the same row as the merged
    answer. The page's own request is answered from the real one, split per family."""
    merged = get_json(f"{world['base']}/api/clusters")["clusters"]
    families = {"snat": {"snat-port-exhaustion"}, "nsg": {"nsg-blocks-10250"}}
    split = []
    for report in merged:
        for family, mine in families.items():
            causes = [c if c["id"] in mine or c["id"] not in set().union(*families.values()) else
                      {**c, "status": "unknown", "reason": "not checked by this check family", "summary": ""}
                      for c in report["causes"]]
            split.append({**report, "family": family, "causes": causes})

    def answer(route: Any) -> None:
        route.fulfill(status=200, content_type="application/json",
                      body=json.dumps({"count": len(split), "clusters": split}))

    page.route(re.compile(r".*/api/clusters(\?.*)?$"), answer)
    open_page(page, world)
    grid = grid_cells(page)
    expected = {r["cluster"]["id"].lower(): r for r in merged}
    assert set(grid) == set(expected)
    for cid, report in expected.items():
        assert {k: v["status"] for k, v in grid[cid]["causes"].items()} == {
            c["id"]: c["status"] for c in report["causes"]}, cid
        assert grid[cid]["fields"]["verdict"] == report["verdict"]


def test_a_failed_refresh_keeps_the_last_data_and_says_so(world: dict[str, Any], page: Any) -> None:
    """/api/clusters answering 503 (storage down) never empties or clears the grid: the last data stays, with
    a banner naming the failure; /api/outbox failing shows "counts unavailable", not zero."""
    open_page(page, world, "?refresh=2")
    before = grid_cells(page)
    page.route(re.compile(r".*/api/clusters(\?.*)?$"), lambda route: route.fulfill(
        status=503, content_type="application/json",
        body=json.dumps({"error": {"message": "storage unreachable: ServiceRequestError"}})))
    page.route(re.compile(r".*/api/outbox(\?.*)?$"), lambda route: route.fulfill(status=500, body="{}"))
    renders = int(page.get_attribute("html", "data-renders"))
    page.wait_for_function(f"Number(document.documentElement.dataset.renders) > {renders}", timeout=20_000)
    assert page.get_attribute("#banner", "data-kind") == "error"
    assert "HTTP 503" in page.text_content("#banner")
    assert "storage unreachable" in page.text_content("#banner")
    after = grid_cells(page)
    assert {cid: row["causes"] for cid, row in after.items()} == {cid: row["causes"] for cid, row in before.items()}
    assert {cid: row["fields"]["verdict"] for cid, row in after.items()} == {
        cid: row["fields"]["verdict"] for cid, row in before.items()}
    assert "counts unavailable" in page.text_content("#outbox")
    assert all("Failed to load resource" in e for e in page.console_errors), page.console_errors
    page.console_errors.clear()  # the browser logs the 503/500 it was made to get
