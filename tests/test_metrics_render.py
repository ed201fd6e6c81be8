"""The directly written job exposition is byte for byte what prometheus_client makes of the families."""

from __future__ import annotations

import dataclasses
import gzip
import math
import random
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta, timezone
from typing import cast

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.registry import Collector

from ccs_exporter.exposition import formats, renderer
from ccs_exporter.exposition.cycle import CycleCollector
from ccs_exporter.exposition.families import label_value
from ccs_exporter.exposition.formats import Format
from ccs_exporter.exposition.renderer import ExpositionStore, render_exposition, render_snapshot
from ccs_exporter.models import JobStatus
from ccs_exporter.polling.snapshot import JobSnapshot, JobState, PollSnapshot, RunSummary
from ccs_exporter.schedule import (
    Schedule,
    ScheduleKind,
    last_occurrence,
    next_occurrence,
    period_seconds,
)

_AWKWARD_TEXT = (
    "Nightly PCI",
    'quote " and \\ backslash',
    "new\nline",
    "Prüfung 監査",
    "",
    "x" * 500,
    "bad \ud800 surrogate",
    "trailing \\",
)
_AWKWARD_NUMBERS = (0.0, 1.5, 1_790_000_000.123456, 1e22, 10**400, float("nan"), float("inf"), -3.0)

_STATUS_LABELS = tuple((status.value, status.label) for status in JobStatus)
_MAX_VALUE = 1e300


def _number(value: float) -> float:
    """Clamped as the exporter clamps: finite, NaN as 0."""
    try:
        number = float(value)
    except OverflowError:
        number = _MAX_VALUE if value > 0 else -_MAX_VALUE
    if math.isnan(number):
        return 0.0
    return max(-_MAX_VALUE, min(_MAX_VALUE, number))


class ReferenceJobCollector(Collector):
    """The job families as prometheus_client builds them: the reference the direct rendering must match."""

    def __init__(self, snapshot: PollSnapshot, sparse_status: bool = False) -> None:
        self._snapshot = snapshot
        self._sparse_status = sparse_status

    def collect(self) -> Iterator[Metric]:
        return _job_families(self._snapshot.jobs, self._snapshot.taken_at, self._sparse_status)


