"""The append engine of the audit log: one JSON line per record, chained, under an exclusive flock.

Each append opens the file, takes ``flock(LOCK_EX)``, reads the last complete record (cached while the
file is unchanged) to continue the chain, removes a torn last line left by a crash (recording it first),
writes and fsyncs, and updates ``<log>.head``. Any failure raises ``AuditError`` and leaves the file as
it was, so threads and processes sharing the log never fork the chain and never half-write a record.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import stat
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from ccs_exporter.audit.head import Head, head_path, read_head, write_head
from ccs_exporter.audit.records import GENESIS_HASH, AuditRecord, canonical_json, record_hash
from ccs_exporter.errors import AuditError

log = structlog.get_logger(__name__)

_TAIL_CHUNK = 65536

Stamper = Callable[[Mapping[str, Any], int, str], dict[str, Any]]
"""Turns record fields into the record as written, given its sequence and the previous hash."""

Precondition = Callable[[int, int], None]
"""Called with (fd, size) under the lock before a record is written to a file; raises to write nothing."""


@dataclass
class _Tail:
    inode: int
    device: int
    size: int
    sequence: int
    hash: str
    mtime_ns: int = -1  # of the file after our own last append: an edit in place changes it


class ChainWriter:
    """Appends records to one file; callers serialise calls (``AuditLog`` holds a lock around them)."""

    def __init__(self, path: Path, stamp: Stamper, *, fsync: bool = True) -> None:
        self._path = path
        self._head_path = head_path(path)
        self._stamp = stamp
        self._fsync = fsync
        self._tail: _Tail | None = None
        self._stream_tail: _Tail | None = None
        self.head_write_errors = 0

    def append(self, fields: Mapping[str, Any], precondition: Precondition | None = None) -> dict[str, Any]:
        """Write one record (and a recovery record before it if the last line is torn); return it.

        ``precondition`` sees the file under the lock, so a check and the append it allows are atomic
        for every writer that shares the log (e.g. "no result for this intent has been written yet").
        """
        path = self._path
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            raise AuditError(f"cannot open audit log {path}: {exc.strerror or exc}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as exc:
                raise AuditError(f"cannot lock audit log {path}: {exc.strerror or exc}") from None
            info = os.fstat(fd)
            if stat.S_ISREG(info.st_mode):
                if precondition is not None:
                    precondition(fd, info.st_size)
                return self._append_to_file(fd, info, fields)
            return self._append_to_stream(fd, fields)
        finally:
            os.close(fd)  # also releases the flock

    def _append_to_file(self, fd: int, info: os.stat_result, fields: Mapping[str, Any]) -> dict[str, Any]:
        if not _same_file(self._path, info):
            raise AuditError(f"audit log {self._path} was deleted or replaced while it was being written")
        tail = self._read_tail(fd, info)
        pending: list[Mapping[str, Any]] = []
        if tail.size < info.st_size:
            pending.append(self._recovery_fields(fd, tail, info.st_size))
        pending.append(fields)
        written, tail, data = self._chain(pending, tail)
        if tail.size < info.st_size:
            self._truncate(fd, tail.size)
        self._write_all(fd, data, tail.size)
        mtime_ns = os.fstat(fd).st_mtime_ns
        self._tail = _Tail(
            info.st_ino, info.st_dev, tail.size + len(data), tail.sequence, tail.hash, mtime_ns
        )
        self._write_head(tail.sequence, tail.hash, new_file=info.st_size == 0)
        return written

    def _append_to_stream(self, fd: int, fields: Mapping[str, Any]) -> dict[str, Any]:
        # A device or pipe (e.g. /dev/stdout): nothing to read back, so the chain lives in memory.
        tail = self._stream_tail or _Tail(0, 0, 0, 0, GENESIS_HASH)
        written, tail, data = self._chain([fields], tail)
        self._write_all(fd, data, None)
        self._stream_tail = tail
        return written

    def _chain(self, pending: list[Mapping[str, Any]], tail: _Tail) -> tuple[dict[str, Any], _Tail, bytes]:
        """Stamp ``pending`` in order after ``tail``: the last record, the new tail and the bytes to write."""
        written: dict[str, Any] = {}
        lines: list[str] = []
        for item in pending:
            written = self._stamp(item, tail.sequence + 1, tail.hash)
            tail = _Tail(
                tail.inode, tail.device, tail.size, written["event"]["sequence"], written["audit"]["hash"]
            )
            lines.append(canonical_json(written) + "\n")
        return written, tail, "".join(lines).encode("utf-8")

    def _read_tail(self, fd: int, info: os.stat_result) -> _Tail:
        """The last complete record's sequence and hash; ``size`` is where complete records end."""
        cached = self._tail
        if cached is not None and (cached.inode, cached.device, cached.size, cached.mtime_ns) == (
            info.st_ino,
            info.st_dev,
            info.st_size,
            info.st_mtime_ns,
        ):
            return cached
        end, last_line = _last_complete_line(fd, info.st_size)
        head = self._read_head()
        if last_line is None:
            tail = _Tail(info.st_ino, info.st_dev, 0, 0, GENESIS_HASH)
        else:
            try:
                record = json.loads(last_line)
                sequence = int(record["event"]["sequence"])
                last_hash = str(record["audit"]["hash"])
            except (ValueError, KeyError, TypeError):
                raise AuditError(
                    f"the last record of audit log {self._path} is unreadable; run `ccs-exporter audit "
                    f"verify {self._path}`"
                ) from None
            if record_hash(record) != last_hash:
                # Chaining onto an edited record would vouch for the edit with a new, valid hash (and a
                # signature): refuse, as for a torn or unreadable log.
                raise AuditError(
                    f"the last record of audit log {self._path} (sequence {sequence}) was edited: its "
                    f"fields do not match its hash; refusing to write; run `ccs-exporter audit verify "
                    f"{self._path}`"
                )
            tail = _Tail(info.st_ino, info.st_dev, end, sequence, last_hash)
        if head is not None and head.sequence == tail.sequence and head.hash != tail.hash:
            raise AuditError(
                f"the last record of audit log {self._path} (sequence {tail.sequence}) is not the one "
                f"{self._head_path} records: it was rewritten; refusing to write"
            )
        if head is not None and head.sequence > tail.sequence:
            raise AuditError(
                f"audit log {self._path} ends at sequence {tail.sequence} but {self._head_path} records "
                f"sequence {head.sequence}: records were deleted or the file was replaced; refusing to write"
            )
        return tail

    def _read_head(self) -> Head | None:
        try:
            return read_head(self._head_path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise AuditError(f"cannot read {self._head_path}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise AuditError(f"{self._head_path} {exc}; refusing to write") from None

    def _write_head(self, sequence: int, last_hash: str, new_file: bool) -> None:
        """Best effort: the record is already durable; a stale head only weakens truncation checks."""
        try:
            temp_suffix = f".{os.getpid()}.{threading.get_ident()}.tmp"
            write_head(self._head_path, Head(sequence, last_hash), temp_suffix)
            if new_file and self._fsync:
                _fsync_directory(self._path.parent)
        except OSError as exc:
            self.head_write_errors += 1
            log.warning("audit_head_write_failed", path=str(self._head_path), error=exc.strerror or str(exc))

    def _recovery_fields(self, fd: int, tail: _Tail, size: int) -> dict[str, Any]:
        """A record of the torn last line (a write interrupted by a crash) that is about to be removed."""
        os.lseek(fd, tail.size, os.SEEK_SET)
        torn = os.read(fd, size - tail.size)
        log.warning("audit_torn_line_removed", path=str(self._path), bytes=len(torn))
        return AuditRecord(
            action="audit.recovered",
            phase="recovery",
            outcome="success",
            removed=(len(torn), hashlib.sha256(torn).hexdigest()),
            message="removed a torn last line left by an interrupted write",
        ).fields()

    def _truncate(self, fd: int, size: int) -> None:
        try:
            os.ftruncate(fd, size)
        except OSError as exc:
            raise AuditError(f"cannot repair audit log {self._path}: {exc.strerror or exc}") from None

    def _write_all(self, fd: int, data: bytes, size_before: int | None) -> None:
        """Write ``data`` and fsync; on failure, cut the file back so no partial record remains."""
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if self._fsync:
                os.fsync(fd)
        except OSError as exc:
            if size_before is not None:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size_before)
            raise AuditError(f"cannot write audit log {self._path}: {exc.strerror or exc}") from None


def _same_file(path: Path, info: os.stat_result) -> bool:
    try:
        current = os.stat(path)
    except OSError:
        return False
    return (current.st_dev, current.st_ino) == (info.st_dev, info.st_ino)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _last_complete_line(fd: int, size: int) -> tuple[int, bytes | None]:
    """(offset just past the last newline, the last newline-terminated line) of the file."""
    position = size
    buffer = b""
    end: int | None = None
    while position > 0:
        step = min(_TAIL_CHUNK, position)
        position -= step
        os.lseek(fd, position, os.SEEK_SET)
        buffer = os.read(fd, step) + buffer
        if end is None:
            newline = buffer.rfind(b"\n")
            if newline < 0:
                continue
            end = position + newline + 1
            buffer = buffer[: newline + 1]
        start = buffer.rfind(b"\n", 0, len(buffer) - 1)
        if start >= 0:
            return end, buffer[start + 1 : -1]
    if end is None:
        return 0, None
    return end, buffer[:-1] if buffer else None
