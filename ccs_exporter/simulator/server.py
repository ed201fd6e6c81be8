"""A small threaded HTTP/1.1 server for the simulator: keep-alive, one write per response, fast stop.

``http.server`` writes headers and body separately, which meets delayed ACKs and stalls 40 ms per
response; here each answer (status line, headers and body) goes out in one ``sendall`` on a
``TCP_NODELAY`` socket. One thread per connection; ``stop()`` closes the listener and every open
connection, idle or busy, so nothing outlives it.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

IDLE_TIMEOUT_SECONDS = 120.0  # IIS's default connection timeout
_MAX_LINE = 65536
_MAX_HEADERS = 100
_MAX_BODY = 16 * 1024 * 1024
_ACCEPT_POLL_SECONDS = 0.05

REASONS = {
    200: "OK",
    202: "Accepted",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    500: "Internal Server Error",
    505: "HTTP Version Not Supported",
}


@dataclass(frozen=True)
class HttpRequest:
    """A parsed request; header names are lower case."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


@dataclass(frozen=True)
class HttpResponse:
    """An answer; ``encode`` renders it as one buffer with Content-Length always set."""

    status: int
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()

    def encode(self, keep_alive: bool) -> bytes:
        lines = [f"HTTP/1.1 {self.status} {REASONS.get(self.status, 'Unknown')}"]
        if self.body or self.status != 204:
            lines.append(f"Content-Type: {self.content_type}")
        lines.append(f"Content-Length: {len(self.body)}")
        lines.append("Connection: keep-alive" if keep_alive else "Connection: close")
        lines.append("Server: ccs-simulator")
        lines.extend(f"{name}: {value}" for name, value in self.headers)
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


RequestHandler = Callable[[HttpRequest], "HttpResponse | None"]
"""Answers a request; None means: close the connection without answering."""


class _BadRequest(Exception):
    def __init__(self, status: int = 400) -> None:
        super().__init__(status)
        self.status = status


class HttpServer:
    """Serves ``handler`` on ``host:port`` (0 = any free port), over TLS when given a context."""

    def __init__(
        self,
        host: str,
        port: int,
        handler: RequestHandler,
        stopping: threading.Event,
        ssl_context: ssl.SSLContext | None = None,
        idle_timeout: float = IDLE_TIMEOUT_SECONDS,
    ) -> None:
        self._handler = handler
        self._stopping = stopping
        self._ssl_context = ssl_context
        self._idle_timeout = idle_timeout
        self._listener = socket.create_server((host, port), backlog=1024, reuse_port=False)
        self._listener.settimeout(_ACCEPT_POLL_SECONDS)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._accept_thread = threading.Thread(target=self._accept_loop, name="ccs-sim-accept", daemon=True)

    def start(self) -> None:
        self._accept_thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop accepting, close every connection (waking blocked reads) and join the threads."""
        self._stopping.set()
        # Wakes a blocked accept() at once on Linux; elsewhere the accept poll notices within 50 ms.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._accept_thread.join(timeout)
        self._listener.close()
        with self._lock:
            connections = list(self._connections)
            threads = list(self._threads)
        for conn in connections:
            _close_quietly(conn, shutdown=True)
        for thread in threads:
            thread.join(timeout)

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                self._stopping.wait(_ACCEPT_POLL_SECONDS)  # e.g. out of file descriptors: back off
                continue
            thread = threading.Thread(
                target=self._serve_connection, args=(conn,), name="ccs-sim-conn", daemon=True
            )
            with self._lock:
                if self._stopping.is_set():
                    conn.close()
                    return
                self._connections.add(conn)
                self._threads.add(thread)
            thread.start()

    def _serve_connection(self, conn: socket.socket) -> None:
        stream: socket.socket = conn
        rfile: BinaryIO | None = None
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(self._idle_timeout)
            if self._ssl_context is not None:
                stream = self._ssl_context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
                with self._lock:
                    self._connections.add(stream)
                stream.do_handshake()
            rfile = stream.makefile("rb")
            while not self._stopping.is_set():
                try:
                    request = _read_request(rfile, stream)
                except _BadRequest as exc:
                    stream.sendall(HttpResponse(exc.status, b'{"Message":"Bad request."}').encode(False))
                    break
                if request is None:
                    break
                response = self._handler(request)
                if response is None or self._stopping.is_set():
                    break
                stream.sendall(response.encode(request.keep_alive))
                if not request.keep_alive:
                    break
        except (OSError, ValueError):
            pass  # the peer went away, the idle timeout passed, or stop() closed the socket
        finally:
            if rfile is not None:
                with contextlib.suppress(OSError):
                    rfile.close()
            _close_quietly(stream, shutdown=False)
            _close_quietly(conn, shutdown=False)
            with self._lock:
                self._connections.discard(conn)
                self._connections.discard(stream)
                self._threads.discard(threading.current_thread())


def _close_quietly(conn: socket.socket, *, shutdown: bool) -> None:
    if shutdown:
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        conn.close()


def _read_request(rfile: BinaryIO, stream: socket.socket) -> HttpRequest | None:
    """The next request on the connection, None at a clean end of stream; raise _BadRequest."""
    line = rfile.readline(_MAX_LINE + 1)
    while line in (b"\r\n", b"\n"):  # tolerate stray CRLF between requests
        line = rfile.readline(_MAX_LINE + 1)
    if not line:
        return None
    if len(line) > _MAX_LINE:
        raise _BadRequest()
    parts = line.decode("latin-1").split()
    if len(parts) != 3:
        raise _BadRequest()
    method, target, version = parts
    if not version.startswith("HTTP/1."):
        raise _BadRequest(505)
    headers: dict[str, str] = {}
    for _ in range(_MAX_HEADERS + 1):
        raw = rfile.readline(_MAX_LINE + 1)
        if not raw:
            return None
        if raw in (b"\r\n", b"\n"):
            break
        name, sep, value = raw.decode("latin-1").partition(":")
        if not sep:
            raise _BadRequest()
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    else:
        raise _BadRequest()
    if headers.get("expect", "").lower() == "100-continue":
        stream.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = _read_chunked(rfile)
    else:
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            raise _BadRequest() from None
        if length < 0:
            raise _BadRequest()
        if length > _MAX_BODY:
            raise _BadRequest(413)
        body = rfile.read(length) if length else b""
        if len(body) != length:
            return None
    connection = headers.get("connection", "").lower()
    keep_alive = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
    return HttpRequest(method.upper(), target, headers, body, keep_alive)


def _read_chunked(rfile: BinaryIO) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        size_line = rfile.readline(_MAX_LINE + 1)
        try:
            size = int(size_line.split(b";")[0].strip(), 16)
        except ValueError:
            raise _BadRequest() from None
        if size == 0:
            break
        total += size
        if total > _MAX_BODY:
            raise _BadRequest(413)
        chunks.append(rfile.read(size))
        rfile.readline(_MAX_LINE + 1)
    while rfile.readline(_MAX_LINE + 1) not in (b"\r\n", b"\n", b""):
        pass  # trailers
    return b"".join(chunks)
