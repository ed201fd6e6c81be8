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
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

import structlog

from ccs_exporter.client import CcsClient
from ccs_exporter.errors import (
    AuthError,
    BadRequestError,
    BadResponseError,
    CcsError,
    CcsTimeoutError,
    ConfigError,
    ForbiddenError,
    NotFoundError,
    ServerError,
    UnavailableError,
)
from ccs_exporter.models import Job, JobRuns, JobStatus

log = structlog.get_logger(__name__)

ChangeObserver = Callable[[str, "Job | None", "Job | None"], None]
"""Told (job id, job before, job after) when a watched job's JobModifiedTime moved or it disappeared."""

# Per-job failure lines logged in one cycle before the rest are summed up in one line (a CCS outage
# would otherwise log one line per job).
_MAX_JOB_LOG_LINES_PER_CYCLE = 10
_FAILED_RUN_STATUSES = (JobStatus.FAULTED, JobStatus.ABORTED)
_MAX_CATEGORY_LENGTH = 64


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What the exporter keeps of a job's run history window: the derived figures, not the payload."""

    status_code: int
    start_seconds: float | None
    end_seconds: float | None
    duration_seconds: float | None
    messages: tuple[tuple[str, int], ...]
    total_runs: int
    last_success_seconds: float | None
    consecutive_failures: int
    running: bool


@dataclass(frozen=True, slots=True)
class JobSnapshot:
    """The last good reading of one job: its metadata and its run summary."""

    job_id: str
    name: str
    job_type: str
    owner: str
    is_system: bool
    last_run_status: int
    modified_seconds: float | None
    runs: RunSummary | None
    read_at: float


@dataclass(frozen=True, slots=True)
class JobState:
    """One watched job in a published snapshot: its last good values and whether the last poll worked."""

    job_id: str
    data: JobSnapshot | None
    poll_success: bool
    error: str | None = None


@dataclass(frozen=True)
class PollSnapshot:
    """Everything one cycle learned; what /metrics renders. Immutable once published."""

    taken_at: float
    jobs: tuple[JobState, ...]
    up: bool
    last_success_at: float | None
    cycle_seconds: float
    cycles: int
    overruns: int = 0
    requests: int = 0
    runs_fetched: int = 0

    @property
    def failed_jobs(self) -> int:
        """How many jobs failed to poll in this cycle."""
        return sum(1 for job in self.jobs if not job.poll_success)


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


def epoch(value: datetime | None) -> float | None:
    """A UTC datetime as Unix seconds; None stays None."""
    return value.timestamp() if value is not None else None


def summarize_runs(runs: JobRuns, known_success: float | None = None) -> RunSummary:
    """Derive the metric figures from a jobruns answer (the window of latest runs).

    ``known_success`` is the last success seen before; it survives a window that no longer holds it.
    """
    ordered = runs.newest_first()
    latest = ordered[0] if ordered else None
    finished = [run for run in ordered if run.is_finished]
    last_finished = finished[0] if finished else None
    success = next((run for run in finished if run.status is JobStatus.COMPLETED), None)
    success_seconds = epoch(success.JobEndTime) if success is not None else None
    candidates = [value for value in (known_success, success_seconds) if value is not None]
    consecutive = 0
    for run in finished:
        if run.status is JobStatus.COMPLETED:
            break
        if run.status in _FAILED_RUN_STATUSES:
            consecutive += 1
    messages: Counter[str] = Counter()
    if latest is not None:
        for message in latest.JobMessages:
            messages[_category(message.Category)] += 1
    for category in ("error", "warning", "information"):
        messages.setdefault(category, 0)
    running = latest is not None and latest.status is not None and latest.status.is_running
    return RunSummary(
        status_code=latest.Status if latest is not None else 0,
        start_seconds=epoch(latest.JobStartTime) if latest is not None else None,
        end_seconds=epoch(last_finished.JobEndTime) if last_finished is not None else None,
        duration_seconds=last_finished.duration_seconds if last_finished is not None else None,
        messages=tuple(sorted(messages.items())),
        total_runs=max(0, runs.TotalJobRuns),
        last_success_seconds=max(candidates) if candidates else None,
        consecutive_failures=consecutive,
        running=running,
    )


