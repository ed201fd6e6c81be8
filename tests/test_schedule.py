"""Tests of the schedule model: which CCS schedules we understand, and when their occurrences fall."""

from __future__ import annotations

import calendar
import itertools
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ccs_exporter.models import Job, JobSchedule
from ccs_exporter.schedule import (
    MONTH_SECONDS,
    NoRunTimeLimit,
    NoSchedule,
    Schedule,
    ScheduleKind,
    derive_run_time_limit,
    derive_schedule,
    last_occurrence,
    next_occurrence,
    parse_time_span,
    period_seconds,
)

UTC = timezone.utc
IST = timezone(timedelta(hours=5, minutes=30))
PST = timezone(timedelta(hours=-8))
PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _schedule(**fields: Any) -> Schedule:
    result = derive_schedule(JobSchedule.model_validate(fields))
    assert isinstance(result, Schedule), result
    return result


def _no_schedule(**fields: Any) -> NoSchedule:
    result = derive_schedule(JobSchedule.model_validate(fields))
    assert isinstance(result, NoSchedule), result
    return result


def daily(start: str, every: int = 1, **extra: Any) -> dict[str, Any]:
    return {"RunPeriodically": True, "RecurrenceType": 1, "RunEveryNDays": True, "RepeatDays": every,
            "StartDate": start, **extra}  # fmt: skip


def weekly(start: str, weekday: int, every: int = 1) -> dict[str, Any]:
    return {"RunPeriodically": True, "RecurrenceType": 2, "WeeklyRecurEvery": every, "WeeklyDay": weekday,
            "StartDate": start}  # fmt: skip


def monthly_day(start: str, day: int, every: int = 1) -> dict[str, Any]:
    return {"RunPeriodically": True, "RecurrenceType": 3, "MonthlyRecurEvery": every, "MonthlyDay": day,
            "StartDate": start}  # fmt: skip


def monthly_ordinal(start: str, ordinal: int, weekday: int, every: int = 1) -> dict[str, Any]:
    return {"RunPeriodically": True, "RecurrenceType": 3, "MonthlyRecurEvery": every,
            "MonthlyIsByOrdinalDay": True, "MonthlyOrdinalDay": ordinal, "MonthlyDayOfTheWeek": weekday,
            "StartDate": start}  # fmt: skip


def occurrences(schedule: Schedule, after: datetime, count: int) -> list[datetime]:
    """The ``count`` occurrences following ``after``, each found with next_occurrence."""
    found: list[datetime] = []
    moment = after
    for _ in range(count):
        following = next_occurrence(schedule, moment)
        assert following is not None
        found.append(following)
        moment = following
    return found


# --- Strategies --------------------------------------------------------------------------------------

offsets = st.integers(min_value=-12 * 4, max_value=14 * 4).map(
    lambda quarters: timedelta(minutes=15 * quarters)
)
start_dates = st.builds(
    lambda moment, offset: moment.replace(tzinfo=timezone(offset)),
    st.datetimes(min_value=datetime(1995, 1, 1), max_value=datetime(2035, 12, 31)),
    offsets,
)
nows = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2045, 12, 31), timezones=st.just(UTC)
) | st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2045, 12, 31)).map(
    lambda moment: moment.replace(tzinfo=IST)
)


def _recurring(draw: Callable[[st.SearchStrategy[Any]], Any], start: datetime) -> dict[str, Any]:
    text = start.isoformat()
    kind = draw(st.sampled_from(["daily", "weekly", "monthly_day", "monthly_ordinal"]))
    if kind == "daily":
        return daily(text, draw(st.integers(1, 400)))
    if kind == "weekly":
        return weekly(text, draw(st.integers(0, 6)), draw(st.integers(1, 10)))
    if kind == "monthly_day":
        return monthly_day(text, draw(st.integers(1, 31)), draw(st.integers(1, 14)))
    return monthly_ordinal(text, draw(st.integers(1, 5)), draw(st.integers(0, 6)), draw(st.integers(1, 14)))


@st.composite
def recurring_schedules(draw: st.DrawFn) -> Schedule:
    return _schedule(**_recurring(draw, draw(start_dates)))


