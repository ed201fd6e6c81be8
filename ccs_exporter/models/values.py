"""Values in CCS payloads: job status codes, GUIDs and the DateTime shapes CCS sends, read tolerantly.

DateTimes come with or without an offset (naive means UTC), with .NET's 7-digit fractions, and as
``0001-01-01T00:00:00`` for "never"; GUIDs with or without braces, in any case.
"""

from __future__ import annotations

import enum
import re
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

from pydantic import (
    BeforeValidator,
)

GUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_GUID_RE = re.compile(GUID_PATTERN)
_BRACED_GUID_RE = re.compile(r"^\{(" + GUID_PATTERN[1:-1] + r")\}$")

_ISO_RE = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<h>\d{2}):(?P<m>\d{2})(?::(?P<s>\d{2})(?:[.,](?P<frac>\d+))?)?"
    r"\s*(?P<tz>Z|z|[+-]\d{2}(?::?\d{2})?)?$"
)
# WCF's JSON DateTime form, e.g. "/Date(1537422282000+0530)/"; not in the pages, but .NET services emit it.
_WCF_RE = re.compile(r"^/?Date\((?P<ms>-?\d+)(?P<tz>[+-]\d{4})?\)/?$")


class JobStatus(enum.IntEnum):
    """The documented job (run) status codes."""

    NONE = 0
    PENDING = 1
    EXECUTING = 2
    IDLE = 3
    COMPLETED = 4
    FAULTED = 5
    CUSTOM = 6
    ABORTED = 7

    @property
    def label(self) -> str:
        """The lower-case name used in metric labels (``faulted``)."""
        return self.name.lower()

    @property
    def is_running(self) -> bool:
        """Pending or executing: the run has not finished."""
        return self in (JobStatus.PENDING, JobStatus.EXECUTING)


def normalize_guid(value: str) -> str:
    """Return the GUID in lower case without braces, or raise ``ValueError`` naming the value."""
    text = value.strip()
    braced = _BRACED_GUID_RE.match(text)
    if braced:
        text = braced.group(1)
    if not _GUID_RE.match(text):
        raise ValueError(f"{value!r} is not a GUID (expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")
    return text.lower()


def guid_or_none(value: Any) -> str | None:
    """A GUID as ``normalize_guid`` gives it; None for no value, a value that is not text, or no GUID."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return normalize_guid(value)
    except ValueError:
        return None


def parse_ccs_datetime(value: Any) -> datetime | None:
    """Parse a CCS DateTime into an aware UTC datetime; ``None`` for null, empty or year 1 ("never").

    Naive values are UTC (the jobruns sample pairs ``11:14:34+05:30`` with ``05:44:42`` for an
    8-second run), never the local time of the machine. Fractions beyond microseconds are truncated.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        parsed = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return None if parsed.year <= 1 else parsed.astimezone(timezone.utc)
    if not isinstance(value, str):
        raise ValueError(f"expected a DateTime string, got {type(value).__name__}")
    text = value.strip()
    if not text:
        return None
    wcf = _WCF_RE.match(text)
    if wcf:
        try:
            parsed = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=int(wcf.group("ms")))
        except OverflowError:
            # pydantic turns only ValueError into a validation error; anything else would escape the parser.
            raise ValueError(f"{value!r} is out of the DateTime range") from None
        return None if parsed.year <= 1 else parsed
    match = _ISO_RE.match(text)
    if not match:
        raise ValueError(f"{value!r} is not a DateTime")
    year = int(match.group("date")[:4])
    if year <= 1:
        return None
    frac = (match.group("frac") or "0")[:6].ljust(6, "0")
    try:
        naive = datetime.fromisoformat(
            f"{match.group('date')}T{match.group('h')}:{match.group('m')}:{match.group('s') or '00'}"
        ).replace(microsecond=int(frac))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a DateTime ({exc})") from None
    offset = _parse_utc_offset(match.group("tz"))
    if offset is None:
        raise ValueError(f"{value!r} has an invalid UTC offset")
    try:
        return naive.replace(tzinfo=timezone(offset)).astimezone(timezone.utc)
    except OverflowError:
        # 9999-12-31T23:00:00-08:00 is past datetime.max in UTC; only ValueError becomes a validation error.
        raise ValueError(f"{value!r} is out of the DateTime range") from None


def _parse_utc_offset(tz: str | None) -> timedelta | None:
    """``+05:30``/``-0800``/``Z`` as a timedelta (no suffix is UTC); ``None`` when out of range."""
    if tz is None or tz in ("Z", "z"):
        return timedelta(0)
    sign = -1 if tz[0] == "-" else 1
    digits = tz[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:4] or "0")
    if hours > 23 or minutes > 59:
        return None
    return sign * timedelta(hours=hours, minutes=minutes)


def ccs_utc_offset(value: Any) -> timedelta | None:
    """The UTC offset a CCS DateTime string was written in (zero when it has none); ``None`` if unreadable."""
    if isinstance(value, datetime):
        return value.utcoffset() or timedelta(0)
    if not isinstance(value, str):
        return None
    text = value.strip()
    match = _ISO_RE.match(text) or _WCF_RE.match(text)
    return None if match is None else _parse_utc_offset(match.group("tz"))


def none_to_list(value: Any) -> Any:
    return [] if value is None else value


def json_type_name(value: Any) -> str:
    """A JSON value's type as a log line names it: "a string", "a number", "a list"..."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    return "a value of another kind"


def _none_to_false(value: Any) -> Any:
    return False if value is None else value


def _none_to_zero(value: Any) -> Any:
    return 0 if value is None else value


CcsDateTime = Annotated[datetime | None, BeforeValidator(parse_ccs_datetime)]
CcsList = Annotated[list[Any], BeforeValidator(none_to_list)]
CcsBool = Annotated[bool, BeforeValidator(_none_to_false)]
CcsInt = Annotated[int, BeforeValidator(_none_to_zero)]
