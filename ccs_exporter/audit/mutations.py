"""Records of our own mutations: the intent written before a request, the result written after it."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ccs_exporter.audit.records import MUTATION_ACTIONS, OUTCOMES, AuditRecord, JobRef
from ccs_exporter.models import Job

# Longer lines are not read whole when the log is searched for a run (bounded memory); none is this long.
_MAX_SCANNED_LINE = 16 * 1024 * 1024


def intent_record(
    action: str,
    *,
    method: str,
    url_path: str,
    job_id: str | None = None,
    job_name: str | None = None,
    job_type: str | None = None,
    delete_job: bool | None = None,
    reason: str | None = None,
    requested: Mapping[str, Any] | None = None,
    run_id: str | None = None,
) -> AuditRecord:
    """The intent of a mutation about to be sent (ValueError for an action that is no mutation).

    The operation builds it once; the log stamps the account (``user.name``) and appends it.
    """
    if action not in MUTATION_ACTIONS:
        raise ValueError(f"unknown mutation action {action!r}")
    return AuditRecord(
        action=action,
        phase="intent",
        method=method,
        url_path=url_path,
        job=JobRef(job_id, job_name, type=job_type),
        run_id=run_id,
        delete_job=delete_job,
        reason=reason,
        requested=requested,
    )


@dataclass(frozen=True)
class MutationIntent:
    """An intent record that has been written and fsync'd; its result must follow."""

    record: AuditRecord
    written: dict[str, Any]

    @property
    def audit_id(self) -> str:
        return self.record.audit_id

    @property
    def action(self) -> str:
        return self.record.action

    @property
    def job_id(self) -> str | None:
        return self.record.job.id if self.record.job is not None else None

    @property
    def job_name(self) -> str | None:
        return self.record.job.name if self.record.job is not None else None

    @property
    def run_id(self) -> str | None:
        return self.record.run_id

    def result(
        self,
        outcome: str,
        *,
        status_code: int | None = None,
        job_id: str | None = None,
        job_name: str | None = None,
        before: Job | None = None,
        after: Job | None = None,
        after_error: str | None = None,
        error_message: str | None = None,
        message: str | None = None,
        run_id: str | None = None,
    ) -> AuditRecord:
        """The result record of this intent: its outcome, what CCS answered, the job before and after."""
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}")
        intent = self.record
        return AuditRecord(
            action=intent.action,
            phase="result",
            audit_id=intent.audit_id,
            outcome=outcome,
            user_name=intent.user_name,
            method=intent.method,
            url_path=intent.url_path,
            job=JobRef(job_id or self.job_id, job_name or self.job_name),
            run_id=run_id or intent.run_id,
            reason=intent.reason,
            before=before,
            after=after,
            after_error=after_error,
            status_code=status_code,
            error_message=error_message,
            message=message,
        )


def job_of_run(path: Path, run_id: str) -> JobRef | None:
    """The job of a run that one of our own ``job.run`` results names, from the log; None if none does.

    A local read, so ``jobs abort`` can name the job of a run we started without asking CCS (which has
    no run-to-job lookup). Only a regular file is read (a device such as /dev/full never ends), a line
    at a time up to a bound, and a line is parsed only when it holds the run id.
    """
    needle = run_id.lower().encode("ascii", "replace")
    found: JobRef | None = None
    try:
        with open(path, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return None
            partial = False
            while line := handle.readline(_MAX_SCANNED_LINE):
                whole = not partial and line.endswith(b"\n")
                partial = not line.endswith(b"\n")
                if whole and needle in line.lower():
                    found = _run_job_ref(line, run_id.lower()) or found
    except OSError:
        return None
    return found


def _run_job_ref(line: bytes, run_id: str) -> JobRef | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    event, audit, ccs = record.get("event"), record.get("audit"), record.get("ccs")
    if not (isinstance(event, dict) and isinstance(audit, dict) and isinstance(ccs, dict)):
        return None
    if event.get("action") != "job.run" or audit.get("phase") != "result":
        return None
    job_run, job = ccs.get("job_run"), ccs.get("job")
    if not (isinstance(job_run, dict) and isinstance(job, dict)):
        return None
    if str(job_run.get("id", "")).lower() != run_id or not isinstance(job.get("id"), str):
        return None
    name = job.get("name")
    return JobRef(job["id"], name if isinstance(name, str) else None)