# --- Properties --------------------------------------------------------------------------------------


class TestOccurrenceProperties:
    @PROPERTY_SETTINGS
    @given(recurring_schedules(), nows)
    def test_next_is_after_now_and_last_is_not(self, schedule: Schedule, now: datetime) -> None:
        """Next is strictly after now; last due is at or before now, and absent before the first."""
        following = next_occurrence(schedule, now)
        latest = last_occurrence(schedule, now)
        assert following is not None and following > now
        if now < schedule.first:
            assert latest is None and following == schedule.first
        else:
            assert latest is not None and schedule.first <= latest <= now

    @PROPERTY_SETTINGS
    @given(recurring_schedules(), nows)
    def test_last_and_next_are_consecutive_occurrences(self, schedule: Schedule, now: datetime) -> None:
        """The last due is an occurrence, and the next is the one that follows it, with nothing between."""
        latest = last_occurrence(schedule, now)
        following = next_occurrence(schedule, now)
        assume(latest is not None and following is not None)
        assert latest is not None and following is not None
        assert last_occurrence(schedule, latest) == latest
        assert next_occurrence(schedule, latest) == following
        assert last_occurrence(schedule, following - timedelta(microseconds=1)) == latest
        assert last_occurrence(schedule, following) == following

    @PROPERTY_SETTINGS
    @given(recurring_schedules(), nows)
    def test_occurrences_keep_start_wall_clock_and_offset(self, schedule: Schedule, now: datetime) -> None:
        """Every occurrence is at StartDate's wall-clock time in StartDate's UTC offset, on or after it."""
        for occurrence in occurrences(schedule, now, 3):
            assert occurrence.utcoffset() == schedule.start.utcoffset()
            assert occurrence.timetz() == schedule.start.timetz()
            assert occurrence >= schedule.start

    @PROPERTY_SETTINGS
    @given(start_dates, st.integers(1, 400), st.integers(0, 6), st.integers(1, 10), nows)
    def test_daily_and_weekly_occurrences_are_one_period_apart(
        self, start: datetime, days: int, weekday: int, weeks: int, now: datetime
    ) -> None:
        """Consecutive every-N-days and every-N-weeks occurrences are exactly one period apart."""
        for fields in (daily(start.isoformat(), days), weekly(start.isoformat(), weekday, weeks)):
            schedule = _schedule(**fields)
            period = period_seconds(schedule)
            assert period is not None
            first, second, third = occurrences(schedule, now, 3)
            assert (second - first).total_seconds() == (third - second).total_seconds() == period
            latest = last_occurrence(schedule, now)
            if latest is not None:
                assert (first - latest).total_seconds() == period

    @PROPERTY_SETTINGS
    @given(start_dates, st.integers(0, 6), st.integers(1, 10), nows)
    def test_weekly_occurrences_fall_on_the_weekday(
        self, start: datetime, weekday: int, weeks: int, now: datetime
    ) -> None:
        """Weekly occurrences fall on the .NET DayOfWeek, the first within 7 days of StartDate."""
        schedule = _schedule(**weekly(start.isoformat(), weekday, weeks))
        assert timedelta(0) <= schedule.first - start < timedelta(days=7)
        for occurrence in [schedule.first, *occurrences(schedule, now, 2)]:
            assert (occurrence.weekday() + 1) % 7 == weekday

    @PROPERTY_SETTINGS
    @given(start_dates, st.integers(1, 31), st.integers(1, 14), nows)
    def test_monthly_day_is_clamped_to_the_month(
        self, start: datetime, day: int, every: int, now: datetime
    ) -> None:
        """Monthly-by-day falls on that day (or a shorter month's last day), every N months."""
        schedule = _schedule(**monthly_day(start.isoformat(), day, every))
        found = occurrences(schedule, now, 3)
        for occurrence in found:
            assert occurrence.day == min(day, calendar.monthrange(occurrence.year, occurrence.month)[1])
        for earlier, later in itertools.pairwise(found):
            assert (later.year - earlier.year) * 12 + later.month - earlier.month == every

    @PROPERTY_SETTINGS
    @given(start_dates, st.integers(1, 5), st.integers(0, 6), st.integers(1, 14), nows)
    def test_monthly_ordinal_weekday(
        self, start: datetime, ordinal: int, weekday: int, every: int, now: datetime
    ) -> None:
        """An ordinal occurrence is the first-fourth or last such weekday of its month."""
        schedule = _schedule(**monthly_ordinal(start.isoformat(), ordinal, weekday, every))
        for occurrence in occurrences(schedule, now, 3):
            assert (occurrence.weekday() + 1) % 7 == weekday
            month_days = calendar.monthrange(occurrence.year, occurrence.month)[1]
            if ordinal == 5:
                assert occurrence.day + 7 > month_days
            else:
                assert 7 * (ordinal - 1) < occurrence.day <= 7 * ordinal

    @settings(max_examples=60, deadline=None)
    @given(st.data())
    def test_matches_a_day_by_day_enumeration(self, data: st.DataObject) -> None:
        """Within years of StartDate, next and last agree with a naive day-by-day calendar walk."""
        start = data.draw(start_dates)
        schedule = _schedule(**_recurring(data.draw, start))
        now = start + data.draw(st.timedeltas(min_value=timedelta(days=-40), max_value=timedelta(days=1500)))
        expected = _enumerate(schedule, start, now + timedelta(days=14 * 31 + 1))
        before = [moment for moment in expected if moment <= now]
        after = [moment for moment in expected if moment > now]
        assert last_occurrence(schedule, now) == (before[-1] if before else None)
        if after:
            assert next_occurrence(schedule, now) == after[0]


