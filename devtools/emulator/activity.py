"""Activity Log `$filter` handling: only the patterns Azure documents, anything else is a 400.

Azure requires `eventTimestamp ge '...'`, accepts an optional `le`, and at most one of resourceGroupName,
resourceUri, resourceProvider or correlationId; events come back newest first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from devtools.emulator.isotime import parse_instant
from devtools.emulator.scenario import ActivityEventSpec

_CLAUSE = re.compile(r"^\s*(\w+)\s+(ge|le|eq)\s+'([^']*)'\s*$", re.IGNORECASE)
_FIELDS = {"resourcegroupname", "resourceuri", "resourceid", "resourceprovider", "correlationid"}
MAX_RANGE = timedelta(days=90)


class ActivityFilterError(ValueError):
    pass


@dataclass(frozen=True)
class ActivityFilter:
    start: datetime
    end: datetime
    field: str | None = None
    value: str | None = None


def parse_filter(text: str | None, now: datetime) -> ActivityFilter:
    if not text:
        raise ActivityFilterError("The $filter query parameter is required and must contain 'eventTimestamp ge'.")
    start = end = None
    field = value = None
    for clause in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
        match = _CLAUSE.match(clause)
        if not match:
            raise ActivityFilterError(f"The $filter clause '{clause}' is not supported.")
        name, op, operand = match.group(1).lower(), match.group(2).lower(), match.group(3)
        if name == "eventtimestamp" and op in {"ge", "le"}:
            try:
                moment = parse_instant(operand)
            except ValueError as err:
                raise ActivityFilterError(f"Invalid eventTimestamp '{operand}'.") from err
            if op == "ge":
                start = moment
            else:
                end = moment
        elif name in _FIELDS and op == "eq" and field is None:
            field, value = name, operand
        else:
            raise ActivityFilterError(f"The $filter clause '{clause}' is not supported.")
    if start is None:
        raise ActivityFilterError("The $filter must contain 'eventTimestamp ge'.")
    end = end or now
    if end - start > MAX_RANGE:
        raise ActivityFilterError("The time range in $filter cannot be larger than 90 days.")
    return ActivityFilter(start=start, end=end, field=field, value=value)


def select_events(events: Iterable[ActivityEventSpec], query: ActivityFilter) -> list[ActivityEventSpec]:
    chosen = [e for e in events if query.start <= parse_instant(e.timestamp) <= query.end and _matches(e, query)]
    return sorted(chosen, key=lambda e: parse_instant(e.timestamp), reverse=True)


def _matches(event: ActivityEventSpec, query: ActivityFilter) -> bool:
    if query.field is None or query.value is None:
        return True
    wanted = query.value.lower()
    parts = event.resource_id.lower().split("/")
    if query.field == "resourceprovider":
        return _after(parts, "providers") == wanted
    if query.field == "resourcegroupname":
        return _after(parts, "resourcegroups") == wanted
    if query.field in {"resourceuri", "resourceid"}:
        return event.resource_id.lower().rstrip("/") == wanted.rstrip("/")
    return False  # correlationId: our events have generated ids nobody can know in advance


def _after(parts: Sequence[str], marker: str) -> str | None:
    return parts[parts.index(marker) + 1] if marker in parts and parts.index(marker) + 1 < len(parts) else None
