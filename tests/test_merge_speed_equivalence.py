"""/api/clusters answers the same bytes after the speed-up of its read and merge as before it.

`reference_list_cluster_status` and `reference_merge_by_cluster` are the code as it was before (kept here
verbatim, never imported from shared/), and bench/bench_dashboard.py times them as its same-run baseline.
The fleet is generated with a fixed seed and is varied on purpose: clusters checked by only some families,
legacy full reports (other families' causes hidden or unknown), unknown causes with reasons, symptom
nodes (degraded and ok), not-applicable causes, ids differing only in case, equal or missing check times,
causes carrying their own `checkedAt`, ids outside the registry, coverage, non-ASCII text, and reports
longer than one table property (read back whole).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError

from shared.causes import REGISTRY
from shared.functions.api import Api
from shared.model import CAUSE_ORDER, Status
from shared.monitor.families import SPECS, family_of
from shared.monitor.merge import merge_by_cluster, merge_reports
from shared.report import report_verdict
from shared.store.connection import Store
from shared.store.findings import cluster_key
from shared.store.keys import join_property
from shared.store.status import list_cluster_status, save_cluster_status
from tests.azurite import isolated_store

LEGACY_HIDDEN_REASON = "not checked by this check family"


# ---------------------------------------------------------------- the code before the speed-up (baseline)


def reference_list_cluster_status(store: Store, cluster_id: str | None = None) -> list[dict[str, Any]]:
    if cluster_id:
        rows = store.cluster_status.query_entities("PartitionKey eq @pk", parameters={"pk": cluster_key(cluster_id)})
    else:
        rows = store.cluster_status.list_entities()
    out = [{"family": row["RowKey"], **json.loads(join_property(row, "report"))} for row in rows]
    return sorted(out, key=lambda r: (r["cluster"]["id"].lower(), r["family"]))


def reference_merge_reports(reports: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    rows = sorted(reports, key=lambda r: str(r.get("checkedAt") or ""))
    if not rows:
        raise ValueError("merge_reports needs at least one report")
    newest = rows[-1]
    latest: dict[str, tuple[str, dict[str, Any]]] = {}
    families: dict[str, str] = {}
    for row in rows:
        at = str(row.get("checkedAt") or "")
        if row.get("family"):
            families[str(row["family"])] = at
        for cause in row.get("causes", []):
            if cause.get("reason") == LEGACY_HIDDEN_REASON:
                continue
            owner = family_of(str(cause.get("id")))
            if row.get("family") and owner is not None and owner != row["family"] and \
                    cause.get("status") == Status.UNKNOWN:
                continue
            latest[str(cause["id"])] = (at, dict(cause))
    causes: list[dict[str, Any]] = []
    for cause in REGISTRY:
        if str(cause.id) in latest:
            at, body = latest[str(cause.id)]
            causes.append({**body, "checkedAt": body.get("checkedAt") or at})
            continue
        owner = family_of(str(cause.id))
        reason = (f"not checked yet: the {owner} check family has not reported on this cluster" if owner
                  else "no monitoring check family checks this cause yet (run diagnose for it)")
        causes.append({"id": str(cause.id), "status": str(Status.UNKNOWN), "title": cause.title,
                       "summary": f"Could not be checked: {reason}", "evidence": [], "remediation": [],
                       "reason": reason, "checkedAt": None})
    probe_rows = [r for r in rows if r.get("family") == "probe"] or [r for r in rows if r.get("symptom")]
    with_probes = probe_rows[-1] if probe_rows else newest
    cluster = dict(newest.get("cluster") or {})
    tunnel = (with_probes.get("cluster") or {}).get("tunnel")
    if tunnel and tunnel != "unknown":
        cluster["tunnel"] = tunnel
    symptom = with_probes.get("symptom") or newest.get("symptom") or {}
    merged: dict[str, Any] = {
        "cluster": cluster,
        "checkedAt": newest.get("checkedAt"),
        "verdict": str(report_verdict((Status(c["status"]) for c in causes), symptom)),
        "causes": causes,
        "symptom": symptom,
    }
    if with_probes.get("coverage") is not None:
        merged["coverage"] = with_probes["coverage"]
    if families:
        merged["families"] = dict(sorted(families.items()))
    return merged


def reference_merge_by_cluster(reports: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for report in reports:
        groups.setdefault(str(report["cluster"]["id"]).lower(), []).append(report)
    return [reference_merge_reports(groups[key]) for key in sorted(groups)]


def reference_clusters_body(store: Store, cluster_id: str | None = None) -> bytes:
    """What GET /api/clusters answered before the speed-up (api.py's own serialization)."""
    items = reference_merge_by_cluster(reference_list_cluster_status(store, cluster_id))
    return json.dumps({"count": len(items), "clusters": items}, indent=2).encode()


# ---------------------------------------------------------------- a varied fleet

STATUSES = ("detected", "clear", "not_applicable", "unknown")
REASONS = ("ARM answered 403 Forbidden for the NSG", "metrics throttled (429 Too Many Requests)",
           "node probes are off (NODE_PROBES=off)", "run-command failed on aks-nodepool1-0: Conflict",
           "availability sets are not supported", "Kubernetes API unreadable: credential expired")


def _cause(rng: random.Random, cause_id: str, status: str, big: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"id": cause_id, "status": status, "title": f"title of {cause_id}",
                            "summary": rng.choice(["", f"{cause_id} is {status}", "ünïcode – “quoted” ✓"]),
                            "evidence": [], "remediation": [], "reason": None}
    if status == "unknown":
        body["reason"] = rng.choice(REASONS)
    if status == "detected":
        count = 400 if big else rng.randint(1, 4)
        body["evidence"] = [{"resource": f"/subscriptions/s/resourceGroups/rg/providers/x/{i}",
                             "detail": f"rule {i} denies TCP 10250 from 10.224.0.{i % 250}"} for i in range(count)]
        body["remediation"] = [f"az network nsg rule delete --name deny-{i}" for i in range(rng.randint(0, 3))]
    if rng.random() < 0.2:
        body["checkedAt"] = f"2026-12-03T09:{rng.randint(0, 59):02d}:00Z"  # a cause's own stamp wins
    if rng.random() < 0.1:
        body["unchecked"] = [{"node": "aks-np-1", "reason": "output truncated at 4,096 bytes"}]
    return body


def _symptom(rng: random.Random) -> dict[str, Any]:
    kind = rng.choice(["unknown", "ok", "degraded", "degraded-no-nodes", "empty"])
    if kind == "empty":
        return {}
    if kind == "unknown":
        return {"status": "unknown", "tunnelNodes": [], "unreachableNodes": []}
    nodes = [{"node": f"aks-np-{i}", "result": rng.choice(["ok", "timeout", "refused", "no-agent"]),
              "detail": "kubectl logs through the tunnel"} for i in range(rng.randint(1, 3))]
    if kind == "degraded-no-nodes":
        return {"status": "degraded", "tunnelNodes": [], "unreachableNodes": ["10.224.0.9"], "nodes": []}
    return {"status": "ok" if kind == "ok" else "degraded", "tunnelNodes": ["aks-np-0"],
            "unreachableNodes": [] if kind == "ok" else ["aks-np-1"], "nodes": nodes}


def varied_fleet(seed: int, clusters: int = 60) -> list[dict[str, Any]]:
    """Family rows (each with `family`, as list_cluster_status returns them) for `clusters` clusters."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    families = list(SPECS)
    for n in range(clusters):
        sub = f"{rng.randint(0, 3):08x}-0000-4000-8000-{n % 5:012x}"
        name = f"aks-{n:03d}"
        cid = (f"/subscriptions/{sub}/resourceGroups/rg-{n % 7}/providers/Microsoft.ContainerService/"
               f"managedClusters/{name}")
        cluster = {"id": cid, "name": name, "subscriptionId": sub, "resourceGroup": f"rg-{n % 7}",
                   "location": "westeurope", "private": rng.random() < 0.2, "outboundType": "loadBalancer",
                   "tunnel": rng.choice(["unknown", "konnectivity", "tunnel-front"])}
        checked = [f for f in families if rng.random() < 0.7] or [rng.choice(families)]
        base_minute = rng.randint(0, 50)
        for family in checked:
            at = rng.choice([f"2026-12-03T10:{base_minute:02d}:00Z", f"2026-12-03T10:{rng.randint(0, 59):02d}:00Z",
                             None, ""]) if rng.random() < 0.3 else f"2026-12-03T10:{rng.randint(0, 59):02d}:00Z"
            ident = cid.upper() if rng.random() < 0.1 else cid  # ARM ids are case-insensitive
            causes = [_cause(rng, str(c), rng.choice(STATUSES), big=rng.random() < 0.03)
                      for c in SPECS[family].causes]
            row: dict[str, Any] = {"family": family, "cluster": {**cluster, "id": ident}, "checkedAt": at,
                                   "verdict": "x", "causes": causes, "symptom": _symptom(rng)}
            if rng.random() < 0.5:
                row["coverage"] = {"probes": "sample", "pools": [{"pool": "np", "probed": 1, "nodes": 3}]}
            if rng.random() < 0.15:  # a legacy full report: every other cause unknown, hidden or not
                legacy = rng.choice([LEGACY_HIDDEN_REASON, "something else"])
                row["causes"] = [*causes, *(_cause(rng, str(c), "unknown") | {"reason": legacy}
                                            for c in CAUSE_ORDER if family_of(str(c)) != family)]
            if rng.random() < 0.05:
                row["causes"].append(_cause(rng, "not-a-registered-cause", "detected"))
            if rng.random() < 0.05:
                row["causes"] = [c for c in row["causes"] if c["status"] != "unknown"]
            rows.append(row)
        if rng.random() < 0.05:  # a row without a family (as the pipeline merges fresh reports)
            rows.append({"cluster": cluster, "checkedAt": "2026-12-03T11:00:00Z", "verdict": "x",
                         "causes": [_cause(rng, str(CAUSE_ORDER[0]), "clear")], "symptom": _symptom(rng)})
    return rows


def dumps(value: Any) -> str:
    """Byte-for-byte as the API answers (key order included)."""
    return json.dumps(value, indent=2)


# ---------------------------------------------------------------- pure: merge


@pytest.mark.parametrize("seed", range(25))
def test_merge_by_cluster_answers_what_it_did_before(seed: int) -> None:
    rows = varied_fleet(seed)
    assert dumps(merge_by_cluster(rows)) == dumps(reference_merge_by_cluster(rows))


def test_the_varied_fleet_covers_what_it_claims() -> None:
    rows = [r for seed in range(25) for r in varied_fleet(seed)]
    merged = reference_merge_by_cluster(rows)
    statuses = {c["status"] for m in merged for c in m["causes"]}
    assert statuses == set(STATUSES)
    assert any(not m.get("families") or len(m["families"]) < len(SPECS) for m in merged), "some families only"
    assert any((c.get("reason") or "").startswith("not checked yet") for m in merged for c in m["causes"])
    assert any(m["symptom"].get("nodes") for m in merged), "symptom nodes"
    assert {m["verdict"] for m in merged} == {"problem", "inconclusive", "healthy"}
    assert any(c.get("reason") == LEGACY_HIDDEN_REASON for r in rows for c in r["causes"])


def test_merge_reports_alone_and_its_errors_are_unchanged() -> None:
    rows = varied_fleet(99, clusters=5)
    for row in rows:
        assert dumps(merge_reports([row])) == dumps(reference_merge_reports([row]))
    with pytest.raises(ValueError, match="at least one report"):
        merge_reports([])
    bad = {**rows[0], "causes": [{"id": str(CAUSE_ORDER[0]), "status": "bogus"}]}
    with pytest.raises(ValueError):
        reference_merge_reports([bad])
    with pytest.raises(ValueError):
        merge_reports([bad])


# ---------------------------------------------------------------- on Azurite: the whole /api/clusters answer


class _Monitor:
    def __init__(self, store: Store) -> None:
        self.store = store


@pytest.fixture
def fleet_store(azurite_connection: str) -> Iterator[Store]:
    with isolated_store(azurite_connection) as store:
        for row in varied_fleet(7, clusters=40):
            report = {k: v for k, v in row.items() if k != "family"}
            if not report.get("checkedAt"):
                report["checkedAt"] = ""  # stored rows always have the column
            save_cluster_status(store, report, [row.get("family") or "all"])
        yield store


def test_api_clusters_answers_the_same_bytes_as_before(fleet_store: Store) -> None:
    api = Api(lambda: _Monitor(fleet_store))
    answer = api.route("GET", "/api/clusters", {}, b"")
    assert answer.status == 200
    assert json.loads(answer.json_bytes()) == json.loads(reference_clusters_body(fleet_store))
    multi = [r for r in fleet_store.cluster_status.list_entities() if int(r["report_parts"]) > 1]
    assert multi, "some reports span more than one table property"
    one = json.loads(answer.json_bytes())["clusters"][3]["cluster"]["id"]
    single = api.route("GET", "/api/clusters", {"cluster": one.upper()}, b"")
    assert json.loads(single.json_bytes()) == json.loads(reference_clusters_body(fleet_store, one.upper()))
    assert json.loads(single.json_bytes())["count"] == 1


def test_a_long_report_deleted_while_listing_is_left_out(fleet_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    def gone(*args: Any, **kwargs: Any) -> Any:
        raise ResourceNotFoundError("deleted between the list and the read")

    before = list_cluster_status(fleet_store)
    monkeypatch.setattr(fleet_store.cluster_status, "get_entity", gone)
    after = list_cluster_status(fleet_store)
    multi = {(r["PartitionKey"], r["RowKey"]) for r in fleet_store.cluster_status.list_entities()
             if int(r["report_parts"]) > 1}
    assert len(after) == len(before) - len(multi)