def _enumerate(schedule: Schedule, start: datetime, until: datetime) -> list[datetime]:
    """Occurrences from start to until, found by testing every calendar day (an independent oracle)."""
    found = []
    day = start.date()
    while (candidate := datetime.combine(day, start.timetz())) <= until:
        if candidate >= start and _is_occurrence_day(schedule, start, day):
            found.append(candidate)
        day += timedelta(days=1)
    if schedule.kind in (ScheduleKind.EVERY_N_DAYS, ScheduleKind.WEEKLY):
        step = schedule.every * (1 if schedule.kind is ScheduleKind.EVERY_N_DAYS else 7)
        found = [moment for moment in found if (moment - found[0]).days % step == 0]
    return found


def _is_occurrence_day(schedule: Schedule, start: datetime, day: date) -> bool:
    if schedule.kind is ScheduleKind.EVERY_N_DAYS:
        return True
    dotnet_weekday = (day.weekday() + 1) % 7
    if schedule.kind is ScheduleKind.WEEKLY:
        return dotnet_weekday == schedule.weekday
    if ((day.year - start.year) * 12 + day.month - start.month) % schedule.every:
        return False
    month_days = calendar.monthrange(day.year, day.month)[1]
    if schedule.kind is ScheduleKind.MONTHLY_BY_DAY:
        return day.day == min(schedule.month_day or 0, month_days)
    if dotnet_weekday != schedule.weekday:
        return False
    same_weekdays = [
        d
        for d in range(1, month_days + 1)
        if (date(day.year, day.month, d).weekday() + 1) % 7 == dotnet_weekday
    ]
    return day.day == (
        same_weekdays[-1] if schedule.ordinal == 5 else same_weekdays[(schedule.ordinal or 1) - 1]
    )


# --- Fixed calendars ---------------------------------------------------------------------------------


