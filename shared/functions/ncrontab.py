"""Six-field NCRONTAB (`{second} {minute} {hour} {day} {month} {day-of-week}`), as Azure Functions reads it.

Used to validate the schedule settings at start-up and by the local dev host to fire the timers; the
Functions host does its own parsing in Azure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

_FIELDS = (("second", 0, 59), ("minute", 0, 59), ("hour", 0, 23), ("day", 1, 31), ("month", 1, 12),
           ("day-of-week", 0, 6))
_MONTHS = {m: i for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                                       "nov", "dec"], start=1)}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}


class ScheduleError(ValueError):
    pass


@dataclass(frozen=True)
class Schedule:
    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]

    def next_after(self, moment: datetime) -> datetime:
        """The first firing time strictly after `moment` (second precision)."""
        candidate = moment.replace(microsecond=0) + timedelta(seconds=1)
        for _ in range(366 * 24 * 60 * 60):
            if candidate.month not in self.months or candidate.day not in self.days or \
                    (candidate.isoweekday() % 7) not in self.weekdays:
                candidate = (candidate + timedelta(days=1)).replace(hour=0, minute=0, second=0)
                continue
            if candidate.hour not in self.hours:
                candidate = (candidate + timedelta(hours=1)).replace(minute=0, second=0)
                continue
            if candidate.minute not in self.minutes:
                candidate = (candidate + timedelta(minutes=1)).replace(second=0)
                continue
            if candidate.second not in self.seconds:
                candidate += timedelta(seconds=1)
                continue
            return candidate
        raise ScheduleError(f"schedule {self.expression!r} never fires")


def parse(expression: str) -> Schedule:
    parts = expression.split()
    if len(parts) != 6:
        raise ScheduleError(f"NCRONTAB needs six fields (second minute hour day month day-of-week): {expression!r}")
    sets = [_field(p, name, low, high) for p, (name, low, high) in zip(parts, _FIELDS, strict=True)]
    return Schedule(expression, *sets)


def _field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    names = _MONTHS if name == "month" else _DAYS if name == "day-of-week" else {}
    values: set[int] = set()
    for part in text.split(","):
        item, step = part, 1
        if "/" in part:
            item, step_text = part.split("/", 1)
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(f"bad step in {name} field: {text!r}")
            step = int(step_text)
        if item == "*":
            start, end = low, high
        elif "-" in item:
            a, b = item.split("-", 1)
            start, end = _value(a, names, name), _value(b, names, name)
        else:
            start = _value(item, names, name)
            end = high if step > 1 else start
        if not (low <= start <= high and low <= end <= high and start <= end):
            raise ScheduleError(f"{name} field out of range {low}-{high}: {text!r}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def _value(text: str, names: dict[str, int], field: str) -> int:
    lowered = text.lower()
    if lowered in names:
        return names[lowered]
    if not text.isdigit():
        raise ScheduleError(f"not a number in {field} field: {text!r}")
    return int(text)
