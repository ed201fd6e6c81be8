"""Audited job mutations: validate the input, write the intent, call CCS, write the result.

Nothing is sent to CCS before the input has passed the request models and the intent record has been
written and fsync'd; a mutation that cannot be recorded does not happen. A timeout or a dropped
connection after the request went out is recorded as outcome ``unknown``, never ``failure``. Ctrl-C
after the intent still writes the result: ``failure`` if nothing was sent, ``unknown`` if the request
was on its way, ``success`` if CCS had answered.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import structlog
from pydantic import BaseModel, ValidationError

from ccs_exporter.audit import AuditLog, MutationIntent
from ccs_exporter.client import (
    ABORT_RUN,
    CREATE_JOB,
    DELETE_JOB,
    RUN_JOB,
    UPDATE_JOB,
    CcsClient,
    MutationResult,
    checked_run_id,
)
from ccs_exporter.errors import (
    AuditError,
    BadResponseError,
    CcsError,
    ConfigError,
    MutationInterrupted,
    UnavailableError,
)
from ccs_exporter.models import (
    CreateJobRequest,
    Job,
    JobDetailsUpdate,
    normalize_guid,
    request_body,
)
from ccs_exporter.operations.interrupts import interrupts_deferred
from ccs_exporter.settings.config import (
    checked_job_id,
    describe_validation_error,
    first_validation_error,
    load_yaml_file,
    read_input_file,
)

log = structlog.get_logger(__name__)
_ModelT = TypeVar("_ModelT", bound=BaseModel)

_VERBS = {
    "job.create": "create",
    "job.update": "update",
    "job.delete": "delete",
    "job.run": "run",
    "job.abort": "abort",
}


def load_spec(path: str | Path) -> dict[str, Any]:
    """Read a job spec (JSON, or YAML for any other extension) into a mapping; ConfigError if unusable."""
    spec_path = Path(path)
    if spec_path.suffix.lower() == ".json":
        text = read_input_file(spec_path, "spec", "spec")
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"spec file {spec_path}: not valid JSON at line {exc.lineno} column {exc.colno} ({exc.msg})",
                field="spec",
            ) from None
    else:
        loaded = load_yaml_file(spec_path, "spec", "spec")
    if not isinstance(loaded, dict):
        raise ConfigError(f"spec file {spec_path}: must hold a JSON/YAML object (a mapping)", field="spec")
    return loaded


@dataclass(frozen=True)
class JobOperation:
    """What a run or an abort did: CCS's answer, the job and run it concerned, its audit.id."""

    audit_id: str
    status_code: int
    job_id: str | None
    job_name: str | None
    run_id: str | None
    message: str | None


@dataclass
class _Progress:
    """How far one mutation got: what a Ctrl-C must record."""

    intent: MutationIntent | None = None
    before: Job | None = None
    requests_at_send: int | None = None  # the client's request count when the mutation was sent
    answer: MutationResult | None = None
    outcome: str | None = None  # set once the result record is written