class TestEveryNDays:
    def test_vendor_sample_is_every_50_days_at_its_offset(self, load_fixture: Callable[[str], Any]) -> None:
        """The search-by-id sample (RepeatDays 50) runs every 50 days at 21:14:27.513+05:30."""
        job = Job.model_validate(load_fixture("search_job_by_id.json"))
        assert job.JobConfigDetails is not None
        schedule = derive_schedule(job.JobConfigDetails.Schedule)
        assert isinstance(schedule, Schedule) and schedule.kind is ScheduleKind.EVERY_N_DAYS
        assert period_seconds(schedule) == 50 * 86_400
        now = datetime(2019, 1, 10, tzinfo=UTC)
        assert next_occurrence(schedule, now) == datetime(2019, 2, 26, 21, 14, 27, 513000, tzinfo=IST)
        assert last_occurrence(schedule, now) == datetime(2019, 1, 7, 21, 14, 27, 513000, tzinfo=IST)

    def test_offset_plus_0530_decides_the_local_day(self) -> None:
        """At 22:30 UTC it is 04:00 next day in +05:30, so 04:10 that day is next, not the day after."""
        schedule = _schedule(**daily("2024-01-01T04:10:00+05:30"))
        now = datetime(2024, 3, 10, 22, 30, tzinfo=UTC)
        following = next_occurrence(schedule, now)
        assert following == datetime(2024, 3, 11, 4, 10, tzinfo=IST)
        assert (
            following is not None
            and following.timestamp() == datetime(2024, 3, 10, 22, 40, tzinfo=UTC).timestamp()
        )
        assert last_occurrence(schedule, now) == datetime(2024, 3, 10, 4, 10, tzinfo=IST)

    def test_no_daylight_saving(self) -> None:
        """A -08:00 schedule stays at -08:00 in July: the offset is fixed, as CCS wrote it."""
        schedule = _schedule(**daily("2024-01-05T02:00:00-08:00"))
        following = next_occurrence(schedule, datetime(2024, 7, 1, tzinfo=UTC))
        assert following == datetime(2024, 7, 1, 2, 0, tzinfo=PST)
        assert following is not None and following.utcoffset() == timedelta(hours=-8)

    def test_naive_start_date_is_utc(self) -> None:
        """A StartDate without an offset is UTC, whatever the machine's time zone."""
        schedule = _schedule(**daily("2024-01-01T04:10:00"))
        assert next_occurrence(schedule, datetime(2024, 5, 1, tzinfo=UTC)) == datetime(
            2024, 5, 1, 4, 10, tzinfo=UTC
        )

    def test_leap_day_is_a_day(self) -> None:
        """Every day from 28 February 2024 passes through 29 February."""
        schedule = _schedule(**daily("2024-02-28T12:00:00Z"))
        assert next_occurrence(schedule, datetime(2024, 2, 28, 12, tzinfo=UTC)) == datetime(
            2024, 2, 29, 12, tzinfo=UTC
        )

    def test_ten_years_of_days_by_arithmetic(self) -> None:
        """A daily schedule started ten years before now lands on today's occurrence exactly."""
        schedule = _schedule(**daily("2015-06-01T03:00:00+05:30", every=3))
        now = datetime(2025, 6, 1, tzinfo=UTC)
        latest = last_occurrence(schedule, now)
        assert latest is not None and (latest - schedule.start).days % 3 == 0
        assert now - timedelta(days=3) < latest <= now

    def test_recurrence_type_zero_with_run_every_n_days(self) -> None:
        """The vendor's create sample (RecurrenceType 0, RunEveryNDays, RepeatDays 50) is every 50 days."""
        schedule = _schedule(**daily("2019-01-05T04:10:27.5120788-08:00", every=50, RecurrenceType=0))
        assert schedule.kind is ScheduleKind.EVERY_N_DAYS and schedule.every == 50

    def test_repeat_minutes_is_ignored(self) -> None:
        """RepeatMinutes does not add occurrences within the day: they are the same as without it."""
        plain = _schedule(**daily("2024-01-01T04:00:00Z"))
        repeated = _schedule(**daily("2024-01-01T04:00:00Z", RepeatMinutes=30))
        now = datetime(2024, 2, 1, 4, 45, tzinfo=UTC)
        assert (
            next_occurrence(repeated, now)
            == next_occurrence(plain, now)
            == datetime(2024, 2, 2, 4, tzinfo=UTC)
        )
        assert last_occurrence(repeated, now) == datetime(2024, 2, 1, 4, tzinfo=UTC)


