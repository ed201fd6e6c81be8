"""Audited job mutations: validate the input, write the intent, call CCS, write the result.

Nothing is sent to CCS before the input has passed the request models and the intent record has been
written and fsync'd; a mutation that cannot be recorded does not happen. A timeout or a dropped
connection after the request went out is recorded as outcome ``unknown``, never ``failure``. Ctrl-C
after the intent still writes the result: ``failure`` if nothing was sent, ``unknown`` if the request
was on its way, ``success`` if CCS had answered. Each verb builds its intent record once; the steps
every verb shares are ``Mutation``'s (``mutation.py``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import structlog

from ccs_exporter.audit import AuditLog, AuditRecord, intent_record
from ccs_exporter.client import (
    ABORT_RUN,
    CREATE_JOB,
    DELETE_JOB,
    RUN_JOB,
    UPDATE_JOB,
    CcsClient,
)
from ccs_exporter.errors import CcsError, MutationInterrupted
from ccs_exporter.models import CreateJobRequest, JobDetailsUpdate, guid_or_none, request_body
from ccs_exporter.operations.interrupts import interrupts_deferred
from ccs_exporter.operations.mutation import Mutation
from ccs_exporter.operations.specs import validated
from ccs_exporter.settings.values import checked_job_id, checked_reason, checked_run_id

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class JobOperation:
    """What a run or an abort did: CCS's answer, the job and run it concerned, its audit.id."""

    audit_id: str
    status_code: int
    job_id: str | None
    job_name: str | None
    run_id: str | None
    message: str | None


