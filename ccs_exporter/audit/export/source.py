"""Reading an audit log as it grows: complete records from a byte offset, checked to continue the chain.

Only lines that end with a newline are read (a writer's record is one ``write``; a line without its
newline is still being written or torn, and the writer removes a torn one). Each record must follow the
previous one (sequence + 1, ``prev_hash`` = its hash): a log that breaks the chain is not shipped on.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ccs_exporter.audit.export.cursor import Cursor
from ccs_exporter.audit.verify import MAX_LINE_BYTES


class SourceError(Exception):
    """The log cannot be shipped on: it was rewritten, truncated, replaced or breaks its chain."""


@dataclass(frozen=True)
class SourceRecord:
    """One record as written: its line (text, no newline), parsed form and place in the log."""

    offset: int
    line: str
    record: dict[str, Any]
    sequence: int
    hash: str

    @property
    def end(self) -> int:
        """The offset just past this record's line."""
        return self.offset + len(self.line.encode("utf-8")) + 1


def _parsed(line: bytes, offset: int, path: Path) -> SourceRecord:
    try:
        text = line.decode("utf-8")
        record = json.loads(text)
        sequence, last_hash = record["event"]["sequence"], record["audit"]["hash"]
        prev_hash = record["audit"]["prev_hash"]
    except (ValueError, KeyError, TypeError):
        raise SourceError(f"{path}: the line at byte {offset} is not an audit record") from None
    if not isinstance(sequence, int) or not isinstance(last_hash, str) or not isinstance(prev_hash, str):
        raise SourceError(f"{path}: the line at byte {offset} is not an audit record")
    return SourceRecord(offset, text, record, sequence, last_hash)


class LogSource:
    """The records of one log after a cursor; ``read`` returns the next complete ones, in order."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._handle: IO[bytes] | None = None
        self._identity: tuple[int, int] | None = None
        self._position = 0
        self._last = Cursor.start("")

    def open_at(self, cursor: Cursor) -> None:
        """Open the log and check that the cursor's record is where it says; SourceError if not."""
        self.close()
        try:
            handle = open(self._path, "rb")  # noqa: SIM115 - kept open while following
        except OSError as exc:
            raise SourceError(f"cannot read {self._path}: {exc.strerror or exc}") from None
        info = os.fstat(handle.fileno())
        self._handle, self._identity = handle, (info.st_dev, info.st_ino)
        self._last = cursor
        self._position = 0
        if cursor.sequence == 0:
            return
        handle.seek(cursor.offset)
        line = handle.readline(MAX_LINE_BYTES + 1)
        try:
            found = _parsed(line[:-1], cursor.offset, self._path) if line.endswith(b"\n") else None
        except SourceError:
            found = None  # no record starts there any more
        if found is None or (found.sequence, found.hash) != (cursor.sequence, cursor.hash):
            raise SourceError(
                f"the cursor (sequence {cursor.sequence}, hash {cursor.hash[:12]}…) no longer matches "
                f"{self._path}: the log was rewritten, truncated or replaced since it was shipped; "
                "shipping stopped (check it with `ccs-exporter audit verify`)"
            )
        self._position = found.end

    def read(self, limit: int) -> list[SourceRecord]:
        """Up to ``limit`` complete records after the last one read; SourceError if the chain breaks."""
        handle = self._handle
        if handle is None:
            raise SourceError("the log is not open")
        handle.seek(self._position)
        records: list[SourceRecord] = []
        while len(records) < limit:
            line = handle.readline(MAX_LINE_BYTES + 1)
            if not line.endswith(b"\n"):
                break  # the end, or a record still being written
            try:
                record = _parsed(line[:-1], self._position, self._path)
                self._check_follows(record)
            except SourceError:
                if records:
                    break  # ship what is good first; the next read raises
                raise
            records.append(record)
            self._position = record.end
            self._last = Cursor(record.sequence, record.hash, record.offset, "")
        return records

    def _check_follows(self, record: SourceRecord) -> None:
        last = self._last
        if record.sequence != last.sequence + 1 or record.record["audit"]["prev_hash"] != last.hash:
            raise SourceError(
                f"{self._path}: record {record.sequence} at byte {record.offset} does not follow record "
                f"{last.sequence} (a record was removed, inserted or edited); shipping stopped (check it "
                "with `ccs-exporter audit verify`)"
            )

    def changed_underneath(self) -> bool:
        """True when the path now names another file, or the file is shorter than what was read."""
        try:
            info = os.stat(self._path)
        except OSError:
            return True
        return (info.st_dev, info.st_ino) != self._identity or info.st_size < self._position

    def close(self) -> None:
        """Close the file."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
