"""Runs that progress over time, on an interval or on the jobs' schedules.

Each run goes pending -> executing -> completed, faulted or aborted, with Error/Warning/Information
messages. With ``run_interval`` every job starts a run about that often (staggered across the interval).
With ``follow_schedules`` a job whose ``Schedule`` we can read starts a run at each occurrence instead
(a second after it, so the run is never early), and runs take seconds to a couple of minutes. A stalled
sample job is never started by either; a hung sample run never ends by itself. Runs queued through the
API progress too. One thread drives a heap of due events, so the cost is per event, not per job per
tick. Outcomes come from a seeded generator.
"""

from __future__ import annotations

import heapq
import random
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ccs_exporter.models import JobSchedule
from ccs_exporter.schedule import Schedule, derive_run_time_limit, derive_schedule, next_occurrence
from ccs_exporter.simulator.jobs import JobStore
from ccs_exporter.simulator.records import (
    STATUS_ABORTED,
    STATUS_COMPLETED,
    STATUS_EXECUTING,
    STATUS_FAULTED,
    STATUS_PENDING,
    StoredJob,
    utc_now,
)
from ccs_exporter.simulator.validation import ApiError

_OUTCOMES = ((STATUS_COMPLETED, 0.7), (STATUS_FAULTED, 0.2), (STATUS_ABORTED, 0.1))
# Fractions of the interval a run spends pending and executing (interval mode).
_PENDING_SHARE = (0.03, 0.08)
_EXECUTING_SHARE = (0.15, 0.45)
# Seconds a run spends pending and executing when it is not on an interval (schedules, API runs).
_PENDING_SECONDS = (2.0, 10.0)
_EXECUTING_SECONDS = (20.0, 120.0)
# A scheduled run starts this long after its occurrence: never before it, whatever the clocks do.
_SCHEDULE_MARGIN_SECONDS = 1.0
_BATCH = 50


