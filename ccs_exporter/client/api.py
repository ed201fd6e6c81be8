"""The CCS jobs endpoints: build each path, send it through the transport, parse the answer into models.

Reads return models; mutations return a ``MutationResult`` (the status CCS answered with, its message,
a created job's id, a run's id), so callers such as the audit trail see what happened without a side channel.
Search Jobs and search by name return a ``SearchPage``: the jobs read, and the items that could not be
read, reported rather than failing the page. A caller that kept the page parsed from the same bytes last
time can have it back instead of a new parse (``PageReuse``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from pydantic import ValidationError

from ccs_exporter.client.transport import Endpoint, TokenSource, Transport, json_body, server_message
from ccs_exporter.errors import BadResponseError, ConfigError
from ccs_exporter.models import (
    CreateJobRequest,
    Job,
    JobDetailsUpdate,
    JobRuns,
    guid_or_none,
    normalize_guid,
    request_body,
)
from ccs_exporter.settings.inputs import describe_validation_error
from ccs_exporter.settings.values import checked_job_id, checked_run_id

JOB = Endpoint("GET", "/jobs/{job_id}", "job")
JOB_RUNS = Endpoint("GET", "/Jobs/{job_id}/jobruns", "jobruns")
CREATE_JOB = Endpoint("POST", "/jobs", "create_job")
UPDATE_JOB = Endpoint("PATCH", "/jobs", "update_job")
DELETE_JOB = Endpoint("DELETE", "/Jobs", "delete_job")
SEARCH_JOBS = Endpoint("GET", "/Jobs", "search_jobs")
SEARCH_JOB_NAME = Endpoint("GET", "/Jobs", "search_job_name")
RUN_JOB = Endpoint("POST", "/jobs/{job_id}", "run_job")
ABORT_RUN = Endpoint("POST", "/jobs/{run_id}", "abort_run")

# The answer to a search is not documented: most likely a JSON array; an object wrapping the array under
# one of these keys (compared without regard to case), or under its only list, is accepted too.
_WRAPPER_KEYS = ("jobs", "items", "results", "value", "data", "joblist")

# The answer to run/abort is not documented: any 2xx, with or without a body, is success; a JSON object
# body is read for these fields (keys in any case), anything else is kept as a message excerpt.
_OPERATION_MESSAGE_LIMIT = 300

_PayloadT = TypeVar("_PayloadT", Job, JobRuns)


@dataclass(frozen=True)
class MutationResult:
    """What CCS answered a mutation with: its status code, its message if any, and a new job's id."""

    status_code: int
    message: str | None = None
    job_id: str | None = None
    run_id: str | None = None


@dataclass(frozen=True)
class BadSearchItem:
    """One item of a search answer that is not a job we can read: its JobID if it had one, and why."""

    job_id: str | None
    message: str


@dataclass(frozen=True, slots=True)
class SearchItem:
    """One job of a search answer, not parsed yet: its id, a digest of its JSON, and that JSON.

    The text (about 1 KB a job) is kept instead of a parsed job (about 6 KB), so a listing of 10,000 jobs
    stays small, and a caller that has read an item with the same digest before need not parse it again.
    ``CcsClient.search_item_job`` parses it.
    """

    job_id: str
    digest: bytes
    text: bytes


@dataclass(frozen=True)
class SearchPage:
    """One page of a search: its jobs (unparsed), the items that are no job (reported, not fatal), and a
    digest of the answer's body it was parsed from (empty when it was built from items)."""

    items: tuple[SearchItem, ...]
    bad_items: tuple[BadSearchItem, ...] = ()
    digest: bytes = b""

    @property
    def size(self) -> int:
        """How many items the page held, readable or not (0 is the end of a listing)."""
        return len(self.items) + len(self.bad_items)


@dataclass(frozen=True)
class FoundJobs:
    """Search by name's answer, parsed: the jobs, and the items that are no job we can read."""

    jobs: tuple[Job, ...]
    bad_items: tuple[BadSearchItem, ...] = ()


PageReuse = Callable[[bytes], SearchPage | None]
"""Given the digest of a Search Jobs answer's body, the page parsed from the same bytes before, if kept.

The page it returns (its ``digest`` the one asked about) is used as it is: the body is not decoded, nor its
items encoded and hashed, again. The request, and every check of the response, happen all the same.
"""


def body_digest(body: bytes) -> bytes:
    """The digest a ``SearchPage`` carries of the body it was parsed from."""
    return hashlib.blake2b(body, digest_size=16).digest()


# One encoder for every item: json.dumps with arguments builds a new one at each call (a tenth of the
# listing's CPU at rest).
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=True)


def search_page(answer: list[Any], digest: bytes = b"") -> SearchPage:
    """The page the items of a search answer make: each item with a job id, as compact JSON and a digest.

    ``digest`` is that of the body the items were decoded from (``body_digest``).
    """
    items: list[SearchItem] = []
    bad: list[BadSearchItem] = []
    for index, item in enumerate(answer):
        job_id = _item_job_id(item)
        if job_id is None:
            bad.append(BadSearchItem(None, f"item {index}: not a job (no JobProperties.JobID GUID)"))
            continue
        try:
            # ASCII (json.dumps escapes the rest), compact: about 1 KB a job.
            text = _COMPACT_JSON.encode(item).encode("ascii")
        except (RecursionError, ValueError, TypeError):
            bad.append(BadSearchItem(job_id, f"item {index}: nested too deeply"))
            continue
        items.append(SearchItem(job_id, hashlib.blake2b(text, digest_size=16).digest(), text))
    return SearchPage(tuple(items), tuple(bad), digest)


