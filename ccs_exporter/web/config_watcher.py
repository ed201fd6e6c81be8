"""The web config in force: ``WebState`` of one reading, and ``WebConfigWatcher``, which re-reads it.

The file format and its checks are in ``config``; this module turns a loaded ``WebConfig`` into what the
server applies (SSL context, basic auth checker, headers, rate limiter) and reloads it when the file or
a file it names (certificate, key, CA) changes, keeping the previous state when a change does not load.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from ccs_exporter.errors import ConfigError
from ccs_exporter.settings.reloads import ReloadRecord
from ccs_exporter.web.auth import BasicAuthChecker
from ccs_exporter.web.config import TokenBucket, WebConfig, load_web_config

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class WebState:
    """What the server applies to a new connection or request, from one reading of the web config."""

    config: WebConfig
    tls: ssl.SSLContext | None
    basic_auth: BasicAuthChecker | None
    headers: tuple[tuple[str, str], ...]
    rate_limit: TokenBucket | None = None

    def allows_client(self, peer_certificate: dict[str, Any] | None) -> bool:
        """``client_allowed_sans``: True when the client's certificate may connect."""
        tls = self.config.tls
        return tls is None or tls.allows_client(peer_certificate)


class WebConfigWatcher:
    """The web config in force, re-read when the file or a file it names (certificate, key, CA) changes.

    Certificates are renewed and users added under a running exporter (cert-manager, a rotated Kubernetes
    secret): new connections and requests get the new state without a restart. Files are checked at most
    every ``check_seconds``. A change that does not load (a half-written file, a bad hash) is logged once
    and the previous state stays; so does a change that would switch TLS on or off (that needs a restart).
    """

    def __init__(
        self,
        path: Path,
        *,
        check_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._path = path
        self._check_seconds = check_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._reported: set[str] = set()
        self.reloads = ReloadRecord()
        self._state = self._build(load_web_config(path), None)
        self._stamp = self._files_stamp(self._state.config)
        self._checked_at = clock()

    @property
    def tls_enabled(self) -> bool:
        """Whether the server speaks TLS (fixed at start)."""
        return self._state.tls is not None

    def current(self) -> WebState:
        """The state for a new connection or request, reloaded first if a file changed."""
        now = self._clock()
        if now - self._checked_at < self._check_seconds:
            return self._state
        with self._lock:
            if now - self._checked_at < self._check_seconds:
                return self._state
            self._checked_at = now
            stamp = self._files_stamp(self._state.config)
            if stamp is None or stamp == self._stamp:
                return self._state
            self._stamp = stamp  # tried once per change, so a bad file is reported once
            self._reload()
            return self._state

    def _reload(self) -> None:
        try:
            config = load_web_config(self._path)
            state = self._build(config, self._state)
        except ConfigError as exc:  # the message names the file and the key, never a secret
            log.warning("web_config_reload_failed", error=str(exc), kept="previous web config")
            self.reloads.failed()
            return
        if (state.tls is None) != (self._state.tls is None):
            log.warning("web_config_reload_failed", error="switching TLS on or off needs a restart")
            self.reloads.failed()
            return
        self.reloads.succeeded()
        self._stamp = self._files_stamp(config)
        if state.basic_auth is not self._state.basic_auth:
            log.info("basic_auth_users_reloaded", users=len(config.basic_auth_users or {}))
        self._state = state
        log.info("web_config_reloaded", tls=state.tls is not None)

    def _build(self, config: WebConfig, previous: WebState | None) -> WebState:
        users = config.basic_auth_users or {}
        if previous is not None and users == (previous.config.basic_auth_users or {}):
            checker = previous.basic_auth  # unchanged users keep their verified-password cache
        else:
            checker = BasicAuthChecker(users) if users else None
        for key, why in config.ignored_settings():
            if key not in self._reported:
                self._reported.add(key)
                log.warning("web_config_setting_ignored", setting=key, reason=why)
        for key, why in config.warnings():
            if f"warning:{key}:{why}" not in self._reported:
                self._reported.add(f"warning:{key}:{why}")
                log.warning("web_config_setting_warning", setting=key, reason=why)
        if previous is not None and config.rate_limit == previous.config.rate_limit:
            bucket = previous.rate_limit  # an unchanged limiter keeps its tokens across reloads
        else:
            bucket = config.rate_limit.bucket() if config.rate_limit is not None else None
        return WebState(config, config.ssl_context(), checker, config.response_headers, bucket)

    def _files_stamp(self, config: WebConfig) -> tuple[tuple[int, int, int], ...] | None:
        tls = config.tls
        named = [tls.cert_file, tls.key_file, tls.client_ca_file] if tls is not None else []
        try:
            return tuple(
                (status.st_mtime_ns, status.st_size, status.st_ino)
                for path in (self._path, *(p for p in named if p is not None))
                for status in (path.stat(),)
            )
        except OSError:
            return None
