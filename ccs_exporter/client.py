"""The CCS jobs REST API client: one pooled session, one shared token, typed results, CcsError on failure.

This is the only module that talks HTTP to CCS. It logs in with a properly form-encoded password grant,
refreshes the access token before it expires, falls back to a new login when the refresh fails, and on a
401 re-authenticates and retries the request once. Reads retry with backoff on connection errors and
5xx; mutations are never retried blindly. Nothing above it sees a ``requests`` exception, and no error
text it builds holds a token or the password.
"""

from __future__ import annotations

import base64
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import requests
import structlog
from pydantic import SecretStr, ValidationError
from requests.adapters import HTTPAdapter

from ccs_exporter import __version__
from ccs_exporter.errors import (
    AuthError,
    BadRequestError,
    BadResponseError,
    CcsError,
    CcsTimeoutError,
    ConfigError,
    ForbiddenError,
    NotFoundError,
    ServerError,
    UnavailableError,
)
from ccs_exporter.models import (
    CreateJobRequest,
    Job,
    JobDetailsUpdate,
    JobRuns,
    describe_validation_error,
    normalize_guid,
    request_body,
)

if TYPE_CHECKING:
    from ccs_exporter.config import Settings

API_PREFIX = "/ccs/api/v1"
# The vendor documents 60-minute access tokens and 90-minute refresh tokens (both configurable).
DEFAULT_ACCESS_TOKEN_SECONDS = 3600.0
DEFAULT_REFRESH_TOKEN_SECONDS = 5400.0
# Refresh this long before expiry, capped at a tenth of the lifetime for short-lived tokens.
REFRESH_MARGIN_SECONDS = 60.0
# After a refused password login, wait this long before the next one, doubling up to the cap: a wrong
# password must not lock the CCS account (a few attempts a minute at most, then fewer).
LOGIN_BACKOFF_SECONDS = 15.0
LOGIN_BACKOFF_MAX_SECONDS = 300.0
# No CCS answer we use comes near this; a bigger body is read no further and refused (BadResponseError),
# so a broken or hostile server cannot make the exporter buffer gigabytes.
MAX_RESPONSE_BYTES = 8 * 1024 * 1024

RequestObserver = Callable[[str, str, float], None]
"""Called after every HTTP attempt with (endpoint template, status code or "error"/"timeout", seconds)."""

log = structlog.get_logger(__name__)
_PayloadT = TypeVar("_PayloadT", Job, JobRuns)

_STATUS_ERRORS: dict[int, type[CcsError]] = {
    400: BadRequestError,
    401: AuthError,
    403: ForbiddenError,
    404: NotFoundError,
}


@dataclass(frozen=True)
class _Token:
    access: str
    refresh: str | None
    access_expires_at: float
    refresh_expires_at: float


