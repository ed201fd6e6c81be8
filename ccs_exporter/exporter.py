"""Assembles the running exporter from settings: client -> poller -> metrics -> HTTP server.

``cli.py`` builds the settings and the audit log and hands them here; tests and benchmarks use
``Exporter`` directly to run the whole pipeline in-process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog

from ccs_exporter.client import CcsClient
from ccs_exporter.config import Settings
from ccs_exporter.metrics import AuditCounts, ExpositionStore, LiveMetrics, RequestStats
from ccs_exporter.poller import ChangeObserver, Poller, PollLoop, PollSnapshot
from ccs_exporter.server import MetricsServer
from ccs_exporter.webconfig import load_web_config

log = structlog.get_logger(__name__)


class Exporter:
    """The whole daemon: a background poll loop feeding a metrics server. Start, then stop once."""

    def __init__(
        self,
        settings: Settings,
        *,
        on_change: ChangeObserver | None = None,
        audit_counts: Callable[[], AuditCounts] | None = None,
        reload: Callable[[], list[str]] | None = None,
        source_changed: Callable[[], bool] | None = None,
    ) -> None:
        web_config = load_web_config(settings.web_config_file) if settings.web_config_file else None
        self.requests = RequestStats()
        self.client = CcsClient.from_settings(settings, observer=self.requests.observe)
        self.poller = Poller(
            self.client,
            settings.job_ids,
            history_window=settings.history_window,
            concurrency=settings.concurrency,
            on_change=on_change,
        )
        self.store = ExpositionStore()
        self._published = threading.Event()
        self.loop = PollLoop(
            self.poller,
            settings.poll_interval_seconds,
            self._publish,
            reload=reload,
            source_changed=source_changed,
        )
        self.server = MetricsServer(
            settings.listen, self.store, LiveMetrics(self.requests, audit_counts), web_config
        )
        self.last_snapshot: PollSnapshot | None = None
        if not settings.verify_tls:
            log.warning("tls_verification_disabled", url=settings.url)

    def _publish(self, snapshot: PollSnapshot) -> None:
        self.store.publish(snapshot)
        self.last_snapshot = snapshot

    @property
    def url(self) -> str:
        """Base URL of the metrics server."""
        return self.server.url

    def start(self) -> Exporter:
        """Start serving and polling in background threads."""
        self.server.start()
        self.loop.start()
        log.info("exporter_started", listen=self.url, jobs=len(self.poller.job_ids))
        return self

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
