"""Prometheus exposition: job series rendered once per poll cycle, exporter health rendered per scrape.

The job part comes from an immutable ``PollSnapshot`` through a private registry and fresh metric
families, and is kept as ready bytes (plain and gzip) so a scrape never calls CCS and never waits on a
cycle. The live part (build info, CCS request counters and latency, process metrics, and any collectors
the composition adds) is small and rendered on each scrape. Sample of the job part::

    # HELP ccs_job_last_run_status Latest run's status as a state set: 1 for the current state.
    # TYPE ccs_job_last_run_status gauge
    ccs_job_last_run_status{job_id="23c59087-f3d4-4e05-a39e-3440c58e58fb",status="faulted"} 1.0
    # HELP ccs_job_last_run_end_timestamp_seconds End of the latest finished run (Unix time).
    # TYPE ccs_job_last_run_end_timestamp_seconds gauge
    ccs_job_last_run_end_timestamp_seconds{job_id="23c59087-f3d4-4e05-a39e-3440c58e58fb"} 1.7795e+09
"""

from __future__ import annotations

import itertools
import math
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import cast

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from ccs_exporter import __version__
from ccs_exporter.models import JobStatus
from ccs_exporter.snapshot import JobSnapshot, JobState, PollSnapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_LABEL_LENGTH = 200
TRUNCATION_MARKER = "...[truncated]"
# Larger than any float a metric needs; clamps absurd numbers CCS might send (a 400-digit int).
_MAX_VALUE = 1e300
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_STATUS_LABELS = tuple((status.value, status.label) for status in JobStatus)
# prometheus_client's own float formatting (untyped there), so the directly written job series match it.
_format_value = cast(Callable[[float], str], floatToGoString)
_LINES_PER_PART = 4096


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


class SnapshotCollector(Collector):
    """Yields the job and poll-cycle families of one snapshot (``jobs=False``: the cycle families only).

    This is the reference form of the job series, for a registry; ``render_snapshot`` writes the same
    text directly, because 10,000 jobs make some 220,000 samples (a test keeps the two identical).
    """

    def __init__(self, snapshot: PollSnapshot, *, jobs: bool = True) -> None:
        self._snapshot = snapshot
        self._jobs = jobs

    def collect(self) -> Iterator[Metric]:
        snapshot = self._snapshot
        if self._jobs:
            yield from _job_families(snapshot.jobs, snapshot.taken_at)
        yield _gauge("ccs_up", "1 if the last cycle could log in to CCS and reach it.", snapshot.up)
        if snapshot.last_success_at is not None:
            yield _gauge(
                "ccs_last_poll_success_timestamp_seconds",
                "When a poll cycle last reached CCS (Unix time).",
                snapshot.last_success_at,
            )
        yield _gauge("ccs_poll_duration_seconds", "Length of the last poll cycle.", snapshot.cycle_seconds)
        yield _gauge("ccs_watched_jobs", "Job ids the exporter is configured to watch.", len(snapshot.jobs))
        yield CounterMetricFamily("ccs_poll_cycles", "Poll cycles completed.", value=snapshot.cycles)
        yield CounterMetricFamily(
            "ccs_poll_overruns",
            "Poll cycles that took longer than the poll interval.",
            value=snapshot.overruns,
        )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=_number(value))


def _job_families(jobs: Iterable[JobState], now: float) -> Iterator[Metric]:
    info = InfoMetricFamily(
        "ccs_job",
        "Job metadata; join on job_id for names.",
        labels=["job_id", "job_name", "job_type", "job_owner", "is_system"],
    )

    def gauge(name: str, documentation: str, extra: tuple[str, ...] = ()) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, documentation, labels=["job_id", *extra])

    status = gauge(
        "ccs_job_last_run_status", "Latest run's status as a state set: 1 for the current state.", ("status",)
    )
    code = gauge("ccs_job_last_run_status_code", "Latest run's raw status code (0 none ... 7 aborted).")
    start = gauge("ccs_job_last_run_start_timestamp_seconds", "Start of the latest run (Unix time).")
    end = gauge("ccs_job_last_run_end_timestamp_seconds", "End of the latest finished run (Unix time).")
    duration = gauge("ccs_job_last_run_duration_seconds", "Duration of the latest finished run.")
    messages = gauge("ccs_job_last_run_messages", "Messages of the latest run by category.", ("category",))
    runs = gauge("ccs_job_runs", "Runs of the job (TotalJobRuns).")
    success = gauge(
        "ccs_job_last_success_timestamp_seconds", "End of the latest completed run seen (Unix time)."
    )
    failures = gauge(
        "ccs_job_consecutive_failures",
        "Faulted or aborted runs since the latest completed one, in the window.",
    )
    modified = gauge(
        "ccs_job_modified_timestamp_seconds", "When the job definition last changed (Unix time)."
    )
    poll = gauge("ccs_job_poll_success", "1 if the job's last poll succeeded.")
    age = gauge("ccs_job_data_age_seconds", "Seconds since this job's values were last read from CCS.")

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
        age.add_metric([job_id], _number(max(0.0, now - data.read_at)))
        if data.modified_seconds is not None:
            modified.add_metric([job_id], _number(data.modified_seconds))
        summary = data.runs
        status_code = summary.status_code if summary is not None else data.last_run_status
        code.add_metric([job_id], _number(status_code))
        for value, label in _STATUS_LABELS:
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


