"""Azure Monitor `metrics list` for the load balancer and NAT gateway SNAT metrics.

Reproduces the behaviours a monitor can trip over: dimension names come back in lower case (as in the
official GetMetric example), any dimension named in `$filter` splits the series, `top` defaults to 10
series once a filter is given, unknown metric names or dimensions are a 400, and values are aligned to
interval boundaries over the requested timespan.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from devtools.emulator.isotime import format_duration, format_instant, parse_duration, parse_timespan
from devtools.emulator.scenario import MetricSeries


class MetricsQueryError(ValueError):
    """A query Azure would refuse with 400 BadRequest; the message mimics Azure's."""


@dataclass(frozen=True)
class MetricDefinition:
    name: str
    display: str
    description: str
    primary: str
    dimensions: tuple[str, ...]


LB_METRICS = (
    MetricDefinition("SnatConnectionCount", "SNAT Connection Count",
                     "Total number of new SNAT connections created within time period", "total",
                     ("FrontendIPAddress", "BackendIPAddress", "ConnectionState")),
    MetricDefinition("AllocatedSnatPorts", "Allocated SNAT Ports",
                     "Total number of SNAT ports allocated within time period", "average",
                     ("FrontendIPAddress", "BackendIPAddress", "ProtocolType", "IsAwsDefaultSnat")),
    MetricDefinition("UsedSnatPorts", "Used SNAT Ports", "Total number of SNAT ports used within time period",
                     "average", ("FrontendIPAddress", "BackendIPAddress", "ProtocolType", "IsAwsDefaultSnat")),
)
NAT_METRICS = (
    MetricDefinition("SNATConnectionCount", "SNAT Connection Count",
                     "Total concurrent active connections", "total", ("Protocol", "ConnectionState")),
    MetricDefinition("PacketDropCount", "Dropped Packets", "Count of dropped packets", "total", ()),
    MetricDefinition("TotalConnectionCount", "Total SNAT Connection Count",
                     "Total number of active SNAT connections", "total", ("Protocol",)),
)
CATALOGUE = {"loadBalancers": LB_METRICS, "natGateways": NAT_METRICS}
_AGGREGATIONS = ("average", "minimum", "maximum", "total", "count")
_CLAUSE = re.compile(r"^\s*\(?\s*([A-Za-z0-9_.]+)\s+eq\s+'([^']*)'\s*\)?\s*$", re.IGNORECASE)
MAX_POINTS = 1440


@dataclass(frozen=True)
class MetricsQuery:
    names: tuple[str, ...]
    start: datetime
    end: datetime
    interval: timedelta
    aggregations: tuple[str, ...]
    filters: Mapping[str, tuple[str, ...]]  # dimension -> wanted values ("*" = all)
    top: int
    order_desc: bool
    order_key: str | None


def parse_query(params: Mapping[str, str], catalogue: Sequence[MetricDefinition], now: datetime) -> MetricsQuery:
    by_name = {d.name.lower(): d for d in catalogue}
    raw_names = params.get("metricnames") or catalogue[0].name
    names = tuple(n.strip() for n in raw_names.split(",") if n.strip())
    for name in names:
        if name.lower() not in by_name:
            raise MetricsQueryError(
                f"Failed to find metric configuration for provider: Microsoft.Network, metric: {name}, "
                f"Valid metrics: {', '.join(d.name for d in catalogue)}")
    try:
        start, end = parse_timespan(params.get("timespan"), now)
        interval_text = params.get("interval") or "PT1M"
        interval = end - start if interval_text.upper() == "FULL" else parse_duration(interval_text)
    except ValueError as err:
        raise MetricsQueryError(f"Invalid timespan or interval: {err}") from err
    if interval <= timedelta(0):
        raise MetricsQueryError("interval must be positive")
    aggregations = tuple(a.strip().lower() for a in (params.get("aggregation") or "").split(",") if a.strip())
    for aggregation in aggregations:
        if aggregation not in _AGGREGATIONS:
            raise MetricsQueryError(f"Invalid aggregation: {aggregation}")
    filters = _parse_filter(params.get("$filter"))
    order_key, desc = None, True
    if params.get("orderby"):
        parts = params["orderby"].split()
        order_key = parts[0].lower()
        desc = len(parts) < 2 or parts[1].lower() != "asc"
    return MetricsQuery(names=names, start=start, end=end, interval=interval, aggregations=aggregations,
                        filters=filters, top=int(params.get("top") or 10), order_desc=desc, order_key=order_key)


def _parse_filter(text: str | None) -> dict[str, tuple[str, ...]]:
    """`A eq '*' and (B eq 'x' or B eq 'y')` -> {A: ("*",), B: ("x", "y")}; the subset Azure documents."""
    filters: dict[str, tuple[str, ...]] = {}
    if not text:
        return filters
    for clause in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
        alternatives = re.split(r"\s+or\s+", clause.strip().strip("()"), flags=re.IGNORECASE)
        for alternative in alternatives:
            match = _CLAUSE.match(alternative)
            if not match:
                raise MetricsQueryError(f"Invalid $filter clause: {alternative!r}")
            dimension, value = match.groups()
            filters[dimension] = (*filters.get(dimension, ()), value)
    return filters


