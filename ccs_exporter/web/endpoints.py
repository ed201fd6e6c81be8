"""What the exporter's HTTP endpoints answer: requests parsed, basic auth applied, responses built.

/metrics serves bytes rendered at the end of the last poll cycle plus a few live lines: it never calls
CCS and never waits on a cycle. /healthz and /readyz stay open for probes; / is a landing page. No
sockets here: ``server.py`` reads the request heads and writes what this module returns.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import functools
import gzip
import math
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.message import Message
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import structlog

from ccs_exporter import __version__
from ccs_exporter.exposition.formats import EOF, EOF_GZIP, MAX_SELECTED_NAMES, Format, negotiate
from ccs_exporter.exposition.live import LiveMetrics
from ccs_exporter.exposition.renderer import ExpositionStore
from ccs_exporter.web.auth import BasicAuthChecker, FailureBackoff
from ccs_exporter.web.config import TokenBucket
from ccs_exporter.web.config_watcher import WebState
from ccs_exporter.web.metrics import WebStats

log = structlog.get_logger(__name__)

_SERVER = f"ccs-exporter/{__version__}"
# Basic auth guards everything but the health endpoints (TLS, when configured, covers all of them).
_UNAUTHENTICATED_PATHS = frozenset({"/healthz", "/readyz"})
_VERSION = re.compile(r"HTTP/\d\.\d")
# RFC 9112 section 5 / RFC 9110 section 5.6.2: a field name is a token right before the colon (no space
# between them); a value is visible characters, spaces and tabs (and obs-text), never control characters.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FIELD_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):([\x21-\x7e\x80-\xff \t]*)")
_MAX_HEADER_LINES = 100
_DIGITS = re.compile(r"[0-9]+")
_TEXT = "text/plain; charset=utf-8"
_MAX_QUERY_FIELDS = 1000
_LANDING_PAGE = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>ccs-exporter</title></head>
<body><h1>ccs-exporter {__version__}</h1>
<p>Prometheus exporter for Control Compliance Suite jobs.</p>
<ul><li><a href="metrics">/metrics</a></li><li><a href="healthz">/healthz</a></li>
<li><a href="readyz">/readyz</a></li></ul></body></html>
""".encode()


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
    query: str = ""


@dataclass
class Response:
    """A response: its body as parts that are sent as they are (the exposition is never copied whole)."""

    status: int
    body: tuple[bytes, ...]
    content_type: str = _TEXT
    headers: list[tuple[str, str]] = field(default_factory=list)
    close: bool = False


def parse_request(head: bytes, client: str) -> Request:
    """The request in ``head`` (request line and headers, up to the empty line).

    ``HttpError`` (answered, then the connection closed) when it is not HTTP/1.x framed as RFC 9112
    asks: a malformed request line or field line (a space before the colon, a line folded onto the
    previous one, a control character), more than one ``Content-Length`` or one that is not a number,
    any ``Transfer-Encoding``. Requests are never read past their head, so an ambiguous length is
    refused rather than guessed.
    """
    lines = _head_lines(head)
    parts = lines[0].decode("latin-1").split(" ")
    if len(parts) != 3 or not _VERSION.fullmatch(parts[2]) or not _TOKEN.fullmatch(lines[0].split(b" ")[0]):
        raise HttpError(400, "malformed request line")
    method, target, version = parts
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise HttpError(505, "HTTP/1.0 and HTTP/1.1 only")
    if not target or any(ord(char) < 0x21 or ord(char) == 0x7F for char in target):
        raise HttpError(400, "malformed request target")
    fields = lines[1:]
    if len(fields) > _MAX_HEADER_LINES:
        raise HttpError(431, "too many header lines")
    headers = Message()
    for line in fields:
        match = _FIELD_LINE.fullmatch(line)
        if match is None:
            raise HttpError(400, "malformed header line")
        name, value = match.group(1).decode("ascii"), match.group(2).strip(b" \t").decode("latin-1")
        lowered = name.lower()
        if lowered == "transfer-encoding":
            raise HttpError(400, "Transfer-Encoding in a request is not accepted")
        if lowered == "content-length" and ("Content-Length" in headers or not _DIGITS.fullmatch(value)):
            raise HttpError(400, "one Content-Length, a number, at most")
        headers[name] = value
    tokens = {token.strip().lower() for token in headers.get("Connection", "").split(",")}
    keep_alive = "keep-alive" in tokens if version == "HTTP/1.0" else "close" not in tokens
    if headers.get("Content-Length", "0").lstrip("0"):
        keep_alive = False  # a body is never read: closing is the only way not to parse it as a request
    if target.startswith(("http://", "https://")):
        split = urlsplit(target)
        path, query = split.path or "/", split.query
    else:
        path, _, query = target.partition("?")
    return Request(method, path, version, headers, keep_alive, client, query)


