"""The exporter's HTTP server: the listening socket, its event-loop thread and the connection limits.

Each client connection is a ``connection.Connection``; what each path answers is in ``endpoints``.

One event-loop thread serves every connection, so an idle or slow client costs a socket, never a
thread: at most ``max_connections`` are open (at the limit, the one quiet the longest is closed to admit
the new one), a request head must arrive whole within ``header_timeout``, and bcrypt checks run one at
a time on one more thread, behind a per-client backoff. Every response goes out in slices, so a slow
reader never holds more than one. TLS runs over memory buffers of our own (``TlsSession``), so a
handshake holds a bounded few KiB and is dropped with its connection. TLS, client certificates, basic auth
and extra headers come from the web config (``WebConfigWatcher``).
"""

from __future__ import annotations

import asyncio
import resource
import socket
import threading
from dataclasses import replace
from typing import Any

import structlog

from ccs_exporter.exposition.live import LiveMetrics
from ccs_exporter.exposition.renderer import ExpositionStore
from ccs_exporter.web.auth import FailureBackoff
from ccs_exporter.web.config_watcher import WebConfigWatcher, WebState
from ccs_exporter.web.connection import Connection, ServerLimits
from ccs_exporter.web.endpoints import Endpoints
from ccs_exporter.web.metrics import WebStats

__all__ = ["MetricsServer", "ServerLimits"]

log = structlog.get_logger(__name__)


class MetricsServer:
    """Serves the exporter's endpoints from one background event-loop thread."""

    def __init__(
        self,
        address: tuple[str, int],
        store: ExpositionStore,
        live: LiveMetrics,
        web: WebConfigWatcher | None = None,
        *,
        limits: ServerLimits | None = None,
        stats: WebStats | None = None,
    ) -> None:
        self.web = web
        self.stats = stats or WebStats()
        self.limits = _within_descriptor_limit(limits or ServerLimits())
        self.tls_enabled = web is not None and web.tls_enabled
        self.scheme = "https" if self.tls_enabled else "http"
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        dualstack = family == socket.AF_INET6 and address[0] == "::" and socket.has_dualstack_ipv6()
        self._socket = socket.create_server(address, family=family, backlog=128, dualstack_ipv6=dualstack)
        self._socket.setblocking(False)
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(_quiet_exception_handler)
        self.endpoints = Endpoints(
            store,
            live,
            backoff=FailureBackoff(
                free_failures=self.limits.free_failed_logins,
                first_wait=self.limits.failed_login_first_wait,
                max_wait=self.limits.failed_login_max_wait,
            ),
            max_queued_auth_checks=self.limits.max_queued_auth_checks,
            stats=self.stats,
        )
        self._connections: set[Connection] = set()
        self.stats.watch_connections(lambda: len(self._connections), self.limits.max_connections)
        self.stats.web_config_reload = web.reloads if web is not None else None
        self._stopping: asyncio.Future[None] | None = None
        self._started = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="metrics-http", daemon=True)

    @property
    def ready(self) -> bool:
        """True once a snapshot has been rendered."""
        return self.endpoints.ready

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        """The base URL of this server, as a scraper on this machine would use it."""
        host = str(self._socket.getsockname()[0])
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def open_connections(self) -> int:
        """Connections open now (at most ``limits.max_connections``)."""
        return len(self._connections)

    @property
    def queued_response_bytes(self) -> int:
        """Response bytes waiting in this process for slow readers (at most a piece per connection)."""
        return sum(connection.queued_bytes for connection in self._connections)

    def web_state(self) -> WebState | None:
        """The web config in force for a new connection or request (re-read when its files changed)."""
        return self.web.current() if self.web is not None else None

    def admit(self, connection: Connection) -> None:
        """Count a new connection; at the limit, close the one quiet the longest to make room."""
        if len(self._connections) >= self.limits.max_connections:
            quietest = min(self._connections, key=lambda open_one: open_one.last_activity)
            quietest.abort()
            self.stats.dropped_at_limit()
        self._connections.add(connection)

    def release(self, connection: Connection) -> None:
        self._connections.discard(connection)

    def start(self) -> None:
        """Start serving in the background; returns once connections are accepted."""
        self._thread.start()
        if not self._started.wait(10) or self._failure is not None:
            raise RuntimeError(f"the metrics server did not start ({self._failure!r})")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        except BaseException as exc:
            self._failure = exc
            self._started.set()
            raise
        finally:
            self.loop.close()

    async def _serve(self) -> None:
        self._stopping = self.loop.create_future()
        server = await self.loop.create_server(lambda: Connection(self), sock=self._socket)
        self._started.set()
        while not self._stopping.done():
            await asyncio.wait([self._stopping], timeout=1.0)
            self._sweep()
        server.close()
        connections = list(self._connections)
        tasks = [task for connection in connections if (task := connection.task) is not None]
        for connection in connections:
            connection.abort()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2)
        await asyncio.sleep(0)  # let the aborted transports call connection_lost
        self.endpoints.close()

    def _sweep(self) -> None:
        """Once a second: drop connections past their deadline, notice web-config edits between requests."""
        now = self.loop.time()
        for connection in [c for c in self._connections if c.deadline < now]:
            connection.abort()
        try:
            self.web_state()
        except Exception as exc:  # the server keeps serving with the state it has
            log.error("web_config_check_failed", error=type(exc).__name__)

    def stop(self) -> None:
        """Stop accepting, drop every connection and close the listening socket."""
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop_soon)
            self._thread.join(timeout=5)
        else:
            self.endpoints.close()
            self.loop.close()
        self._socket.close()

    def _stop_soon(self) -> None:
        if self._stopping is not None and not self._stopping.done():
            self._stopping.set_result(None)


def _within_descriptor_limit(limits: ServerLimits) -> ServerLimits:
    """Leave half the process's file descriptors to everything else (CCS connections, logs, audit)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or limits.max_connections <= soft // 2:
        return limits
    return replace(limits, max_connections=max(16, soft // 2))


def _quiet_exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Errors of single connections are the client's business: one debug line, never a traceback."""
    exception = context.get("exception")
    log.debug(
        "http_connection_error", error=type(exception).__name__ if exception else context.get("message")
    )