def _job_families(jobs: Iterable[JobState], now: float, sparse_status: bool) -> Iterator[Metric]:
    info = InfoMetricFamily(
        "ccs_job",
        "Job metadata from the job's last successful poll; join on job_id for names.",
        labels=["job_id", "job_name", "job_type", "job_owner", "is_system"],
    )

    def gauge(name: str, documentation: str, extra: tuple[str, ...] = ()) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, documentation, labels=["job_id", *extra])

    status = gauge(
        "ccs_job_last_run_status",
        "Latest run's status from the job's last successful poll: 1 for the current state.",
        ("status",),
    )
    code = gauge(
        "ccs_job_last_run_status_code",
        "Latest run's raw status code (0 none ... 7 aborted) from the job's last successful poll.",
    )
    start = gauge(
        "ccs_job_last_run_start_timestamp_seconds",
        "Start of the latest run (Unix time), from the job's last successful poll.",
    )
    end = gauge(
        "ccs_job_last_run_end_timestamp_seconds",
        "End of the latest finished run (Unix time), from the job's last successful poll.",
    )
    duration = gauge(
        "ccs_job_last_run_duration_seconds",
        "Duration of the latest finished run, from the job's last successful poll.",
    )
    messages = gauge(
        "ccs_job_last_run_messages",
        "Messages of the latest run by category (at most ten besides error, warning and information; "
        "the rest in other), from the job's last successful poll.",
        ("category",),
    )
    runs = gauge("ccs_job_runs", "Runs of the job (TotalJobRuns), from the job's last successful poll.")
    success = gauge(
        "ccs_job_last_success_timestamp_seconds",
        "End of the latest completed run seen up to the job's last successful poll (Unix time).",
    )
    failures = gauge(
        "ccs_job_consecutive_failures",
        "Faulted or aborted runs since the latest completed one in the history window, "
        "from the job's last successful poll.",
    )
    modified = gauge(
        "ccs_job_modified_timestamp_seconds",
        "When the job definition last changed (Unix time), from the job's last successful poll.",
    )
    poll = gauge("ccs_job_poll_success", "1 if the job's poll in the last cycle succeeded.")
    age = gauge(
        "ccs_job_data_age_seconds",
        "Seconds from the job's last successful poll to the end of the last poll cycle.",
    )
    next_run = gauge(
        "ccs_job_schedule_next_run_timestamp_seconds",
        "First occurrence of the job's CCS schedule after the end of the last poll cycle (Unix time).",
    )
    last_due = gauge(
        "ccs_job_schedule_last_due_timestamp_seconds",
        "Latest occurrence of the job's CCS schedule up to the end of the last poll cycle (Unix time).",
    )
    period = gauge(
        "ccs_job_schedule_period_seconds",
        "Nominal period of the job's CCS schedule (N days, N weeks, or N months of 2629746 s).",
    )
    limit = gauge(
        "ccs_job_run_time_limit_seconds",
        "Run-time limit configured for the job in CCS (EndJobRunTimeInterval).",
    )
    moment = datetime.fromtimestamp(now, timezone.utc)

    for job in jobs:
        job_id = job.job_id
        poll.add_metric([job_id], 1.0 if job.poll_success else 0.0)
        data = job.data
        if data is None:
            continue
        info.add_metric(
            [
                job_id,
                label_value(data.name),
                label_value(data.job_type),
                label_value(data.owner),
                "true" if data.is_system else "false",
            ],
            {},
        )
        if job.read_at is not None:
            age.add_metric([job_id], _number(max(0.0, now - job.read_at)))
        if data.run_time_limit_seconds is not None:
            limit.add_metric([job_id], _number(data.run_time_limit_seconds))
        if data.schedule is not None:
            following = next_occurrence(data.schedule, moment)
            latest = last_occurrence(data.schedule, moment)
            nominal = period_seconds(data.schedule)
            if following is not None:
                next_run.add_metric([job_id], following.timestamp())
            if latest is not None:
                last_due.add_metric([job_id], latest.timestamp())
            if nominal is not None:
                period.add_metric([job_id], float(nominal))
        if data.modified_seconds is not None:
            modified.add_metric([job_id], _number(data.modified_seconds))
        summary = data.runs
        status_code = summary.status_code if summary is not None else data.last_run_status
        code.add_metric([job_id], _number(status_code))
        for value, label in _STATUS_LABELS:
            if value == status_code or not sparse_status:
                status.add_metric([job_id, label], 1.0 if value == status_code else 0.0)
        if summary is None:
            continue
        runs.add_metric([job_id], _number(summary.total_runs))
        failures.add_metric([job_id], float(summary.consecutive_failures))
        for category, count in summary.messages:
            messages.add_metric([job_id, label_value(category)], float(count))
        if summary.start_seconds is not None:
            start.add_metric([job_id], _number(summary.start_seconds))
        if summary.end_seconds is not None:
            end.add_metric([job_id], _number(summary.end_seconds))
        if summary.duration_seconds is not None:
            duration.add_metric([job_id], _number(summary.duration_seconds))
        if summary.last_success_seconds is not None:
            success.add_metric([job_id], _number(summary.last_success_seconds))
    yield info
    yield from (status, code, start, end, duration, messages, runs, success, failures, modified, poll, age)
    yield from (next_run, last_due, period, limit)


def _reference(snapshot: PollSnapshot, fmt: Format = Format.TEXT, sparse_status: bool = False) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReferenceJobCollector(snapshot, sparse_status))
    registry.register(CycleCollector(snapshot))
    if fmt is Format.OPENMETRICS:
        return cast(Callable[[Collector], bytes], generate_openmetrics)(registry)
    return generate_latest(registry)


def _summary(rng: random.Random) -> RunSummary | None:
    if rng.random() < 0.2:
        return None
    maybe = lambda: rng.choice((None, *_AWKWARD_NUMBERS))  # noqa: E731
    return RunSummary(
        status_code=rng.choice((0, 1, 2, 4, 5, 7, 9, -1)),
        start_seconds=maybe(),
        end_seconds=maybe(),
        duration_seconds=maybe(),
        messages=tuple(sorted({rng.choice((*_AWKWARD_TEXT, "error", "warning")): rng.randint(0, 9)}.items())),
        total_runs=rng.choice((0, 3, 10**400)),
        last_success_seconds=maybe(),
        consecutive_failures=rng.randint(0, 5),
        running=rng.random() < 0.5,
    )


def _schedule(rng: random.Random) -> Schedule | None:
    """None, or a schedule of any kind, with odd offsets, fractions and starts at the calendar's ends."""
    if rng.random() < 0.3:
        return None
    offset = timezone(timedelta(minutes=rng.choice((0, 330, -480, 845, -719))))
    start = rng.choice(
        (
            datetime(2027, 1, 31, 4, 10, 0, 513000, tzinfo=offset),  # month end, a fraction
            datetime(2024, 2, 29, 23, 59, 59, tzinfo=offset),  # leap day
            datetime(2040, 6, 1, tzinfo=offset),  # after now: not yet due
            datetime(9999, 12, 30, tzinfo=offset),  # no occurrence after it
            datetime(1, 1, 2, tzinfo=offset),
        )
    )
    kind = rng.choice(tuple(ScheduleKind))
    every = rng.choice((1, 2, 50, 1200))
    return Schedule(
        kind,
        start=start,
        first=start,
        every=1 if kind is ScheduleKind.ONCE else every,
        weekday=rng.randint(0, 6),
        month_day=rng.choice((1, 29, 31)),
        ordinal=rng.randint(1, 5),
    )


