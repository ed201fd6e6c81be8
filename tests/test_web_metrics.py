"""The HTTP server watched from /metrics: requests by path and code, 401s, 429s, TLS failures, connections,
web config reloads; and promtool check metrics finds nothing to say. Servers on 127.0.0.1, port 0."""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import bcrypt
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from web_helpers import SMALL, Pki, Store, make_pki

from ccs_exporter.exposition.live import LiveMetrics, RequestStats
from ccs_exporter.settings.reloads import ReloadRecord
from ccs_exporter.web.config_watcher import WebConfigWatcher
from ccs_exporter.web.metrics import WebStats
from ccs_exporter.web.server import MetricsServer, ServerLimits

pytestmark = pytest.mark.integration

USER, PASSWORD = "prometheus", "Self-Metrics-Pw-3"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., MetricsServer]]:
    started: list[MetricsServer] = []

    def start(web_config: str | None = None, limits: ServerLimits | None = None) -> MetricsServer:
        web = None
        if web_config is not None:
            (tmp_path / "web.yml").write_text(web_config, encoding="utf-8")
            web = WebConfigWatcher(tmp_path / "web.yml", check_seconds=0.1)
        stats = WebStats(settings_reload=ReloadRecord())
        live = LiveMetrics(RequestStats(), [stats])
        server = MetricsServer(("127.0.0.1", 0), Store(SMALL), live, web, limits=limits, stats=stats)  # type: ignore[arg-type]
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def samples(server: MetricsServer, **options: object) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics: (name, sorted labels) -> value."""
    text = requests.get(f"{server.url}/metrics", timeout=5, **options).text  # type: ignore[arg-type]
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


class TestRequests:
    def test_requests_by_path_and_code(self, serve: Callable[..., MetricsServer]) -> None:
        """Each answer counts under its path (unknown paths as other, unparsable heads as unparsed)."""
        server = serve()
        for path in ("/metrics", "/healthz", "/nope", "/nope2"):
            requests.get(f"{server.url}{path}", timeout=5)
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
            raw.sendall(b"NONSENSE\r\n\r\n")
            raw.recv(1024)
        found = samples(server)
        name = "ccs_exporter_http_requests_total"
        assert value(found, name, path="/metrics", code="200") == 1  # this scrape is counted after it
        assert value(found, name, path="/healthz", code="200") == 1
        assert value(found, name, path="other", code="404") == 2
        assert value(found, name, path="unparsed", code="400") == 1

    def test_authentication_failures_and_backoff(self, serve: Callable[..., MetricsServer]) -> None:
        """401 without and with wrong credentials, then 429 from the backoff, each counted."""
        hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
        limits = ServerLimits(free_failed_logins=2, failed_login_first_wait=30)
        server = serve(f"basic_auth_users:\n  {USER}: '{hashed}'\n", limits)
        samples(server, auth=(USER, PASSWORD))  # verified once: answered from memory during the backoff
        requests.get(f"{server.url}/metrics", timeout=5)
        codes = [
            requests.get(f"{server.url}/metrics", auth=(USER, f"wrong-{n}"), timeout=5).status_code
            for n in range(4)
        ]
        assert codes[:2] == [401, 401] and 429 in codes
        found = samples(server, auth=(USER, PASSWORD))
        assert value(found, "ccs_exporter_http_authentication_failures_total", reason="missing") == 1
        assert value(
            found, "ccs_exporter_http_authentication_failures_total", reason="invalid"
        ) == codes.count(401)
        assert value(found, "ccs_exporter_http_login_backoff_refusals_total") == codes.count(429)

    def test_rate_limited(self, serve: Callable[..., MetricsServer]) -> None:
        server = serve("rate_limit:\n  interval: 1h\n  burst: 2\n")
        codes = [requests.get(f"{server.url}/", timeout=5).status_code for _ in range(4)]
        assert codes == [200, 200, 429, 429]
        # /metrics itself is limited now; read the counters through the server's own collector.
        assert server.stats.collect  # the counters, read as a scrape would render them
        text = b"".join(
            line for line in _render(server.stats).splitlines(keepends=True) if b"rate_limited" in line
        )
        assert b"ccs_exporter_http_rate_limited_requests_total 2.0" in text


class TestTls:
    def test_handshake_failures_and_refused_certificates(
        self, pki: Pki, serve: Callable[..., MetricsServer]
    ) -> None:
        """Plain HTTP to the TLS port is a handshake failure; no client certificate is a refused one."""
        server = serve(
            f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
            f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki.client_ca}\n"
        )
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
            raw.sendall(b"GET / HTTP/1.1\r\n\r\n")
            raw.recv(1024)
        bare = ssl.create_default_context(cafile=str(pki.ca))
        with (
            pytest.raises((ssl.SSLError, ConnectionError)),
            socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
            bare.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
        ):
            sock.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
            if not sock.recv(1024):
                raise ConnectionError("closed")
        time.sleep(0.2)
        found = samples(server, verify=str(pki.ca), cert=(str(pki.client_cert), str(pki.client_key)))
        assert value(found, "ccs_exporter_tls_handshake_failures_total") == 1
        assert value(found, "ccs_exporter_tls_client_certificates_refused_total") == 1


class TestConnectionsAndReloads:
    def test_open_connections_and_the_limit(self, serve: Callable[..., MetricsServer]) -> None:
        """Idle connections show in the gauge; past the limit the quietest are dropped and counted."""
        server = serve(limits=ServerLimits(max_connections=20))
        idle = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(25)]
        try:
            time.sleep(0.3)
            found = samples(server)
        finally:
            for connection in idle:
                connection.close()
        assert value(found, "ccs_exporter_http_max_connections") == 20
        assert value(found, "ccs_exporter_http_open_connections") == 20
        assert value(found, "ccs_exporter_http_connections_dropped_at_limit_total") >= 6

    def test_web_config_reload_success_and_failure(
        self, serve: Callable[..., MetricsServer], tmp_path: Path
    ) -> None:
        """A broken edit sets the gauge to 0 and keeps the success time; a good one sets both."""
        server = serve("http_server_config:\n  headers:\n    X-Frame-Options: deny\n")
        first = samples(server)
        assert value(first, "ccs_exporter_web_config_last_reload_successful") == 1
        started = value(first, "ccs_exporter_web_config_last_reload_success_timestamp_seconds")
        assert abs(started - time.time()) < 60
        (tmp_path / "web.yml").write_text("http_server_config:\n  headers:\n    X-Frame-Options: maybe\n")
        time.sleep(1.2)
        broken = samples(server)
        assert value(broken, "ccs_exporter_web_config_last_reload_successful") == 0
        assert value(broken, "ccs_exporter_web_config_last_reload_success_timestamp_seconds") == started
        (tmp_path / "web.yml").write_text(
            "http_server_config:\n  headers:\n    X-Frame-Options: sameorigin\n"
        )
        time.sleep(1.2)
        fixed = samples(server)
        assert value(fixed, "ccs_exporter_web_config_last_reload_successful") == 1
        assert value(fixed, "ccs_exporter_web_config_last_reload_success_timestamp_seconds") > started


def test_promtool_check_metrics_is_clean(
    serve: Callable[..., MetricsServer], require_tool: Callable[[str], str]
) -> None:
    """The live part with the HTTP server's families passes promtool check metrics."""
    promtool = require_tool("promtool")
    server = serve()
    requests.get(f"{server.url}/nope", timeout=5)
    body = requests.get(f"{server.url}/metrics", timeout=5).content
    result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=60)
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), result


def _render(stats: WebStats) -> bytes:
    from ccs_exporter.exposition.formats import Format, render_metrics

    return render_metrics(stats.collect(), Format.TEXT)