def run_query(resource_id: str, resource_type: str, *, region: str, series: Sequence[MetricSeries],
              params: Mapping[str, str], now: datetime) -> dict[str, Any]:
    catalogue = CATALOGUE[resource_type]
    query = parse_query(params, catalogue, now)
    by_name = {d.name.lower(): d for d in catalogue}
    stamps = _timestamps(query)
    values = [_metric_json(resource_id, by_name[name.lower()], query, stamps, series) for name in query.names]
    return {
        "cost": len(stamps) * max(1, len(values)),
        "timespan": f"{format_instant(query.start)}/{format_instant(query.end)}",
        "interval": format_duration(query.interval), "value": values,
        "namespace": f"Microsoft.Network/{resource_type}", "resourceregion": region,
    }


def _timestamps(query: MetricsQuery) -> list[datetime]:
    step = query.interval.total_seconds()
    first = datetime.fromtimestamp((query.start.timestamp() // step) * step, tz=query.start.tzinfo)
    count = max(1, min(MAX_POINTS, int((query.end - first).total_seconds() // step)))
    return [first + i * query.interval for i in range(count)]


def _metric_json(resource_id: str, definition: MetricDefinition, query: MetricsQuery, stamps: Sequence[datetime],
                 series: Sequence[MetricSeries]) -> dict[str, Any]:
    known = {d.lower(): d for d in definition.dimensions}
    for dimension in query.filters:
        if dimension.lower() not in known:
            raise MetricsQueryError(
                f"Metric: {definition.name} does not support requested dimension combination: {dimension}, "
                f"supported ones are: {', '.join(definition.dimensions) or 'none'}")
    aggregations = query.aggregations or (definition.primary,)
    split = [known[d.lower()] for d in query.filters]
    groups: dict[tuple[str, ...], list[MetricSeries]] = {}
    for item in series:
        if item.name.lower() != definition.name.lower():
            continue
        dims = {k.lower(): v for k, v in item.dimensions.items()}
        key = []
        for dimension in split:
            value = dims.get(dimension.lower())
            wanted = _lookup(query.filters, dimension)
            if value is None or ("*" not in wanted and value.lower() not in {w.lower() for w in wanted}):
                break
            key.append(value)
        else:
            groups.setdefault(tuple(key), []).append(item)
    timeseries = [_timeseries(split, key, members, stamps, aggregations) for key, members in groups.items()]
    if split:
        rank = query.order_key or aggregations[0]
        timeseries.sort(key=lambda ts: sum(p.get(rank, 0.0) for p in ts["data"]), reverse=query.order_desc)
        timeseries = timeseries[: query.top]
    elif not timeseries:
        timeseries = [{"metadatavalues": [], "data": [{"timeStamp": format_instant(s)} for s in stamps]}]
    return {
        "id": f"{resource_id}/providers/Microsoft.Insights/metrics/{definition.name}",
        "type": "Microsoft.Insights/metrics",
        "name": {"value": definition.name, "localizedValue": definition.display},
        "displayDescription": definition.description, "unit": "Count", "timeseries": timeseries,
        "errorCode": "Success",
    }


def _lookup(filters: Mapping[str, tuple[str, ...]], dimension: str) -> tuple[str, ...]:
    for key, values in filters.items():
        if key.lower() == dimension.lower():
            return values
    return ("*",)


def _timeseries(split: Sequence[str], key: Sequence[str], members: Sequence[MetricSeries],
                stamps: Sequence[datetime], aggregations: Sequence[str]) -> dict[str, Any]:
    data = []
    for index, stamp in enumerate(stamps):
        points = [_value_at(m.values, index, len(stamps)) for m in members]
        point: dict[str, Any] = {"timeStamp": format_instant(stamp)}
        for aggregation in aggregations:
            point[aggregation] = _aggregate(aggregation, points)
        data.append(point)
    metadata = [{"name": {"value": d.lower(), "localizedValue": d.lower()}, "value": v}
                for d, v in zip(split, key, strict=True)]
    return {"metadatavalues": metadata, "data": data}


def _value_at(values: Sequence[float], index: int, count: int) -> float:
    """Replays a series so that its last value lands on the newest interval."""
    return values[(len(values) - count + index) % len(values)]


def _aggregate(kind: str, points: Sequence[float]) -> float:
    if kind == "total":
        return float(sum(points))
    if kind == "count":
        return float(len(points))
    if kind == "maximum":
        return float(max(points))
    if kind == "minimum":
        return float(min(points))
    return float(sum(points) / len(points))
