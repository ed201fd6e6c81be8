"""Runs that progress over time: every job starts a run about every ``run_interval`` seconds.

Each cycle goes pending -> executing -> completed, faulted or aborted, with Error/Warning/Information
messages; jobs are staggered across the interval. One thread drives a heap of due events, so the cost
is per event, not per job per tick. Outcomes come from a seeded generator.
"""

from __future__ import annotations

import heapq
import random
import threading
import time

from ccs_exporter.simulator.jobs import JobStore
from ccs_exporter.simulator.records import (
    STATUS_ABORTED,
    STATUS_COMPLETED,
    STATUS_EXECUTING,
    STATUS_FAULTED,
    STATUS_PENDING,
    StoredJob,
)
from ccs_exporter.simulator.validation import ApiError

_OUTCOMES = ((STATUS_COMPLETED, 0.7), (STATUS_FAULTED, 0.2), (STATUS_ABORTED, 0.1))
# Fractions of the interval a run spends pending and executing.
_PENDING_SHARE = (0.03, 0.08)
_EXECUTING_SHARE = (0.15, 0.45)
_BATCH = 50


class RunProgression:
    """Drives the runs of every job in ``store``; ``start()`` spawns the thread, ``stop()`` ends it."""

    def __init__(self, store: JobStore, run_interval: float, seed: int, stopping: threading.Event) -> None:
        self._store = store
        self._interval = run_interval
        self._rng = random.Random(seed ^ 0xC0FFEE)
        self._stopping = stopping
        self._events: list[tuple[float, int, str, int, str]] = []
        self._counter = 0
        self._tick = min(0.1, max(0.005, run_interval / 20))
        self._thread = threading.Thread(target=self._loop, name="ccs-sim-runs", daemon=True)

    def start(self) -> None:
        now = time.monotonic()
        with self._store.lock:
            for job_id in self._store.ids():
                job = self._store.get(job_id)
                running = job.running_run
                if running is None:
                    self._schedule(job, now + self._rng.uniform(0, self._interval), "start")
                else:
                    kind = "execute" if running.status == STATUS_PENDING else "finish"
                    self._schedule(job, now + self._rng.uniform(0.05, 0.5) * self._interval, kind)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def job_added(self, job: StoredJob) -> None:
        """Bring a job created while running into the cycle (called with the store lock held)."""
        kind = "start" if job.running_run is None else "execute"
        self._schedule(job, time.monotonic() + self._rng.uniform(0.1, 1.0) * self._interval, kind)

    def run_queued(self, job: StoredJob) -> None:
        """A run queued through the API (pending): it executes and finishes like the others."""
        self._schedule(job, time.monotonic() + self._rng.uniform(*_PENDING_SHARE) * self._interval, "execute")

    def _schedule(self, job: StoredJob, due: float, kind: str) -> None:
        job.schedule_seq += 1
        self._counter += 1
        heapq.heappush(self._events, (due, self._counter, job.job_id, job.schedule_seq, kind))

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
        rng, interval = self._rng, self._interval
        if kind == "start" and running is None:
            self._store.start_run(job.job_id, STATUS_PENDING)
            self._schedule(job, now + rng.uniform(*_PENDING_SHARE) * interval, "execute")
        elif running is None:
            # Finished by hand (finish_run) or history deleted: wait for the next cycle.
            self._schedule(job, now + rng.uniform(0.5, 1.0) * interval, "start")
        elif kind == "execute" and running.status == STATUS_PENDING:
            self._store.set_running_status(job.job_id, STATUS_EXECUTING)
            self._schedule(job, now + rng.uniform(*_EXECUTING_SHARE) * interval, "finish")
        elif kind == "finish" or running.status == STATUS_EXECUTING:
            status = rng.choices([s for s, _ in _OUTCOMES], [w for _, w in _OUTCOMES])[0]
            self._store.finish_run(job.job_id, status, _messages(status, rng))
            self._schedule(job, now + rng.uniform(0.45, 0.75) * interval, "start")
        else:
            self._schedule(job, now + rng.uniform(*_PENDING_SHARE) * interval, "execute")


def _messages(status: int, rng: random.Random) -> dict[str, int]:
    if status == STATUS_FAULTED:
        return {"Error": rng.randint(1, 3), "Warning": rng.randint(0, 2), "Information": rng.randint(0, 1)}
    if status == STATUS_ABORTED:
        return {"Warning": 1, "Information": rng.randint(0, 1)}
    return {"Warning": rng.randint(0, 1), "Information": rng.randint(0, 2)}