class JobsApi:
    """The job endpoints over one transport and one token manager."""

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

    def search_jobs(
        self, expression: str, page: int, page_size: int, reuse: PageReuse | None = None
    ) -> SearchPage:
        """One page of Search Jobs: ``expression`` is sent verbatim as ``Attributes``; pages count from 0.

        When ``reuse`` has a page for the answer's digest, that page is the result, not parsed again.
        """
        params = {"Attributes": expression, "page": str(page), "pagesize": str(page_size)}
        path = SEARCH_JOBS.url_path()
        response = self._transport.call(SEARCH_JOBS, path, self._tokens, params=params)
        return self._search_page(response, SEARCH_JOBS, path, reuse)

    def search_job_name(self, name: str) -> FoundJobs:
        """Search job by name: the job whose name is exactly ``name`` (CCS compares it), parsed."""
        if not name.strip():
            raise ConfigError("job name must not be empty", field="name")
        path = SEARCH_JOB_NAME.url_path()
        response = self._transport.call(SEARCH_JOB_NAME, path, self._tokens, params={"jobname": name})
        page = self._search_page(response, SEARCH_JOB_NAME, path)
        jobs: list[Job] = []
        bad = list(page.bad_items)
        for item in page.items:
            try:
                jobs.append(self.search_item_job(item))
            except BadResponseError as exc:
                bad.append(BadSearchItem(item.job_id, exc.message))
        return FoundJobs(tuple(jobs), tuple(bad))

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

    def run_job(self, job_id: str) -> MutationResult:
        """Run a job now (``{"Operation": "execute"}``); the result holds the new run's id if CCS said it."""
        path = RUN_JOB.url_path(job_id=checked_job_id(job_id))
        return self._operation(RUN_JOB, path, "execute")

    def abort_run(self, run_id: str) -> MutationResult:
        """Abort a run in progress by its JobRunID (``{"Operation": "abort"}``)."""
        path = ABORT_RUN.url_path(run_id=checked_run_id(run_id))
        return self._operation(ABORT_RUN, path, "abort")

    def _operation(self, endpoint: Endpoint, path: str, operation: str) -> MutationResult:
        response = self._transport.call(endpoint, path, self._tokens, json={"Operation": operation})
        if not 200 <= response.status_code < 300:
            raise BadResponseError(
                f"answered {response.status_code} where a 2xx was expected; the {operation} may or may not "
                "have been carried out",
                method=endpoint.method,
                path=path,
                status=response.status_code,
            )
        body: Any = None
        if response.content.strip():
            try:
                body = json_body(response, endpoint.method, path)
            except BadResponseError:
                body = None  # a 2xx is success whatever its body; keep what it said as text
        if not isinstance(body, dict):
            text = server_message(response) if response.content.strip() else ""
            return MutationResult(response.status_code, message=self._tokens.redact(text) or None)
        fields = {str(key).lower(): value for key, value in body.items()}
        message = fields.get("message")
        return MutationResult(
            response.status_code,
            message=self._one_line(message) if isinstance(message, str) else None,
            job_id=guid_or_none(fields.get("jobid")),
            run_id=guid_or_none(fields.get("jobrunid")),
        )

    def _one_line(self, text: str) -> str | None:
        return self._tokens.redact(" ".join(text.split())[:_OPERATION_MESSAGE_LIMIT]) or None

    def search_item_job(self, item: SearchItem) -> Job:
        """The job a search item holds; BadResponseError naming the field when it holds none."""
        path = SEARCH_JOBS.url_path()
        try:
            return Job.model_validate(json.loads(item.text))
        except ValidationError as exc:
            detail = self._tokens.redact(describe_validation_error(exc))
            message = f"search answer: job {item.job_id}: {detail}"
        except (RecursionError, ValueError):
            message = f"search answer: job {item.job_id}: not a job object that can be read"
        raise BadResponseError(message, method=SEARCH_JOBS.method, path=path, status=200)

    def _search_page(
        self, response: requests.Response, endpoint: Endpoint, path: str, reuse: PageReuse | None = None
    ) -> SearchPage:
        # The parse is a function of the body's bytes alone: a page parsed from the same bytes is this one.
        digest = body_digest(response.content)
        kept = reuse(digest) if reuse is not None else None
        if kept is not None and kept.digest == digest:
            return kept
        body = json_body(response, endpoint.method, path) if response.content.strip() else None
        items = _search_items(body)
        if items is None:
            raise BadResponseError(
                "search answer is neither a JSON array of jobs nor an object holding one",
                method=endpoint.method,
                path=path,
                status=response.status_code,
            )
        return search_page(items, digest)

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


def _search_items(body: Any) -> list[Any] | None:
    """The items of a search answer (None when it has no recognisable shape); ``null`` is no items."""
    if body is None:
        return []
    if isinstance(body, list):
        return body
    if not isinstance(body, dict):
        return None
    if "JobProperties" in body:  # a single job, not wrapped in a list
        return [body]
    lists = {str(key).lower(): value for key, value in body.items() if isinstance(value, list)}
    for key in _WRAPPER_KEYS:
        if key in lists:
            return lists[key]
    if len(lists) == 1:
        return next(iter(lists.values()))
    return None


def _item_job_id(item: Any) -> str | None:
    """The GUID a search item names, if it names one, to say which job a bad item was."""
    props = item.get("JobProperties") if isinstance(item, dict) else None
    return guid_or_none(props.get("JobID") if isinstance(props, dict) else None)
