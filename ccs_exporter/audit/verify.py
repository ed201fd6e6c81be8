"""Verification of an audit log: recompute the hash chain and the sequence, report the first bad line."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ccs_exporter.audit.records import GENESIS_HASH, canonical_json, record_hash

HEAD_SUFFIX = ".head"


@dataclass(frozen=True)
class VerifyResult:
    """What ``verify`` found: ``ok``, the number of intact records, and the first bad line and why."""

    ok: bool
    records: int
    line: int | None = None
    problem: str | None = None
    last_sequence: int = 0
    last_hash: str = GENESIS_HASH
    torn_last_line: bool = False


class _Chain:
    """The state of a walk through the log: sequence, last hash, intents still waiting for a result."""

    def __init__(self) -> None:
        self.sequence = 0
        self.prev_hash = GENESIS_HASH
        self.hashes: list[str] = []
        self.open_intents: dict[str, tuple[int, str]] = {}

    def bad(self, line: int, problem: str, torn: bool = False) -> VerifyResult:
        return VerifyResult(False, self.sequence, line, problem, self.sequence, self.prev_hash, torn)

    def check(self, number: int, raw: bytes) -> str | None:
        """Take in one line; the problem with it, if any."""
        try:
            text = raw.decode("utf-8")
            record = json.loads(text)
        except ValueError:
            return "not a JSON record (the line was edited or damaged)"
        if not isinstance(record, dict) or not isinstance(record.get("audit"), dict):
            return "not an audit record"
        audit = record["audit"]
        raw_event = record.get("event")
        event: dict[str, Any] = raw_event if isinstance(raw_event, dict) else {}
        try:
            intact = audit.get("hash") == record_hash(record) and canonical_json(record) == text
        except ValueError:  # NaN or Infinity smuggled in: not something we ever write
            intact = False
        if not intact:
            return "record was edited: its hash does not match its content"
        if audit.get("prev_hash") != self.prev_hash:
            return (
                "hash chain broken: prev_hash does not match the previous record "
                "(a line was inserted, deleted or reordered here)"
            )
        if event.get("sequence") != self.sequence + 1:
            return f"sequence {event.get('sequence')} where {self.sequence + 1} was expected"
        self.sequence += 1
        self.prev_hash = str(audit["hash"])
        self.hashes.append(self.prev_hash)
        audit_id = str(audit.get("id"))
        if audit.get("phase") == "intent":
            self.open_intents[audit_id] = (number, str(event.get("action")))
        elif audit.get("phase") == "result":
            if audit_id not in self.open_intents:
                return f"result without an earlier intent (audit.id {audit_id})"
            del self.open_intents[audit_id]
        return None


def verify(path: str | os.PathLike[str]) -> VerifyResult:
    """Recompute the hash chain and sequence of an audit log and report the first bad line.

    Catches edited, inserted, deleted and reordered lines, an intent without its result, a torn last
    line (an interrupted write) and, when ``<log>.head`` exists, records removed from the end.
    """
    log_path = Path(path)
    try:
        data = log_path.read_bytes()
    except OSError as exc:
        return VerifyResult(ok=False, records=0, problem=f"cannot read: {exc.strerror or exc}")
    lines = data.split(b"\n")
    torn = lines.pop() if lines else b""  # the text after the last newline: empty unless torn
    chain = _Chain()
    for number, raw in enumerate(lines, start=1):
        problem = chain.check(number, raw)
        if problem is not None:
            return chain.bad(number, problem)
    if chain.open_intents:
        number, action = min(chain.open_intents.values())
        audit_id = next(key for key, value in chain.open_intents.items() if value[0] == number)
        problem = f"{action} intent without a result record (audit.id {audit_id}): its outcome is unknown"
        if torn:
            problem += "; the last line is also torn"
        return chain.bad(number, problem, bool(torn))
    if torn:
        return chain.bad(
            len(lines) + 1,
            f"torn last line ({len(torn)} bytes without a newline): a write was interrupted, e.g. by a crash",
            True,
        )
    head_problem = _check_head(Path(f"{log_path}{HEAD_SUFFIX}"), chain.hashes)
    if head_problem is not None:
        return chain.bad(*head_problem)
    return VerifyResult(True, chain.sequence, None, None, chain.sequence, chain.prev_hash)


def _check_head(head_path: Path, hashes: list[str]) -> tuple[int, str] | None:
    try:
        head = json.loads(head_path.read_text(encoding="utf-8"))
        head_sequence, head_hash = int(head["sequence"]), str(head["hash"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return max(1, len(hashes)), f"{head_path} is unreadable"
    if head_sequence > len(hashes):
        return (
            len(hashes) + 1,
            f"the log ends at sequence {len(hashes)} but {head_path.name} records sequence {head_sequence}: "
            "records were removed from the end (truncated)",
        )
    if head_sequence >= 1 and hashes[head_sequence - 1] != head_hash:
        return head_sequence, f"record does not match the hash in {head_path.name}: the log was rewritten"
    return None
