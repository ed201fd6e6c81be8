"""Checks of setting values that need more than a type: the CCS URL, the password file, the audit log path.

Pure functions that raise ``ValueError`` with the problem (``config.Settings`` adds the setting's name);
no message holds a password or the credentials of a URL.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

from ccs_exporter.settings.inputs import read_regular_file

# A password file holds one password; the cap keeps /dev/zero in its place from eating memory.
MAX_PASSWORD_FILE_BYTES = 64 * 1024

# The client appends this to the base URL; a URL that already ends in it would be doubled.
_API_PATH = "/ccs/api/v1"
_USERINFO_RE = re.compile(r"^((?:[A-Za-z][A-Za-z0-9+.-]*:)?//)?[^/?#]*@")
_HOST_LABEL_RE = re.compile(r"^(?!-)[^\s./:@\\[\]]{1,63}(?<!-)$")


def url_without_credentials(url: str) -> str:
    """``url`` with any ``user:password@`` part replaced by ``[REDACTED]@``, for messages and logs."""
    return _USERINFO_RE.sub(r"\1[REDACTED]@", url, count=1)


def check_ccs_url(value: str) -> str:
    """The CCS base URL without a trailing slash; ValueError naming the part no request could use."""
    text = value.strip()
    if any(char.isspace() or not char.isprintable() for char in text):
        raise ValueError("has an invalid host or path: it holds spaces or control characters")
    try:
        parts = urlsplit(text)
    except ValueError:  # an unclosed or invalid [IPv6] host
        raise ValueError("has an invalid host: not a valid [IPv6] address") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("must start with https:// (or http://), e.g. https://ccs.example.com:12431")
    if "@" in parts.netloc:
        # requests would send these as Basic auth in place of the bearer token, on every request.
        raise ValueError(
            "must not hold a user name or password: set CCS_EXPORTER_USERNAME and CCS_EXPORTER_PASSWORD"
        )
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or fragment")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("has an invalid port (a number 1-65535)") from None
    if port == 0 or parts.netloc.endswith(":"):
        raise ValueError("has an invalid port (a number 1-65535)")
    _check_host(parts.netloc, parts.hostname)
    if parts.path.rstrip("/").lower().endswith(_API_PATH):
        raise ValueError(f"must be the server's base URL without {_API_PATH} (it is appended)")
    return text.rstrip("/")


def _check_host(netloc: str, host: str | None) -> None:
    if not host:
        raise ValueError("has no host name")
    if netloc.startswith("["):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"has an invalid host: {host!r} is not an IPv6 address") from None
        return
    labels = host.rstrip(".").split(".")
    if not all(_HOST_LABEL_RE.match(label) for label in labels):
        raise ValueError(f"has an invalid host name {host!r}")


def read_password_file(path: Path) -> str:
    """The password in ``path`` (UTF-8; a byte order mark and one trailing newline dropped).

    ValueError says why the file cannot hold a usable password (unreadable, not UTF-8, empty); the
    message never holds the file's content.
    """
    try:
        data = read_regular_file(path, MAX_PASSWORD_FILE_BYTES)
    except OSError as exc:
        raise ValueError(f"cannot be read ({exc.strerror})") from None
    if len(data) > MAX_PASSWORD_FILE_BYTES:
        raise ValueError(f"is larger than {MAX_PASSWORD_FILE_BYTES // 1024} KiB: not a password file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError("is not UTF-8 text (save it as UTF-8)") from None
    password = text.rstrip("\r\n")
    if not password:
        raise ValueError("is empty")
    return password


def check_password_text(password: str) -> None:
    """ValueError unless the password can be sent: UTF-8 encodable (no lone surrogate from a bad byte).

    The message never shows the password, a character of it, or where in it the problem is.
    """
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            "is not valid UTF-8 text (it holds a byte sequence that is not UTF-8; set it as UTF-8)"
        ) from None


def check_writable_file(path: Path) -> None:
    """ValueError unless ``path`` is a regular file this process can append to, or create (the audit log).

    A device, FIFO or socket (``/dev/null``) is refused: it would swallow the records or block, and
    nothing could be read back to continue or verify the chain. An existing file is opened as the writer
    opens it (read and append: it reads the last record to chain onto), and its directory must take the
    head file written beside it.
    """
    if path.is_dir():
        raise ValueError("is a directory; give a file in it, e.g. audit.jsonl")
    if path.exists():
        if not path.is_file():
            raise ValueError(
                "is not a regular file (a device, FIFO or socket such as /dev/null cannot hold the chain)"
            )
        try:  # the real test: a write-only file passes os.access(W_OK) but not the writer's open
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise ValueError(f"is not writable and readable ({exc.strerror or type(exc).__name__})") from None
        os.close(fd)
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise ValueError(
                f"is in a directory this process cannot write ({path.parent}): the head file "
                f"{path.name}.head is written beside it"
            )
        return
    parent = path.parent
    if not parent.exists():
        raise ValueError(f"cannot be created: its directory {parent} does not exist")
    if not parent.is_dir():
        raise ValueError(f"cannot be created: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"cannot be created: its directory {parent} is not writable")
