"""When a CCS job should run: its ``Schedule`` as a typed recurrence, and the occurrences around a moment.

Pure functions, no I/O. Anything the schedule does not say clearly is "no schedule known" with a reason
(``NoSchedule``), never an exception; the caller logs the reason once per job. Occurrences keep the
wall-clock time and UTC offset of ``StartDate`` (a fixed offset: no daylight saving). docs/schedules.md
lists every value here that the CCS docs leave out.
"""

from __future__ import annotations

import calendar
import enum
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo

from ccs_exporter.models import JobSchedule

#: The nominal month of ``ccs_job_schedule_period_seconds``: 365.2425 days / 12.
MONTH_SECONDS = 2_629_746
DAY_SECONDS = 86_400
WEEK_SECONDS = 7 * DAY_SECONDS

# Upper bounds of the "every N" fields: a century. Larger values are data errors, not schedules.
MAX_EVERY_DAYS = 36_500
MAX_EVERY_WEEKS = 5_200
MAX_EVERY_MONTHS = 1_200
MAX_RUN_TIME_LIMIT_SECONDS = 366 * DAY_SECONDS

RECURRENCE_NONE, RECURRENCE_DAILY, RECURRENCE_WEEKLY, RECURRENCE_MONTHLY = 0, 1, 2, 3
ORDINAL_LAST = 5
DOTNET_WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_ORDINALS = ("first", "second", "third", "fourth", "last")

# Fields that say when a job runs; an unreadable one makes the whole schedule unknown.
_RECURRENCE_FIELDS = frozenset(
    {
        "StartDate",
        "RunOnce",
        "RunPeriodically",
        "RecurrenceType",
        "RunEveryNDays",
        "RepeatDays",
        "WeeklyRecurEvery",
        "WeeklyDay",
        "MonthlyRecurEvery",
        "MonthlyDay",
        "MonthlyIsByOrdinalDay",
        "MonthlyOrdinalDay",
        "MonthlyDayOfTheWeek",
    }
)

# .NET TimeSpan's invariant form [d.]hh:mm[:ss[.fffffff]]; hours up to 999 as our job specs accept them.
_TIME_SPAN_RE = re.compile(
    r"^(?:(?P<days>\d{1,6})\.)?(?P<hours>\d{1,3}):(?P<minutes>[0-5]\d)"
    r"(?::(?P<seconds>[0-5]\d)(?:\.(?P<fraction>\d{1,7}))?)?$"
)


class ScheduleKind(enum.Enum):
    """How a job recurs."""

    ONCE = "once"
    EVERY_N_DAYS = "every_n_days"
    WEEKLY = "weekly"
    MONTHLY_BY_DAY = "monthly_by_day"
    MONTHLY_BY_ORDINAL_WEEKDAY = "monthly_by_ordinal_weekday"


@dataclass(frozen=True)
class Schedule:
    """A schedule we can compute occurrences for.

    ``start`` is ``StartDate`` in its own offset, ``first`` the first occurrence (on or after ``start``),
    ``every`` the N of "every N days/weeks/months" (1 for once). ``weekday`` is a .NET ``DayOfWeek``
    (0 Sunday ... 6 Saturday) for weekly and ordinal schedules, ``month_day`` 1-31 for monthly by day,
    ``ordinal`` 1-4 (first-fourth) or 5 (last) for monthly by ordinal weekday.
    """

    kind: ScheduleKind
    start: datetime
    first: datetime
    every: int = 1
    weekday: int | None = None
    month_day: int | None = None
    ordinal: int | None = None

    def describe(self) -> str:
        """A short human description for logs, e.g. ``every 2 weeks on Monday at 04:10 +05:30``."""
        at = f"at {self.start:%H:%M} {_format_offset(self.start)}"
        if self.kind is ScheduleKind.ONCE:
            return f"once at {self.start.isoformat()}"
        if self.kind is ScheduleKind.EVERY_N_DAYS:
            return f"every {self.every} day(s) {at}"
        if self.kind is ScheduleKind.WEEKLY:
            return f"every {self.every} week(s) on {DOTNET_WEEKDAYS[self.weekday or 0]} {at}"
        if self.kind is ScheduleKind.MONTHLY_BY_DAY:
            return f"every {self.every} month(s) on day {self.month_day} {at}"
        ordinal = _ORDINALS[(self.ordinal or 1) - 1]
        return f"every {self.every} month(s) on the {ordinal} {DOTNET_WEEKDAYS[self.weekday or 0]} {at}"