class TestWeekly:
    def test_first_occurrence_is_the_weekday_after_a_midweek_start(self) -> None:
        """Start on Wednesday 3 Jan 2024, Mondays every 2 weeks: 8 Jan, 22 Jan, 5 Feb."""
        schedule = _schedule(**weekly("2024-01-03T06:00:00Z", weekday=1, every=2))
        assert occurrences(schedule, datetime(2024, 1, 1, tzinfo=UTC), 3) == [
            datetime(2024, 1, 8, 6, tzinfo=UTC),
            datetime(2024, 1, 22, 6, tzinfo=UTC),
            datetime(2024, 2, 5, 6, tzinfo=UTC),
        ]
        assert period_seconds(schedule) == 14 * 86_400

    def test_start_on_the_weekday_is_the_first_occurrence(self) -> None:
        """A start that falls on the chosen weekday is itself the first occurrence."""
        schedule = _schedule(**weekly("2024-01-07T06:00:00Z", weekday=0))
        assert schedule.first == schedule.start
        assert last_occurrence(schedule, datetime(2024, 1, 7, 6, tzinfo=UTC)) == schedule.start

    def test_weekday_is_the_local_day_at_minus_0800(self) -> None:
        """Monday 23:30 at -08:00 is Tuesday 07:30 UTC; the day is counted in the schedule's offset."""
        schedule = _schedule(**weekly("2024-01-01T23:30:00-08:00", weekday=1))
        now = datetime(2024, 1, 9, 7, 0, tzinfo=UTC)  # Monday 23:00 at -08:00
        assert next_occurrence(schedule, now) == datetime(2024, 1, 8, 23, 30, tzinfo=PST)
        assert last_occurrence(schedule, now) == datetime(2024, 1, 1, 23, 30, tzinfo=PST)


class TestMonthly:
    def test_day_31_clamps_to_short_months_and_leap_february(self) -> None:
        """Day 31 from January 2024 runs 31 Jan, 29 Feb (leap year), 31 Mar, 30 Apr."""
        schedule = _schedule(**monthly_day("2024-01-31T02:00:00+05:30", day=31))
        assert [moment.date() for moment in occurrences(schedule, datetime(2024, 1, 1, tzinfo=UTC), 4)] == [
            date(2024, 1, 31),
            date(2024, 2, 29),
            date(2024, 3, 31),
            date(2024, 4, 30),
        ]
        assert period_seconds(schedule) == MONTH_SECONDS

    def test_day_30_in_a_common_february(self) -> None:
        """Day 30 falls on 28 February 2023 and back on 30 March: the clamp does not drift."""
        schedule = _schedule(**monthly_day("2023-01-30T00:00:00Z", day=30))
        now = datetime(2023, 2, 1, tzinfo=UTC)
        assert occurrences(schedule, now, 2) == [
            datetime(2023, 2, 28, tzinfo=UTC),
            datetime(2023, 3, 30, tzinfo=UTC),
        ]

    def test_yearly_leap_day(self) -> None:
        """Every 12 months on day 29 from 29 Feb 2024 runs 28 Feb in common years and 29 Feb in 2028."""
        schedule = _schedule(**monthly_day("2024-02-29T09:00:00Z", day=29, every=12))
        assert [moment.date() for moment in occurrences(schedule, datetime(2024, 3, 1, tzinfo=UTC), 4)] == [
            date(2025, 2, 28),
            date(2026, 2, 28),
            date(2027, 2, 28),
            date(2028, 2, 29),
        ]
        assert period_seconds(schedule) == 12 * MONTH_SECONDS

    def test_months_count_from_start_month(self) -> None:
        """Every 3 months on day 5 from 20 January: the January day has passed, so April is first."""
        schedule = _schedule(**monthly_day("2024-01-20T00:00:00Z", day=5, every=3))
        assert schedule.first == datetime(2024, 4, 5, tzinfo=UTC)
        assert last_occurrence(schedule, datetime(2024, 4, 4, tzinfo=UTC)) is None
        assert next_occurrence(schedule, datetime(2024, 4, 5, tzinfo=UTC)) == datetime(2024, 7, 5, tzinfo=UTC)

    def test_last_friday(self) -> None:
        """The last Friday of each month of 2024: 26 Jan, 23 Feb, 29 Mar, 26 Apr."""
        schedule = _schedule(**monthly_ordinal("2024-01-01T18:00:00Z", ordinal=5, weekday=5))
        assert [moment.date() for moment in occurrences(schedule, datetime(2024, 1, 1, tzinfo=UTC), 4)] == [
            date(2024, 1, 26),
            date(2024, 2, 23),
            date(2024, 3, 29),
            date(2024, 4, 26),
        ]

    def test_fourth_monday(self) -> None:
        """The fourth Monday of early 2024: 22 Jan, 26 Feb, 25 Mar."""
        schedule = _schedule(**monthly_ordinal("2024-01-01T08:00:00-08:00", ordinal=4, weekday=1))
        assert [moment.date() for moment in occurrences(schedule, datetime(2024, 1, 1, tzinfo=UTC), 3)] == [
            date(2024, 1, 22),
            date(2024, 2, 26),
            date(2024, 3, 25),
        ]

    def test_first_sunday_when_the_month_starts_on_sunday(self) -> None:
        """September 2024 starts on a Sunday, which is its first Sunday."""
        schedule = _schedule(**monthly_ordinal("2024-08-15T00:00:00Z", ordinal=1, weekday=0))
        assert schedule.first == datetime(2024, 9, 1, tzinfo=UTC)