class JobService:
    """Creates, updates, deletes, runs and aborts CCS jobs, each one audited before and after."""

    def __init__(self, client: CcsClient, audit_log: AuditLog) -> None:
        self._client = client
        self._audit = audit_log

    def create(self, spec: Mapping[str, Any], reason: str | None = None) -> str:
        """Create a job from a Create Job body (``{"JobType", "JobDetails"}``); return its new JobID."""
        request = _validated(CreateJobRequest, spec, "")
        reason = checked_reason(reason)
        progress = _Progress()
        with self._interrupts_recorded(progress):
            intent = self._write_intent(
                progress,
                "job.create",
                method=CREATE_JOB.method,
                url_path=CREATE_JOB.url_path(),
                job_name=request.JobDetails.JobName,
                reason=reason,
                requested=request_body(request),
                job_type=request.JobType,
            )
            self._log_in(intent, progress)
            result = self._send(progress, lambda: self._client.create_job(request))
            job_id = result.job_id
            assert job_id is not None  # the client refuses a create answered without one
            after, after_error = self._fetch_after(job_id)
            self._record_success(progress, result, job_id=job_id, after=after, after_error=after_error)
        log.info("job_created", job_id=job_id, audit_id=intent.audit_id)
        return job_id

    def update(self, job_id: str, details: Mapping[str, Any], reason: str | None = None) -> None:
        """Change the given ``JobDetails`` fields of a job."""
        job_id = checked_job_id(job_id)
        model = _validated(JobDetailsUpdate, details, "JobDetails")
        reason = checked_reason(reason)
        progress = _Progress()
        with self._interrupts_recorded(progress):
            intent = self._write_intent(
                progress,
                "job.update",
                method=UPDATE_JOB.method,
                url_path=UPDATE_JOB.url_path(),
                job_id=job_id,
                job_name=model.JobName,
                reason=reason,
                requested=request_body(model),
            )
            self._fetch_before(progress, job_id)
            result = self._send(progress, lambda: self._client.update_job(job_id, model))
            after, after_error = self._fetch_after(job_id)
            self._record_success(progress, result, after=after, after_error=after_error)
        log.info("job_updated", job_id=job_id, audit_id=intent.audit_id)

    def delete(self, job_id: str, keep_job: bool = False, reason: str | None = None) -> None:
        """Delete a job, or with ``keep_job`` only its run history (``DeleteJob=False``)."""
        job_id = checked_job_id(job_id)
        reason = checked_reason(reason)
        progress = _Progress()
        with self._interrupts_recorded(progress):
            intent = self._write_intent(
                progress,
                "job.delete",
                method=DELETE_JOB.method,
                url_path=DELETE_JOB.url_path(),
                job_id=job_id,
                reason=reason,
                requested={"DeleteJob": not keep_job},
                delete_job=not keep_job,
            )
            self._fetch_before(progress, job_id)
            result = self._send(progress, lambda: self._client.delete_job(job_id, delete_job=not keep_job))
            self._record_success(progress, result)
        log.info("job_deleted", job_id=job_id, keep_job=keep_job, audit_id=intent.audit_id)

    def run(self, job_id: str, reason: str | None = None) -> JobOperation:
        """Run a job now (``execute``); the job is read first and named in the records."""
        job_id = checked_job_id(job_id)
        reason = checked_reason(reason)
        progress = _Progress()
        with self._interrupts_recorded(progress):
            intent = self._write_intent(
                progress,
                "job.run",
                method=RUN_JOB.method,
                url_path=RUN_JOB.url_path(job_id=job_id),
                job_id=job_id,
                reason=reason,
                requested={"Operation": "execute"},
            )
            before = self._fetch_before(progress, job_id)
            result = self._send(progress, lambda: self._client.run_job(job_id))
            run_id = result.run_id or self._started_run(job_id)
            self._record_success(progress, result, run_id=run_id)
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
        progress = _Progress()
        with self._interrupts_recorded(progress):
            intent = self._write_intent(
                progress,
                "job.abort",
                method=ABORT_RUN.method,
                url_path=ABORT_RUN.url_path(run_id=run_id),
                job_id=known.id if known is not None else None,
                job_name=known.name if known is not None else None,
                run_id=run_id,
                reason=reason,
                requested={"Operation": "abort"},
            )
            self._log_in(intent, progress)
            result = self._send(progress, lambda: self._client.abort_run(run_id))
            job_id = intent.job_id or result.job_id
            after, after_error = self._fetch_after(job_id) if job_id else (None, None)
            self._record_success(progress, result, job_id=job_id, after=after, after_error=after_error)
        log.info("job_run_aborted", run_id=run_id, job_id=job_id, audit_id=intent.audit_id)
        name = (after.JobProperties.Name or None) if after is not None else intent.job_name
        return JobOperation(intent.audit_id, result.status_code, job_id, name, run_id, result.message)

    # --- steps -------------------------------------------------------------------------------------

    def _write_intent(self, progress: _Progress, action: str, **fields: Any) -> MutationIntent:
        """Write the intent with Ctrl-C held back, so an interrupt never finds an intent it cannot see."""
        with interrupts_deferred():
            progress.intent = self._audit.intent(action, **fields)
        return progress.intent

    def _log_in(self, intent: MutationIntent, progress: _Progress) -> None:
        """Get a token before the mutation, so the mutation's own request is the only one in flight."""
        try:
            self._client.authenticate()
        except CcsError as exc:
            verb = _VERBS[intent.action]
            exc.message = f"{exc.message} (logging in before the {verb}; nothing was changed)"
            self._record_error(progress, exc, not_sent=True)

    def _fetch_before(self, progress: _Progress, job_id: str) -> Job:
        """The job as it is now; if it cannot be read, the mutation is not sent and fails."""
        intent = _intent(progress)
        try:
            progress.before = self._client.get_job(job_id)
        except CcsError as exc:
            exc.message = (
                f"{exc.message} (reading the job before the {_VERBS[intent.action]}; nothing was changed)"
            )
            self._record_error(progress, exc, not_sent=True)
        return progress.before

    def _send(self, progress: _Progress, call: Callable[[], MutationResult]) -> MutationResult:
        """Send the mutation; a refusal or a lost answer is recorded and raised."""
        progress.requests_at_send = self._client.requests_sent
        try:
            progress.answer = call()
        except CcsError as exc:
            self._record_error(progress, exc)
        return progress.answer

    def _fetch_after(self, job_id: str) -> tuple[Job | None, str | None]:
        """The job after the change; a failure here does not undo the change, so it is only noted."""
        try:
            return self._client.get_job(job_id), None
        except CcsError as exc:
            log.warning("job_after_state_unavailable", job_id=job_id, error=str(exc))
            return None, str(exc)

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
        return _guid_or_none(latest[0].JobRunID)

    # --- results -----------------------------------------------------------------------------------

    def _record_success(
        self,
        progress: _Progress,
        result: MutationResult,
        *,
        job_id: str | None = None,
        run_id: str | None = None,
        after: Job | None = None,
        after_error: str | None = None,
    ) -> None:
        intent = _intent(progress)
        before = progress.before
        named = after or before
        try:
            with interrupts_deferred():
                self._audit.result(
                    intent,
                    "success",
                    status_code=result.status_code,
                    job_id=job_id,
                    job_name=(named.JobProperties.Name or None) if named is not None else None,
                    before=before,
                    after=after,
                    after_error=after_error,
                    message=result.message,
                    run_id=run_id,
                )
                progress.outcome = "success"
        except AuditError as exc:
            raise AuditError(
                f"the job {_VERBS[intent.action]} SUCCEEDED in CCS{_known(job_id, run_id)}, but its "
                f"audit result could not be written: {exc}; the intent record (audit.id {intent.audit_id}) "
                "has no result"
            ) from None

    def _record_error(self, progress: _Progress, exc: CcsError, *, not_sent: bool = False) -> NoReturn:
        """Write the failure/unknown result of a refused or unanswered request, then raise ``exc``."""
        intent = _intent(progress)
        unknown = not not_sent and (
            (isinstance(exc, UnavailableError) and exc.sent) or isinstance(exc, BadResponseError)
        )
        outcome = "unknown" if unknown else "failure"
        if unknown:
            exc.message = (
                f"{exc.message}; the {_VERBS[intent.action]} may or may not have been carried out "
                f"(audit outcome unknown, audit.id {intent.audit_id}): check the job in CCS"
            )
        before = progress.before
        try:
            with interrupts_deferred():
                self._audit.result(
                    intent,
                    outcome,
                    status_code=exc.status,
                    job_name=(before.JobProperties.Name or None) if before is not None else None,
                    before=before,
                    error_message=str(exc),
                )
                progress.outcome = outcome
        except AuditError as audit_exc:
            raise AuditError(
                f"the job {_VERBS[intent.action]} {'has an UNKNOWN outcome' if unknown else 'FAILED'} "
                f"in CCS ({exc}), and its audit result could not be written: {audit_exc}; the intent "
                f"record (audit.id {intent.audit_id}) has no result"
            ) from None
        log.warning(
            "job_mutation_failed",
            action=intent.action,
            job_id=intent.job_id,
            outcome=outcome,
            status=exc.status,
            audit_id=intent.audit_id,
        )
        raise exc

    # --- Ctrl-C ------------------------------------------------------------------------------------

    @contextmanager
    def _interrupts_recorded(self, progress: _Progress) -> Iterator[None]:
        """Turn a Ctrl-C after the intent into a written result and a ``MutationInterrupted``."""
        try:
            yield
        except MutationInterrupted:
            raise
        except KeyboardInterrupt:
            if progress.intent is None:
                raise  # nothing recorded, nothing sent
            self._record_interrupt(progress, progress.intent)

    def _record_interrupt(self, progress: _Progress, intent: MutationIntent) -> NoReturn:
        verb, audit_id = _VERBS[intent.action], intent.audit_id
        if progress.outcome is not None:
            raise MutationInterrupted(
                f"interrupted after the job {verb} was recorded "
                f"(outcome {progress.outcome}, audit.id {audit_id})",
                outcome=progress.outcome,
                audit_id=audit_id,
            )
        answer = progress.answer
        at_send = progress.requests_at_send
        sent = at_send is not None and self._client.requests_sent > at_send
        if answer is not None:
            outcome = "success"
            known = _known(answer.job_id, answer.run_id)
            message = f"interrupted after CCS carried out the job {verb}{known}; recorded as success"
            note = "interrupted (Ctrl-C) after CCS answered, before the job was read again"
        elif sent:
            outcome = "unknown"
            message = (
                f"interrupted while waiting for CCS's answer: the job {verb} was sent and may or may not "
                "have been carried out (audit outcome unknown): check the job in CCS"
            )
            note = "interrupted (Ctrl-C) while waiting for CCS's answer: the request was sent"
        else:
            outcome = "failure"
            message = f"interrupted before the job {verb} was sent: nothing was changed (outcome failure)"
            note = "interrupted (Ctrl-C) before the request was sent: nothing was changed"
        before = progress.before
        try:
            with interrupts_deferred():
                self._audit.result(
                    intent,
                    outcome,
                    status_code=answer.status_code if answer is not None else None,
                    job_id=answer.job_id if answer is not None else None,
                    job_name=(before.JobProperties.Name or None) if before is not None else None,
                    before=before,
                    after_error=note if answer is not None else None,
                    error_message=None if answer is not None else note,
                    message=answer.message if answer is not None else None,
                    run_id=answer.run_id if answer is not None else None,
                )
        except AuditError as exc:
            raise MutationInterrupted(
                f"{message}; its audit result could not be written: {exc}; the intent record "
                f"(audit.id {audit_id}) has no result",
                outcome=None,
                audit_id=audit_id,
            ) from None
        log.warning("job_mutation_interrupted", action=intent.action, outcome=outcome, audit_id=audit_id)
        raise MutationInterrupted(f"{message} (audit.id {audit_id})", outcome=outcome, audit_id=audit_id)