class RunProgression:
    """Drives the runs of every job in ``store``; ``start()`` spawns the thread, ``stop()`` ends it."""

    def __init__(
        self,
        store: JobStore,
        run_interval: float | None,
        seed: int,
        stopping: threading.Event,
        *,
        follow_schedules: bool = False,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._store = store
        self._interval = run_interval or None
        self._follow = follow_schedules
        self._clock = clock
        self._rng = random.Random(seed ^ 0xC0FFEE)
        self._stopping = stopping
        self._events: list[tuple[float, int, str, int, str]] = []
        self._counter = 0
        self._tick = min(0.1, max(0.005, self._interval / 20)) if self._interval else 0.1
        self._thread = threading.Thread(target=self._loop, name="ccs-sim-runs", daemon=True)

    def start(self) -> None:
        now = time.monotonic()
        with self._store.lock:
            for job_id in self._store.ids():
                self._plan(self._store.get(job_id), now, "initial")
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    # --- hooks the store calls with its lock held ------------------------------------------------------

    def job_added(self, job: StoredJob) -> None:
        """Bring a job created while running into the cycle."""
        self._plan(job, time.monotonic(), "added")

    def run_queued(self, job: StoredJob) -> None:
        """A run queued through the API (pending): it executes and finishes like the others."""
        self._plan(job, time.monotonic(), "queued")

    def job_changed(self, job: StoredJob) -> None:
        """The job's definition changed (its schedule perhaps): plan again from its state."""
        self._plan(job, time.monotonic(), "changed")

    # --- planning ------------------------------------------------------------------------------------

    def _plan(self, job: StoredJob, now: float, moment: str) -> None:
        """Schedule the job's next event from its state; ``moment`` says why we plan (for staggering)."""
        running = job.running_run
        if running is not None:
            if running.run_id == job.hung_run:
                job.schedule_seq += 1  # nothing to do: any event still queued is stale
                return
            kind = "execute" if running.status == STATUS_PENDING else "finish"
            if moment == "initial" and self._on_interval(job):
                assert self._interval is not None
                self._schedule(job, now + self._rng.uniform(0.05, 0.5) * self._interval, kind)
            else:
                self._schedule(job, now + self._phase_seconds(job, kind), kind)
            return
        due = self._next_start(job, now, moment)
        if due is None:
            job.schedule_seq += 1
        else:
            self._schedule(job, due, "start")

    def _next_start(self, job: StoredJob, now: float, moment: str) -> float | None:
        if job.stalled:
            return None
        schedule = _schedule_of(job) if self._follow else None
        if schedule is not None:
            wall = self._clock()
            occurrence = next_occurrence(schedule, wall)
            if occurrence is None:
                return None
            return now + max(0.0, (occurrence - wall).total_seconds()) + _SCHEDULE_MARGIN_SECONDS
        if self._interval is None:
            return None
        low, high = {"initial": (0.0, 1.0), "added": (0.1, 1.0), "finished": (0.45, 0.75)}.get(
            moment, (0.5, 1.0)
        )
        return now + self._rng.uniform(low, high) * self._interval

    def _on_interval(self, job: StoredJob) -> bool:
        """Whether the job's runs are paced by the interval (not by a schedule or in seconds)."""
        return self._interval is not None and not (self._follow and _schedule_of(job) is not None)

    def _phase_seconds(self, job: StoredJob, kind: str) -> float:
        if self._on_interval(job):
            assert self._interval is not None
            share = _PENDING_SHARE if kind == "execute" else _EXECUTING_SHARE
            return self._rng.uniform(*share) * self._interval
        seconds = self._rng.uniform(*(_PENDING_SECONDS if kind == "execute" else _EXECUTING_SECONDS))
        limit = _run_time_limit(job)
        return seconds if limit is None else min(seconds, 0.4 * limit)

    def _schedule(self, job: StoredJob, due: float, kind: str) -> None:
        job.schedule_seq += 1
        self._counter += 1
        heapq.heappush(self._events, (due, self._counter, job.job_id, job.schedule_seq, kind))

    # --- the thread ----------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stopping.wait(self._tick):
            now = time.monotonic()
            due = True
            while due and not self._stopping.is_set():
                # Small batches, so requests are not kept waiting for the lock behind thousands of events.
                with self._store.lock:
                    for _ in range(_BATCH):
                        due = bool(self._events) and self._events[0][0] <= now
                        if not due:
                            break
                        _, _, job_id, seq, kind = heapq.heappop(self._events)
                        try:
                            job = self._store.get(job_id)
                        except ApiError:
                            continue  # deleted
                        if job.schedule_seq == seq:
                            self._advance(job, kind, now)

    def _advance(self, job: StoredJob, kind: str, now: float) -> None:
        running = job.running_run
        if kind == "start" and running is None:
            self._store.start_run(job.job_id, STATUS_PENDING)
        elif running is None or running.run_id == job.hung_run:
            pass  # finished or aborted by hand, or history deleted: plan from the state below
        elif running.status == STATUS_PENDING:
            self._store.set_running_status(job.job_id, STATUS_EXECUTING)
        else:
            status = self._rng.choices([s for s, _ in _OUTCOMES], [w for _, w in _OUTCOMES])[0]
            self._store.finish_run(job.job_id, status, _messages(status, self._rng))
            self._plan(job, now, "finished")
            return
        self._plan(job, now, "advanced")


def _schedule_of(job: StoredJob) -> Schedule | None:
    block = _schedule_block(job)
    if block is None:
        return None
    schedule = derive_schedule(block)
    return schedule if isinstance(schedule, Schedule) else None


def _run_time_limit(job: StoredJob) -> float | None:
    limit = derive_run_time_limit(_schedule_block(job))
    return limit if isinstance(limit, float) else None


def _schedule_block(job: StoredJob) -> JobSchedule | None:
    raw: Any = (job.config or {}).get("Schedule")
    return JobSchedule.model_validate(raw) if isinstance(raw, dict) else None


def _messages(status: int, rng: random.Random) -> dict[str, int]:
    if status == STATUS_FAULTED:
        return {"Error": rng.randint(1, 3), "Warning": rng.randint(0, 2), "Information": rng.randint(0, 1)}
    if status == STATUS_ABORTED:
        return {"Warning": 1, "Information": rng.randint(0, 1)}
    return {"Warning": rng.randint(0, 1), "Information": rng.randint(0, 2)}