class JobService:
    """Creates, updates, deletes, runs and aborts CCS jobs, each one audited before and after."""

    def __init__(self, client: CcsClient, audit_log: AuditLog) -> None:
        self._client = client
        self._audit = audit_log
        audit_log.also_redact(client.secrets)  # CCS may echo our own tokens into job text

    def secrets(self) -> list[str]:
        """What must not be shown of CCS's answers: the password's forms and the client's tokens."""
        return self._client.secrets()

    def create(self, spec: Mapping[str, Any], reason: str | None = None) -> str:
        """Create a job from a Create Job body (``{"JobType", "JobDetails"}``); return its new JobID."""
        request = validated(CreateJobRequest, spec, "")
        intent = intent_record(
            "job.create",
            method=CREATE_JOB.method,
            url_path=CREATE_JOB.url_path(),
            job_name=request.JobDetails.JobName,
            job_type=request.JobType,
            reason=checked_reason(reason),
            requested=request_body(request),
        )
        with self._audited(intent) as mutation:
            mutation.log_in()
            result = mutation.send(lambda: self._client.create_job(request))
            job_id = result.job_id
            assert job_id is not None  # the client refuses a create answered without one
            after, after_error = mutation.read_after(job_id)
            mutation.succeeded(result, job_id=job_id, after=after, after_error=after_error)
        log.info("job_created", job_id=job_id, audit_id=intent.audit_id)
        return job_id

    def update(self, job_id: str, details: Mapping[str, Any], reason: str | None = None) -> None:
        """Change the given ``JobDetails`` fields of a job."""
        job_id = checked_job_id(job_id)
        model = validated(JobDetailsUpdate, details, "JobDetails")
        intent = intent_record(
            "job.update",
            method=UPDATE_JOB.method,
            url_path=UPDATE_JOB.url_path(),
            job_id=job_id,
            job_name=model.JobName,
            reason=checked_reason(reason),
            requested=request_body(model),
        )
        with self._audited(intent) as mutation:
            mutation.read_before(job_id)
            result = mutation.send(lambda: self._client.update_job(job_id, model))
            after, after_error = mutation.read_after(job_id)
            mutation.succeeded(result, after=after, after_error=after_error)
        log.info("job_updated", job_id=job_id, audit_id=intent.audit_id)

    def delete(self, job_id: str, keep_job: bool = False, reason: str | None = None) -> None:
        """Delete a job, or with ``keep_job`` only its run history (``DeleteJob=False``)."""
        job_id = checked_job_id(job_id)
        intent = intent_record(
            "job.delete",
            method=DELETE_JOB.method,
            url_path=DELETE_JOB.url_path(),
            job_id=job_id,
            reason=checked_reason(reason),
            requested={"DeleteJob": not keep_job},
            delete_job=not keep_job,
        )
        with self._audited(intent) as mutation:
            mutation.read_before(job_id)
            result = mutation.send(lambda: self._client.delete_job(job_id, delete_job=not keep_job))
            mutation.succeeded(result)
        log.info("job_deleted", job_id=job_id, keep_job=keep_job, audit_id=intent.audit_id)

    def run(self, job_id: str, reason: str | None = None) -> JobOperation:
        """Run a job now (``execute``); the job is read first and named in the records."""
        job_id = checked_job_id(job_id)
        intent = intent_record(
            "job.run",
            method=RUN_JOB.method,
            url_path=RUN_JOB.url_path(job_id=job_id),
            job_id=job_id,
            reason=checked_reason(reason),
            requested={"Operation": "execute"},
        )
        with self._audited(intent) as mutation:
            before = mutation.read_before(job_id)
            result = mutation.send(lambda: self._client.run_job(job_id))
            run_id = result.run_id or self._started_run(job_id)
            mutation.succeeded(result, run_id=run_id)
        log.info("job_run_started", job_id=job_id, run_id=run_id, audit_id=intent.audit_id)
        name = before.JobProperties.Name or None
        return JobOperation(intent.audit_id, result.status_code, job_id, name, run_id, result.message)

    def abort(self, run_id: str, reason: str | None = None) -> JobOperation:
        """Abort a run in progress by its JobRunID; its job is named when it can be found cheaply.

        Cheaply means without searching CCS: from one of our own ``job.run`` results in the audit log
        (known before the request), or from the JobID in CCS's answer. A job found so is read after the
        abort, to name it and record its state.
        """
        run_id = checked_run_id(run_id)
        reason = checked_reason(reason)
        known = self._audit.job_of_run(run_id)
        intent = intent_record(
            "job.abort",
            method=ABORT_RUN.method,
            url_path=ABORT_RUN.url_path(run_id=run_id),
            job_id=known.id if known is not None else None,
            job_name=known.name if known is not None else None,
            run_id=run_id,
            reason=reason,
            requested={"Operation": "abort"},
        )
        with self._audited(intent) as mutation:
            mutation.log_in()
            result = mutation.send(lambda: self._client.abort_run(run_id))
            job_id = mutation.intent.job_id or result.job_id
            after, after_error = mutation.read_after(job_id) if job_id else (None, None)
            mutation.succeeded(result, job_id=job_id, after=after, after_error=after_error)
        log.info("job_run_aborted", run_id=run_id, job_id=job_id, audit_id=intent.audit_id)
        name = (after.JobProperties.Name or None) if after is not None else mutation.intent.job_name
        return JobOperation(intent.audit_id, result.status_code, job_id, name, run_id, result.message)

    @contextmanager
    def _audited(self, intent: AuditRecord) -> Iterator[Mutation]:
        """Write ``intent`` (Ctrl-C held back meanwhile), then run the mutation's steps.

        A Ctrl-C after the intent is turned into a written result and a ``MutationInterrupted``.
        """
        mutation: Mutation | None = None
        try:
            with interrupts_deferred():
                mutation = Mutation(self._client, self._audit, self._audit.intent(intent))
            yield mutation
        except MutationInterrupted:
            raise
        except KeyboardInterrupt:
            if mutation is None:
                raise  # nothing recorded, nothing sent
            mutation.interrupted()

    def _started_run(self, job_id: str) -> str | None:
        """The run an execute answered without a JobRunID queued: the job's latest run, if in progress.

        Execute is refused while a run is in progress, so a run in progress right after it is ours.
        """
        try:
            runs = self._client.get_job_runs(job_id, count=1)
        except CcsError as exc:
            log.warning("job_run_id_unavailable", job_id=job_id, error=str(exc))
            return None
        latest = runs.newest_first()[:1]
        if not latest or latest[0].status is None or not latest[0].status.is_running:
            return None
        return guid_or_none(latest[0].JobRunID)
