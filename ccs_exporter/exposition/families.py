"""Prometheus exposition of a poll snapshot: job and cycle series, rendered once per poll cycle.

The families come from an immutable ``PollSnapshot`` and are kept as ready bytes, family by family, in
both formats and gzip-compressed (``exposition.RenderedFamily``), so a scrape never calls CCS, never
waits on a cycle and never renders it again. The exporter's own per-scrape series are in ``live``.
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
from datetime import datetime, timezone
from typing import Any, Literal, NamedTuple, cast

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from ccs_exporter.exposition.formats import Exposition, Format, RenderedFamily, gzip_member
from ccs_exporter.models import JobStatus
from ccs_exporter.polling.snapshot import JobSnapshot, JobState, PollSnapshot, RunSummary, SearchState
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


def _number(value: float) -> float:
    """A finite float: absurd values from CCS are clamped rather than breaking the exposition."""
    try:
        number = float(value)
    except OverflowError:
        number = _MAX_VALUE if value > 0 else -_MAX_VALUE
    if math.isnan(number):
        return 0.0
    return max(-_MAX_VALUE, min(_MAX_VALUE, number))


class CycleCollector(Collector):
    """Yields the poll-cycle families of one snapshot (``ccs_up``, durations, counters)."""

    def __init__(self, snapshot: PollSnapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snapshot = self._snapshot
        yield _gauge("ccs_up", "1 if the last poll cycle could log in to CCS and reach it.", snapshot.up)
        if snapshot.last_success_at is not None:
            yield _gauge(
                "ccs_last_poll_success_timestamp_seconds",
                "When a poll cycle last reached CCS (Unix time).",
                snapshot.last_success_at,
            )
        yield _gauge("ccs_poll_duration_seconds", "Length of the last poll cycle.", snapshot.cycle_seconds)
        yield _gauge(
            "ccs_watched_jobs",
            "Jobs watched in the last poll cycle: configured ids and jobs the searches found "
            "(this shard's share).",
            len(snapshot.jobs),
        )
        yield from _search_families(snapshot.searches)
        yield CounterMetricFamily("ccs_poll_cycles", "Poll cycles completed.", value=snapshot.cycles)
        yield CounterMetricFamily(
            "ccs_poll_overruns",
            "Poll cycles that took longer than the poll interval.",
            value=snapshot.overruns,
        )
        if snapshot.errors:
            errors = CounterMetricFamily(
                "ccs_poll_errors",
                "Unexpected errors caught on the poll path, by where (the cycle went on).",
                labels=["stage"],
            )
            for stage, count in snapshot.errors:
                errors.add_metric([stage], float(count))
            yield errors
        yield _gauge(
            "ccs_poll_stalled",
            "1 if no poll cycle has completed for longer than max(3 poll intervals, 60 s).",
            1.0 if snapshot.stalled else 0.0,
        )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=_number(value))


def _search_families(searches: Sequence[SearchState]) -> Iterator[Metric]:
    """``ccs_search_jobs``, ``ccs_search_success`` and ``ccs_search_truncated`` by ``search`` label."""
    if not searches:
        return
    jobs = GaugeMetricFamily(
        "ccs_search_jobs", "Jobs the search matched in its last good listing.", labels=["search"]
    )
    success = GaugeMetricFamily(
        "ccs_search_success", "1 if the search's last listing succeeded.", labels=["search"]
    )
    truncated = GaugeMetricFamily(
        "ccs_search_truncated",
        "1 if the search's last good listing stopped at the page or job bound.",
        labels=["search"],
    )
    for search in searches:
        label = [label_value(search.label)]
        jobs.add_metric(label, float(search.jobs))
        success.add_metric(label, 1.0 if search.success else 0.0)
        truncated.add_metric(label, 1.0 if search.truncated else 0.0)
    yield from (jobs, success, truncated)


def render_snapshot(
    snapshot: PollSnapshot, fmt: Format = Format.TEXT, *, sparse_status: bool = False
) -> bytes:
    """The exposition of one snapshot's job and cycle families (OpenMetrics without ``# EOF``)."""
    return b"".join(render_exposition(snapshot, sparse_status=sparse_status).body(fmt))


