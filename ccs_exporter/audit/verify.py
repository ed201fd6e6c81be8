"""Verification of an audit log: hash chain, sequence, head file and signatures; every problem, not the first.

The log is read as a stream, one line at a time, up to the size it had when the head file was read (both
under a shared ``flock``, so a writer appending meanwhile is not mistaken for tampering). Memory grows
only with the number of records (8 bytes each, kept for the witness check) and of open intents.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ccs_exporter.audit.head import HEAD_SUFFIX, Head, hash48, head_path, read_head
from ccs_exporter.audit.records import GENESIS_HASH, canonical_json, record_hash
from ccs_exporter.audit.signing import SignatureChecker

__all__ = ["HEAD_SUFFIX", "MAX_FINDINGS", "Finding", "VerifyResult", "verify"]

# Findings kept with their text; more are counted. A log damaged everywhere stays a bounded report.
MAX_FINDINGS = 1000
# No record we write comes near this (a record holds at most two job snapshots); a longer line is
# skipped without being held in memory.
MAX_LINE_BYTES = 64 * 1024 * 1024
_HASH_RE = re.compile(r"^[0-9a-f]{64}$")
NO_HASH = -1  # in ``hash48s``: the line holds no readable record hash


@dataclass(frozen=True)
class Finding:
    """One problem: the line it is on (None when it concerns the whole log) and what is wrong."""

    line: int | None
    problem: str


@dataclass(frozen=True)
class VerifyResult:
    """What ``verify`` found: ``ok`` when nothing is wrong; otherwise every finding, in line order.

    ``line`` and ``problem`` are those of the first finding. ``records`` counts the record lines read;
    ``open_intents`` the intents without a result; ``signed`` the records that carry a signature.
    ``hash48s`` holds the first 48 bits of each line's ``audit.hash`` (``NO_HASH`` for a damaged line), so
    line ``n`` of an intact log holds sequence ``n``: the witness check compares against it.
    """

    ok: bool
    records: int
    line: int | None = None
    problem: str | None = None
    last_sequence: int = 0
    last_hash: str = GENESIS_HASH
    torn_last_line: bool = False
    findings: tuple[Finding, ...] = ()
    unlisted_findings: int = 0
    open_intents: int = 0
    signed: int = 0
    head: Head | None = None
    hash48s: Sequence[int] = field(default=(), repr=False, compare=False)

    @property
    def problem_count(self) -> int:
        """How many problems were found, listed or not."""
        return len(self.findings) + self.unlisted_findings


class ChainWalk:
    """The state of one pass through the log."""

    def __init__(self, head: Head | None, signatures: SignatureChecker | None) -> None:
        self.records = 0
        self.sequence = 0
        self.prev_hash = GENESIS_HASH
        self.hash48s = array("q")
        self.open_intents: dict[str, tuple[int, str]] = {}
        self.findings: list[Finding] = []
        self.unlisted = 0
        self.signed = 0
        self.torn = False
        self.head = head
        self.hash_at_head: str | None = None
        self._signatures = signatures
        self.resync = False  # after an unreadable line the next record cannot link to it: no cascade

    def add(self, line: int | None, problem: str) -> None:
        if len(self.findings) < MAX_FINDINGS:
            self.findings.append(Finding(line, problem))
        else:
            self.unlisted += 1

    def take(self, number: int, raw: bytes | None) -> None:
        """Check one complete line."""
        record, problem = _parse(raw)
        if record is None:
            self.add(number, problem)
            self.hash48s.append(NO_HASH)
            self.resync = True
            return
        self.records += 1
        audit: dict[str, Any] = record["audit"]
        raw_event = record.get("event")
        event: dict[str, Any] = raw_event if isinstance(raw_event, dict) else {}
        claimed = audit.get("hash")
        claimed_hash = claimed if isinstance(claimed, str) and _HASH_RE.match(claimed) else None
        problems = self._chain_problems(record, audit, event, raw)
        sequence = event.get("sequence")
        self.sequence = sequence if isinstance(sequence, int) else self.sequence + 1
        self.prev_hash = str(claimed)
        self.hash48s.append(hash48(claimed_hash) if claimed_hash else NO_HASH)
        if self.head is not None and self.sequence == self.head.sequence:
            self.hash_at_head = str(claimed)
        problems.extend(self._mutation_problems(number, audit, event))
        signature_problem = self._signature_problem(audit, str(claimed))
        if signature_problem:
            problems.append(signature_problem)
        if problems:
            self.add(number, "; ".join(problems))

    def _chain_problems(
        self, record: dict[str, Any], audit: dict[str, Any], event: dict[str, Any], raw: bytes | None
    ) -> list[str]:
        problems: list[str] = []
        try:
            intact = audit.get("hash") == record_hash(record) and canonical_json(record).encode() == raw
        except (ValueError, UnicodeEncodeError):  # NaN or Infinity smuggled in: not something we write
            intact = False
        if not intact:
            problems.append("record was edited: its hash does not match its content")
        resync, self.resync = self.resync, False
        if not resync and audit.get("prev_hash") != self.prev_hash:
            problems.append(
                "hash chain broken: prev_hash does not match the previous record "
                "(a line was inserted, deleted or reordered here)"
            )
        if not resync and event.get("sequence") != self.sequence + 1:
            problems.append(f"sequence {event.get('sequence')} where {self.sequence + 1} was expected")
        return problems

    def _mutation_problems(self, number: int, audit: dict[str, Any], event: dict[str, Any]) -> list[str]:
        # An intent is closed by a later result with the same audit.id (a reconciled one included).
        audit_id = str(audit.get("id"))
        if audit.get("phase") == "intent":
            self.open_intents[audit_id] = (number, str(event.get("action")))
        elif audit.get("phase") == "result":
            if audit_id not in self.open_intents:
                return [f"result without an earlier intent (audit.id {audit_id})"]
            del self.open_intents[audit_id]
        return []

    def _signature_problem(self, audit: dict[str, Any], claimed_hash: str) -> str | None:
        signature, key = audit.get("signature"), audit.get("key_id")
        if signature is None and key is None:
            if self.signed and self._signatures is not None:
                return (
                    "unsigned record after signed ones: its signature was removed, or it was written "
                    "without the signing key"
                )
            return None
        self.signed += 1
        if self._signatures is None:
            return None
        return self._signatures.problem(key, signature, claimed_hash)

    def finish(self, log_path: Path, head_problem: str | None, records_possible: bool) -> None:
        """The findings that need the whole log: open intents, the head, signing as a whole."""
        for audit_id, (number, action) in self.open_intents.items():
            self.add(
                number,
                f"{action} intent without a result record (audit.id {audit_id}): its outcome is unknown "
                f"(the writer died after writing it; `ccs-exporter audit reconcile {log_path}` records "
                "what CCS shows)",
            )
        name = f"{log_path.name}{HEAD_SUFFIX}"
        if head_problem is not None:
            self.add(None, f"{name} {head_problem}: cannot tell whether records were cut off the end")
        elif self.head is None and records_possible:
            self.add(
                None,
                f"{name} is missing: cannot tell whether records were cut off the end (it was deleted, "
                "or the first writer died before writing it)",
            )
        elif self.head is not None:
            self._check_head(self.head, name)
        if self._signatures is not None and self.records and not self.signed:
            self.add(
                None,
                "no record is signed, yet --public-key was given: the records are unsigned (written "
                "before a signing key was set, or their signatures were stripped; the log cannot tell which)",
            )

    def _check_head(self, head: Head, name: str) -> None:
        last = self.sequence
        if head.sequence > last:
            self.add(
                last + 1,
                f"the log ends at sequence {last} but {name} records sequence {head.sequence}: "
                "records were removed from the end (truncated)",
            )
            return
        if head.sequence >= 1 and self.hash_at_head != head.hash:
            self.add(head.sequence, f"record does not match the hash in {name}: the log was rewritten")
        if head.sequence < last:
            self.add(
                head.sequence + 1,
                f"records {head.sequence + 1} to {last} come after sequence {head.sequence} of {name}: "
                "they were appended without updating the head (added by someone else than our writer, "
                "or a writer died between the record and the head; the next append rewrites the head)",
            )

    def result(self) -> VerifyResult:
        findings = _merged(self.findings)
        first = findings[0] if findings else None
        return VerifyResult(
            ok=not findings and not self.unlisted,
            records=self.records,
            line=first.line if first else None,
            problem=first.problem if first else None,
            last_sequence=self.sequence,
            last_hash=self.prev_hash,
            torn_last_line=self.torn,
            findings=findings,
            unlisted_findings=self.unlisted,
            open_intents=len(self.open_intents),
            signed=self.signed,
            head=self.head,
            hash48s=self.hash48s,
        )


def _parse(raw: bytes | None) -> tuple[dict[str, Any] | None, str]:
    if raw is None:
        return None, f"line longer than {MAX_LINE_BYTES} bytes: not a record our writer makes"
    try:
        record = json.loads(raw.decode("utf-8"))
    except ValueError:
        return None, "not a JSON record (the line was edited or damaged)"
    if not isinstance(record, dict) or not isinstance(record.get("audit"), dict):
        return None, "not an audit record"
    return record, ""


def _merged(findings: list[Finding]) -> tuple[Finding, ...]:
    """Findings in line order (those about the whole log last), one per line."""
    by_line: dict[int | None, list[str]] = {}
    for finding in findings:
        by_line.setdefault(finding.line, []).append(finding.problem)
    order = sorted(by_line, key=lambda line: (line is None, line or 0))
    return tuple(Finding(line, "; ".join(by_line[line])) for line in order)


def verify(path: str | os.PathLike[str], *, signatures: SignatureChecker | None = None) -> VerifyResult:
    """Check an audit log and report every problem found.

    Catches edited, inserted, deleted and reordered lines, sequence gaps, results without an intent,
    intents without a result (each one), a torn last line, records cut off the end or a rewritten log
    (against ``<log>.head``), records appended after the head's sequence, a missing or unreadable head,
    and, with ``signatures``, records whose signature is bad, made with an unknown key, or missing after
    signed ones.
    """
    log_path = Path(path)
    try:
        handle = open(log_path, "rb")  # noqa: SIM115 - closed below, after the walk
    except OSError as exc:
        problem = f"cannot read: {exc.strerror or exc}"
        return VerifyResult(ok=False, records=0, problem=problem, findings=(Finding(None, problem),))
    with handle:
        size, head, head_problem = _snapshot(handle, log_path)
        walk = ChainWalk(head, signatures)
        for number, (raw, ended) in enumerate(_lines(handle, size), start=1):
            if not ended:
                walk.torn = True
                walk.add(
                    number,
                    "torn last line (a record without its newline): a write was interrupted, e.g. by a crash",
                )
                break
            walk.take(number, raw)
    walk.finish(log_path, head_problem, size > 0)
    return walk.result()


def _snapshot(handle: IO[bytes], log_path: Path) -> tuple[int, Head | None, str | None]:
    """The log's size and its head, read together under a shared lock (writers hold it exclusively)."""
    locked = _lock_shared(handle.fileno())
    try:
        size = os.fstat(handle.fileno()).st_size
        try:
            return size, read_head(head_path(log_path)), None
        except FileNotFoundError:
            return size, None, None
        except OSError as exc:
            return size, None, f"cannot be read ({exc.strerror or type(exc).__name__})"
        except ValueError as exc:
            return size, None, str(exc)
    finally:
        if locked:
            with contextlib.suppress(OSError):
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _lock_shared(fd: int) -> bool:
    """Take a shared flock, waiting while a writer appends (a writer holds it for one append only).

    Polling with LOCK_NB could starve behind a busy writer; a blocking wait gets the lock between two
    appends. Where locks do not work (some network file systems) verify goes on without one.
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        return True
    except OSError:
        return False


def _lines(handle: IO[bytes], size: int) -> Iterator[tuple[bytes | None, bool]]:
    """Each line in the first ``size`` bytes: (its bytes, or None if too long; whether a newline ends it)."""
    remaining = size
    while remaining > 0:
        chunk = handle.readline(min(remaining, MAX_LINE_BYTES + 1))
        if not chunk:
            return  # the file shrank underneath us
        remaining -= len(chunk)
        if chunk.endswith(b"\n"):
            yield chunk[:-1], True
        elif len(chunk) <= MAX_LINE_BYTES:
            yield chunk, False
            return
        else:
            ended = False
            while remaining > 0 and not ended:
                rest = handle.readline(min(remaining, 1024 * 1024))
                if not rest:
                    break
                remaining -= len(rest)
                ended = rest.endswith(b"\n")
            yield None, ended
