"""Shipping: records read after the cursor, mapped, delivered, and only then the cursor moved on.

At-least-once: the cursor is written (durably) after the destination acknowledged a batch, so a crash
between the two ships that batch again; the sequence is the dedupe key. Delivery failures are retried with
exponential backoff (for ever when following, a few times otherwise); a log that no longer matches the
cursor, or breaks its chain, stops shipping with ``SourceError``.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from ccs_exporter.audit.export.cursor import Cursor, read_cursor, write_cursor
from ccs_exporter.audit.export.destinations import DeliveryError, Destination, Shipment
from ccs_exporter.audit.export.fields import number, text
from ccs_exporter.audit.export.formats import ExportFormat
from ccs_exporter.audit.export.source import LogSource, SourceError, SourceRecord

log = structlog.get_logger(__name__)

BATCH_RECORDS = 200


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff between delivery attempts: ``first`` seconds, doubled up to ``cap``, with jitter."""

    first: float = 0.5
    cap: float = 30.0
    attempts: int | None = 5  # None: until delivered or stopped

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (full jitter on the upper half)."""
        base = min(self.cap, self.first * 2.0 ** min(attempt - 1, 20))
        return base / 2 + random.uniform(0, base / 2)


@dataclass(frozen=True)
class ShipReport:
    """What a run shipped: events, batches, the last acknowledged record and retried deliveries."""

    events: int
    batches: int
    last: Cursor
    retries: int
    stopped: bool


@dataclass
class ShipSettings:
    """How to ship: the log, the format, the cursor file (optional), whether to follow, how often to look."""

    log_path: Path
    format: ExportFormat
    cursor_path: Path | None = None
    follow: bool = False
    poll_seconds: float = 0.2
    batch_records: int = BATCH_RECORDS
    retry: RetryPolicy = RetryPolicy()


class Shipper:
    """Ships one log to one destination; ``stop`` (another thread or a signal handler) ends ``run``."""

    def __init__(
        self,
        settings: ShipSettings,
        destination: Destination,
        *,
        on_acknowledged: Callable[[Cursor], None] | None = None,
    ) -> None:
        self._settings = settings
        self._destination = destination
        self._stop = threading.Event()
        self._on_acknowledged = on_acknowledged
        self._source = LogSource(settings.log_path)
        self._events = self._batches = self._retries = 0

    def stop(self) -> None:
        """Ask ``run`` to return after the batch in hand (safe from a signal handler)."""
        self._stop.set()

    def stopped(self) -> bool:
        """True once ``stop`` was called."""
        return self._stop.is_set()

    def start_cursor(self) -> Cursor:
        """The cursor to resume from: the file's (which must belong to this destination) or the start."""
        name = self._destination.name
        path = self._settings.cursor_path
        cursor = read_cursor(path) if path is not None else None
        if cursor is None:
            return Cursor.start(name)
        if cursor.destination and cursor.destination != name:
            raise SourceError(
                f"cursor {path} belongs to destination {cursor.destination}, not {name}: give each "
                "destination its own cursor file"
            )
        return cursor

    def run(self) -> ShipReport:
        """Ship until the log's end (or, following, until stopped); the report of what was shipped."""
        cursor = self.start_cursor()
        self._source.open_at(cursor)
        try:
            while not self._stop.is_set():
                records = self._source.read(self._settings.batch_records)
                if records:
                    cursor = self._ship(records) or cursor
                    continue
                if not self._settings.follow:
                    break
                if self._source.changed_underneath():
                    self._source.open_at(cursor)  # raises unless the acknowledged record is still there
                self._stop.wait(self._settings.poll_seconds)
        finally:
            self._source.close()
            self._destination.close()
        return ShipReport(self._events, self._batches, cursor, self._retries, self._stop.is_set())

    def _ship(self, records: Sequence[SourceRecord]) -> Cursor | None:
        fmt = self._settings.format
        batch = [_shipment(item, fmt) for item in records]
        if not self._deliver(batch):
            return None
        last = records[-1]
        cursor = Cursor(last.sequence, last.hash, last.offset, self._destination.name)
        if self._settings.cursor_path is not None:
            write_cursor(self._settings.cursor_path, cursor)
        self._events += len(batch)
        self._batches += 1
        if self._on_acknowledged is not None:
            self._on_acknowledged(cursor)
        return cursor

    def _deliver(self, batch: Sequence[Shipment]) -> bool:
        """True once delivered; False when stopped first; DeliveryError when the attempts ran out."""
        policy = self._settings.retry
        attempt = 0
        while True:
            attempt += 1
            try:
                self._destination.send(batch)
                return True
            except DeliveryError as exc:
                if policy.attempts is not None and attempt >= policy.attempts:
                    raise
                self._retries += 1
                wait = policy.delay(attempt)
                log.warning(
                    "audit_export_retry",
                    destination=self._destination.name,
                    first_sequence=batch[0].sequence,
                    attempt=attempt,
                    retry_in_seconds=round(wait, 2),
                    error=str(exc),
                )
                if self._stop.wait(wait):
                    return False


def _shipment(item: SourceRecord, fmt: ExportFormat) -> Shipment:
    record = item.record
    return Shipment(
        sequence=item.sequence,
        hash=item.hash,
        timestamp=text(record, "@timestamp") or "",
        host=text(record, "host.name"),
        pid=number(record, "process.pid"),
        action=text(record, "event.action") or "unknown",
        line=fmt.event_line(record, item.line),
    )
