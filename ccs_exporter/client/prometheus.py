"""A small client of one Prometheus server's HTTP API, for ``audit verify --witness``.

It sends GET requests to the URL it is given (a path prefix such as ``https://host/prometheus`` is kept)
and nowhere else: no proxy from the environment, no redirect followed, so its credentials (a bearer
token, basic auth, a client certificate, extra headers such as ``X-Scope-OrgID``) only ever go there.
Each request has one deadline for the whole exchange (connect, TLS, head and body), whatever pace the
server sends at; answers are streamed up to a size cap and parsed with a depth and number check
(``prometheus_answer``); the access options are checked in ``prometheus_access``. Every
failure is a ``PrometheusError`` with one line saying what went wrong, never holding a secret (never a
traceback, never a ``requests`` exception above this module).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path
from typing import Any

import requests
import urllib3.connection
import urllib3.connectionpool
from requests.adapters import HTTPAdapter

from ccs_exporter import __version__
from ccs_exporter.client.prometheus_access import PrometheusAccess, check_prometheus_url
from ccs_exporter.client.prometheus_answer import decode_answer, parse_duration
from ccs_exporter.errors import WitnessError
from ccs_exporter.redaction import replace_known

__all__ = ["MAX_ANSWER_BYTES", "PrometheusAccess", "PrometheusApi", "PrometheusError", "check_prometheus_url"]

# A bounded answer: the witness asks for at most 50,000 samples per query (about 3 MB of JSON), and
# parsed JSON takes several times its size in memory.
MAX_ANSWER_BYTES = 16 * 1024 * 1024


class PrometheusError(WitnessError):
    """Prometheus could not be asked, or answered with an error; the message is one line."""


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

    class _Watched(urllib3.connection.HTTPConnection):
        """Hands its socket to the deadline when it connects and when it asks (HTTP and HTTPS alike)."""

        def connect(self) -> None:
            super().connect()
            deadline.watch(self.sock)

        def getresponse(self) -> Any:
            deadline.watch(self.sock)
            return super().getresponse()

    class _Http(_Watched):
        pass

    class _Https(_Watched, urllib3.connection.HTTPSConnection):
        pass

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
        payload = decode_answer(body) if body else None
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


def _reason(exc: requests.exceptions.RequestException) -> str:
    """A short reason without the URL's query (which could be long) or nested tracebacks."""
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "No route to host", "timed out"):
        if marker in text:
            return marker.lower()
    return type(exc).__name__
