"""ISO 8601 instants and durations as Azure Monitor writes them (`PT5M`, `2021-04-20T09:00:00Z`)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$", re.IGNORECASE)


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text.strip())
    if not match or text.strip().upper() in {"P", "PT"}:
        raise ValueError(f"not an ISO 8601 duration: {text!r}")
    days, hours, minutes, seconds = match.groups()
    return timedelta(days=int(days or 0), hours=int(hours or 0), minutes=int(minutes or 0),
                     seconds=float(seconds or 0))


def format_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    out = "P" + (f"{days}D" if days else "")
    clock = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "") + (f"{secs}S" if secs else "")
    return out + ("T" + clock if clock else ("" if days else "T0S"))


def parse_instant(text: str) -> datetime:
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def format_instant(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timespan(text: str | None, now: datetime) -> tuple[datetime, datetime]:
    """`start/end`, `start/duration` or a bare duration ending now; Azure's default is the last hour."""
    if not text:
        return now - timedelta(hours=1), now
    if "/" not in text:
        return now - parse_duration(text), now
    left, right = text.split("/", 1)
    start = parse_instant(left)
    end = start + parse_duration(right) if right.upper().startswith("P") else parse_instant(right)
    if end <= start:
        raise ValueError(f"timespan end is not after its start: {text!r}")
    return start, end
