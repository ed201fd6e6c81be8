"""The exporter's HTTP server: /metrics from the last rendered snapshot, /healthz, /readyz and a landing page.

A scrape writes bytes rendered at the end of the last poll cycle plus a few live lines: it never calls
CCS and never waits on a cycle. One event-loop thread serves every connection, so an idle or slow client
costs a socket, never a thread: at most ``max_connections`` are open (at the limit, the one quiet the
longest is closed to admit the new one), a request head must arrive whole within ``header_timeout``, and
bcrypt checks run one at a time on one more thread, behind a per-client backoff. TLS, client
certificates, basic auth and extra headers come from the web config (``WebConfigWatcher``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import gzip
import http.client
import io
import math
import re
import resource
import socket
import threading
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from email.message import Message
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import urlsplit

import structlog

from ccs_exporter import __version__
from ccs_exporter.metrics import CONTENT_TYPE, ExpositionStore, LiveMetrics
from ccs_exporter.webauth import BasicAuthChecker, FailureBackoff
from ccs_exporter.webconfig import WebConfigWatcher, WebState

log = structlog.get_logger(__name__)

_SERVER = f"ccs-exporter/{__version__}"
# Basic auth guards everything but the health endpoints (TLS, when configured, covers all of them).
_UNAUTHENTICATED_PATHS = frozenset({"/healthz", "/readyz"})
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_VERSION = re.compile(r"HTTP/\d\.\d")
# Responses go out in slices: a slow reader holds at most one slice in our buffers, never a 20 MB copy.
_SLICE_BYTES = 256 * 1024
_TEXT = "text/plain; charset=utf-8"
_LANDING_PAGE = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>ccs-exporter</title></head>
<body><h1>ccs-exporter {__version__}</h1>
<p>Prometheus exporter for Control Compliance Suite jobs.</p>
<ul><li><a href="metrics">/metrics</a></li><li><a href="healthz">/healthz</a></li>
<li><a href="readyz">/readyz</a></li></ul></body></html>
""".encode()


@dataclass(frozen=True)
class ServerLimits:
    """What clients can make the server hold, and for how long."""

    max_connections: int = 512
    header_timeout: float = 10.0  # a request head must arrive whole within this of its first byte
    idle_timeout: float = 75.0  # a kept-alive connection may wait this long for its next request
    handshake_timeout: float = 10.0
    write_timeout: float = 30.0  # a response that makes no progress for this long is dropped
    max_head_bytes: int = 16 * 1024
    # Basic auth: bcrypt checks waiting or running at once, and the per-client backoff after failures.
    max_queued_auth_checks: int = 16
    free_failed_logins: int = 5
    failed_login_first_wait: float = 1.0
    failed_login_max_wait: float = 60.0


