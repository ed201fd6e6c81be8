"""The web-config file that protects the exporter's own endpoints: Prometheus exporter-toolkit's format.

    tls_server_config:
      cert_file: tls.crt                              # relative paths: against this file's directory
      key_file: tls.key
      client_auth_type: RequireAndVerifyClientCert    # with client_ca_file (or client_ca)
      client_ca_file: clients-ca.crt
      min_version: TLS12
    http_server_config:
      headers: {X-Content-Type-Options: nosniff}
    basic_auth_users:
      prometheus: $2y$10$...   # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\\n')

The whole schema is accepted, with the toolkit's meaning: ``rate_limit`` is one token bucket for the
whole server (429 when empty), header values may be any YAML scalar (their text is sent as written).
What Python's ``ssl`` cannot do (HTTP/2, curve preferences, ``prefer_server_cipher_suites``) is reported
by ``ignored_settings`` instead of refused, and settings that work but deserve a second look (any
certificate accepted, slow bcrypt costs, a limiter that refuses everything) by ``warnings``. Problems are
``ConfigError`` with one line naming the key (and its line in the file when it can be found).
``WebConfigWatcher`` (in ``config_watcher``) re-reads the file, and the files it names, when they change.
"""

from __future__ import annotations

import re
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import structlog
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from ccs_exporter.errors import ConfigError
from ccs_exporter.settings.inputs import (
    describe_yaml_error,
    first_validation_error,
    load_yaml_text,
    read_input_file,
)
from ccs_exporter.web.auth import SLOW_BCRYPT_COST, bcrypt_cost, check_bcrypt_hash
from ccs_exporter.web.tls import TlsServerConfig

log = structlog.get_logger(__name__)

# The headers the toolkit lets a web config add, with the values it allows (None: any value).
SECURITY_HEADERS: dict[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}
_GO_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_GO_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration_seconds(text: str) -> float:
    """Seconds in a Go duration (``1m30s``, ``250ms``, ``0``); ValueError when it is not one."""
    text = text.strip()
    if text in ("0", "+0", "-0"):
        return 0.0
    parts = _GO_DURATION_PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise ValueError("must be a Go duration such as 100ms, 1s or 1m30s")
    return sum(float(number) * _GO_DURATION_UNITS[unit] for number, unit in parts)


def _header_value(name: str, value: str) -> str:
    if name not in SECURITY_HEADERS:
        raise ValueError(f"header {name!r} cannot be configured (allowed: {', '.join(SECURITY_HEADERS)})")
    allowed = SECURITY_HEADERS[name]
    if value and allowed is not None and value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}")
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise ValueError(f"{name} has a control character")
    return value