class TestOnce:
    def test_once_in_the_future(self) -> None:
        """A one-off run in the future is next and nothing is due yet."""
        schedule = _schedule(RunOnce=True, StartDate="2030-01-01T10:00:00+05:30")
        now = datetime(2029, 12, 31, tzinfo=UTC)
        assert next_occurrence(schedule, now) == datetime(2030, 1, 1, 10, tzinfo=IST)
        assert last_occurrence(schedule, now) is None
        assert period_seconds(schedule) is None

    def test_once_in_the_past(self) -> None:
        """A one-off run in the past is the last due and there is no next."""
        schedule = _schedule(RunOnce=True, StartDate="2020-01-01T10:00:00Z")
        now = datetime(2024, 1, 1, tzinfo=UTC)
        assert next_occurrence(schedule, now) is None
        assert last_occurrence(schedule, now) == datetime(2020, 1, 1, 10, tzinfo=UTC)


class TestNoScheduleKnown:
    @pytest.mark.parametrize(
        ("fields", "reason"),
        [
            (daily("2024-01-01T00:00:00Z", every=0), "RepeatDays 0 is outside"),
            (daily("2024-01-01T00:00:00Z", every=-3), "RepeatDays -3 is outside"),
            (daily("2024-01-01T00:00:00Z", every=10**30), "RepeatDays 10000000000000000... is outside"),
            (weekly("2024-01-01T00:00:00Z", weekday=9), "WeeklyDay 9 is outside 0-6"),
            (weekly("2024-01-01T00:00:00Z", weekday=1, every=0), "WeeklyRecurEvery 0"),
            (monthly_day("2024-01-01T00:00:00Z", day=40), "MonthlyDay 40 is outside 1-31"),
            (monthly_day("2024-01-01T00:00:00Z", day=0), "MonthlyDay 0"),
            (monthly_ordinal("2024-01-01T00:00:00Z", ordinal=6, weekday=1), "MonthlyOrdinalDay 6"),
            (monthly_ordinal("2024-01-01T00:00:00Z", ordinal=1, weekday=7), "MonthlyDayOfTheWeek 7"),
            ({**daily("2024-01-01T00:00:00Z"), "RecurrenceType": 7}, "unknown RecurrenceType 7"),
            (
                {**daily("2024-01-01T00:00:00Z"), "RunEveryNDays": False},
                "RecurrenceType 1 without RunEveryNDays",
            ),
            ({**daily("2024-01-01T00:00:00Z"), "RunOnce": True}, "both true"),
            (
                {**daily("2024-01-01T00:00:00Z"), "RepeatDays": "often"},
                "unreadable schedule field(s): RepeatDays",
            ),
            (
                {**daily("2024-01-01T00:00:00Z"), "StartDate": "soon"},
                "unreadable schedule field(s): StartDate",
            ),
            (daily("0001-01-01T00:00:00"), "StartDate is missing or 0001-01-01"),
            ({**daily("x"), "StartDate": None}, "StartDate is missing"),
            (daily("9999-12-31T23:00:00-08:00"), "unreadable schedule field(s): StartDate"),
            (
                {k: v for k, v in weekly("2024-01-01T00:00:00Z", 1).items() if k != "WeeklyDay"},
                "WeeklyDay is missing",
            ),
        ],
    )
    def test_hostile_or_undocumented_values(self, fields: dict[str, Any], reason: str) -> None:
        """Values outside documented ranges give no schedule, flagged invalid, naming the field."""
        result = _no_schedule(**fields)
        assert reason in result.reason and result.invalid
        assert "\n" not in result.reason and len(result.reason) < 200

    def test_not_scheduled_is_not_invalid(self) -> None:
        """A job that only runs on demand has no schedule and nothing worth a warning."""
        result = _no_schedule(RunNow=True, StartDate="2024-01-01T00:00:00Z")
        assert result == NoSchedule("neither RunOnce nor RunPeriodically is true", invalid=False)
        assert derive_schedule(None) == NoSchedule("the job has no Schedule")

    def test_first_occurrence_past_year_9999(self) -> None:
        """A weekly schedule whose first day falls in year 10000 is no schedule, not an OverflowError."""
        result = _no_schedule(**weekly("9999-12-31T12:00:00Z", weekday=6))  # 31 Dec 9999 is a Friday
        assert "past year 9999" in result.reason

    @pytest.mark.parametrize(
        "fields",
        [
            daily("9999-12-30T12:00:00+14:00"),
            monthly_day("9999-11-15T12:00:00Z", day=31),
            monthly_ordinal("9999-12-01T12:00:00Z", ordinal=5, weekday=1, every=1200),
        ],
    )
    def test_no_next_occurrence_after_year_9999(self, fields: dict[str, Any]) -> None:
        """Near the end of the calendar there is simply no next occurrence; the last due is still known."""
        schedule = _schedule(**fields)
        end = datetime(9999, 12, 31, 23, 59, tzinfo=UTC)
        assert next_occurrence(schedule, end) is None
        assert last_occurrence(schedule, end) is not None
        assert next_occurrence(schedule, datetime.max) is None  # a naive maximum is UTC

    def test_now_before_year_1_in_the_schedule_offset(self) -> None:
        """A now before year 1 at the schedule's offset has the first occurrence next, nothing due."""
        schedule = _schedule(**daily("2024-01-01T00:00:00-08:00"))
        now = datetime.min.replace(tzinfo=UTC)
        assert next_occurrence(schedule, now) == schedule.first
        assert last_occurrence(schedule, now) is None

    @settings(max_examples=300, deadline=None)
    @given(
        st.dictionaries(
            st.sampled_from(sorted(JobSchedule.model_fields)),
            st.none()
            | st.booleans()
            | st.integers(-(10**20), 10**20)
            | st.floats(allow_nan=True)
            | st.text(max_size=30)
            | st.sampled_from(["0001-01-01T00:00:00", "9999-12-31T23:59:59-23:59", "1.02:03:04", "true"]),
        ),
        nows,
    )
    def test_any_payload_never_raises(self, payload: dict[str, Any], now: datetime) -> None:
        """Whatever a schedule holds, parsing, deriving and computing occurrences never raise."""
        base = {"RunPeriodically": True, "StartDate": "2020-02-29T10:00:00+05:30"}
        model = JobSchedule.model_validate({**base, **payload})
        result = derive_schedule(model)
        derive_run_time_limit(model)
        if isinstance(result, Schedule):
            next_occurrence(result, now)
            last_occurrence(result, now)
            period_seconds(result)
        else:
            assert result.reason


