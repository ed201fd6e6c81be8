"""One audited mutation in progress: its written intent, how far it got, and the record that closes it.

Every verb goes through the same steps: the intent is written (``JobService._audited``), then the job
may be read before, the request is sent, and exactly one result record closes the intent: ``success``,
``failure`` (refused, or nothing sent), or ``unknown`` (sent, answer lost). Ctrl-C after the intent
still writes the result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn

import structlog

from ccs_exporter.audit import AuditLog, AuditRecord, MutationIntent
from ccs_exporter.client import CcsClient, MutationResult
from ccs_exporter.errors import AuditError, BadResponseError, CcsError, MutationInterrupted, UnavailableError
from ccs_exporter.models import Job
from ccs_exporter.operations.interrupts import interrupts_deferred

log = structlog.get_logger(__name__)

VERBS = {
    "job.create": "create",
    "job.update": "update",
    "job.delete": "delete",
    "job.run": "run",
    "job.abort": "abort",
}


def _name(job: Job | None) -> str | None:
    return (job.JobProperties.Name or None) if job is not None else None


def known(job_id: str | None, run_id: str | None) -> str:
    """What CCS's answer told us, for a message: the JobID of a new job, the JobRunID of a run."""
    parts = [f"JobID {job_id}"] if job_id else []
    if run_id:
        parts.append(f"JobRunID {run_id}")
    return f" ({', '.join(parts)})" if parts else ""