@dataclass(frozen=True)
class NoSchedule:
    """No schedule known, and why. ``invalid`` is true when CCS sent data we could not make sense of
    (worth a warning), false when the job simply has no recurring or one-off schedule."""

    reason: str
    invalid: bool = False


@dataclass(frozen=True)
class NoRunTimeLimit:
    """No run-time limit known, and why; ``invalid`` as for ``NoSchedule``."""

    reason: str
    invalid: bool = False


# --- From the CCS payload -----------------------------------------------------------------------------


def derive_schedule(model: JobSchedule | None) -> Schedule | NoSchedule:
    """The schedule ``JobConfigDetails.Schedule`` describes, or ``NoSchedule`` with the reason."""
    if model is None:
        return NoSchedule("the job has no Schedule")
    if model.not_an_object:
        return NoSchedule(f"Schedule is {model.not_an_object}, not an object", invalid=True)
    unreadable = sorted(set(model.invalid_fields) & _RECURRENCE_FIELDS)
    if unreadable:
        return NoSchedule(f"unreadable schedule field(s): {', '.join(unreadable)}", invalid=True)
    start = model.start_date_local
    if start is None:
        return NoSchedule("StartDate is missing or 0001-01-01 (never)", invalid=model.RunPeriodically)
    if model.RunOnce and model.RunPeriodically:
        return NoSchedule("RunOnce and RunPeriodically are both true", invalid=True)
    if model.RunOnce:
        return Schedule(ScheduleKind.ONCE, start=start, first=start)
    if not model.RunPeriodically:
        return NoSchedule("neither RunOnce nor RunPeriodically is true")
    try:
        return _recurrence(model, start)
    except OverflowError:
        return NoSchedule("the first occurrence is past year 9999", invalid=True)


def _recurrence(model: JobSchedule, start: datetime) -> Schedule | NoSchedule:
    kind = model.RecurrenceType
    if kind in (RECURRENCE_NONE, RECURRENCE_DAILY):
        if not model.RunEveryNDays:
            # RecurrenceType 1 without RunEveryNDays may be an undocumented variant (every weekday?).
            return NoSchedule(
                f"RecurrenceType {kind} without RunEveryNDays: no documented recurrence",
                invalid=kind == RECURRENCE_DAILY,
            )
        problem = _out_of_range("RepeatDays", model.RepeatDays, 1, MAX_EVERY_DAYS)
        if problem:
            return NoSchedule(problem, invalid=True)
        return Schedule(ScheduleKind.EVERY_N_DAYS, start=start, first=start, every=model.RepeatDays)
    if kind == RECURRENCE_WEEKLY:
        return _weekly(model, start)
    if kind == RECURRENCE_MONTHLY:
        return _monthly(model, start)
    return NoSchedule(f"unknown RecurrenceType {_short(kind)}", invalid=True)


def _weekly(model: JobSchedule, start: datetime) -> Schedule | NoSchedule:
    problem = _out_of_range("WeeklyRecurEvery", model.WeeklyRecurEvery, 1, MAX_EVERY_WEEKS)
    if "WeeklyDay" not in model.model_fields_set:
        problem = "WeeklyDay is missing"
    elif not problem:
        problem = _out_of_range(
            "WeeklyDay", model.WeeklyDay, 0, 6, " (a .NET DayOfWeek; a day mask is not supported)"
        )
    if problem:
        return NoSchedule(problem, invalid=True)
    ahead = (model.WeeklyDay - _dotnet_weekday(start)) % 7
    first = start + timedelta(days=ahead)
    return Schedule(
        ScheduleKind.WEEKLY, start=start, first=first, every=model.WeeklyRecurEvery, weekday=model.WeeklyDay
    )


