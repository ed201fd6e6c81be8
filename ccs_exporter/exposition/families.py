"""Prometheus exposition of a poll snapshot: job and cycle series, rendered once per poll cycle.

Each job family is a name, its help and a writer of its lines (``JOB_FAMILIES``); ``renderer`` turns a
snapshot into ready bytes with them, ``cycle`` holds the poll cycle's and the searches' own series, and
the exporter's per-scrape series are in ``live``.
Sample of the job part::

    # HELP ccs_job_runs Runs of the job (TotalJobRuns), from the job's last successful poll.
    # TYPE ccs_job_runs gauge
    ccs_job_runs{job_id="23c59087-f3d4-4e05-a39e-3440c58e58fb"} 12.0
    # HELP ccs_job_poll_success 1 if the job's poll in the last cycle succeeded.
    # TYPE ccs_job_poll_success gauge
    ccs_job_poll_success{job_id="23c59087-f3d4-4e05-a39e-3440c58e58fb"} 1.0
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NamedTuple, cast

from prometheus_client.utils import floatToGoString

from ccs_exporter.models import JobStatus
from ccs_exporter.polling.snapshot import JobSnapshot, JobState, RunSummary
from ccs_exporter.schedule import Schedule, last_occurrence, next_occurrence, period_seconds

MAX_LABEL_LENGTH = 200
TRUNCATION_MARKER = "...[truncated]"
# Larger than any float a metric needs; clamps absurd numbers CCS might send (a 400-digit int).
_MAX_VALUE = 1e300
_STATUS_LABELS = tuple((status.value, status.label) for status in JobStatus)
_STATUS_LABEL_OF = dict(_STATUS_LABELS)
# prometheus_client's own float formatting (untyped there), so the directly written job series match it.
_format_value = cast(Callable[[float], str], floatToGoString)


def label_value(value: object) -> str:
    """A label value that always renders: valid UTF-8, at most ``MAX_LABEL_LENGTH`` characters."""
    text = str(value).encode("utf-8", "replace").decode("utf-8")
    if len(text) > MAX_LABEL_LENGTH:
        text = text[: MAX_LABEL_LENGTH - len(TRUNCATION_MARKER)] + TRUNCATION_MARKER
    return text


def number(value: float) -> float:
    """A finite float: absurd values from CCS are clamped rather than breaking the exposition."""
    try:
        number = float(value)
    except OverflowError:
        number = _MAX_VALUE if value > 0 else -_MAX_VALUE
    if math.isnan(number):
        return 0.0
    return max(-_MAX_VALUE, min(_MAX_VALUE, number))


def _escape(value: str) -> str:
    """A label value escaped as the text format (and prometheus_client) does."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


# --- the job families, written directly ----------------------------------------------------------------
#
# 10,000 jobs make some 220,000 samples: building prometheus_client samples for them took seconds of CPU
# (holding the GIL that scrapes need) and over a hundred megabytes at its peak. So the job families are
# written as text here, one family at a time, with each job's job_id label formatted once. The lines are
# byte for byte what generate_latest makes of the same families (labels sorted, its float format): a
# test renders the families with prometheus_client and compares.


class ScheduleTimes(NamedTuple):
    """A scheduled job's occurrences around the snapshot's moment (None where there is none)."""

    next_run: float | None
    last_due: float | None
    period: float | None


@dataclass(frozen=True)
class JobsView:
    """The jobs of one snapshot, each with its ``job_id="..."`` label formatted once."""

    states: Sequence[JobState]
    with_data: list[tuple[str, JobSnapshot]]
    summaries: list[tuple[str, RunSummary]]
    schedules: list[tuple[str, ScheduleTimes]]
    read_at: list[tuple[str, float]]
    now: float
    sparse_status: bool

    @classmethod
    def of(
        cls,
        states: Sequence[JobState],
        now: float,
        sparse_status: bool,
        times: Sequence[ScheduleTimes | None],
    ) -> JobsView:
        """``times``: each state's schedule times (None for a job without data or schedule)."""
        with_data: list[tuple[str, JobSnapshot]] = []
        schedules: list[tuple[str, ScheduleTimes]] = []
        read_at: list[tuple[str, float]] = []
        for job, job_times in zip(states, times, strict=True):
            if job.data is not None:
                ids = f'job_id="{_escape(job.job_id)}"'
                with_data.append((ids, job.data))
                if job_times is not None:
                    schedules.append((ids, job_times))
                if job.read_at is not None:
                    read_at.append((ids, job.read_at))
        summaries = [(ids, data.runs) for ids, data in with_data if data.runs is not None]
        return cls(states, with_data, summaries, schedules, read_at, now, sparse_status)


