"""Compact SNAT samples: one row per cluster per SNAT check, so the fleet page can chart the trend.

The SNAT family already fetches the metric series for its verdict; keeping one small summary of each
check (peak used/allocated ports, failed connections, the warning threshold) costs one table write per
cluster per cycle and lets an on-call engineer see whether usage is creeping up before it fails.

PK = cluster key (one cluster's history is one partition), RK = check time as a fixed-width UTC string
(string order is time order). Rows older than `SNAT_SAMPLE_RETENTION_DAYS` (default 7) are pruned from
the cluster's partition when a new sample is written, so the table never grows past the window.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.data.tables import UpdateMode

from shared.netrules.snat import WARNING_RATIO
from shared.snapshot import ClusterSnapshot, SnatMetrics
from shared.store.connection import Store
from shared.store.findings import cluster_key
from shared.store.keys import odata_literal

log = logging.getLogger(__name__)

RETENTION_SETTING = "SNAT_SAMPLE_RETENTION_DAYS"
DEFAULT_RETENTION_DAYS = 7
MAX_RETENTION_DAYS = 90


@dataclass(frozen=True)
class SnatSample:
    """One SNAT check of one cluster, reduced to what a chart needs."""

    at: str  # check time, YYYY-MM-DDTHH:MM:SSZ
    source_id: str
    source_kind: str  # loadBalancer | natGateway
    window_minutes: int
    failed_connections: float
    successful_connections: float
    used_ports: float | None  # at the busiest backend (None: the metric had no port data, e.g. NAT gateway)
    allocated_ports: float | None  # allocated to that same backend
    backend: str | None
    threshold_ratio: float

    def to_json(self) -> dict[str, Any]:
        ratio = (self.used_ports / self.allocated_ports
                 if self.used_ports is not None and self.allocated_ports else None)
        return {
            "at": self.at, "sourceId": self.source_id, "sourceKind": self.source_kind,
            "windowMinutes": self.window_minutes, "failedConnections": self.failed_connections,
            "successfulConnections": self.successful_connections, "usedPorts": self.used_ports,
            "allocatedPorts": self.allocated_ports, "usageRatio": ratio, "backend": self.backend,
            "thresholdRatio": self.threshold_ratio,
            "thresholdPorts": (self.allocated_ports * self.threshold_ratio
                               if self.allocated_ports is not None else None),
        }


def retention_days(env: Mapping[str, str] | None = None) -> int:
    """The retention setting, clamped to 1..90 days; a malformed value falls back to the default (logged)."""
    raw = (os.environ if env is None else env).get(RETENTION_SETTING, "").strip()
    if not raw:
        return DEFAULT_RETENTION_DAYS
    try:
        days = int(raw)
    except ValueError:
        log.warning("%s=%r is not a whole number of days; using %d", RETENTION_SETTING, raw, DEFAULT_RETENTION_DAYS)
        return DEFAULT_RETENTION_DAYS
    return min(max(days, 1), MAX_RETENTION_DAYS)


def stamp(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("sample times must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def busiest_backend(metrics: SnatMetrics) -> tuple[str | None, float | None, float | None]:
    """(backend, used, allocated) at the highest used/allocated ratio over the window.

    Without any allocated series the highest used value is kept with allocated None: a chart can still
    show usage, and never invents a denominator.
    """
    best: tuple[str | None, float | None, float | None] = (None, None, None)
    best_ratio = -1.0
    for backend, used_series in metrics.used_ports.items():
        allocated_series = metrics.allocated_ports.get(backend, ())
        for i, used in enumerate(used_series):
            allocated = allocated_series[i] if i < len(allocated_series) else None
            ratio = used / allocated if allocated else -0.5
            if ratio > best_ratio or (ratio == best_ratio and (best[1] is None or used > best[1])):
                best, best_ratio = (backend, used, allocated or None), ratio
    return best


def sample_from(snapshot: ClusterSnapshot, checked_at: datetime) -> SnatSample | None:
    """The sample for this check, or None when the SNAT family had no metrics (nothing to chart)."""
    metrics = snapshot.snat
    if not isinstance(metrics, SnatMetrics):
        return None
    backend, used, allocated = busiest_backend(metrics)
    return SnatSample(
        at=stamp(checked_at), source_id=metrics.source_id, source_kind=metrics.source_kind,
        window_minutes=metrics.window_minutes, failed_connections=float(metrics.failed_connections),
        successful_connections=float(metrics.successful_connections), used_ports=used,
        allocated_ports=allocated, backend=backend, threshold_ratio=WARNING_RATIO,
    )


def record_snat_sample(store: Store, snapshot: ClusterSnapshot, checked_at: datetime,
                       env: Mapping[str, str] | None = None, *,
                       families: Sequence[str] = ("snat",)) -> SnatSample | None:
    """What a cluster check calls after evaluating: stores a sample when the SNAT family ran; never raises.

    The sample is a convenience for the fleet page; it must never fail the check or its findings.
    Other families' runs (NSG, probes) store nothing, so there is one sample per SNAT cycle.
    """
    if "snat" not in families:
        return None
    try:
        return write_snat_sample(store, snapshot, checked_at, env)
    except Exception as exc:
        log.warning("SNAT sample not stored: %s", type(exc).__name__, extra={"cluster_id": snapshot.id})
        return None


def write_snat_sample(store: Store, snapshot: ClusterSnapshot, checked_at: datetime,
                      env: Mapping[str, str] | None = None) -> SnatSample | None:
    """Upsert this check's sample (a redelivered message rewrites the same row) and prune expired ones."""
    table = store.snat_samples
    sample = sample_from(snapshot, checked_at)
    if table is None or sample is None:
        return None
    pk = cluster_key(snapshot.id)
    entity: dict[str, Any] = {
        "PartitionKey": pk, "RowKey": sample.at, "cluster_id": snapshot.id, "source_id": sample.source_id,
        "source_kind": sample.source_kind, "window_minutes": sample.window_minutes,
        "failed_connections": sample.failed_connections,
        "successful_connections": sample.successful_connections, "threshold_ratio": sample.threshold_ratio,
    }
    if sample.used_ports is not None:
        entity["used_ports"] = float(sample.used_ports)
    if sample.allocated_ports is not None:
        entity["allocated_ports"] = float(sample.allocated_ports)
    if sample.backend is not None:
        entity["backend"] = sample.backend
    table.upsert_entity(entity, mode=UpdateMode.REPLACE)
    cutoff = stamp(checked_at - timedelta(days=retention_days(env)))
    expired = table.query_entities(
        f"PartitionKey eq {odata_literal(pk)} and RowKey lt {odata_literal(cutoff)}",
        select=["PartitionKey", "RowKey"],
    )
    for row in expired:
        table.delete_entity(row["PartitionKey"], row["RowKey"])
    return sample


