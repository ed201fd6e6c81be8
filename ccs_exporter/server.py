"""The exporter's HTTP server: /metrics from the last rendered snapshot, /healthz, /readyz and a landing page.

A scrape writes bytes rendered at the end of the last poll cycle plus a few live lines: it never calls
CCS and never waits on a cycle. Every response goes out in one write (headers and body together: two
writes meet delayed ACKs). Optional TLS and basic auth come from the web-config file.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog

from ccs_exporter import __version__
from ccs_exporter.metrics import CONTENT_TYPE, ExpositionStore, LiveMetrics
from ccs_exporter.webconfig import BasicAuthChecker, ReloadingTlsContext, WebConfig

log = structlog.get_logger(__name__)

# A connection that sends nothing for this long is closed, so idle or slow clients cannot pin threads.
CONNECTION_TIMEOUT_SECONDS = 30.0
# sendmsg takes at most IOV_MAX (1024 on Linux) buffers; the exposition comes in parts of ~400 KB.
_MAX_BUFFERS_PER_WRITE = 512
# Basic auth guards everything but the health endpoints (TLS, when configured, covers all of them).
_UNAUTHENTICATED_PATHS = frozenset({"/healthz", "/readyz"})
_LANDING_PAGE = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>ccs-exporter</title></head>
<body><h1>ccs-exporter {__version__}</h1>
<p>Prometheus exporter for Control Compliance Suite jobs.</p>
<ul><li><a href="metrics">/metrics</a></li><li><a href="healthz">/healthz</a></li>
<li><a href="readyz">/readyz</a></li></ul></body></html>
""".encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        exporter: MetricsServer,
        tls: ReloadingTlsContext | None,
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.exporter = exporter
        self.tls = tls
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[Any, Any]:
        connection, client = self.socket.accept()
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:
            # The handshake happens in the connection's own thread (see _Handler.setup), never here,
            # where a slow client would hold up every other connection.
            context = self.tls.current()
            connection = context.wrap_socket(connection, server_side=True, do_handshake_on_connect=False)
        return connection, client

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("http_connection_error", client=str(client_address[0]) if client_address else "")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = f"ccs-exporter/{__version__}"
    timeout = CONNECTION_TIMEOUT_SECONDS
    server: _Server

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def log_message(self, format: str, *args: Any) -> None:
        """Access logs are not wanted: a scrape every few seconds would drown the useful lines."""

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def _serve(self, head: bool) -> None:
        exporter = self.server.exporter
        path = self.path.split("?", 1)[0]
        # Probes cannot hold a password without putting it in the pod spec, and say nothing secret.
        if path not in _UNAUTHENTICATED_PATHS and not self._authorized(exporter):
            self._respond(
                401,
                b"Unauthorized\n",
                "text/plain; charset=utf-8",
                head=head,
                extra={"WWW-Authenticate": 'Basic realm="ccs-exporter", charset="UTF-8"'},
            )
            return
        if path == "/metrics":
            self._metrics(exporter, head)
        elif path == "/healthz":
            self._respond(200, b"ok\n", "text/plain; charset=utf-8", head=head)
        elif path == "/readyz":
            if exporter.ready:
                self._respond(200, b"ready\n", "text/plain; charset=utf-8", head=head)
            else:
                self._respond(
                    503, b"not ready: the first poll cycle has not finished\n", "text/plain", head=head
                )
        elif path == "/":
            self._respond(200, _LANDING_PAGE, "text/html; charset=utf-8", head=head)
        else:
            self._respond(404, b"not found\n", "text/plain; charset=utf-8", head=head)

    def _authorized(self, exporter: MetricsServer) -> bool:
        checker = exporter.basic_auth
        if checker is None:
            return True
        header = self.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = (
                base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            return False
        return bool(sep) and checker.check(user, password)

    def _metrics(self, exporter: MetricsServer, head: bool) -> None:
        live = exporter.live.render()
        exposition = exporter.store.current
        # The exposition is passed on as is, never copied: at 10,000 jobs it is 20 MB (4 MB gzipped).
        if "gzip" in self.headers.get("Accept-Encoding", ""):
            # Concatenated gzip members are one valid gzip stream; the big part was compressed once.
            parts = (gzip.compress(live, compresslevel=1, mtime=0), exposition.gzipped if exposition else b"")
            self._respond(200, parts, CONTENT_TYPE, head=head, extra={"Content-Encoding": "gzip"})
            return
        self._respond(200, (live, *(exposition.parts if exposition else ())), CONTENT_TYPE, head=head)

    def _respond(
        self,
        status: int,
        body: bytes | tuple[bytes, ...],
        content_type: str,
        *,
        head: bool,
        extra: dict[str, str] | None = None,
    ) -> None:
        parts = (body,) if isinstance(body, bytes) else body
        lines = [
            f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}",
            f"Server: {self.server_version}",
            f"Content-Type: {content_type}",
            f"Content-Length: {sum(len(part) for part in parts)}",
        ]
        lines.extend(f"{name}: {value}" for name, value in (extra or {}).items())
        if self.close_connection:
            lines.append("Connection: close")
        head_bytes = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self._write(head_bytes, *(() if head else parts))

    def _write(self, *parts: bytes) -> None:
        """Send ``parts`` in one gathered write (``sendmsg``): one write, and no copy of a large body."""
        connection = self.connection
        if isinstance(connection, ssl.SSLSocket):
            self.wfile.write(b"".join(parts))  # TLS has no gathered write; one joined write instead
            return
        views = [memoryview(part) for part in parts if part]
        while views:
            sent = connection.sendmsg(views[:_MAX_BUFFERS_PER_WRITE])
            while views and sent >= len(views[0]):
                sent -= len(views[0])
                views.pop(0)
            if views and sent:
                views[0] = views[0][sent:]


class MetricsServer:
    """Serves the exporter's endpoints from a background thread."""

    def __init__(
        self,
        address: tuple[str, int],
        store: ExpositionStore,
        live: LiveMetrics,
        web_config: WebConfig | None = None,
    ) -> None:
        self.store = store
        self.live = live
        users = web_config.basic_auth_users if web_config is not None else None
        self.basic_auth = BasicAuthChecker(users) if users else None
        tls = (
            ReloadingTlsContext(web_config)
            if web_config is not None and web_config.tls_server_config is not None
            else None
        )
        self.scheme = "https" if tls is not None else "http"
        self._server = _Server(address, self, tls)
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-http", daemon=True)

    @property
    def ready(self) -> bool:
        """True once a snapshot has been rendered."""
        return self.store.current is not None

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The base URL of this server, as a scraper on this machine would use it."""
        host = str(self._server.server_address[0])
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"{self.scheme}://{host}:{self.port}"

    def start(self) -> None:
        """Start serving in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting and close the listening socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