class TestRunTimeLimit:
    @pytest.mark.parametrize(
        ("interval", "seconds"),
        [
            ("04:30:00", 16_200.0),
            ("04:30", 16_200.0),
            ("100:00:00", 360_000.0),
            ("1.02:00:00", 93_600.0),
            ("00:00:01.5", 1.5),
            (" 00:45:00 ", 2_700.0),
        ],
    )
    def test_limit_in_seconds(self, interval: str, seconds: float) -> None:
        """HH:MM:SS, HH:MM and .NET's D.HH:MM:SS[.fffffff] become seconds."""
        model = JobSchedule.model_validate({"EndJobRunConfigured": True, "EndJobRunTimeInterval": interval})
        assert derive_run_time_limit(model) == seconds
        assert parse_time_span(interval) == seconds

    def test_not_configured(self) -> None:
        """Without EndJobRunConfigured the interval is ignored (the vendor samples send 00:00:00)."""
        model = JobSchedule.model_validate(
            {"EndJobRunConfigured": False, "EndJobRunTimeInterval": "04:00:00"}
        )
        assert derive_run_time_limit(model) == NoRunTimeLimit("EndJobRunConfigured is false")

    @pytest.mark.parametrize(
        ("interval", "reason"),
        [
            ("00:00:00", "is zero"),
            ("23:60:00", "is not a duration"),
            ("banana-" * 1000, "is not a duration"),
            ("-01:00:00", "is not a duration"),
            ("999999.00:00:00", "longer than 366 days"),
            (None, "is missing"),
            (3600, "unreadable"),
        ],
    )
    def test_bad_interval(self, interval: Any, reason: str) -> None:
        """An unreadable configured limit gives no limit, flagged invalid, without echoing it."""
        model = JobSchedule.model_validate({"EndJobRunConfigured": True, "EndJobRunTimeInterval": interval})
        result = derive_run_time_limit(model)
        assert isinstance(result, NoRunTimeLimit) and result.invalid and reason in result.reason
        assert "banana" not in result.reason


