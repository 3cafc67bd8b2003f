/* Fleet page: reads the monitor's JSON routes (GET only) and draws the fleet grid, a cluster's detail,
 * its SNAT chart and the fleet's health. No framework, no build step: plain DOM, inline SVG.
 *
 * Data: /api/clusters (one report per cluster; older servers answered one report per check family, which
 * mergeReports() folds into one), /api/findings + /api/findings/{id}/history (timeline), /api/health
 * (families' last completed cycles), /api/outbox (notification counts), /api/snat?cluster= (chart).
 * The page is opened with ?code=<function key> in Azure; the key is passed on to every call.
 */
"use strict";
(() => {
  const CAUSE_LABELS = {
    "nsg-blocks-10250": "NSG blocks 10250",
    "ufw-blocks-10250": "UFW blocks 10250",
    "iptables-blocks-10250": "iptables blocks 10250",
    "egress-tunnel-port-blocked": "Egress tunnel port",
    "snat-port-exhaustion": "SNAT ports",
    "konnectivity-agent-unhealthy": "Konnectivity agent",
    "authorized-ip-ranges-exclude-egress": "Authorized IP ranges",
  };
  const STATUSES = ["detected", "unknown", "clear", "not_applicable"];
  const STATUS_RANK = { detected: 0, unknown: 1, clear: 2, not_applicable: 3 };
  const VERDICTS = ["problem", "inconclusive", "healthy"];
  const VERDICT_RANK = { problem: 0, inconclusive: 1, healthy: 2 };
  const EVENT_WORDS = { detected: "opened", reminder: "reminded", resolved: "resolved" };
  const NOT_CHECKED = "not checked by this check family";
  const FAMILY_STALE_MIN = { snat: 15, nsg: 30, probe: 90 };
  const SNAT_OUTBOUND = ["loadbalancer", "managednatgateway", "userassignednatgateway"];

  const params = new URLSearchParams(location.search);
  const KEY = params.get("code");
  const API = location.pathname.replace(/\/dashboard(\/.*)?$/i, "") || "/api";
  const REFRESH_S = clamp(parseInt(params.get("refresh") || "30", 10) || 30, 2, 3600);
  const STALE_MIN = clamp(Number(params.get("stale") || "30") || 30, 0.1, 10080);
  const STORE_KEY = "tunnelmon.fleet.view";

  const $ = (id) => document.getElementById(id);
  const state = {
    entries: new Map(), // lower-case cluster id -> entry
    order: [], // entries in display order
    causes: [],
    openSince: new Map(),
    health: null,
    outbox: null,
    outboxError: null,
    loadedAt: null,
    error: null,
    sort: { key: "verdict", dir: 1 },
    filters: { text: "", sub: "", cause: "", status: "", verdict: "" },
    selected: null,
    loading: false,
    renders: 0,
    detailSeq: 0,
  };

  // ------------------------------------------------------------------ small helpers

  function clamp(n, lo, hi) { return Math.min(Math.max(n, lo), hi); }
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v === null || v === undefined || v === false) continue;
        if (k === "class") node.className = v;
        else if (k === "text") node.textContent = v;
        else if (k.startsWith("data-")) node.setAttribute(k, v);
        else if (k in node && k !== "list") node[k] = v;
        else node.setAttribute(k, v);
      }
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }
  function statusWord(s) { return String(s || "unknown").replace(/_/g, " "); }
  function causeLabel(id) { return CAUSE_LABELS[id] || id; }
  function cmp(a, b) { return a < b ? -1 : a > b ? 1 : 0; }
  function parseTime(iso) { const t = Date.parse(iso || ""); return Number.isNaN(t) ? null : t; }
  function utc(iso) {
    const t = parseTime(iso);
    return t === null ? "—" : new Date(t).toISOString().replace("T", " ").slice(0, 16) + " UTC";
  }
  function ago(iso, now = Date.now()) {
    const t = parseTime(iso);
    if (t === null) return "never";
    let s = Math.max(0, Math.round((now - t) / 1000));
    if (s < 60) return `${s} s ago`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ago`;
    const h = Math.floor(m / 60);
    if (h < 48) return `${h} h ${m % 60} min ago`;
    return `${Math.floor(h / 24)} d ${h % 24} h ago`;
  }
  function duration(iso, now = Date.now()) { return ago(iso, now).replace(/ ago$/, ""); }
  function fmt(n) { return n === null || n === undefined ? "—" : Number(n).toLocaleString("en-US", { maximumFractionDigits: 1 }); }
  function subjectName(id) {
    const parts = String(id || "").replace(/\/+$/, "").split("/");
    return parts.length > 2 && parts[0] === "" ? parts.slice(-2).join("/") : parts[parts.length - 1];
  }
  function lastSegment(id) { return String(id || "").replace(/\/+$/, "").split("/").pop(); }

  function apiUrl(path, query) {
    const u = new URL(API + path, location.origin);
    for (const [k, v] of Object.entries(query || {})) if (v !== undefined && v !== null && v !== "") u.searchParams.set(k, v);
    if (KEY) u.searchParams.set("code", KEY);
    return u.pathname + u.search;
  }
  async function getJSON(path, query) {
    const reply = await fetch(apiUrl(path, query), { method: "GET", headers: { Accept: "application/json" }, cache: "no-store", credentials: "same-origin" });
    let body = null;
    try { body = await reply.json(); } catch (e) { body = null; }
    if (!reply.ok) {
      const msg = body && body.error && body.error.message ? `: ${body.error.message}` : "";
      throw new Error(`${path} answered HTTP ${reply.status}${msg}`);
    }
    return body;
  }

  // ------------------------------------------------------------------ data shaping

  function verdictOf(causes) {
    if (causes.some((c) => c.status === "detected")) return "problem";
    if (causes.some((c) => c.status === "unknown")) return "inconclusive";
    return "healthy";
  }

  /* One report per cluster. The documented answer already is; an answer with one report per check family
   * (family field) is folded: each cause from the newest report that really checked it. */
  function mergeReports(items) {
    const groups = new Map();
    for (const r of items || []) {
      if (!r || !r.cluster || !r.cluster.id) continue;
      const id = r.cluster.id.toLowerCase();
      if (!groups.has(id)) groups.set(id, []);
      groups.get(id).push(r);
    }
    const out = [];
    for (const group of groups.values()) {
      if (group.length === 1) { out.push(group[0]); continue; }
      group.sort((a, b) => cmp(b.checkedAt || "", a.checkedAt || ""));
      const ids = [];
      for (const r of group) for (const c of r.causes || []) if (!ids.includes(c.id)) ids.push(c.id);
      const causes = ids.map((cid) => {
        let best = null;
        let fallback = null;
        for (const r of group) {
          const c = (r.causes || []).find((x) => x.id === cid);
          if (!c) continue;
          const merged = { ...c, checkedAt: c.checkedAt || r.checkedAt };
          if (c.reason === NOT_CHECKED) { fallback = fallback || merged; continue; }
          if (!best || cmp(merged.checkedAt || "", best.checkedAt || "") > 0) best = merged;
        }
        return best || fallback;
      });
      const symptom = (group.find((r) => r.symptom && r.symptom.nodes && r.symptom.nodes.length) || group[0]).symptom;
      out.push({ ...group[0], causes, symptom, verdict: verdictOf(causes) });
    }
    return out;
  }

  function searchText(report) {
    const c = report.cluster || {};
    const parts = [c.name, c.resourceGroup, c.subscriptionId, c.id, c.tunnel, c.location, report.verdict];
    for (const cause of report.causes || []) {
      if (cause.status === "unknown" && cause.reason) parts.push(cause.reason);
      if (cause.status === "detected") parts.push(cause.summary, causeLabel(cause.id), cause.id);
    }
    return parts.filter(Boolean).join(" ").toLowerCase();
  }

  // ------------------------------------------------------------------ loading

  async function load() {
    if (state.loading) return;
    state.loading = true;
    try {
      const [clusters, findings, health, outbox] = await Promise.allSettled([
        getJSON("/clusters"), getJSON("/findings", { status: "open" }), getJSON("/health"), getJSON("/outbox"),
      ]);
      // Health and outbox stand on their own: a failing /api/clusters must not hide them, or freeze them.
      state.health = health.status === "fulfilled" ? health.value : { error: String(health.reason && health.reason.message) };
      state.outbox = outbox.status === "fulfilled" ? outbox.value : null;
      state.outboxError = outbox.status === "rejected" ? String(outbox.reason && outbox.reason.message) : null;
      if (clusters.status === "rejected") throw clusters.reason;
      state.error = null;
      state.loadedAt = new Date();
      state.openSince = new Map();
      if (findings.status === "fulfilled") {
        for (const f of findings.value.findings || []) {
          const id = ((f.cluster || {}).id || "").toLowerCase();
          const prev = state.openSince.get(id);
          if (!prev || cmp(f.firstSeen || "", prev) < 0) state.openSince.set(id, f.firstSeen);
        }
      }
      applyReports(mergeReports(clusters.value.clusters));
    } catch (err) {
      state.error = err && err.message ? err.message : String(err);
    } finally {
      state.loading = false;
      renderChrome();
      if (state.selected) renderDetail(false);
      state.renders += 1;
      document.documentElement.dataset.renders = String(state.renders);
      if (state.renders === 1 && window.performance && performance.mark) performance.mark("fleet-first-render");
    }
  }

  function applyReports(reports) {
    const causes = [];
    for (const r of reports) for (const c of r.causes || []) if (!causes.includes(c.id)) causes.push(c.id);
    const columnsChanged = causes.join("|") !== state.causes.join("|");
    if (columnsChanged) {
      state.causes = causes;
      buildHead();
      state.entries.clear();
      $("grid-body").textContent = "";
      fillCauseFilter();
    }
    const seen = new Set();
    let changed = columnsChanged;
    for (const report of reports) {
      const id = report.cluster.id.toLowerCase();
      seen.add(id);
      const since = state.openSince.get(id) || null;
      const signature = JSON.stringify(report) + "|" + since;
      let entry = state.entries.get(id);
      if (entry && entry.signature === signature) continue;
      const row = buildRow(report, since);
      if (entry) entry.row.replaceWith(row);
      entry = {
        id, report, since, signature, row,
        // The two cells whose text ticks with the clock (renderChrome), found once instead of per refresh.
        checkedCell: row.lastChild, sinceCell: row.children[5],
        statuses: Object.fromEntries((report.causes || []).map((c) => [c.id, c.status])),
        text: searchText(report),
        sub: (report.cluster.subscriptionId || "").toLowerCase(),
        name: (report.cluster.name || "").toLowerCase(),
      };
      state.entries.set(id, entry);
      changed = true;
    }
    for (const [id, entry] of state.entries) {
      if (!seen.has(id)) { entry.row.remove(); state.entries.delete(id); changed = true; }
    }
    if (changed) {
      fillSubscriptionFilter();
      sortRows();
      filterRows();
      renderCounts();
    }
    markSelected();
  }

  // ------------------------------------------------------------------ grid

  const FIXED_COLUMNS = [
    { key: "sub", label: "Subscription" },
    { key: "rg", label: "Resource group" },
    { key: "name", label: "Cluster" },
    { key: "tunnel", label: "Tunnel" },
    { key: "verdict", label: "Verdict" },
    { key: "since", label: "Open since" },
  ];

  function buildHead() {
    const head = $("grid-head");
    head.textContent = "";
    const columns = [...FIXED_COLUMNS, ...state.causes.map((id) => ({ key: "cause:" + id, label: causeLabel(id), cause: id })),
      { key: "checked", label: "Checked" }];
    for (const col of columns) {
      const th = el("th", { scope: "col", class: col.cause ? "cause" : null, "data-sort-key": col.key });
      if (col.cause) th.title = col.cause;
      th.append(el("button", { type: "button", text: col.label, "data-sort-key": col.key }));
      head.append(th);
    }
    updateSortIndicators();
  }

  /* One cell. Plain property writes: this runs for 14,000 cells on a first render of 1,000 clusters. */
  function cell(cls, field, text, title) {
    const td = document.createElement("td");
    td.className = cls;
    if (field) td.setAttribute("data-field", field);
    if (title !== null) td.title = title;
    td.textContent = text;
    return td;
  }

  function buildRow(report, since) {
    const c = report.cluster;
    const tr = document.createElement("tr");
    tr.setAttribute("data-cluster-id", c.id.toLowerCase());
    tr.setAttribute("data-verdict", report.verdict);
    const link = document.createElement("a");
    link.href = "#cluster=" + encodeURI(c.id);
    link.textContent = c.name || lastSegment(c.id);
    const name = cell("name", "name", "", null);
    name.append(link);
    tr.append(
      cell("sub mono", "subscription", c.subscriptionId || "", c.subscriptionId || ""),
      cell("rg", "resourceGroup", c.resourceGroup || "", c.resourceGroup || ""),
      name,
      cell("tunnel", "tunnel", c.tunnel || "unknown", null),
      cell("verdict " + report.verdict, "verdict", report.verdict, null),
      cell("since", "since", since ? duration(since) : "—", since ? utc(since) : "no open finding"),
    );
    const byId = new Map((report.causes || []).map((x) => [x.id, x]));
    for (const id of state.causes) {
      const cause = byId.get(id);
      if (!cause) { tr.append(cell("st missing", null, "—", `${causeLabel(id)}: not in this report`)); continue; }
      const why = cause.status === "unknown" ? (cause.reason || cause.summary || "no reason given") : (cause.summary || "");
      const td = cell("st", null, statusWord(cause.status), `${causeLabel(cause.id)}: ${statusWord(cause.status)}${why ? " — " + why : ""}`);
      td.setAttribute("data-cause", cause.id);
      td.setAttribute("data-status", cause.status);
      tr.append(td);
    }
    tr.append(cell("checked", "checkedAt", ago(report.checkedAt), utc(report.checkedAt)));
    return tr;
  }

  function sortValue(entry, key) {
    const c = entry.report.cluster;
    switch (key) {
      case "sub": return (c.subscriptionId || "").toLowerCase();
      case "rg": return (c.resourceGroup || "").toLowerCase();
      case "name": return entry.name;
      case "tunnel": return c.tunnel || "";
      case "verdict": return VERDICT_RANK[entry.report.verdict] ?? 9;
      case "since": return entry.since || "\uffff";
      case "checked": return entry.report.checkedAt || "";
      default: {
        const cause = key.slice(6);
        return STATUS_RANK[entry.statuses[cause]] ?? 9;
      }
    }
  }

  function sortRows() {
    const { key, dir } = state.sort;
    const keyed = [...state.entries.values()].map((e) => [sortValue(e, key), VERDICT_RANK[e.report.verdict] ?? 9, e]);
    keyed.sort((a, b) => dir * cmp(a[0], b[0]) || cmp(a[1], b[1]) || cmp(a[2].name, b[2].name) || cmp(a[2].id, b[2].id));
    const entries = keyed.map((k) => k[2]);
    state.order = entries;
    // Move only rows that are out of place: a row taken out and put back is styled and laid out again, so
    // re-appending all 1,000 on a refresh that changed a few reports would redo the whole grid.
    const body = $("grid-body");
    let next = body.firstElementChild;
    for (const e of entries) {
      if (e.row === next) next = next.nextElementSibling;
      else body.insertBefore(e.row, next);
    }
    updateSortIndicators();
  }

  function updateSortIndicators() {
    for (const th of $("grid-head").children) {
      const key = th.dataset.sortKey;
      if (key === state.sort.key) th.setAttribute("aria-sort", state.sort.dir > 0 ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
    }
  }

  /* The filters as one predicate, worked out once per pass (the search text of each row is precomputed). */
  function matcher() {
    const f = state.filters;
    const words = f.text ? f.text.toLowerCase().split(/\s+/).filter(Boolean) : [];
    const wanted = !f.status ? null : f.status === "attention" ? ["detected", "unknown"] : [f.status];
    return (entry) => {
      if (f.sub && entry.sub !== f.sub) return false;
      if (f.verdict && entry.report.verdict !== f.verdict) return false;
      if (wanted) {
        const causes = f.cause ? [f.cause] : Object.keys(entry.statuses);
        if (!causes.some((c) => wanted.includes(entry.statuses[c]))) return false;
      }
      for (const word of words) if (!entry.text.includes(word)) return false;
      return true;
    };
  }

  function filterRows() {
    let shown = 0;
    const matches = matcher();
    for (const entry of state.order) {
      const ok = matches(entry);
      if (entry.row.hidden === ok) entry.row.hidden = !ok;
      if (ok) shown += 1;
    }
    const total = state.entries.size;
    $("shown").textContent = `showing ${shown} of ${total} cluster${total === 1 ? "" : "s"}`;
    $("empty").hidden = shown > 0 || total === 0;
    document.documentElement.dataset.shown = String(shown);
    for (const id of ["f-text", "f-sub", "f-cause", "f-status"]) {
      const node = $(id);
      const key = { "f-text": "text", "f-sub": "sub", "f-cause": "cause", "f-status": "status" }[id];
      if (node.value !== state.filters[key] && document.activeElement !== node) node.value = state.filters[key];
    }
    renderTilePressed();
    saveView();
  }

  function fillSubscriptionFilter() {
    const select = $("f-sub");
    const counts = new Map();
    for (const e of state.entries.values()) {
      const s = e.report.cluster.subscriptionId || "";
      if (s) counts.set(s, (counts.get(s) || 0) + 1);
    }
    const subs = [...counts.keys()].sort();
    const current = [...select.options].slice(1).map((o) => o.value).join("|");
    if (current === subs.map((s) => s.toLowerCase()).join("|")) return;
    select.length = 1;
    for (const s of subs) select.append(el("option", { value: s.toLowerCase(), text: `${s} (${counts.get(s)})` }));
    select.value = state.filters.sub;
  }

  function fillCauseFilter() {
    const select = $("f-cause");
    select.length = 1;
    for (const id of state.causes) select.append(el("option", { value: id, text: causeLabel(id) }));
    select.value = state.filters.cause;
  }

  // ------------------------------------------------------------------ counts, health, banner

  function renderCounts() {
    const entries = [...state.entries.values()];
    const verdicts = Object.fromEntries(VERDICTS.map((v) => [v, 0]));
    const statuses = Object.fromEntries(STATUSES.map((s) => [s, 0]));
    for (const e of entries) {
      verdicts[e.report.verdict] = (verdicts[e.report.verdict] || 0) + 1;
      for (const s of Object.values(e.statuses)) statuses[s] = (statuses[s] || 0) + 1;
    }
    const vt = $("verdict-tiles");
    vt.textContent = "";
    vt.append(tile("all", entries.length, "clusters", "verdict", ""));
    for (const v of VERDICTS) vt.append(tile("v-" + v, verdicts[v], v, "verdict", v));
    const st = $("status-counts");
    st.textContent = "";
    for (const s of STATUSES) st.append(tile("s-" + s, statuses[s], statusWord(s), "status", s));
    renderTilePressed();
  }

  function tile(cls, n, label, filter, value) {
    return el("button", { type: "button", class: "tile " + cls, "data-filter": filter, "data-value": value, "data-count": String(n) },
      el("span", { class: "n", text: String(n) }), el("span", { class: "l", text: label }));
  }

  function renderTilePressed() {
    for (const b of document.querySelectorAll(".tile[data-filter]")) {
      const on = (state.filters[b.dataset.filter] || "") === b.dataset.value && (b.dataset.value !== "" || !anyFilter());
      b.setAttribute("aria-pressed", on ? "true" : "false");
    }
  }
  function anyFilter() { return Object.values(state.filters).some(Boolean); }

  function reasonCategory(reason) {
    const r = String(reason || "").toLowerCase();
    if (r.includes(NOT_CHECKED)) return "not checked by this family yet";
    if (/no monitoring check family|run diagnose for it/.test(r)) return "not monitored (diagnose only)";
    if (/forbidden|\b403\b|authoriz|permission|access denied|not allowed/.test(r)) return "forbidden";
    if (/throttl|\b429\b|too many requests|rate limit/.test(r)) return "throttled";
    if (/probes? (are |were )?(off|disabled)|node_probes|not probed|no probe|without probes|probing is off/.test(r)) return "probes off / not probed";
    if (/run-?command/.test(r)) return "run-command failed";
    if (/truncat|4,?096/.test(r)) return "output truncated";
    if (/timed? ?out|timeout/.test(r)) return "timed out";
    if (/kubernetes|api server|kubeconfig|credential/.test(r)) return "Kubernetes API unreadable";
    if (/metric/.test(r)) return "metrics unavailable";
    if (/not found|\b404\b/.test(r)) return "not found";
    if (/unsupported|availability set/.test(r)) return "unsupported cluster";
    if (/poison|keeps failing|check failed|failed repeatedly/.test(r)) return "check keeps failing";
    return "other";
  }

  function renderHealth() {
    const fam = $("families");
    fam.textContent = "";
    const health = state.health || {};
    const last = health.lastSuccessfulCycle || {};
    const cycles = health.cycles || {};
    const families = [...new Set([...Object.keys(last), ...Object.keys(cycles)])];
    if (health.error) fam.append(el("li", null, el("span", { class: "k bad", text: "health unavailable" }), el("span", { class: "v", text: health.error })));
    for (const f of families) {
      const at = last[f];
      const t = parseTime(at);
      const limit = (FAMILY_STALE_MIN[f] || STALE_MIN) * 60000;
      const cls = t === null || Date.now() - t > limit ? "v bad" : "v";
      fam.append(el("li", { "data-family": f }, el("span", { class: "k", text: f }), el("span", { class: cls, title: at ? utc(at) : "no successful cycle recorded", text: at ? ago(at) : "never" })));
      const cycle = cycles[f];
      if (cycle) {
        const notes = [];
        if (!cycle.complete) notes.push(`running: ${cycle.done}/${cycle.clusters} clusters, started ${ago(cycle.startedAt)}`);
        if (cycle.failed) notes.push(`${cycle.failed} cluster check${cycle.failed === 1 ? "" : "s"} failed`);
        if ((cycle.errors || []).length) notes.push(`${cycle.errors.length} error${cycle.errors.length === 1 ? "" : "s"}`);
        if (notes.length) {
          fam.append(el("li", { class: "sub-item", "data-family-cycle": f, title: (cycle.errors || []).slice(0, 5).join("\n") },
            el("span", { class: cycle.failed || (cycle.errors || []).length ? "v bad" : "v", text: notes.join(" · ") })));
        }
      }
    }
    if (health.status && health.status !== "healthy") fam.append(el("li", null, el("span", { class: "k bad", text: `status: ${health.status}` })));

    // unknown, grouped by reason
    const groups = new Map();
    let unknownClusters = 0;
    for (const e of state.entries.values()) {
      let any = false;
      for (const c of e.report.causes || []) {
        if (c.status !== "unknown") continue;
        any = true;
        const cat = reasonCategory(c.reason);
        if (!groups.has(cat)) groups.set(cat, { clusters: new Set(), checks: 0, samples: new Set() });
        const g = groups.get(cat);
        g.clusters.add(e.id);
        g.checks += 1;
        if (g.samples.size < 3 && c.reason) g.samples.add(c.reason);
      }
      if (any) unknownClusters += 1;
    }
    $("unknown-title").textContent = `Unknown: ${unknownClusters} cluster${unknownClusters === 1 ? "" : "s"}`;
    const ul = $("unknown-reasons");
    ul.textContent = "";
    if (!groups.size) ul.append(el("li", null, el("span", { class: "k good", text: "every check ran" })));
    for (const [cat, g] of [...groups.entries()].sort((a, b) => b[1].clusters.size - a[1].clusters.size)) {
      ul.append(el("li", { "data-reason": cat, title: [...g.samples].join("\n") },
        el("span", { class: "k warn", text: cat }),
        el("span", { class: "v", text: `${g.clusters.size} cluster${g.clusters.size === 1 ? "" : "s"} · ${g.checks} check${g.checks === 1 ? "" : "s"}` })));
    }

    const ob = $("outbox");
    ob.textContent = "";
    if (state.outbox) {
      const o = state.outbox;
      ob.append(el("li", { "data-outbox": "pending" }, el("span", { class: "k", text: "pending" }), el("span", { class: o.pending ? "v warn" : "v", text: String(o.pending) })));
      ob.append(el("li", { "data-outbox": "dead" }, el("span", { class: "k", text: "dead (gave up)" }), el("span", { class: o.dead ? "v bad" : "v", text: String(o.dead) })));
      for (const ch of o.channels || []) {
        ob.append(el("li", { class: "sub-item", "data-channel": ch.channel }, el("span", { class: "k muted", text: ch.channel }),
          el("span", { class: "v", text: `${ch.pending} pending · ${ch.dead} dead${ch.oldestPending ? " · oldest " + duration(ch.oldestPending) : ""}` })));
      }
      if (o.configuredChannels && !o.configuredChannels.length) ob.append(el("li", null, el("span", { class: "k muted", text: "no channel configured" })));
    } else {
      ob.append(el("li", null, el("span", { class: "k warn", text: "counts unavailable" }), el("span", { class: "v", text: state.outboxError || "" })));
    }
  }

  function newestCheck() {
    let newest = null;
    for (const e of state.entries.values()) {
      for (const iso of [e.report.checkedAt, ...(e.report.causes || []).map((c) => c.checkedAt)]) {
        const t = parseTime(iso);
        if (t !== null && (newest === null || t > newest)) newest = t;
      }
    }
    return newest;
  }

  function renderBanner() {
    const banner = $("banner");
    const messages = [];
    let kind = "";
    if (state.error) {
      kind = "error";
      messages.push(`Could not refresh: ${state.error}.` + (state.loadedAt ? ` Showing data loaded at ${state.loadedAt.toISOString().slice(11, 19)} UTC.` : ""));
    }
    const newest = newestCheck();
    if (newest !== null && Date.now() - newest > STALE_MIN * 60000) {
      kind = kind || "stale";
      messages.push(`Data is stale: the newest check finished ${ago(new Date(newest).toISOString())} (${utc(new Date(newest).toISOString())}); `
        + "the monitor's timers or workers may have stopped. See Fleet health.");
    } else if (newest === null && state.loadedAt && !state.error) {
      kind = "stale";
      messages.push("No cluster reports are stored yet: has a monitoring cycle run?");
    }
    banner.hidden = messages.length === 0;
    banner.className = "banner " + (messages.length ? "stale" : "");
    banner.dataset.kind = kind;
    banner.textContent = messages.join(" ");
    document.documentElement.dataset.stale = kind === "stale" || (kind === "error" && newest !== null && Date.now() - newest > STALE_MIN * 60000) ? "true" : "false";
  }

  function renderChrome() {
    renderHealth();
    renderBanner();
    const when = state.loadedAt ? state.loadedAt.toISOString().slice(11, 19) + " UTC" : "never";
    $("updated").textContent = `Updated ${when} · every ${REFRESH_S} s`;
    for (const e of state.entries.values()) {
      const checked = ago(e.report.checkedAt);
      if (e.checkedCell.textContent !== checked) e.checkedCell.textContent = checked;
      if (e.since) {
        const since = duration(e.since);
        if (e.sinceCell.textContent !== since) e.sinceCell.textContent = since;
      }
    }
  }

  // ------------------------------------------------------------------ detail

  function selectedFromHash() {
    const m = /(?:^#|&)cluster=([^&]+)/.exec(location.hash);
    if (!m) return null;
    try { return decodeURIComponent(m[1]).toLowerCase(); } catch (e) { return m[1].toLowerCase(); }
  }

  function markSelected() {
    for (const row of document.querySelectorAll("#grid-body tr.selected")) row.classList.remove("selected");
    const entry = state.selected && state.entries.get(state.selected);
    if (entry) entry.row.classList.add("selected");
  }

  function openFromHash() {
    const id = selectedFromHash();
    state.selected = id;
    markSelected();
    if (id) renderDetail(true);
    else { $("detail").hidden = true; document.body.classList.remove("detail-open"); }
  }

  function closeDetail() {
    state.selected = null;
    $("detail").hidden = true;
    document.body.classList.remove("detail-open");
    history.replaceState(null, "", location.pathname + location.search);
    markSelected();
  }

  function renderDetail(fresh) {
    const aside = $("detail");
    const body = $("detail-body");
    const entry = state.entries.get(state.selected);
    aside.hidden = false;
    document.body.classList.add("detail-open");
    aside.dataset.clusterId = state.selected;
    if (!entry) {
      $("detail-title").textContent = lastSegment(state.selected) || "Cluster";
      body.textContent = "";
      body.append(el("p", { class: "muted", text: state.loadedAt ? "This cluster is not in /api/clusters (not monitored, or no report stored yet)." : "Loading…" }));
      return;
    }
    if (!fresh && aside.dataset.signature === entry.signature) { loadDetailExtras(entry); return; }
    const scroll = body.scrollTop;
    const open = new Set([...body.querySelectorAll("details[open]")].map((d) => d.dataset.cause));
    const hadOpenState = !fresh && body.querySelector("details") !== null;
    aside.dataset.signature = entry.signature;
    const r = entry.report;
    const c = r.cluster;
    $("detail-title").textContent = "";
    $("detail-title").append(el("span", { text: c.name + " " }), el("span", { class: "verdict " + r.verdict, text: r.verdict }));
    body.textContent = "";
    body.append(el("dl", { class: "facts" },
      ...fact("Resource id", el("span", { class: "mono", text: c.id })),
      ...fact("Subscription", c.subscriptionId), ...fact("Resource group", c.resourceGroup),
      ...fact("Location", c.location), ...fact("Node resource group", c.nodeResourceGroup),
      ...fact("Outbound type", c.outboundType), ...fact("Private cluster", c.private === undefined ? "—" : c.private ? "yes" : "no"),
      ...fact("Tunnel component", c.tunnel), ...fact("Checked", `${utc(r.checkedAt)} (${ago(r.checkedAt)})`),
      ...(entry.since ? fact("Open since", `${utc(entry.since)} (${duration(entry.since)})`) : []),
    ));
    body.append(symptomSection(r.symptom));
    const causes = el("div", { class: "section", id: "detail-causes" }, el("h3", { text: "Causes" }));
    for (const cause of r.causes || []) {
      const isOpen = hadOpenState ? open.has(cause.id) : cause.status === "detected" || cause.status === "unknown";
      causes.append(causeCard(cause, isOpen));
    }
    body.append(causes);
    body.append(el("div", { class: "section", id: "detail-snat", hidden: true }));
    body.append(el("div", { class: "section", id: "detail-timeline" }, el("h3", { text: "Finding timeline" }), el("p", { class: "muted", text: "loading…" })));
    if (!fresh) body.scrollTop = scroll;
    loadDetailExtras(entry);
  }

  function fact(label, value) {
    return [el("dt", { text: label }), el("dd", null, value instanceof Node ? value : document.createTextNode(value === undefined || value === null || value === "" ? "—" : String(value)))];
  }

  function symptomSection(symptom) {
    const section = el("div", { class: "section", id: "detail-symptom" }, el("h3", { text: "Tunnel symptom (API server → tunnel → kubelet)" }));
    if (!symptom) { section.append(el("p", { class: "muted", text: "No symptom check in this report." })); return section; }
    const cls = symptom.status === "degraded" ? "r-bad" : symptom.status === "ok" ? "r-ok" : "r-unknown";
    section.append(el("p", null, el("span", { class: cls, text: symptom.status || "unknown" }),
      (symptom.unreachableNodes || []).length ? document.createTextNode(` — unreachable: ${symptom.unreachableNodes.join(", ")}`) : null));
    const nodes = symptom.nodes || [];
    if (nodes.length) {
      const table = el("table", { class: "mini", "data-table": "symptom-nodes" },
        el("thead", null, el("tr", null, el("th", { scope: "col", text: "Node" }), el("th", { scope: "col", text: "Result" }), el("th", { scope: "col", text: "Detail" }))));
      const tbody = el("tbody");
      for (const n of nodes) {
        const rc = n.result === "ok" ? "r-ok" : ["timeout", "refused", "no-agent", "plain-http"].includes(n.result) ? "r-bad" : "r-unknown";
        tbody.append(el("tr", { "data-node": n.node }, el("td", { class: "mono", text: n.node }), el("td", { class: rc, text: n.result }), el("td", { text: n.detail || "" })));
      }
      table.append(tbody);
      section.append(table);
    }
    return section;
  }

  function causeCard(cause, open) {
    const card = el("details", { class: "cause-card " + cause.status, "data-cause": cause.id, "data-status": cause.status, open });
    card.append(el("summary", null, el("span", { class: "badge " + cause.status, text: statusWord(cause.status) }),
      el("span", { class: "t", text: cause.title || causeLabel(cause.id) }),
      el("span", { class: "s", text: cause.checkedAt ? `checked ${ago(cause.checkedAt)}` : "" })));
    const b = el("div", { class: "cause-body" });
    if (cause.summary) b.append(el("p", { class: "summary", text: cause.summary }));
    if (cause.status === "unknown" || cause.reason) b.append(el("p", { class: "reason" }, el("strong", { text: "Why unknown: " }), document.createTextNode(cause.reason || "no reason given")));
    if (cause.unchecked && cause.unchecked.length) {
      b.append(el("p", { class: "muted", text: "Not checked conclusively this run:" }));
      b.append(el("ul", { class: "evidence" }, ...cause.unchecked.map((u) => el("li", { text: typeof u === "string" ? u : `${u.piece || u.node || u.subject || ""}: ${u.reason || JSON.stringify(u)}` }))));
    }
    if ((cause.evidence || []).length) {
      // Consecutive items about the same resource show its id once, above them.
      const list = el("ul", { class: "evidence", "data-list": "evidence" });
      let last = null;
      for (const e of cause.evidence) {
        if ((e.resource || "") !== last) {
          last = e.resource || "";
          if (last) list.append(el("li", { class: "group res mono", text: last }));
        }
        list.append(el("li", { "data-resource": e.resource || "", text: e.detail || "" }));
      }
      b.append(el("h4", { class: "sr-only", text: "Evidence" }), list);
    }
    if ((cause.remediation || []).length) {
      b.append(el("p", null, el("strong", { text: "Fix:" })));
      b.append(el("ul", { class: "cmds", "data-list": "remediation" }, ...cause.remediation.map((cmd, i) => el("li", { class: "cmd" },
        el("code", { text: cmd }),
        el("button", { type: "button", class: "btn copy", text: "Copy", "aria-label": `Copy fix ${i + 1} for ${causeLabel(cause.id)}` })))));
    }
    card.append(b);
    return card;
  }

  async function loadDetailExtras(entry) {
    const seq = ++state.detailSeq;
    const c = entry.report.cluster;
    const wantsSnat = !c.private && SNAT_OUTBOUND.includes(String(c.outboundType || "").toLowerCase());
    const [findings, snat] = await Promise.allSettled([
      getJSON("/findings", { status: "all", cluster: c.id }),
      getJSON("/snat", { cluster: c.id }),
    ]);
    let events = [];
    let findingsError = null;
    if (findings.status === "fulfilled") {
      const list = findings.value.findings || [];
      const histories = await Promise.allSettled(list.map((f) => getJSON(`/findings/${encodeURIComponent(f.findingId)}/history`)));
      histories.forEach((h, i) => {
        const f = list[i];
        if (h.status !== "fulfilled") { findingsError = String(h.reason && h.reason.message); return; }
        for (const ev of h.value.events || []) events.push({ ...ev, cause: f.cause, subject: f.subject, findingStatus: f.status });
      });
    } else findingsError = String(findings.reason && findings.reason.message);
    if (seq !== state.detailSeq || state.selected !== entry.id) return;
    renderTimeline(events, findingsError);
    renderSnat(snat.status === "fulfilled" ? snat.value : null, snat.status === "rejected" ? String(snat.reason && snat.reason.message) : null, wantsSnat);
    document.documentElement.dataset.detailLoads = String((parseInt(document.documentElement.dataset.detailLoads || "0", 10)) + 1);
  }

  function renderTimeline(events, errorText) {
    const section = $("detail-timeline");
    if (!section) return;
    section.textContent = "";
    section.append(el("h3", { text: "Finding timeline" }));
    if (errorText) section.append(el("p", { class: "reason", text: `Could not read the history: ${errorText}` }));
    if (!events.length) { section.append(el("p", { class: "muted", text: "No finding has been opened for this cluster." })); return; }
    events.sort((a, b) => cmp(b.at || "", a.at || "") || cmp(b.event, a.event));
    const ul = el("ul", { class: "timeline", "data-list": "timeline" });
    for (const ev of events) {
      const word = EVENT_WORDS[ev.event] || ev.event;
      ul.append(el("li", { class: "ev-" + word, "data-event": word, "data-cause": ev.cause, "data-finding": ev.findingId },
        el("span", { class: "when", text: `${utc(ev.at)} · ${ago(ev.at)}` }), el("br"),
        el("span", { class: "what", text: `${word} ` }),
        el("span", { text: `${causeLabel(ev.cause)} on ${subjectName(ev.subject)}`, title: ev.subject || "" }),
        ev.summary ? el("div", { class: "muted", text: ev.summary }) : null));
    }
    section.append(ul);
  }

  // ------------------------------------------------------------------ SNAT chart (inline SVG)

  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) node.setAttribute(k, String(v));
    for (const c of children) if (c) node.append(c);
    return node;
  }
  function svgTitle(text) { const t = document.createElementNS(SVG, "title"); t.textContent = text; return t; }
  function shortTime(t, spanMs) {
    const iso = new Date(t).toISOString();
    return spanMs > 36 * 3600e3 ? iso.slice(5, 16).replace("T", " ") : iso.slice(11, 16);
  }

  function renderSnat(data, errorText, wanted) {
    const section = $("detail-snat");
    if (!section) return;
    const samples = (data && data.samples) || [];
    section.textContent = "";
    section.hidden = !wanted && !samples.length && !errorText;
    if (section.hidden) return;
    section.append(el("h3", { text: `SNAT ports (${data ? data.retentionDays : "?"}-day window)` }));
    if (errorText) { section.append(el("p", { class: "reason", text: `Could not read the SNAT samples: ${errorText}` })); return; }
    if (!samples.length) { section.append(el("p", { class: "muted", text: "No SNAT sample stored yet for this cluster (one is kept per SNAT cycle)." })); return; }
    const W = 760, H = 284, L = 62, R = 14, T = 22, PH = 150, GAP = 36, FH = 52;
    const times = samples.map((s) => parseTime(s.at));
    let t0 = Math.min(...times), t1 = Math.max(...times);
    if (t1 - t0 < 10 * 60e3) { t0 -= 5 * 60e3; t1 += 5 * 60e3; }
    const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
    const portMax = Math.max(1, ...samples.map((s) => Math.max(s.allocatedPorts || 0, s.usedPorts || 0))) * 1.1;
    const yP = (v) => T + PH - (v / portMax) * PH;
    const failMax = Math.max(1, ...samples.map((s) => s.failedConnections || 0));
    const fTop = T + PH + GAP;
    const yF = (v) => fTop + FH - (v / failMax) * FH;
    const latest = samples[samples.length - 1];
    const ratioText = latest.usageRatio !== null && latest.usageRatio !== undefined ? ` (${Math.round(latest.usageRatio * 100)}%)` : "";
    const label = `SNAT chart, ${samples.length} samples from ${utc(samples[0].at)} to ${utc(latest.at)}. Latest: `
      + (latest.usedPorts !== null ? `${fmt(latest.usedPorts)} of ${fmt(latest.allocatedPorts)} ports used${ratioText}, ` : "no port usage metric, ")
      + `${fmt(latest.failedConnections)} failed connections; warning threshold ${Math.round((latest.thresholdRatio || 0.75) * 100)}% of allocated ports.`;
    const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label, "data-chart": "snat", "data-samples": samples.length });
    // grid + axes
    for (const frac of [0, 0.5, 1]) {
      const v = portMax / 1.1 * frac;
      chart.append(svg("line", { x1: L, x2: W - R, y1: yP(v), y2: yP(v), stroke: "#30363d", "stroke-width": 1 }));
      const t = svg("text", { x: L - 6, y: yP(v) + 4, "text-anchor": "end", fill: "#9da7b3", "font-size": 11 });
      t.textContent = fmt(Math.round(v));
      chart.append(t);
    }
    const axisLabel = svg("text", { x: L, y: T - 10, fill: "#9da7b3", "font-size": 11 });
    axisLabel.textContent = "SNAT ports: used on the busiest node, allocated, warning threshold";
    chart.append(axisLabel);
    chart.append(svg("line", { x1: L, x2: W - R, y1: fTop + FH, y2: fTop + FH, stroke: "#30363d" }));
    const fl = svg("text", { x: L, y: fTop - 6, fill: "#9da7b3", "font-size": 11 });
    fl.textContent = "failed SNAT connections per check window";
    chart.append(fl);
    const fm = svg("text", { x: L - 6, y: fTop + 8, "text-anchor": "end", fill: "#9da7b3", "font-size": 11 });
    fm.textContent = fmt(failMax);
    chart.append(fm);
    const span = t1 - t0;
    for (const frac of [0, 0.5, 1]) {
      const t = t0 + span * frac;
      const tx = svg("text", { x: x(t), y: H - 4, "text-anchor": frac === 0 ? "start" : frac === 1 ? "end" : "middle", fill: "#9da7b3", "font-size": 11 });
      tx.textContent = shortTime(t, span) + (frac === 1 ? " UTC" : "");
      chart.append(tx);
    }
    const path = (key, fn) => samples.filter((s) => s[key] !== null && s[key] !== undefined)
      .map((s, i) => `${i ? "L" : "M"}${x(parseTime(s.at)).toFixed(1)},${fn(s).toFixed(1)}`).join(" ");
    const alloc = path("allocatedPorts", (s) => yP(s.allocatedPorts));
    const thr = path("allocatedPorts", (s) => yP(s.allocatedPorts * (s.thresholdRatio || 0.75)));
    const used = path("usedPorts", (s) => yP(s.usedPorts));
    if (alloc) chart.append(svg("path", { d: alloc, fill: "none", stroke: "#9da7b3", "stroke-width": 2, "data-series": "allocated" }));
    if (thr) chart.append(svg("path", { d: thr, fill: "none", stroke: "#ffd866", "stroke-width": 2, "stroke-dasharray": "6 4", "data-series": "threshold" }));
    if (used) chart.append(svg("path", { d: used, fill: "none", stroke: "#58a6ff", "stroke-width": 2.5, "data-series": "used" }));
    const barW = Math.max(2, Math.min(14, (W - L - R) / Math.max(samples.length, 1) * 0.6));
    for (const s of samples) {
      const t = parseTime(s.at);
      const tip = `${utc(s.at)}: ${s.usedPorts !== null ? `${fmt(s.usedPorts)} / ${fmt(s.allocatedPorts)} ports used` : "no port metric"}`
        + `${s.backend ? " on " + s.backend : ""}; ${fmt(s.failedConnections)} failed connections in ${s.windowMinutes} min`;
      if (s.usedPorts !== null && s.usedPorts !== undefined) {
        const over = s.allocatedPorts && s.usedPorts >= s.allocatedPorts * (s.thresholdRatio || 0.75);
        chart.append(svg("circle", { cx: x(t), cy: yP(s.usedPorts), r: 3.5, fill: over ? "#ff7b72" : "#58a6ff", class: "pt-used",
          "data-at": s.at, "data-used": s.usedPorts, "data-allocated": s.allocatedPorts ?? "" }, svgTitle(tip)));
      }
      const fh = (s.failedConnections || 0) > 0 ? Math.max(2, fTop + FH - yF(s.failedConnections)) : 0;
      chart.append(svg("rect", { x: x(t) - barW / 2, y: fTop + FH - fh, width: barW, height: fh, fill: "#ff7b72", class: "bar-failed",
        "data-at": s.at, "data-failed": s.failedConnections }, svgTitle(tip)));
    }
    section.append(el("div", { class: "chart" }, chart,
      el("div", { class: "legend" },
        el("span", null, el("span", { class: "sw used" }), document.createTextNode("used ports (busiest node)")),
        el("span", null, el("span", { class: "sw alloc" }), document.createTextNode("allocated ports")),
        el("span", null, el("span", { class: "sw thr" }), document.createTextNode(`warning threshold (${Math.round((latest.thresholdRatio || 0.75) * 100)}%)`)),
        el("span", null, el("span", { class: "sw fail" }), document.createTextNode("failed connections")))));
    section.append(el("p", { class: "muted", "data-snat-latest": "", text: label.replace(/^SNAT chart, /, "") }));
  }

  // ------------------------------------------------------------------ clipboard

  async function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      try { await navigator.clipboard.writeText(text); return true; } catch (e) { /* fall back */ }
    }
    const area = el("textarea", { value: text, readOnly: true });
    area.className = "sr-only";
    document.body.append(area);
    area.select();
    let ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    area.remove();
    return ok;
  }

  // ------------------------------------------------------------------ view state, events, timer

  function saveView() {
    try { sessionStorage.setItem(STORE_KEY, JSON.stringify({ sort: state.sort, filters: state.filters })); } catch (e) { /* private mode */ }
  }
  function restoreView() {
    try {
      const saved = JSON.parse(sessionStorage.getItem(STORE_KEY) || "null");
      if (saved && saved.sort && saved.filters) { state.sort = saved.sort; Object.assign(state.filters, saved.filters); }
    } catch (e) { /* ignore */ }
  }

  function setFilter(key, value) {
    state.filters[key] = value;
    filterRows();
  }

  function wire() {
    $("f-text").addEventListener("input", (e) => setFilter("text", e.target.value.trim()));
    $("f-sub").addEventListener("change", (e) => setFilter("sub", e.target.value));
    $("f-cause").addEventListener("change", (e) => setFilter("cause", e.target.value));
    $("f-status").addEventListener("change", (e) => setFilter("status", e.target.value));
    $("filters").addEventListener("submit", (e) => e.preventDefault());
    $("f-clear").addEventListener("click", () => {
      state.filters = { text: "", sub: "", cause: "", status: "", verdict: "" };
      filterRows();
    });
    $("refresh-now").addEventListener("click", () => load());
    $("grid-head").addEventListener("click", (e) => {
      const button = e.target.closest("button[data-sort-key]");
      if (!button) return;
      const key = button.dataset.sortKey;
      state.sort = state.sort.key === key ? { key, dir: -state.sort.dir } : { key, dir: 1 };
      sortRows();
      saveView();
    });
    $("grid-body").addEventListener("click", (e) => {
      const row = e.target.closest("tr[data-cluster-id]");
      if (!row || e.target.closest("a")) return;
      const entry = state.entries.get(row.dataset.clusterId);
      location.hash = "cluster=" + encodeURI(entry ? entry.report.cluster.id : row.dataset.clusterId);
    });
    document.querySelector(".overview").addEventListener("click", (e) => {
      const t = e.target.closest(".tile[data-filter]");
      if (!t) return;
      const key = t.dataset.filter;
      const value = state.filters[key] === t.dataset.value ? "" : t.dataset.value;
      if (key === "verdict" && value === "") state.filters.status = "";
      setFilter(key, value);
    });
    $("detail-close").addEventListener("click", closeDetail);
    document.addEventListener("keydown", (e) => { if (e.key === "Escape" && state.selected) closeDetail(); });
    window.addEventListener("hashchange", openFromHash);
    $("detail-body").addEventListener("click", async (e) => {
      const button = e.target.closest("button.copy");
      if (!button) return;
      const code = button.parentElement.querySelector("code");
      const ok = await copyText(code ? code.textContent : "");
      button.textContent = ok ? "Copied" : "Copy failed";
      button.classList.toggle("done", ok);
      setTimeout(() => { button.textContent = "Copy"; button.classList.remove("done"); }, 2000);
    });
  }

  function schedule() {
    setTimeout(async () => { await load(); schedule(); }, REFRESH_S * 1000);
  }

  function start() {
    restoreView();
    wire();
    state.selected = selectedFromHash();
    load().then(schedule);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
