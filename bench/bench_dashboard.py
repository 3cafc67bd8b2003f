"""Fleet page with 1,000 clusters: GET /api/clusters on the server, and the page in the browser (Debian's
chromium through Playwright).

The store is a real Azurite holding per-family reports for 1,000 clusters in 20 subscriptions: the demo
fleet's reports from one real cycle against the emulator, cloned under new names (what the page renders
does not depend on how a report was produced). The dev host serves the page and the API as in `make demo`.

Server: the /api/clusters answer built in process (read + merge + api.py's serialization), the current code
against the code before its speed-up (tests/test_merge_speed_equivalence.py keeps that code as the
reference), interleaved in the same run on the same store; the two answers must
be the same JSON (the old one indented, the new one compact).

Browser: time to first render (navigation start to the grid drawn, including the /api/clusters call),
that call's own duration, and the time a filter, a sort and an unchanged live refresh take until the
next painted frame (median of several runs). A bare 1,000-row table in the same browser is the machine's
own baseline: on a shared, loaded machine layout alone takes seconds, and the ratio says how much the
page adds to it. With BENCH_DASHBOARD_BASELINE_REV=<git revision> the page of that revision (its
shared/web files, served with the reference /api/clusters code) is measured too, alternating with the
current page in the same browser, and the figures are given as before / after ratios.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

CLUSTERS = 1_000
SUBSCRIPTIONS = 20
TARGET_FIRST_RENDER_MS = 3_000.0
TARGET_FILTER_MS = 150.0
SERVER_ROUNDS = 9
BROWSER_ROUNDS = 3  # per page version, alternating
BASELINE_REV_ENV = "BENCH_DASHBOARD_BASELINE_REV"
WEB_FILES = ("index.html", "app.js", "app.css")
REPO = Path(__file__).resolve().parents[1]

def _fill(store: Any, templates: list[dict[str, dict[str, Any]]]) -> int:
    """Clone the demo's per-family reports into CLUSTERS clusters; returns rows written."""
    from concurrent.futures import ThreadPoolExecutor

    from shared.store.status import save_cluster_status

    jobs = []
    for n in range(CLUSTERS):
        template = templates[n % len(templates)]
        sub = f"{n % SUBSCRIPTIONS:08x}-0000-4000-8000-{n % SUBSCRIPTIONS:012x}"
        for family, report in template.items():
            text = json.dumps(report)
            old = report["cluster"]
            text = text.replace(old["subscriptionId"], sub).replace(old["name"], f"aks-{n:04d}-{old['name'][4:]}")
            jobs.append((json.loads(text), family))
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda job: save_cluster_status(store, job[0], [job[1]]), jobs))
    return len(jobs)


_TIMED = """async ([kind, value]) => {
  const t = performance.now();
  if (kind === 'sort') document.querySelector(`th[data-sort-key='${value}'] button`).click();
  else if (kind === 'plainfilter') { const rows = document.getElementById('plain').children;
    for (let i = 0; i < rows.length; i++) rows[i].hidden = value ? i % 2 === 1 : false; }
  else if (kind === 'plain') { const b = document.getElementById('plain'); const f = document.createDocumentFragment();
    for (const r of [...b.children].reverse()) f.append(r); b.append(f); }
  else { const i = document.getElementById(kind); i.value = value;
    i.dispatchEvent(new Event(kind === 'f-text' ? 'input' : 'change')); }
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  return performance.now() - t;
}"""
_PLAIN = """() => { const table = document.createElement('table'); const b = document.createElement('tbody');
  b.id = 'plain';
  for (let i = 0; i < 1000; i++) { const tr = document.createElement('tr');
    for (let j = 0; j < 14; j++) {
      const td = document.createElement('td'); td.textContent = `cell ${i} ${j}`; tr.append(td); }
    b.append(tr); }
  table.append(b); document.body.append(table); }"""


