"""Rendering a snapshot once per cycle into ready bytes, and the store scrapes read them from.

The families are kept family by family, in both formats and gzip-compressed (``formats.RenderedFamily``),
so a scrape never calls CCS, never waits on a cycle and never renders it again. Job series are rendered
in parts of ``JOBS_PER_PART`` jobs, held as gzip members only, and a part whose jobs did not change is
reused from the last cycle. Their plain copy is made for plain scrapes: at publish while a scraper asked
for plain in the last ``PLAIN_WARM_SECONDS``, else on the first plain scrape.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from typing import NamedTuple

import structlog

from ccs_exporter.exposition.cycle import CycleCollector
from ccs_exporter.exposition.families import JOB_FAMILIES, JobsView, ScheduleTimes, schedule_times
from ccs_exporter.exposition.formats import Exposition, Format, Inflations, RenderedFamily, gzip_member
from ccs_exporter.polling.snapshot import JobState, PollSnapshot
from ccs_exporter.schedule import Schedule


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


log = structlog.get_logger(__name__)

JOBS_PER_PART = 512
# How long after a plain scrape each publish makes the plain copy (a scraper that asked for plain once
# asks again at its next interval); past it, plain copies are let go until plain is asked for again.
PLAIN_WARM_SECONDS = 600.0
# Families whose lines change at every rendering whatever the jobs' values: never used again.
_EVERY_RENDERING = frozenset({"ccs_job_data_age_seconds"})
_SCHEDULE_FAMILIES = frozenset(
    {
        "ccs_job_schedule_next_run_timestamp_seconds",
        "ccs_job_schedule_last_due_timestamp_seconds",
        "ccs_job_schedule_period_seconds",
    }
)


class _RenderedJobs(NamedTuple):
    """One part of the jobs as last rendered: what its lines depend on, and its families' parts."""

    keys: tuple[object, ...]
    times: tuple[ScheduleTimes | None, ...]
    parts: dict[str, bytes]  # family name -> its lines for these jobs as a gzip member (b"": none)


class _KnownTimes(NamedTuple):
    """A job's schedule times as computed at ``moment``."""

    schedule: Schedule
    moment: float
    times: ScheduleTimes


def _job_key(job: JobState) -> object:
    """Everything a job's lines depend on, except the age of its data and its schedule's occurrences.

    A job polled well is keyed by its reading itself: the very same object while the job does not
    change, so at rest no key is built and comparing one costs nothing.
    """
    data = job.data
    if job.poll_success and data is not None and data.job_id == job.job_id:
        return data
    return (job.job_id, job.poll_success, data)


def _render_part(lines: Iterator[str]) -> bytes:
    plain = "".join(lines).encode()
    return gzip_member((plain,)) if plain else b""


class ExpositionRenderer:
    """Renders snapshots, using again the parts of the job families whose jobs did not change.

    The result is byte for byte what rendering the snapshot afresh gives: a part is used again only when
    every value its lines show is equal, and schedule times are computed again once an occurrence passed.
    """

    def __init__(self, *, sparse_status: bool = False, inflations: Inflations | None = None) -> None:
        self._sparse_status = sparse_status
        self._rendered: list[_RenderedJobs] = []
        self._times: dict[str, _KnownTimes] = {}
        self.inflations = inflations if inflations is not None else Inflations()

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
            times = tuple(self.schedule_times(job, now, moment, known) for job in block)
            before = self._rendered[index] if index < len(self._rendered) else None
            same_jobs = before is not None and before.keys == keys
            same_times = same_jobs and before is not None and before.times == times
            jobs = JobsView.of(block, now, self._sparse_status, times)
            parts: dict[str, bytes] = {}
            for family in JOB_FAMILIES:
                reuse = same_times if family.name in _SCHEDULE_FAMILIES else same_jobs
                if before is not None and reuse and family.name not in _EVERY_RENDERING:
                    parts[family.name] = before.parts[family.name]
                else:
                    parts[family.name] = _render_part(family.lines(family.name, jobs))
            rendered.append(_RenderedJobs(keys, times, parts))
        self._rendered = rendered
        cycle = (RenderedFamily.of_metric(metric) for metric in CycleCollector(snapshot).collect())
        return Exposition((*self._job_families(rendered), *cycle), self.inflations)

    def schedule_times(
        self, job: JobState, now: float, moment: datetime, known: dict[str, _KnownTimes]
    ) -> ScheduleTimes | None:
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
        times = schedule_times(schedule, moment)
        self._times[job.job_id] = _KnownTimes(schedule, now, times)
        return times

    @staticmethod
    def _job_families(rendered: Sequence[_RenderedJobs]) -> Iterator[RenderedFamily]:
        for name, documentation, _, kind in JOB_FAMILIES:
            members = tuple(chunk.parts[name] for chunk in rendered if chunk.parts[name])
            family_name = name.removesuffix("_info") if kind == "info" else name
            yield RenderedFamily.of_deflated(family_name, kind, documentation, members)


class ExpositionStore:
    """Holds the latest rendered snapshot; the poll loop publishes, the HTTP server reads.

    ``sparse_status``: one ``ccs_job_last_run_status`` series per job instead of eight (``status_metric``).
    """

    def __init__(self, *, sparse_status: bool = False) -> None:
        self._current: Exposition | None = None
        self._stalled = False
        self._sparse_status = sparse_status
        self._renderer = ExpositionRenderer(sparse_status=sparse_status)
        self._plain_asked_at = -math.inf

    def publish(self, snapshot: PollSnapshot) -> None:
        """Render and compress ``snapshot`` (off the scrape path) and make it the current one.

        A stalled snapshot comes from the watchdog's thread while the loop's may be inside ``render``:
        it gets a renderer of its own, as the shared one keeps state between cycles. The plain copy is
        made here too while scrapers ask for plain, so that their scrapes rarely wait for it.
        """
        if snapshot.stalled:
            # Its plain copies share the loop's (Inflations has its own lock): one set of them held.
            inflations = self._renderer.inflations
            renderer = ExpositionRenderer(sparse_status=self._sparse_status, inflations=inflations)
            exposition = renderer.render(snapshot)
        else:
            exposition = self._renderer.render(snapshot)
        self._current = exposition
        self._stalled = snapshot.stalled
        if time.monotonic() - self._plain_asked_at > PLAIN_WARM_SECONDS:
            exposition.inflations.clear()
            return
        try:
            # After the swap, so that the last exposition's copy can go first; a plain scrape meanwhile
            # waits for this copy instead of making another.
            exposition.plain()
        except Exception as exc:  # out of memory, say: the publish stands; the first plain scrape retries
            log.warning("plain_copy_failed", error=type(exc).__name__, message=str(exc))

    def plain_asked(self) -> None:
        """A scraper asked for a plain body: plain copies are made at publish for a while."""
        self._plain_asked_at = time.monotonic()

    @property
    def stalled(self) -> bool:
        """True when the current exposition is the watchdog's: the poll loop stopped completing cycles."""
        return self._stalled

    @property
    def current(self) -> Exposition | None:
        """The latest exposition, or None before the first cycle."""
        return self._current
