"""One report per cluster out of the latest report of each check family.

Each family's worker stores a report holding only its own causes. The merged report takes every cause
from the family that checked it last, stamps it with that check's `checkedAt`, and computes the verdict
over the merged causes, so a healthy cluster reads `healthy` once every family has looked at it, instead
of `inconclusive` because some other family "did not check" a cause. A cause no family has checked yet
is `unknown` with that reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from shared.causes import REGISTRY
from shared.model import Status
from shared.monitor.families import family_of
from shared.report import report_verdict

# Older rows (before per-family reports) carried other families' causes as unknown with this reason.
LEGACY_HIDDEN_REASON = "not checked by this check family"


def merge_reports(reports: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """`reports`: one cluster's family reports (each may carry `family`); returns one report, DESIGN order."""
    rows = sorted(reports, key=lambda r: str(r.get("checkedAt") or ""))
    if not rows:
        raise ValueError("merge_reports needs at least one report")
    newest = rows[-1]
    latest: dict[str, tuple[str, dict[str, Any]]] = {}
    families: dict[str, str] = {}
    for row in rows:  # oldest first: a later check of the same cause replaces an earlier one
        at = str(row.get("checkedAt") or "")
        if row.get("family"):
            families[str(row["family"])] = at
        for cause in row.get("causes", []):
            if cause.get("reason") == LEGACY_HIDDEN_REASON:
                continue
            owner = family_of(str(cause.get("id")))
            if row.get("family") and owner is not None and owner != row["family"] and \
                    cause.get("status") == Status.UNKNOWN:
                continue  # another family's cause in a legacy full report: never let it hide a real check
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
        # Same rule as a single report: a degraded symptom is a problem even when no cause explains it.
        "verdict": str(report_verdict((Status(c["status"]) for c in causes), symptom)),
        "causes": causes,
        "symptom": symptom,
    }
    if with_probes.get("coverage") is not None:
        merged["coverage"] = with_probes["coverage"]
    if families:
        merged["families"] = dict(sorted(families.items()))
    return merged


def merge_by_cluster(reports: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Family reports of many clusters -> one merged report per cluster, ordered by cluster id."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for report in reports:
        groups.setdefault(str(report["cluster"]["id"]).lower(), []).append(report)
    return [merge_reports(groups[key]) for key in sorted(groups)]