def render_exposition(snapshot: PollSnapshot, *, sparse_status: bool = False) -> Exposition:
    """The job and cycle families of ``snapshot``, each ready in both formats, plain and gzip.

    ``sparse_status``: ``ccs_job_last_run_status`` has only each job's current state (``status_metric``).
    """
    return ExpositionRenderer(sparse_status=sparse_status).render(snapshot)


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


class _ScheduleTimes(NamedTuple):
    """A scheduled job's occurrences around the snapshot's moment (None where there is none)."""

    next_run: float | None
    last_due: float | None
    period: float | None


@dataclass(frozen=True)
class _Jobs:
    """The jobs of one snapshot, each with its ``job_id="..."`` label formatted once."""

    states: Sequence[JobState]
    with_data: list[tuple[str, JobSnapshot]]
    summaries: list[tuple[str, RunSummary]]
    schedules: list[tuple[str, _ScheduleTimes]]
    now: float
    sparse_status: bool

    @classmethod
    def of(
        cls,
        states: Sequence[JobState],
        now: float,
        sparse_status: bool,
        times: Sequence[_ScheduleTimes | None],
    ) -> _Jobs:
        """``times``: each state's schedule times (None for a job without data or schedule)."""
        with_data: list[tuple[str, JobSnapshot]] = []
        schedules: list[tuple[str, _ScheduleTimes]] = []
        for job, job_times in zip(states, times, strict=True):
            if job.data is not None:
                ids = f'job_id="{_escape(job.job_id)}"'
                with_data.append((ids, job.data))
                if job_times is not None:
                    schedules.append((ids, job_times))
        summaries = [(ids, data.runs) for ids, data in with_data if data.runs is not None]
        return cls(states, with_data, summaries, schedules, now, sparse_status)


def _schedule_times(schedule: Schedule, moment: datetime) -> _ScheduleTimes:
    """The next and latest occurrence of ``schedule`` around ``moment`` and its period, as Unix times."""
    try:
        following = next_occurrence(schedule, moment)
        latest = last_occurrence(schedule, moment)
    except (OverflowError, ValueError):  # the edge of the calendar: nothing to show rather than no /metrics
        following = latest = None
    period = period_seconds(schedule)
    return _ScheduleTimes(
        following.timestamp() if following is not None else None,
        latest.timestamp() if latest is not None else None,
        float(period) if period is not None else None,
    )


def _status_code(data: JobSnapshot) -> float:
    return data.runs.status_code if data.runs is not None else data.last_run_status


def _info_lines(name: str, jobs: _Jobs) -> Iterator[str]:
    for ids, data in jobs.with_data:
        system = "true" if data.is_system else "false"
        yield (
            f'{name}{{is_system="{system}",{ids},job_name="{_escape(label_value(data.name))}",'
            f'job_owner="{_escape(label_value(data.owner))}",job_type="{_escape(label_value(data.job_type))}"}}'
            " 1.0\n"
        )


def _state_set_lines(name: str, jobs: _Jobs) -> Iterator[str]:
    """Eight series per job, the current state at 1; sparse: only the current state's (none if unknown)."""
    for ids, data in jobs.with_data:
        code = _status_code(data)
        if jobs.sparse_status:
            if (label := _STATUS_LABEL_OF.get(int(code))) is not None:
                yield f'{name}{{{ids},status="{label}"}} 1.0\n'
            continue
        for value, label in _STATUS_LABELS:
            yield f'{name}{{{ids},status="{label}"}} {"1.0" if value == code else "0.0"}\n'


def _status_code_lines(name: str, jobs: _Jobs) -> Iterator[str]:
    for ids, data in jobs.with_data:
        yield f"{name}{{{ids}}} {_format_value(_number(_status_code(data)))}\n"


def _optional_lines(
    source: Literal["summaries", "schedules"], field: str
) -> Callable[[str, _Jobs], Iterator[str]]:
    """Lines of one optional number of each job's run summary or schedule times (none where it is None)."""

    def lines(name: str, jobs: _Jobs) -> Iterator[str]:
        entries: list[tuple[str, Any]] = getattr(jobs, source)
        for ids, entry in entries:
            value = getattr(entry, field)
            if value is not None:
                yield f"{name}{{{ids}}} {_format_value(_number(value))}\n"

    return lines


