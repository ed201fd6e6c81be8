"""OAuth tokens of the simulator: unpredictable access and refresh tokens with lifetimes, revocable."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

# Expired tokens are forgotten once this many are held, so a long benchmark cannot grow them forever.
_PRUNE_ABOVE = 10_000


class TokenStore:
    """Issues, refreshes, checks and revokes tokens; thread-safe.

    A refresh grant rotates the refresh token: the old one stops working, the access token issued
    before it stays valid until it expires (the usual OAuth server behaviour; CCS's is not documented).
    """

    def __init__(
        self,
        access_seconds: float,
        refresh_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.access_seconds = access_seconds
        self.refresh_seconds = refresh_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._access: dict[str, tuple[str, float]] = {}
        self._refresh: dict[str, tuple[str, float]] = {}

    def issue(self, username: str) -> dict[str, Any]:
        """A new token pair for ``username``, as the token endpoint's JSON answer."""
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock:
            if len(self._access) > _PRUNE_ABOVE or len(self._refresh) > _PRUNE_ABOVE:
                self._prune(now)
            self._access[access] = (username, now + self.access_seconds)
            self._refresh[refresh] = (username, now + self.refresh_seconds)
        return {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": _seconds(self.access_seconds),
            "refresh_token": refresh,
            "refresh_token_expires_in": _seconds(self.refresh_seconds),
        }

    def refresh(self, refresh_token: str) -> dict[str, Any] | None:
        """A new token pair for a valid refresh token (which is used up), or None."""
        with self._lock:
            entry = self._refresh.pop(refresh_token, None)
        if entry is None or self._clock() >= entry[1]:
            return None
        return self.issue(entry[0])

    def user_for(self, access_token: str) -> str | None:
        """The user of a valid access token, or None when it is unknown, expired or revoked."""
        entry = self._access.get(access_token)
        if entry is None or self._clock() >= entry[1]:
            return None
        return entry[0]

    def issued(self) -> list[str]:
        """Every access and refresh token held, expired or not."""
        with self._lock:
            return [*self._access, *self._refresh]

    def revoke_all(self) -> int:
        """Forget every token, as a CCS restart does; return how many access tokens were valid."""
        now = self._clock()
        with self._lock:
            valid = sum(1 for _, expires in self._access.values() if expires > now)
            self._access.clear()
            self._refresh.clear()
        return valid

    def _prune(self, now: float) -> None:
        self._access = {token: entry for token, entry in self._access.items() if entry[1] > now}
        self._refresh = {token: entry for token, entry in self._refresh.items() if entry[1] > now}


def _seconds(value: float) -> int | float:
    """Whole seconds as an int, as OAuth servers send them; a fraction kept for sub-second test lifetimes."""
    return int(value) if float(value).is_integer() else value
