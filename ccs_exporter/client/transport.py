"""The transport to CCS: one pooled session, each HTTP attempt timed, capped and mapped to ``CcsError``.

``send`` makes one attempt; ``call`` adds the policy for authenticated requests: a bearer token from a
``TokenSource``, one retry after a 401 with a fresh token, and backoff retries of reads on connection
errors and 5xx (mutations are never retried blindly). It knows no endpoint and no token grant. Nothing
above it sees a ``requests`` exception.
"""

from __future__ import annotations

import random
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
import structlog
from requests.adapters import HTTPAdapter

from ccs_exporter import __version__
from ccs_exporter.errors import BadResponseError, CcsError, CcsTimeoutError, UnavailableError

API_PREFIX = "/ccs/api/v1"

RequestObserver = Callable[[str, str, float], None]
"""Called after every HTTP attempt with (endpoint label, status code or "error"/"timeout", seconds)."""

log = structlog.get_logger(__name__)

# The most a CCS answer may hold (a setting can change it): a hostile or broken server cannot fill memory.
MAX_RESPONSE_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Endpoint:
    """One CCS API operation: its HTTP method, its path template under ``API_PREFIX``, its metric label."""

    method: str
    path: str
    label: str

    def url_path(self, **values: str) -> str:
        """The path as sent and recorded, e.g. ``/ccs/api/v1/jobs/<id>``."""
        return API_PREFIX + self.path.format(**values)

    @property
    def idempotent(self) -> bool:
        """Safe to repeat after a failure: reads only."""
        return self.method == "GET"


class TokenSource(Protocol):
    """What ``Transport.call`` needs of the token manager."""

    def access_token(self) -> str: ...

    def invalidate(self, access: str) -> None: ...

    def redact(self, text: str, *also: str | None) -> str: ...


