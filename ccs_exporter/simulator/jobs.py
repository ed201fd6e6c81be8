"""The simulator's job store: jobs and their runs, rendered as the CCS payloads on each request.

Jobs and runs are kept as compact slotted records with their DateTimes already formatted, so 10,000
jobs are cheap to build and hold; the search and jobruns payloads are assembled per request. One lock
guards everything; nested config blocks are replaced, never changed in place, so a payload built under
the lock can be serialised after it is released.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

from ccs_exporter.simulator.validation import (
    CONFIG_JOB_TYPES,
    ApiError,
    JobDefinition,
    default_schedule,
    validate_create,
    validate_update,
)

NEVER = "0001-01-01T00:00:00"
# CCS purges old run history; the simulator keeps this many runs per job so long runs stay bounded.
MAX_RUNS_PER_JOB = 25
NOT_AUTHORIZED = "You are not authorized to perform this task. Access is denied."

STATUS_PENDING = 1
STATUS_EXECUTING = 2
STATUS_COMPLETED = 4
STATUS_FAULTED = 5
STATUS_ABORTED = 7

_IST = timezone(timedelta(hours=5, minutes=30))
_PST = timezone(timedelta(hours=-8))
TIME_STYLES = ("utc", "offset", "dotnet", "mixed")


def utc_now() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(timezone.utc)


def format_time(moment: datetime, style: str, role: str = "stamp") -> str:
    """Render a DateTime in one of the shapes the vendor pages show.

    ``utc``: naive UTC (``2026-10-01T05:44:42``); ``offset``: with ``+05:30``; ``dotnet``: .NET's 7-digit
    fraction with ``-08:00``; ``mixed``: like the jobruns sample, starts with ``+05:30`` and ends naive UTC.
    """
    if style == "mixed":
        style = "offset" if role == "start" else "utc"
    if style == "offset":
        return moment.astimezone(_IST).replace(microsecond=0).isoformat()
    if style == "dotnet":
        local = moment.astimezone(_PST)
        seventh = (local.microsecond * 7) % 10
        return f"{local:%Y-%m-%dT%H:%M:%S}.{local.microsecond:06d}{seventh}-08:00"
    return f"{moment.astimezone(timezone.utc):%Y-%m-%dT%H:%M:%S}"


class RunMessage(NamedTuple):
    """One entry of a run's ``JobMessages``."""

    DateTime: str
    Message: str
    MessageDetails: str | None
    Category: str
    Asset: str | None
    AssetType: str | None
    AssetOwner: str | None


_MESSAGE_TEMPLATES: dict[str, tuple[tuple[str, str], ...]] = {
    "Error": (
        (
            "Windows Data Collector: query returned with message(s).",
            "The credentials for asset have not been configured. "
            "Please configure credentials using platform configuration.",
        ),
        (
            "UNIX Data Collector: connection failed.",
            "The asset did not answer on port 22 within the timeout.",
        ),
    ),
    "Warning": (
        ("Asset timed out.", "Data collection on the asset exceeded AssetTimeOut and was skipped."),
        ("Stale data used.", "Collected data older than the incremental period was evaluated."),
    ),
    "Information": (
        ("Evaluation completed.", "All checks of the standard were evaluated."),
        ("Data collection completed.", "Data was collected from every reachable asset."),
    ),
}
_ASSETS = (
    ("CORP\\10.20.0.11", "Windows Machine"),
    ("CORP\\10.20.0.12", "Windows Machine"),
    ("lnx-web-01.corp.example", "UNIX Machine"),
    ("CORP\\sql-01", "SQL Server Database"),
)


def build_messages(counts: Mapping[str, int], at: str, owner: str | None) -> tuple[RunMessage, ...]:
    """Messages of the given categories (``{"Error": 2, "Warning": 1}``), from fixed templates."""
    messages: list[RunMessage] = []
    for category, count in counts.items():
        templates = _MESSAGE_TEMPLATES.get(category, ((f"{category} message.", None),))
        for index in range(max(0, int(count))):
            text, details = templates[index % len(templates)]
            asset, asset_type = _ASSETS[(len(messages) + index) % len(_ASSETS)]
            messages.append(RunMessage(at, text, details, category, asset, asset_type, owner))
    return tuple(messages)