def _scalar_text(value: Any) -> Any:
    """A YAML scalar as Go's yaml reads it into a string (``1`` -> "1", ``true`` -> "true", null -> "")."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return value


class HttpServerConfig(BaseModel):
    """``http_server_config``: extra response headers; ``http2`` is accepted and not served."""

    model_config = ConfigDict(extra="forbid")

    http2: bool = True
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("headers", mode="before")
    @classmethod
    def _scalars_as_text(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(name): _scalar_text(text) for name, text in value.items()}
        return value

    @field_validator("headers")
    @classmethod
    def _known_headers(cls, value: dict[str, str]) -> dict[str, str]:
        return {name: _header_value(name, text) for name, text in value.items()}


class TokenBucket:
    """The toolkit's rate limiter (Go's ``rate.NewLimiter(rate.Every(interval), burst)``), server-wide.

    Starts full with ``burst`` tokens and gains one every ``interval``; a request takes one or is refused.
    """

    def __init__(self, interval: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()
        self._lock = threading.Lock()

    def allow(self) -> bool:
        """Take a token if there is one."""
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) / self.interval)
            self._at = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False


class RateLimitConfig(BaseModel):
    """``rate_limit``: a token bucket for every request (an ``interval`` of 0 turns it off)."""

    model_config = ConfigDict(extra="forbid")

    interval: str = "0"
    burst: int = Field(default=0, ge=0)

    @field_validator("interval", mode="before")
    @classmethod
    def _go_duration(cls, value: Any) -> str:
        text = str(value).strip()
        go_duration_seconds(text)
        return text

    @property
    def interval_seconds(self) -> float:
        return go_duration_seconds(self.interval)

    def bucket(self) -> TokenBucket | None:
        """The limiter this section asks for, or None when it is off."""
        seconds = self.interval_seconds
        return TokenBucket(seconds, self.burst) if seconds > 0 else None


class WebConfig(BaseModel):
    """The whole web-config file."""

    model_config = ConfigDict(extra="forbid")

    tls_server_config: TlsServerConfig | None = None
    http_server_config: HttpServerConfig = Field(default_factory=HttpServerConfig)
    rate_limit: RateLimitConfig | None = None
    basic_auth_users: dict[str, Annotated[str, AfterValidator(check_bcrypt_hash)]] | None = None

    @field_validator("basic_auth_users", mode="before")
    @classmethod
    def _names_as_text(cls, value: Any) -> Any:
        # YAML reads `1234: $2y$...` with a number as the user; the toolkit takes it as text.
        return {str(user): hashed for user, hashed in value.items()} if isinstance(value, dict) else value

    @property
    def tls(self) -> TlsServerConfig | None:
        """The TLS settings when TLS is on (a ``tls_server_config`` without certificate leaves it off)."""
        tls = self.tls_server_config
        return tls if tls is not None and tls.enabled else None

    def ssl_context(self) -> ssl.SSLContext | None:
        """A server-side TLS context, or None when TLS is not configured."""
        return self.tls.ssl_context() if self.tls is not None else None

    @property
    def response_headers(self) -> tuple[tuple[str, str], ...]:
        """Headers added to every response (blank values are unset, as in the toolkit)."""
        return tuple((name, value) for name, value in self.http_server_config.headers.items() if value)

    def ignored_settings(self) -> list[tuple[str, str]]:
        """Settings this file asks for that the exporter does not apply: (key, why)."""
        ignored: list[tuple[str, str]] = []
        http = self.http_server_config
        if http.http2 and "http2" in http.model_fields_set:
            ignored.append(("http_server_config.http2", "HTTP/2 is not served: HTTP/1.1 only"))
        tls = self.tls_server_config
        if tls is not None and not tls.enabled and tls.model_fields_set:
            ignored.append(("tls_server_config", "no certificate configured: serving plain HTTP"))
        if tls is not None and tls.enabled:
            if "prefer_server_cipher_suites" in tls.model_fields_set:
                ignored.append(
                    ("tls_server_config.prefer_server_cipher_suites", "the server's cipher order always wins")
                )
            if tls.curve_preferences:
                ignored.append(("tls_server_config.curve_preferences", "OpenSSL's default groups are used"))
        return ignored

    def warnings(self) -> list[tuple[str, str]]:
        """Settings applied as the toolkit applies them that deserve a second look: (key, why)."""
        tls = self.tls
        found: list[tuple[str, str]] = tls.warnings() if tls is not None else []
        found += [
            (f"basic_auth_users.{user}", "a user name with ':' can never log in with basic auth")
            for user in self.basic_auth_users or {}
            if ":" in user
        ]
        if tls is not None and tls.client_auth_type in ("RequestClientCert", "RequireAnyClientCert"):
            found.append(
                (
                    "tls_server_config.client_auth_type",
                    f"{tls.client_auth_type} accepts any client certificate, unverified: it authenticates "
                    "no one (RequireAndVerifyClientCert with client_ca_file does)",
                )
            )
        if tls is not None and tls.verifies_client_certificates and not tls.has_client_ca:
            found.append(
                (
                    "tls_server_config.client_ca_file",
                    "not set: client certificates are verified against the system's trust store, as Go does",
                )
            )
        costs = sorted({bcrypt_cost(hashed) for hashed in (self.basic_auth_users or {}).values()})
        if costs and costs[-1] > SLOW_BCRYPT_COST:
            seconds = 2 ** (costs[-1] - 10) * 0.06
            found.append(
                (
                    "basic_auth_users",
                    f"bcrypt cost {costs[-1]}: the first login with a password takes about {seconds:,.0f} s "
                    "of one core (checked once, then cached; one check at a time)",
                )
            )
        limit = self.rate_limit
        if limit is not None and limit.interval_seconds > 0 and limit.burst == 0:
            found.append(("rate_limit.burst", "0 with an interval: every request is refused with 429"))
        return found


def load_web_config(path: Path) -> WebConfig:
    """Read and check a web-config file; ``ConfigError`` names the file, the bad key and its line."""
    text = read_input_file(path, "web config", "web_config_file")
    where = f"web config file {path}"
    try:
        loaded = load_yaml_text(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: {describe_yaml_error(exc)}", field="web_config_file") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{where}: must be a mapping of keys to values", field="web_config_file")
    _headers_as_written(text, loaded)
    try:
        config = WebConfig.model_validate(loaded or {}, context={"base_dir": path.parent})
    except ValidationError as exc:
        first = first_validation_error(exc)
        line = _line_of(text, first.loc)
        at = f" line {line}" if line is not None else ""
        message = "unknown key" if first.type == "extra_forbidden" else first.message
        more = f" (and {first.others} more)" if first.others else ""
        raise ConfigError(
            f"{where}{at}: {first.location or 'file'}: {message}{more}", field="web_config_file"
        ) from None
    try:
        config.ssl_context()  # fail at start, not at the first scrape
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}", field="web_config_file") from None
    return config


def _headers_as_written(text: str, loaded: dict[str, Any] | None) -> None:
    """Header values as the file writes them (``0x10``, ``yes``, ``1.50``), as Go's yaml reads strings."""
    http = (loaded or {}).get("http_server_config")
    if not isinstance(http, dict) or not isinstance(http.get("headers"), dict):
        return
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return
    for key in ("http_server_config", "headers"):
        if not isinstance(node, yaml.MappingNode):
            return
        node = next((v for k, v in node.value if k.value == key), None)
    if not isinstance(node, yaml.MappingNode):
        return
    for name, value in node.value:
        if (
            isinstance(name, yaml.ScalarNode)
            and isinstance(value, yaml.ScalarNode)
            and name.value in http["headers"]
        ):
            is_null = value.tag == "tag:yaml.org,2002:null" and value.style is None
            http["headers"][name.value] = "" if is_null else value.value


def _line_of(text: str, loc: tuple[int | str, ...]) -> int | None:
    """The line of the key at ``loc`` in the YAML ``text`` (the deepest one found), or None."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if str(k.value) == str(part)), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line