def checked_reason(reason: str | None) -> str | None:
    """The ``--reason`` text; a ConfigError if it is not text that can be recorded (bytes not UTF-8)."""
    if reason is not None and _has_surrogate(reason):
        raise ConfigError(
            "reason: holds bytes that are not UTF-8 text (a lone surrogate such as \\udcff)", field="reason"
        )
    return reason


def _intent(progress: _Progress) -> MutationIntent:
    assert progress.intent is not None  # every step after the intent has one
    return progress.intent


def _known(job_id: str | None, run_id: str | None) -> str:
    """What CCS's answer told us, for a message: the JobID of a new job, the JobRunID of a run."""
    parts = [f"JobID {job_id}"] if job_id else []
    if run_id:
        parts.append(f"JobRunID {run_id}")
    return f" ({', '.join(parts)})" if parts else ""


def _guid_or_none(value: str | None) -> str | None:
    try:
        return normalize_guid(value) if value else None
    except ValueError:
        return None


def _validated(model: type[_ModelT], data: Mapping[str, Any], prefix: str) -> _ModelT:
    """``data`` checked against a request model; ConfigError naming the first bad field."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix or 'spec'}: must be an object (a mapping)", field=prefix or "spec")
    bad_text = _surrogate_path(data, prefix)
    if bad_text is not None:
        raise ConfigError(
            f"{bad_text or 'spec'}: holds a lone UTF-16 surrogate (such as \\udcff), which is not text "
            "CCS can store; write the character itself",
            field=bad_text,
        )
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        field = first_validation_error(exc, prefix).location
        raise ConfigError(describe_validation_error(exc, prefix), field=field) from None


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= char <= "\udfff" for char in text)


def _surrogate_path(value: Any, path: str) -> str | None:
    """The dotted path of the first key or string in ``value`` holding a lone surrogate, or None."""
    if isinstance(value, str):
        return path if _has_surrogate(value) else None
    if isinstance(value, Mapping):
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and _has_surrogate(key):
                return path or "spec"
            found = _surrogate_path(item, child)
            if found is not None:
                return found
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _surrogate_path(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None