def _monthly(model: JobSchedule, start: datetime) -> Schedule | NoSchedule:
    problem = _out_of_range("MonthlyRecurEvery", model.MonthlyRecurEvery, 1, MAX_EVERY_MONTHS)
    if problem:
        return NoSchedule(problem, invalid=True)
    if model.MonthlyIsByOrdinalDay:
        problem = _out_of_range(
            "MonthlyOrdinalDay", model.MonthlyOrdinalDay, 1, ORDINAL_LAST, " (1-4, 5 last)"
        )
        if not problem and "MonthlyDayOfTheWeek" not in model.model_fields_set:
            problem = "MonthlyDayOfTheWeek is missing"
        problem = problem or _out_of_range("MonthlyDayOfTheWeek", model.MonthlyDayOfTheWeek, 0, 6)
        if problem:
            return NoSchedule(problem, invalid=True)
        candidate = Schedule(
            ScheduleKind.MONTHLY_BY_ORDINAL_WEEKDAY,
            start=start,
            first=start,
            every=model.MonthlyRecurEvery,
            weekday=model.MonthlyDayOfTheWeek,
            ordinal=model.MonthlyOrdinalDay,
        )
    else:
        problem = _out_of_range("MonthlyDay", model.MonthlyDay, 1, 31)
        if problem:
            return NoSchedule(problem, invalid=True)
        candidate = Schedule(
            ScheduleKind.MONTHLY_BY_DAY,
            start=start,
            first=start,
            every=model.MonthlyRecurEvery,
            month_day=model.MonthlyDay,
        )
    first = _monthly_occurrence(candidate, 0)
    if first is None or first < start:
        first = _monthly_occurrence(candidate, 1)
    if first is None:
        raise OverflowError("no monthly occurrence before year 10000")
    return Schedule(
        candidate.kind,
        start=start,
        first=first,
        every=candidate.every,
        weekday=candidate.weekday,
        month_day=candidate.month_day,
        ordinal=candidate.ordinal,
    )


def derive_run_time_limit(model: JobSchedule | None) -> float | NoRunTimeLimit:
    """Seconds a run may take (``EndJobRunTimeInterval`` when ``EndJobRunConfigured``), or why none."""
    if model is None:
        return NoRunTimeLimit("the job has no Schedule")
    if model.not_an_object:
        return NoRunTimeLimit(f"Schedule is {model.not_an_object}, not an object", invalid=True)
    if "EndJobRunConfigured" in model.invalid_fields or "EndJobRunTimeInterval" in model.invalid_fields:
        return NoRunTimeLimit("unreadable EndJobRunConfigured or EndJobRunTimeInterval", invalid=True)
    if not model.EndJobRunConfigured:
        return NoRunTimeLimit("EndJobRunConfigured is false")
    if model.EndJobRunTimeInterval is None:
        return NoRunTimeLimit("EndJobRunTimeInterval is missing", invalid=True)
    try:
        seconds = parse_time_span(model.EndJobRunTimeInterval)
    except ValueError as exc:
        return NoRunTimeLimit(f"EndJobRunTimeInterval {exc}", invalid=True)
    if seconds <= 0:
        return NoRunTimeLimit("EndJobRunTimeInterval is zero", invalid=True)
    if seconds > MAX_RUN_TIME_LIMIT_SECONDS:
        return NoRunTimeLimit("EndJobRunTimeInterval is longer than 366 days", invalid=True)
    return seconds


def parse_time_span(text: str) -> float:
    """Seconds in ``HH:MM[:SS]`` or .NET's ``D.HH:MM:SS[.fffffff]``; ``ValueError`` (without the text)."""
    match = _TIME_SPAN_RE.match(text.strip())
    if not match:
        raise ValueError("is not a duration HH:MM:SS (or D.HH:MM:SS)")
    days = int(match.group("days") or 0)
    hours, minutes = int(match.group("hours")), int(match.group("minutes"))
    seconds = int(match.group("seconds") or 0) + int((match.group("fraction") or "0").ljust(7, "0")) / 1e7
    return float(((days * 24 + hours) * 60 + minutes) * 60) + seconds


# --- Occurrences --------------------------------------------------------------------------------------


def period_seconds(schedule: Schedule) -> int | None:
    """The nominal period: N days, N weeks or N months of 2,629,746 s; ``None`` for a one-off run."""
    if schedule.kind is ScheduleKind.ONCE:
        return None
    if schedule.kind is ScheduleKind.EVERY_N_DAYS:
        return schedule.every * DAY_SECONDS
    if schedule.kind is ScheduleKind.WEEKLY:
        return schedule.every * WEEK_SECONDS
    return schedule.every * MONTH_SECONDS


