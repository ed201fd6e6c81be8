"""Reading one job: each kind of work item done through the client, giving an ``Outcome``.

Runs are fetched only when something changed since the last good fetch (LastRunDate, LastRunStatus,
JobModifiedTime) or the latest run is still pending or executing. A job's schedule and run-time limit
are derived from its ``Schedule`` block only when the block changes. A job that fails keeps its last
good values; after a 404 its values go, and a job the poller knew is handed on as deleted.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from ccs_exporter.client import CcsClient, SearchItem
from ccs_exporter.errors import (
    AuthError,
    CcsError,
    ConfigError,
    NotFoundError,
    ServerError,
    UnavailableError,
)
from ccs_exporter.models import Job, JobStatus
from ccs_exporter.polling.schedule_reading import ScheduleReading
from ccs_exporter.polling.snapshot import JobChange, JobSnapshot, epoch, summarize_runs
from ccs_exporter.polling.work import (
    JobMemory,
    KeepStale,
    LookUpLeaving,
    Outcome,
    ParseItem,
    ReadById,
    ReportBad,
    ReuseReading,
    WorkItem,
)

log = structlog.get_logger(__name__)


def error_kind(exc: Exception) -> str:
    """A short, stable name for a failure, used in logs and state-change detection."""
    if isinstance(exc, CcsError):
        return exc.kind
    if isinstance(exc, ConfigError):  # the client refuses a job id that is no GUID before sending
        return "bad_job_id"
    return "internal_error"


def reached_ccs(exc: Exception) -> bool:
    """True when CCS answered (a 4xx, or a body we could not use): it is up, the job is the problem.

    Not for an AuthError: a job request refused even after a fresh login (tokens revoked and the new
    login refused) means the exporter cannot log in, which is what ``ccs_up 0`` says.
    """
    return isinstance(exc, CcsError) and not isinstance(exc, (UnavailableError, ServerError, AuthError))


def runs_in_progress(snapshot: JobSnapshot) -> bool:
    """The latest run read, or the job's LastRunStatus, is pending or executing."""
    running = snapshot.runs is not None and snapshot.runs.running
    return running or snapshot.last_run_status in (JobStatus.PENDING, JobStatus.EXECUTING)


def _runs_key(job: Job) -> tuple[object, ...]:
    props = job.JobProperties
    return (props.LastRunDate, props.LastRunStatus, props.JobModifiedTime)


