"""The head file beside an audit log (``<log>.head``): the sequence and hash of the last record written.

Writers replace it after every append; ``verify`` compares the log with it, and the exporter exposes it as
``ccs_audit_head_sequence`` and ``ccs_audit_head_hash48`` so that Prometheus keeps an outside record of it.
This module is the one owner of the format: it writes the file and every reader reads it through here. The
file is read at each scrape and before each append, so it is opened without blocking and read only when it
is a regular file (a FIFO or a device put in its place cannot hang the server or the writer).
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ccs_exporter.audit.records import GENESIS_HASH

HEAD_SUFFIX = ".head"
# A head file is one short JSON line; anything larger is not one of ours and is not read into memory.
MAX_HEAD_BYTES = 4096
_HASH_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Head:
    """Where the log ended when the head was written: the last record's sequence and ``audit.hash``."""

    sequence: int
    hash: str

    @property
    def hash48(self) -> int:
        """The first 12 hex digits of the hash as an integer: exact in a float, so Prometheus keeps it."""
        return hash48(self.hash)


def hash48(record_hash: str) -> int:
    """The first 12 hex digits (48 bits) of a record hash as an integer."""
    return int(record_hash[:12], 16)


def head_path(log_path: str | os.PathLike[str]) -> Path:
    """The head file of the log at ``log_path``."""
    return Path(f"{os.fspath(log_path)}{HEAD_SUFFIX}")


def parse_head(data: bytes) -> Head:
    """The head in ``data``; ValueError saying what is wrong (never echoing the content)."""
    if len(data) > MAX_HEAD_BYTES:
        raise ValueError(f"is larger than {MAX_HEAD_BYTES} bytes: not a head file")
    try:
        head = json.loads(data.decode("utf-8"))
        sequence, last_hash = head["sequence"], head["hash"]
    except (ValueError, KeyError, TypeError):
        raise ValueError("is not a head file (JSON with sequence and hash)") from None
    if isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < 0:
        raise ValueError("has no valid sequence (a whole number, 0 or more)")
    if not isinstance(last_hash, str) or not _HASH_RE.match(last_hash):
        raise ValueError("has no valid hash (64 lower-case hex digits)")
    return Head(sequence, last_hash)


def read_head(path: Path) -> Head:
    """Read and parse a head file; OSError if it cannot be read, ValueError if it is not a head.

    Opened with ``O_NONBLOCK`` and checked on the open descriptor: a FIFO, socket or device in place of the
    head is refused at once (ValueError), never waited on.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("is not a regular file")
        data = os.read(fd, MAX_HEAD_BYTES + 1)
    finally:
        os.close(fd)
    return parse_head(data)


def format_head(head: Head) -> bytes:
    """The content of a head file for ``head`` (what ``parse_head`` reads back)."""
    return (json.dumps({"sequence": head.sequence, "hash": head.hash}) + "\n").encode("utf-8")


def write_head(path: Path, head: Head, temp_suffix: str) -> None:
    """Replace the head file at ``path`` atomically (write ``<path><temp_suffix>``, then rename); OSError."""
    temp = Path(f"{path}{temp_suffix}")
    try:
        temp.write_bytes(format_head(head))
        os.replace(temp, path)
    except OSError:
        temp.unlink(missing_ok=True)
        raise


class HeadReader:
    """The current head of one log, for each scrape: one ``stat``, and a read only when the file changed.

    A log that does not exist yet or is empty has the genesis head (sequence 0, hash 0). When the head file
    of a log with records is missing or unreadable, ``current`` is None (and says why once per change).
    """

    def __init__(self, log_path: Path, on_problem: Callable[[str | None], None] | None = None) -> None:
        self._log_path = log_path
        self._path = head_path(log_path)
        self._key: tuple[int, int, int, int] | None = None
        self._head: Head | None = None
        self._problem: str | None = None
        self._on_problem = on_problem

    def current(self) -> Head | None:
        """The head as the file holds it now."""
        try:
            info = os.stat(self._path)
        except FileNotFoundError:
            self._key = None
            return self._without_file()
        except OSError as exc:
            self._key = None
            return self._report(None, f"cannot be read ({exc.strerror or type(exc).__name__})")
        key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
        if key == self._key:
            return self._head
        if not stat.S_ISREG(info.st_mode):
            self._key = None
            return self._report(None, "is not a regular file")
        try:
            head: Head | None = read_head(self._path)
            problem = None
        except FileNotFoundError:  # replaced between the stat and the open: the next scrape reads it
            return self._head
        except OSError as exc:
            head, problem = None, f"cannot be read ({exc.strerror or type(exc).__name__})"
        except ValueError as exc:
            head, problem = None, str(exc)
        self._key, self._head = key, head
        return self._report(head, problem)

    def _without_file(self) -> Head | None:
        try:
            has_records = os.stat(self._log_path).st_size > 0
        except OSError:
            has_records = False
        if has_records:
            return self._report(None, "is missing")
        return self._report(Head(0, GENESIS_HASH), None)

    def _report(self, head: Head | None, problem: str | None) -> Head | None:
        if problem != self._problem and self._on_problem is not None:
            self._on_problem(None if problem is None else f"{self._path} {problem}")
        self._problem = problem
        return head
