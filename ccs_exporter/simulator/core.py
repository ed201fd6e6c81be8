"""The ``Simulator``: a CCS jobs API on a local port, with faults, request counts and scenario control."""

from __future__ import annotations

import json
import random
import ssl
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any

from ccs_exporter.models import normalize_guid
from ccs_exporter.simulator.api import CcsApi
from ccs_exporter.simulator.control import ControlApi
from ccs_exporter.simulator.faults import DEFAULT_SEARCH_PAGE_SIZE_CAP, Faults, RequestLog, RequestRecord
from ccs_exporter.simulator.jobs import JobStore
from ccs_exporter.simulator.live import move_jobs, whole_seconds
from ccs_exporter.simulator.progression import RunProgression
from ccs_exporter.simulator.records import utc_now
from ccs_exporter.simulator.samples import GENERATED_EPOCH, generated_jobs, sample_captured_at, sample_jobs
from ccs_exporter.simulator.server import HttpServer
from ccs_exporter.simulator.tokens import TokenStore
from ccs_exporter.simulator.validation import ApiError, guid

DEFAULT_USERNAME = "CCS\\demo"
DEFAULT_PASSWORD = "demo-password"


class Simulator:
    """A stand-in CCS jobs API serving from background threads; see the package docstring.

    ``jobs``: None for the built-in dozen sample jobs, an int N for N generated jobs. ``run_interval``:
    None or 0 keeps every run as it is (deterministic payloads); seconds make every job start a run
    about that often. ``seed`` makes ids, outcomes and message counts reproducible.
    ``search_page_size_cap``: Search Jobs silently answers at most this many jobs per page.
    ``live``: the samples move so that their capture instant (``captured_at``) is now, and jobs with a
    schedule start a run at each occurrence (with ``run_interval`` too, only the others run on it).
    Without it the samples stand as of ``CapturedAt`` in ``sample_jobs.json`` (2026-11-23T08:00:00Z).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        username: str = DEFAULT_USERNAME,
        password: str = DEFAULT_PASSWORD,
        password_encoding: str = "base64",
        access_token_seconds: float = 3600.0,
        refresh_token_seconds: float = 5400.0,
        jobs: int | None = None,
        run_interval: float | None = None,
        seed: int = 0,
        latency_seconds: float = 0.0,
        search_page_size_cap: int = DEFAULT_SEARCH_PAGE_SIZE_CAP,
        live: bool = False,
        tls_cert: str | None = None,
        tls_key: str | None = None,
    ) -> None:
        if password_encoding not in ("base64", "plain"):
            raise ValueError("password_encoding must be base64 or plain")
        if jobs is not None and jobs < 0:
            raise ValueError("jobs must be 0 or more")
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if live and jobs is not None:
            raise ValueError("live applies to the sample jobs, not to generated ones")
        self.host = host
        self.username = username
        self.password = password
        self.faults = Faults(latency_seconds, search_page_size_cap)
        self._stopping = threading.Event()
        self._log = RequestLog()
        self._tokens = TokenStore(access_token_seconds, refresh_token_seconds)
        self._store = JobStore(username, random.Random(seed))
        self.captured_at = self._add_initial_jobs(jobs, seed, live)
        self._progression: RunProgression | None = None
        if run_interval or live:
            self._progression = RunProgression(
                self._store, run_interval, seed, self._stopping, follow_schedules=live
            )
        self._api = CcsApi(
            username=username,
            password=password,
            password_encoding=password_encoding,
            store=self._store,
            tokens=self._tokens,
            faults=self.faults,
            log=self._log,
            stopping=self._stopping,
            seed=seed,
            control=ControlApi(self._store, self.faults, self._log, self._tokens).handle,
        )
        self._ssl_context: ssl.SSLContext | None = None
        if tls_cert is not None and tls_key is not None:
            self._ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._ssl_context.load_cert_chain(tls_cert, tls_key)
        self._requested_port = port
        self._server: HttpServer | None = None

    def _add_initial_jobs(self, jobs: int | None, seed: int, live: bool) -> datetime:
        """Fill the store with the samples (moved to now when ``live``) or ``jobs`` generated ones.

        Returns the instant the jobs stand as of.
        """
        if jobs is not None:
            self._store.add_many(generated_jobs(jobs, self.username, random.Random(seed)))
            return GENERATED_EPOCH
        samples = sample_jobs(self.username)
        captured_at = sample_captured_at()
        if live:
            now = utc_now()
            move_jobs(samples, captured_at, now)
            captured_at += whole_seconds(now, captured_at)
        self._store.add_many(samples)
        return captured_at

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> Simulator:
        """Listen and serve from background threads; return self."""
        if self._server is not None:
            raise RuntimeError("the simulator is already started")
        self._server = HttpServer(
            self.host, self._requested_port, self._api.handle, self._stopping, self._ssl_context
        )
        self._server.start()
        if self._progression is not None:
            self._store.on_job_added = self._progression.job_added
            self._store.on_run_queued = self._progression.run_queued
            self._store.on_job_changed = self._progression.job_changed
            self._progression.start()
        return self

    def stop(self) -> None:
        """Close the listener and every open connection, and join the threads (well under a second)."""
        self._stopping.set()
        if self._server is not None:
            self._server.stop()
        if self._progression is not None:
            self._progression.stop()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the simulator is not started")
        return self._server.port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (https with TLS); the client appends ``/ccs/api/v1``."""
        scheme = "https" if self._ssl_context is not None else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    @property
    def job_ids(self) -> list[str]:
        """The ids of the jobs now held (lower-case GUIDs, in the order they were added)."""
        return self._store.ids()

    # --- tokens and counting -----------------------------------------------------------------------

    def revoke_tokens(self) -> None:
        """Invalidate every access and refresh token, as a CCS restart does."""
        self._tokens.revoke_all()

    def issued_tokens(self) -> list[str]:
        """Every access and refresh token issued since the last revoke (to prove none leaks anywhere)."""
        return self._tokens.issued()

    @property
    def requests(self) -> list[RequestRecord]:
        """The requests received (the newest 100,000), control requests included."""
        return self._log.records()

    def request_count(self, endpoint: str | None = None) -> int:
        """Requests to one endpoint template ("token", "job", ...), or all but "control" when None."""
        return self._log.count(endpoint)

    def reset_requests(self) -> None:
        self._log.reset()

    def stats(self) -> dict[str, Any]:
        """Request counts by endpoint and status, as ``GET /_simulator/stats`` answers."""
        return self._log.stats()

    # --- scenario control --------------------------------------------------------------------------

    def add_job(
        self,
        name: str,
        *,
        job_type: str = "CHAINED_EVALUATIONJOB",
        owner: str | None = None,
        system: bool = False,
        job_id: str | None = None,
        description: str = "",
    ) -> str:
        """Add a never-run job as if created in the console; return its id.

        ``job_type`` is the internal name; CHAINED_EVALUATIONJOB, COLLECTIONJOB and EVALUATIONJOB get
        default config details, any other type (e.g. REPORTJOB) is properties-only. ``owner`` defaults
        to the simulator's user. Raises ValueError for a duplicate id or name.
        """
        try:
            return self._store.add_job(
                name,
                job_type=job_type,
                owner=owner,
                is_system=system,
                job_id=None if job_id is None else normalize_guid(job_id),
                description=description,
            )
        except ApiError as exc:
            raise ValueError(exc.message) from None

    def start_run(self, job_id: str) -> None:
        """Start a run in status 2 (executing) with no end time; ValueError if one is in progress."""
        self._scenario(lambda: self._store.start_run(guid(job_id)))

    def finish_run(self, job_id: str, status: int, messages: Mapping[str, int] | None = None) -> None:
        """Finish the run in progress, or append one that started 5 s ago and ended now.

        ``status``: 4 completed, 5 faulted, 7 aborted...; ``messages`` like ``{"Error": 2, "Warning": 1}``.
        LastRunDate (the run's start) and LastRunStatus follow.
        """
        self._scenario(lambda: self._store.finish_run(guid(job_id), status, messages))

    def set_job_name(self, job_id: str, name: str) -> None:
        """Rename a job as in the console (JobModifiedTime becomes now)."""
        self._scenario(lambda: self._store.edit(guid(job_id), {"JobName": name}))

    def edit_job(self, job_id: str, details: Mapping[str, Any]) -> None:
        """Change a job as in the console: ``details`` are JobDetails fields, checked as Update Job does."""
        self._scenario(lambda: self._store.edit(guid(job_id), details))

    def remove_job(self, job_id: str) -> None:
        """Delete a job as in the console (any owner, system jobs too)."""
        self._scenario(lambda: self._store.remove(guid(job_id)))

    def job_snapshot(self, job_id: str) -> dict[str, Any]:
        """The job as search-by-id returns it (a copy); KeyError when unknown."""
        try:
            payload = self._store.job_payload(guid(job_id))
        except ApiError:
            raise KeyError(job_id) from None
        return _deep_copy(payload)

    def job_runs_snapshot(self, job_id: str, count: int = 0, show_messages: bool = True) -> dict[str, Any]:
        """The job's runs as the jobruns endpoint returns them (a copy); KeyError when unknown."""
        try:
            payload = self._store.runs_payload(guid(job_id), count, show_messages)
        except ApiError:
            raise KeyError(job_id) from None
        return _deep_copy(payload)

    @staticmethod
    def _scenario(action: Callable[[], object]) -> None:
        try:
            action()
        except ApiError as exc:
            if exc.status == 404:
                raise KeyError(exc.message) from None
            raise ValueError(exc.message) from None


def _deep_copy(payload: dict[str, Any]) -> dict[str, Any]:
    copied: dict[str, Any] = json.loads(json.dumps(payload))
    return copied
