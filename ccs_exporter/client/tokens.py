"""The token manager: logs in, refreshes before expiry, backs off after refused logins, reloads the password.

Concurrent workers share one token and never log in twice at once. A refused refresh falls back to a
password login; a refused login blocks further logins for a while (doubling) so a wrong password cannot
lock the CCS account; a changed password file lifts that block. It owns every secret of the client, so
it also scrubs them from text the server echoes back.
"""

from __future__ import annotations

import base64
import collections
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from pydantic import SecretStr

from ccs_exporter.client.transport import Endpoint, Transport, json_body, server_message
from ccs_exporter.errors import AuthError, BadResponseError, CcsError, ConfigError, UnavailableError
from ccs_exporter.redaction import replace_known, secret_variants
from ccs_exporter.settings.checks import check_password_text

TOKEN = Endpoint("POST", "/oauth/tokens", "token")
# The vendor documents 60-minute access tokens and 90-minute refresh tokens (both configurable).
DEFAULT_ACCESS_TOKEN_SECONDS = 3600.0
DEFAULT_REFRESH_TOKEN_SECONDS = 5400.0
# Refresh this long before expiry, capped at a tenth of the lifetime for short-lived tokens.
REFRESH_MARGIN_SECONDS = 60.0
# After a refused password login, wait this long before the next one, doubling up to the cap: a wrong
# password must not lock the CCS account (a few attempts a minute at most, then fewer).
LOGIN_BACKOFF_SECONDS = 15.0
LOGIN_BACKOFF_MAX_SECONDS = 300.0
# A token lifetime CCS states is believed up to a day: a longer, infinite, NaN or 400-digit one would
# otherwise never be refreshed (or overflow float arithmetic in the poll workers).
MAX_TOKEN_SECONDS = 86400.0
# A bearer token goes into an HTTP header: it must be short printable ASCII, or every request fails.
MAX_TOKEN_LENGTH = 16 * 1024
MAX_REMEMBERED_TOKENS = 64

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class _Token:
    access: str
    refresh: str | None
    access_expires_at: float
    refresh_expires_at: float


