"""A small client of one Prometheus server's HTTP API, for ``audit verify --witness``.

It sends GET requests to the URL it is given (a path prefix such as ``https://host/prometheus`` is kept)
and nowhere else: no proxy from the environment, no redirect followed, so its credentials (a bearer
token, basic auth, a client certificate, extra headers such as ``X-Scope-OrgID``) only ever go there.
Each request has one deadline for the whole exchange (connect, TLS, head and body), whatever pace the
server sends at; answers are streamed up to a size cap and parsed with a depth and number check. Every
failure is a ``PrometheusError`` with one line saying what went wrong, never holding a secret (never a
traceback, never a ``requests`` exception above this module).
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3.connection
import urllib3.connectionpool
from requests.adapters import HTTPAdapter

from ccs_exporter import __version__
from ccs_exporter.errors import ConfigError, WitnessError
from ccs_exporter.redaction import replace_known, secret_variants

# A bounded answer: the witness asks for at most 50,000 samples per query (about 3 MB of JSON), and
# parsed JSON takes several times its size in memory.
MAX_ANSWER_BYTES = 16 * 1024 * 1024
# Prometheus' answers nest five levels deep; anything far deeper is not one.
MAX_JSON_DEPTH = 64
_MAX_SECRET_FILE_BYTES = 64 * 1024
_DURATION_RE = re.compile(r"(\d+)(ms|y|w|d|h|m|s)")
_UNIT_SECONDS = {"y": 365 * 86400, "w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Headers the client sets itself (as Prometheus' own http_headers reserves them); credentials have options.
_RESERVED_HEADERS = frozenset(
    {
        "authorization",
        "host",
        "content-length",
        "content-type",
        "content-encoding",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "user-agent",
        "accept-encoding",
        "proxy-authorization",
    }
)


class PrometheusError(WitnessError):
    """Prometheus could not be asked, or answered with an error; the message is one line."""


def check_prometheus_url(url: str) -> str:
    """The base URL (a path prefix kept) without a trailing slash; ValueError naming what is wrong."""
    text = url.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be http:// or https:// and a host, e.g. http://prometheus:9090")
    if "@" in parts.netloc:
        raise ValueError(
            "must not hold a user name or password (use --witness-basic-auth-user and "
            "--witness-basic-auth-password-file)"
        )
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or fragment")
    return text.rstrip("/")


def parse_duration(text: str) -> float | None:
    """Seconds of a Prometheus duration such as ``15d`` or ``1y2w``; None when ``text`` is not one."""
    text = text.strip()
    if not text or _DURATION_RE.sub("", text):
        return None
    return float(sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_RE.findall(text)))


@dataclass(frozen=True)
class PrometheusAccess:
    """How to reach a secured Prometheus: CA, credentials, client certificate, extra headers.

    Built with ``from_options``, which reads the secret files once and checks everything; its ``repr``
    never shows a secret.
    """

    ca_bundle: Path | None = None
    bearer_token: str | None = None
    basic_auth: tuple[str, str] | None = None
    client_cert: tuple[str, str] | None = None
    headers: tuple[tuple[str, str], ...] = ()

    def __repr__(self) -> str:
        token, basic = ("set" if value else None for value in (self.bearer_token, self.basic_auth))
        return (
            f"PrometheusAccess(ca_bundle={self.ca_bundle}, bearer_token={token}, "
            f"basic_auth={basic}, client_cert={self.client_cert}, "
            f"headers={[name for name, _ in self.headers]})"
        )

    @classmethod
    def from_options(
        cls,
        *,
        option_prefix: str = "--witness-",
        ca_bundle: Path | None = None,
        bearer_token_file: Path | None = None,
        basic_auth_user: str | None = None,
        basic_auth_password_file: Path | None = None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        headers: list[str] | None = None,
    ) -> PrometheusAccess:
        """Checked options; ``ConfigError`` naming the option (never a secret's value) when one is wrong."""
        p = option_prefix
        if ca_bundle is not None and not ca_bundle.is_file():
            raise ConfigError(f"{p}ca-bundle {ca_bundle} is not a file", field="witness")
        token = _secret_file(bearer_token_file, f"{p}bearer-token-file") if bearer_token_file else None
        if (basic_auth_user is None) != (basic_auth_password_file is None):
            raise ConfigError(
                f"{p}basic-auth-user and {p}basic-auth-password-file go together", field="witness"
            )
        basic = None
        if basic_auth_user is not None and basic_auth_password_file is not None:
            if not basic_auth_user or ":" in basic_auth_user:
                raise ConfigError(f"{p}basic-auth-user must be a non-empty name without ':'", field="witness")
            password = _secret_file(basic_auth_password_file, f"{p}basic-auth-password-file")
            basic = (basic_auth_user, password)
        if token is not None and basic is not None:
            raise ConfigError(f"{p}bearer-token-file and {p}basic-auth-user: choose one", field="witness")
        if (cert_file is None) != (key_file is None):
            raise ConfigError(f"{p}cert-file and {p}key-file go together", field="witness")
        client_cert = None
        if cert_file is not None and key_file is not None:
            _check_client_certificate(cert_file, key_file, p)
            client_cert = (str(cert_file), str(key_file))
        return cls(ca_bundle, token, basic, client_cert, tuple(_header(text, p) for text in headers or ()))

    @property
    def secrets(self) -> list[str]:
        """Every secret value and the forms it is sent in, for redacting what comes back."""
        values: list[str] = []
        if self.bearer_token:
            values += secret_variants(self.bearer_token)
        if self.basic_auth:
            user, password = self.basic_auth
            values += secret_variants(password) + secret_variants(f"{user}:{password}")[1:]
        for _, value in self.headers:
            values += secret_variants(value)
        return values


def _secret_file(path: Path, option: str) -> str:
    """The content of a token or password file, surrounding whitespace removed (as Prometheus does)."""
    try:
        with path.open("rb") as file:
            raw = file.read(_MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{option} {path}: cannot read ({exc.strerror or exc})", field="witness") from None
    if len(raw) > _MAX_SECRET_FILE_BYTES:
        raise ConfigError(f"{option} {path}: larger than {_MAX_SECRET_FILE_BYTES} bytes", field="witness")
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{option} {path}: not UTF-8 text", field="witness") from None
    if not text:
        raise ConfigError(f"{option} {path}: is empty", field="witness")
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise ConfigError(f"{option} {path}: holds a control character (one line expected)", field="witness")
    return text


def _check_client_certificate(cert_file: Path, key_file: Path, option_prefix: str) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        # An encrypted key fails here rather than prompting on the terminal.
        context.load_cert_chain(str(cert_file), str(key_file), password=lambda: b"")
    except (ssl.SSLError, OSError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigError(
            f"{option_prefix}cert-file {cert_file} / {option_prefix}key-file {key_file}: "
            f"cannot load the certificate and key ({reason})",
            field="witness",
        ) from None


def _header(text: str, option_prefix: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    name = name.strip()
    option = f"{option_prefix}header"
    if not sep or not _HEADER_NAME.match(name):
        raise ConfigError(
            f"{option} must be NAME=VALUE with a header name, e.g. X-Scope-OrgID=team-a", field="witness"
        )
    if name.lower() in _RESERVED_HEADERS:
        raise ConfigError(
            f"{option} {name} is set by the client (credentials have their own options)", field="witness"
        )
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise ConfigError(f"{option} {name}: the value holds a control character", field="witness")
    return name, value.strip()


class _Deadline:
    """One request's whole-exchange deadline: when it passes, the socket in use is shut down.

    ``requests`` (and urllib3) time out each read, so a server sending a byte a second never times out;
    shutting the socket down wakes whatever read is blocked, at any stage.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer: threading.Timer | None = None
        self.expired = False

    def start(self, seconds: float) -> None:
        with self._lock:
            self.expired = False
            self._sockets = []
            self._timer = threading.Timer(seconds, self._expire)
            self._timer.daemon = True
            self._timer.start()

    def stop(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = None
            self._sockets = []

    def watch(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _deadline_adapter(deadline: _Deadline) -> HTTPAdapter:
    """A requests adapter whose connections hand their socket to ``deadline`` as they connect and ask."""

    class _Http(urllib3.connection.HTTPConnection):
        def connect(self) -> None:
            super().connect()
            deadline.watch(self.sock)

        def getresponse(self) -> Any:
            deadline.watch(self.sock)
            return super().getresponse()

    class _Https(urllib3.connection.HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            deadline.watch(self.sock)

        def getresponse(self) -> Any:
            deadline.watch(self.sock)
            return super().getresponse()

    class _HttpPool(urllib3.connectionpool.HTTPConnectionPool):
        ConnectionCls = _Http

    class _HttpsPool(urllib3.connectionpool.HTTPSConnectionPool):
        ConnectionCls = _Https

    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=1, max_retries=0)
    adapter.poolmanager.pool_classes_by_scheme = {"http": _HttpPool, "https": _HttpsPool}
    return adapter


class PrometheusApi:
    """Queries of one Prometheus: instant, range, and its runtime information."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        ca_bundle: Path | None = None,
        access: PrometheusAccess | None = None,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        self._root = check_prometheus_url(url)
        self._timeout = timeout
        self._max_answer_bytes = max_answer_bytes
        access = access or PrometheusAccess(ca_bundle=ca_bundle)
        self._secrets = access.secrets
        self._deadline = _Deadline()
        self._session = requests.Session()
        self._session.trust_env = False  # only the URL given: no proxy, CA or .netrc from the environment
        for scheme in ("http://", "https://"):
            self._session.mount(scheme, _deadline_adapter(self._deadline))
        bundle = access.ca_bundle or ca_bundle
        self._session.verify = str(bundle) if bundle is not None else True
        self._session.headers["User-Agent"] = f"ccs-exporter/{__version__}"
        self._session.headers.update(dict(access.headers))
        if access.bearer_token is not None:
            self._session.headers["Authorization"] = f"Bearer {access.bearer_token}"
        if access.basic_auth is not None:
            self._session.auth = access.basic_auth
        if access.client_cert is not None:
            self._session.cert = access.client_cert

    @property
    def url(self) -> str:
        """The base URL asked."""
        return self._root

    def close(self) -> None:
        """Release the connection pool."""
        self._session.close()

    def query(self, expr: str, at: float) -> Any:
        """The ``data`` of an instant query at Unix time ``at``."""
        return self._get("/api/v1/query", {"query": expr, "time": f"{at:.3f}"})

    def query_range(self, expr: str, start: float, end: float, step: float) -> Any:
        """The ``data`` of a range query."""
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:.3f}"}
        return self._get("/api/v1/query_range", params)

    def retention_seconds(self) -> float | None:
        """The time-based retention Prometheus reports (``storageRetention``), None if it has none."""
        try:
            info = self._get("/api/v1/status/runtimeinfo", {})
        except PrometheusError:
            return None  # older servers and some compatible ones lack the endpoint
        retention = info.get("storageRetention") if isinstance(info, dict) else None
        if not isinstance(retention, str):
            return None
        for part in retention.split(" or "):
            seconds = parse_duration(part)
            if seconds:
                return seconds
        return None

    def _get(self, path: str, params: dict[str, str]) -> Any:
        url = self._root + path
        started = time.monotonic()
        self._deadline.start(self._timeout)
        try:
            status, body = self._exchange(url, params)
        except PrometheusError:
            if self._deadline.expired:
                raise PrometheusError(f"{url}: no whole answer within {self._timeout:g} s") from None
            raise
        finally:
            self._deadline.stop()
        if time.monotonic() - started > self._timeout:
            raise PrometheusError(f"{url}: no whole answer within {self._timeout:g} s")
        payload = _decode(body) if body else None
        if not isinstance(payload, dict) or payload.get("status") not in ("success", "error"):
            hint = " (credentials needed? see --witness-bearer-token-file)" if status in (401, 403) else ""
            raise PrometheusError(
                f"{url}: HTTP {status}, not an answer of the Prometheus API (is this Prometheus?){hint}"
            )
        if payload["status"] == "error":
            error = " ".join(str(payload.get("error", "")).split())[:300]
            kind = " ".join(str(payload.get("errorType", "")).split())[:50]
            raise PrometheusError(replace_known(f"{url}: HTTP {status}: {kind}: {error}", self._secrets))
        return payload.get("data")

    def _exchange(self, url: str, params: dict[str, str]) -> tuple[int, bytes]:
        try:
            response = self._session.get(
                url, params=params, timeout=self._timeout, stream=True, allow_redirects=False
            )
        except requests.exceptions.SSLError:
            raise PrometheusError(
                f"{url}: TLS handshake failed (certificate not trusted, or a client certificate needed?)"
            ) from None
        except requests.exceptions.Timeout:
            raise PrometheusError(f"{url}: no answer within {self._timeout:g} s") from None
        except requests.exceptions.RequestException as exc:
            raise PrometheusError(f"{url}: cannot connect ({_reason(exc)})") from None
        return response.status_code, self._read(response, url)

    def _read(self, response: requests.Response, url: str) -> bytes:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self._max_answer_bytes:
            response.close()
            raise PrometheusError(f"{url}: answer larger than {self._max_answer_bytes} bytes; not read")
        body = bytearray()
        try:
            for chunk in response.iter_content(64 * 1024):
                body += chunk
                if len(body) > self._max_answer_bytes:
                    raise PrometheusError(
                        f"{url}: answer larger than {self._max_answer_bytes} bytes; not read"
                    )
        except requests.exceptions.RequestException as exc:
            raise PrometheusError(f"{url}: answer cut off ({_reason(exc)})") from None
        finally:
            response.close()
        return bytes(body)


def _decode(body: bytes) -> Any:
    """Parsed JSON, or None when ``body`` is not JSON Prometheus could have sent.

    NaN and infinities are not JSON (Prometheus writes sample values as strings), numbers of more than 30
    digits are not Prometheus' either, and nesting is capped before the parser could recurse too deep.
    """
    if _nesting_depth(body) > MAX_JSON_DEPTH:
        return None
    try:
        return json.loads(
            body, parse_constant=_no_constant, parse_int=_bounded_int, parse_float=_bounded_float
        )
    except (ValueError, RecursionError):
        return None


def _nesting_depth(body: bytes) -> int:
    """The deepest bracket nesting of ``body`` (brackets inside strings count too: an upper bound)."""
    depth = deepest = 0
    for match in re.finditer(rb"[\[\]{}]", body):
        depth += 1 if match.group() in (b"[", b"{") else -1
        if depth > deepest:
            deepest = depth
            if deepest > MAX_JSON_DEPTH:
                break
    return deepest


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _bounded_int(text: str) -> int:
    if len(text) > 30:
        raise ValueError("number too long")
    return int(text)


def _bounded_float(text: str) -> float:
    value = float(text[:64]) if len(text) <= 64 else math.inf
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _reason(exc: requests.exceptions.RequestException) -> str:
    """A short reason without the URL's query (which could be long) or nested tracebacks."""
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "No route to host", "timed out"):
        if marker in text:
            return marker.lower()
    return type(exc).__name__
