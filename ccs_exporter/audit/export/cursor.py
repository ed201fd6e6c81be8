"""The shipping cursor: which record a destination has acknowledged last, kept durably in a small file.

The file holds the record's sequence, ``audit.hash`` and byte offset in the log, and the destination it
was shipped to. It is replaced atomically (a temporary file written, fsync'd and renamed, then the
directory fsync'd), so a crash leaves the old cursor or the new one, never a torn one. Resuming checks
the record at the offset still has that sequence and hash: a log rewritten since is caught, not resynced.
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from ccs_exporter.audit.records import GENESIS_HASH
from ccs_exporter.settings.inputs import read_regular_file

CURSOR_VERSION = 1
MAX_CURSOR_BYTES = 4096
_HASH_RE = re.compile(r"^[0-9a-f]{64}$")


class CursorError(ValueError):
    """A cursor file that cannot be read or used; the message names the file and the problem."""


@dataclass(frozen=True)
class Cursor:
    """The last acknowledged record: its sequence and hash, and where its line starts in the log."""

    sequence: int
    hash: str
    offset: int
    destination: str

    @classmethod
    def start(cls, destination: str) -> Cursor:
        """The cursor before the first record (nothing shipped yet)."""
        return cls(0, GENESIS_HASH, 0, destination)


def read_cursor(path: Path) -> Cursor | None:
    """The cursor in ``path``; None when the file does not exist; CursorError when it is not a cursor."""
    try:
        data = read_regular_file(path, MAX_CURSOR_BYTES)  # read at each scrape: a FIFO must not block
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CursorError(f"{path} cannot be read ({exc.strerror or type(exc).__name__})") from None
    return parse_cursor(data, path)


def parse_cursor(data: bytes, path: Path) -> Cursor:
    """The cursor ``data`` holds; CursorError saying what is wrong (never echoing the content)."""
    if len(data) > MAX_CURSOR_BYTES:
        raise CursorError(f"{path} is larger than {MAX_CURSOR_BYTES} bytes: not a cursor file")
    try:
        raw = json.loads(data.decode("utf-8"))
        sequence, last_hash, offset = raw["sequence"], raw["hash"], raw["offset"]
        destination = raw.get("destination", "")
    except (ValueError, KeyError, TypeError, AttributeError):
        raise CursorError(f"{path} is not a cursor file (JSON with sequence, hash and offset)") from None
    for name, value in (("sequence", sequence), ("offset", offset)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise CursorError(f"{path} has no valid {name} (a whole number, 0 or more)")
    if not isinstance(last_hash, str) or not _HASH_RE.match(last_hash):
        raise CursorError(f"{path} has no valid hash (64 lower-case hex digits)")
    if not isinstance(destination, str):
        raise CursorError(f"{path} has no valid destination")
    return Cursor(sequence, last_hash, offset, destination)


def write_cursor(path: Path, cursor: Cursor) -> None:
    """Replace the cursor file atomically and durably; OSError when it cannot be written."""
    body = {
        "version": CURSOR_VERSION,
        "sequence": cursor.sequence,
        "hash": cursor.hash,
        "offset": cursor.offset,
        "destination": cursor.destination,
    }
    temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
        try:
            os.write(fd, (json.dumps(body, sort_keys=True) + "\n").encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except OSError:
        temp.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
