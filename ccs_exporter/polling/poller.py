"""The collector loop: polls the watched CCS jobs in the background and publishes immutable snapshots.

Watched jobs are the union of the configured job ids and what the configured searches find (see
``discovery.py``), narrowed by one ownership predicate. A job found by a search comes with its
properties; a configured job no search returned is searched by id (one request). Runs are fetched only
when something changed since the last good fetch (LastRunDate, LastRunStatus, JobModifiedTime) or the
latest run is still pending or executing. A job's schedule and run-time limit are derived from its
``Schedule`` block only when the block changes. A job that fails keeps its last good values (with their age),
except after a 404, when its values go. A discovered job that leaves every search result is looked up
once by id and its series end. Cycles never overlap; a slow one is reported, not stacked. Errors are
logged when a state changes, not on every cycle. Job changes (created, changed, deleted) go on as data.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

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
from ccs_exporter.polling.discovery import Discoverer, Discovery, StaleJob, WatchList
from ccs_exporter.polling.schedule_reading import ScheduleReading
from ccs_exporter.polling.snapshot import (
    JobChange,
    JobSnapshot,
    JobState,
    PollSnapshot,
    epoch,
    summarize_runs,
)
from ccs_exporter.polling.workers import WorkerPool

log = structlog.get_logger(__name__)

# Per-job failure lines logged in one cycle before the rest are summed up in one line (a CCS outage
# would otherwise log one line per job).
_MAX_JOB_LOG_LINES_PER_CYCLE = 10
# A job whose JobCreationTime is this much older than the previous complete listing still counts as
# created since then: clocks of CCS and of the exporter may disagree.
CREATION_CLOCK_SKEW_SECONDS = 300.0

JobOwnership = Callable[[str], bool]
"""Says whether this process watches a job (by lower-case id); every job, unless sharded."""


@dataclass(slots=True)
class _JobMemory:
    """What the poller remembers of a job between cycles (not published)."""

    snapshot: JobSnapshot | None = None
    job: Job | None = None
    runs_key: tuple[object, ...] | None = None
    schedule: ScheduleReading | None = None
    error: str | None = None
    digest: bytes | None = None  # of the search item this reading came from


@dataclass(frozen=True, slots=True)
class _Task:
    """What a cycle does for one job: read it by id, use its search item, or report why it cannot."""

    job_id: str
    item: SearchItem | None = None  # listed by a search this cycle: no request of its own
    unchanged: bool = False  # that item is the one the last reading came from: nothing to parse
    stale: StaleJob | None = None  # its search failed: keep the last values
    bad: str | None = None  # its search item could not be read
    leaving: bool = False  # left every search result: look it up once, then forget it


@dataclass(frozen=True, slots=True)
class _Outcome:
    job_id: str
    memory: _JobMemory | None  # None: the job is gone (404)
    error: str | None
    message: str = ""
    reached_ccs: bool = True
    runs_fetched: bool = False
    change: JobChange | None = None
    left: bool = False  # no longer watched: its series end


@dataclass(frozen=True)
class _Plan:
    """One cycle's work: a task per watched job (in order) and the jobs leaving the watch."""

    tasks: tuple[_Task, ...]
    watched: tuple[str, ...]
    discovered: frozenset[str]
    created: tuple[JobChange, ...] = ()


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
    """Polls the watched jobs through one shared client; ``poll_cycle`` runs one full cycle.

    ``owns`` is the one place that decides which of the watched jobs (configured and discovered) this
    process exports: jobs it refuses are neither read nor exported nor audited. With ``track_changes``
    it keeps each job's last reading and hands on, in the snapshot's ``changes``, every job whose
    JobModifiedTime moved, that disappeared, or that a search found newly created.
    """

    def __init__(
        self,
        client: CcsClient,
        job_ids: Iterable[str],
        *,
        searches: Sequence[str] = (),
        page_size: int = 100,
        history_window: int = 10,
        concurrency: int = 8,
        track_changes: bool = False,
        clock: Callable[[], float] = time.time,
        owns: JobOwnership | None = None,
    ) -> None:
        self._client = client
        self._window = history_window
        self._track_changes = track_changes
        self._clock = clock
        self._owns = owns
        self._pool = WorkerPool(concurrency)
        self._lock = threading.Lock()
        self._watch = WatchList(tuple(job_ids), tuple(searches), page_size)
        self._pending: WatchList | None = None
        self._discoverer = Discoverer(client, self._watch.searches, page_size)
        self._memory: dict[str, _JobMemory] = {}
        self._watched: tuple[str, ...] = ()  # the jobs of the last cycle, in order
        self._discovered: frozenset[str] = frozenset()  # the jobs the searches found last cycle
        self._up: bool | None = None
        self._cycles = 0
        self._last_success_at: float | None = None

    @property
    def job_ids(self) -> tuple[str, ...]:
        """The configured job ids, in configured order."""
        return self.watch.job_ids

    @property
    def watch(self) -> WatchList:
        """The configured job ids, searches and page size (a pending change included)."""
        with self._lock:
            return self._pending or self._watch

    def set_job_ids(self, job_ids: Iterable[str]) -> None:
        """Replace the configured jobs, keeping the searches."""
        self.set_watch(dataclasses.replace(self.watch, job_ids=tuple(job_ids)))

    def set_watch(self, watch: WatchList) -> None:
        """Replace what is watched from the next cycle on; jobs no longer watched lose their series then."""
        with self._lock:
            self._pending = watch

    def _take_pending_watch(self) -> WatchList:
        """The watch list for this cycle: a pending change is applied here, on the cycle's thread."""
        with self._lock:
            watch, self._pending = self._pending, None
            old = self._watch
            if watch is None:
                return old
            self._watch = watch
        self._discoverer.configure(watch.searches, watch.page_size)
        added = len(set(watch.job_ids) - set(old.job_ids))
        removed = len(set(old.job_ids) - set(watch.job_ids))
        if added or removed or old.searches != watch.searches:
            log.info(
                "job_list_changed",
                jobs=len(watch.job_ids),
                added=added,
                removed=removed,
                searches=len(watch.searches),
            )
        return watch

    def close(self) -> None:
        """Stop the worker threads."""
        self._pool.close()

    def poll_cycle(self, stop: threading.Event | None = None) -> PollSnapshot:
        """Poll every watched job once and return the new snapshot."""
        started = time.monotonic()
        listing_started = self._clock()
        requests_before = self._client.requests_sent
        watch = self._take_pending_watch()
        login_error = self._login(stop)
        stopping = stop is not None and stop.is_set()
        discovery = None
        if watch.searches and login_error is None and not stopping:
            discovery = self._discoverer.discover(self._pool, listing_started, stop)
        plan = self._plan(watch, discovery)
        if stopping:
            outcomes: list[_Outcome | None] = [None] * len(plan.tasks)  # stopping: keep what is known
        elif login_error is not None:
            outcomes = [
                _Outcome(
                    task.job_id, self._memory.get(task.job_id), _error_kind(login_error), reached_ccs=False
                )
                for task in plan.tasks
            ]
        else:
            outcomes = self._run_tasks(plan.tasks, stop)
        states = self._apply(plan, outcomes, quiet=login_error is not None)
        reached = discovery is not None and discovery.reached_ccs
        up = login_error is None and (
            not plan.tasks
            or reached
            or any(outcome is not None and outcome.reached_ccs for outcome in outcomes)
        )
        if stop is None or not stop.is_set():  # a cycle cut short by a stop says nothing about CCS
            self._log_up_change(up, login_error, outcomes)
        now = self._clock()
        self._cycles += 1
        if up:
            self._last_success_at = now
        changes = [*plan.created]
        changes += [
            outcome.change for outcome in outcomes if outcome is not None and outcome.change is not None
        ]
        return PollSnapshot(
            taken_at=now,
            jobs=states,
            up=up,
            last_success_at=self._last_success_at,
            cycle_seconds=time.monotonic() - started,
            cycles=self._cycles,
            requests=self._client.requests_sent - requests_before,
            runs_fetched=sum(1 for outcome in outcomes if outcome is not None and outcome.runs_fetched),
            changes=tuple(changes),
            searches=discovery.searches if discovery is not None else (),
        )

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

    # --- which jobs, and what to do for each ----------------------------------------------------------

    def _owned(self, job_ids: Iterable[str]) -> list[str]:
        """The jobs this process watches, of the given ones: the one ownership filter (sharding)."""
        if self._owns is None:
            return list(job_ids)
        return [job_id for job_id in job_ids if self._owns(job_id)]

    def _plan(self, watch: WatchList, discovery: Discovery | None) -> _Plan:
        """This cycle's tasks: configured and discovered jobs (owned ones), and discovered jobs leaving."""
        configured = set(watch.job_ids)
        if discovery is None:
            # No listing this cycle (no searches, no login, stopping): the jobs found before stay.
            kept = (
                [job_id for job_id in self._watched if job_id in self._discovered] if watch.searches else []
            )
            watched = self._owned(dict.fromkeys([*watch.job_ids, *kept]))
            discovered = self._discovered if watch.searches else frozenset()
            return _Plan(tuple(_Task(job_id) for job_id in watched), tuple(watched), discovered)
        found = discovery.job_ids()
        watched = self._owned(dict.fromkeys([*watch.job_ids, *found]))
        tasks: list[_Task] = []
        for job_id in watched:
            if job_id in discovery.fresh:
                item = discovery.fresh[job_id]
                tasks.append(_Task(job_id, item=item, unchanged=self._holds_reading(job_id, item.digest)))
            elif job_id in configured:
                tasks.append(_Task(job_id))  # no search returned it: search by id
            elif job_id in discovery.bad:
                tasks.append(_Task(job_id, bad=discovery.bad[job_id]))
            else:
                tasks.append(_Task(job_id, stale=discovery.stale[job_id]))
        present = configured.union(found)
        leaving = [
            job_id
            for job_id in self._owned(self._discovered - present - discovery.forgotten)
            if job_id in self._memory
        ]
        tasks += [_Task(job_id, leaving=True) for job_id in sorted(leaving)]
        created = self._created(discovery, watched)
        return _Plan(tuple(tasks), tuple(watched), frozenset(found), tuple(created))

    def _created(self, discovery: Discovery, watched: Sequence[str]) -> list[JobChange]:
        """Jobs new to the watch whose JobCreationTime is after a previous complete listing that missed them.

        A search's first complete listing is its baseline: jobs found then are not reported.
        """
        if not self._track_changes:
            return []
        before = set(self._watched)
        created: list[JobChange] = []
        for job_id in watched:
            item = discovery.fresh.get(job_id)
            since = discovery.listed_since.get(job_id)
            if item is None or since is None or job_id in before:
                continue
            try:
                job = self._client.search_item_job(item)
            except CcsError:
                continue  # its task reports the unreadable item
            created_at = epoch(job.JobProperties.JobCreationTime)
            if created_at is not None and created_at >= since - CREATION_CLOCK_SKEW_SECONDS:
                created.append(JobChange(job_id, None, job))
        return created

    # --- one job -----------------------------------------------------------------------------------

    def _run_tasks(self, tasks: Sequence[_Task], stop: threading.Event | None) -> list[_Outcome | None]:
        """Tasks that send no request run here (most discovered jobs at rest); the rest on the workers."""
        outcomes: list[_Outcome | None] = [None] * len(tasks)
        remote: list[int] = []
        for index, task in enumerate(tasks):
            if self._needs_request(task):
                remote.append(index)
            else:
                outcomes[index] = self._poll_job(task)
        answers = self._pool.map(self._poll_job, [tasks[index] for index in remote], stop)
        for index, answer in zip(remote, answers, strict=True):
            outcomes[index] = answer
        return outcomes

    def _needs_request(self, task: _Task) -> bool:
        if task.stale is not None or task.bad is not None:
            return False
        if task.unchanged:
            snapshot = self._reading(task.job_id)
            return snapshot is None or snapshot.runs is None or self._runs_in_progress(snapshot)
        return True  # read by id, looked up because it left the searches, or a changed item to parse

    @staticmethod
    def _runs_in_progress(snapshot: JobSnapshot) -> bool:
        """The latest run read, or the job's LastRunStatus, is pending or executing."""
        running = snapshot.runs is not None and snapshot.runs.running
        return running or snapshot.last_run_status in (JobStatus.PENDING, JobStatus.EXECUTING)

    def _reading(self, job_id: str) -> JobSnapshot | None:
        memory = self._memory.get(job_id)
        return memory.snapshot if memory is not None else None

    def _holds_reading(self, job_id: str, digest: bytes) -> bool:
        """True when the last good reading of the job came from a search item with this digest."""
        memory = self._memory.get(job_id)
        return memory is not None and memory.snapshot is not None and memory.digest == digest

    @staticmethod
    def _runs_key(job: Job) -> tuple[object, ...]:
        props = job.JobProperties
        return (props.LastRunDate, props.LastRunStatus, props.JobModifiedTime)

    def _runs_needed(self, job: Job, previous: _JobMemory | None) -> bool:
        """True when the job's runs must be read: new to us, changed since, or a run still in progress."""
        old_runs = previous.snapshot.runs if previous is not None and previous.snapshot is not None else None
        status = job.JobProperties.last_run_status
        return (
            previous is None
            or old_runs is None
            or previous.runs_key != self._runs_key(job)
            or old_runs.running
            or (status is not None and status.is_running)
        )

    def _poll_job(self, task: _Task) -> _Outcome:
        job_id = task.job_id
        previous = self._memory.get(job_id)
        if task.stale is not None:
            stale = task.stale
            return _Outcome(job_id, previous, stale.error, stale.message, reached_ccs=stale.reached_ccs)
        if task.bad is not None:
            return _Outcome(job_id, previous, "bad_response", task.bad)
        try:
            if task.leaving:
                return self._look_up_leaving(job_id, previous)
            if task.unchanged:
                return self._reread_unchanged(job_id, previous)
            if task.item is not None:
                found = self._client.search_item_job(task.item)  # BadResponseError: bad_response
                return self._read_job(job_id, previous, found, task.item.digest)
            return self._read_job(job_id, previous, None)
        except NotFoundError as exc:
            gone = JobChange(job_id, previous.job, None) if previous is not None and previous.job else None
            return _Outcome(job_id, None, "not_found", exc.message, change=gone)
        except (CcsError, ConfigError) as exc:
            return _Outcome(job_id, previous, _error_kind(exc), str(exc), reached_ccs=_reached_ccs(exc))
        except Exception as exc:  # a bug or data we did not foresee must cost one job, not the daemon
            log.exception("job_poll_crashed", job_id=job_id, error_type=type(exc).__name__)
            return _Outcome(job_id, previous, "internal_error", type(exc).__name__)

    def _look_up_leaving(self, job_id: str, previous: _JobMemory | None) -> _Outcome:
        """A discovered job no search returns any more: gone (404, raised) or no longer matching."""
        try:
            self._client.get_job(job_id)
        except NotFoundError as exc:
            gone = JobChange(job_id, previous.job, None) if previous is not None and previous.job else None
            return _Outcome(job_id, None, "not_found", exc.message, change=gone, left=True)
        except (CcsError, ConfigError) as exc:
            log.warning("left_job_lookup_failed", job_id=job_id, error=_error_kind(exc), message=str(exc))
            return _Outcome(
                job_id, None, _error_kind(exc), str(exc), reached_ccs=_reached_ccs(exc), left=True
            )
        return _Outcome(job_id, None, None, "no longer matches a search", left=True)

    def _reread_unchanged(self, job_id: str, previous: _JobMemory | None) -> _Outcome:
        """A discovered job whose search item is the one its last reading came from: that reading stands.

        Only its runs may need reading again, while one is in progress.
        """
        if previous is None or previous.snapshot is None:  # not expected: the listing checked it
            return _Outcome(job_id, previous, "internal_error", "unchanged job without a reading")
        old = previous.snapshot
        fetch_runs = old.runs is None or self._runs_in_progress(old)
        runs = old.runs
        if fetch_runs:
            answer = self._client.get_job_runs(job_id, count=self._window, show_messages=True)
            runs = summarize_runs(answer, old.runs.last_success_seconds if old.runs is not None else None)
        snapshot = dataclasses.replace(old, runs=runs, read_at=self._clock())
        memory = dataclasses.replace(previous, snapshot=snapshot)
        return _Outcome(job_id, memory, None, runs_fetched=fetch_runs)

    def _read_job(
        self, job_id: str, previous: _JobMemory | None, found: Job | None, digest: bytes | None = None
    ) -> _Outcome:
        job = found if found is not None else self._client.get_job(job_id)
        props = job.JobProperties
        runs_key = self._runs_key(job)
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
            schedule=schedule.known_schedule,
            run_time_limit_seconds=schedule.known_run_time_limit,
        )
        memory = _JobMemory(
            snapshot=snapshot,
            job=job if self._track_changes else None,
            runs_key=runs_key,
            schedule=schedule,
            digest=digest,
        )
        return _Outcome(job_id, memory, None, runs_fetched=fetch_runs, change=change)

    # --- bookkeeping -------------------------------------------------------------------------------

    def _apply(
        self, plan: _Plan, outcomes: Sequence[_Outcome | None], *, quiet: bool
    ) -> tuple[JobState, ...]:
        states: list[JobState] = []
        changes: list[tuple[str, str | None, _Outcome]] = []
        left: list[_Outcome] = []
        with self._lock:
            for task, outcome in zip(plan.tasks, outcomes, strict=True):
                job_id = task.job_id
                previous = self._memory.get(job_id)
                if task.leaving:
                    if outcome is not None:  # skipped when stopping: looked up next cycle
                        self._memory.pop(job_id, None)
                        left.append(outcome)
                    continue
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
            stopped_early = any(outcome is None for outcome in outcomes)
            if not stopped_early:
                self._watched = plan.watched
                self._discovered = plan.discovered
                keep = set(plan.watched)
                for job_id in [job_id for job_id in self._memory if job_id not in keep]:
                    del self._memory[job_id]  # no longer watched (reload, ownership, left)
        if left:
            log.info(
                "jobs_left_searches",
                jobs=len(left),
                deleted=sum(1 for outcome in left if outcome.error == "not_found"),
                unknown=sum(1 for outcome in left if outcome.error not in (None, "not_found")),
            )
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
