"""What a poll cycle hands on, as immutable data: job readings, run summaries and the job changes seen.

The poller builds these and nothing downstream writes back: metrics render a ``PollSnapshot``, and
the auditor turns its ``changes`` into audit records after the snapshot is published.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from ccs_exporter.models import Job, JobMessage, JobRuns, JobStatus
from ccs_exporter.schedule import Schedule

_FAILED_RUN_STATUSES = (JobStatus.FAULTED, JobStatus.ABORTED)
_MAX_CATEGORY_LENGTH = 64
# Message categories are CCS data: a run with thousands of distinct categories must not become thousands
# of series. These three always have a series; at most MAX_OTHER_CATEGORIES more (the most frequent, ties
# going to the first seen) and the rest counted together under OTHER_CATEGORY.
ALWAYS_CATEGORIES = ("error", "warning", "information")
MAX_OTHER_CATEGORIES = 10
OTHER_CATEGORY = "other"


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What the exporter keeps of a job's run history window: the derived figures, not the payload."""

    status_code: int
    start_seconds: float | None
    end_seconds: float | None
    duration_seconds: float | None
    messages: tuple[tuple[str, int], ...]
    total_runs: int
    last_success_seconds: float | None
    consecutive_failures: int
    running: bool


@dataclass(frozen=True, slots=True)
class JobSnapshot:
    """The last good reading of one job: its metadata, its run summary, and what its CCS schedule says.

    ``schedule`` and ``run_time_limit_seconds`` are None when unknown; the occurrences around a moment
    are computed from ``schedule`` when a snapshot is rendered, so they advance without a new reading.
    When it was read is no part of it (``JobState.read_at``): a job that does not change keeps the very
    same reading cycle after cycle, so nothing is allocated for it and comparing it costs nothing.
    """

    job_id: str
    name: str
    job_type: str
    owner: str
    is_system: bool
    last_run_status: int
    modified_seconds: float | None
    runs: RunSummary | None
    schedule: Schedule | None = None
    run_time_limit_seconds: float | None = None

    def with_runs(self, runs: RunSummary | None) -> JobSnapshot:
        """This reading with ``runs`` (the same job definition, read again): itself if they are equal."""
        if runs == self.runs:
            return self
        return JobSnapshot(
            self.job_id,
            self.name,
            self.job_type,
            self.owner,
            self.is_system,
            self.last_run_status,
            self.modified_seconds,
            runs,
            self.schedule,
            self.run_time_limit_seconds,
        )


@dataclass(frozen=True, slots=True)
class JobState:
    """One watched job in a published snapshot: its last good values and whether the last poll worked.

    ``read_at`` is when ``data`` was last read or found unchanged (None without data).
    """

    job_id: str
    data: JobSnapshot | None
    poll_success: bool
    error: str | None = None
    read_at: float | None = None


@dataclass(frozen=True, slots=True)
class JobChange:
    """A watched job appeared, its definition moved (JobModifiedTime), or it disappeared.

    ``before`` is the previous reading, None for a job created since the last complete listing of the
    searches; ``after`` is the new reading, None when the job is gone (404).
    """

    job_id: str
    before: Job | None
    after: Job | None

    @property
    def kind(self) -> str:
        """``created``, ``changed`` or ``deleted``."""
        if self.before is None:
            return "created"
        return "deleted" if self.after is None else "changed"


@dataclass(frozen=True, slots=True)
class SearchState:
    """One configured Search Jobs expression after a cycle: its last good listing and whether it worked.

    ``label`` is the bounded form of the expression used as the ``search`` label; ``jobs`` is how many
    jobs its last good listing matched; ``truncated`` says that listing stopped at the page bound.
    """

    label: str
    jobs: int
    success: bool
    truncated: bool = False
    error: str | None = None


@dataclass(frozen=True)
class PollSnapshot:
    """Everything one cycle learned; what /metrics renders. Immutable once published."""

    taken_at: float
    jobs: tuple[JobState, ...]
    up: bool
    last_success_at: float | None
    cycle_seconds: float
    cycles: int
    overruns: int = 0
    requests: int = 0
    runs_fetched: int = 0
    changes: tuple[JobChange, ...] = ()
    searches: tuple[SearchState, ...] = ()
    # Errors caught on the poll path so far, by stage (ccs_poll_errors_total); filled in by the loop.
    errors: tuple[tuple[str, int], ...] = ()
    # The loop completed no cycle for too long: this is the last snapshot republished by the watchdog,
    # with ``up`` false, so /readyz fails and ccs_up says 0.
    stalled: bool = False

    @property
    def failed_jobs(self) -> int:
        """How many jobs failed to poll in this cycle."""
        return sum(1 for job in self.jobs if not job.poll_success)


def epoch(value: datetime | None) -> float | None:
    """A UTC datetime as Unix seconds; None stays None."""
    return value.timestamp() if value is not None else None


def summarize_runs(runs: JobRuns, known_success: float | None = None) -> RunSummary:
    """Derive the metric figures from a jobruns answer (the window of latest runs).

    ``known_success`` is the last success seen before; it survives a window that no longer holds it.
    """
    ordered = runs.newest_first()
    latest = ordered[0] if ordered else None
    finished = [run for run in ordered if run.is_finished]
    last_finished = finished[0] if finished else None
    success = next((run for run in finished if run.status is JobStatus.COMPLETED), None)
    success_seconds = epoch(success.JobEndTime) if success is not None else None
    candidates = [value for value in (known_success, success_seconds) if value is not None]
    consecutive = 0
    for run in finished:
        if run.status is JobStatus.COMPLETED:
            break
        if run.status in _FAILED_RUN_STATUSES:
            consecutive += 1
    messages = _bounded_categories(latest.JobMessages if latest is not None else [])
    running = latest is not None and latest.status is not None and latest.status.is_running
    return RunSummary(
        status_code=latest.Status if latest is not None else 0,
        start_seconds=epoch(latest.JobStartTime) if latest is not None else None,
        end_seconds=epoch(last_finished.JobEndTime) if last_finished is not None else None,
        duration_seconds=last_finished.duration_seconds if last_finished is not None else None,
        messages=messages,
        total_runs=max(0, runs.TotalJobRuns),
        last_success_seconds=max(candidates) if candidates else None,
        consecutive_failures=consecutive,
        running=running,
    )


def _bounded_categories(messages: Iterable[JobMessage]) -> tuple[tuple[str, int], ...]:
    """Messages counted by category (sorted): the three usual ones, the most frequent others, ``other``.

    The counts always add up to the number of messages.
    """
    counts: Counter[str] = Counter(_category(message.Category) for message in messages)
    kept = {category: counts.pop(category, 0) for category in ALWAYS_CATEGORIES}
    overflow = counts.pop(OTHER_CATEGORY, 0)  # CCS's own "other" shares the overflow's series
    # most_common keeps first-seen order among equal counts (a stable sort of insertion order).
    ranked = counts.most_common()
    kept.update(ranked[:MAX_OTHER_CATEGORIES])
    overflow += sum(count for _, count in ranked[MAX_OTHER_CATEGORIES:])
    if overflow:
        kept[OTHER_CATEGORY] = overflow
    return tuple(sorted(kept.items()))


def _category(value: str | None) -> str:
    text = " ".join((value or "").split()).lower()
    return text[:_MAX_CATEGORY_LENGTH] or "unknown"
