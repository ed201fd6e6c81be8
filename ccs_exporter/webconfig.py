"""The web-config file that protects the exporter's own endpoints, in the Prometheus exporter-toolkit format.

    tls_server_config:
      cert_file: /etc/ccs-exporter/tls.crt
      key_file: /etc/ccs-exporter/tls.key
      client_auth_type: RequireAndVerifyClientCert   # optional, with client_ca_file
      client_ca_file: /etc/ccs-exporter/clients-ca.crt
      min_version: TLS12
    basic_auth_users:
      prometheus: $2y$10$...   # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\\n')

Problems are ``ConfigError`` with one line naming the key. bcrypt is slow on purpose, so a verified
password is remembered (as a keyed digest, never in clear) and a scrape does not pay for it every time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import bcrypt
import structlog
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from ccs_exporter.errors import ConfigError

log = structlog.get_logger(__name__)

ClientAuthType = Literal[
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
]


class TlsServerConfig(BaseModel):
    """``tls_server_config``: the exporter's certificate and, optionally, client certificate checks."""

    model_config = ConfigDict(extra="forbid")

    cert_file: Path
    key_file: Path
    client_auth_type: ClientAuthType = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: Literal["TLS12", "TLS13"] = "TLS12"

    @field_validator("cert_file", "key_file", "client_ca_file")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError("is not a readable file")
        return value


class WebConfig(BaseModel):
    """The whole web-config file."""

    model_config = ConfigDict(extra="forbid")

    tls_server_config: TlsServerConfig | None = None
    basic_auth_users: dict[str, str] | None = None

    @field_validator("basic_auth_users")
    @classmethod
    def _bcrypt_hashes(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for user, hashed in (value or {}).items():
            if not str(hashed).startswith(("$2a$", "$2b$", "$2y$")):
                raise ValueError(f"user {user!r}: the password must be a bcrypt hash ($2y$...)")
        return value

    def ssl_context(self) -> ssl.SSLContext | None:
        """A server-side TLS context, or None when TLS is not configured."""
        tls = self.tls_server_config
        if tls is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = (
            ssl.TLSVersion.TLSv1_3 if tls.min_version == "TLS13" else ssl.TLSVersion.TLSv1_2
        )
        try:
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
            if tls.client_ca_file is not None:
                context.load_verify_locations(cafile=str(tls.client_ca_file))
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"web config tls_server_config: cannot load the certificate or key ({exc})",
                field="tls_server_config",
            ) from None
        if tls.client_auth_type in ("RequireAnyClientCert", "RequireAndVerifyClientCert"):
            context.verify_mode = ssl.CERT_REQUIRED
        elif tls.client_auth_type in ("RequestClientCert", "VerifyClientCertIfGiven"):
            context.verify_mode = ssl.CERT_OPTIONAL
        return context


def load_web_config(path: Path) -> WebConfig:
    """Read and check a web-config file; ``ConfigError`` names the file and the bad key."""
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(
            f"web config {path}: cannot read it ({exc.strerror})", field="web_config_file"
        ) from None
    except yaml.YAMLError:
        raise ConfigError(f"web config {path}: not valid YAML", field="web_config_file") from None
    try:
        config = WebConfig.model_validate(loaded or {})
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first.get("loc", ())) or "file"
        message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        if first.get("type") == "extra_forbidden":
            message = "unknown key"
        raise ConfigError(f"web config {path}: {where}: {message}", field="web_config_file") from None
    config.ssl_context()  # fail at start, not at the first scrape
    return config


class BasicAuthChecker:
    """Checks ``user:password`` against bcrypt hashes, remembering passwords already verified."""

    def __init__(self, users: dict[str, str]) -> None:
        self._users = {user: hashed.encode("utf-8") for user, hashed in users.items()}
        self._key = secrets.token_bytes(32)
        self._verified: set[bytes] = set()
        self._lock = threading.Lock()
        # Compared against when the user is unknown, so a wrong user costs as much as a wrong password:
        # same cost factor as the configured hashes, or the timing would tell which user names exist.
        costs = [_bcrypt_cost(hashed) for hashed in self._users.values()]
        self._dummy = bcrypt.hashpw(b"unknown-user", bcrypt.gensalt(rounds=max(costs, default=10)))

    def check(self, user: str, password: str) -> bool:
        """True when the user exists and the password matches its hash."""
        digest = hmac.new(self._key, f"{user}\0{password}".encode(), hashlib.sha256).digest()
        with self._lock:
            if digest in self._verified:
                return True
        hashed = self._users.get(user)
        try:
            ok = bcrypt.checkpw(password.encode("utf-8"), hashed if hashed is not None else self._dummy)
        except ValueError:
            ok = False
        if ok and hashed is not None:
            with self._lock:
                if len(self._verified) > 1000:
                    self._verified.clear()
                self._verified.add(digest)
            return True
        return False


def _bcrypt_cost(hashed: bytes) -> int:
    """The cost factor of a ``$2y$10$...`` hash (10 when it cannot be read), within bcrypt's 4-31."""
    try:
        return min(31, max(4, int(hashed.split(b"$")[2])))
    except (IndexError, ValueError):
        return 10


class ReloadingTlsContext:
    """The server's TLS context, rebuilt when its certificate, key or client CA file changes on disk.

    Certificates are renewed under a running exporter (cert-manager, a rotated Kubernetes secret); new
    connections get the new certificate without a restart. Files are checked at most every
    ``check_seconds``. A renewal that does not load (a half-written file) keeps the old context.
    """

    def __init__(
        self,
        config: WebConfig,
        *,
        check_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        context = config.ssl_context()
        if context is None or config.tls_server_config is None:
            raise ValueError("the web config has no tls_server_config")
        tls = config.tls_server_config
        self._config = config
        self._files = [path for path in (tls.cert_file, tls.key_file, tls.client_ca_file) if path is not None]
        self._context = context
        self._stamp = self._files_stamp()
        self._check_seconds = check_seconds
        self._clock = clock
        self._checked_at = clock()
        self._lock = threading.Lock()

    def _files_stamp(self) -> tuple[tuple[int, int], ...] | None:
        try:
            return tuple((path.stat().st_mtime_ns, path.stat().st_size) for path in self._files)
        except OSError:
            return None

    def current(self) -> ssl.SSLContext:
        """The context for a new connection, reloaded first if the files changed."""
        now = self._clock()
        if now - self._checked_at < self._check_seconds:
            return self._context
        with self._lock:
            if now - self._checked_at < self._check_seconds:
                return self._context
            self._checked_at = now
            stamp = self._files_stamp()
            if stamp is None or stamp == self._stamp:
                return self._context
            self._stamp = stamp  # tried once per change, so a bad file is reported once
            try:
                context = self._config.ssl_context()
            except ConfigError as exc:
                log.warning("tls_certificate_reload_failed", error=str(exc), kept="previous certificate")
                return self._context
            assert context is not None
            self._context = context
            log.info("tls_certificate_reloaded")
            return self._context