class Mutation:
    """The steps of one mutation after its intent; each failure writes the result and raises."""

    def __init__(self, client: CcsClient, audit: AuditLog, intent: MutationIntent) -> None:
        self.intent = intent
        self.before: Job | None = None
        self._client = client
        self._audit = audit
        self._requests_at_send: int | None = None  # the client's request count when it was sent
        self._answer: MutationResult | None = None
        self._outcome: str | None = None  # set once the result record is written

    @property
    def verb(self) -> str:
        return VERBS[self.intent.action]

    def log_in(self) -> None:
        """Get a token before the mutation, so the mutation's own request is the only one in flight."""
        try:
            self._client.authenticate()
        except CcsError as exc:
            exc.message = f"{exc.message} (logging in before the {self.verb}; nothing was changed)"
            self._failed(exc, not_sent=True)

    def read_before(self, job_id: str) -> Job:
        """The job as it is now; if it cannot be read, the mutation is not sent and fails."""
        try:
            self.before = self._client.get_job(job_id)
        except CcsError as exc:
            exc.message = f"{exc.message} (reading the job before the {self.verb}; nothing was changed)"
            self._failed(exc, not_sent=True)
        return self.before

    def send(self, call: Callable[[], MutationResult]) -> MutationResult:
        """Send the mutation; a refusal or a lost answer is recorded and raised."""
        self._requests_at_send = self._client.requests_sent
        try:
            self._answer = call()
        except CcsError as exc:
            self._failed(exc)
        return self._answer

    def read_after(self, job_id: str) -> tuple[Job | None, str | None]:
        """The job after the change; a failure here does not undo the change, so it is only noted."""
        try:
            return self._client.get_job(job_id), None
        except CcsError as exc:
            log.warning("job_after_state_unavailable", job_id=job_id, error=str(exc))
            return None, str(exc)

    def succeeded(
        self,
        result: MutationResult,
        *,
        job_id: str | None = None,
        run_id: str | None = None,
        after: Job | None = None,
        after_error: str | None = None,
    ) -> None:
        """Write the ``success`` result: what CCS answered and the job before and after."""
        record = self.intent.result(
            "success",
            status_code=result.status_code,
            job_id=job_id,
            job_name=_name(after or self.before),
            before=self.before,
            after=after,
            after_error=after_error,
            message=result.message,
            run_id=run_id,
        )
        try:
            self._write(record, "success")
        except AuditError as exc:
            raise AuditError(
                f"the job {self.verb} SUCCEEDED in CCS{known(job_id, run_id)}, but its audit result could "
                f"not be written: {exc}; the intent record (audit.id {self.intent.audit_id}) has no result"
            ) from None

    def _failed(self, exc: CcsError, *, not_sent: bool = False) -> NoReturn:
        """Write the failure/unknown result of a refused or unanswered request, then raise ``exc``."""
        unknown = not not_sent and (
            (isinstance(exc, UnavailableError) and exc.sent) or isinstance(exc, BadResponseError)
        )
        outcome = "unknown" if unknown else "failure"
        if unknown:
            exc.message = (
                f"{exc.message}; the {self.verb} may or may not have been carried out "
                f"(audit outcome unknown, audit.id {self.intent.audit_id}): check the job in CCS"
            )
        record = self.intent.result(
            outcome,
            status_code=exc.status,
            job_name=_name(self.before),
            before=self.before,
            error_message=str(exc),
        )
        try:
            self._write(record, outcome)
        except AuditError as audit_exc:
            raise AuditError(
                f"the job {self.verb} {'has an UNKNOWN outcome' if unknown else 'FAILED'} in CCS ({exc}), "
                f"and its audit result could not be written: {audit_exc}; the intent record "
                f"(audit.id {self.intent.audit_id}) has no result"
            ) from None
        # Debug only: the error itself reaches the user as the command's one line; the record holds it.
        log.debug(
            "job_mutation_failed",
            action=self.intent.action,
            job_id=self.intent.job_id,
            outcome=outcome,
            status=exc.status,
            audit_id=self.intent.audit_id,
        )
        raise exc

    def interrupted(self) -> NoReturn:
        """Ctrl-C after the intent: write the result the mutation got to, then raise MutationInterrupted."""
        audit_id = self.intent.audit_id
        if self._outcome is not None:
            raise MutationInterrupted(
                f"interrupted after the job {self.verb} was recorded "
                f"(outcome {self._outcome}, audit.id {audit_id})",
                outcome=self._outcome,
                audit_id=audit_id,
            )
        outcome, message, record = self._interrupted_record()
        try:
            self._write(record, outcome)
        except AuditError as exc:
            raise MutationInterrupted(
                f"{message}; its audit result could not be written: {exc}; the intent record "
                f"(audit.id {audit_id}) has no result",
                outcome=None,
                audit_id=audit_id,
            ) from None
        log.warning("job_mutation_interrupted", action=self.intent.action, outcome=outcome, audit_id=audit_id)
        raise MutationInterrupted(f"{message} (audit.id {audit_id})", outcome=outcome, audit_id=audit_id)

    def _interrupted_record(self) -> tuple[str, str, AuditRecord]:
        """The outcome, the message and the result record of a mutation interrupted where it is now."""
        verb, answer, at_send = self.verb, self._answer, self._requests_at_send
        name = _name(self.before)
        if answer is not None:
            note = "interrupted (Ctrl-C) after CCS answered, before the job was read again"
            record = self.intent.result(
                "success",
                status_code=answer.status_code,
                job_id=answer.job_id,
                job_name=name,
                before=self.before,
                after_error=note,
                message=answer.message,
                run_id=answer.run_id,
            )
            known_ids = known(answer.job_id, answer.run_id)
            return (
                "success",
                f"interrupted after CCS carried out the job {verb}{known_ids}; recorded as success",
                record,
            )
        if at_send is not None and self._client.requests_sent > at_send:
            note = "interrupted (Ctrl-C) while waiting for CCS's answer: the request was sent"
            message = (
                f"interrupted while waiting for CCS's answer: the job {verb} was sent and may or may not "
                "have been carried out (audit outcome unknown): check the job in CCS"
            )
            outcome = "unknown"
        else:
            note = "interrupted (Ctrl-C) before the request was sent: nothing was changed"
            message = f"interrupted before the job {verb} was sent: nothing was changed (outcome failure)"
            outcome = "failure"
        record = self.intent.result(outcome, job_name=name, before=self.before, error_message=note)
        return outcome, message, record

    def _write(self, record: AuditRecord, outcome: str) -> None:
        with interrupts_deferred():
            self._audit.result(record)
            self._outcome = outcome
