"""The export formats by name: each maps one audit record (and its line as written) to one event."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ccs_exporter.audit.export.ecs import to_ecs
from ccs_exporter.audit.export.fields import number, path, text
from ccs_exporter.audit.export.ocsf import to_ocsf

Mapper = Callable[[Mapping[str, Any], str], dict[str, Any]]


@dataclass(frozen=True)
class ExportFormat:
    """A format: how a record becomes an event, and where an event keeps the original and its proof."""

    name: str
    map: Mapper
    original_field: str  # dotted path of the original record's line in an event ("" for jsonl)
    sequence_field: str
    hash_field: str
    sourcetype: str  # Splunk sourcetype of this format

    def event_line(self, record: Mapping[str, Any], original: str) -> str:
        """The event as one line of JSON (no newline); jsonl keeps the record's own bytes."""
        if not self.original_field:
            return original
        return json.dumps(self.map(record, original), ensure_ascii=False, separators=(",", ":"))

    def original_of(self, event: Mapping[str, Any]) -> str | None:
        """The original record's line an event carries, or None."""
        return text(event, self.original_field) if self.original_field else None

    def sequence_of(self, event: Mapping[str, Any]) -> int | None:
        """The sequence an event says it carries."""
        return number(event, self.sequence_field)

    def hash_of(self, event: Mapping[str, Any]) -> Any:
        """The chain hash an event says it carries."""
        return path(event, self.hash_field)


def _native(record: Mapping[str, Any], original: str) -> dict[str, Any]:
    return dict(record)


FORMATS: dict[str, ExportFormat] = {
    "ocsf": ExportFormat("ocsf", to_ocsf, "raw_data", "metadata.sequence", "metadata.uid", "ccs:audit:ocsf"),
    "ecs": ExportFormat("ecs", to_ecs, "event.original", "event.sequence", "event.hash", "ccs:audit:ecs"),
    "jsonl": ExportFormat("jsonl", _native, "", "event.sequence", "audit.hash", "ccs:audit"),
}


def format_named(name: str) -> ExportFormat:
    """The format called ``name``; ValueError listing the formats for any other name."""
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown format {name!r}: choose one of {', '.join(FORMATS)}") from None