class TestJobScheduleModel:
    def test_start_date_keeps_its_offset(self) -> None:
        """StartDate stays UTC for everything else, and start_date_local gives back CCS's own offset."""
        model = JobSchedule.model_validate({"StartDate": "2018-11-18T21:14:27.513+05:30"})
        assert model.StartDate == datetime(2018, 11, 18, 15, 44, 27, 513000, tzinfo=UTC)
        assert model.StartDate is not None and model.StartDate.utcoffset() == timedelta(0)
        assert model.start_date_local is not None and model.start_date_local.utcoffset() == timedelta(
            hours=5.5
        )
        assert model.model_dump(mode="json")["StartDate"] == "2018-11-18T15:44:27.513000Z"

    def test_bad_schedule_field_does_not_fail_the_job(self, load_fixture: Callable[[str], Any]) -> None:
        """A job whose schedule holds an unreadable value still parses; the field is named, the rest kept."""
        payload = load_fixture("search_job_by_id.json")
        payload["JobConfigDetails"]["Schedule"]["WeeklyDay"] = {"Monday": True}
        payload["JobConfigDetails"]["Schedule"]["StartDate"] = "9999-12-31T23:59:00-01:00"
        job = Job.model_validate(payload)
        assert job.JobConfigDetails is not None and job.JobConfigDetails.Schedule is not None
        schedule = job.JobConfigDetails.Schedule
        assert schedule.invalid_fields == ("StartDate", "WeeklyDay")
        assert schedule.RepeatDays == 50 and schedule.StartDate is None

    @pytest.mark.parametrize("sent", ["weekly", 3, ["RunOnce"], False])
    def test_schedule_that_is_not_an_object_does_not_fail_the_job(
        self, load_fixture: Callable[[str], Any], sent: Any
    ) -> None:
        """A Schedule sent as a string, number, list or boolean is no schedule and no limit, kept as sent."""
        payload = load_fixture("search_job_by_id.json")
        payload["JobConfigDetails"]["Schedule"] = sent
        job = Job.model_validate(payload)
        assert job.JobConfigDetails is not None and job.JobConfigDetails.Standards
        schedule = job.JobConfigDetails.Schedule
        derived, limit = derive_schedule(schedule), derive_run_time_limit(schedule)
        assert isinstance(derived, NoSchedule) and derived.invalid and "not an object" in derived.reason
        assert isinstance(limit, NoRunTimeLimit) and limit.invalid
        assert job.model_dump(mode="json")["JobConfigDetails"]["Schedule"] == sent