class HttpError(Exception):
    """A request the server answers with an error status and then closes the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Request:
    """One parsed request head."""

    method: str
    path: str
    version: str
    headers: Message
    keep_alive: bool
    client: str


@dataclass
class Response:
    """A response: its body as parts that are sent as they are (the exposition is never copied whole)."""

    status: int
    body: tuple[bytes, ...]
    content_type: str = _TEXT
    headers: list[tuple[str, str]] = field(default_factory=list)
    close: bool = False


def parse_request(head: bytes, client: str) -> Request:
    """The request in ``head`` (request line and headers); ``HttpError`` when it is not HTTP/1.x."""
    request_line, _, header_block = head.partition(b"\n")
    parts = request_line.rstrip(b"\r").decode("latin-1").split(" ")
    if len(parts) != 3 or not _VERSION.fullmatch(parts[2]):
        raise HttpError(400, "malformed request line")
    method, target, version = parts
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise HttpError(505, "HTTP/1.0 and HTTP/1.1 only")
    try:
        headers = http.client.parse_headers(io.BytesIO(header_block))
    except http.client.HTTPException:
        raise HttpError(431, "too many header lines") from None
    tokens = {token.strip().lower() for token in headers.get("Connection", "").split(",")}
    keep_alive = "keep-alive" in tokens if version == "HTTP/1.0" else "close" not in tokens
    if headers.get("Content-Length", "0").strip() not in ("", "0") or "Transfer-Encoding" in headers:
        keep_alive = False  # a body is never read: closing is the only way not to parse it as a request
    if target.startswith(("http://", "https://")):
        path = urlsplit(target).path or "/"
    else:
        path = target.split("?", 1)[0]
    return Request(method, path, version, headers, keep_alive, client)


def accepts_gzip(accept_encoding: str) -> bool:
    """True when ``Accept-Encoding`` admits gzip with a q-value above 0 (``gzip;q=0`` refuses it)."""
    wildcard: float | None = None
    for item in accept_encoding.split(","):
        coding, *params = (part.strip() for part in item.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
                if not 0.0 <= quality <= 1.0 or math.isnan(quality):
                    quality = 0.0
        coding = coding.lower()
        if coding in ("gzip", "x-gzip"):
            return quality > 0
        if coding == "*":
            wildcard = quality
    return wildcard is not None and wildcard > 0


def basic_credentials(authorization: str) -> tuple[str, str] | None:
    """(user, password) from an ``Authorization: Basic`` header, or None when it holds none."""
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def _text(status: int, message: str, **options: Any) -> Response:
    return Response(status, (message.encode("utf-8") + b"\n",), **options)


class _Endpoints:
    """What each path answers; basic auth first. Runs on the event loop, bcrypt off it."""

    def __init__(self, server: MetricsServer) -> None:
        self._server = server
        limits = server.limits
        self._backoff = FailureBackoff(
            free_failures=limits.free_failed_logins,
            first_wait=limits.failed_login_first_wait,
            max_wait=limits.failed_login_max_wait,
        )
        self._bcrypt = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics-http-auth")
        self._queued_checks = 0

    def close(self) -> None:
        self._bcrypt.shutdown(wait=False, cancel_futures=True)

    async def respond(self, request: Request, state: WebState | None) -> Response:
        if request.method not in ("GET", "HEAD"):
            return _text(405, "method not allowed", headers=[("Allow", "GET, HEAD")])
        checker = state.basic_auth if state is not None else None
        if checker is not None and request.path not in _UNAUTHENTICATED_PATHS:
            refusal = await self._authorize(request, checker)
            if refusal is not None:
                return refusal
        exporter = self._server
        if request.path == "/metrics":
            return self._metrics(request)
        if request.path == "/healthz":
            return _text(200, "ok")
        if request.path == "/readyz":
            if exporter.ready:
                return _text(200, "ready")
            return _text(503, "not ready: the first poll cycle has not finished")
        if request.path == "/":
            return Response(200, (_LANDING_PAGE,), "text/html; charset=utf-8")
        return _text(404, "not found")

    async def _authorize(self, request: Request, checker: BasicAuthChecker) -> Response | None:
        """None when the request carries valid credentials, else the 401 or 429 to send."""
        credentials = basic_credentials(request.headers.get("Authorization", ""))
        verdict = checker.cached(*credentials) if credentials is not None else False
        if verdict is None and credentials is not None:
            wait = self._backoff.wait_seconds(request.client)
            if wait > 0 or self._queued_checks >= self._server.limits.max_queued_auth_checks:
                # Answered slowly and without bcrypt: a flood from one client costs neither CPU nor threads.
                await asyncio.sleep(min(max(wait, 0.5), 1.0))
                retry = str(max(1, math.ceil(wait)))
                return _text(429, "too many failed logins: retry later", headers=[("Retry-After", retry)])
            self._queued_checks += 1
            try:
                loop = asyncio.get_running_loop()
                verdict = await loop.run_in_executor(self._bcrypt, checker.verify, *credentials)
            finally:
                self._queued_checks -= 1
            if verdict:
                self._backoff.succeeded(request.client)
            else:
                self._backoff.failed(request.client)
        if verdict:
            return None
        challenge = ("WWW-Authenticate", 'Basic realm="ccs-exporter", charset="UTF-8"')
        return _text(401, "Unauthorized", headers=[challenge])

    def _metrics(self, request: Request) -> Response:
        live = self._server.live.render()
        exposition = self._server.store.current
        headers = [("Vary", "Accept-Encoding")]
        # The exposition is passed on as is, never copied: at 10,000 jobs it is 20 MB (4 MB gzipped).
        if accepts_gzip(request.headers.get("Accept-Encoding", "")):
            # Concatenated gzip members are one valid gzip stream; the big part was compressed once.
            live_gzipped = gzip.compress(live, compresslevel=1, mtime=0)
            parts = (live_gzipped, exposition.gzipped if exposition else b"")
            return Response(200, parts, CONTENT_TYPE, [*headers, ("Content-Encoding", "gzip")])
        return Response(200, (live, *(exposition.parts if exposition else ())), CONTENT_TYPE, headers)


def _response_head(request: Request | None, answer: Response, extra: tuple[tuple[str, str], ...]) -> bytes:
    try:
        reason = HTTPStatus(answer.status).phrase
    except ValueError:
        reason = ""
    lines = [
        f"HTTP/1.1 {answer.status} {reason}",
        f"Server: {_SERVER}",
        f"Date: {email.utils.formatdate(usegmt=True)}",
        f"Content-Type: {answer.content_type}",
        f"Content-Length: {sum(len(part) for part in answer.body)}",
    ]
    lines.extend(f"{name}: {value}" for name, value in (*answer.headers, *extra))
    if answer.close:
        lines.append("Connection: close")
    elif request is not None and request.version == "HTTP/1.0":
        lines.append("Connection: keep-alive")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class _Connection(asyncio.Protocol):
    """One client connection: TLS handshake, request heads read within deadlines, responses in slices."""

    def __init__(self, server: MetricsServer) -> None:
        self._server = server
        self._loop = server.loop
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._phase = "handshake"
        self._head_started: float | None = None
        self._drained: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._tls = False
        self.client = ""
        self.deadline = math.inf
        self.last_activity = self._loop.time()

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The handshake or request being handled, if any."""
        return self._task

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.client = str(peer[0]) if peer else ""
        self._server.admit(self)
        if self._server.tls_enabled:
            # Nothing is read before start_tls takes over the socket: the ClientHello must reach TLS.
            self._transport.pause_reading()
            self._tls = True
            self.deadline = self._loop.time() + self._server.limits.handshake_timeout
            self._task = self._loop.create_task(self._guarded(self._handshake()))
        else:
            self._await_request(first=True)

    async def _handshake(self) -> None:
        state = self._server.web_state()
        assert state is not None and state.tls is not None and self._transport is not None
        try:
            transport = await self._loop.start_tls(
                self._transport,
                self,
                state.tls,
                server_side=True,
                ssl_handshake_timeout=self._server.limits.handshake_timeout,
            )
        except (OSError, asyncio.TimeoutError, RuntimeError) as exc:  # ssl.SSLError is an OSError
            log.debug("http_tls_handshake_failed", client=self.client, error=type(exc).__name__)
            self.abort()
            return
        if transport is None or self._closing:
            self.abort()
            return
        self._transport = transport
        if not state.allows_client(transport.get_extra_info("peercert")):
            log.info("http_client_certificate_refused", client=self.client, reason="no allowed SAN")
            self.abort()
            return
        self._await_request(first=True)
        self._next_request()

    def _await_request(self, *, first: bool) -> None:
        limits = self._server.limits
        self._phase = "reading"
        self._head_started = None
        self.deadline = self._loop.time() + (limits.header_timeout if first else limits.idle_timeout)
        self.last_activity = self._loop.time()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._phase != "reading":
            # Pipelined bytes during a response (or the handshake's end): kept, within bounds.
            if len(self._buffer) > self._server.limits.max_head_bytes:
                self._pause_reading()
            return
        self._next_request()

    def _next_request(self) -> None:
        """Start handling the next request when its head is complete; refuse heads that are too large."""
        if self._phase != "reading" or self._transport is None:
            return
        del self._buffer[: len(self._buffer) - len(self._buffer.lstrip(b"\r\n"))]
        now = self._loop.time()
        if self._buffer and self._head_started is None:
            self._head_started = now
            self.deadline = min(self.deadline, now + self._server.limits.header_timeout)
        elif not self._buffer and self._head_started is None:
            return
        end = _HEAD_END.search(self._buffer)
        limit = self._server.limits.max_head_bytes
        if end is None:
            if len(self._buffer) > limit:
                self._start(self._refuse(HttpError(431, "request head too large")))
            return
        head = bytes(self._buffer[: end.end()])
        del self._buffer[: end.end()]
        if len(head) > limit:
            self._start(self._refuse(HttpError(431, "request head too large")))
            return
        self.last_activity = now
        self._start(self._handle(head))

    def _start(self, work: Coroutine[Any, Any, None]) -> None:
        self._phase = "busy"
        self.deadline = math.inf
        self._pause_reading()
        self._task = self._loop.create_task(self._guarded(work))

    async def _guarded(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work``; a failure drops this connection (never the server), logged without details."""
        try:
            await work
        except Exception as exc:
            log.error("http_connection_failed", client=self.client, error=type(exc).__name__)
            self.abort()

    async def _refuse(self, error: HttpError) -> None:
        await self._send(None, _text(error.status, error.message, close=True))

    async def _handle(self, head: bytes) -> None:
        try:
            request = parse_request(head, self.client)
        except HttpError as error:
            await self._refuse(error)
            return
        answer = await self._server.endpoints.respond(request, self._server.web_state())
        answer.close = answer.close or not request.keep_alive
        if request.method == "HEAD":
            await self._send(request, answer, head_only=True)
        else:
            await self._send(request, answer)
        if self._closing:
            return
        self._await_request(first=False)
        self._resume_reading()
        self._next_request()

    async def _send(self, request: Request | None, answer: Response, *, head_only: bool = False) -> None:
        state = self._server.web_state()
        head = _response_head(request, answer, state.headers if state is not None else ())
        body = () if head_only else answer.body
        if len(head) + sum(len(part) for part in body) <= _SLICE_BYTES:
            slices: list[bytes | memoryview] = [b"".join((head, *body))]
        else:
            slices = [head]
            for part in body:
                view = memoryview(part)
                slices.extend(
                    view[start : start + _SLICE_BYTES] for start in range(0, len(view), _SLICE_BYTES)
                )
        for chunk in slices:
            if self._closing or self._transport is None:
                return
            self._transport.write(chunk)
            self.deadline = self._loop.time() + self._server.limits.write_timeout
            if self._drained is not None:
                try:
                    await self._drained
                except ConnectionError:
                    return
            self.last_activity = self._loop.time()
        if answer.close:
            self.close()

    def pause_writing(self) -> None:
        self._drained = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._drained = None

    def _pause_reading(self) -> None:
        if self._transport is not None and not self._closing:
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._transport is not None and not self._closing:
            self._transport.resume_reading()

    def eof_received(self) -> bool | None:
        # A client that sent its request and half-closed still gets the answer (TLS closes anyway).
        return self._phase == "busy" and not self._tls

    def close(self) -> None:
        """Close once what was written has been sent; the connection counts until then (write deadline)."""
        if self._transport is not None and not self._closing:
            self._closing = True
            self._phase = "closing"
            self.deadline = self._loop.time() + self._server.limits.write_timeout
            self._transport.close()

    def abort(self) -> None:
        """Drop the connection now (a deadline passed, or room is needed for a new one)."""
        if self._transport is not None:
            self._transport.abort()
        self._closing = True
        self._server.release(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._server.release(self)
        if self._drained is not None and not self._drained.done():
            self._drained.set_exception(ConnectionResetError())
            self._drained.exception()  # retrieved here, so an unawaited one is not reported
        if self._task is not None and not self._task.done():
            self._task.cancel()


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
    ) -> None:
        self.store = store
        self.live = live
        self.web = web
        self.limits = _within_descriptor_limit(limits or ServerLimits())
        self.tls_enabled = web is not None and web.tls_enabled
        self.scheme = "https" if self.tls_enabled else "http"
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        dualstack = family == socket.AF_INET6 and address[0] == "::" and socket.has_dualstack_ipv6()
        self._socket = socket.create_server(address, family=family, backlog=128, dualstack_ipv6=dualstack)
        self._socket.setblocking(False)
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(_quiet_exception_handler)
        self.endpoints = _Endpoints(self)
        self._connections: set[_Connection] = set()
        self._stopping: asyncio.Future[None] | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics-http", daemon=True)

    @property
    def ready(self) -> bool:
        """True once a snapshot has been rendered."""
        return self.store.current is not None

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

    def web_state(self) -> WebState | None:
        """The web config in force for a new connection or request (re-read when its files changed)."""
        return self.web.current() if self.web is not None else None

    def admit(self, connection: _Connection) -> None:
        """Count a new connection; at the limit, close the one quiet the longest to make room."""
        if len(self._connections) >= self.limits.max_connections:
            quietest = min(self._connections, key=lambda open_one: open_one.last_activity)
            quietest.abort()
        self._connections.add(connection)

    def release(self, connection: _Connection) -> None:
        self._connections.discard(connection)

    def start(self) -> None:
        """Start serving in the background; returns once connections are accepted."""
        self._thread.start()
        self._started.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        finally:
            self.loop.close()

    async def _serve(self) -> None:
        self._stopping = self.loop.create_future()
        server = await self.loop.create_server(lambda: _Connection(self), sock=self._socket)
        self._started.set()
        while not self._stopping.done():
            await asyncio.wait([self._stopping], timeout=1.0)
            self.web_state()  # notices edits of the web config between requests too
            now = self.loop.time()
            for connection in [c for c in self._connections if c.deadline < now]:
                connection.abort()
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