def next_occurrence(schedule: Schedule, now: datetime) -> datetime | None:
    """The first occurrence strictly after ``now``; ``None`` when there is none before year 10000.

    A naive ``now`` is UTC. The result is in the schedule's offset.
    """
    local = _local(now, schedule.first.tzinfo)
    first = schedule.first.replace(tzinfo=None)
    if local < first:
        return schedule.first
    if schedule.kind is ScheduleKind.ONCE:
        return None
    try:
        if schedule.kind in (ScheduleKind.EVERY_N_DAYS, ScheduleKind.WEEKLY):
            step = _step(schedule)
            return _aware(first + ((local - first) // step + 1) * step, schedule)
        index = _month_index_at_or_before(schedule, local)
        for k in (index, index + 1):
            occurrence = _monthly_occurrence(schedule, k)
            if occurrence is None or occurrence.replace(tzinfo=None) > local:
                return occurrence
    except OverflowError:
        return None
    return None  # unreachable: month index+1 lies in a later month than now


def last_occurrence(schedule: Schedule, now: datetime) -> datetime | None:
    """The latest occurrence at or before ``now``; ``None`` before the first one.

    A naive ``now`` is UTC. The result is in the schedule's offset.
    """
    local = _local(now, schedule.first.tzinfo)
    first = schedule.first.replace(tzinfo=None)
    if local < first:
        return None
    if schedule.kind is ScheduleKind.ONCE:
        return schedule.first
    if schedule.kind in (ScheduleKind.EVERY_N_DAYS, ScheduleKind.WEEKLY):
        step = _step(schedule)
        return _aware(first + ((local - first) // step) * step, schedule)
    index = _month_index_at_or_before(schedule, local)
    for k in (index, index - 1):
        occurrence = _monthly_occurrence(schedule, k)
        if (
            occurrence is not None
            and occurrence >= schedule.first
            and occurrence.replace(tzinfo=None) <= local
        ):
            return occurrence
    return schedule.first  # unreachable: index-1 lies in an earlier month than now, at or after first


def _step(schedule: Schedule) -> timedelta:
    return timedelta(days=schedule.every * (7 if schedule.kind is ScheduleKind.WEEKLY else 1))


def _month_index_at_or_before(schedule: Schedule, local: datetime) -> int:
    """The k whose month (start's month + k*N) is the latest at or before ``local``'s month (k >= 0)."""
    months = (local.year - schedule.start.year) * 12 + (local.month - schedule.start.month)
    return max(0, months // schedule.every)


def _monthly_occurrence(schedule: Schedule, k: int) -> datetime | None:
    """The occurrence in start's month + k*N months (it may fall before ``start`` when k is 0)."""
    months = schedule.start.year * 12 + (schedule.start.month - 1) + k * schedule.every
    year, month = divmod(months, 12)
    month += 1
    if year > 9999:
        return None
    if schedule.kind is ScheduleKind.MONTHLY_BY_DAY:
        day = min(schedule.month_day or 1, calendar.monthrange(year, month)[1])
    else:
        day = _ordinal_weekday(year, month, schedule.ordinal or 1, schedule.weekday or 0)
    return datetime.combine(date(year, month, day), schedule.start.timetz())


def _ordinal_weekday(year: int, month: int, ordinal: int, dotnet_weekday: int) -> int:
    """Day of the month of the first-fourth (1-4) or last (5) .NET weekday in that month."""
    python_weekday = (dotnet_weekday - 1) % 7
    if ordinal == ORDINAL_LAST:
        last = calendar.monthrange(year, month)[1]
        return last - (date(year, month, last).weekday() - python_weekday) % 7
    first = 1 + (python_weekday - date(year, month, 1).weekday()) % 7
    return first + 7 * (ordinal - 1)


def _local(moment: datetime, offset: tzinfo | None) -> datetime:
    """``moment`` as a naive wall-clock time in the schedule's fixed offset.

    Past either end of the calendar in that offset it is clamped to the end: every representable
    occurrence is then before it (or after it), which is what next/last need.
    """
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)
    try:
        return aware.astimezone(offset).replace(tzinfo=None)
    except OverflowError:
        return datetime.max if aware.year > 1 else datetime.min


def _aware(local: datetime, schedule: Schedule) -> datetime:
    return local.replace(tzinfo=schedule.first.tzinfo)


def _dotnet_weekday(moment: datetime) -> int:
    """.NET ``DayOfWeek`` (0 Sunday) of a datetime; Python's ``weekday()`` starts at Monday."""
    return (moment.weekday() + 1) % 7


def _out_of_range(name: str, value: int, low: int, high: int, note: str = "") -> str | None:
    if low <= value <= high:
        return None
    return f"{name} {_short(value)} is outside {low}-{high}{note}"


def _short(value: int) -> str:
    """An integer for a log line, shortened when hostile data makes it absurdly long."""
    text = str(value)
    return text if len(text) <= 20 else text[:17] + "..."


def _format_offset(moment: datetime) -> str:
    offset = moment.utcoffset() or timedelta(0)
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