def _category(value: str | None) -> str:
    text = " ".join((value or "").split()).lower()
    return text[:_MAX_CATEGORY_LENGTH] or "unknown"


def _error_kind(exc: Exception) -> str:
    """A short, stable name for a failure, used in logs and state-change detection."""
    kinds: tuple[tuple[type[Exception], str], ...] = (
        (NotFoundError, "not_found"),
        (ForbiddenError, "forbidden"),
        (AuthError, "auth"),
        (BadRequestError, "bad_request"),
        (BadResponseError, "bad_response"),
        (CcsTimeoutError, "timeout"),
        (UnavailableError, "unavailable"),
        (ServerError, "server_error"),
        (CcsError, "ccs_error"),
        (ConfigError, "bad_job_id"),
    )
    for exc_type, kind in kinds:
        if isinstance(exc, exc_type):
            return kind
    return "internal_error"


def _reached_ccs(exc: Exception) -> bool:
    """True when CCS answered (a 4xx, or a body we could not use): it is up, the job is the problem.

    Not for an AuthError: a job request refused even after a fresh login (tokens revoked and the new
    login refused) means the exporter cannot log in, which is what ``ccs_up 0`` says.
    """
    return isinstance(exc, CcsError) and not isinstance(exc, (UnavailableError, ServerError, AuthError))


_ItemT = TypeVar("_ItemT")
_ResultT = TypeVar("_ResultT")


@dataclass
class _Batch(Generic[_ResultT]):
    results: list[_ResultT | None]
    remaining: int
    done: threading.Condition = field(default_factory=threading.Condition)
    cancelled: bool = False


class WorkerPool:
    """A fixed set of daemon worker threads: an abandoned request never holds up the process's exit."""

    def __init__(self, size: int, name: str = "ccs-poll") -> None:
        self._tasks: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{index}", daemon=True)
            for index in range(max(1, size))
        ]
        for thread in self._threads:
            thread.start()

    def _work(self) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                return
            task()

    def map(
        self,
        function: Callable[[_ItemT], _ResultT],
        items: Sequence[_ItemT],
        stop: threading.Event | None = None,
    ) -> list[_ResultT | None]:
        """Run ``function`` over ``items`` on the workers; None for items skipped because of ``stop``."""
        batch: _Batch[_ResultT] = _Batch(results=[None] * len(items), remaining=len(items))

        def task(index: int, item: _ItemT) -> None:
            result: _ResultT | None = None
            try:
                if not batch.cancelled:
                    result = function(item)
            finally:
                with batch.done:
                    batch.results[index] = result
                    batch.remaining -= 1
                    batch.done.notify_all()

        for index, item in enumerate(items):
            self._tasks.put(lambda index=index, item=item: task(index, item))  # type: ignore[misc]
        with batch.done:
            while batch.remaining:
                batch.done.wait(timeout=0.2)
                if stop is not None and stop.is_set():
                    batch.cancelled = True
                    break
        return list(batch.results)

    def close(self) -> None:
        """Let the workers end once the queued tasks are done (they are daemons: exit never waits)."""
        for _ in self._threads:
            self._tasks.put(None)


class Poller:
    """Polls a set of jobs through one shared client; ``poll_cycle`` runs one full cycle."""

    def __init__(
        self,
        client: CcsClient,
        job_ids: Iterable[str],
        *,
        history_window: int = 10,
        concurrency: int = 8,
        on_change: ChangeObserver | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._window = history_window
        self._on_change = on_change
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
            if previous is not None and previous.job is not None:
                self._observe(job_id, previous.job, None)
            return _Outcome(job_id, None, "not_found", exc.message)
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
        if (
            previous is not None
            and previous.job is not None
            and old is not None
            and old.modified_seconds != modified
        ):
            self._observe(job_id, previous.job, job)
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
            job=job if self._on_change is not None else None,
            runs_key=runs_key,
        )
        return _Outcome(job_id, memory, None, runs_fetched=fetch_runs)

    def _observe(self, job_id: str, before: Job | None, after: Job | None) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change(job_id, before, after)
        except Exception as exc:  # the audit trail reports its own failures; polling goes on
            log.error("change_observer_failed", job_id=job_id, error_type=type(exc).__name__)

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
