"""Latest report per cluster and check family, and on-demand diagnoses: what the API shows besides findings.

A cluster whose check keeps failing has no new findings to show, so its `unknown` status (with the reason)
lives here; the findings table only holds detected problems.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import UpdateMode

from shared.store.connection import Store
from shared.store.findings import cluster_key
from shared.store.keys import join_property, split_property


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def save_cluster_status(store: Store, report: dict[str, Any], families: Sequence[str]) -> None:
    """Upsert (idempotent): a redelivered message rewrites the same row with the same or newer report."""
    text = json.dumps(report, separators=(",", ":"))
    for family in families:
        entity: dict[str, Any] = {
            "PartitionKey": cluster_key(report["cluster"]["id"]),
            "RowKey": family,
            "cluster_id": report["cluster"]["id"],
            "verdict": report["verdict"],
            "checked_at": report["checkedAt"],
            **split_property("report", text),
        }
        store.cluster_status.upsert_entity(entity, mode=UpdateMode.REPLACE)


def load_cluster_status(store: Store, cluster_id: str) -> dict[str, dict[str, Any]]:
    """{family: report} for one cluster."""
    rows = store.cluster_status.query_entities("PartitionKey eq @pk", parameters={"pk": cluster_key(cluster_id)})
    return {row["RowKey"]: json.loads(join_property(row, "report")) for row in rows}


# What the merged view reads of a row: the family (RowKey) and the report. Selecting these instead of whole
# rows halves what the Tables SDK deserializes per row on the fleet page's read of every cluster. A report
# longer than one property (rare: `split_property` puts 15,000 characters in each) is read whole by key.
_REPORT_COLUMNS = ("PartitionKey", "RowKey", "report_parts", "report_0")


def list_cluster_status(store: Store, cluster_id: str | None = None) -> list[dict[str, Any]]:
    """Latest report per cluster and family, newest check first; what the API shows for `unknown` clusters."""
    if cluster_id:
        rows = store.cluster_status.query_entities("PartitionKey eq @pk", parameters={"pk": cluster_key(cluster_id)},
                                                   select=list(_REPORT_COLUMNS))
    else:
        rows = store.cluster_status.list_entities(select=list(_REPORT_COLUMNS))
    out = []
    for row in rows:
        text = _report_text(store, row)
        if text is not None:
            out.append({"family": row["RowKey"], **json.loads(text)})
    return sorted(out, key=lambda r: (r["cluster"]["id"].lower(), r["family"]))


def _report_text(store: Store, row: dict[str, Any]) -> str | None:
    """The stored report of a listed row; None when a multi-part row was deleted before its parts were read."""
    if int(row.get("report_parts", 0)) <= 1:
        return join_property(row, "report")
    try:  # one read of the whole row: all its parts come from the same write
        whole = store.cluster_status.get_entity(row["PartitionKey"], row["RowKey"])
    except ResourceNotFoundError:
        return None
    return join_property(whole, "report")


def save_diagnosis(store: Store, request_id: str, cluster_id: str, status: str, report: dict[str, Any] | None) -> None:
    entity: dict[str, Any] = {"PartitionKey": request_id, "RowKey": "", "cluster_id": cluster_id, "status": status,
                              "updated_at": _now()}
    if report is not None:
        entity.update(split_property("report", json.dumps(report, separators=(",", ":"))))
    store.diagnoses.upsert_entity(entity, mode=UpdateMode.REPLACE)


def load_diagnosis(store: Store, request_id: str) -> dict[str, Any] | None:
    try:
        row = store.diagnoses.get_entity(request_id, "")
    except ResourceNotFoundError:
        return None
    out: dict[str, Any] = {"requestId": request_id, "clusterId": row["cluster_id"], "status": row["status"],
                           "updatedAt": row["updated_at"]}
    if int(row.get("report_parts", 0)):
        out["report"] = json.loads(join_property(row, "report"))
    return out
