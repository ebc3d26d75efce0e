"""NCRONTAB schedules, as the Functions timer trigger reads them: six fields, seconds first.

`second minute hour day month day-of-week`, each `*`, a value, `a-b`, a step (`*/n`, `a-b/n`,
`a/n` meaning `a-max/n`), or a comma list of those; months and days of the week may be named
(`Jan`, `January`, `mon`). Day-of-month and day-of-week must *both* match, which is how
NCrontab (the library the host uses) differs from Unix cron, where either may.

https://learn.microsoft.com/azure/azure-functions/functions-bindings-timer#ncrontab-expressions
https://github.com/atifaziz/NCrontab

Pure: no clock, no I/O; the caller passes the instant to search from.
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta

_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september",
           "october", "november", "december")
_DAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
# The longest each month can be, so schedules like "30 Feb" are rejected up front.
_MAX_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
# The Gregorian calendar repeats every 400 years, so a date that matches at all matches within one cycle.
_SEARCH_YEARS = 401


class ScheduleError(ValueError):
    """The expression is not a valid NCRONTAB schedule, or no instant can ever match it."""


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: Sequence[str] = ()


_FIELDS = (
    _Field("second", 0, 59),
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day", 1, 31),
    _Field("month", 1, 12, _MONTHS),
    _Field("day-of-week", 0, 6, _DAYS),
)


def _value(text: str, spec: _Field, expr: str) -> int:
    if text.isdigit():
        number = int(text)
    else:
        lowered = text.lower()
        # NCrontab takes any prefix of a name; three letters keeps "Ma" (March or May?) out.
        matches = [i for i, name in enumerate(spec.names) if len(lowered) >= 3 and name.startswith(lowered)]
        if len(matches) != 1:
            raise ScheduleError(f"{expr!r}: {text!r} is not a valid {spec.name}")
        number = matches[0] + spec.low
    if not spec.low <= number <= spec.high:
        raise ScheduleError(f"{expr!r}: {spec.name} {number} is outside {spec.low}-{spec.high}")
    return number


def _parse_field(text: str, spec: _Field, expr: str) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise ScheduleError(f"{expr!r}: empty item in the {spec.name} field")
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(f"{expr!r}: step {step_text!r} in the {spec.name} field is not a positive number")
            step = int(step_text)
        if base == "*":
            first, last = spec.low, spec.high
        elif "-" in base:
            a, _, b = base.partition("-")
            first, last = _value(a, spec, expr), _value(b, spec, expr)
            if first > last:
                raise ScheduleError(f"{expr!r}: range {base!r} in the {spec.name} field runs backwards")
        else:
            first = _value(base, spec, expr)
            last = spec.high if slash else first
        values.update(range(first, last + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class CronSchedule:
    """A parsed schedule; `next_after()` gives the next matching instant."""

    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday, as in NCrontab

    @classmethod
    def parse(cls, expression: str) -> CronSchedule:
        parts = expression.split()
        if len(parts) != 6:
            raise ScheduleError(
                f"{expression!r} has {len(parts)} fields; an NCRONTAB schedule has six: "
                "second minute hour day month day-of-week"
            )
        sets = [_parse_field(part, spec, expression) for part, spec in zip(parts, _FIELDS, strict=True)]
        schedule = cls(expression, *sets)
        if not any(min(schedule.days) <= _MAX_DAYS[m - 1] for m in schedule.months):
            raise ScheduleError(f"{expression!r} names a day that none of its months has")
        return schedule

    def next_after(self, after: datetime) -> datetime:
        """The first matching instant strictly after `after`, in its time zone (tzinfo is kept)."""
        start = after.replace(microsecond=0) + timedelta(seconds=1)
        for year in range(start.year, start.year + _SEARCH_YEARS):
            for month in sorted(self.months):
                if (year, month) < (start.year, start.month):
                    continue
                month_days = calendar.monthrange(year, month)[1]
                for day in sorted(self.days):
                    if day > month_days:
                        break
                    if (year, month, day) < (start.year, start.month, start.day):
                        continue
                    # datetime.weekday() counts from Monday; NCrontab from Sunday.
                    if (calendar.weekday(year, month, day) + 1) % 7 not in self.weekdays:
                        continue
                    same_day = (year, month, day) == (start.year, start.month, start.day)
                    at = self._first_time(start.time() if same_day else time(0, 0, 0))
                    if at is not None:
                        return start.replace(year=year, month=month, day=day, hour=at.hour,
                                             minute=at.minute, second=at.second)
        raise ScheduleError(f"{self.expression!r} never matches")

    def _first_time(self, earliest: time) -> time | None:
        for hour in sorted(h for h in self.hours if h >= earliest.hour):
            min_minute = earliest.minute if hour == earliest.hour else 0
            for minute in sorted(m for m in self.minutes if m >= min_minute):
                min_second = earliest.second if (hour, minute) == (earliest.hour, earliest.minute) else 0
                for second in sorted(s for s in self.seconds if s >= min_second):
                    return time(hour, minute, second)
        return None


__all__ = ["CronSchedule", "ScheduleError"]
