"""The collector loop: polls the watched CCS jobs in the background and publishes immutable snapshots.

Every cycle searches each job by id (one request) and fetches its runs only when something changed since
the last good fetch (LastRunDate, LastRunStatus, JobModifiedTime) or the latest run is still pending or
executing, so a steady-state cycle costs about one request per job. A job that fails keeps its last good
values (with their age), except after a 404, when its values go. Cycles never overlap; a slow one is
reported, not stacked. Errors are logged when a state changes, not on every cycle.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import structlog

from ccs_exporter.client import CcsClient
from ccs_exporter.errors import (
    AuthError,
    CcsError,
    ConfigError,
    NotFoundError,
    ServerError,
    UnavailableError,
)
from ccs_exporter.models import Job
from ccs_exporter.snapshot import JobChange, JobSnapshot, JobState, PollSnapshot, epoch, summarize_runs
from ccs_exporter.workers import WorkerPool

log = structlog.get_logger(__name__)

# Per-job failure lines logged in one cycle before the rest are summed up in one line (a CCS outage
# would otherwise log one line per job).
_MAX_JOB_LOG_LINES_PER_CYCLE = 10


@dataclass(slots=True)
class _JobMemory:
    """What the poller remembers of a job between cycles (not published)."""

    snapshot: JobSnapshot | None = None
    job: Job | None = None
    runs_key: tuple[object, ...] | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class _Outcome:
    job_id: str
    memory: _JobMemory | None  # None: the job is gone (404)
    error: str | None
    message: str = ""
    reached_ccs: bool = True
    runs_fetched: bool = False
    change: JobChange | None = None


def _error_kind(exc: Exception) -> str:
    """A short, stable name for a failure, used in logs and state-change detection."""
    if isinstance(exc, CcsError):
        return exc.kind
    if isinstance(exc, ConfigError):  # the client refuses a job id that is no GUID before sending
        return "bad_job_id"
    return "internal_error"


def _reached_ccs(exc: Exception) -> bool:
    """True when CCS answered (a 4xx, or a body we could not use): it is up, the job is the problem.

    Not for an AuthError: a job request refused even after a fresh login (tokens revoked and the new
    login refused) means the exporter cannot log in, which is what ``ccs_up 0`` says.
    """
    return isinstance(exc, CcsError) and not isinstance(exc, (UnavailableError, ServerError, AuthError))


class Poller:
    """Polls a set of jobs through one shared client; ``poll_cycle`` runs one full cycle.

    With ``track_changes`` it keeps each job's last reading and hands on, in the snapshot's
    ``changes``, every job whose JobModifiedTime moved or that disappeared.
    """

    def __init__(
        self,
        client: CcsClient,
        job_ids: Iterable[str],
        *,
        history_window: int = 10,
        concurrency: int = 8,
        track_changes: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._window = history_window
        self._track_changes = track_changes
        self._clock = clock
        self._pool = WorkerPool(concurrency)
        self._lock = threading.Lock()
        self._job_ids: tuple[str, ...] = tuple(dict.fromkeys(job_ids))
        self._memory: dict[str, _JobMemory] = {}
        self._up: bool | None = None
        self._cycles = 0
        self._last_success_at: float | None = None

    @property
    def job_ids(self) -> tuple[str, ...]:
        """The watched job ids, in configured order."""
        return self._job_ids

    def set_job_ids(self, job_ids: Iterable[str]) -> None:
        """Replace the watched jobs; what is known of removed jobs is forgotten (their series go)."""
        new_ids = tuple(dict.fromkeys(job_ids))
        with self._lock:
            removed = set(self._job_ids) - set(new_ids)
            added = set(new_ids) - set(self._job_ids)
            self._job_ids = new_ids
            for job_id in removed:
                self._memory.pop(job_id, None)
        if removed or added:
            log.info("job_list_changed", jobs=len(new_ids), added=len(added), removed=len(removed))

    def close(self) -> None:
        """Stop the worker threads."""
        self._pool.close()

    def poll_cycle(self, stop: threading.Event | None = None) -> PollSnapshot:
        """Poll every watched job once and return the new snapshot."""
        started = time.monotonic()
        requests_before = self._client.requests_sent
        with self._lock:
            job_ids = self._job_ids
        login_error = self._login(stop)
        if stop is not None and stop.is_set():
            outcomes: list[_Outcome | None] = [None] * len(job_ids)  # stopping: keep what is known
        elif login_error is not None:
            outcomes = [
                _Outcome(job_id, self._memory.get(job_id), _error_kind(login_error), reached_ccs=False)
                for job_id in job_ids
            ]
        else:
            outcomes = self._pool.map(self._poll_job, job_ids, stop)
        states = self._apply(job_ids, outcomes, quiet=login_error is not None)
        up = login_error is None and (
            not job_ids or any(outcome is not None and outcome.reached_ccs for outcome in outcomes)
        )
        if stop is None or not stop.is_set():  # a cycle cut short by a stop says nothing about CCS
            self._log_up_change(up, login_error, outcomes)
        now = self._clock()
        self._cycles += 1
        if up:
            self._last_success_at = now
        snapshot = PollSnapshot(
            taken_at=now,
            jobs=states,
            up=up,
            last_success_at=self._last_success_at,
            cycle_seconds=time.monotonic() - started,
            cycles=self._cycles,
            requests=self._client.requests_sent - requests_before,
            runs_fetched=sum(1 for outcome in outcomes if outcome is not None and outcome.runs_fetched),
            changes=tuple(
                outcome.change for outcome in outcomes if outcome is not None and outcome.change is not None
            ),
        )
        return snapshot

    def _login(self, stop: threading.Event | None) -> Exception | None:
        """Make sure the client holds a token; the refusal, if any. Abandoned (None) when ``stop`` is set.

        It runs on a worker so that a login stuck on a hung CCS does not hold up a stop.
        """

        def attempt(_: None) -> Exception | None:
            try:
                self._client.authenticate()
            except (CcsError, ConfigError) as exc:
                return exc
            return None

        return self._pool.map(attempt, [None], stop)[0]

    # --- one job -----------------------------------------------------------------------------------

    def _poll_job(self, job_id: str) -> _Outcome:
        previous = self._memory.get(job_id)
        try:
            return self._read_job(job_id, previous)
        except NotFoundError as exc:
            gone = JobChange(job_id, previous.job, None) if previous is not None and previous.job else None
            return _Outcome(job_id, None, "not_found", exc.message, change=gone)
        except (CcsError, ConfigError) as exc:
            return _Outcome(job_id, previous, _error_kind(exc), str(exc), reached_ccs=_reached_ccs(exc))
        except Exception as exc:  # a bug or data we did not foresee must cost one job, not the daemon
            log.exception("job_poll_crashed", job_id=job_id, error_type=type(exc).__name__)
            return _Outcome(job_id, previous, "internal_error", type(exc).__name__)

    def _read_job(self, job_id: str, previous: _JobMemory | None) -> _Outcome:
        job = self._client.get_job(job_id)
        props = job.JobProperties
        runs_key = (props.LastRunDate, props.LastRunStatus, props.JobModifiedTime)
        old = previous.snapshot if previous is not None else None
        old_runs = old.runs if old is not None else None
        fetch_runs = (
            previous is None
            or old_runs is None
            or previous.runs_key != runs_key
            or old_runs.running
            or (props.last_run_status is not None and props.last_run_status.is_running)
        )
        runs = old_runs
        if fetch_runs:
            answer = self._client.get_job_runs(job_id, count=self._window, show_messages=True)
            runs = summarize_runs(answer, old_runs.last_success_seconds if old_runs is not None else None)
        modified = epoch(props.JobModifiedTime)
        change = None
        if (
            previous is not None
            and previous.job is not None
            and old is not None
            and old.modified_seconds != modified
        ):
            change = JobChange(job_id, previous.job, job)
        snapshot = JobSnapshot(
            job_id=job_id,
            name=props.Name,
            job_type=props.JobType,
            owner=props.Owner or "",
            is_system=props.IsSystemJob,
            last_run_status=props.LastRunStatus,
            modified_seconds=modified,
            runs=runs,
            read_at=self._clock(),
        )
        memory = _JobMemory(
            snapshot=snapshot,
            job=job if self._track_changes else None,
            runs_key=runs_key,
        )
        return _Outcome(job_id, memory, None, runs_fetched=fetch_runs, change=change)

    # --- bookkeeping -------------------------------------------------------------------------------

    def _apply(
        self, job_ids: Sequence[str], outcomes: Sequence[_Outcome | None], *, quiet: bool
    ) -> tuple[JobState, ...]:
        states: list[JobState] = []
        changes: list[tuple[str, str | None, _Outcome]] = []
        with self._lock:
            watched = set(self._job_ids)
            for job_id, outcome in zip(job_ids, outcomes, strict=True):
                if job_id not in watched:
                    continue  # removed by a reload during the cycle
                previous = self._memory.get(job_id)
                if outcome is None:  # skipped because the loop is stopping
                    if previous is not None:
                        states.append(
                            JobState(job_id, previous.snapshot, previous.error is None, previous.error)
                        )
                    continue
                if outcome.error is None and outcome.memory is not None:
                    memory = outcome.memory
                elif outcome.error == "not_found":
                    memory = _JobMemory()  # the job is gone: so are its values
                else:
                    memory = previous if previous is not None else _JobMemory()  # keep the last good values
                old_error = previous.error if previous is not None else None
                memory.error = outcome.error
                self._memory[job_id] = memory
                if outcome.error != old_error:
                    changes.append((job_id, old_error, outcome))
                states.append(JobState(job_id, memory.snapshot, outcome.error is None, outcome.error))
        if not quiet:
            for job_id, old_error, outcome in changes[:_MAX_JOB_LOG_LINES_PER_CYCLE]:
                self._log_job_change(job_id, old_error, outcome)
            rest = changes[_MAX_JOB_LOG_LINES_PER_CYCLE:]
            if rest:
                # Recoveries are good news: summing them up is no warning.
                failing = sum(1 for _, _, outcome in rest if outcome.error is not None)
                summary = log.warning if failing else log.info
                summary("job_poll_changes_not_logged", jobs=len(rest), failing=failing)
        return tuple(states)

    @staticmethod
    def _log_job_change(job_id: str, old_error: str | None, outcome: _Outcome) -> None:
        if outcome.error is None:
            log.info("job_poll_recovered", job_id=job_id, previous_error=old_error)
        elif outcome.error == "not_found":
            log.warning("job_not_found", job_id=job_id, message=outcome.message)
        else:
            log.warning("job_poll_failed", job_id=job_id, error=outcome.error, message=outcome.message)

    def _log_up_change(
        self, up: bool, login_error: Exception | None, outcomes: Sequence[_Outcome | None]
    ) -> None:
        if up == self._up:
            return
        first_time = self._up is None
        self._up = up
        if up:
            if not first_time:
                log.info("ccs_reachable")
            return
        if login_error is not None:
            log.error("ccs_login_failed", error=_error_kind(login_error), message=str(login_error))
        else:
            sample = next((outcome for outcome in outcomes if outcome is not None and outcome.error), None)
            log.error(
                "ccs_login_failed" if sample is not None and sample.error == "auth" else "ccs_unreachable",
                error=sample.error if sample is not None else "unknown",
                message=sample.message if sample is not None else "",
            )


class PollLoop:
    """Runs poll cycles in a background thread every ``interval`` seconds and publishes each snapshot."""

    def __init__(
        self,
        poller: Poller,
        interval: float,
        publish: Callable[[PollSnapshot], None],
        *,
        reload: Callable[[], list[str]] | None = None,
        source_changed: Callable[[], bool] | None = None,
    ) -> None:
        self._poller = poller
        self._interval = interval
        self._publish = publish
        self._reload = reload
        self._source_changed = source_changed
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._reload_requested = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ccs-poll-loop", daemon=True)
        self._overruns = 0
        self._slow = False

    @property
    def ready(self) -> bool:
        """True once the first cycle has been published."""
        return self._ready.is_set()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until the first cycle is published; False on timeout."""
        return self._ready.wait(timeout)

    def start(self) -> None:
        """Start the background thread."""
        self._thread.start()

    def request_reload(self) -> None:
        """Re-read the job list and start a cycle now (SIGHUP); safe to call from a signal handler."""
        self._reload_requested.set()
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the current job requests; give up waiting after ``timeout`` seconds."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._poller.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._maybe_reload()
            started = time.monotonic()
            try:
                snapshot = self._poller.poll_cycle(self._stop)
            except Exception as exc:  # never let one cycle's bug end the loop
                log.exception("poll_cycle_crashed", error_type=type(exc).__name__)
                snapshot = None
            elapsed = time.monotonic() - started
            if self._stop.is_set():
                break
            if elapsed > self._interval:
                self._overruns += 1
                # Logged when cycles start overrunning, not on each one: a hung CCS makes every cycle
                # slow, and ccs_poll_overruns_total counts them all.
                if not self._slow:
                    log.warning(
                        "poll_cycle_slow",
                        duration_seconds=round(elapsed, 3),
                        interval_seconds=self._interval,
                        skipped_cycles=math.floor(elapsed / self._interval),
                    )
                self._slow = True
            elif self._slow:
                self._slow = False
                log.info("poll_cycle_on_time", duration_seconds=round(elapsed, 3))
            if snapshot is not None:
                snapshot = dataclasses.replace(snapshot, overruns=self._overruns)
                self._publish(snapshot)
                self._ready.set()
                log.info(
                    "poll_cycle",
                    jobs=len(snapshot.jobs),
                    failed=snapshot.failed_jobs,
                    requests=snapshot.requests,
                    runs_fetched=snapshot.runs_fetched,
                    up=snapshot.up,
                    duration_seconds=round(snapshot.cycle_seconds, 3),
                )
            # Keep the cadence; after a slow cycle wait for the next tick rather than stack cycles.
            next_start = started + self._interval * max(1, math.ceil(elapsed / self._interval))
            self._wake.wait(max(0.0, next_start - time.monotonic()))
            self._wake.clear()  # a reload (or stop) woke us early: go now

    def _maybe_reload(self) -> None:
        if self._reload is None:
            return
        changed = self._reload_requested.is_set()
        if not changed and self._source_changed is not None:
            try:
                changed = self._source_changed()
            except OSError:
                changed = False
        if not changed:
            return
        self._reload_requested.clear()
        try:
            job_ids = self._reload()
        except ConfigError as exc:
            log.error("reload_failed", error=str(exc), kept_jobs=len(self._poller.job_ids))
            return
        self._poller.set_job_ids(job_ids)
        log.info("job_list_reloaded", jobs=len(job_ids))