def _summary_lines(field: str) -> Callable[[str, _Jobs], Iterator[str]]:
    """Lines of one optional number of the run summary (jobs without it have no series)."""
    return _optional_lines("summaries", field)


def _message_lines(name: str, jobs: _Jobs) -> Iterator[str]:
    for ids, summary in jobs.summaries:
        for category, count in summary.messages:
            label = _escape(label_value(category))
            yield f'{name}{{category="{label}",{ids}}} {_format_value(float(count))}\n'


def _failure_lines(name: str, jobs: _Jobs) -> Iterator[str]:
    for ids, summary in jobs.summaries:
        yield f"{name}{{{ids}}} {_format_value(float(summary.consecutive_failures))}\n"


def _modified_lines(name: str, jobs: _Jobs) -> Iterator[str]:
    for ids, data in jobs.with_data:
        if data.modified_seconds is not None:
            yield f"{name}{{{ids}}} {_format_value(_number(data.modified_seconds))}\n"


def _poll_success_lines(name: str, jobs: _Jobs) -> Iterator[str]:
    for job in jobs.states:
        yield f'{name}{{job_id="{_escape(job.job_id)}"}} {"1.0" if job.poll_success else "0.0"}\n'


def _age_lines(name: str, jobs: _Jobs) -> Iterator[str]:
    for ids, data in jobs.with_data:
        yield f"{name}{{{ids}}} {_format_value(_number(max(0.0, jobs.now - data.read_at)))}\n"


def _schedule_lines(field: str) -> Callable[[str, _Jobs], Iterator[str]]:
    """Lines of one of the scheduled jobs' times (jobs without a schedule or that time have none)."""
    return _optional_lines("schedules", field)


def _run_time_limit_lines(name: str, jobs: _Jobs) -> Iterator[str]:
    for ids, data in jobs.with_data:
        if data.run_time_limit_seconds is not None:
            yield f"{name}{{{ids}}} {_format_value(_number(data.run_time_limit_seconds))}\n"


class _JobFamily(NamedTuple):
    name: str  # the name of its samples (and of the family in the text format)
    documentation: str
    lines: Callable[[str, _Jobs], Iterator[str]]
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
JOBS_PER_PART = 512
# Families whose lines change at every rendering whatever the jobs' values: never used again.
_EVERY_RENDERING = frozenset({"ccs_job_data_age_seconds"})
_SCHEDULE_FAMILIES = frozenset(
    {
        "ccs_job_schedule_next_run_timestamp_seconds",
        "ccs_job_schedule_last_due_timestamp_seconds",
        "ccs_job_schedule_period_seconds",
    }
)


class _Part(NamedTuple):
    """One family's lines for one part of the jobs, plain and as a gzip member (both empty: no lines)."""

    plain: bytes
    member: bytes


class _RenderedJobs(NamedTuple):
    """One part of the jobs as last rendered: what its lines depend on, and its families' parts."""

    keys: tuple[object, ...]
    times: tuple[_ScheduleTimes | None, ...]
    parts: dict[str, _Part]


class _KnownTimes(NamedTuple):
    """A job's schedule times as computed at ``moment``."""

    schedule: Schedule
    moment: float
    times: _ScheduleTimes


def _job_key(job: JobState) -> tuple[object, ...]:
    """Everything a job's lines depend on, except the age of its data and its schedule's occurrences."""
    data = job.data
    if data is None:
        return (job.job_id, job.poll_success)
    return (
        job.job_id,
        job.poll_success,
        data.name,
        data.job_type,
        data.owner,
        data.is_system,
        data.last_run_status,
        data.modified_seconds,
        data.runs,
        data.schedule,
        data.run_time_limit_seconds,
    )


def _render_part(lines: Iterator[str]) -> _Part:
    plain = "".join(lines).encode()
    return _Part(plain, gzip_member((plain,))) if plain else _Part(b"", b"")