def _server(store: Any) -> dict[str, Any]:
    """/api/clusters built in process, the reference (before) and current (after) code interleaved."""
    from shared.functions.api import Api, ApiResponse
    from shared.monitor.merge import merge_by_cluster
    from shared.store.status import list_cluster_status
    from tests.test_merge_speed_equivalence import (
        reference_clusters_body,
        reference_list_cluster_status,
        reference_merge_by_cluster,
    )

    class _Monitor:
        def __init__(self) -> None:
            self.store = store

    api = Api(_Monitor)
    times: dict[str, list[float]] = {k: [] for k in ("before", "after", "before_cpu", "after_cpu", "before_read",
                                                       "after_read", "before_merge", "after_merge", "before_serialize",
                                                       "serialize")}

    def timed(key: str, fn: Callable[[], Any]) -> Any:
        gc.collect()  # each call starts from the same heap, not from the garbage of the one before it
        started, cpu = time.perf_counter(), time.process_time()
        value = fn()
        times[key].append((time.perf_counter() - started) * 1000)
        if f"{key}_cpu" in times:  # this process's CPU time: what other processes on a shared machine do not bend
            times[f"{key}_cpu"].append((time.process_time() - cpu) * 1000)
        return value

    answers: dict[str, bytes] = {}
    for round_ in range(SERVER_ROUNDS):
        order = ("before", "after") if round_ % 2 == 0 else ("after", "before")  # neither always runs first
        for name in order:
            answers[name] = timed(name, (lambda: reference_clusters_body(store)) if name == "before" else
                                  (lambda: api.route("GET", "/api/clusters", {}, b"").json_bytes()))
        assert json.loads(answers["before"]) == json.loads(answers["after"]), "the /api/clusters answer changed"
        old_rows = timed("before_read", lambda: reference_list_cluster_status(store))
        timed("before_merge", partial(reference_merge_by_cluster, old_rows))
        new_rows = timed("after_read", lambda: list_cluster_status(store))
        items = timed("after_merge", partial(merge_by_cluster, new_rows))
        body = {"count": len(items), "clusters": items}
        timed("before_serialize", partial(json.dumps, body, indent=2))  # the old json_bytes
        timed("serialize", ApiResponse(200, body).json_bytes)
    figures: dict[str, Any] = {key: statistics.median(values) for key, values in times.items()}
    figures["bytes"] = len(answers["after"])
    return figures


def _baseline_web(rev: str, into: Path) -> Path:
    """shared/web of git revision `rev`, written under `into`."""
    for name in WEB_FILES:
        text = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:shared/web/{name}"], check=True,
                              capture_output=True).stdout
        (into / name).write_bytes(text)
    return into


def _baseline_host(monitor: Any, web: Path) -> Any:
    """A dev host serving the baseline page with the reference /api/clusters code (the page before)."""
    from devtools.devhost import DevHost, _handler
    from shared.functions.api import Api, ApiResponse, _bad_cluster_filter
    from shared.functions.dashboard import Dashboard
    from tests.test_merge_speed_equivalence import reference_list_cluster_status, reference_merge_by_cluster

    class ReferenceApi(Api):
        def clusters(self, query: Any) -> ApiResponse:
            cluster = query.get("cluster")
            if (bad := _bad_cluster_filter(cluster)) is not None:
                return bad
            items = reference_merge_by_cluster(reference_list_cluster_status(self.monitor.store, cluster))
            return ApiResponse(200, {"count": len(items), "clusters": items})

    host = DevHost(lambda: monitor, 0, timers=False, env={})
    host.server.RequestHandlerClass = _handler(ReferenceApi(lambda: monitor), Dashboard(lambda: monitor, web))
    return host