def _head_lines(head: bytes) -> list[bytes]:
    """The request line and field lines of ``head``: CRLF or a bare LF ends a line, a bare CR is refused."""
    lines = head.split(b"\n")
    while lines and lines[-1] in (b"", b"\r"):
        lines.pop()
    lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
    if not lines or any(b"\r" in line or b"\x00" in line for line in lines):
        raise HttpError(400, "malformed request head")
    return lines


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


def selected_names(query: str) -> frozenset[str] | None:
    """The family names ``name[]`` parameters of ``query`` ask for, or None for every family.

    ValueError (a 400) when there are more than ``MAX_SELECTED_NAMES`` of them.
    """
    try:
        pairs = parse_qsl(query, max_num_fields=_MAX_QUERY_FIELDS)
    except ValueError:
        raise ValueError(f"too many query parameters (at most {_MAX_QUERY_FIELDS})") from None
    names = [value for key, value in pairs if key == "name[]"]
    if len(names) > MAX_SELECTED_NAMES:
        raise ValueError(f"too many name[] parameters: at most {MAX_SELECTED_NAMES}")
    return frozenset(names) if names else None


def basic_credentials(authorization: str) -> tuple[str, str] | None:
    """(user, password) from an ``Authorization: Basic`` header, or None when it holds none."""
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # not Base64 (a non-ASCII byte among it), or not UTF-8
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def text_response(status: int, message: str, **options: Any) -> Response:
    return Response(status, (message.encode("utf-8") + b"\n",), **options)