class ExpositionRenderer:
    """Renders snapshots, using again the parts of the job families whose jobs did not change.

    The result is byte for byte what rendering the snapshot afresh gives: a part is used again only when
    every value its lines show is equal, and schedule times are computed again once an occurrence passed.
    """

    def __init__(self, *, sparse_status: bool = False) -> None:
        self._sparse_status = sparse_status
        self._rendered: list[_RenderedJobs] = []
        self._times: dict[str, _KnownTimes] = {}

    def render(self, snapshot: PollSnapshot) -> Exposition:
        """The job and cycle families of ``snapshot``, each ready in both formats, plain and gzip."""
        now = snapshot.taken_at
        moment = datetime.fromtimestamp(now, timezone.utc)
        states = snapshot.jobs
        known, self._times = self._times, {}
        rendered: list[_RenderedJobs] = []
        for index, start in enumerate(range(0, len(states), JOBS_PER_PART)):
            block = states[start : start + JOBS_PER_PART]
            keys = tuple(_job_key(job) for job in block)
            times = tuple(self._schedule_times(job, now, moment, known) for job in block)
            before = self._rendered[index] if index < len(self._rendered) else None
            same_jobs = before is not None and before.keys == keys
            same_times = same_jobs and before is not None and before.times == times
            jobs = _Jobs.of(block, now, self._sparse_status, times)
            parts: dict[str, _Part] = {}
            for family in JOB_FAMILIES:
                reuse = same_times if family.name in _SCHEDULE_FAMILIES else same_jobs
                if before is not None and reuse and family.name not in _EVERY_RENDERING:
                    parts[family.name] = before.parts[family.name]
                else:
                    parts[family.name] = _render_part(family.lines(family.name, jobs))
            rendered.append(_RenderedJobs(keys, times, parts))
        self._rendered = rendered
        cycle = (RenderedFamily.of_metric(metric) for metric in CycleCollector(snapshot).collect())
        return Exposition((*self._job_families(rendered), *cycle))

    def _schedule_times(
        self, job: JobState, now: float, moment: datetime, known: dict[str, _KnownTimes]
    ) -> _ScheduleTimes | None:
        """The job's schedule times at ``now``: those computed before while no occurrence passed since."""
        schedule = job.data.schedule if job.data is not None else None
        if schedule is None:
            return None
        before = known.get(job.job_id)
        if before is not None and (before.schedule is schedule or before.schedule == schedule):
            next_run = before.times.next_run
            # Nothing occurred between then and now: the next run and the last due are the same. (The
            # margin covers rounding ``now`` to the microseconds of ``moment``.)
            passed = next_run is not None and now + 0.001 >= next_run
            settled = next_run is not None or before.times.last_due is not None  # not a calendar edge
            if before.moment <= now and not passed and settled:
                self._times[job.job_id] = before
                return before.times
        times = _schedule_times(schedule, moment)
        self._times[job.job_id] = _KnownTimes(schedule, now, times)
        return times

    @staticmethod
    def _job_families(rendered: Sequence[_RenderedJobs]) -> Iterator[RenderedFamily]:
        for name, documentation, _, kind in JOB_FAMILIES:
            parts = [chunk.parts[name] for chunk in rendered]
            samples = tuple(part.plain for part in parts if part.plain)
            members = tuple(part.member for part in parts if part.member)
            family_name = name.removesuffix("_info") if kind == "info" else name
            yield RenderedFamily.of_parts(family_name, kind, documentation, samples, members)


class ExpositionStore:
    """Holds the latest rendered snapshot; the poll loop publishes, the HTTP server reads.

    ``sparse_status``: one ``ccs_job_last_run_status`` series per job instead of eight (``status_metric``).
    """

    def __init__(self, *, sparse_status: bool = False) -> None:
        self._current: Exposition | None = None
        self._stalled = False
        self._sparse_status = sparse_status
        self._renderer = ExpositionRenderer(sparse_status=sparse_status)

    def publish(self, snapshot: PollSnapshot) -> None:
        """Render and compress ``snapshot`` (off the scrape path) and make it the current one.

        A stalled snapshot comes from the watchdog's thread while the loop's may be inside ``render``:
        it gets a renderer of its own, as the shared one keeps state between cycles.
        """
        if snapshot.stalled:
            self._current = ExpositionRenderer(sparse_status=self._sparse_status).render(snapshot)
        else:
            self._current = self._renderer.render(snapshot)
        self._stalled = snapshot.stalled

    @property
    def stalled(self) -> bool:
        """True when the current exposition is the watchdog's: the poll loop stopped completing cycles."""
        return self._stalled

    @property
    def current(self) -> Exposition | None:
        """The latest exposition, or None before the first cycle."""
        return self._current
