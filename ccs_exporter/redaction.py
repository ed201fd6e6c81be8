"""One vocabulary of secrets for logs, client errors and audit records: what names or looks like one.

Keys that name a secret (password, token, authorization, api key, cookie...) lose their values; known
secret values (the password, its Base64 form, tokens) are replaced wherever they appear; secret-looking
text inside kept values (``Bearer ...``, JWTs, ``password=...``, ``user:pass@`` in URLs) is scrubbed.
Everything removed becomes ``[REDACTED]``.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

REDACTED = "[REDACTED]"
# Values shorter than this are not replaced: they would blank out ordinary words, and such a password
# is no secret anyway.
MIN_SECRET_LENGTH = 4

_SECRET_KEY_RE = re.compile(
    r"pass(word|wd|phrase)?$|^pwd$|password|secret|token|authori[sz]ation|api[_-]?key|credential|cookie"
    r"|private[_-]?key",
    re.IGNORECASE,
)
# Secret-looking text inside ordinary values (a notification body, a server message).
_SECRET_VALUE_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]{6,}"), rf"\1\2{REDACTED}"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), REDACTED),
    (
        re.compile(
            r"(?i)\b(password|passwd|pwd|passphrase|secret|client_secret|[a-z_]*token|api[_-]?key|"
            r"access[_-]?key)(\s*[:=]\s*|\s+is\s+)(\"[^\"]*\"|'[^']*'|[^\s,;&]+)"
        ),
        rf"\1\2{REDACTED}",
    ),
    (re.compile(r"(://[^/\s:@]+):[^/\s@]+@"), rf"\1:{REDACTED}@"),
)


def names_secret(key: object) -> bool:
    """True when a mapping key names a secret (``password``, ``access_token``, ``Authorization``...)."""
    return isinstance(key, str) and bool(_SECRET_KEY_RE.search(key))


def secret_variants(secret: str) -> list[str]:
    """A secret and the forms it travels in, for redaction: as typed, Base64, and each URL-encoded.

    A server or proxy that echoes the login form shows it form-encoded (``p%40ss+w%2Frd``), so the
    ``quote_plus`` and ``quote`` forms (with and without ``/`` kept) of both are known too. Never raises,
    even for text that is not valid Unicode (a lone surrogate).
    """
    if not secret:
        return []
    raw = secret.encode("utf-8", "surrogatepass")
    encoded = base64.b64encode(raw).decode("ascii")
    variants = [secret, encoded, secret.strip()]
    # As an error message quotes it: Python's repr and JSON escape quotes, backslashes and control
    # characters, so a password holding one would not match as typed.
    variants += [repr(secret)[1:-1], json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]]
    for form in (raw, encoded.encode("ascii")):
        variants += [quote_plus(form), quote(form, safe=""), quote(form), quote_plus(form, safe="/")]
    return list(dict.fromkeys(variants))


def redact_passwords(text: str, passwords: Iterable[str]) -> str:
    """``text`` with every form of each password and secret-looking fragments replaced."""
    return scrub_text(
        replace_known(text, [form for password in passwords for form in secret_variants(password)])
    )


def replace_known(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with each known secret value replaced, longest first (a secret holding another goes whole)."""
    known = {value for value in secrets if value and len(value) >= MIN_SECRET_LENGTH}
    for secret in sorted(known, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def scrub_text(text: str) -> str:
    """``text`` with secret-looking fragments (bearer tokens, JWTs, ``password=...``) replaced."""
    for pattern, replacement in _SECRET_VALUE_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class Redactor:
    """Removes secrets from record data: known secret values, secret-named keys, secret-looking text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._known = [value for value in secrets if value and len(value) >= MIN_SECRET_LENGTH]

    def __call__(self, value: Any, key: str = "") -> Any:
        if key and names_secret(key) and value not in (None, "", [], {}) and not isinstance(value, bool):
            return REDACTED
        if isinstance(value, Mapping):
            return {str(k): self(v, str(k)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self(item) for item in value]
        if isinstance(value, str):
            return self.text(value)
        return value

    def text(self, text: str) -> str:
        """``text`` with known secrets and secret-looking fragments replaced by ``[REDACTED]``."""
        return scrub_text(replace_known(text, self._known))
