"""Reading the fields of a written audit record, for the mappings: typed look-ups that never raise."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def path(record: Mapping[str, Any], dotted: str) -> Any:
    """The value at ``a.b.c`` of nested mappings, or None when any step is missing."""
    value: Any = record
    for key in dotted.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def text(record: Mapping[str, Any], dotted: str) -> str | None:
    """The string at ``dotted``, or None when it is missing or not a string."""
    value = path(record, dotted)
    return value if isinstance(value, str) else None


def number(record: Mapping[str, Any], dotted: str) -> int | None:
    """The whole number at ``dotted`` (booleans excluded), or None."""
    value = path(record, dotted)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def epoch_ms(timestamp: str | None) -> int:
    """Milliseconds since the epoch of a record's ``@timestamp`` (0 when it cannot be read)."""
    if timestamp is None:
        return 0
    try:
        moment = datetime.strptime(timestamp, TIMESTAMP_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        return 0
    return int(moment.timestamp() * 1000)


# Values carried as they are (a job's state): their None fields are data, not absent fields.
OPAQUE_KEYS = frozenset({"data", "diff", "requested", "evidence"})


def pruned(value: dict[str, Any]) -> dict[str, Any]:
    """``value`` without keys whose value is None or an empty mapping (recursively, not into data)."""
    result: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, dict) and key not in OPAQUE_KEYS:
            item = pruned(item)
            if not item:
                continue
        if item is None:
            continue
        result[key] = item
    return result