def schedule_times(schedule: Schedule, moment: datetime) -> ScheduleTimes:
    """The next and latest occurrence of ``schedule`` around ``moment`` and its period, as Unix times."""
    try:
        following = next_occurrence(schedule, moment)
        latest = last_occurrence(schedule, moment)
    except (OverflowError, ValueError):  # the edge of the calendar: nothing to show rather than no /metrics
        following = latest = None
    period = period_seconds(schedule)
    return ScheduleTimes(
        following.timestamp() if following is not None else None,
        latest.timestamp() if latest is not None else None,
        float(period) if period is not None else None,
    )


def _status_code(data: JobSnapshot) -> float:
    return data.runs.status_code if data.runs is not None else data.last_run_status


def _info_lines(name: str, jobs: JobsView) -> Iterator[str]:
    for ids, data in jobs.with_data:
        system = "true" if data.is_system else "false"
        yield (
            f'{name}{{is_system="{system}",{ids},job_name="{_escape(label_value(data.name))}",'
            f'job_owner="{_escape(label_value(data.owner))}",job_type="{_escape(label_value(data.job_type))}"}}'
            " 1.0\n"
        )


def _state_set_lines(name: str, jobs: JobsView) -> Iterator[str]:
    """Eight series per job, the current state at 1; sparse: only the current state's (none if unknown)."""
    for ids, data in jobs.with_data:
        code = _status_code(data)
        if jobs.sparse_status:
            if (label := _STATUS_LABEL_OF.get(int(code))) is not None:
                yield f'{name}{{{ids},status="{label}"}} 1.0\n'
            continue
        for value, label in _STATUS_LABELS:
            yield f'{name}{{{ids},status="{label}"}} {"1.0" if value == code else "0.0"}\n'


def _status_code_lines(name: str, jobs: JobsView) -> Iterator[str]:
    for ids, data in jobs.with_data:
        yield f"{name}{{{ids}}} {_format_value(number(_status_code(data)))}\n"


def _optional_lines(
    source: Literal["summaries", "schedules"], field: str
) -> Callable[[str, JobsView], Iterator[str]]:
    """Lines of one optional number of each job's run summary or schedule times (none where it is None)."""

    def lines(name: str, jobs: JobsView) -> Iterator[str]:
        entries: list[tuple[str, Any]] = getattr(jobs, source)
        for ids, entry in entries:
            value = getattr(entry, field)
            if value is not None:
                yield f"{name}{{{ids}}} {_format_value(number(value))}\n"

    return lines


def _summary_lines(field: str) -> Callable[[str, JobsView], Iterator[str]]:
    """Lines of one optional number of the run summary (jobs without it have no series)."""
    return _optional_lines("summaries", field)


def _message_lines(name: str, jobs: JobsView) -> Iterator[str]:
    for ids, summary in jobs.summaries:
        for category, count in summary.messages:
            label = _escape(label_value(category))
            yield f'{name}{{category="{label}",{ids}}} {_format_value(float(count))}\n'


def _failure_lines(name: str, jobs: JobsView) -> Iterator[str]:
    for ids, summary in jobs.summaries:
        yield f"{name}{{{ids}}} {_format_value(float(summary.consecutive_failures))}\n"


def _modified_lines(name: str, jobs: JobsView) -> Iterator[str]:
    for ids, data in jobs.with_data:
        if data.modified_seconds is not None:
            yield f"{name}{{{ids}}} {_format_value(number(data.modified_seconds))}\n"


def _poll_success_lines(name: str, jobs: JobsView) -> Iterator[str]:
    for job in jobs.states:
        yield f'{name}{{job_id="{_escape(job.job_id)}"}} {"1.0" if job.poll_success else "0.0"}\n'


def _age_lines(name: str, jobs: JobsView) -> Iterator[str]:
    for ids, read_at in jobs.read_at:
        yield f"{name}{{{ids}}} {_format_value(number(max(0.0, jobs.now - read_at)))}\n"


def _schedule_lines(field: str) -> Callable[[str, JobsView], Iterator[str]]:
    """Lines of one of the scheduled jobs' times (jobs without a schedule or that time have none)."""
    return _optional_lines("schedules", field)