def _snapshot(seed: int, jobs: int) -> PollSnapshot:
    rng = random.Random(seed)
    states = []
    for index in range(jobs):
        job_id = f"00000000-0000-4000-8000-{index:012d}"
        data = read_at = None
        if rng.random() > 0.15:
            data = JobSnapshot(
                job_id=job_id,
                name=rng.choice(_AWKWARD_TEXT),
                job_type=rng.choice(("CHAINED_EVALUATIONJOB", "REPORTJOB", 'odd"type')),
                owner=rng.choice(_AWKWARD_TEXT),
                is_system=rng.random() < 0.3,
                last_run_status=rng.choice((0, 4, 5, 11)),
                modified_seconds=rng.choice((None, *_AWKWARD_NUMBERS)),
                runs=_summary(rng),
                schedule=_schedule(rng),
                run_time_limit_seconds=rng.choice((None, 5400.0, 0.5, 31_622_400.0)),
            )
            read_at = rng.choice((1_999_999_990.25, 2_000_000_100.0, 0.0))
        states.append(JobState(job_id, data, poll_success=rng.random() < 0.8, error=None, read_at=read_at))
    return PollSnapshot(
        taken_at=2_000_000_000.0,
        jobs=tuple(states),
        up=True,
        last_success_at=None,
        cycle_seconds=1.0,
        cycles=2,
    )


class TestDirectRendering:
    """``render_snapshot`` writes the job series itself, for speed; the families are the reference."""

    def test_matches_the_prometheus_client_rendering_of_the_families(self) -> None:
        """Hostile names, missing data, absurd numbers and schedules of every kind render exactly as
        generate_latest renders them."""
        for seed in range(20):
            snapshot = _snapshot(seed, jobs=40)
            assert render_snapshot(snapshot) == _reference(snapshot), f"seed {seed}"

    def test_sparse_status_matches_the_reference_in_both_formats(self) -> None:
        """The sparse status metric renders as the reference's state set with only the states at 1."""
        for seed in range(5):
            snapshot = _snapshot(seed, jobs=40)
            for fmt in Format:
                rendered = render_snapshot(snapshot, fmt, sparse_status=True)
                if fmt is Format.OPENMETRICS:
                    rendered += b"# EOF\n"
                assert rendered == _reference(snapshot, fmt, sparse_status=True), f"seed {seed} {fmt}"

    def test_no_jobs_still_renders_every_family_header(self) -> None:
        """An empty job list gives the same headers-only families as the reference."""
        snapshot = _snapshot(0, jobs=0)
        assert render_snapshot(snapshot) == _reference(snapshot)

    def test_openmetrics_matches_the_prometheus_client_openmetrics_rendering(self) -> None:
        """The OpenMetrics rendering (plus its # EOF) is byte for byte client_python's OpenMetrics writer."""
        for seed in range(5):
            snapshot = _snapshot(seed, jobs=40)
            rendered = render_snapshot(snapshot, Format.OPENMETRICS) + b"# EOF\n"
            assert rendered == _reference(snapshot, Format.OPENMETRICS), f"seed {seed}"
        empty = _snapshot(0, jobs=0)
        assert render_snapshot(empty, Format.OPENMETRICS) + b"# EOF\n" == _reference(
            empty, Format.OPENMETRICS
        )


