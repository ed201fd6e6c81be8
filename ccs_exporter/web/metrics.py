"""The HTTP server's own metrics: requests by path and code, refusals, TLS failures, connections, reloads.

    ccs_exporter_http_requests_total{path="/metrics",code="200"} 42.0
    ccs_exporter_http_authentication_failures_total{reason="invalid"} 3.0
    ccs_exporter_http_login_backoff_refusals_total 1.0
    ccs_exporter_tls_client_certificates_refused_total 2.0
    ccs_exporter_http_open_connections 3.0
    ccs_exporter_web_config_last_reload_successful 1.0

``path`` is one of the served paths or ``other`` (a scanner's paths cannot grow the series), ``code`` the
status sent. Counted on the server's event-loop thread, collected at each scrape.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ccs_exporter.settings.reloads import ReloadRecord

PATHS = ("/", "/metrics", "/healthz", "/readyz")
# Refusals before a path is known (a malformed or oversized request head).
UNPARSED = "unparsed"
# OpenSSL's reasons for a handshake that failed on the client's certificate.
_CERTIFICATE_REASONS = ("CERTIFICATE", "CERT_")


class WebStats(Collector):
    """Counts what the HTTP server answers and refuses; ``collect`` renders them with the reloads."""

    def __init__(self, settings_reload: ReloadRecord | None = None) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[tuple[str, str]] = Counter()
        self._auth_failures: Counter[str] = Counter({"missing": 0, "invalid": 0})
        self._backoff_refusals = 0
        self._rate_limited = 0
        self._handshake_failures = 0
        self._certificates_refused = 0
        self._dropped_at_limit = 0
        self._open: Callable[[], int] = lambda: 0
        self._limit = 0
        self.settings_reload = settings_reload
        self.web_config_reload: ReloadRecord | None = None

    def watch_connections(self, open_connections: Callable[[], int], limit: int) -> None:
        """Where the open connections are counted, and their limit."""
        self._open, self._limit = open_connections, limit

    def request(self, path: str | None, code: int) -> None:
        label = UNPARSED if path is None else path if path in PATHS else "other"
        with self._lock:
            self._requests[(label, str(code))] += 1

    def authentication_failed(self, *, credentials_sent: bool) -> None:
        with self._lock:
            self._auth_failures["invalid" if credentials_sent else "missing"] += 1

    def backoff_refused(self) -> None:
        with self._lock:
            self._backoff_refusals += 1

    def rate_limited(self) -> None:
        with self._lock:
            self._rate_limited += 1

    def handshake_failed(self, reason: str) -> None:
        """A TLS handshake that failed; those failing on the client's certificate count as refusals."""
        with self._lock:
            if any(marker in reason.upper() for marker in _CERTIFICATE_REASONS):
                self._certificates_refused += 1
            else:
                self._handshake_failures += 1

    def certificate_refused(self) -> None:
        with self._lock:
            self._certificates_refused += 1

    def dropped_at_limit(self) -> None:
        with self._lock:
            self._dropped_at_limit += 1

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            requests = sorted(self._requests.items())
            auth = sorted(self._auth_failures.items())
            counts = (
                self._backoff_refusals,
                self._rate_limited,
                self._handshake_failures,
                self._certificates_refused,
                self._dropped_at_limit,
            )
        yield from _request_families(requests, auth)
        backoff, limited, handshakes, certificates, dropped = counts
        yield CounterMetricFamily(
            "ccs_exporter_http_login_backoff_refusals",
            "Requests answered 429 by the failed-login backoff, without a password check.",
            value=backoff,
        )
        yield CounterMetricFamily(
            "ccs_exporter_http_rate_limited_requests",
            "Requests answered 429 by the web config's rate_limit.",
            value=limited,
        )
        yield CounterMetricFamily(
            "ccs_exporter_tls_handshake_failures",
            "TLS handshakes that failed for another reason than the client's certificate.",
            value=handshakes,
        )
        yield CounterMetricFamily(
            "ccs_exporter_tls_client_certificates_refused",
            "Client certificates refused: missing, not verified, or without an allowed SAN.",
            value=certificates,
        )
        yield CounterMetricFamily(
            "ccs_exporter_http_connections_dropped_at_limit",
            "Connections closed to admit a new one when the open-connection limit was reached.",
            value=dropped,
        )
        yield GaugeMetricFamily(
            "ccs_exporter_http_open_connections", "HTTP connections open now.", value=self._open()
        )
        yield GaugeMetricFamily(
            "ccs_exporter_http_max_connections",
            "The open-connection limit (the quietest connection is closed beyond it).",
            value=self._limit,
        )
        yield from _reload_families(
            "ccs_exporter_config", "the settings (SIGHUP, a changed file)", self.settings_reload
        )
        yield from _reload_families("ccs_exporter_web_config", "the web config", self.web_config_reload)


def _request_families(
    requests: list[tuple[tuple[str, str], int]], auth: list[tuple[str, int]]
) -> Iterator[Metric]:
    """Requests answered by path and code, and authentication failures by reason."""
    family = CounterMetricFamily(
        "ccs_exporter_http_requests",
        "HTTP requests the exporter answered, by path (or other) and status code.",
        labels=["path", "code"],
    )
    for (path, code), count in requests:
        family.add_metric([path, code], count)
    yield family
    failures = CounterMetricFamily(
        "ccs_exporter_http_authentication_failures",
        "Requests refused with 401: without credentials (missing) or with wrong ones (invalid).",
        labels=["reason"],
    )
    for reason, count in auth:
        failures.add_metric([reason], count)
    yield failures


def _reload_families(prefix: str, what: str, record: ReloadRecord | None) -> Iterator[Metric]:
    if record is None:
        return
    successful, last_success = record.state
    yield GaugeMetricFamily(
        f"{prefix}_last_reload_successful",
        f"1 when the last reload of {what} worked, 0 when it failed and the previous one is kept.",
        value=1 if successful else 0,
    )
    yield GaugeMetricFamily(
        f"{prefix}_last_reload_success_timestamp_seconds",
        f"Unix time of the last successful load of {what} (the start counts).",
        value=last_success,
    )
