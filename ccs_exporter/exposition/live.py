"""The per-scrape part of /metrics: what the exporter knows of itself, rendered at each scrape.

Build info, this replica's shard, the CCS request counters and latency, any collectors the composition
adds (the audit trail's), and client_python's process, platform and garbage-collector collectors, all
on a private registry; small, so rendering it per scrape costs about a millisecond. The job part is
rendered once per cycle in ``metrics``.
"""

from __future__ import annotations

import platform
from collections.abc import Collection, Iterable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.metrics_core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from ccs_exporter import __version__
from ccs_exporter.exposition.formats import Format, render_metrics, selected
from ccs_exporter.sharding import UNSHARDED, Shard

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class RequestStats(Collector):
    """Counts and times every HTTP attempt to CCS; its ``observe`` is the client's observer.

    A prometheus_client Counter and Histogram, kept off the global registry and collected through this
    collector, without their ``_created`` series (the exposition has never had them) and sorted by
    endpoint and code, so the text is stable from scrape to scrape.
    """

    def __init__(self) -> None:
        self._requests = Counter(
            "ccs_api_requests",
            "HTTP requests to CCS by endpoint and status code.",
            ["endpoint", "code"],
            registry=None,
        )
        self._latency = Histogram(
            "ccs_api_request_duration_seconds",
            "Latency of HTTP requests to CCS.",
            ["endpoint"],
            registry=None,
            buckets=_LATENCY_BUCKETS,
        )

    def observe(self, endpoint: str, code: str, seconds: float) -> None:
        """Record one attempt: endpoint template, status code (or error/timeout) and its duration."""
        self._requests.labels(endpoint, code).inc()
        self._latency.labels(endpoint).observe(seconds)

    def collect(self) -> Iterator[Metric]:
        for metric in (*self._requests.collect(), *self._latency.collect()):
            kept = [sample for sample in metric.samples if not sample.name.endswith("_created")]
            # A stable sort: each endpoint's buckets, count and sum stay in their order.
            metric.samples = sorted(kept, key=lambda s: (s.labels["endpoint"], s.labels.get("code", "")))
            yield metric


class _BuildInfoCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        info = InfoMetricFamily(
            "ccs_exporter_build",
            "The exporter's version and the Python version it runs on.",
            labels=["version", "python_version"],
        )
        info.add_metric([__version__, platform.python_version()], {})
        yield info


class ShardCollector(Collector):
    """This replica's shard::

        # HELP ccs_exporter_shard_ordinal This replica's shard index, 0 to ccs_exporter_total_shards - 1.
        # TYPE ccs_exporter_shard_ordinal gauge
        ccs_exporter_shard_ordinal 1.0
        # HELP ccs_exporter_total_shards Shards the jobs are split over (1: not sharded).
        # TYPE ccs_exporter_total_shards gauge
        ccs_exporter_total_shards 3.0

    Present on every replica (0 of 1 when not sharded), so the shard alerts see a missing or duplicated
    ordinal and replicas that disagree on the total.
    """

    def __init__(self, shard: Shard) -> None:
        self._shard = shard

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "ccs_exporter_shard_ordinal",
            "This replica's shard index, 0 to ccs_exporter_total_shards - 1.",
            value=self._shard.index,
        )
        yield GaugeMetricFamily(
            "ccs_exporter_total_shards",
            "Shards the jobs are split over (1: not sharded).",
            value=self._shard.total,
        )


class LiveMetrics:
    """The per-scrape part of /metrics: build info, shard, CCS request stats, ``extra``, and the process,
    platform (``python_info``) and garbage collector (``python_gc_*``) collectors that client_python's
    default registry holds, registered here on our private registry."""

    def __init__(
        self, requests: RequestStats, extra: Iterable[Collector] = (), *, shard: Shard = UNSHARDED
    ) -> None:
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_BuildInfoCollector())
        self._registry.register(ShardCollector(shard))
        self._registry.register(requests)
        for collector in extra:
            self._registry.register(collector)
        ProcessCollector(registry=self._registry)
        PlatformCollector(registry=self._registry)
        GCCollector(registry=self._registry)

    def render(self, fmt: Format = Format.TEXT, names: Collection[str] | None = None) -> bytes:
        """The live families ``names`` selects (all when None) in ``fmt`` (OpenMetrics without EOF)."""
        return render_metrics(selected(self._registry.collect(), names), fmt)
