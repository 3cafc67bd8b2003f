"""One report per cluster out of the latest report of each check family.

Each family's worker stores a report holding only its own causes. The merged report takes every cause
from the family that checked it last, stamps it with that check's `checkedAt`, and computes the verdict
over the merged causes, so a healthy cluster reads `healthy` once every family has looked at it, instead
of `inconclusive` because some other family "did not check" a cause. A cause no family has checked yet
is `unknown` with that reason.

The fleet page merges every cluster on each load (1,000 clusters, two or three rows each), so what does
not depend on the cluster (which family owns a cause, the registry's ids, titles and "not checked yet"
texts) is worked out once per call in `_Table`, not once per cause per row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from shared.causes import REGISTRY
from shared.model import Status
from shared.monitor.families import SPECS
from shared.report import report_verdict

# Older rows (before per-family reports) carried other families' causes as unknown with this reason.
LEGACY_HIDDEN_REASON = "not checked by this check family"
_UNKNOWN = str(Status.UNKNOWN)
_STATUS_BY_VALUE: Mapping[str, Status] = {str(s): s for s in Status}


class _Table:
    """Per call: the owner family of every cause id (as `families.family_of` answers it) and, per registry
    cause in contract order, its id, title and the reason it is `unknown` when no family has reported it."""

    def __init__(self) -> None:
        owners: dict[str, str] = {}
        for name, spec in SPECS.items():
            for owned in spec.causes:
                owners.setdefault(str(owned), name)  # the first family listing a cause owns it
        self.owners = owners
        self.registry: list[tuple[str, str, str]] = []
        for cause in REGISTRY:
            cause_id = str(cause.id)
            owner = owners.get(cause_id)
            reason = (f"not checked yet: the {owner} check family has not reported on this cluster" if owner
                      else "no monitoring check family checks this cause yet (run diagnose for it)")
            self.registry.append((cause_id, cause.title, reason))


def _checked_at(report: Mapping[str, Any]) -> str:
    return str(report.get("checkedAt") or "")


def _first_two(item: tuple[str, int, Mapping[str, Any]]) -> tuple[str, int]:
    return item[0], item[1]  # the check time, then the input order (a stable sort by time alone)


def _status(value: Any) -> Status:
    found = _STATUS_BY_VALUE.get(value) if isinstance(value, str) else None
    return found if found is not None else Status(value)  # anything else raises as Status() always did


def merge_reports(reports: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """`reports`: one cluster's family reports (each may carry `family`); returns one report, DESIGN order."""
    return _merge(reports, _Table())


def _merge(reports: Iterable[Mapping[str, Any]], table: _Table) -> dict[str, Any]:
    stamped = sorted(((_checked_at(r), n, r) for n, r in enumerate(reports)), key=_first_two)
    if not stamped:
        raise ValueError("merge_reports needs at least one report")
    rows = [r for _, _, r in stamped]
    newest = rows[-1]
    owners = table.owners
    latest: dict[str, tuple[str, Mapping[str, Any]]] = {}
    families: dict[str, str] = {}
    for at, _, row in stamped:  # oldest first: a later check of the same cause replaces an earlier one
        family = row.get("family")
        if family:
            families[str(family)] = at
        for cause in row.get("causes", []):
            if cause.get("reason") == LEGACY_HIDDEN_REASON:
                continue
            if family and cause.get("status") == _UNKNOWN:
                owner = owners.get(str(cause.get("id")))
                if owner is not None and owner != family:
                    continue  # another family's cause in a legacy full report: never let it hide a real check
            latest[str(cause["id"])] = (at, cause)
    causes: list[dict[str, Any]] = []
    for cause_id, title, reason in table.registry:
        found = latest.get(cause_id)
        if found is not None:
            at, body = found
            causes.append({**body, "checkedAt": body.get("checkedAt") or at})
            continue
        causes.append({"id": cause_id, "status": _UNKNOWN, "title": title,
                       "summary": f"Could not be checked: {reason}", "evidence": [], "remediation": [],
                       "reason": reason, "checkedAt": None})
    with_probes = newest
    for row in reversed(rows):
        if row.get("family") == "probe":
            with_probes = row
            break
    else:
        for row in reversed(rows):
            if row.get("symptom"):
                with_probes = row
                break
    cluster = dict(newest.get("cluster") or {})
    tunnel = (with_probes.get("cluster") or {}).get("tunnel")
    if tunnel and tunnel != "unknown":
        cluster["tunnel"] = tunnel
    symptom = with_probes.get("symptom") or newest.get("symptom") or {}
    merged: dict[str, Any] = {
        "cluster": cluster,
        "checkedAt": newest.get("checkedAt"),
        # Same rule as a single report: a degraded symptom is a problem even when no cause explains it.
        "verdict": str(report_verdict([_status(c["status"]) for c in causes], symptom)),
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
    table = _Table()
    return [_merge(groups[key], table) for key in sorted(groups)]
