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

The whole schema is accepted. What Python's ``ssl`` cannot do (HTTP/2, curve preferences, the rate
limiter, ``prefer_server_cipher_suites``) is reported by ``ignored_settings`` instead of refused. Problems
are ``ConfigError`` with one line naming the key (and its line in the file when it can be found).
``WebConfigWatcher`` re-reads the file, and the files it names, when they change.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import ssl
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import structlog
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ccs_exporter.errors import ConfigError
from ccs_exporter.inputs import describe_yaml_error, first_validation_error, read_input_file
from ccs_exporter.webauth import MAX_BCRYPT_COST, BasicAuthChecker, check_bcrypt_hash

log = structlog.get_logger(__name__)

ClientAuthType = Literal[
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "RequireClientCert",  # the toolkit's older name for RequireAnyClientCert
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
]
TlsVersionName = Literal["TLS10", "TLS11", "TLS12", "TLS13"]
_TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# Go's crypto/tls names (tls.CipherSuites(), the ones the toolkit accepts) -> OpenSSL names. TLS 1.3
# suites map to None: neither Go nor OpenSSL's cipher list configures them, they are always on.
GO_CIPHER_SUITES: dict[str, str | None] = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_AES_128_GCM_SHA256": None,
    "TLS_AES_256_GCM_SHA384": None,
    "TLS_CHACHA20_POLY1305_SHA256": None,
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
CurveName = Literal["CurveP256", "CurveP384", "CurveP521", "X25519"]
# The headers the toolkit lets a web config add, with the values it allows (None: any value).
SECURITY_HEADERS: dict[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}
# Policies that need a CA: Python's ssl verifies every client certificate it asks for (see README).
_NEEDS_CLIENT_CA = frozenset(
    {"RequireAnyClientCert", "RequireClientCert", "VerifyClientCertIfGiven", "RequireAndVerifyClientCert"}
)
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


def _cipher_name(value: str) -> str:
    if value not in GO_CIPHER_SUITES:
        raise ValueError(f"unknown cipher {value!r} (Go crypto/tls names, e.g. TLS_AES_128_GCM_SHA256)")
    return value


def _no_pem_in(value: str | None, what: str) -> None:
    if value is not None and "-----BEGIN " not in value:
        raise ValueError(f"holds no PEM block (inline {what}; for a path use the _file key)")


