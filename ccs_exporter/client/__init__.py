"""The CCS jobs REST API client: the only place that talks HTTP to CCS.

Three parts, composed by ``CcsClient``: the transport (``transport.py``: pooled session, retries, body
cap, error mapping), the token manager (``tokens.py``: login, refresh, login backoff, password reload)
and the endpoints (``api.py``: paths and models; mutations return a ``MutationResult``). Nothing above
it sees a ``requests`` exception, and no error text it builds holds a token or the password.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

from pydantic import SecretStr

from ccs_exporter.client.api import (
    ABORT_RUN,
    CREATE_JOB,
    DELETE_JOB,
    JOB,
    JOB_RUNS,
    RUN_JOB,
    SEARCH_JOB_NAME,
    SEARCH_JOBS,
    UPDATE_JOB,
    BadSearchItem,
    FoundJobs,
    JobsApi,
    MutationResult,
    PageReuse,
    SearchItem,
    SearchPage,
    body_digest,
    search_page,
)
from ccs_exporter.client.tokens import LOGIN_BACKOFF_MAX_SECONDS, LOGIN_BACKOFF_SECONDS, TOKEN, TokenManager
from ccs_exporter.client.transport import API_PREFIX, MAX_RESPONSE_BYTES, Endpoint, RequestObserver, Transport
from ccs_exporter.models import CreateJobRequest, Job, JobDetailsUpdate, JobRuns

if TYPE_CHECKING:
    from ccs_exporter.settings.config import Settings

__all__ = [
    "ABORT_RUN",
    "API_PREFIX",
    "CREATE_JOB",
    "DELETE_JOB",
    "JOB",
    "JOB_RUNS",
    "LOGIN_BACKOFF_MAX_SECONDS",
    "LOGIN_BACKOFF_SECONDS",
    "MAX_RESPONSE_BYTES",
    "RUN_JOB",
    "SEARCH_JOBS",
    "SEARCH_JOB_NAME",
    "TOKEN",
    "UPDATE_JOB",
    "BadSearchItem",
    "CcsClient",
    "Endpoint",
    "FoundJobs",
    "MutationResult",
    "PageReuse",
    "RequestObserver",
    "SearchItem",
    "SearchPage",
    "body_digest",
    "search_page",
]


class CcsClient:
    """A thread-safe client for the CCS jobs API; share one instance between workers."""

    def __init__(
        self,
        base_url: str,
        username: str,
        password: SecretStr,
        *,
        password_encoding: str = "base64",
        verify: bool | str = True,
        timeout: float = 30.0,
        pool_size: int = 8,
        read_retries: int = 2,
        backoff_seconds: float = 0.5,
        observer: RequestObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        password_source: Callable[[], str] | None = None,
    ) -> None:
        transport = Transport(
            base_url,
            verify=verify,
            timeout=timeout,
            pool_size=pool_size,
            read_retries=read_retries,
            backoff_seconds=backoff_seconds,
            observer=observer,
            max_response_bytes=max_response_bytes,
        )
        try:
            self._tokens = TokenManager(
                transport,
                username,
                password,
                password_encoding=password_encoding,
                password_source=password_source,
                clock=clock,
            )
        except BaseException:
            transport.close()
            raise
        self._transport = transport
        self._api = JobsApi(transport, self._tokens)

    @classmethod
    def from_settings(cls, settings: Settings, observer: RequestObserver | None = None) -> CcsClient:
        """A client configured from ``Settings`` (pool sized to the concurrency)."""
        return cls(
            settings.url,
            settings.username,
            SecretStr(settings.password_value()),
            password_encoding=settings.password_encoding,
            verify=settings.tls_verify,
            timeout=settings.request_timeout_seconds,
            pool_size=settings.concurrency,
            observer=observer,
            password_source=settings.password_value if settings.password_file is not None else None,
            max_response_bytes=(
                MAX_RESPONSE_BYTES if settings.max_response_bytes is None else settings.max_response_bytes
            ),
        )

    @property
    def username(self) -> str:
        """The CCS account this client acts as."""
        return self._tokens.username

    @property
    def logins(self) -> int:
        """How many password logins this client has made."""
        return self._tokens.logins

    @property
    def refreshes(self) -> int:
        """How many refresh-token grants this client has made."""
        return self._tokens.refreshes

    @property
    def requests_sent(self) -> int:
        """How many HTTP requests this client has attempted, token requests and retries included."""
        return self._transport.requests_sent

    def secrets(self) -> list[str]:
        """The password's forms and every token issued to this client: what must not be shown or kept
        when CCS echoes it back."""
        return self._tokens.secrets()

    def authenticate(self) -> None:
        """Make sure a valid access token is held: refresh or log in now if needed (raises AuthError)."""
        self._tokens.access_token()

    def get_job(self, job_id: str) -> Job:
        """Search job by id: the job's properties and, for CER/collection/evaluation jobs, its config."""
        return self._api.get_job(job_id)

    def get_job_runs(self, job_id: str, count: int = 1, show_messages: bool = False) -> JobRuns:
        """The latest ``count`` runs of a job (0 means all), with their messages if asked."""
        return self._api.get_job_runs(job_id, count, show_messages)

    def search_jobs(
        self, expression: str, page: int = 0, page_size: int = 100, reuse: PageReuse | None = None
    ) -> SearchPage:
        """One page of Search Jobs (``expression`` sent verbatim as ``Attributes``; pages count from 0).

        Its jobs come unparsed (``SearchItem``): ``search_item_job`` reads one. When ``reuse`` has the
        page parsed from the same bytes before, that page is the result (see ``PageReuse``).
        """
        return self._api.search_jobs(expression, page, page_size, reuse)

    def search_item_job(self, item: SearchItem) -> Job:
        """The job a search item holds; BadResponseError naming the field when it holds none."""
        return self._api.search_item_job(item)

    def search_job_name(self, name: str) -> FoundJobs:
        """Search job by name: the job whose name is exactly ``name``, parsed."""
        return self._api.search_job_name(name)

    def create_job(self, request: CreateJobRequest) -> MutationResult:
        """Create a job; the result carries its new JobID."""
        return self._api.create_job(request)

    def update_job(self, job_id: str, details: JobDetailsUpdate) -> MutationResult:
        """Replace the given fields of a job's definition."""
        return self._api.update_job(job_id, details)

    def delete_job(self, job_id: str, delete_job: bool = True) -> MutationResult:
        """Delete a job (``delete_job=False``: only its run history); the result holds CCS's message."""
        return self._api.delete_job(job_id, delete_job)

    def run_job(self, job_id: str) -> MutationResult:
        """Run a job now; the result holds the new run's id when CCS's answer names it."""
        return self._api.run_job(job_id)

    def abort_run(self, run_id: str) -> MutationResult:
        """Abort a run in progress by its JobRunID (not the job's id)."""
        return self._api.abort_run(run_id)

    def close(self) -> None:
        """Close the pooled connections."""
        self._transport.close()

    def __enter__(self) -> CcsClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