class JobReader:
    """Does one job's work item through the shared client; safe to call from the worker threads."""

    def __init__(
        self,
        client: CcsClient,
        *,
        history_window: int,
        track_changes: bool,
        clock: Callable[[], float],
    ) -> None:
        self._client = client
        self._window = history_window
        self._track_changes = track_changes
        self._clock = clock

    @staticmethod
    def needs_request(item: WorkItem, reading: JobSnapshot | None) -> bool:
        """True when the item sends a request (it then runs on a worker); ``reading`` is the job's last."""
        match item:
            case KeepStale() | ReportBad():
                return False
            case ReuseReading():
                return reading is None or reading.runs is None or runs_in_progress(reading)
            case ReadById() | ParseItem() | LookUpLeaving():
                return True

    def do(self, item: WorkItem, previous: JobMemory | None) -> Outcome:
        """Do ``item`` for a job whose memory is ``previous``; a CCS failure is the outcome's error."""
        job_id = item.job_id
        try:
            match item:
                case KeepStale(stale=stale):
                    return Outcome(
                        job_id, previous, stale.error, stale.message, reached_ccs=stale.reached_ccs
                    )
                case ReportBad(message=message):
                    return Outcome(job_id, previous, "bad_response", message)
                case LookUpLeaving():
                    return self._look_up_leaving(job_id, previous)
                case ReuseReading():
                    return self._reread_unchanged(job_id, previous)
                case ParseItem(item=found):
                    job = self._client.search_item_job(found)  # BadResponseError: bad_response
                    return self._read_job(job_id, previous, job, found)
                case ReadById():
                    return self._read_job(job_id, previous, self._client.get_job(job_id))
        except NotFoundError as exc:
            return self._gone(job_id, previous, exc)
        except (CcsError, ConfigError) as exc:
            return Outcome(job_id, previous, error_kind(exc), str(exc), reached_ccs=reached_ccs(exc))
        # Anything else (a bug, data nobody foresaw) is caught by the poller, which counts it in
        # ccs_poll_errors_total{stage="job"}: it costs this job, not the worker or the cycle.

    def _gone(
        self, job_id: str, previous: JobMemory | None, exc: NotFoundError, *, left: bool = False
    ) -> Outcome:
        """A 404 by id: the job is gone, and a job we had read is handed on as deleted."""
        before = self._remembered(job_id, previous) if previous is not None else None
        gone = JobChange(job_id, before, None) if before is not None else None
        return Outcome(job_id, None, "not_found", exc.message, change=gone, left=left)

    def _remembered(self, job_id: str, memory: JobMemory) -> Job | None:
        """The job's last definition, for a change seen: a search item's JSON is parsed only now."""
        job = memory.job
        if isinstance(job, bytes):  # it parsed when it was read: it parses the same way again
            return self._client.search_item_job(SearchItem(job_id, memory.digest or b"", job))
        return job

    def _look_up_leaving(self, job_id: str, previous: JobMemory | None) -> Outcome:
        """A discovered job no search returns any more: gone (404) or no longer matching."""
        try:
            self._client.get_job(job_id)
        except NotFoundError as exc:
            return self._gone(job_id, previous, exc, left=True)
        except (CcsError, ConfigError) as exc:
            log.warning("left_job_lookup_failed", job_id=job_id, error=error_kind(exc), message=str(exc))
            return Outcome(job_id, None, error_kind(exc), str(exc), reached_ccs=reached_ccs(exc), left=True)
        return Outcome(job_id, None, None, "no longer matches a search", left=True)

    def _reread_unchanged(self, job_id: str, previous: JobMemory | None) -> Outcome:
        """A discovered job whose search item is the one its last reading came from: that reading stands.

        Only its runs may need reading again, while one is in progress.
        """
        if previous is None or previous.snapshot is None:  # not expected: the plan checked it
            return Outcome(job_id, previous, "internal_error", "unchanged job without a reading")
        old = previous.snapshot
        if old.runs is not None and not runs_in_progress(old):
            # At rest: the memory stands, only its time moves. Updated in place (no object per job and
            # cycle) as this work sends no request and so runs on the cycle's thread, never on a worker
            # that a stop may leave running after the cycle.
            previous.read_at = self._clock()
            return Outcome(job_id, previous, None)
        answer = self._client.get_job_runs(job_id, count=self._window, show_messages=True)
        runs = summarize_runs(answer, old.runs.last_success_seconds if old.runs is not None else None)
        memory = previous.with_reading(old.with_runs(runs), self._clock())
        return Outcome(job_id, memory, None, runs_fetched=True)

    def _runs_needed(self, job: Job, previous: JobMemory | None) -> bool:
        """True when the job's runs must be read: new to us, changed since, or a run still in progress."""
        old_runs = previous.snapshot.runs if previous is not None and previous.snapshot is not None else None
        status = job.JobProperties.last_run_status
        return (
            previous is None
            or old_runs is None
            or previous.runs_key != _runs_key(job)
            or old_runs.running
            or (status is not None and status.is_running)
        )

    def _read_job(
        self, job_id: str, previous: JobMemory | None, job: Job, item: SearchItem | None = None
    ) -> Outcome:
        """A job read by id, or parsed from the search ``item`` that listed it."""
        props = job.JobProperties
        old = previous.snapshot if previous is not None else None
        old_runs = old.runs if old is not None else None
        fetch_runs = self._runs_needed(job, previous)
        runs = old_runs
        if fetch_runs:
            answer = self._client.get_job_runs(job_id, count=self._window, show_messages=True)
            runs = summarize_runs(answer, old_runs.last_success_seconds if old_runs is not None else None)
        modified = epoch(props.JobModifiedTime)
        config = job.JobConfigDetails
        schedule = ScheduleReading.of(
            job_id,
            config.Schedule if config is not None else None,
            previous.schedule if previous is not None else None,
        )
        change = None
        if (
            previous is not None
            and previous.job is not None
            and old is not None
            and old.modified_seconds != modified
        ):
            change = JobChange(job_id, self._remembered(job_id, previous), job)
        snapshot = JobSnapshot(
            job_id=job_id,
            name=props.Name,
            job_type=props.JobType,
            owner=props.Owner or "",
            is_system=props.IsSystemJob,
            last_run_status=props.LastRunStatus,
            modified_seconds=modified,
            runs=runs,
            schedule=schedule.known_schedule,
            run_time_limit_seconds=schedule.known_run_time_limit,
        )
        # For a change to come, a search item's compact JSON (about 1 KB) is remembered rather than the
        # parsed job (about 6 KB, and many objects for the garbage collector to walk).
        remembered = item.text if item is not None else job
        memory = JobMemory(
            snapshot=old if snapshot == old else snapshot,  # unchanged values: the same reading
            job=remembered if self._track_changes else None,
            runs_key=_runs_key(job),
            schedule=schedule,
            digest=item.digest if item is not None else None,
            read_at=self._clock(),
        )
        return Outcome(job_id, memory, None, runs_fetched=fetch_runs, change=change)