@dataclass(slots=True)
class StoredRun:
    """One run of a job; ``end`` is None while it is pending or executing."""

    run_id: str
    status: int
    start: str
    end: str | None = None
    messages: tuple[RunMessage, ...] = ()
    summary: str | None = None
    status_details: str | None = None
    custom_status_text: str | None = None
    exception: str | None = None

    @property
    def running(self) -> bool:
        return self.end is None

    def payload(self, show_messages: bool) -> dict[str, Any]:
        return {
            "Exception": self.exception,
            "ActivityStatusList": None,
            "CustomStatusText": self.custom_status_text,
            "JobEndTime": self.end,
            "JobStartTime": self.start,
            "JobSummary": self.summary,
            "Status": self.status,
            "StatusDetails": self.status_details,
            "JobRunID": self.run_id,
            "MessageCount": len(self.messages),
            "JobMessages": [message._asdict() for message in self.messages] if show_messages else None,
        }


@dataclass(slots=True)
class StoredJob:
    """A job as CCS holds it: properties, config details (None for other job types) and runs."""

    job_id: str
    name: str
    job_type: str
    owner: str
    created: str
    modified: str
    is_system: bool = False
    config: dict[str, Any] | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    runs: list[StoredRun] = field(default_factory=list)
    last_run_date: str = NEVER
    last_run_status: int = 0
    time_style: str = "utc"
    # Bumped whenever the run progression schedules this job, so stale scheduled events are ignored.
    schedule_seq: int = 0

    def properties(self) -> dict[str, Any]:
        return {
            "IsSystemJob": self.is_system,
            "JobCreationTime": self.created,
            "JobID": self.job_id,
            "JobModifiedTime": self.modified,
            "JobType": self.job_type,
            "LastRunDate": self.last_run_date,
            "LastRunStatus": self.last_run_status,
            "Name": self.name,
            "Owner": self.owner,
        }

    def payload(self) -> dict[str, Any]:
        return {"JobProperties": self.properties(), "JobConfigDetails": self.config}

    def runs_payload(self, count: int, show_messages: bool) -> dict[str, Any]:
        newest_first = self.runs[::-1] if count == 0 else self.runs[: -count - 1 : -1]
        return {
            "TotalJobRuns": len(self.runs),
            "JobID": self.job_id,
            "JobStatusInfo": [run.payload(show_messages) for run in newest_first],
        }

    @property
    def running_run(self) -> StoredRun | None:
        """The latest run when it has not finished."""
        return self.runs[-1] if self.runs and self.runs[-1].running else None

    def refresh_last_run(self) -> None:
        """LastRunDate/LastRunStatus from the latest run (its start time), or "never"."""
        if self.runs:
            self.last_run_date = self.runs[-1].start
            self.last_run_status = self.runs[-1].status
        else:
            self.last_run_date = NEVER
            self.last_run_status = 0


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
        self.on_job_added: Callable[[StoredJob], None] | None = None

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

    # --- building ----------------------------------------------------------------------------------

    def new_id(self) -> str:
        """A GUID from the seeded generator, so generated ids are reproducible."""
        with self.lock:
            return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def add(self, job: StoredJob) -> None:
        with self.lock:
            self._jobs[job.job_id] = job
            if self.on_job_added is not None:
                self.on_job_added(job)

    def add_many(self, jobs: Iterable[StoredJob]) -> None:
        with self.lock:
            for job in jobs:
                self._jobs[job.job_id] = job

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
                raise ValueError(f"job {job_id} already exists")
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
                self.drop_history(job)

    def remove(self, job_id: str) -> None:
        with self.lock:
            self.get(job_id)
            del self._jobs[job_id]

    @staticmethod
    def drop_history(job: StoredJob) -> None:
        """Delete the run history; a run still in progress stays (its data is not history yet)."""
        job.runs = [run for run in job.runs if run.running]
        job.refresh_last_run()

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
            run.summary = _SUMMARIES.get(status)
            job.refresh_last_run()
            return run

    def _append_run(self, job: StoredJob, run: StoredRun) -> None:
        job.runs.append(run)
        if len(job.runs) > MAX_RUNS_PER_JOB:
            del job.runs[: len(job.runs) - MAX_RUNS_PER_JOB]
        job.refresh_last_run()

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


_SUMMARIES = {
    STATUS_COMPLETED: "Job completed successfully.",
    STATUS_FAULTED: "Job completed with errors.",
    STATUS_ABORTED: "Job was aborted.",
}


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
