"""Verifying a SIEM's copy of the audit trail: the records rebuilt from the originals its events carry.

An export (JSON lines, one event per line, in the order the SIEM handed them back) is read twice. The
first pass reads each event's original record, checks that the event's mapped fields still say what the
original says (an edit in the SIEM shows), drops duplicates of at-least-once shipping (same sequence, same
hash) and notes events out of sequence order. The second pass walks the records in sequence order with
the audit log's own chain check (``verify.ChainWalk``): edited records, gaps, broken links, signatures.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ccs_exporter.audit.export.formats import ExportFormat
from ccs_exporter.audit.records import canonical_json
from ccs_exporter.audit.signing import SignatureChecker
from ccs_exporter.audit.verify import MAX_FINDINGS, MAX_LINE_BYTES, ChainWalk, Finding

_MAX_DIFFERENCES_SHOWN = 3


@dataclass(frozen=True)
class ExportVerifyResult:
    """What ``verify_export`` found; ``ok`` when the export holds every record from the first it has on."""

    ok: bool
    events: int
    records: int
    duplicates: int
    first_sequence: int | None
    last_sequence: int
    signed: int
    findings: tuple[Finding, ...] = ()
    unlisted_findings: int = 0


@dataclass
class _Indexed:
    sequence: int
    offset: int
    line: int


@dataclass
class _FirstPass:
    index: list[_Indexed] = field(default_factory=list)
    seen: dict[int, tuple[str, int]] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    unlisted: int = 0
    events: int = 0
    duplicates: int = 0
    highest: int = 0

    def add(self, line: int | None, problem: str) -> None:
        if len(self.findings) < MAX_FINDINGS:
            self.findings.append(Finding(line, problem))
        else:
            self.unlisted += 1


def _lines_with_offsets(handle: IO[bytes]) -> Iterator[tuple[int, int, bytes | None]]:
    """(line number, offset, bytes without the newline, or None when longer than MAX_LINE_BYTES)."""
    offset = 0
    number = 0
    while True:
        chunk = handle.readline(MAX_LINE_BYTES + 1)
        if not chunk:
            return
        number += 1
        start = offset
        offset += len(chunk)
        if len(chunk) > MAX_LINE_BYTES and not chunk.endswith(b"\n"):
            while chunk and not chunk.endswith(b"\n"):
                chunk = handle.readline(1024 * 1024)
                offset += len(chunk)
            yield number, start, None
            continue
        body = chunk[:-1] if chunk.endswith(b"\n") else chunk
        if body.strip():
            yield number, start, body.rstrip(b"\r")


def original_record(fmt: ExportFormat, raw: bytes) -> tuple[str, dict[str, Any], list[str]] | str:
    """(original line, its record, the event's fields that no longer say what the original says) of one
    exported event, or what is wrong with the event."""
    try:
        event = json.loads(raw.decode("utf-8"))
    except ValueError:
        return "not a JSON event"
    if not isinstance(event, dict):
        return "not a JSON event"
    # A jsonl event is the record itself; a SIEM may have re-serialised it (the hash still covers it).
    original = fmt.original_of(event) if fmt.original_field else canonical_json(event)
    if original is None:
        return f"carries no original record ({fmt.original_field})"
    try:
        record = json.loads(original)
        sequence = record["event"]["sequence"]
        record["audit"]["hash"]
    except (ValueError, KeyError, TypeError):
        return "its original is not an audit record"
    if not isinstance(sequence, int) or isinstance(sequence, bool):
        return "its original has no sequence"
    differences = list(_differences(fmt.map(record, original), event, "")) if fmt.original_field else []
    return original, record, differences


def _differences(expected: Any, actual: Any, where: str) -> Iterator[str]:
    """The fields of ``expected`` that ``actual`` lacks or holds otherwise (fields it adds are fine)."""
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        for key, value in expected.items():
            yield from _differences(value, actual.get(key), f"{where}.{key}" if where else key)
    elif expected != actual:
        yield where or "the event"


def _first_pass(handle: IO[bytes], fmt: ExportFormat) -> _FirstPass:
    state = _FirstPass()
    for number, offset, raw in _lines_with_offsets(handle):
        state.events += 1
        if raw is None:
            state.add(number, f"line longer than {MAX_LINE_BYTES} bytes: not an event of ours")
            continue
        found = original_record(fmt, raw)
        if isinstance(found, str):
            state.add(number, found)
            continue
        original, record, differences = found
        sequence = record["event"]["sequence"]
        digest = hashlib.blake2b(original.encode("utf-8"), digest_size=16).hexdigest()
        if differences:
            shown = ", ".join(differences[:_MAX_DIFFERENCES_SHOWN])
            state.add(number, f"sequence {sequence}: the event was edited: {shown} differ from its original")
        if sequence in state.seen:
            first_digest, first_line = state.seen[sequence]
            if first_digest == digest:
                state.duplicates += 1
            else:
                state.add(number, f"sequence {sequence} again, with other content than on line {first_line}")
            continue
        state.seen[sequence] = (digest, number)
        if sequence < state.highest:
            state.add(
                number, f"sequence {sequence} comes after sequence {state.highest}: events were reordered"
            )
        state.highest = max(state.highest, sequence)
        state.index.append(_Indexed(sequence, offset, number))
    return state


def verify_export(
    path: Path, fmt: ExportFormat, *, signatures: SignatureChecker | None = None
) -> ExportVerifyResult:
    """Check an export: every record present from its first, in order, unedited, chained and signed."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        problem = f"cannot read: {exc.strerror or exc}"
        return ExportVerifyResult(False, 0, 0, 0, None, 0, 0, (Finding(None, problem),))
    with handle:
        state = _first_pass(handle, fmt)
        walk = ChainWalk(None, signatures)
        for item in sorted(state.index, key=lambda entry: entry.sequence):
            expected = walk.sequence + 1
            if item.sequence > expected:
                first_missing = (
                    "" if expected > 1 or walk.records else " (the export starts after sequence 1)"
                )
                gap = f"{expected} to {item.sequence - 1}" if item.sequence - 1 > expected else f"{expected}"
                walk.add(
                    item.line,
                    f"sequence{'s' if item.sequence - 1 > expected else ''} {gap} missing{first_missing}",
                )
                walk.resync = True
            handle.seek(item.offset)
            found = original_record(fmt, handle.readline(MAX_LINE_BYTES + 1).rstrip(b"\r\n"))
            original = found[0].encode("utf-8") if isinstance(found, tuple) else None
            walk.take(item.line, original)
    if signatures is not None and walk.records and not walk.signed:
        walk.add(None, "no record is signed, yet --public-key was given: the signatures were removed")
    findings = tuple(sorted([*state.findings, *walk.findings], key=lambda f: (f.line is None, f.line or 0)))
    unlisted = state.unlisted + walk.unlisted
    return ExportVerifyResult(
        ok=not findings and not unlisted,
        events=state.events,
        records=len(state.index),
        duplicates=state.duplicates,
        first_sequence=min(state.seen) if state.seen else None,
        last_sequence=walk.sequence,
        signed=walk.signed,
        findings=findings,
        unlisted_findings=unlisted,
    )


def export_report(
    name: str, result: ExportVerifyResult, *, checked_signatures: bool
) -> tuple[bool, list[str]]:
    """(intact, the lines to print): one verdict line, or a line per problem and a count."""
    duplicates = f", {result.duplicates} duplicate{'s' if result.duplicates != 1 else ''} ignored"
    if result.ok:
        span = f"sequences {result.first_sequence} to {result.last_sequence}" if result.records else "empty"
        text = f"{name}: intact ({result.events} events: {result.records} records, {span}{duplicates})"
        if result.signed:
            checked = "checked" if checked_signatures else "not checked: give --public-key"
            text += f"; {result.signed} signed ({checked})"
        return True, [text]
    lines = [
        f"{name}: {'line ' + str(f.line) + ': ' if f.line else ''}{f.problem}" for f in result.findings[:200]
    ]
    count = len(result.findings) + result.unlisted_findings
    lines.append(f"{name}: {count} problem{'s' if count != 1 else ''} in {result.events} events{duplicates}")
    return False, lines