def render_snapshot(snapshot: PollSnapshot) -> bytes:
    """The text exposition of one snapshot's job and cycle families."""
    return b"".join(_render_parts(snapshot))


def _render_parts(snapshot: PollSnapshot) -> tuple[bytes, ...]:
    """The exposition in consecutive pieces (one per family): never joined into one 20 MB buffer."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot, jobs=False))
    return (*_job_exposition(snapshot.jobs, snapshot.taken_at), generate_latest(registry))


def _escape(value: str) -> str:
    """A label value escaped as the text format (and prometheus_client) does."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _job_exposition(jobs: Sequence[JobState], now: float) -> Iterator[bytes]:
    """The job families as text, byte for byte what ``generate_latest`` makes of ``_job_families``.

    Written directly, one family at a time, with each job's ``job_id`` label formatted once: building
    prometheus_client samples for 10,000 jobs took seconds of CPU (holding the GIL that scrapes need)
    and over a hundred megabytes at its peak.
    """
    fmt = _format_value
    with_data = [(f'job_id="{_escape(job.job_id)}"', job.data) for job in jobs if job.data is not None]
    summaries = [(ids, data.runs) for ids, data in with_data if data.runs is not None]

    def family(name: str, documentation: str, lines: Iterable[str]) -> Iterator[bytes]:
        help_text = documentation.replace("\\", "\\\\").replace("\n", "\\n")
        yield f"# HELP {name} {help_text}\n# TYPE {name} gauge\n".encode()
        # Parts of a few hundred kilobytes: whole families (8 MB for the state set) made copies that
        # raised the peak and fragmented the heap, so resident memory grew cycle after cycle.
        pending = iter(lines)
        while batch := list(itertools.islice(pending, _LINES_PER_PART)):
            yield "".join(batch).encode()

    def code_of(data: JobSnapshot) -> float:
        return data.runs.status_code if data.runs is not None else data.last_run_status

    yield from family(
        "ccs_job_info",
        "Job metadata; join on job_id for names.",
        (
            f'ccs_job_info{{is_system="{"true" if data.is_system else "false"}",{ids},'
            f'job_name="{_escape(label_value(data.name))}",job_owner="{_escape(label_value(data.owner))}",'
            f'job_type="{_escape(label_value(data.job_type))}"}} 1.0\n'
            for ids, data in with_data
        ),
    )
    yield from family(
        "ccs_job_last_run_status",
        "Latest run's status as a state set: 1 for the current state.",
        (
            f'ccs_job_last_run_status{{{ids},status="{label}"}} {"1.0" if value == code else "0.0"}\n'
            for ids, data in with_data
            for code in (code_of(data),)
            for value, label in _STATUS_LABELS
        ),
    )
    yield from family(
        "ccs_job_last_run_status_code",
        "Latest run's raw status code (0 none ... 7 aborted).",
        (f"ccs_job_last_run_status_code{{{ids}}} {fmt(_number(code_of(data)))}\n" for ids, data in with_data),
    )
    for name, documentation, field in (
        ("ccs_job_last_run_start_timestamp_seconds", "Start of the latest run (Unix time).", "start_seconds"),
        (
            "ccs_job_last_run_end_timestamp_seconds",
            "End of the latest finished run (Unix time).",
            "end_seconds",
        ),
        ("ccs_job_last_run_duration_seconds", "Duration of the latest finished run.", "duration_seconds"),
    ):
        yield from family(
            name,
            documentation,
            (
                f"{name}{{{ids}}} {fmt(_number(value))}\n"
                for ids, summary in summaries
                for value in (getattr(summary, field),)
                if value is not None
            ),
        )
    yield from family(
        "ccs_job_last_run_messages",
        "Messages of the latest run by category.",
        (
            f'ccs_job_last_run_messages{{category="{_escape(label_value(category))}",{ids}}} '
            f"{fmt(float(count))}\n"
            for ids, summary in summaries
            for category, count in summary.messages
        ),
    )
    yield from family(
        "ccs_job_runs",
        "Runs of the job (TotalJobRuns).",
        (f"ccs_job_runs{{{ids}}} {fmt(_number(summary.total_runs))}\n" for ids, summary in summaries),
    )
    yield from family(
        "ccs_job_last_success_timestamp_seconds",
        "End of the latest completed run seen (Unix time).",
        (
            f"ccs_job_last_success_timestamp_seconds{{{ids}}} {fmt(_number(summary.last_success_seconds))}\n"
            for ids, summary in summaries
            if summary.last_success_seconds is not None
        ),
    )
    yield from family(
        "ccs_job_consecutive_failures",
        "Faulted or aborted runs since the latest completed one, in the window.",
        (
            f"ccs_job_consecutive_failures{{{ids}}} {fmt(float(summary.consecutive_failures))}\n"
            for ids, summary in summaries
        ),
    )
    yield from family(
        "ccs_job_modified_timestamp_seconds",
        "When the job definition last changed (Unix time).",
        (
            f"ccs_job_modified_timestamp_seconds{{{ids}}} {fmt(_number(data.modified_seconds))}\n"
            for ids, data in with_data
            if data.modified_seconds is not None
        ),
    )
    yield from family(
        "ccs_job_poll_success",
        "1 if the job's last poll succeeded.",
        (
            f'ccs_job_poll_success{{job_id="{_escape(job.job_id)}"}} {"1.0" if job.poll_success else "0.0"}\n'
            for job in jobs
        ),
    )
    yield from family(
        "ccs_job_data_age_seconds",
        "Seconds since this job's values were last read from CCS.",
        (
            f"ccs_job_data_age_seconds{{{ids}}} {fmt(_number(max(0.0, now - data.read_at)))}\n"
            for ids, data in with_data
        ),
    )