class TokenManager:
    """Holds the one access token of a client; ``access_token()`` is safe to call from any thread."""

    def __init__(
        self,
        transport: Transport,
        username: str,
        password: SecretStr,
        *,
        password_encoding: str = "base64",
        password_source: Callable[[], str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if password_encoding not in ("base64", "plain"):
            raise ConfigError("password_encoding must be base64 or plain", field="password_encoding")
        _check_sendable(password.get_secret_value())
        self._transport = transport
        self._username = username
        self._password = password
        # Re-read before each login (a Kubernetes secret rotated under a running exporter).
        self._password_source = password_source
        self._password_encoding = password_encoding
        self._clock = clock
        self._token: _Token | None = None
        # Every token this process was given (bounded): CCS may echo an old one into job text too.
        self._issued: collections.deque[str] = collections.deque(maxlen=MAX_REMEMBERED_TOKENS)
        self._lock = threading.Lock()
        self._logins = 0
        self._refreshes = 0
        self._login_failures = 0
        self._login_blocked_until = 0.0

    @property
    def username(self) -> str:
        """The CCS account."""
        return self._username

    @property
    def logins(self) -> int:
        """How many password logins have been made."""
        return self._logins

    @property
    def refreshes(self) -> int:
        """How many refresh-token grants have been made."""
        return self._refreshes

    def access_token(self) -> str:
        """A valid access token, refreshing or logging in under the lock when needed (raises AuthError)."""
        token = self._token
        if token is not None and self._clock() < token.access_expires_at:
            return token.access
        with self._lock:
            token = self._token
            now = self._clock()
            if token is not None and now < token.access_expires_at:
                return token.access
            if token is not None and token.refresh and now < token.refresh_expires_at:
                refreshed = self._refresh(token.refresh)
                if refreshed is not None:
                    return refreshed
            return self._login(now)

    def invalidate(self, access: str) -> None:
        """Forget a token CCS refused, unless another worker already replaced it."""
        with self._lock:
            if self._token is not None and self._token.access == access:
                self._token = None

    def secrets(self) -> list[str]:
        """The password in every form it travels in and every token issued to this process, for
        redacting what CCS sends back (job text may echo them)."""
        return [*secret_variants(self._password.get_secret_value()), *self._issued]

    def redact(self, text: str, *also: str | None) -> str:
        """``text`` with the password (in every form it is sent in) and the tokens replaced: servers echo."""
        secrets = [*secret_variants(self._password.get_secret_value()), *also]
        token = self._token
        if token is not None:
            secrets += [token.access, token.refresh]
        return replace_known(text, secrets)

    def _refresh(self, refresh_token: str) -> str | None:
        """The new access token from a refresh grant, or None when CCS refused it (log in instead)."""
        try:
            self._token = self._grant(
                {"grant_type": "refresh_token", "refresh_token": refresh_token}, "refresh"
            )
        except UnavailableError:
            raise
        except CcsError as exc:
            # Any refusal, a 5xx included (the refresh grant is not in the vendor samples, so CCS may not
            # support it), falls back to the password; else a broken refresh would fail every call until
            # the refresh token expires.
            log.info("token_refresh_failed", status=exc.status, fallback="login")
            return None
        self._refreshes += 1
        return self._token.access

    def _login(self, now: float) -> str:
        """A password login, unless a refused one blocks it for now (account lockout protection)."""
        if self._reload_password():
            self._login_blocked_until = 0.0  # a new password deserves a try at once
        if now < self._login_blocked_until:
            raise AuthError(
                f"login for user {self._username} suspended for "
                f"{self._login_blocked_until - now:.0f} s after a refused login "
                "(protects the CCS account from lockout)",
                method=TOKEN.method,
                path=TOKEN.url_path(),
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
            _check_sendable(fresh)
        except ConfigError as exc:
            log.warning("password_reload_failed", error=str(exc), kept="previous password")
            return False
        if fresh == self._password.get_secret_value():
            return False
        self._password = SecretStr(fresh)
        log.info("password_reloaded")
        return True

    def _password_grant(self) -> dict[str, str]:
        secret = self._password.get_secret_value()
        if self._password_encoding == "base64":
            secret = base64.b64encode(secret.encode("utf-8")).decode("ascii")
        return {"grant_type": "password", "username": self._username, "password": secret}

    def _grant(self, form: Mapping[str, str], kind: str) -> _Token:
        path = TOKEN.url_path()
        started = self._clock()
        # requests form-encodes a dict (application/x-www-form-urlencoded), so "+", "/" and "=" in a
        # Base64 password arrive intact; the vendor samples' string concatenation turns "+" into a space.
        response = self._transport.send(TOKEN, path, data=dict(form))
        if response.status_code != 200:
            what = "login" if kind == "login" else "token refresh"
            reason = self.redact(server_message(response) or response.reason, form.get("refresh_token"))
            message = f"{what} failed for user {self._username}: {reason}"
            if response.status_code in (400, 401, 403):
                raise AuthError(message, method=TOKEN.method, path=path, status=response.status_code)
            raise CcsError.from_status(response.status_code, message, method=TOKEN.method, path=path)
        body = json_body(response, TOKEN.method, path)
        access = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(access, str) or not access:
            raise BadResponseError("token response has no access_token", method="POST", path=path, status=200)
        if not _header_safe(access):
            raise BadResponseError(
                "token response has an access_token that cannot be sent in a header "
                f"(not printable ASCII, or longer than {MAX_TOKEN_LENGTH} characters)",
                method="POST",
                path=path,
                status=200,
            )
        refresh = body.get("refresh_token")
        if not (isinstance(refresh, str) and _header_safe(refresh)):
            refresh = None
        lifetime = _positive_number(body.get("expires_in"), DEFAULT_ACCESS_TOKEN_SECONDS)
        refresh_lifetime = _positive_number(
            body.get("refresh_token_expires_in"), DEFAULT_REFRESH_TOKEN_SECONDS
        )
        margin = min(REFRESH_MARGIN_SECONDS, lifetime / 10)
        log.debug("token_granted", grant=kind, expires_in=lifetime)
        self._issued.extend(token for token in (access, refresh) if isinstance(token, str) and token)
        return _Token(
            access=access,
            refresh=refresh if isinstance(refresh, str) and refresh else None,
            access_expires_at=started + lifetime - margin,
            refresh_expires_at=started + refresh_lifetime - margin,
        )


def _positive_number(value: Any, default: float) -> float:
    """A lifetime in seconds from CCS, capped at MAX_TOKEN_SECONDS; ``default`` for anything unusable."""
    if isinstance(value, bool):
        return default
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer of hundreds of digits
        return default
    if not math.isfinite(number) or number <= 0:
        return default
    return min(number, MAX_TOKEN_SECONDS)


def _check_sendable(password: str) -> None:
    """ConfigError unless the password can be sent; the message never shows any of it."""
    try:
        check_password_text(password)
    except ValueError as exc:
        raise ConfigError(f"the password {exc}", field="password") from None


def _header_safe(token: str) -> bool:
    return len(token) <= MAX_TOKEN_LENGTH and token.isascii() and token.isprintable() and " " not in token
