"""The merged cluster report (pure): each cause from its latest family check, verdict over the merge."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from shared.model import CAUSE_ORDER
from shared.monitor.families import SPECS, family_of
from shared.monitor.merge import LEGACY_HIDDEN_REASON, merge_by_cluster, merge_reports
from shared.monitor.pipeline import PROBE_BUDGET_S

CLUSTER = {"id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/a",
           "name": "a", "tunnel": "unknown"}


def cause(cause_id: str, status: str, reason: str | None = None) -> dict[str, Any]:
    return {"id": cause_id, "status": status, "title": cause_id, "summary": "", "evidence": [], "remediation": [],
            "reason": reason}


def family_report(family: str, at: str, status: str = "clear", **extra: Any) -> dict[str, Any]:
    return {"family": family, "cluster": CLUSTER, "checkedAt": at, "verdict": "x",
            "causes": [cause(str(c), status, "r" if status == "unknown" else None) for c in SPECS[family].causes],
            "symptom": {"status": "unknown"}, **extra}


def test_every_family_clear_is_healthy_with_each_cause_stamped() -> None:
    merged = merge_reports([family_report("snat", "2026-12-03T10:00:00Z"), family_report("nsg", "2026-12-03T10:05:00Z"),
                            family_report("probe", "2026-12-03T09:30:00Z")])
    assert [c["id"] for c in merged["causes"]] == [str(c) for c in CAUSE_ORDER]
    assert merged["verdict"] == "healthy"
    stamps = {c["id"]: c["checkedAt"] for c in merged["causes"]}
    assert stamps["snat-port-exhaustion"] == "2026-12-03T10:00:00Z"
    assert stamps["nsg-blocks-10250"] == "2026-12-03T10:05:00Z"
    assert stamps["ufw-blocks-10250"] == "2026-12-03T09:30:00Z"
    assert merged["checkedAt"] == "2026-12-03T10:05:00Z"
    assert merged["families"] == {"nsg": "2026-12-03T10:05:00Z", "probe": "2026-12-03T09:30:00Z",
                                  "snat": "2026-12-03T10:00:00Z"}


def test_a_family_not_yet_reported_leaves_its_causes_unknown_never_clear() -> None:
    merged = merge_reports([family_report("snat", "2026-12-03T10:00:00Z")])
    ufw = next(c for c in merged["causes"] if c["id"] == "ufw-blocks-10250")
    assert ufw["status"] == "unknown"
    assert "probe check family has not reported" in ufw["reason"]
    assert ufw["checkedAt"] is None
    assert merged["verdict"] == "inconclusive"


def test_latest_check_of_a_cause_wins_and_a_detection_anywhere_is_a_problem() -> None:
    older = family_report("nsg", "2026-12-03T09:00:00Z", status="detected")
    newer = family_report("nsg", "2026-12-03T10:00:00Z")
    merged = merge_reports([newer, older, family_report("snat", "2026-12-03T09:59:00Z", status="detected"),
                            family_report("probe", "2026-12-03T09:00:00Z")])
    statuses = {c["id"]: c["status"] for c in merged["causes"]}
    assert statuses["nsg-blocks-10250"] == "clear"
    assert merged["verdict"] == "problem"


def test_legacy_full_reports_never_hide_a_real_check() -> None:
    legacy = {"family": "snat", "cluster": CLUSTER, "checkedAt": "2026-12-03T11:00:00Z",
              "causes": [cause("nsg-blocks-10250", "unknown", LEGACY_HIDDEN_REASON),
                         cause("ufw-blocks-10250", "unknown", "something else"),
                         cause("snat-port-exhaustion", "clear")]}
    merged = merge_reports([family_report("nsg", "2026-12-03T10:00:00Z"),
                            family_report("probe", "2026-12-03T10:00:00Z"), legacy])
    statuses = {c["id"]: c["status"] for c in merged["causes"]}
    assert statuses["nsg-blocks-10250"] == "clear"
    assert statuses["ufw-blocks-10250"] == "clear"  # another family's unknown in a snat row does not count
    assert merged["verdict"] == "healthy"


def test_tunnel_and_symptom_come_from_the_probe_family() -> None:
    probe = family_report("probe", "2026-12-03T09:00:00Z", symptom={"status": "ok", "tunnelNodes": ["n1"]},
                          coverage={"probes": "all", "pools": []})
    probe["cluster"] = {**CLUSTER, "tunnel": "konnectivity"}
    merged = merge_reports([probe, family_report("snat", "2026-12-03T10:00:00Z")])
    assert merged["cluster"]["tunnel"] == "konnectivity"
    assert merged["symptom"]["status"] == "ok"
    assert merged["coverage"]["probes"] == "all"


def test_merge_by_cluster_groups_ids_case_insensitively() -> None:
    upper = family_report("snat", "2026-12-03T10:00:00Z")
    upper["cluster"] = {**CLUSTER, "id": CLUSTER["id"].upper()}
    assert len(merge_by_cluster([upper, family_report("nsg", "2026-12-03T10:01:00Z")])) == 1


def test_every_documented_cause_has_exactly_one_family() -> None:
    owners = [f for c in CAUSE_ORDER if (f := family_of(str(c)))]
    assert len(owners) == len(CAUSE_ORDER)
    assert sum(len(s.causes) for s in SPECS.values()) == len(CAUSE_ORDER)


def test_probe_budget_ends_well_inside_the_function_timeout() -> None:
    host = json.loads((Path(__file__).resolve().parents[1] / "host.json").read_text())
    matched = re.fullmatch(r"(\d+):(\d+):(\d+)", host["functionTimeout"])
    assert matched is not None
    hours, minutes, seconds = (int(p) for p in matched.groups())
    timeout = hours * 3600 + minutes * 60 + seconds
    assert 0.6 * timeout >= PROBE_BUDGET_S  # room to evaluate, reconcile and notify after the last wait
