"""The auditor: turns the job changes a published poll snapshot carries into audit records.

It runs on the poll loop's thread after the snapshot is published, so the poll path stays read-only
(the poller and the metrics never see the audit trail), and it exposes the trail's own counters and
head (``ccs_audit_*``) as a collector for the per-scrape metrics.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import structlog
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ccs_exporter.audit import AuditLog
from ccs_exporter.audit.head import HeadReader
from ccs_exporter.polling.snapshot import JobChange

log = structlog.get_logger(__name__)


class ChangeAuditor:
    """Records each observed job change in the audit log, unless it was one of our own mutations."""

    def __init__(self, audit_log: AuditLog) -> None:
        self._audit_log = audit_log

    def record(self, changes: Iterable[JobChange]) -> None:
        """Write an observation for each change; a failure is logged and counted, never raised."""
        for change in changes:
            try:
                self._audit_log.observe(change.job_id, change.before, change.after)
            except Exception as exc:  # the audit trail reports its own failures; polling goes on
                log.error("change_observer_failed", job_id=change.job_id, error_type=type(exc).__name__)

    def collector(self) -> Collector:
        """The audit trail's counters and its head, read at each scrape."""
        return _AuditCollector(self._audit_log)


def _head_problem(problem: str | None) -> None:
    if problem is None:
        log.info("audit_head_readable")
    else:
        log.warning("audit_head_unreadable", problem=problem)


class _AuditCollector(Collector):
    """Sample::

        ccs_audit_records_total{action="job.update",outcome="success"} 3.0
        ccs_audit_write_errors_total 0.0
        ccs_audit_head_sequence 7.0
        ccs_audit_head_hash48 1.86733870826745e+14

    The head comes from ``<log>.head`` at each scrape (a ``stat``, and a read of at most 4 KiB when it
    changed), so records other processes append are seen too. Both head gauges come from one read, so a
    scrape never pairs a sequence with another record's hash; they are left out while the head file of a
    log with records is missing or unreadable.
    """

    def __init__(self, audit_log: AuditLog) -> None:
        self._audit_log = audit_log
        self._head = HeadReader(audit_log.path, on_problem=_head_problem)

    def collect(self) -> Iterator[Metric]:
        counts = self._audit_log.stats()
        records = CounterMetricFamily(
            "ccs_audit_records", "Audit records written by action and outcome.", labels=["action", "outcome"]
        )
        for (action, outcome), count in sorted(counts.records.items()):
            records.add_metric([action, outcome], count)
        yield records
        yield CounterMetricFamily(
            "ccs_audit_write_errors", "Audit records that could not be written.", value=counts.write_errors
        )
        head = self._head.current()
        if head is not None:
            yield GaugeMetricFamily(
                "ccs_audit_head_sequence",
                "Sequence of the audit log's last record, from its head file.",
                value=head.sequence,
            )
            yield GaugeMetricFamily(
                "ccs_audit_head_hash48",
                "First 12 hex digits of the last audit record's hash, as an integer.",
                value=head.hash48,
            )