def _measure(base: str, executable: str) -> dict[str, Any]:
    from tests.dashboard_world import browser_session

    with browser_session(executable) as browser:
        page = browser.new_page(viewport={"width": 1680, "height": 1000})
        page.goto(f"{base}/api/dashboard?refresh=3600")
        page.wait_for_function("Number(document.documentElement.dataset.renders || 0) >= 1", timeout=120_000)
        first = page.evaluate("() => performance.getEntriesByName('fleet-first-render')[0].startTime")
        api = page.evaluate("() => performance.getEntriesByType('resource')"
                            ".filter(e => e.name.includes('/api/clusters')).map(e => e.duration)[0]")
        rows = page.evaluate("() => document.querySelectorAll('#grid-body tr').length")
        filters = [page.evaluate(_TIMED, ["f-text", text]) for text in ("aks-0", "nsg", "rg-legacy", "")]
        filters += [page.evaluate(_TIMED, ["f-status", status]) for status in ("detected", "unknown", "attention", "")]
        sorts = [page.evaluate(_TIMED, ["sort", key]) for key in ("name", "name", "cause:snat-port-exhaustion")]
        refreshes: list[float] = []
        for _ in range(3):
            renders = page.evaluate("() => Number(document.documentElement.dataset.renders)")
            started = time.perf_counter()
            page.click("#refresh-now")
            page.wait_for_function(f"Number(document.documentElement.dataset.renders) > {renders}", timeout=120_000)
            refreshes.append((time.perf_counter() - started) * 1000)
        # Calibration on this machine: reordering a bare 1,000 x 14 table, no CSS, same browser.
        plain_page = browser.new_page(viewport={"width": 1680, "height": 1000})
        plain_page.set_content("<!doctype html><title>plain</title>")
        plain_page.evaluate(_PLAIN)
        plain = [plain_page.evaluate(_TIMED, ["plain", ""]) for _ in range(3)]
        plain_filter = [plain_page.evaluate(_TIMED, ["plainfilter", v]) for v in ("half", "", "half", "")]
    return {"rows": rows, "first_render_ms": first, "api_clusters_ms": api,
            "filter_ms": statistics.median(filters), "filter_max_ms": max(filters),
            "sort_ms": statistics.median(sorts), "refresh_ms": statistics.median(refreshes),
            "plain_reorder_ms": statistics.median(plain), "plain_filter_ms": statistics.median(plain_filter)}


