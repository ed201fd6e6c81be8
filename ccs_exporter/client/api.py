"""The CCS jobs endpoints: build each path, send it through the transport, parse the answer into models.

Reads return models; mutations return a ``MutationResult`` (the status CCS answered with, its message,
a created job's id), so callers such as the audit trail see what happened without a side channel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import requests
from pydantic import ValidationError

from ccs_exporter.client.transport import Endpoint, TokenSource, Transport, json_body, server_message
from ccs_exporter.config import checked_job_id, describe_validation_error
from ccs_exporter.errors import BadResponseError, ConfigError
from ccs_exporter.models import (
    CreateJobRequest,
    Job,
    JobDetailsUpdate,
    JobRuns,
    normalize_guid,
    request_body,
)

JOB = Endpoint("GET", "/jobs/{job_id}", "job")
JOB_RUNS = Endpoint("GET", "/Jobs/{job_id}/jobruns", "jobruns")
CREATE_JOB = Endpoint("POST", "/jobs", "create_job")
UPDATE_JOB = Endpoint("PATCH", "/jobs", "update_job")
DELETE_JOB = Endpoint("DELETE", "/Jobs", "delete_job")

_PayloadT = TypeVar("_PayloadT", Job, JobRuns)


@dataclass(frozen=True)
class MutationResult:
    """What CCS answered a mutation with: its status code, its message if any, and a new job's id."""

    status_code: int
    message: str | None = None
    job_id: str | None = None


class JobsApi:
    """The five job endpoints over one transport and one token manager."""

    def __init__(self, transport: Transport, tokens: TokenSource) -> None:
        self._transport = transport
        self._tokens = tokens

    def get_job(self, job_id: str) -> Job:
        """Search job by id: the job's properties and, for CER/collection/evaluation jobs, its config."""
        path = JOB.url_path(job_id=checked_job_id(job_id))
        return self._parse(Job, self._transport.call(JOB, path, self._tokens), JOB, path)

    def get_job_runs(self, job_id: str, count: int = 1, show_messages: bool = False) -> JobRuns:
        """The latest ``count`` runs of a job (0 means all), with their messages if asked."""
        path = JOB_RUNS.url_path(job_id=checked_job_id(job_id))
        if count < 0:
            raise ConfigError("count must be 0 (all runs) or more", field="count")
        params = {"count": str(count), "showmessages": "true" if show_messages else "false"}
        response = self._transport.call(JOB_RUNS, path, self._tokens, params=params)
        return self._parse(JobRuns, response, JOB_RUNS, path)

    def create_job(self, request: CreateJobRequest) -> MutationResult:
        """Create a job; the result carries its new JobID."""
        path = CREATE_JOB.url_path()
        response = self._transport.call(CREATE_JOB, path, self._tokens, json=request_body(request))
        body = json_body(response, CREATE_JOB.method, path)
        job_id = body.get("JobID") if isinstance(body, dict) else None
        try:
            if job_id is None:
                raise ValueError("missing JobID")
            return MutationResult(response.status_code, job_id=normalize_guid(str(job_id)))
        except ValueError:
            raise BadResponseError(
                "create answered without a valid JobID; the job may have been created",
                method=CREATE_JOB.method,
                path=path,
                status=response.status_code,
            ) from None

    def update_job(self, job_id: str, details: JobDetailsUpdate) -> MutationResult:
        """Replace the given fields of a job's definition."""
        body = {"JobDetails": request_body(details), "JobID": checked_job_id(job_id)}
        response = self._transport.call(UPDATE_JOB, UPDATE_JOB.url_path(), self._tokens, json=body)
        return MutationResult(response.status_code)

    def delete_job(self, job_id: str, delete_job: bool = True) -> MutationResult:
        """Delete a job (``delete_job=False``: only its run history); the result holds CCS's message."""
        params = {"jobid": checked_job_id(job_id), "DeleteJob": "True" if delete_job else "False"}
        response = self._transport.call(DELETE_JOB, DELETE_JOB.url_path(), self._tokens, params=params)
        message = None
        if response.status_code == 200 and response.content:
            message = self._tokens.redact(server_message(response)) or None
        return MutationResult(response.status_code, message=message)

    def _parse(
        self, model: type[_PayloadT], response: requests.Response, endpoint: Endpoint, path: str
    ) -> _PayloadT:
        body = json_body(response, endpoint.method, path)
        try:
            return model.model_validate(body)
        except RecursionError:
            raise BadResponseError(
                "response body is nested too deeply",
                method=endpoint.method,
                path=path,
                status=response.status_code,
            ) from None
        except ValidationError as exc:
            raise BadResponseError(
                f"unexpected response body: {self._tokens.redact(describe_validation_error(exc))}",
                method=endpoint.method,
                path=path,
                status=response.status_code,
            ) from None