class Endpoints:
    """What each path answers, basic auth first. Runs on the server's event loop; bcrypt runs off it,
    one check at a time, and ``backoff`` decides which clients wait before another check."""

    def __init__(
        self,
        store: ExpositionStore,
        live: LiveMetrics,
        *,
        backoff: FailureBackoff,
        max_queued_auth_checks: int,
        stats: WebStats | None = None,
    ) -> None:
        self._stats = stats or WebStats()
        self._store = store
        self._live = live
        self._backoff = backoff
        self._max_queued_checks = max_queued_auth_checks
        self._bcrypt = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics-http-auth")
        # Plain copies of the exposition are made here, off the event loop, one at a time.
        self._inflater = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics-http-inflate")
        self._queued_checks = 0
        self._checks_running: dict[bytes, asyncio.Future[bool]] = {}

    @property
    def ready(self) -> bool:
        """True once a snapshot has been rendered, while the poll loop keeps completing cycles."""
        return self._store.current is not None and not self._store.stalled

    def close(self) -> None:
        """Stop the bcrypt and inflating threads (checks still queued are dropped)."""
        self._bcrypt.shutdown(wait=False, cancel_futures=True)
        self._inflater.shutdown(wait=False, cancel_futures=True)

    async def respond(self, request: Request, state: WebState | None) -> Response:
        """The answer to ``request`` under the web config in force (``state``)."""
        if request.method not in ("GET", "HEAD"):
            return text_response(405, "method not allowed", headers=[("Allow", "GET, HEAD")])
        bucket = state.rate_limit if state is not None else None
        if bucket is not None and request.path not in _UNAUTHENTICATED_PATHS and not bucket.allow():
            # The toolkit's rate_limit: one bucket for the server; the probes stay open (see docs).
            self._stats.rate_limited()
            return text_response(429, "Too Many Requests", headers=[("Retry-After", _retry_after(bucket))])
        checker = state.basic_auth if state is not None else None
        if checker is not None and request.path not in _UNAUTHENTICATED_PATHS:
            refusal = await self._authorize(request, checker)
            if refusal is not None:
                return refusal
        if request.path == "/metrics":
            return await self._metrics(request)
        if request.path == "/healthz":
            return text_response(200, "ok")
        if request.path == "/readyz":
            if self.ready:
                return text_response(200, "ready")
            if self._store.stalled:
                return text_response(503, "not ready: no poll cycle has completed for too long")
            return text_response(503, "not ready: the first poll cycle has not finished")
        if request.path == "/":
            return Response(200, (_LANDING_PAGE,), "text/html; charset=utf-8")
        return text_response(404, "not found")

    async def _authorize(self, request: Request, checker: BasicAuthChecker) -> Response | None:
        """None when the request carries valid credentials, else the 401 or 429 to send."""
        credentials = basic_credentials(request.headers.get("Authorization", ""))
        verdict = checker.cached(*credentials) if credentials is not None else False
        if verdict is None and credentials is not None:
            wait = self._backoff.wait_seconds(request.client)
            joining = checker.credential_key(*credentials) in self._checks_running
            if wait > 0 or (not joining and self._queued_checks >= self._max_queued_checks):
                # Answered slowly and without bcrypt: a flood from one client costs neither CPU nor threads.
                self._stats.backoff_refused()
                await asyncio.sleep(min(max(wait, 0.5), 1.0))
                retry = str(max(1, math.ceil(wait)))
                return text_response(
                    429, "too many failed logins: retry later", headers=[("Retry-After", retry)]
                )
            verdict = await self._verify_once(checker, credentials)
            if verdict:
                self._backoff.succeeded(request.client)
            else:
                self._backoff.failed(request.client)
        if verdict:
            return None
        self._stats.authentication_failed(credentials_sent=credentials is not None)
        challenge = ("WWW-Authenticate", 'Basic realm="ccs-exporter", charset="UTF-8"')
        return text_response(401, "Unauthorized", headers=[challenge])

    async def _verify_once(self, checker: BasicAuthChecker, credentials: tuple[str, str]) -> bool:
        """bcrypt for ``credentials``, shared by every request that carries them while it runs."""
        key = checker.credential_key(*credentials)
        running = self._checks_running.get(key)
        if running is None:
            self._queued_checks += 1
            loop = asyncio.get_running_loop()
            running = asyncio.ensure_future(loop.run_in_executor(self._bcrypt, checker.verify, *credentials))
            self._checks_running[key] = running

            def done(_: asyncio.Future[bool]) -> None:
                self._queued_checks -= 1
                self._checks_running.pop(key, None)

            running.add_done_callback(done)
        return await asyncio.shield(running)

    async def _metrics(self, request: Request) -> Response:
        try:
            names = selected_names(request.query)
        except ValueError as exc:
            return text_response(400, str(exc))
        fmt, content_type = negotiate(request.headers.get("Accept", ""))
        gzipped = accepts_gzip(request.headers.get("Accept-Encoding", ""))
        live = self._live.render(fmt, names)
        if not gzipped and names is None:
            self._store.plain_asked()  # plain copies are made at publish for a while
        try:
            body = await self._exposition_body(fmt, gzipped, names)
        except Exception as exc:  # inflating failed (out of memory, say): this scrape fails, not the server
            log.error("metrics_plain_body_failed", error=type(exc).__name__, message=str(exc))
            return text_response(500, "the plain exposition could not be made: see the exporter's log")
        if gzipped:
            live = gzip.compress(live, compresslevel=1, mtime=0)
        end = () if fmt is Format.TEXT else (EOF_GZIP,) if gzipped else (EOF,)
        headers = [("Vary", "Accept, Accept-Encoding")]
        if gzipped:
            headers.append(("Content-Encoding", "gzip"))
        return Response(200, (live, *body, *end), content_type, headers)

    async def _exposition_body(
        self, fmt: Format, gzipped: bool, names: frozenset[str] | None
    ) -> tuple[bytes, ...]:
        """The last cycle's families as sent: their parts passed on as they are, never copied or rendered
        again (at 10,000 jobs 22 MB plain, 4.4 MB gzip; concatenated gzip members are one valid stream)."""
        exposition = self._store.current
        if exposition is None:
            return ()
        if exposition.deflated and not gzipped and (names is not None or not exposition.plain_ready):
            # Inflating (the plain copy, or the families selected) takes tens of milliseconds at 10,000
            # jobs: off the event loop, so that other requests, gzip scrapes among them, go on meanwhile.
            loop = asyncio.get_running_loop()
            select = functools.partial(exposition.body, fmt, gzipped=False, names=names)
            return await loop.run_in_executor(self._inflater, select)
        return exposition.body(fmt, gzipped=gzipped, names=names)


def _retry_after(bucket: TokenBucket) -> str:
    return str(max(1, math.ceil(bucket.interval)))


def response_head(request: Request | None, answer: Response, extra: tuple[tuple[str, str], ...]) -> bytes:
    """The status line and headers of ``answer`` (``extra``: the web config's headers)."""
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