def _median_figures(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def main() -> None:
    from devtools.devhost import DevHost
    from devtools.emulator.arm import Emulator
    from shared.monitor.cycle import Monitor
    from shared.settings import Settings
    from shared.store.connection import open_store, settings_from_env, table_service
    from shared.store.findings import cluster_key
    from shared.store.status import list_cluster_status
    from shared.store.tables import DEFAULT_TABLES
    from tests.azurite import private_azurite
    from tests.dashboard_world import chromium_path
    from tests.emulator_fixtures import DEMO_SCENARIO

    executable = chromium_path()
    if executable is None:
        print("dashboard: skipped (Debian's chromium is not installed; make bench installs it as root)")
        return
    baseline_rev = os.environ.get(BASELINE_REV_ENV, "").strip()
    # A private Azurite on free ports: a shared one on the default ports may be stopped by its owner mid-run.
    with private_azurite() as server, Emulator(str(DEMO_SCENARIO), prefer_kernel=False) as emu, \
            tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, **emu.env(), "NODE_PROBES": "off", "AzureWebJobsStorage": server.connection_string}
        env.pop("MONITOR_SUBSCRIPTIONS", None)
        os.environ.update(emu.env())
        store = open_store(env, names=DEFAULT_TABLES.namespaced(f"d{int(time.time())}"))
        try:
            monitor = Monitor(Settings.from_env(env), store, env=env)
            monitor.run_cycle(("snat", "nsg"))
            by_cluster: dict[str, dict[str, dict[str, Any]]] = {}
            for row in list_cluster_status(store):
                family = row.pop("family", "all")
                by_cluster.setdefault(row["cluster"]["id"], {})[family] = row
            for cluster_id, families in by_cluster.items():  # the clones replace the originals
                for family in families:
                    store.cluster_status.delete_entity(cluster_key(cluster_id), family)
            started = time.perf_counter()
            written = _fill(store, list(by_cluster.values()))
            fill_s = time.perf_counter() - started
            api = _server(store)
            hosts = {"after": DevHost(lambda: monitor, 0, timers=False, env={})}
            if baseline_rev:
                hosts["before"] = _baseline_host(monitor, _baseline_web(baseline_rev, Path(scratch)))
            for host in hosts.values():
                host.start()
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in hosts}
            try:
                for _ in range(BROWSER_ROUNDS):
                    for name, host in hosts.items():
                        runs[name].append(_measure(f"http://127.0.0.1:{host.port}", executable))
            finally:
                for host in hosts.values():
                    host.stop()
        finally:
            service = table_service(settings_from_env(env))
            for name in store.names.all():
                service.delete_table(name)
    figures = {name: _median_figures(r) for name, r in runs.items()}
    after = figures["after"]
    print(f"dashboard: {after['rows']:.0f} clusters on the page ({written} report rows written in {fill_s:.1f} s)")
    print(f"  GET /api/clusters built in process ({api['bytes'] / 1e6:.1f} MB, median of {SERVER_ROUNDS}, same JSON): "
          f"before {api['before']:.0f} ms, after {api['after']:.0f} ms (ratio {api['before'] / api['after']:.2f}); "
          f"CPU time of this process {api['before_cpu']:.0f} -> {api['after_cpu']:.0f} ms "
          f"(ratio {api['before_cpu'] / api['after_cpu']:.2f}; Azurite's own time is not in it)")
    print(f"    read + decode   {api['before_read']:6.0f} -> {api['after_read']:4.0f} ms "
          f"(ratio {api['before_read'] / api['after_read']:.2f}; the Tables query and json.loads of the reports)")
    print(f"    merge           {api['before_merge']:6.0f} -> {api['after_merge']:4.0f} ms "
          f"(ratio {api['before_merge'] / api['after_merge']:.2f})")
    print(f"    serialize       {api['before_serialize']:6.0f} -> {api['serialize']:4.0f} ms "
          f"(ratio {api['before_serialize'] / api['serialize']:.2f}; indent=2 -> compact, the C encoder)")
    print(f"  first render      {after['first_render_ms']:8.0f} ms  (target < {TARGET_FIRST_RENDER_MS:.0f}; "
          f"of which GET /api/clusters {after['api_clusters_ms']:.0f} ms)")
    print(f"  filter (median)   {after['filter_ms']:8.1f} ms  (max {after['filter_max_ms']:.1f}; "
          f"target < {TARGET_FILTER_MS:.0f}; hiding/showing half of a bare 1,000-row table: "
          f"{after['plain_filter_ms']:.0f} ms; ratio {after['filter_ms'] / after['plain_filter_ms']:.2f})")
    print(f"  sort (median)     {after['sort_ms']:8.1f} ms  (a bare 1,000-row table reordered in the same browser: "
          f"{after['plain_reorder_ms']:.0f} ms; ratio {after['sort_ms'] / after['plain_reorder_ms']:.1f})")
    print(f"  machine load      {os.getloadavg()[0]:8.1f}     (1-min load average; the figures scale with it)")
    print(f"  live refresh      {after['refresh_ms']:8.0f} ms  (unchanged data: fetch + diff, no re-render)")
    if "before" in figures:
        before = figures["before"]
        print(f"  page of {baseline_rev} (before) against this one (after), alternating, "
              f"median of {BROWSER_ROUNDS} each:")
        for key, label in (("first_render_ms", "first render"), ("api_clusters_ms", "GET /api/clusters"),
                           ("filter_ms", "filter (median)"), ("filter_max_ms", "filter (max)"),
                           ("sort_ms", "sort (median)"), ("refresh_ms", "live refresh")):
            print(f"    {label:18s} {before[key]:8.0f} -> {after[key]:6.0f} ms  (ratio {before[key] / after[key]:.2f})")


if __name__ == "__main__":
    main()
