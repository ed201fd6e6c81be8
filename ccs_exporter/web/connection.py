"""One client connection of the HTTP server: TLS handshake, request heads in time, responses in slices.

``Connection`` is the asyncio protocol ``MetricsServer`` makes for each accepted socket: it reads a
request head within ``ServerLimits``, hands it to the endpoints and writes the answer a bounded piece at
a time (gathered writes when plain, a slice of records at a time over ``TlsSession``). ``ServerLimits``
says what a client can make the server hold, and for how long.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import structlog

from ccs_exporter.web.endpoints import (
    HttpError,
    Request,
    Response,
    parse_request,
    response_head,
    text_response,
)
from ccs_exporter.web.tls_session import TlsFailure, TlsSession

if TYPE_CHECKING:
    from ccs_exporter.web.server import MetricsServer

log = structlog.get_logger(__name__)

_HEAD_END = re.compile(rb"\r?\n\r?\n")
# Plain responses go out in gathered writes from the shared parts (sendmsg takes at most IOV_MAX = 1024
# buffers); what a slow reader leaves unread waits in our buffers one small piece at a time, never a
# 20 MB copy. TLS gets the same pieces to encrypt.
_MAX_BUFFERS_PER_WRITE = 512
_PIECE_BYTES = 64 * 1024


@dataclass(frozen=True)
class ServerLimits:
    """What clients can make the server hold, and for how long."""

    max_connections: int = 512
    header_timeout: float = 10.0  # a request head must arrive whole within this of its first byte
    idle_timeout: float = 75.0  # a kept-alive connection may wait this long for its next request
    handshake_timeout: float = 10.0
    write_timeout: float = 30.0  # a response that makes no progress for this long is dropped
    # A response must be taken whole within this, however steadily it is read: a reader that takes a
    # piece now and then would otherwise keep its cycle's exposition alive for as long as it likes.
    response_timeout: float = 60.0
    max_head_bytes: int = 16 * 1024
    # Basic auth: bcrypt checks waiting or running at once, and the per-client backoff after failures.
    max_queued_auth_checks: int = 16
    free_failed_logins: int = 5
    failed_login_first_wait: float = 1.0
    failed_login_max_wait: float = 60.0


class Connection(asyncio.Protocol):
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
        self._response_deadline = math.inf
        self._tls: TlsSession | None = None
        self.client = ""
        self.deadline = math.inf
        self.last_activity = self._loop.time()

    @property
    def queued_bytes(self) -> int:
        """Bytes written but not yet taken by the kernel."""
        if self._transport is None or self._closing:
            return 0
        return self._transport.get_write_buffer_size()

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The handshake or request being handled, if any."""
        return self._task

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.client = str(peer[0]) if peer else ""
        self._server.admit(self)
        # Any queued byte pauses the writer: the rest of a response waits in the shared parts.
        self._transport.set_write_buffer_limits(high=0)
        if not self._server.tls_enabled:
            self._await_request(first=True)
            return
        state = self._server.web_state()
        if state is None or state.tls is None:  # never plain HTTP on a TLS port (a reload cannot do that)
            self.abort()
            return
        self._tls = TlsSession(state.tls)
        self.deadline = self._loop.time() + self._server.limits.handshake_timeout

    def _receive_tls(self, session: TlsSession, data: bytes) -> bytes | None:
        """The plaintext in ``data`` (None when the connection was dropped); finishes the handshake."""
        was_established = session.established
        try:
            plaintext = session.receive(data, max_plaintext=self._server.limits.max_head_bytes)
        except TlsFailure as failure:
            if was_established:
                log.debug("http_tls_error", client=self.client, error=failure.reason)
                self.abort()
            else:
                self._handshake_failed(failure.reason)
            return None
        self._write_raw(session.outgoing())
        if session.established and not was_established:
            state = self._server.web_state()
            if state is not None and not state.allows_client(session.peer_certificate()):
                log.info("http_client_certificate_refused", client=self.client, reason="no allowed SAN")
                self._server.stats.certificate_refused()
                self.abort()
                return None
            self._await_request(first=True)
        if session.peer_closed and self._phase != "busy":
            self.close()
            return None
        return plaintext

    def _handshake_failed(self, reason: str) -> None:
        log.debug("http_tls_handshake_failed", client=self.client, error=reason)
        self._server.stats.handshake_failed(reason)
        self.abort()

    def _write_raw(self, data: bytes) -> None:
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _await_request(self, *, first: bool) -> None:
        limits = self._server.limits
        self._phase = "reading"
        self._head_started = None
        self.deadline = self._loop.time() + (limits.header_timeout if first else limits.idle_timeout)
        self.last_activity = self._loop.time()

    def data_received(self, data: bytes) -> None:
        if self._tls is not None:
            plaintext = self._receive_tls(self._tls, data)
            if plaintext is None:
                return
            data = plaintext
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
        self._server.stats.request(None, error.status)
        await self._send(None, text_response(error.status, error.message, close=True))

    async def _handle(self, head: bytes) -> None:
        try:
            request = parse_request(head, self.client)
        except HttpError as error:
            await self._refuse(error)
            return
        answer = await self._server.endpoints.respond(request, self._server.web_state())
        self._server.stats.request(request.path, answer.status)
        answer.close = answer.close or not request.keep_alive
        if request.method == "HEAD":
            await self._send(request, answer, head_only=True)
        else:
            await self._send(request, answer)
        if self._closing:
            return
        self._await_request(first=False)
        self._resume_reading()
        if self._tls is not None:  # plaintext the session still holds (decrypted a head at a time)
            self._buffer += self._receive_tls(self._tls, b"") or b""
        self._next_request()

    async def _send(self, request: Request | None, answer: Response, *, head_only: bool = False) -> None:
        state = self._server.web_state()
        head = response_head(request, answer, state.headers if state is not None else ())
        views = [memoryview(part) for part in (head, *(() if head_only else answer.body)) if part]
        answer.body = ()  # from here only ``views`` holds the parts, and lets each go once it is sent
        self._response_deadline = self._loop.time() + self._server.limits.response_timeout
        self._progress()
        sending = self._send_tls(self._tls, views) if self._tls is not None else self._send_plain(views)
        del views  # the sender's list is the only one: parts it has sent are freed
        try:
            await sending
        finally:
            self._response_deadline = math.inf
        if answer.close:
            self.close()

    async def _send_plain(self, views: list[memoryview]) -> None:
        """Gathered writes straight from the shared parts; only a small piece waits in our buffers."""
        assert self._transport is not None
        descriptor = self._transport.get_extra_info("socket").fileno()
        while views and not self._closing:
            if self._transport.get_write_buffer_size() == 0:  # nothing queued: writing directly keeps order
                try:
                    sent = os.writev(descriptor, views[:_MAX_BUFFERS_PER_WRITE])
                except BlockingIOError:
                    sent = 0
                except OSError:
                    self.abort()
                    return
                views = _after(views, sent)
                if sent:
                    self._progress()
                if not views:
                    return
            # The socket is full: the transport takes one small piece and says when it has gone out.
            piece, views = views[0][:_PIECE_BYTES], _after(views, min(len(views[0]), _PIECE_BYTES))
            self._transport.write(piece)
            if not await self._wait_drained():
                return

    async def _send_tls(self, session: TlsSession, views: list[memoryview]) -> None:
        """Encrypted a slice at a time: at most one slice's records wait in our buffers."""
        views.reverse()
        while views:
            view = views.pop()  # a part sent is a part let go
            for start in range(0, len(view), _PIECE_BYTES):
                if self._closing or self._transport is None:
                    return
                try:
                    self._write_raw(session.encrypt(view[start : start + _PIECE_BYTES]))
                except TlsFailure as failure:
                    log.debug("http_tls_error", client=self.client, error=failure.reason)
                    self.abort()
                    return
                if not await self._wait_drained():
                    return

    async def _wait_drained(self) -> bool:
        """Wait until the transport wants more (False when the connection went away meanwhile)."""
        if self._drained is not None:
            try:
                await self._drained
            except ConnectionError:
                return False
        self._progress()
        return not self._closing

    def _progress(self) -> None:
        now = self._loop.time()
        self.deadline = min(now + self._server.limits.write_timeout, self._response_deadline)
        self.last_activity = now

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
        return self._phase == "busy" and self._tls is None

    def close(self) -> None:
        """Close once what was written has been sent; the connection counts until then (write deadline)."""
        if self._transport is not None and not self._closing:
            self._closing = True
            self._phase = "closing"
            self.deadline = self._loop.time() + self._server.limits.write_timeout
            if self._tls is not None:
                self._write_raw(self._tls.close_notify())
            self._transport.close()

    def abort(self) -> None:
        """Drop the connection now (a deadline passed, or room is needed for a new one)."""
        if self._transport is not None:
            self._transport.abort()
        self._closing = True
        self._server.release(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._tls = None  # the OpenSSL session and its buffers go now, not at the next garbage collection
        self._server.release(self)
        if self._drained is not None and not self._drained.done():
            self._drained.set_exception(ConnectionResetError())
            self._drained.exception()  # retrieved here, so an unawaited one is not reported
        if self._task is not None and not self._task.done():
            self._task.cancel()


def _after(views: list[memoryview], sent: int) -> list[memoryview]:
    """``views`` without their first ``sent`` bytes."""
    index = 0
    while index < len(views) and sent >= len(views[index]):
        sent -= len(views[index])
        index += 1
    rest = views[index:]
    if rest and sent:
        rest[0] = rest[0][sent:]
    return rest
