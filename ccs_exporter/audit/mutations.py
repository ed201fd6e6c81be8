"""Records of our own mutations: the intent written before a request, the result written after it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ccs_exporter.audit.records import MUTATION_ACTIONS, OUTCOMES, AuditRecord, JobRef
from ccs_exporter.models import Job


@dataclass(frozen=True)
class MutationIntent:
    """An intent record that has been written and fsync'd; its result must follow."""

    audit_id: str
    action: str
    method: str
    url_path: str
    job_id: str | None
    job_name: str | None
    reason: str | None
    record: dict[str, Any]


def intent_record(
    action: str,
    user_name: str,
    *,
    method: str,
    url_path: str,
    job_id: str | None = None,
    job_name: str | None = None,
    job_type: str | None = None,
    delete_job: bool | None = None,
    reason: str | None = None,
    requested: Mapping[str, Any] | None = None,
) -> AuditRecord:
    """The intent of a mutation about to be sent (ValueError for an action that is no mutation)."""
    if action not in MUTATION_ACTIONS:
        raise ValueError(f"unknown mutation action {action!r}")
    return AuditRecord(
        action=action,
        phase="intent",
        user_name=user_name,
        method=method,
        url_path=url_path,
        job=JobRef(job_id, job_name, type=job_type),
        delete_job=delete_job,
        reason=reason,
        requested=requested,
    )


def result_record(
    intent: MutationIntent,
    outcome: str,
    user_name: str,
    *,
    status_code: int | None = None,
    job_id: str | None = None,
    job_name: str | None = None,
    before: Job | None = None,
    after: Job | None = None,
    after_error: str | None = None,
    error_message: str | None = None,
    message: str | None = None,
) -> AuditRecord:
    """The result of ``intent``: its outcome, the status CCS answered and the job before and after."""
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}")
    return AuditRecord(
        action=intent.action,
        phase="result",
        audit_id=intent.audit_id,
        outcome=outcome,
        user_name=user_name,
        method=intent.method,
        url_path=intent.url_path,
        job=JobRef(job_id or intent.job_id, job_name or intent.job_name),
        reason=intent.reason,
        before=before,
        after=after,
        after_error=after_error,
        status_code=status_code,
        error_message=error_message,
        message=message,
    )