class Transport:
    """Sends requests to one CCS over a pooled session; thread-safe, share one instance."""

    def __init__(
        self,
        base_url: str,
        *,
        verify: bool | str = True,
        timeout: float = 30.0,
        pool_size: int = 8,
        read_retries: int = 2,
        backoff_seconds: float = 0.5,
        observer: RequestObserver | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self._root = base_url.rstrip("/")
        self._timeout = timeout
        self._read_retries = max(0, read_retries)
        self._backoff = backoff_seconds
        self._observer = observer
        self._max_response_bytes = max_response_bytes
        self._session = requests.Session()
        # Proxy variables are read once here, not on every request: with trust_env requests scans the whole
        # environment (and ~/.netrc) per request, a quarter of the exporter's CPU per poll cycle.
        self._session.proxies.update(requests.utils.get_environ_proxies(self._root + API_PREFIX))
        self._session.trust_env = False
        self._session.verify = verify
        self._session.headers.update(
            {"Accept": "application/json", "User-Agent": f"ccs-exporter/{__version__}"}
        )
        # No urllib3-level retries: retry policy lives here, where we know what is safe to repeat.
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(1, pool_size), max_retries=0)
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        self._requests = 0
        self._requests_lock = threading.Lock()
        if verify is False:  # said once, where the connection to CCS is made (every command builds one)
            log.warning("tls_verification_disabled", url=self._root)

    @property
    def requests_sent(self) -> int:
        """How many HTTP requests have been attempted, token requests and retries included."""
        return self._requests

    def close(self) -> None:
        """Close the pooled connections."""
        self._session.close()

    def call(
        self,
        endpoint: Endpoint,
        url_path: str,
        tokens: TokenSource,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
    ) -> requests.Response:
        """Send an authenticated request; map failures to CcsError; retry what is safe to retry."""
        attempt = 0
        reauthenticated = False
        while True:
            access = tokens.access_token()
            try:
                response = self.send(
                    endpoint,
                    url_path,
                    params=params,
                    json=json,
                    headers={"Authorization": f"Bearer {access}"},
                )
            except UnavailableError as exc:
                retry = not isinstance(exc, CcsTimeoutError)
                if endpoint.idempotent and retry and attempt < self._read_retries:
                    attempt += 1
                    self._sleep_backoff(attempt, endpoint.label, "connection")
                    continue
                raise
            if response.status_code == 401 and not reauthenticated:
                # CCS refused the token (expired early, server restarted): log in again, retry once.
                # A 401 means the request was not carried out, so this is safe for mutations too.
                reauthenticated = True
                tokens.invalidate(access)
                continue
            if response.status_code >= 500 and endpoint.idempotent and attempt < self._read_retries:
                attempt += 1
                self._sleep_backoff(attempt, endpoint.label, str(response.status_code))
                continue
            if response.status_code >= 400:
                message = server_message(response) or response.reason or "request failed"
                raise CcsError.from_status(
                    response.status_code,
                    tokens.redact(message, access),
                    method=endpoint.method,
                    path=url_path,
                )
            return response

    def send(self, endpoint: Endpoint, url_path: str, **kwargs: Any) -> requests.Response:
        """One HTTP attempt, reported to the observer; connection failures become UnavailableError."""
        started = time.perf_counter()
        code = "error"
        with self._requests_lock:
            self._requests += 1
        try:
            response = self._session.request(
                endpoint.method,
                self._root + url_path,
                timeout=self._timeout,
                allow_redirects=False,
                stream=True,
                **kwargs,
            )
            code = str(response.status_code)
            self._read_body(response, endpoint.method, started)
            return response
        except requests.exceptions.RequestException as exc:
            if isinstance(exc, requests.exceptions.Timeout):
                code = "timeout"
            error = self._unavailable(exc)
            error.method, error.path = endpoint.method, url_path
            raise error from None
        except UnavailableError as exc:  # the body did not arrive in time
            exc.method, exc.path = endpoint.method, url_path
            raise
        finally:
            if self._observer is not None:
                self._observer(endpoint.label, code, time.perf_counter() - started)

    def _unavailable(self, exc: requests.exceptions.RequestException) -> UnavailableError:
        """The UnavailableError for a failed attempt, saying whether the request may have been sent."""
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return CcsTimeoutError(f"no connection within {self._timeout:g} s", sent=False)
        if isinstance(exc, requests.exceptions.Timeout):
            return CcsTimeoutError(f"no answer within {self._timeout:g} s", sent=True)
        if isinstance(exc, requests.exceptions.SSLError):
            return UnavailableError(f"TLS handshake failed: {_describe_tls_error(exc)}", sent=False)
        if isinstance(exc, requests.exceptions.ConnectionError):
            refused = _nothing_sent(exc)
            reason = "connection refused or host unreachable" if refused else "connection dropped"
            return UnavailableError(f"{reason}: {_describe_connection_error(exc)}", sent=not refused)
        return UnavailableError(f"request failed: {type(exc).__name__}", sent=True)

    def _read_body(self, response: requests.Response, method: str, started: float) -> None:
        """Read the body, at most ``max_response_bytes`` and within the request timeout, then release it."""
        limit = self._max_response_bytes
        chunks: list[bytes] = []
        size = 0
        try:
            declared = int(response.headers.get("Content-Length", "0") or 0)
        except ValueError:
            declared = 0
        try:
            if declared <= limit:
                for chunk in response.iter_content(64 * 1024):
                    size += len(chunk)
                    if size > limit:
                        break
                    chunks.append(chunk)
                    # A server dripping bytes would reset the per-read timeout forever: bound the total.
                    if time.perf_counter() - started > self._timeout:
                        raise CcsTimeoutError(f"no complete answer within {self._timeout:g} s", sent=True)
        finally:
            response.close()
        if declared > limit or size > limit:
            raise BadResponseError(
                f"response body larger than {limit} bytes; not read",
                method=method,
                path=urlsplit(response.url).path,
                status=response.status_code,
            )
        response._content = b"".join(chunks)

    def _sleep_backoff(self, attempt: int, endpoint: str, reason: str) -> None:
        delay = self._backoff * (2 ** (attempt - 1)) * (0.5 + random.random())
        log.debug("ccs_request_retry", endpoint=endpoint, attempt=attempt, reason=reason, delay_seconds=delay)
        time.sleep(delay)


