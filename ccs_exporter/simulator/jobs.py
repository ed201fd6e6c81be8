"""The simulator's job store: jobs and their runs, rendered as the CCS payloads on each request.

Jobs and runs are kept as compact slotted records (``records.py``), so 10,000 jobs are cheap to build
and hold; the search and jobruns payloads are assembled per request. One lock guards everything;
nested config blocks are replaced, never changed in place, so a payload built under the lock can be
serialised after it is released. Every change bumps ``version``, which keys the search result cache.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from ccs_exporter.simulator.records import (
    STATUS_ABORTED,
    STATUS_EXECUTING,
    STATUS_PENDING,
    SUMMARIES,
    RunMessage,
    StoredJob,
    StoredRun,
    build_messages,
    format_time,
    utc_now,
)
from ccs_exporter.simulator.search import Condition, SearchIndex
from ccs_exporter.simulator.validation import (
    CONFIG_JOB_TYPES,
    ApiError,
    JobDefinition,
    default_schedule,
    validate_create,
    validate_update,
)

# CCS purges old run history; the simulator keeps this many runs per job so long runs stay bounded.
MAX_RUNS_PER_JOB = 25
NOT_AUTHORIZED = "You are not authorized to perform this task. Access is denied."


def job_not_found(job_id: str) -> ApiError:
    return ApiError(404, f"Job for specified JobID '{job_id}' not found.")


class JobStore:
    """All jobs of the simulator, thread-safe; the CCS API handlers and the scenario methods use it."""

    def __init__(
        self,
        username: str,
        rng: random.Random,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.lock = threading.RLock()
        self._jobs: dict[str, StoredJob] = {}
        self._username = username
        self._rng = rng
        self._clock = clock
        self._index = SearchIndex()
        self.version = 0
        self.on_job_added: Callable[[StoredJob], None] | None = None
        self.on_run_queued: Callable[[StoredJob], None] | None = None
        self.on_job_changed: Callable[[StoredJob], None] | None = None

    # --- reading ---------------------------------------------------------------------------------

    def ids(self) -> list[str]:
        with self.lock:
            return list(self._jobs)

    def __len__(self) -> int:
        return len(self._jobs)

    def get(self, job_id: str) -> StoredJob:
        """The job, or ApiError 404 (``job_id`` must already be a lower-case GUID)."""
        job = self._jobs.get(job_id)
        if job is None:
            raise job_not_found(job_id)
        return job

    def job_payload(self, job_id: str) -> dict[str, Any]:
        with self.lock:
            return self.get(job_id).payload()

    def runs_payload(self, job_id: str, count: int, show_messages: bool) -> dict[str, Any]:
        with self.lock:
            return self.get(job_id).runs_payload(count, show_messages)

    def search(self, conditions: tuple[Condition, ...], page: int, size: int) -> list[dict[str, Any]]:
        """Search Jobs: one page of the matching jobs, in the order they were added."""
        with self.lock:
            matching = self._index.matching(self._jobs, conditions, self.version)
            start = page * size
            return [self._jobs[job_id].payload() for job_id in matching[start : start + size]]

    def search_by_name(self, name: str) -> list[dict[str, Any]]:
        """Search job by name: the job whose name is exactly ``name`` (case included), if any."""
        with self.lock:
            return [job.payload() for job in self._jobs.values() if job.name == name]

    # --- building ----------------------------------------------------------------------------------

    def new_id(self) -> str:
        """A GUID from the seeded generator, so generated ids are reproducible; never one already held.

        Generated jobs draw from a generator with the same seed, so the first draws repeat their ids.
        """
        with self.lock:
            while True:
                job_id = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
                if job_id not in self._jobs:
                    return job_id

    def add(self, job: StoredJob) -> None:
        with self.lock:
            self._jobs[job.job_id] = job
            self.version += 1
            if self.on_job_added is not None:
                self.on_job_added(job)

    def add_many(self, jobs: Iterable[StoredJob]) -> None:
        with self.lock:
            for job in jobs:
                self._jobs[job.job_id] = job
            self.version += 1

    def add_job(
        self,
        name: str,
        *,
        job_type: str,
        owner: str | None,
        is_system: bool,
        job_id: str | None,
        description: str,
    ) -> str:
        with self.lock:
            if job_id is None:
                job_id = self.new_id()
            if job_id in self._jobs:
                raise ApiError(400, f"job {job_id} already exists")
            self._check_unique_name(name, None)
            stamp = format_time(self._clock(), "utc")
            config = None
            if job_type in CONFIG_JOB_TYPES.values():
                config = default_config(name, description, stamp)
            self.add(
                StoredJob(
                    job_id=job_id,
                    name=name,
                    job_type=job_type,
                    owner=self._username if owner is None else owner,
                    created=stamp,
                    modified=stamp,
                    is_system=is_system,
                    config=config,
                )
            )
            return job_id

    # --- the CCS mutations -------------------------------------------------------------------------

    def create(self, body: Any, owner: str) -> str:
        """Create Job: validate the body as CCS documents it, store the job, return its id."""
        job_type, definition = validate_create(body)
        assert definition.name is not None  # validate_create requires JobName
        with self.lock:
            self._check_unique_name(definition.name, None)
            now = self._clock()
            stamp = format_time(now, "utc")
            job = StoredJob(
                job_id=self.new_id(),
                name=definition.name,
                job_type=job_type,
                owner=owner,
                created=stamp,
                modified=stamp,
                config=definition.config(stamp),
                settings=definition.settings,
            )
            if definition.run_now:
                job.runs.append(StoredRun(self._run_id(), STATUS_PENDING, format_time(now, "utc")))
                job.refresh_last_run()
            self.add(job)
            return job.job_id

    def update(self, job_id: str, details: Any) -> None:
        """Update Job: replace the given fields of a CER/collection/evaluation job."""
        with self.lock:
            job = self.get(job_id)
            if job.is_system:
                raise ApiError(403, NOT_AUTHORIZED)
            if job.config is None or job.job_type not in CONFIG_JOB_TYPES.values():
                raise ApiError(400, f"Given job type '{job.job_type}' not supported.")
            changes = validate_update(details, job.config)
            if changes.name is not None:
                self._check_unique_name(changes.name, job.job_id)
            self._apply(job, changes)

    def edit(self, job_id: str, details: Mapping[str, Any]) -> None:
        """A change made in the CCS console: any job, the same field rules as Update Job."""
        with self.lock:
            job = self.get(job_id)
            if job.config is None:
                name = details.get("JobName")
                if not isinstance(name, str) or not name or set(details) != {"JobName"}:
                    raise ApiError(400, "Only JobName can be changed on a job without configuration.")
                self._check_unique_name(name, job.job_id)
                job.name = name
                job.modified = format_time(self._clock(), "utc")
                self.version += 1
                return
            changes = validate_update(dict(details), job.config)
            if changes.name is not None:
                self._check_unique_name(changes.name, job.job_id)
            self._apply(job, changes)

    def delete(self, job_id: str, delete_job: bool, user: str) -> None:
        """Delete Job: only the owner may delete, never a system job; DeleteJob=False drops the runs."""
        with self.lock:
            job = self.get(job_id)
            if job.is_system or job.owner.casefold() != user.casefold():
                raise ApiError(403, NOT_AUTHORIZED)
            if delete_job:
                del self._jobs[job_id]
            else:
                job.runs = [run for run in job.runs if run.running]
                job.refresh_last_run()
            self.version += 1

    def remove(self, job_id: str) -> None:
        with self.lock:
            self.get(job_id)
            del self._jobs[job_id]
            self.version += 1

    # --- run and abort -----------------------------------------------------------------------------

    def execute(self, job_id: str) -> tuple[StoredJob, StoredRun]:
        """Run a job now: queue a pending run; 403 for a system job, 400 when a run is in progress."""
        with self.lock:
            job = self.get(job_id)
            if job.is_system:
                raise ApiError(403, NOT_AUTHORIZED)
            if job.running_run is not None:
                raise ApiError(400, f"Job '{job_id}' is already running. Abort the run in progress first.")
            run = StoredRun(
                self._run_id(), STATUS_PENDING, format_time(self._clock(), job.time_style, "start")
            )
            self._append_run(job, run)
            if self.on_run_queued is not None:
                self.on_run_queued(job)
            return job, run

    def abort(self, run_id: str, user: str) -> tuple[StoredJob, StoredRun]:
        """Abort a run in progress by its JobRunID; 404 unknown, 403 a system job's, 400 not in progress."""
        with self.lock:
            found = next(
                ((job, run) for job in self._jobs.values() for run in job.runs if run.run_id == run_id), None
            )
            if found is None:
                raise ApiError(404, f"Job run for specified JobRunID '{run_id}' not found.")
            job, run = found
            if job.is_system:
                raise ApiError(403, NOT_AUTHORIZED)
            if not run.running:
                raise ApiError(400, f"Job run '{run_id}' is not in progress.")
            now = format_time(self._clock(), job.time_style, "end")
            note = RunMessage(now, f"Job run aborted by {user}.", None, "Information", None, None, job.owner)
            run.status = STATUS_ABORTED
            run.end = now
            run.messages = (*run.messages, note)
            run.summary = SUMMARIES[STATUS_ABORTED]
            job.refresh_last_run()
            self.version += 1
            return job, run

    # --- runs ------------------------------------------------------------------------------------

    def start_run(self, job_id: str, status: int = STATUS_EXECUTING) -> StoredRun:
        with self.lock:
            job = self.get(job_id)
            if job.running_run is not None:
                raise ApiError(409, f"Job {job_id} already has a run in progress.")
            run = StoredRun(self._run_id(), status, format_time(self._clock(), job.time_style, "start"))
            self._append_run(job, run)
            return run

    def set_running_status(self, job_id: str, status: int) -> None:
        with self.lock:
            job = self.get(job_id)
            run = job.running_run
            if run is not None:
                run.status = status
                job.refresh_last_run()
                self.version += 1

    def finish_run(
        self, job_id: str, status: int, messages: Mapping[str, int] | None = None, run_seconds: float = 5.0
    ) -> StoredRun:
        """Finish the run in progress, or append a run that started ``run_seconds`` ago and ended now."""
        if status in (STATUS_PENDING, STATUS_EXECUTING):
            raise ApiError(400, "A finished run needs a final status such as 4, 5 or 7.")
        with self.lock:
            job = self.get(job_id)
            now = self._clock()
            end = format_time(now, job.time_style, "end")
            built = build_messages(messages or {}, format_time(now, job.time_style, "start"), job.owner)
            run = job.running_run
            if run is None:
                start = format_time(now - timedelta(seconds=run_seconds), job.time_style, "start")
                run = StoredRun(self._run_id(), status, start)
                self._append_run(job, run)
            run.status = status
            run.end = end
            run.messages = built
            run.summary = SUMMARIES.get(status)
            job.refresh_last_run()
            self.version += 1
            return run

    def _append_run(self, job: StoredJob, run: StoredRun) -> None:
        job.runs.append(run)
        if len(job.runs) > MAX_RUNS_PER_JOB:
            del job.runs[: len(job.runs) - MAX_RUNS_PER_JOB]
        job.refresh_last_run()
        self.version += 1

    def _run_id(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    # --- helpers -----------------------------------------------------------------------------------

    def _check_unique_name(self, name: str, except_id: str | None) -> None:
        folded = name.casefold()
        for job in self._jobs.values():
            if job.job_id != except_id and job.name.casefold() == folded:
                raise ApiError(
                    400, f"The specified name {name} already exists. Create a job with a new name."
                )

    def _apply(self, job: StoredJob, changes: JobDefinition) -> None:
        if not changes.config_changes and not changes.settings:
            return
        assert job.config is not None
        config = dict(job.config)
        config.update(changes.config_changes)
        job.config = config
        job.settings = {**job.settings, **changes.settings}
        if changes.name is not None:
            job.name = changes.name
        job.modified = format_time(self._clock(), "utc")
        self.version += 1
        if self.on_job_changed is not None:
            self.on_job_changed(job)


def default_config(name: str, description: str, start_date: str) -> dict[str, Any]:
    """Config details for a job added without a definition (``Simulator.add_job``)."""
    return {
        "EvaluationResultViewers": [],
        "Schedule": default_schedule(start_date),
        "JobDescription": description,
        "SuccessNotification": None,
        "FailureNotification": None,
        "ShouldSendSuccessNotification": False,
        "ShouldSendFailureNotification": False,
        "JobName": name,
        "AssetsResolutionInfo": [
            {"Id": "9c135703-b76e-4eff-bfe2-8959d7ca4148", "Type": "symc-csm-AssetSystem-Asset-Wnt-Machine"}
        ],
        "Standards": ["20ed033e-ea47-4783-ad9c-01b112733e89"],
    }
