"""Reconciliation: close intents a crash left without a result by asking CCS what happened.

``reconcile`` reads the log (refusing one whose chain is broken), finds every intent without a
result, skips those whose process is still running and, when records are signed, those not signed by
the configured key (a forged intent must not get a signed result), looks each one up in CCS (``evidence``) and
appends a result marked ``audit.reconciled`` with the reason and the evidence. The append checks,
under the writer's lock, that no result for the intent has been written meanwhile, so a concurrent
writer (the mutation itself finishing, a second reconcile) never gets a duplicate. A second run finds
nothing to do.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ccs_exporter.audit.evidence import CcsReader, Conclusion, PendingMutation, look_up
from ccs_exporter.audit.log import AuditLog
from ccs_exporter.audit.mutations import job_of_run
from ccs_exporter.audit.records import (
    GENESIS_HASH,
    AuditRecord,
    JobRef,
    Reconciliation,
    canonical_json,
    record_hash,
)
from ccs_exporter.errors import AuditError, CcsError
from ccs_exporter.models import parse_ccs_datetime

# A record line longer than this is refused rather than read whole (bounded memory); none is this long.
_MAX_LINE = 64 * 1024 * 1024


@dataclass(frozen=True)
class ReconcileStep:
    """What reconcile did (or, in a dry run, would do) for one open intent."""

    pending: PendingMutation
    finding: Conclusion | None  # None when it was skipped or CCS could not be asked
    written: bool
    problem: str | None = None  # why it stays open


class _AlreadyClosed(Exception):
    """A result for the intent appeared while CCS was being asked."""


def open_intents(path: Path) -> tuple[list[PendingMutation], int]:
    """The intents without a result in the log, and where its complete records end.

    Raises AuditError when a record is damaged or the chain is broken: a log that does not verify is
    not one to append conclusions to (``audit verify`` says what is wrong).
    """
    pending: dict[str, PendingMutation] = {}
    end = 0
    prev_hash = GENESIS_HASH
    for number, line in _lines(path):
        problem = _integrity_problem(line, prev_hash)
        if problem is not None:
            raise AuditError(f"{path}: line {number}: {problem}; run `ccs-exporter audit verify {path}`")
        record = json.loads(line)
        prev_hash = record["audit"]["hash"]
        end += len(line)
        audit, event = record["audit"], record.get("event") or {}
        audit_id = str(audit.get("id"))
        if audit.get("phase") == "intent":
            pending[audit_id] = _pending(number, audit_id, str(event.get("action")), record)
        elif audit.get("phase") == "result":
            pending.pop(audit_id, None)
    return list(pending.values()), end


def reconcile(
    audit_log: AuditLog,
    ccs: CcsReader,
    *,
    checked_by: str,
    dry_run: bool = False,
    min_age: timedelta = timedelta(minutes=15),
    skew: timedelta = timedelta(minutes=5),
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    host_name: str | None = None,
) -> Iterator[ReconcileStep]:
    """Reconcile each open intent of ``audit_log`` in order, yielding what was done for it.

    An intent is left alone while its process still runs on this host, and an intent written on
    another host until it is ``min_age`` old. CCS errors leave that intent open and go on with the
    next; an ``AuditError`` (the result cannot be written) stops everything.
    """
    pending_list, end = open_intents(audit_log.path)
    this_host = host_name if host_name is not None else socket.gethostname()
    for pending in pending_list:
        forged = audit_log.signature_problem(pending.record)
        if forged is not None:
            yield ReconcileStep(
                pending,
                None,
                False,
                f"the intent is {forged}: not closed, since a signed result would vouch for it (check "
                "the log with `ccs-exporter audit verify --public-key KEY.pub`)",
            )
            continue
        busy = _still_running(pending, this_host, now(), min_age)
        if busy is not None:
            yield ReconcileStep(pending, None, False, busy)
            continue
        try:
            finding = look_up(pending, ccs, skew, lambda run_id: job_of_run(audit_log.path, run_id))
        except CcsError as exc:
            yield ReconcileStep(pending, None, False, f"CCS could not be asked: {exc}")
            continue
        if dry_run:
            yield ReconcileStep(pending, finding, False)
            continue
        record = reconciled_result(pending, finding, checked_by)
        try:
            audit_log.append(record, precondition=_no_result_since(end, pending.audit_id))
        except _AlreadyClosed:
            yield ReconcileStep(pending, finding, False, "a result was written meanwhile; nothing added")
            continue
        yield ReconcileStep(pending, finding, True)


def reconciled_result(pending: PendingMutation, finding: Conclusion, checked_by: str) -> AuditRecord:
    """The result record of ``pending`` as CCS showed it: ``audit.reconciled``, the reason, the evidence."""
    record = pending.record
    user = record.get("user") if isinstance(record.get("user"), dict) else {}
    http = record.get("http") if isinstance(record.get("http"), dict) else {}
    url = record.get("url") if isinstance(record.get("url"), dict) else {}
    reason = record.get("reason")
    return AuditRecord(
        action=pending.action,
        phase="result",
        audit_id=pending.audit_id,
        outcome=finding.outcome,
        user_name=_str((user or {}).get("name")),
        method=_str(((http or {}).get("request") or {}).get("method")),
        url_path=_str((url or {}).get("path")),
        job=JobRef(finding.job_id or pending.job_id, finding.job_name or pending.job_name),
        run_id=finding.run_id or pending.run_id,
        delete_job=pending.delete_job if pending.action == "job.delete" else None,
        reason=reason if isinstance(reason, str) else None,
        after=finding.job,
        reconciled=Reconciliation(
            f"reconciled from CCS: {finding.reason}",
            {"intent_line": pending.line, **finding.evidence},
            checked_by,
        ),
    )


# --- reading the log -------------------------------------------------------------------------------


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """The complete lines of a regular file, numbered from 1; a torn last line is left out."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below; fstat needs the handle
    except OSError as exc:
        raise AuditError(f"cannot read {path}: {exc.strerror or exc}") from None
    with handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise AuditError(f"{path} is not a regular file")
        number = 0
        while line := handle.readline(_MAX_LINE + 1):
            number += 1
            if not line.endswith(b"\n"):
                if len(line) > _MAX_LINE:
                    raise AuditError(f"{path}: line {number} is longer than {_MAX_LINE} bytes")
                return  # torn by a crash: the writer records and removes it before it appends
            yield number, line


