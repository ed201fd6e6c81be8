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
from typing import Any

from ccs_exporter.audit.export.cursor import Cursor
from ccs_exporter.audit.verify import MAX_LINE_BYTES

_CHUNK = 1024 * 1024


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
        self._fd: int | None = None
        self._identity: tuple[int, int] | None = None
        self._position = 0
        self._last = Cursor.start("")

    def open_at(self, cursor: Cursor) -> None:
        """Open the log and check that the cursor's record is where it says; SourceError if not."""
        self.close()
        try:
            fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise SourceError(f"cannot read {self._path}: {exc.strerror or exc}") from None
        info = os.fstat(fd)
        self._fd, self._identity = fd, (info.st_dev, info.st_ino)
        self._last = cursor
        self._position = 0
        if cursor.sequence == 0:
            return
        line = self._line_at(cursor.offset)
        try:
            found = _parsed(line, cursor.offset, self._path) if line is not None else None
        except SourceError:
            found = None  # no record starts there any more
        if found is None or (found.sequence, found.hash) != (cursor.sequence, cursor.hash):
            raise SourceError(
                f"the cursor (sequence {cursor.sequence}, hash {cursor.hash[:12]}…) no longer matches "
                f"{self._path}: the log was rewritten, truncated or replaced since it was shipped; "
                "shipping stopped (check it with `ccs-exporter audit verify`)"
            )
        self._position = found.end

    def _line_at(self, offset: int) -> bytes | None:
        """The complete line starting at ``offset`` (without its newline), or None."""
        lines = self._complete_lines(offset, 1)
        return lines[0] if lines else None

    def _complete_lines(self, offset: int, limit: int) -> list[bytes]:
        """Up to ``limit`` newline-terminated lines from ``offset``, read with pread (never a stale
        buffer: the writer may have cut a torn line and written a record in its place)."""
        if self._fd is None:
            raise SourceError("the log is not open")
        lines: list[bytes] = []
        pending = b""
        position = offset
        while len(lines) < limit:
            chunk = os.pread(self._fd, _CHUNK, position + len(pending))
            if not chunk:
                break
            pending += chunk
            while len(lines) < limit:
                newline = pending.find(b"\n")
                if newline < 0:
                    break
                lines.append(pending[:newline])
                position += newline + 1
                pending = pending[newline + 1 :]
            if len(pending) > MAX_LINE_BYTES:
                raise SourceError(f"{self._path}: a line at byte {position} is longer than {MAX_LINE_BYTES}")
        return lines

    def read(self, limit: int) -> list[SourceRecord]:
        """Up to ``limit`` complete records after the last one read; SourceError if the chain breaks."""
        records: list[SourceRecord] = []
        for line in self._complete_lines(self._position, limit):
            try:
                record = _parsed(line, self._position, self._path)
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
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