class CcsClient:
    """A thread-safe client for the CCS jobs API; share one instance between workers."""

    def __init__(
        self,
        base_url: str,
        username: str,
        password: SecretStr,
        *,
        password_encoding: str = "base64",
        verify: bool | str = True,
        timeout: float = 30.0,
        pool_size: int = 8,
        read_retries: int = 2,
        backoff_seconds: float = 0.5,
        observer: RequestObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        password_source: Callable[[], str] | None = None,
    ) -> None:
        if password_encoding not in ("base64", "plain"):
            raise ConfigError("password_encoding must be base64 or plain", field="password_encoding")
        self._base = base_url.rstrip("/") + API_PREFIX
        self._username = username
        self._password = password
        # Re-read before each login (a Kubernetes secret rotated under a running exporter).
        self._password_source = password_source
        self._password_encoding = password_encoding
        self._timeout = timeout
        self._read_retries = max(0, read_retries)
        self._backoff = backoff_seconds
        self._observer = observer
        self._clock = clock
        self._max_response_bytes = max_response_bytes
        self._session = requests.Session()
        # Proxy variables are read once here, not on every request: with trust_env requests scans the whole
        # environment (and ~/.netrc) per request, a quarter of the exporter's CPU per poll cycle.
        self._session.proxies.update(requests.utils.get_environ_proxies(self._base))
        self._session.trust_env = False
        self._session.verify = verify
        self._session.headers.update(
            {"Accept": "application/json", "User-Agent": f"ccs-exporter/{__version__}"}
        )
        # No urllib3-level retries: retry policy lives here, where we know what is safe to repeat.
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(1, pool_size), max_retries=0)
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        self._token: _Token | None = None
        self._token_lock = threading.Lock()
        self._logins = 0
        self._refreshes = 0
        self._login_failures = 0
        self._login_blocked_until = 0.0
        self._requests = 0
        self._requests_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, observer: RequestObserver | None = None) -> CcsClient:
        """A client configured from ``Settings`` (pool sized to the concurrency)."""
        return cls(
            settings.url,
            settings.username,
            SecretStr(settings.password_value()),
            password_encoding=settings.password_encoding,
            verify=settings.tls_verify,
            timeout=settings.request_timeout_seconds,
            pool_size=settings.concurrency,
            observer=observer,
            password_source=settings.password_value if settings.password_file is not None else None,
            max_response_bytes=settings.max_response_bytes,
        )

    @property
    def username(self) -> str:
        """The CCS account this client acts as."""
        return self._username

    @property
    def logins(self) -> int:
        """How many password logins this client has made."""
        return self._logins

    @property
    def refreshes(self) -> int:
        """How many refresh-token grants this client has made."""
        return self._refreshes

    @property
    def requests_sent(self) -> int:
        """How many HTTP requests this client has attempted, token requests and retries included."""
        return self._requests

    def authenticate(self) -> None:
        """Make sure a valid access token is held: refresh or log in now if needed (raises AuthError)."""
        self._access_token()

    # --- the five endpoints -----------------------------------------------------------------------

    def get_job(self, job_id: str) -> Job:
        """Search job by id: the job's properties and, for CER/collection/evaluation jobs, its config."""
        job_id = _checked_guid(job_id)
        response = self._call("GET", f"/jobs/{job_id}", "job", idempotent=True)
        return _parse(Job, response, "GET", f"{API_PREFIX}/jobs/{job_id}", self._redact)

    def get_job_runs(self, job_id: str, count: int = 1, show_messages: bool = False) -> JobRuns:
        """The latest ``count`` runs of a job (0 means all), with their messages if asked."""
        job_id = _checked_guid(job_id)
        if count < 0:
            raise ConfigError("count must be 0 (all runs) or more", field="count")
        params = {"count": str(count), "showmessages": "true" if show_messages else "false"}
        response = self._call("GET", f"/Jobs/{job_id}/jobruns", "jobruns", params=params, idempotent=True)
        return _parse(JobRuns, response, "GET", f"{API_PREFIX}/Jobs/{job_id}/jobruns", self._redact)

    def create_job(self, request: CreateJobRequest) -> str:
        """Create a job; return its new JobID."""
        response = self._call("POST", "/jobs", "create_job", json=request_body(request), idempotent=False)
        body = _json_body(response, "POST", f"{API_PREFIX}/jobs")
        job_id = body.get("JobID") if isinstance(body, dict) else None
        try:
            return normalize_guid(str(job_id)) if job_id is not None else _no_job_id()
        except ValueError:
            raise BadResponseError(
                "create answered without a valid JobID; the job may have been created",
                method="POST",
                path=f"{API_PREFIX}/jobs",
                status=response.status_code,
            ) from None

    def update_job(self, job_id: str, details: JobDetailsUpdate) -> None:
        """Replace the given fields of a job's definition."""
        job_id = _checked_guid(job_id)
        body = {"JobDetails": request_body(details), "JobID": job_id}
        self._call("PATCH", "/jobs", "update_job", json=body, idempotent=False)

    def delete_job(self, job_id: str, delete_job: bool = True) -> str | None:
        """Delete a job (``delete_job=False`` deletes only its run history); return CCS's message if any."""
        job_id = _checked_guid(job_id)
        params = {"jobid": job_id, "DeleteJob": "True" if delete_job else "False"}
        response = self._call("DELETE", "/Jobs", "delete_job", params=params, idempotent=False)
        if response.status_code == 200 and response.content:
            message = self._redact(_server_message(response))
            return message or None
        return None

    # --- lifecycle ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the pooled connections."""
        self._session.close()

    def __enter__(self) -> CcsClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- tokens ------------------------------------------------------------------------------------

    def _access_token(self) -> str:
        """A valid access token, refreshing or logging in under the lock when needed."""
        token = self._token
        now = self._clock()
        if token is not None and now < token.access_expires_at:
            return token.access
        with self._token_lock:
            token = self._token
            now = self._clock()
            if token is not None and now < token.access_expires_at:
                return token.access
            if token is not None and token.refresh and now < token.refresh_expires_at:
                try:
                    self._token = self._grant(
                        {"grant_type": "refresh_token", "refresh_token": token.refresh}, "refresh"
                    )
                    self._refreshes += 1
                    return self._token.access
                except UnavailableError:
                    raise
                except CcsError as exc:
                    # Any refusal, a 5xx included (the refresh grant is not in the vendor samples, so CCS
                    # may not support it), falls back to the password; else a broken refresh would fail
                    # every call until the refresh token expires.
                    log.info("token_refresh_failed", status=exc.status, fallback="login")
            if self._reload_password():
                self._login_blocked_until = 0.0  # a new password deserves a try at once
            if now < self._login_blocked_until:
                raise AuthError(
                    f"login for user {self._username} suspended for "
                    f"{self._login_blocked_until - now:.0f} s after a refused login "
                    "(protects the CCS account from lockout)",
                    method="POST",
                    path=f"{API_PREFIX}/oauth/tokens",
                )
            self._logins += 1
            try:
                self._token = self._grant(self._password_grant(), "login")
            except AuthError:
                self._login_failures += 1
                delay = LOGIN_BACKOFF_SECONDS * 2 ** min(self._login_failures - 1, 10)
                self._login_blocked_until = self._clock() + min(delay, LOGIN_BACKOFF_MAX_SECONDS)
                raise
            self._login_failures = 0
            self._login_blocked_until = 0.0
            return self._token.access

    def _reload_password(self) -> bool:
        """Re-read the password from its source; True when it changed. Keeps the old one if unreadable."""
        if self._password_source is None:
            return False
        try:
            fresh = self._password_source()
        except ConfigError as exc:
            log.warning("password_reload_failed", error=str(exc), kept="previous password")
            return False
        if fresh == self._password.get_secret_value():
            return False
        self._password = SecretStr(fresh)
        log.info("password_reloaded")
        return True

    def _invalidate(self, access: str) -> None:
        """Forget a token CCS refused, unless another worker already replaced it."""
        with self._token_lock:
            if self._token is not None and self._token.access == access:
                self._token = None

    def _redact(self, text: str, *also: str | None) -> str:
        """``text`` with the password (as typed and Base64) and the tokens replaced: servers echo input."""
        password = self._password.get_secret_value()
        secrets = [password, base64.b64encode(password.encode("utf-8")).decode("ascii"), *also]
        token = self._token
        if token is not None:
            secrets += [token.access, token.refresh]
        for secret in secrets:
            # Very short values would blank out ordinary words; such a password is no secret anyway.
            if secret and len(secret) >= 4:
                text = text.replace(secret, "[REDACTED]")
        return text

    def _password_grant(self) -> dict[str, str]:
        secret = self._password.get_secret_value()
        if self._password_encoding == "base64":
            secret = base64.b64encode(secret.encode("utf-8")).decode("ascii")
        return {"grant_type": "password", "username": self._username, "password": secret}

    def _grant(self, form: Mapping[str, str], kind: str) -> _Token:
        path = f"{API_PREFIX}/oauth/tokens"
        started = self._clock()
        # requests form-encodes a dict (application/x-www-form-urlencoded), so "+", "/" and "=" in a
        # Base64 password arrive intact; the vendor samples' string concatenation turns "+" into a space.
        try:
            response = self._send(
                "POST", self._base + "/oauth/tokens", "token", data=dict(form), timeout_ok=False
            )
        except UnavailableError as exc:
            exc.method, exc.path = "POST", path
            raise
        if response.status_code != 200:
            error_type = AuthError if response.status_code in (400, 401, 403) else _error_type(response)
            what = "login" if kind == "login" else "token refresh"
            reason = self._redact(_server_message(response) or response.reason, form.get("refresh_token"))
            raise error_type(
                f"{what} failed for user {self._username}: {reason}",
                method="POST",
                path=path,
                status=response.status_code,
            )
        body = _json_body(response, "POST", path)
        access = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(access, str) or not access:
            raise BadResponseError("token response has no access_token", method="POST", path=path, status=200)
        refresh = body.get("refresh_token")
        lifetime = _positive_number(body.get("expires_in"), DEFAULT_ACCESS_TOKEN_SECONDS)
        refresh_lifetime = _positive_number(
            body.get("refresh_token_expires_in"), DEFAULT_REFRESH_TOKEN_SECONDS
        )
        margin = min(REFRESH_MARGIN_SECONDS, lifetime / 10)
        log.debug("token_granted", grant=kind, expires_in=lifetime)
        return _Token(
            access=access,
            refresh=refresh if isinstance(refresh, str) and refresh else None,
            access_expires_at=started + lifetime - margin,
            refresh_expires_at=started + refresh_lifetime - margin,
        )

    # --- requests ----------------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        endpoint: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        idempotent: bool,
    ) -> requests.Response:
        """Send an authenticated request; map failures to CcsError; retry what is safe to retry."""
        full_path = API_PREFIX + path
        attempt = 0
        reauthenticated = False
        while True:
            access = self._access_token()
            try:
                response = self._send(
                    method,
                    self._base + path,
                    endpoint,
                    params=params,
                    json=json,
                    headers={"Authorization": f"Bearer {access}"},
                    timeout_ok=True,
                )
            except UnavailableError as exc:
                exc.method, exc.path = method, full_path
                if idempotent and not isinstance(exc, CcsTimeoutError) and attempt < self._read_retries:
                    attempt += 1
                    self._sleep_backoff(attempt, endpoint, "connection")
                    continue
                raise
            if response.status_code == 401 and not reauthenticated:
                # CCS refused the token (expired early, server restarted): log in again, retry once.
                # A 401 means the request was not carried out, so this is safe for mutations too.
                reauthenticated = True
                self._invalidate(access)
                continue
            if response.status_code >= 500 and idempotent and attempt < self._read_retries:
                attempt += 1
                self._sleep_backoff(attempt, endpoint, str(response.status_code))
                continue
            if response.status_code >= 400:
                message = _server_message(response) or response.reason or "request failed"
                message = self._redact(message, access)
                raise _error_type(response)(
                    message, method=method, path=full_path, status=response.status_code
                )
            return response

    def _send(
        self,
        method: str,
        url: str,
        endpoint: str,
        *,
        timeout_ok: bool,
        **kwargs: Any,
    ) -> requests.Response:
        """One HTTP attempt, reported to the observer; connection failures become UnavailableError."""
        started = time.perf_counter()
        code = "error"
        with self._requests_lock:
            self._requests += 1
        try:
            response = self._session.request(
                method, url, timeout=self._timeout, allow_redirects=False, stream=True, **kwargs
            )
            code = str(response.status_code)
            self._read_body(response, method, url, started)
            return response
        except requests.exceptions.ConnectTimeout:
            code = "timeout"
            raise CcsTimeoutError(f"no connection within {self._timeout:g} s", sent=False) from None
        except requests.exceptions.Timeout:
            code = "timeout"
            raise CcsTimeoutError(f"no answer within {self._timeout:g} s", sent=True) from None
        except requests.exceptions.SSLError:
            raise UnavailableError(
                "TLS handshake failed: the server certificate is not trusted "
                "(set CCS_EXPORTER_CA_BUNDLE to the CCS internal CA)",
                sent=False,
            ) from None
        except requests.exceptions.ConnectionError as exc:
            refused = _nothing_sent(exc)
            reason = "connection refused or host unreachable" if refused else "connection dropped"
            raise UnavailableError(f"{reason}: {_describe_connection_error(exc)}", sent=not refused) from None
        except requests.exceptions.RequestException as exc:
            raise UnavailableError(f"request failed: {type(exc).__name__}", sent=True) from None
        finally:
            if self._observer is not None:
                self._observer(endpoint, code, time.perf_counter() - started)

    def _read_body(self, response: requests.Response, method: str, url: str, started: float) -> None:
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
                path=urlsplit(url).path,
                status=response.status_code,
            )
        response._content = b"".join(chunks)

    def _sleep_backoff(self, attempt: int, endpoint: str, reason: str) -> None:
        delay = self._backoff * (2 ** (attempt - 1)) * (0.5 + random.random())
        log.debug("ccs_request_retry", endpoint=endpoint, attempt=attempt, reason=reason, delay_seconds=delay)
        time.sleep(delay)


def _checked_guid(job_id: str) -> str:
    try:
        return normalize_guid(job_id)
    except ValueError as exc:
        raise ConfigError(f"job id {exc}", field="job_id") from None


def _no_job_id() -> str:
    raise ValueError("missing JobID")


def _positive_number(value: Any, default: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if number > 0 else default


def _error_type(response: requests.Response) -> type[CcsError]:
    if response.status_code >= 500:
        return ServerError
    return _STATUS_ERRORS.get(response.status_code, CcsError)


def _json_body(response: requests.Response, method: str, path: str) -> Any:
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


def _parse(
    model: type[_PayloadT],
    response: requests.Response,
    method: str,
    path: str,
    redact: Callable[[str], str],
) -> _PayloadT:
    body = _json_body(response, method, path)
    try:
        return model.model_validate(body)
    except RecursionError:
        raise BadResponseError(
            "response body is nested too deeply", method=method, path=path, status=response.status_code
        ) from None
    except ValidationError as exc:
        raise BadResponseError(
            f"unexpected response body: {redact(describe_validation_error(exc))}",
            method=method,
            path=path,
            status=response.status_code,
        ) from None


def _server_message(response: requests.Response) -> str:
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
