"""The poll cycle's own series and the searches' states, from a snapshot (rendered with its jobs)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ccs_exporter.exposition.families import label_value, number
from ccs_exporter.polling.snapshot import PollSnapshot, SearchState


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
    return GaugeMetricFamily(name, documentation, value=number(value))


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
