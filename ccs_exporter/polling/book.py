"""The poller's memory between cycles: each job's last reading, the jobs watched and discovered last.

Outcomes of a cycle are applied here, on the cycle's thread, under one lock; a job that changes between
failing and succeeding is logged once, not on every cycle.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import structlog

from ccs_exporter.polling.snapshot import JobSnapshot, JobState
from ccs_exporter.polling.work import JobMemory, LookUpLeaving, Outcome, Plan

log = structlog.get_logger(__name__)

# Per-job failure lines logged in one cycle before the rest are summed up in one line (a CCS outage
# would otherwise log one line per job).
MAX_JOB_LOG_LINES_PER_CYCLE = 10
# Last readings of jobs that left every search (renamed out, say) but still exist, kept so a job that
# comes back is compared with how it left: changes made while it was away are then seen. Bounded.
MAX_DEPARTED_JOBS = 10_000


class JobBook:
    """Each watched job's memory, and what the last complete cycle watched and discovered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._memory: dict[str, JobMemory] = {}
        self._departed: OrderedDict[str, JobMemory] = OrderedDict()
        self.watched: tuple[str, ...] = ()  # the jobs of the last complete cycle, in order
        self.discovered: frozenset[str] = frozenset()  # the jobs the searches found then

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._memory

    def memory(self, job_id: str) -> JobMemory | None:
        """The job's memory, if it has one; for a job coming back to a search, how it left."""
        memory = self._memory.get(job_id)
        return memory if memory is not None else self._departed.get(job_id)

    @property
    def departed(self) -> frozenset[str]:
        """Jobs that left every search while they still existed (so they were not created when back)."""
        with self._lock:
            return frozenset(self._departed)

    def reading(self, job_id: str) -> JobSnapshot | None:
        """The job's last good reading, if any."""
        memory = self._memory.get(job_id)
        return memory.snapshot if memory is not None else None

    def holds_reading(self, job_id: str, digest: bytes) -> bool:
        """True when the last good reading of the job came from a search item with this digest."""
        memory = self._memory.get(job_id)
        return memory is not None and memory.snapshot is not None and memory.digest == digest

    def apply(self, plan: Plan, outcomes: Sequence[Outcome | None], *, quiet: bool) -> tuple[JobState, ...]:
        """Take a cycle's outcomes (None: skipped because the loop is stopping) and return the job states."""
        states: list[JobState] = []
        changes: list[tuple[str, str | None, Outcome]] = []
        left: list[Outcome] = []
        with self._lock:
            for item, outcome in zip(plan.items, outcomes, strict=True):
                if isinstance(item, LookUpLeaving):
                    if outcome is not None:  # skipped when stopping: looked up next cycle
                        gone = self._memory.pop(item.job_id, None)
                        self._depart(item.job_id, gone, outcome)
                        left.append(outcome)
                    continue
                state = self._take(item.job_id, outcome, changes)
                if state is not None:
                    states.append(state)
            if all(outcome is not None for outcome in outcomes):
                self._end_cycle(plan)
        _log_left(left)
        if not quiet:
            _log_changes(changes)
        return tuple(states)

    def _take(
        self, job_id: str, outcome: Outcome | None, changes: list[tuple[str, str | None, Outcome]]
    ) -> JobState | None:
        previous = self._memory.get(job_id)
        if outcome is None:  # skipped because the loop is stopping: what is known stands
            if previous is None:
                return None
            return JobState(
                job_id, previous.snapshot, previous.error is None, previous.error, previous.read_at
            )
        if outcome.error is None and outcome.memory is not None:
            memory = outcome.memory
            self._departed.pop(job_id, None)  # back: compared with how it left, now watched again
        elif outcome.error == "not_found":
            memory = JobMemory()  # the job is gone: so are its values
        else:
            memory = previous if previous is not None else JobMemory()  # keep the last good values
        old_error = previous.error if previous is not None else None
        memory.error = outcome.error
        self._memory[job_id] = memory
        if outcome.error != old_error:
            changes.append((job_id, old_error, outcome))
        return JobState(job_id, memory.snapshot, outcome.error is None, outcome.error, memory.read_at)

    def _depart(self, job_id: str, gone: JobMemory | None, outcome: Outcome) -> None:
        """Remember how a job that left the searches was, unless it is gone (a 404 by id)."""
        if outcome.error == "not_found" or gone is None or gone.snapshot is None:
            self._departed.pop(job_id, None)
            return
        if outcome.error is None:
            self._departed[job_id] = gone
            self._departed.move_to_end(job_id)
            while len(self._departed) > MAX_DEPARTED_JOBS:
                self._departed.popitem(last=False)

    def _end_cycle(self, plan: Plan) -> None:
        self.watched = plan.watched
        self.discovered = plan.discovered
        keep = set(plan.watched)
        for job_id in [job_id for job_id in self._memory if job_id not in keep]:
            del self._memory[job_id]  # no longer watched (reload, ownership, left)


def _log_left(left: Sequence[Outcome]) -> None:
    if left:
        log.info(
            "jobs_left_searches",
            jobs=len(left),
            deleted=sum(1 for outcome in left if outcome.error == "not_found"),
            unknown=sum(1 for outcome in left if outcome.error not in (None, "not_found")),
        )


def _log_changes(changes: Sequence[tuple[str, str | None, Outcome]]) -> None:
    for job_id, old_error, outcome in changes[:MAX_JOB_LOG_LINES_PER_CYCLE]:
        _log_job_change(job_id, old_error, outcome)
    rest = changes[MAX_JOB_LOG_LINES_PER_CYCLE:]
    if rest:
        # Recoveries are good news: summing them up is no warning.
        failing = sum(1 for _, _, outcome in rest if outcome.error is not None)
        summary = log.warning if failing else log.info
        summary("job_poll_changes_not_logged", jobs=len(rest), failing=failing)


def _log_job_change(job_id: str, old_error: str | None, outcome: Outcome) -> None:
    if outcome.error is None:
        log.info("job_poll_recovered", job_id=job_id, previous_error=old_error)
    elif outcome.error == "not_found":
        log.warning("job_not_found", job_id=job_id, message=outcome.message)
    else:
        log.warning("job_poll_failed", job_id=job_id, error=outcome.error, message=outcome.message)
