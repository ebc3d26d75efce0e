"""NCRONTAB parsing and next occurrence (devhost's timer trigger)."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from devhost.ncrontab import CronSchedule, ScheduleError


def nxt(expr: str, after: datetime) -> datetime:
    return CronSchedule.parse(expr).next_after(after)


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def test_every_second_is_strictly_after_and_drops_microseconds() -> None:
    assert nxt("* * * * * *", at(2027, 1, 1, 0, 0, 0)) == at(2027, 1, 1, 0, 0, 1)
    assert nxt("* * * * * *", datetime(2027, 1, 1, 0, 0, 0, 999_999, tzinfo=UTC)) == at(2027, 1, 1, 0, 0, 1)


def test_seconds_field_comes_first() -> None:
    # "at second 30 of every minute", not "minute 30"
    assert nxt("30 * * * * *", at(2027, 1, 1, 10, 0, 0)) == at(2027, 1, 1, 10, 0, 30)
    assert nxt("30 * * * * *", at(2027, 1, 1, 10, 0, 30)) == at(2027, 1, 1, 10, 1, 30)


def test_steps() -> None:
    sched = CronSchedule.parse("*/15 * * * * *")
    assert sched.seconds == frozenset({0, 15, 30, 45})
    assert sched.next_after(at(2027, 1, 1, 0, 0, 46)) == at(2027, 1, 1, 0, 1, 0)
    assert nxt("0 */5 * * * *", at(2027, 1, 1, 0, 7, 0)) == at(2027, 1, 1, 0, 10, 0)


def test_ranges_range_steps_start_steps_and_lists() -> None:
    sched = CronSchedule.parse("0 10-20/5 1,3,22-23 * * *")
    assert sched.minutes == frozenset({10, 15, 20})
    assert sched.hours == frozenset({1, 3, 22, 23})
    assert CronSchedule.parse("5/20 * * * * *").seconds == frozenset({5, 25, 45})
    assert nxt("0 10-20/5 1,3,22-23 * * *", at(2027, 1, 1, 3, 20, 0)) == at(2027, 1, 1, 22, 10, 0)


def test_daily_at_fixed_time_rolls_to_next_day_and_year() -> None:
    assert nxt("0 30 3 * * *", at(2027, 1, 1, 3, 30, 0)) == at(2027, 1, 2, 3, 30, 0)
    assert nxt("0 30 3 * * *", at(2027, 12, 31, 4, 0, 0)) == at(2028, 1, 1, 3, 30, 0)


def test_month_and_day_names_case_insensitive() -> None:
    sched = CronSchedule.parse("0 0 9 * jan-Mar MON-fri")
    assert sched.months == frozenset({1, 2, 3})
    assert sched.weekdays == frozenset({1, 2, 3, 4, 5})
    assert CronSchedule.parse("0 0 0 * December Sunday").weekdays == frozenset({0})
    # 2027-01-02 is a Saturday: the next weekday 09:00 is Monday the 4th.
    assert nxt("0 0 9 * jan-Mar MON-fri", at(2027, 1, 2, 0, 0, 0)) == at(2027, 1, 4, 9, 0, 0)
    # After March, wait for next January.
    assert nxt("0 0 9 * jan-Mar MON-fri", at(2027, 3, 31, 10, 0, 0)) == at(2028, 1, 3, 9, 0, 0)


def test_day_of_month_and_day_of_week_must_both_match() -> None:
    # Friday the 13th; NCrontab ANDs the two fields (Unix cron would OR them).
    assert nxt("0 0 0 13 * 5", at(2027, 1, 1, 0, 0, 0)) == at(2027, 8, 13, 0, 0, 0)


def test_month_end_and_leap_day() -> None:
    assert nxt("0 0 0 31 * *", at(2027, 4, 1, 0, 0, 0)) == at(2027, 5, 31, 0, 0, 0)
    assert nxt("0 0 12 29 2 *", at(2027, 3, 1, 0, 0, 0)) == at(2028, 2, 29, 12, 0, 0)
    assert nxt("0 0 12 29 2 *", at(2096, 3, 1, 0, 0, 0)) == at(2104, 2, 29, 12, 0, 0)  # 2100 is not leap


def test_keeps_time_zone_of_the_input() -> None:
    plus2 = timezone(timedelta(hours=2))
    result = nxt("0 0 8 * * *", datetime(2027, 1, 1, 9, 0, 0, tzinfo=plus2))
    assert result == datetime(2027, 1, 2, 8, 0, 0, tzinfo=plus2)
    assert result.tzinfo is plus2


@pytest.mark.parametrize(
    "expr",
    [
        "0 0 0 30 2 *",        # February never has 30 days
        "0 0 0 31 4,6,9,11 *",  # nor do these months have 31
    ],
)
def test_impossible_schedules_are_rejected(expr: str) -> None:
    with pytest.raises(ScheduleError, match="none of its months"):
        CronSchedule.parse(expr)


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("0 30 3 * *", "six"),              # five fields: classic cron, not NCRONTAB
        ("0 0 30 3 * * *", "six"),
        ("60 * * * * *", "outside 0-59"),
        ("* * 24 * * *", "outside 0-23"),
        ("* * * 0 * *", "outside 1-31"),
        ("* * * * 13 *", "outside 1-12"),
        ("* * * * * 7", "outside 0-6"),
        ("*/0 * * * * *", "step"),
        ("*/x * * * * *", "step"),
        ("10-5 * * * * *", "backwards"),
        ("1,,2 * * * * *", "empty"),
        ("* * * * Ju *", "not a valid month"),   # ambiguous (June, July), and too short
        ("* * * * * Funday", "not a valid day-of-week"),
        ("a * * * * *", "not a valid second"),
    ],
)
def test_invalid_expressions_name_the_problem(expr: str, fragment: str) -> None:
    with pytest.raises(ScheduleError, match=fragment):
        CronSchedule.parse(expr)