@dataclass(frozen=True)
class Exposition:
    """One rendered snapshot, plain (in consecutive parts) and gzip-compressed, ready for a scraper.

    The server writes the parts with one gathered write; keeping them apart spares a copy of the whole
    text (20 MB at 10,000 jobs) at every publish, which the memory target cannot afford.
    """

    parts: tuple[bytes, ...]
    gzipped: bytes

    @property
    def text(self) -> bytes:
        """The whole plain exposition (joined on demand)."""
        return b"".join(self.parts)


class ExpositionStore:
    """Holds the latest rendered snapshot; the poll loop publishes, the HTTP server reads."""

    def __init__(self) -> None:
        self._current: Exposition | None = None

    def publish(self, snapshot: PollSnapshot) -> None:
        """Render and compress ``snapshot`` (off the scrape path) and make it the current one."""
        parts = _render_parts(snapshot)
        compressor = zlib.compressobj(1, zlib.DEFLATED, 31)  # 31: a gzip stream; deflate releases the GIL
        gzipped = b"".join([*(compressor.compress(part) for part in parts), compressor.flush()])
        self._current = Exposition(parts, gzipped)

    @property
    def current(self) -> Exposition | None:
        """The latest exposition, or None before the first cycle."""
        return self._current


class RequestStats(Collector):
    """Counts and times every HTTP attempt to CCS; its ``observe`` is the client's observer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}
        self._buckets: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}

    def observe(self, endpoint: str, code: str, seconds: float) -> None:
        """Record one attempt: endpoint template, status code (or error/timeout) and its duration."""
        with self._lock:
            key = (endpoint, code)
            self._counts[key] = self._counts.get(key, 0) + 1
            buckets = self._buckets.setdefault(endpoint, [0] * (len(_LATENCY_BUCKETS) + 1))
            for index, bound in enumerate(_LATENCY_BUCKETS):
                if seconds <= bound:
                    buckets[index] += 1
            buckets[-1] += 1
            self._sums[endpoint] = self._sums.get(endpoint, 0.0) + seconds

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            counts = dict(self._counts)
            buckets = {endpoint: list(values) for endpoint, values in self._buckets.items()}
            sums = dict(self._sums)
        requests = CounterMetricFamily(
            "ccs_api_requests",
            "HTTP requests to CCS by endpoint and status code.",
            labels=["endpoint", "code"],
        )
        for (endpoint, code), count in sorted(counts.items()):
            requests.add_metric([endpoint, code], count)
        yield requests
        latency = HistogramMetricFamily(
            "ccs_api_request_duration_seconds", "Latency of HTTP requests to CCS.", labels=["endpoint"]
        )
        for endpoint, values in sorted(buckets.items()):
            bounds = [(_bound(bound), float(values[i])) for i, bound in enumerate(_LATENCY_BUCKETS)]
            bounds.append(("+Inf", float(values[-1])))
            latency.add_metric([endpoint], bounds, sum_value=sums[endpoint])
        yield latency


def _bound(value: float) -> str:
    return repr(float(value))


class _BuildInfoCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        info = InfoMetricFamily("ccs_exporter_build", "The exporter's version.", labels=["version"])
        info.add_metric([__version__], {})
        yield info


class LiveMetrics:
    """The per-scrape part of /metrics: build info, CCS request stats, process metrics, ``extra``."""

    def __init__(self, requests: RequestStats, extra: Iterable[Collector] = ()) -> None:
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_BuildInfoCollector())
        self._registry.register(requests)
        for collector in extra:
            self._registry.register(collector)
        ProcessCollector(registry=self._registry)

    def render(self) -> bytes:
        """The text exposition of the live families."""
        return generate_latest(self._registry)