def list_snat_samples(store: Store, cluster_id: str, *, since: datetime | None = None) -> list[SnatSample]:
    """One cluster's samples, oldest first, optionally from `since` on."""
    table = store.snat_samples
    if table is None:
        return []
    pk = cluster_key(cluster_id)
    flt = f"PartitionKey eq {odata_literal(pk)}"
    if since is not None:
        flt += f" and RowKey ge {odata_literal(stamp(since))}"
    rows = sorted(table.query_entities(flt), key=lambda r: str(r["RowKey"]))
    return [_sample(row) for row in rows]


def _optional(row: Mapping[str, Any], name: str) -> float | None:
    value = row.get(name)
    return float(value) if value is not None else None


def _sample(row: Mapping[str, Any]) -> SnatSample:
    return SnatSample(
        at=str(row["RowKey"]), source_id=str(row.get("source_id", "")),
        source_kind=str(row.get("source_kind", "")), window_minutes=int(row.get("window_minutes", 0)),
        failed_connections=float(row.get("failed_connections", 0.0)),
        successful_connections=float(row.get("successful_connections", 0.0)),
        used_ports=_optional(row, "used_ports"), allocated_ports=_optional(row, "allocated_ports"),
        backend=(str(row["backend"]) if row.get("backend") is not None else None),
        threshold_ratio=float(row.get("threshold_ratio", WARNING_RATIO)),
    )
