"""The auditor: turns the job changes a published poll snapshot carries into audit records.

It runs on the poll loop's thread after the snapshot is published, so the poll path stays read-only
(the poller and the metrics never see the audit trail), and it exposes the trail's own counters
(``ccs_audit_*``) as a collector for the per-scrape metrics.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import structlog
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from ccs_exporter.audit import AuditLog
from ccs_exporter.snapshot import JobChange

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
        """``ccs_audit_records_total{action,outcome}`` and ``ccs_audit_write_errors_total``, per scrape."""
        return _AuditCollector(self._audit_log)


class _AuditCollector(Collector):
    def __init__(self, audit_log: AuditLog) -> None:
        self._audit_log = audit_log

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
