"""Human-readable tables of CCS jobs and runs for the command line (``-o table``).

Status names instead of codes, times in the machine's local zone, durations as ``1h 02m 05s``. Pure
formatting, no I/O. Every cell has control characters shown escaped and is cut to a readable width, so
hostile CCS data cannot redraw the terminal or push the columns off the screen.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from ccs_exporter.models import Job, JobRun, JobRuns, JobStatus
from ccs_exporter.schedule import Schedule, derive_schedule, next_occurrence

NO_VALUE = "-"
MAX_CELL = 60
MAX_MESSAGE = 160
_COLUMN_GAP = "  "


def local_time(moment: datetime | None) -> str:
    """``2018-09-20 11:14:34 IST`` in the machine's local zone; ``-`` for no time."""
    if moment is None:
        return NO_VALUE
    local = moment.astimezone()
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname() or local.strftime('%z')}"


def duration(seconds: float | None) -> str:
    """``8s``, ``4m 05s``, ``1h 02m 05s``, ``3d 04h 05m``; ``-`` for none; ``<1s`` under a second."""
    if seconds is None:
        return NO_VALUE
    if 0 < seconds < 1:
        return "<1s"
    total = round(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h {minutes:02d}m"
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def status_name(code: int) -> str:
    """``faulted`` for 5; ``code 9`` for a code outside the documented 0-7."""
    try:
        return JobStatus(code).label
    except ValueError:
        return f"code {code}"


def jobs_table(jobs: Sequence[Job], now: datetime) -> str:
    """One row per job: id, name, type, owner, last run, its status, and the next scheduled run."""
    rows = [
        [
            job.JobProperties.JobID,
            job.JobProperties.Name,
            job.JobProperties.JobType,
            job.JobProperties.Owner or NO_VALUE,
            local_time(job.JobProperties.LastRunDate),
            status_name(job.JobProperties.LastRunStatus),
            _next_run(job, now),
        ]
        for job in jobs
    ]
    return render(["JOB ID", "NAME", "TYPE", "OWNER", "LAST RUN", "STATUS", "NEXT RUN"], rows)


def runs_table(runs: JobRuns, *, messages: bool = False) -> str:
    """One row per run, newest first: status, start, end, duration and messages by category.

    With ``messages``, each run's messages follow in a second table.
    """
    ordered = runs.newest_first()
    rows = [
        [
            run.JobRunID or NO_VALUE,
            _run_status(run),
            local_time(run.JobStartTime),
            local_time(run.JobEndTime) if run.is_finished else NO_VALUE,
            duration(run.duration_seconds),
            _message_counts(run),
        ]
        for run in ordered
    ]
    text = f"{runs.TotalJobRuns} run(s) in total, {len(ordered)} shown\n"
    text += render(["RUN ID", "STATUS", "STARTED", "ENDED", "DURATION", "MESSAGES"], rows)
    if messages:
        message_rows = [
            [
                run.JobRunID or NO_VALUE,
                local_time(message.DateTime),
                message.Category or NO_VALUE,
                message.Asset or NO_VALUE,
                " ".join(part for part in (message.Message, message.MessageDetails) if part) or NO_VALUE,
            ]
            for run in ordered
            for message in run.JobMessages
        ]
        if message_rows:
            text += "\n" + render(["RUN ID", "TIME", "CATEGORY", "ASSET", "MESSAGE"], message_rows)
    return text


def render(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns, two spaces apart, a header line first; the last column is not padded."""
    cells = [[_cell(value, len(row) - 1 == index) for index, value in enumerate(row)] for row in rows]
    widths = [len(header) for header in headers]
    for row in cells:
        for index, value in enumerate(row):
            widths[index] = max(widths[index], len(value))
    lines = []
    for row in [list(headers), *cells]:
        padded = [value.ljust(widths[index]) for index, value in enumerate(row[:-1])]
        lines.append(_COLUMN_GAP.join([*padded, row[-1]]).rstrip())
    return "\n".join(lines) + "\n"


def _cell(value: str, last: bool) -> str:
    text = "".join(char if char.isprintable() else _escaped(char) for char in value)
    limit = MAX_MESSAGE if last else MAX_CELL
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _escaped(char: str) -> str:
    if char in "\t\n\r":
        return " "
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _run_status(run: JobRun) -> str:
    name = status_name(run.Status)
    return f"{name} ({run.CustomStatusText})" if run.CustomStatusText else name


def _message_counts(run: JobRun) -> str:
    if not run.JobMessages:
        return str(run.MessageCount) if run.MessageCount else NO_VALUE
    counts = Counter((message.Category or "other").lower() for message in run.JobMessages)
    return ", ".join(f"{count} {category}" for category, count in sorted(counts.items()))


def _next_run(job: Job, now: datetime) -> str:
    config = job.JobConfigDetails
    schedule = derive_schedule(config.Schedule if config is not None else None)
    if not isinstance(schedule, Schedule):
        return NO_VALUE
    return local_time(next_occurrence(schedule, now))
