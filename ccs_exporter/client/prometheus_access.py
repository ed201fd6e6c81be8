"""How ``audit verify --witness`` reaches a secured Prometheus: the URL check and the access options.

``PrometheusAccess.from_options`` reads the token and password files once and checks the CA bundle,
credentials, client certificate and extra headers, with a ``ConfigError`` naming the option (never a
secret's value) when one is wrong. ``PrometheusApi`` (in ``prometheus``) sends what it holds.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ccs_exporter.errors import ConfigError
from ccs_exporter.redaction import secret_variants

_MAX_SECRET_FILE_BYTES = 64 * 1024
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
    # The path quoted, as settings errors do: a file named ``token`` or ``password`` followed by ": ..."
    # would read as a secret to the scrubbing of error text.
    named = f"{option} {str(path)!r}"
    try:
        with path.open("rb") as file:
            raw = file.read(_MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{named}: cannot read ({exc.strerror or exc})", field="witness") from None
    if len(raw) > _MAX_SECRET_FILE_BYTES:
        raise ConfigError(f"{named}: larger than {_MAX_SECRET_FILE_BYTES} bytes", field="witness")
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{named}: not UTF-8 text", field="witness") from None
    if not text:
        raise ConfigError(f"{named}: is empty", field="witness")
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise ConfigError(f"{named}: holds a control character (one line expected)", field="witness")
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
