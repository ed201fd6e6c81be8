"""Live samples: the sample scenario moved in time so that its capture instant is now.

Every DateTime of the samples (creation, runs, messages, ``Schedule.StartDate``) moves by the same whole
number of seconds and keeps its shape (offset, fraction digits); "never" stays never. Schedules by day of
the week or of the month then name the weekday and day the moved runs fall on, so each job stands
against its schedule exactly as it did at the capture instant: on time, missed, over its limit or not
yet due. Monthly schedules stay exact when they recur every month (as every sample's does).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

from ccs_exporter.models import JobSchedule
from ccs_exporter.schedule import Schedule, ScheduleKind, derive_schedule, last_occurrence
from ccs_exporter.simulator.records import StoredJob

_SHAPE = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})?\Z")


def shift_text(text: str | None, delta: timedelta) -> str | None:
    """A CCS DateTime moved by ``delta`` (whole seconds) in its own shape; never, null and junk unchanged."""
    if text is None or text.startswith("0001-01-01"):
        return text
    match = _SHAPE.match(text)
    if match is None:
        return text
    moved = datetime.fromisoformat(match[1]) + delta
    return f"{moved:%Y-%m-%dT%H:%M:%S}{match[2] or ''}{match[3] or ''}"


def whole_seconds(later: datetime, earlier: datetime) -> timedelta:
    """``later - earlier`` rounded to whole seconds, so fractions of moved DateTimes stay as written."""
    return timedelta(seconds=round((later - earlier).total_seconds()))


def move_jobs(jobs: list[StoredJob], captured_at: datetime, now: datetime) -> None:
    """Move the jobs (in place) from ``captured_at`` to ``now``."""
    delta = whole_seconds(now, captured_at)
    for job in jobs:
        job.created = shift_text(job.created, delta) or job.created
        job.modified = shift_text(job.modified, delta) or job.modified
        for run in job.runs:
            run.start = shift_text(run.start, delta) or run.start
            run.end = shift_text(run.end, delta)
            run.messages = tuple(
                message._replace(DateTime=shift_text(message.DateTime, delta) or message.DateTime)
                for message in run.messages
            )
        job.refresh_last_run()
        if job.config is not None and isinstance(job.config.get("Schedule"), dict):
            job.config = {
                **job.config,
                "Schedule": _moved_schedule(job.config["Schedule"], captured_at, delta),
            }


def _moved_schedule(schedule: dict[str, Any], captured_at: datetime, delta: timedelta) -> dict[str, Any]:
    moved = {**schedule, "StartDate": shift_text(schedule.get("StartDate"), delta)}
    recurrence = derive_schedule(JobSchedule.model_validate(schedule))
    if not isinstance(recurrence, Schedule) or recurrence.kind in (
        ScheduleKind.ONCE,
        ScheduleKind.EVERY_N_DAYS,
    ):
        return moved  # a fixed step from StartDate: moving StartDate moves every occurrence
    # The occurrence the latest scheduled run kept, moved: the new schedule's day is the one it lands on.
    reference = last_occurrence(recurrence, captured_at) or recurrence.first
    landed = reference + delta
    weekday = landed.isoweekday() % 7  # .NET DayOfWeek: Sunday 0
    if recurrence.kind is ScheduleKind.WEEKLY:
        moved["WeeklyDay"] = weekday
    elif recurrence.kind is ScheduleKind.MONTHLY_BY_DAY:
        moved["MonthlyDay"] = landed.day
    else:
        moved["MonthlyDayOfTheWeek"] = weekday
        moved["MonthlyOrdinalDay"] = (landed.day - 1) // 7 + 1
    return moved


def utc(moment: datetime) -> datetime:
    """An aware datetime in UTC (a naive one is taken as UTC)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)