# What OpenSSL says when the other side answers a ClientHello with something that is not TLS, typically
# an HTTP error page ("HTTP/1.1 400"): the URL says https:// but the port speaks plain HTTP.
_NOT_TLS_REASONS = frozenset(
    {
        "WRONG_VERSION_NUMBER",
        "RECORD_LAYER_FAILURE",
        "UNKNOWN_PROTOCOL",
        "PACKET_LENGTH_TOO_LONG",
        "HTTP_REQUEST",
    }
)


def _describe_tls_error(exc: BaseException) -> str:
    """Why the TLS handshake failed, in the words that point at the fix: a plain-HTTP server, an untrusted
    certificate, a certificate for another name, or OpenSSL's reason."""
    cause = _ssl_cause(exc)
    if isinstance(cause, ssl.SSLCertVerificationError):
        detail = cause.verify_message or "verification failed"
        if "hostname" in detail.lower() or "ip address mismatch" in detail.lower():
            return (
                f"the server certificate is not for this host ({detail}): use the name the certificate "
                "holds in CCS_EXPORTER_URL"
            )
        return (
            f"the server certificate is not trusted ({detail}): set CCS_EXPORTER_CA_BUNDLE to the CA "
            "that signed it (the CCS internal CA)"
        )
    reason = getattr(cause, "reason", None)
    if reason in _NOT_TLS_REASONS:
        return (
            "the server answered in plain HTTP, not TLS: use an http:// URL for this port, or the port "
            "where CCS serves https (CCS_EXPORTER_URL)"
        )
    if reason:
        return f"{str(reason).lower().replace('_', ' ')} (OpenSSL)"
    return "the connection was not TLS or was closed during the handshake"


def _ssl_cause(exc: BaseException) -> BaseException | None:
    """The ``ssl.SSLError`` inside the exceptions requests and urllib3 wrap it in, if there is one."""
    seen: set[int] = set()
    pending: list[Any] = [exc]
    while pending:
        current = pending.pop(0)
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLError):
            return current
        pending.extend(
            [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
        )
    return None


def json_body(response: requests.Response, method: str, path: str) -> Any:
    """The parsed JSON body; BadResponseError when it is not JSON or nested too deeply."""
    try:
        return response.json()
    except RecursionError:
        raise BadResponseError(
            f"response body is nested too deeply ({len(response.content)} bytes)",
            method=method,
            path=path,
            status=response.status_code,
        ) from None
    except ValueError:
        raise BadResponseError(
            f"response body is not JSON ({len(response.content)} bytes)",
            method=method,
            path=path,
            status=response.status_code,
        ) from None


def server_message(response: requests.Response) -> str:
    """The server's own error text (``Message`` in JSON, else a short plain-text excerpt), on one line."""
    text = ""
    try:
        body = response.json()
    except RecursionError:
        body = None
    except ValueError:
        content_type = response.headers.get("Content-Type", "")
        if "html" not in content_type:
            text = response.text[:200]
    else:
        if isinstance(body, dict):
            for key in ("Message", "message", "error_description", "error", "ExceptionMessage"):
                value = body.get(key)
                if isinstance(value, str) and value:
                    text = value
                    break
        elif isinstance(body, str):
            text = body
    return " ".join(text.split())[:300]


def _nothing_sent(exc: requests.exceptions.ConnectionError) -> bool:
    """True when the connection was never established (refused, DNS failure, unreachable host)."""
    text = repr(exc)
    never_connected = any(marker in text for marker in ("NewConnectionError", "NameResolutionError"))
    return never_connected and "ProtocolError" not in text


def _describe_connection_error(exc: requests.exceptions.ConnectionError) -> str:
    text = str(exc)
    for marker in (
        "Connection refused",
        "Name or service not known",
        "RemoteDisconnected",
        "Connection reset by peer",
        "Connection aborted",
        "No route to host",
    ):
        if marker in text:
            return marker
    return type(exc).__name__
