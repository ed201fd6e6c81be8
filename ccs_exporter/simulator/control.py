"""The simulator's control API (``/_simulator/...``): request counts, faults, console-made jobs and runs.

Tests, the demo and people steer a running simulator through it over HTTP, as ``Simulator``'s methods do
in-process.
"""

from __future__ import annotations

from typing import Any

from ccs_exporter.simulator.api import json_response
from ccs_exporter.simulator.faults import Faults, RequestLog
from ccs_exporter.simulator.jobs import JobStore
from ccs_exporter.simulator.server import HttpResponse
from ccs_exporter.simulator.tokens import TokenStore
from ccs_exporter.simulator.validation import ApiError, guid


class ControlApi:
    """Answers the control requests of one simulator."""

    def __init__(self, store: JobStore, faults: Faults, log: RequestLog, tokens: TokenStore) -> None:
        self._store = store
        self._faults = faults
        self._log = log
        self._tokens = tokens

    def handle(self, method: str, path: str, segments: list[str], body: Any) -> HttpResponse:
        """Answer one request to ``/_simulator/...`` (``segments`` after that prefix)."""
        lower = [segment.lower() for segment in segments]
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object")
        if method == "GET" and lower == ["stats"]:
            return json_response(200, self._log.stats())
        if method == "POST" and lower == ["reset-stats"]:
            self._log.reset()
            return json_response(200, {"reset": True})
        if method == "GET" and lower == ["jobs"]:
            return json_response(200, {"job_ids": self._store.ids()})
        if method == "POST" and lower == ["jobs"]:
            return json_response(200, self._console_create(body))
        if method == "DELETE" and len(lower) == 2 and lower[0] == "jobs":
            job_id = guid(segments[1])
            self._store.remove(job_id)
            return json_response(200, {"deleted": job_id})
        if lower == ["faults"] and method in ("GET", "POST"):
            if method == "POST":
                try:
                    self._faults.update(body)
                except ValueError as exc:
                    raise ApiError(400, str(exc)) from None
            return json_response(200, self._faults.as_dict())
        if method == "POST" and lower == ["revoke-tokens"]:
            self._tokens.revoke_all()
            return json_response(200, {"revoked": True})
        if method == "POST" and lower == ["finish-runs"]:
            status, messages = _finish_body(body)
            running_only = body.get("RunningOnly", body.get("running_only", False))
            if not isinstance(running_only, bool):
                raise ApiError(400, "RunningOnly must be true or false")
            finished = 0
            for job_id in self._store.ids():
                job = self._store.get(job_id)
                if running_only and job.running_run is None:
                    continue
                self._store.finish_run(job_id, status, messages)
                finished += 1
            return json_response(200, {"finished": finished})
        if (
            method == "POST"
            and len(lower) == 3
            and lower[0] == "jobs"
            and lower[2] in ("finish-run", "start-run")
        ):
            job_id = guid(segments[1])
            if lower[2] == "start-run":
                self._store.start_run(job_id)
            else:
                status, messages = _finish_body(body)
                self._store.finish_run(job_id, status, messages)
            return json_response(200, self._store.runs_payload(job_id, 1, True))
        raise ApiError(404, f"no control endpoint {method} {path}")

    def _console_create(self, body: dict[str, Any]) -> dict[str, Any]:
        fields = _console_fields(body)
        job_id = self._store.add_job(
            fields["name"],
            job_type=fields.get("jobtype") or "CHAINED_EVALUATIONJOB",
            owner=fields.get("owner"),
            is_system=fields.get("issystemjob", False),
            job_id=None if fields.get("jobid") is None else guid(fields["jobid"]),
            description=fields.get("description") or "",
        )
        return self._store.job_payload(job_id)


def _finish_body(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The final status and message counts of a finish-run control request; ApiError 400 when bad."""
    status = body.get("Status", body.get("status"))
    messages = body.get("Messages", body.get("messages")) or {}
    if isinstance(status, bool) or not isinstance(status, int) or not isinstance(messages, dict):
        raise ApiError(400, 'expected {"Status": 4|5|7..., "Messages": {"Error": 1, ...}}')
    return status, messages


_CONSOLE_FIELDS = {"name", "jobtype", "owner", "issystemjob", "jobid", "description"}


def _console_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The fields of a control-API job creation, keys folded; ApiError 400 naming a bad one."""
    fields = {str(key).lower(): value for key, value in body.items()}
    unknown = sorted(set(fields) - _CONSOLE_FIELDS)
    if unknown:
        raise ApiError(400, f"unknown field(s): {', '.join(unknown)}")
    for key in ("name", "jobtype", "owner", "jobid", "description"):
        if fields.get(key) is not None and not isinstance(fields[key], str):
            raise ApiError(400, f"{key} must be a string")
    if not fields.get("name"):
        raise ApiError(400, 'expected {"Name": "...", "JobType": "COLLECTIONJOB", "Owner": ..., ...}')
    if not isinstance(fields.get("issystemjob", False), bool):
        raise ApiError(400, "IsSystemJob must be true or false")
    return fields
