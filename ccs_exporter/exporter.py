"""Assembles the running exporter from settings: client -> poller -> snapshot -> metrics -> HTTP server.

With an audit log, an auditor on the poll loop's thread records the job changes each published snapshot
carries. ``cli.py`` builds the settings and the audit log and hands them here; tests and benchmarks use
``Exporter`` directly to run the whole pipeline in-process.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from ccs_exporter.audit import AuditLog
from ccs_exporter.audit.auditor import ChangeAuditor
from ccs_exporter.audit.export.metrics import ShippingCollector
from ccs_exporter.client import CcsClient
from ccs_exporter.exposition.live import LiveMetrics, RequestStats
from ccs_exporter.exposition.renderer import ExpositionStore
from ccs_exporter.polling.cycle import Poller
from ccs_exporter.polling.discovery import WatchList
from ccs_exporter.polling.health import PollHealth, stall_after
from ccs_exporter.polling.loop import PollLoop
from ccs_exporter.polling.snapshot import PollSnapshot
from ccs_exporter.settings.config import Settings
from ccs_exporter.web.config_watcher import WebConfigWatcher
from ccs_exporter.web.metrics import WebStats
from ccs_exporter.web.server import MetricsServer

log = structlog.get_logger(__name__)


class Exporter:
    """The whole daemon: a background poll loop feeding a metrics server. Start, then stop once."""

    def __init__(
        self,
        settings: Settings,
        *,
        audit_log: AuditLog | None = None,
        reload: Callable[[], WatchList] | None = None,
        source_changed: Callable[[], bool] | None = None,
    ) -> None:
        web_config = WebConfigWatcher(settings.web_config_file) if settings.web_config_file else None
        self.requests = RequestStats()
        self.client = CcsClient.from_settings(settings, observer=self.requests.observe)
        self.auditor = ChangeAuditor(audit_log) if audit_log is not None else None
        self.shard = settings.shard_of_replica
        self.poller = Poller(
            self.client,
            settings.job_ids,
            searches=settings.job_search,
            page_size=settings.search_page_size,
            owns=self.shard.owns,
            history_window=settings.history_window,
            concurrency=settings.concurrency,
            track_changes=self.auditor is not None,
            health=PollHealth(stall_after(settings.poll_interval_seconds)),
        )
        self.store = ExpositionStore(sparse_status=settings.status_metric == "sparse")
        self.loop = PollLoop(
            self.poller,
            settings.poll_interval_seconds,
            self._publish,
            reload=reload,
            source_changed=source_changed,
            on_stall=self.store.publish,
        )
        extra = [self.auditor.collector()] if self.auditor is not None else []
        if settings.audit_export_cursors:
            extra.append(ShippingCollector(settings.audit_export_cursors))
        web_stats = WebStats(settings_reload=self.loop.reloads)
        extra.append(web_stats)
        live = LiveMetrics(self.requests, extra, shard=self.shard)
        self.server = MetricsServer(settings.listen, self.store, live, web_config, stats=web_stats)
        self.last_snapshot: PollSnapshot | None = None

    def _publish(self, snapshot: PollSnapshot) -> None:
        """Runs on the poll loop's thread: publish first, so the audit trail never delays a scrape."""
        self.store.publish(snapshot)
        self.last_snapshot = snapshot
        if self.auditor is not None:
            self.auditor.record(snapshot.changes)

    @property
    def url(self) -> str:
        """Base URL of the metrics server."""
        return self.server.url

    def start(self) -> Exporter:
        """Start serving and polling in background threads."""
        self.server.start()
        self.loop.start()
        watch = self.poller.watch
        log.info(
            "exporter_started",
            listen=self.url,
            jobs=len(watch.job_ids),
            searches=len(watch.searches),
            shard=str(self.shard),
        )
        return self

    def request_reload(self) -> None:
        """Re-read the job list and start a cycle now (SIGHUP); safe to call from a signal handler."""
        self.loop.request_reload()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until the first cycle is published; False on timeout."""
        return self.loop.wait_ready(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop polling (abandoning requests still in flight after ``timeout``), serving, and the client."""
        self.loop.stop(timeout)
        self.server.stop()
        self.client.close()
        log.info("exporter_stopped")

    def __enter__(self) -> Exporter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