def _integrity_problem(line: bytes, prev_hash: str) -> str | None:
    try:
        text = line[:-1].decode("utf-8")
        record = json.loads(text)
        audit = record["audit"]
        intact = audit["hash"] == record_hash(record) and canonical_json(record) == text
    except (ValueError, KeyError, TypeError):
        return "not an intact audit record"
    if not intact:
        return "record was edited: its hash does not match its content"
    if audit.get("prev_hash") != prev_hash:
        return "hash chain broken"
    return None


def _pending(number: int, audit_id: str, action: str, record: dict[str, Any]) -> PendingMutation:
    ccs = record.get("ccs") if isinstance(record.get("ccs"), dict) else {}
    job = (ccs or {}).get("job") or {}
    run = (ccs or {}).get("job_run") or {}
    change = record.get("change") if isinstance(record.get("change"), dict) else {}
    requested = (change or {}).get("requested")
    try:
        started = parse_ccs_datetime(record.get("@timestamp"))
    except ValueError:
        started = None
    return PendingMutation(
        line=number,
        audit_id=audit_id,
        action=action,
        started=started,
        record=record,
        job_id=_str(job.get("id")),
        job_name=_str(job.get("name")),
        run_id=_str(run.get("id")),
        delete_job=(ccs or {}).get("delete_job") is not False,
        requested=requested if isinstance(requested, dict) else {},
    )


def _no_result_since(offset: int, audit_id: str) -> Callable[[int, int], None]:
    """A writer precondition: no result for ``audit_id`` after ``offset`` (checked under the lock)."""
    marker = json.dumps(audit_id).encode("utf-8")

    def check(fd: int, size: int) -> None:
        position, rest = offset, b""
        while position < size:
            chunk = os.pread(fd, min(size - position, 1 << 20), position)
            if not chunk:
                break
            position += len(chunk)
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()  # an unfinished line: completed by the next chunk, or torn
            for line in lines:
                if marker in line and _is_result_of(line, audit_id):
                    raise _AlreadyClosed(audit_id)

    return check


def _is_result_of(line: bytes, audit_id: str) -> bool:
    try:
        audit = json.loads(line).get("audit") or {}
    except (ValueError, AttributeError):
        return False
    return isinstance(audit, dict) and audit.get("id") == audit_id and audit.get("phase") == "result"


# --- is the mutation still going on? ---------------------------------------------------------------


def _still_running(pending: PendingMutation, this_host: str, now: datetime, min_age: timedelta) -> str | None:
    """Why the intent must be left alone for now, or None when its process is gone or it is old enough."""
    record = pending.record
    host = (record.get("host") or {}).get("name") if isinstance(record.get("host"), dict) else None
    process = record.get("process") if isinstance(record.get("process"), dict) else {}
    pid = (process or {}).get("pid")
    if host == this_host and isinstance(pid, int) and not isinstance(pid, bool):
        if _process_alive_since(pid, pending.started):
            return f"still in progress (process {pid} on this host is running)"
        return None
    if pending.started is not None and now - pending.started < min_age:
        writer = host or "another host"
        return f"written by {writer} less than {min_age.total_seconds():g} s ago: it may still be running"
    return None


def _process_alive_since(pid: int, moment: datetime | None) -> bool:
    """True when process ``pid`` runs and started no later than ``moment`` (so it is not a reused pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, as another user
    started = _process_start(pid)
    if started is None or moment is None:
        return True
    return started <= moment.timestamp() + 1.0


def _process_start(pid: int) -> float | None:
    """The process's start as Unix time, from /proc (Linux); None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        ticks = os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None
    started_after_boot = int(fields[19]) / ticks  # field 22 of stat; fields[0] here is field 3
    return time.time() - uptime + started_after_boot


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
