"""The values people hand us by name, each checked in one place: job ids, run ids, searches, reasons.

A bad value is a ``ConfigError`` (for an argument) or a ``ValueError`` (inside a setting) that names
what is wrong with it; the value itself is repeated only where it cannot be a secret.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ccs_exporter.errors import ConfigError
from ccs_exporter.models import normalize_guid
from ccs_exporter.settings.inputs import load_yaml_text

# Search Jobs expressions come from the operator, not from CCS, but are still bounded: each becomes a
# ``search`` label value and one listing per cycle.
MAX_JOB_SEARCHES = 64
MAX_JOB_SEARCH_LENGTH = 4096


def checked_job_id(value: str) -> str:
    """A job id argument normalised (lower case, no braces); a ConfigError naming it if it is no GUID."""
    try:
        return normalize_guid(value)
    except ValueError as exc:
        raise ConfigError(
            f"job id {exc}; to look a job up by its name: ccs-exporter jobs find NAME", field="job_id"
        ) from None


def _listed(value: Any, plain: Callable[[str], list[str]], unparsable: str) -> Any:
    """A list setting as given: None or blank text is [], text starting with '[' is read as a YAML/JSON
    list (ValueError ``unparsable`` if it is not YAML), other text is split by ``plain``; anything else is
    returned for the caller to check."""
    if value is None:
        return []
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text:
        return []
    if not text.startswith("["):
        return plain(text)
    try:
        return load_yaml_text(text)
    except yaml.YAMLError:
        raise ValueError(unparsable) from None


def parse_job_ids(value: Any) -> list[str]:
    """Job ids from a list, a YAML/JSON list string, or a comma- or space-separated string."""
    value = _listed(
        value,
        lambda text: text.replace(",", " ").split(),
        "is neither a comma-separated list nor a YAML/JSON list",
    )
    if not isinstance(value, list):
        raise ValueError("must be a list of job GUIDs")
    ids: list[str] = []
    for item in value:
        job_id = normalize_guid(str(item))
        if job_id not in ids:
            ids.append(job_id)
    return ids


MAX_EXPORT_CURSORS = 16


def parse_cursor_paths(value: Any) -> list[Path]:
    """Shipping cursor files (``audit export --cursor``) from a list or a comma-separated string."""
    value = _listed(
        value,
        lambda text: [part.strip() for part in text.split(",") if part.strip()],
        "is neither a comma-separated list of files nor a YAML/JSON list",
    )
    if not isinstance(value, list) or not all(isinstance(item, (str, Path)) for item in value):
        raise ValueError("must be a list of cursor files")
    if len(value) > MAX_EXPORT_CURSORS:
        raise ValueError(f"has {len(value)} files; at most {MAX_EXPORT_CURSORS}")
    paths: list[Path] = []
    for item in value:
        path = Path(item)
        if path not in paths:
            paths.append(path)
    return paths


def parse_job_searches(value: Any) -> list[str]:
    """Search Jobs expressions from one expression or a YAML/JSON list; each kept verbatim, once."""
    value = _listed(
        value,
        lambda text: [text],
        "is neither one expression nor a YAML/JSON list of expressions",
    )
    if not isinstance(value, list):
        raise ValueError("must be one Search Jobs expression or a list of them")
    if len(value) > MAX_JOB_SEARCHES:
        raise ValueError(f"has {len(value)} expressions; at most {MAX_JOB_SEARCHES}")
    searches: list[str] = []
    for index, item in enumerate(value, start=1):
        if not isinstance(item, str):
            raise ValueError(f"expression {index} is not a string")
        try:
            text = job_search(item)
        except ValueError as exc:
            raise ValueError(f"expression {index} {exc}") from None
        if text not in searches:
            searches.append(text)
    return searches


def job_search(expression: str) -> str:
    """One Search Jobs expression without surrounding spaces; ValueError saying what is wrong with it."""
    text = expression.strip()
    if not text:
        raise ValueError("is empty")
    if len(text) > MAX_JOB_SEARCH_LENGTH:
        raise ValueError(f"is longer than {MAX_JOB_SEARCH_LENGTH} characters")
    if any(unicodedata.category(char) in ("Cc", "Zl", "Zp") for char in text):
        raise ValueError("holds a line break or control character")
    if any(unicodedata.category(char) == "Cs" for char in text):
        raise ValueError("holds text that is not valid Unicode (a lone surrogate)")
    return text


def checked_job_search(expression: str) -> str:
    """A Search Jobs expression argument, stripped; a ConfigError naming it if it cannot be sent."""
    try:
        return job_search(expression)
    except ValueError as exc:
        raise ConfigError(f"search expression {exc}", field="expression") from None


def checked_run_id(value: str) -> str:
    """A run id argument normalised (lower case, no braces); a ConfigError naming it if it is no GUID."""
    try:
        return normalize_guid(value)
    except ValueError as exc:
        raise ConfigError(f"run id {exc}", field="run_id") from None


def checked_reason(reason: str | None) -> str | None:
    """The ``--reason`` text; a ConfigError if it is not text that can be recorded (bytes not UTF-8)."""
    if reason is not None and any("\ud800" <= char <= "\udfff" for char in reason):
        raise ConfigError(
            "reason: holds bytes that are not UTF-8 text (a lone surrogate such as \\udcff)", field="reason"
        )
    return reason