class TlsServerConfig(BaseModel):
    """``tls_server_config``: the exporter's certificate and, optionally, client certificate checks."""

    model_config = ConfigDict(extra="forbid")

    cert: str | None = None
    key: SecretStr | None = None
    client_ca: str | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    client_auth_type: ClientAuthType = "NoClientCert"
    client_ca_file: Path | None = None
    cipher_suites: list[Annotated[str, AfterValidator(_cipher_name)]] = Field(default_factory=list)
    curve_preferences: list[CurveName] = Field(default_factory=list)
    min_version: TlsVersionName = "TLS12"
    max_version: TlsVersionName = "TLS13"
    prefer_server_cipher_suites: bool = True
    client_allowed_sans: list[str] | None = None

    @field_validator(
        "cert",
        "key",
        "client_ca",
        "cert_file",
        "key_file",
        "client_ca_file",
        "client_auth_type",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # The toolkit (Go) treats an empty string as "not set".
        return None if value == "" else value

    @field_validator("client_auth_type", mode="before")
    @classmethod
    def _default_policy(cls, value: Any) -> Any:
        return "NoClientCert" if value is None else value

    @field_validator("cert_file", "key_file", "client_ca_file")
    @classmethod
    def _readable(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        base = (info.context or {}).get("base_dir")
        if not value.is_absolute() and base is not None:
            value = Path(base) / value
        if not (value.is_file() and os.access(value, os.R_OK)):
            raise ValueError(f"{value} is not a readable file")
        return value

    @field_validator("cert")
    @classmethod
    def _cert_is_pem(cls, value: str | None) -> str | None:
        _no_pem_in(value, "certificate")
        return value

    @field_validator("client_ca")
    @classmethod
    def _client_ca_is_pem(cls, value: str | None) -> str | None:
        _no_pem_in(value, "client CA")
        return value

    @field_validator("key")
    @classmethod
    def _key_is_pem(cls, value: SecretStr | None) -> SecretStr | None:
        _no_pem_in(value.get_secret_value() if value is not None else None, "key")
        return value

    @property
    def enabled(self) -> bool:
        """True when TLS is configured at all (the toolkit's rule: any certificate, key, CA or policy)."""
        sources = (self.cert, self.cert_file, self.key, self.key_file, self.client_ca, self.client_ca_file)
        return any(source is not None for source in sources) or "client_auth_type" in self.model_fields_set

    @property
    def has_client_ca(self) -> bool:
        return self.client_ca is not None or self.client_ca_file is not None

    @model_validator(mode="after")
    def _consistent(self) -> TlsServerConfig:
        if not self.enabled:
            return self
        for inline, path, name in (
            (self.cert, self.cert_file, "cert"),
            (self.key, self.key_file, "key"),
            (self.client_ca, self.client_ca_file, "client_ca"),
        ):
            if inline is not None and path is not None:
                raise ValueError(f"set {name} or {name}_file, not both")
            if inline is None and path is None and name != "client_ca":
                raise ValueError(f"missing one of {name} or {name}_file")
        if self.has_client_ca and self.client_auth_type == "NoClientCert":
            raise ValueError(
                "a client CA is configured without a client auth policy: set client_auth_type "
                "(RequireAndVerifyClientCert to admit only clients that CA signed)"
            )
        if self.client_auth_type in _NEEDS_CLIENT_CA and not self.has_client_ca:
            raise ValueError(
                f"client_auth_type {self.client_auth_type} needs client_ca_file (or client_ca): "
                "without a CA every client certificate is refused"
            )
        if self.client_allowed_sans is not None:
            if not self.client_allowed_sans:
                raise ValueError("client_allowed_sans is empty: no client could connect")
            if not self.has_client_ca:
                raise ValueError("client_allowed_sans needs client certificates: set client_ca_file")
        if _TLS_VERSIONS[self.min_version] > _TLS_VERSIONS[self.max_version]:
            raise ValueError(f"min_version {self.min_version} is above max_version {self.max_version}")
        return self

    def ssl_context(self) -> ssl.SSLContext:
        """A server-side TLS context from these settings; ``ConfigError`` when a file does not load."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLS10/TLS11 are deprecated, not refused
            context.minimum_version = _TLS_VERSIONS[self.min_version]
            context.maximum_version = _TLS_VERSIONS[self.max_version]
        try:
            with (
                _pem_path(self.cert_file, self.cert) as cert,
                _pem_path(self.key_file, _secret(self.key)) as key,
            ):
                # An encrypted key fails here rather than prompting on the terminal.
                context.load_cert_chain(cert, key, password=lambda: b"")
            if self.client_ca_file is not None:
                context.load_verify_locations(cafile=str(self.client_ca_file))
            elif self.client_ca is not None:
                context.load_verify_locations(cadata=self.client_ca)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ConfigError(
                f"tls_server_config: cannot load the certificate, key or client CA ({exc})",
                field="tls_server_config",
            ) from None
        ciphers = [GO_CIPHER_SUITES[name] for name in self.cipher_suites]
        openssl_names = [name for name in ciphers if name is not None]
        if openssl_names:
            try:
                context.set_ciphers(":".join(openssl_names))
            except ssl.SSLError:
                raise ConfigError(
                    "tls_server_config.cipher_suites: OpenSSL supports none of them here",
                    field="tls_server_config",
                ) from None
        context.verify_mode = self._verify_mode()
        return context

    def _verify_mode(self) -> ssl.VerifyMode:
        policy = self.client_auth_type
        if policy in ("RequireAnyClientCert", "RequireClientCert", "RequireAndVerifyClientCert"):
            return ssl.CERT_REQUIRED
        if policy == "VerifyClientCertIfGiven" or (policy == "RequestClientCert" and self.has_client_ca):
            return ssl.CERT_OPTIONAL
        # RequestClientCert without a CA: the toolkit asks for a certificate it never checks; not asking
        # admits the same clients.
        return ssl.CERT_NONE

    def allows_client(self, peer_certificate: dict[str, Any] | None) -> bool:
        """False when ``client_allowed_sans`` is set and the verified client certificate has none of them."""
        if self.client_allowed_sans is None:
            return True
        names = (peer_certificate or {}).get("subjectAltName", ())
        allowed = {_normalized_san(name) for name in self.client_allowed_sans}
        return any(_normalized_san(value) in allowed for kind, value in names if kind != "DirName")


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def _normalized_san(value: str) -> str:
    """IP addresses compared by value (OpenSSL writes IPv6 in full, Go in short form), others as written."""
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return value


@contextlib.contextmanager
def _pem_path(path: Path | None, inline: str | None) -> Iterator[str]:
    """A path OpenSSL can load: the configured file, or inline PEM in an anonymous in-memory file."""
    if path is not None or inline is None:
        yield str(path)
        return
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None:  # Linux: the key never touches a disk
        descriptor = memfd_create("ccs-exporter-tls", getattr(os, "MFD_CLOEXEC", 1))
        try:
            os.write(descriptor, inline.encode("utf-8"))
            yield f"/proc/self/fd/{descriptor}"
        finally:
            os.close(descriptor)
        return
    with tempfile.TemporaryDirectory(prefix="ccs-exporter-tls-") as directory:  # mode 0700
        file = Path(directory) / "pem"
        file.write_text(inline, encoding="utf-8")
        yield str(file)


def _header_value(name: str, value: str) -> str:
    if name not in SECURITY_HEADERS:
        raise ValueError(f"header {name!r} cannot be configured (allowed: {', '.join(SECURITY_HEADERS)})")
    allowed = SECURITY_HEADERS[name]
    if value and allowed is not None and value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}")
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise ValueError(f"{name} has a control character")
    return value


class HttpServerConfig(BaseModel):
    """``http_server_config``: extra response headers; ``http2`` is accepted and not served."""

    model_config = ConfigDict(extra="forbid")

    http2: bool = True
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("headers")
    @classmethod
    def _known_headers(cls, value: dict[str, str]) -> dict[str, str]:
        return {name: _header_value(name, text) for name, text in value.items()}


class RateLimitConfig(BaseModel):
    """``rate_limit``: accepted so toolkit files load; not applied (see ``ignored_settings``)."""

    model_config = ConfigDict(extra="forbid")

    interval: str = "0"
    burst: int = Field(default=0, ge=0)

    @field_validator("interval", mode="before")
    @classmethod
    def _go_duration(cls, value: Any) -> str:
        text = str(value).strip()
        go_duration_seconds(text)
        return text


def _user_name(value: str) -> str:
    if ":" in value:
        raise ValueError("a user name with ':' can never log in with basic auth")
    return value


class WebConfig(BaseModel):
    """The whole web-config file."""

    model_config = ConfigDict(extra="forbid")

    tls_server_config: TlsServerConfig | None = None
    http_server_config: HttpServerConfig = Field(default_factory=HttpServerConfig)
    rate_limit: RateLimitConfig | None = None
    basic_auth_users: (
        dict[Annotated[str, AfterValidator(_user_name)], Annotated[str, AfterValidator(check_bcrypt_hash)]]
        | None
    ) = None

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
        if self.rate_limit is not None and go_duration_seconds(self.rate_limit.interval) > 0:
            ignored.append(("rate_limit", "not applied; failed logins are limited per client instead"))
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


def load_web_config(path: Path) -> WebConfig:
    """Read and check a web-config file; ``ConfigError`` names the file, the bad key and its line."""
    text = read_input_file(path, "web config", "web_config_file")
    where = f"web config file {path}"
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: {describe_yaml_error(exc)}", field="web_config_file") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{where}: must be a mapping of keys to values", field="web_config_file")
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


@dataclass(frozen=True)
class WebState:
    """What the server applies to a new connection or request, from one reading of the web config."""

    config: WebConfig
    tls: ssl.SSLContext | None
    basic_auth: BasicAuthChecker | None
    headers: tuple[tuple[str, str], ...]

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
            return
        if (state.tls is None) != (self._state.tls is None):
            log.warning("web_config_reload_failed", error="switching TLS on or off needs a restart")
            return
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
        return WebState(config, config.ssl_context(), checker, config.response_headers)

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


__all__ = [
    "GO_CIPHER_SUITES",
    "MAX_BCRYPT_COST",
    "SECURITY_HEADERS",
    "TlsServerConfig",
    "WebConfig",
    "WebConfigWatcher",
    "WebState",
    "load_web_config",
]
