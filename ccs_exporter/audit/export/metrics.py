"""How far shipping got: the cursor files of ``audit export`` shippers, exposed by ``serve`` at each scrape.

Each scrape ``stat``s each configured cursor file and reads it (at most 4 KiB) only when it changed. A file
that does not exist yet means nothing was acknowledged: sequence 0, so an alert can compare it with the
head. A cursor that cannot be read is reported by ``ccs_audit_export_cursor_readable`` 0 and logged once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import structlog
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ccs_exporter.audit.export.cursor import Cursor, CursorError, read_cursor

log = structlog.get_logger(__name__)


class _CursorFile:
    """One cursor file, re-read only when its identity, size or mtime changed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._key: tuple[int, int, int, int] | None = None
        self._cursor: Cursor | None = Cursor.start("")
        self._problem: str | None = None

    def current(self) -> Cursor | None:
        """The cursor now (a missing file: the start), or None when it cannot be read."""
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            self._key, self._cursor = None, Cursor.start("")
            return self._report(None)
        except OSError as exc:
            self._key, self._cursor = None, None
            return self._report(f"cannot be read ({exc.strerror or type(exc).__name__})")
        key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
        if key != self._key:
            self._key = key
            try:
                self._cursor = read_cursor(self.path) or Cursor.start("")
                self._report(None)
            except CursorError as exc:
                self._cursor = None
                self._report(str(exc))
        return self._cursor

    def _report(self, problem: str | None) -> Cursor | None:
        if problem != self._problem:
            if problem is None:
                log.info("audit_export_cursor_readable", path=str(self.path))
            else:
                log.warning("audit_export_cursor_unreadable", problem=problem)
        self._problem = problem
        return self._cursor


class ShippingCollector(Collector):
    """Sample::

    ccs_audit_export_shipped_sequence{cursor="/var/lib/ccs/ship.cursor",destination="stdout"} 41.0
    ccs_audit_export_cursor_readable{cursor="/var/lib/ccs/ship.cursor"} 1.0
    """

    def __init__(self, paths: Sequence[Path]) -> None:
        self._files = [_CursorFile(path) for path in paths]

    def collect(self) -> Iterator[Metric]:
        shipped = GaugeMetricFamily(
            "ccs_audit_export_shipped_sequence",
            "Sequence of the last audit record a shipper's destination acknowledged, from its cursor file.",
            labels=["cursor", "destination"],
        )
        readable = GaugeMetricFamily(
            "ccs_audit_export_cursor_readable",
            "Whether the shipping cursor file could be read (1) or not (0); a missing file is readable.",
            labels=["cursor"],
        )
        for item in self._files:
            cursor = item.current()
            readable.add_metric([str(item.path)], 0 if cursor is None else 1)
            if cursor is not None:
                shipped.add_metric([str(item.path), cursor.destination], cursor.sequence)
        yield shipped
        yield readable