class TestRenderingAgain:
    """The store renders each cycle using again the parts of jobs that did not change: never stale."""

    @staticmethod
    def _cycles(seed: int) -> list[PollSnapshot]:
        """A run of snapshots: time moves (by seconds, past occurrences, back), jobs change, come and go."""
        rng = random.Random(seed)
        first = _snapshot(seed, jobs=60)
        other = _snapshot(seed + 1000, jobs=60)
        cycles = [first]
        for step in (1.0, 0.0, 3 * 86_400.0, 45.5, -30.0, 40 * 86_400.0, 400 * 86_400.0):
            jobs = list(cycles[-1].jobs)
            for _ in range(rng.randint(0, 3)):  # a few jobs read anew, with other values
                index = rng.randrange(len(jobs))
                jobs[index] = other.jobs[index]
            for index, job in enumerate(jobs):  # every reading refreshed: only its age moves
                if job.read_at is not None and rng.random() < 0.5:
                    jobs[index] = dataclasses.replace(job, read_at=job.read_at + step)
            if rng.random() < 0.4:
                del jobs[rng.randrange(len(jobs))]  # a job leaves: every later one moves up a place
            cycles.append(
                dataclasses.replace(cycles[-1], taken_at=cycles[-1].taken_at + step, jobs=tuple(jobs))
            )
        return cycles

    def test_every_cycle_renders_as_a_fresh_rendering(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Published one after the other, each snapshot's exposition, plain and gzip, in both formats and
        with either status metric, is byte for byte what rendering it on its own gives."""
        monkeypatch.setattr(renderer, "JOBS_PER_PART", 7)  # many parts, some used again, some not
        for seed in range(8):
            for sparse in (False, True):
                store = ExpositionStore(sparse_status=sparse)
                for index, snapshot in enumerate(self._cycles(seed)):
                    store.publish(snapshot)
                    published = store.current
                    assert published is not None
                    fresh = render_exposition(snapshot, sparse_status=sparse)
                    for fmt in Format:
                        expected = b"".join(fresh.body(fmt))
                        assert b"".join(published.body(fmt)) == expected, (seed, sparse, index, fmt)
                        unzipped = gzip.decompress(b"".join(published.body(fmt, gzipped=True)))
                        assert unzipped == expected, (seed, sparse, index, fmt)


class TestHeldCompressed:
    """The job families are held as gzip members only; a plain copy is made for plain scrapers."""

    def test_job_samples_are_held_only_as_gzip_members(self) -> None:
        """What the exposition holds plain is a small fraction of the plain body (headers, cycle
        families); the body, plain or gzip, is still the whole exposition."""
        store = ExpositionStore()
        store.publish(_snapshot(3, jobs=200))
        exposition = store.current
        assert exposition is not None and exposition.deflated and not exposition.plain_ready
        held_plain = sum(len(part) for family in exposition.families for part in family.text)
        plain = b"".join(exposition.body())
        assert held_plain * 10 < len(plain)
        assert gzip.decompress(b"".join(exposition.body(gzipped=True))) == plain
        assert plain == _reference(_snapshot(3, jobs=200))

    def test_plain_copies_are_made_at_publish_while_plain_is_asked(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """After a plain scrape, each publish makes the plain copy, sharing the parts that did not change
        with the last copy; once nobody asked for plain for PLAIN_WARM_SECONDS, copies are let go."""
        clock = [1_000.0]
        monkeypatch.setattr(renderer.time, "monotonic", lambda: clock[0])
        monkeypatch.setattr(renderer, "JOBS_PER_PART", 7)
        first = _snapshot(5, jobs=60)

        def at_rest(seconds: float) -> PollSnapshot:
            return dataclasses.replace(first, taken_at=first.taken_at + seconds)

        store = ExpositionStore()
        store.publish(first)
        assert store.current is not None and not store.current.plain_ready
        store.plain_asked()
        clock[0] += 15
        store.publish(at_rest(5))
        assert store.current is not None and store.current.plain_ready  # made at publish
        warm = store.current.body()
        store.publish(at_rest(10))
        rest = store.current.body()
        assert b"".join(rest) == b"".join(render_exposition(at_rest(10)).body())
        shared = {id(part) for part in warm} & {id(part) for part in rest}
        assert len(shared) > len(rest) // 2  # only the data age's parts (and the cycle's) are new
        clock[0] += renderer.PLAIN_WARM_SECONDS + 1
        store.publish(at_rest(15))
        cold = store.current
        assert cold is not None and not cold.plain_ready
        again = cold.body()  # a plain scrape now inflates everything anew
        assert not {id(part) for part in rest} & {id(part) for part in again}
        assert b"".join(again) == b"".join(render_exposition(at_rest(15)).body())

    def test_a_plain_copy_failing_at_publish_leaves_the_publish_done(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Out of memory while making the plain copy at publish: the new exposition is current all the
        same (the poll loop's publish does not fail), and the first plain scrape makes the copy."""
        store = ExpositionStore()
        store.plain_asked()
        snapshot = _snapshot(7, jobs=30)

        def out_of_memory(member: bytes) -> bytes:
            raise MemoryError

        monkeypatch.setattr(formats, "inflate", out_of_memory)
        store.publish(snapshot)
        assert store.current is not None and not store.current.plain_ready
        monkeypatch.undo()
        assert b"".join(store.current.body()) == b"".join(render_exposition(snapshot).body())

    def test_a_stalled_exposition_shares_the_plain_copies(self) -> None:
        """The watchdog's stalled exposition uses the loop's plain copies: warm, it holds one set of them
        and a later cold publish lets them all go."""
        store = ExpositionStore()
        store.plain_asked()
        store.publish(_snapshot(8, jobs=30))
        stalled = dataclasses.replace(_snapshot(8, jobs=30), stalled=True)
        store.publish(stalled)
        assert store.current is not None and store.current.plain_ready and store.stalled
        assert store.current.inflations is store._renderer.inflations
