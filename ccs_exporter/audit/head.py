"""The head file beside an audit log (``<log>.head``): the sequence and hash of the last record written.

Writers replace it after every append; ``verify`` compares the log with it, and the exporter exposes it as
``ccs_audit_head_sequence`` and ``ccs_audit_head_hash48`` so that Prometheus keeps an outside record of it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

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
    """Read and parse a head file; OSError if it cannot be read, ValueError if it is not a head."""
    with open(path, "rb") as handle:
        data = handle.read(MAX_HEAD_BYTES + 1)
    return parse_head(data)
