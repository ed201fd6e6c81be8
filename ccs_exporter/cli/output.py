"""What the command line prints of CCS data: scrubbed of secrets, as JSON or as tables (``-o table``).

Tables show status names instead of codes, times in the machine's local zone, durations as ``1h 02m 05s``.
Pure formatting, no I/O. Table cells have control characters shown escaped and are cut to a readable
width, and JSON escapes what could drive or spoof a terminal, so hostile CCS data cannot redraw it.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel

from ccs_exporter.models import Job, JobRun, JobRuns, JobStatus
from ccs_exporter.redaction import Redactor
from ccs_exporter.schedule import Schedule, derive_schedule, next_occurrence

NO_VALUE = "-"
MAX_CELL = 60
MAX_MESSAGE = 160
_COLUMN_GAP = "  "
# json.dumps escapes C0 controls only: C1 controls and bidirectional overrides could still drive or spoof
# a terminal. Escaped, they are the same JSON strings.
_TERMINAL_UNSAFE = re.compile("[\u0080-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
_ModelT = TypeVar("_ModelT", bound=BaseModel)


def scrubbed(model: _ModelT, secrets: Iterable[str]) -> _ModelT:
    """A copy of ``model`` without secrets, removed as the audit log removes them (CCS echoes what users
    typed into jobs): the ``secrets`` given, values of secret-named keys, secret-looking text."""
    redact = Redactor(secrets)
    return type(model).model_validate(redact(model.model_dump(mode="json")))


def json_text(payload: Any) -> str:
    """``payload`` as indented JSON that is safe to print: terminal controls and lone surrogates escaped."""
    text = json.dumps(payload, indent=2, ensure_ascii=False)
    text = _TERMINAL_UNSAFE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
    # A lone surrogate (CCS sent "\udcff") cannot be encoded for the terminal; print its JSON escape.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


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


_SHORT_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escaped(char: str) -> str:
    if char in _SHORT_ESCAPES:  # seen, not turned into a space: "two\nlines" is not "two lines"
        return _SHORT_ESCAPES[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _run_status(run: JobRun) -> str:
    name = status_name(run.Status)
    return f"{name} ({run.CustomStatusText})" if run.CustomStatusText else name


def _message_counts(run: JobRun) -> str:
    if not run.JobMessages:  # CCS sent only the count: say where the messages are
        return f"{run.MessageCount} (--messages lists them)" if run.MessageCount else NO_VALUE
    counts = Counter((message.Category or "other").lower() for message in run.JobMessages)
    return ", ".join(f"{count} {category}" for category, count in sorted(counts.items()))


def _next_run(job: Job, now: datetime) -> str:
    config = job.JobConfigDetails
    schedule = derive_schedule(config.Schedule if config is not None else None)
    if not isinstance(schedule, Schedule):
        return NO_VALUE
    return local_time(next_occurrence(schedule, now))
