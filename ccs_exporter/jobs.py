"""Audited job mutations: validate the spec, write the intent, call CCS, write the result.

Nothing is sent to CCS before the spec has passed the request models and the intent record has been
written and fsync'd; a mutation that cannot be recorded does not happen. A timeout or a dropped
connection after the request went out is recorded as outcome ``unknown``, never ``failure``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import structlog
from pydantic import BaseModel, ValidationError

from ccs_exporter.audit import AuditLog, MutationIntent
from ccs_exporter.client import CREATE_JOB, DELETE_JOB, UPDATE_JOB, CcsClient, MutationResult
from ccs_exporter.config import (
    checked_job_id,
    describe_validation_error,
    first_validation_error,
    load_yaml_file,
    read_input_file,
)
from ccs_exporter.errors import AuditError, BadResponseError, CcsError, ConfigError, UnavailableError
from ccs_exporter.models import (
    CreateJobRequest,
    Job,
    JobDetailsUpdate,
    request_body,
)

log = structlog.get_logger(__name__)
_ModelT = TypeVar("_ModelT", bound=BaseModel)

_VERBS = {"job.create": "create", "job.update": "update", "job.delete": "delete"}


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


class JobService:
    """Creates, updates and deletes CCS jobs, each change recorded in the audit log before and after."""

    def __init__(self, client: CcsClient, audit_log: AuditLog) -> None:
        self._client = client
        self._audit = audit_log

    def create(self, spec: Mapping[str, Any], reason: str | None = None) -> str:
        """Create a job from a Create Job body (``{"JobType", "JobDetails"}``); return its new JobID."""
        request = _validated(CreateJobRequest, spec, "")
        intent = self._audit.intent(
            "job.create",
            method=CREATE_JOB.method,
            url_path=CREATE_JOB.url_path(),
            job_name=request.JobDetails.JobName,
            reason=reason,
            requested=request_body(request),
            job_type=request.JobType,
        )
        try:
            result = self._client.create_job(request)
        except CcsError as exc:
            self._record_error(intent, exc)
        job_id = result.job_id
        assert job_id is not None  # the client refuses a create answered without one
        after, after_error = self._fetch_after(job_id)
        self._record_success(intent, result, job_id=job_id, after=after, after_error=after_error)
        log.info("job_created", job_id=job_id, audit_id=intent.audit_id)
        return job_id

    def update(self, job_id: str, details: Mapping[str, Any], reason: str | None = None) -> None:
        """Change the given ``JobDetails`` fields of a job."""
        job_id = checked_job_id(job_id)
        model = _validated(JobDetailsUpdate, details, "JobDetails")
        intent = self._audit.intent(
            "job.update",
            method=UPDATE_JOB.method,
            url_path=UPDATE_JOB.url_path(),
            job_id=job_id,
            job_name=model.JobName,
            reason=reason,
            requested=request_body(model),
        )
        before = self._fetch_before(intent, job_id)
        try:
            result = self._client.update_job(job_id, model)
        except CcsError as exc:
            self._record_error(intent, exc, before=before)
        after, after_error = self._fetch_after(job_id)
        self._record_success(intent, result, before=before, after=after, after_error=after_error)
        log.info("job_updated", job_id=job_id, audit_id=intent.audit_id)

    def delete(self, job_id: str, keep_job: bool = False, reason: str | None = None) -> None:
        """Delete a job, or with ``keep_job`` only its run history (``DeleteJob=False``)."""
        job_id = checked_job_id(job_id)
        intent = self._audit.intent(
            "job.delete",
            method=DELETE_JOB.method,
            url_path=DELETE_JOB.url_path(),
            job_id=job_id,
            reason=reason,
            requested={"DeleteJob": not keep_job},
            delete_job=not keep_job,
        )
        before = self._fetch_before(intent, job_id)
        try:
            result = self._client.delete_job(job_id, delete_job=not keep_job)
        except CcsError as exc:
            self._record_error(intent, exc, before=before)
        self._record_success(intent, result, before=before)
        log.info("job_deleted", job_id=job_id, keep_job=keep_job, audit_id=intent.audit_id)

    # --- steps -------------------------------------------------------------------------------------

    def _fetch_before(self, intent: MutationIntent, job_id: str) -> Job:
        """The job as it is now; if it cannot be read, the mutation is not sent and fails."""
        try:
            return self._client.get_job(job_id)
        except CcsError as exc:
            exc.message = (
                f"{exc.message} (reading the job before the {_VERBS[intent.action]}; nothing was changed)"
            )
            self._record_error(intent, exc, not_sent=True)

    def _fetch_after(self, job_id: str) -> tuple[Job | None, str | None]:
        """The job after the change; a failure here does not undo the change, so it is only noted."""
        try:
            return self._client.get_job(job_id), None
        except CcsError as exc:
            log.warning("job_after_state_unavailable", job_id=job_id, error=str(exc))
            return None, str(exc)

    def _record_success(
        self,
        intent: MutationIntent,
        result: MutationResult,
        *,
        job_id: str | None = None,
        before: Job | None = None,
        after: Job | None = None,
        after_error: str | None = None,
    ) -> None:
        named = after or before
        try:
            self._audit.result(
                intent,
                "success",
                status_code=result.status_code,
                job_id=job_id,
                job_name=named.JobProperties.Name if named is not None else None,
                before=before,
                after=after,
                after_error=after_error,
                message=result.message,
            )
        except AuditError as exc:
            created = f" (new JobID {job_id})" if job_id else ""
            raise AuditError(
                f"the job {_VERBS[intent.action]} SUCCEEDED in CCS{created}, but its audit result could not "
                f"be written: {exc}; the intent record (audit.id {intent.audit_id}) has no result"
            ) from None

    def _record_error(
        self, intent: MutationIntent, exc: CcsError, *, before: Job | None = None, not_sent: bool = False
    ) -> NoReturn:
        """Write the failure/unknown result of a refused or unanswered request, then raise ``exc``."""
        unknown = not not_sent and (
            (isinstance(exc, UnavailableError) and exc.sent) or isinstance(exc, BadResponseError)
        )
        outcome = "unknown" if unknown else "failure"
        if unknown:
            exc.message = (
                f"{exc.message}; the {_VERBS[intent.action]} may or may not have been carried out "
                f"(audit outcome unknown, audit.id {intent.audit_id}): check the job in CCS"
            )
        try:
            self._audit.result(
                intent,
                outcome,
                status_code=exc.status,
                job_name=before.JobProperties.Name if before is not None else None,
                before=before,
                error_message=str(exc),
            )
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


def _validated(model: type[_ModelT], data: Mapping[str, Any], prefix: str) -> _ModelT:
    """``data`` checked against a request model; ConfigError naming the first bad field."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix or 'spec'}: must be an object (a mapping)", field=prefix or "spec")
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        field = first_validation_error(exc, prefix).location
        raise ConfigError(describe_validation_error(exc, prefix), field=field) from None