def _run_time_limit_lines(name: str, jobs: JobsView) -> Iterator[str]:
    for ids, data in jobs.with_data:
        if data.run_time_limit_seconds is not None:
            yield f"{name}{{{ids}}} {_format_value(number(data.run_time_limit_seconds))}\n"


class _JobFamily(NamedTuple):
    name: str  # the name of its samples (and of the family in the text format)
    documentation: str
    lines: Callable[[str, JobsView], Iterator[str]]
    kind: str = "gauge"  # or "info": then the OpenMetrics family is the name without "_info"


# The job families, in exposition order: the one place their names and HELP texts are spelled.
JOB_FAMILIES = (
    _JobFamily(
        "ccs_job_info",
        "Job metadata from the job's last successful poll; join on job_id for names.",
        _info_lines,
        "info",
    ),
    _JobFamily(
        "ccs_job_last_run_status",
        "Latest run's status from the job's last successful poll: 1 for the current state.",
        _state_set_lines,
    ),
    _JobFamily(
        "ccs_job_last_run_status_code",
        "Latest run's raw status code (0 none ... 7 aborted) from the job's last successful poll.",
        _status_code_lines,
    ),
    _JobFamily(
        "ccs_job_last_run_start_timestamp_seconds",
        "Start of the latest run (Unix time), from the job's last successful poll.",
        _summary_lines("start_seconds"),
    ),
    _JobFamily(
        "ccs_job_last_run_end_timestamp_seconds",
        "End of the latest finished run (Unix time), from the job's last successful poll.",
        _summary_lines("end_seconds"),
    ),
    _JobFamily(
        "ccs_job_last_run_duration_seconds",
        "Duration of the latest finished run, from the job's last successful poll.",
        _summary_lines("duration_seconds"),
    ),
    _JobFamily(
        "ccs_job_last_run_messages",
        "Messages of the latest run by category (at most ten besides error, warning and information; "
        "the rest in other), from the job's last successful poll.",
        _message_lines,
    ),
    _JobFamily(
        "ccs_job_runs",
        "Runs of the job (TotalJobRuns), from the job's last successful poll.",
        _summary_lines("total_runs"),
    ),
    _JobFamily(
        "ccs_job_last_success_timestamp_seconds",
        "End of the latest completed run seen up to the job's last successful poll (Unix time).",
        _summary_lines("last_success_seconds"),
    ),
    _JobFamily(
        "ccs_job_consecutive_failures",
        "Faulted or aborted runs since the latest completed one in the history window, "
        "from the job's last successful poll.",
        _failure_lines,
    ),
    _JobFamily(
        "ccs_job_modified_timestamp_seconds",
        "When the job definition last changed (Unix time), from the job's last successful poll.",
        _modified_lines,
    ),
    _JobFamily(
        "ccs_job_poll_success",
        "1 if the job's poll in the last cycle succeeded.",
        _poll_success_lines,
    ),
    _JobFamily(
        "ccs_job_data_age_seconds",
        "Seconds from the job's last successful poll to the end of the last poll cycle.",
        _age_lines,
    ),
    _JobFamily(
        "ccs_job_schedule_next_run_timestamp_seconds",
        "First occurrence of the job's CCS schedule after the end of the last poll cycle (Unix time).",
        _schedule_lines("next_run"),
    ),
    _JobFamily(
        "ccs_job_schedule_last_due_timestamp_seconds",
        "Latest occurrence of the job's CCS schedule up to the end of the last poll cycle (Unix time).",
        _schedule_lines("last_due"),
    ),
    _JobFamily(
        "ccs_job_schedule_period_seconds",
        "Nominal period of the job's CCS schedule (N days, N weeks, or N months of 2629746 s).",
        _schedule_lines("period"),
    ),
    _JobFamily(
        "ccs_job_run_time_limit_seconds",
        "Run-time limit configured for the job in CCS (EndJobRunTimeInterval).",
        _run_time_limit_lines,
    ),
)


# The job families are rendered in parts of this many jobs. A part whose jobs show the same values as
# at the last publish is used again as it is, plain and compressed: at rest a cycle renders only the age
# of each job's data (and the schedule times an occurrence passed). Parts of a few hundred kilobytes at
# most (the state set's eight lines a job): whole families (8 MB for the state set) made copies that
# raised the peak and fragmented the heap.
