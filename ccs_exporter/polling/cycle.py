"""One poll cycle, end to end: log in, list the searches, plan, read the jobs, publish a snapshot.

``Poller`` is driven by the background loop (``loop.py``), one cycle at a time: cycles never overlap.
The plan (``plan.py``) says what to do for each job, the reader (``reading.py``) does it on the worker
threads, and the book (``book.py``) keeps what is remembered between cycles. Job changes (created,
changed, deleted) go on as data in the snapshot; nothing here writes the audit trail.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Sequence

import structlog

from ccs_exporter.client import CcsClient
from ccs_exporter.errors import CcsError, ConfigError
from ccs_exporter.polling.book import JobBook
from ccs_exporter.polling.discovery import Discoverer, Discovery, WatchList
from ccs_exporter.polling.health import PollHealth, stall_after
from ccs_exporter.polling.plan import created_jobs, plan_cycle
from ccs_exporter.polling.reading import JobReader, error_kind
from ccs_exporter.polling.snapshot import PollSnapshot
from ccs_exporter.polling.work import Outcome, Plan, WorkItem
from ccs_exporter.polling.workers import WorkerPool

log = structlog.get_logger(__name__)

JobOwnership = Callable[[str], bool]
"""Says whether this process watches a job (by lower-case id); every job, unless sharded."""


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
        health: PollHealth | None = None,
    ) -> None:
        self._client = client
        self.health = health if health is not None else PollHealth(stall_after(60.0))
        self._track_changes = track_changes
        self._clock = clock
        self._owns = owns
        self._pool = WorkerPool(concurrency, on_error=lambda exc: self.health.error("worker", exc))
        self._lock = threading.Lock()
        self._watch = WatchList(tuple(job_ids), tuple(searches), page_size)
        self._pending: WatchList | None = None
        self._discoverer = Discoverer(client, self._watch.searches, page_size)
        self._reader = JobReader(
            client, history_window=history_window, track_changes=track_changes, clock=clock
        )
        self._book = JobBook()
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
            # Items of jobs whose reading came from the very same item, or that another shard owns, are
            # kept without their text: the plan reuses those readings or leaves the jobs alone (the book
            # does not change while the searches are listed).
            try:
                discovery = self._discoverer.discover(
                    self._pool, listing_started, stop, known=self._needs_no_text
                )
            except Exception as exc:  # a bug in listing: the jobs found before stay, as for a stop
                self.health.error("discovery", exc)
        plan = self._plan(watch, discovery)
        outcomes = self._outcomes(plan, login_error, stop)
        states = self._book.apply(plan, outcomes, quiet=login_error is not None)
        if discovery is not None:
            self._discoverer.drop_read_texts(self._needs_no_text)
        reached = discovery is not None and discovery.reached_ccs
        up = login_error is None and (
            not plan.items
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
        changes += [outcome.change for outcome in outcomes if outcome is not None and outcome.change]
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
            except Exception as exc:  # a bug or an answer nothing expected: no login this cycle
                self.health.error("login", exc)
                return exc
            return None

        return self._pool.map(attempt, [None], stop)[0]

    def _needs_no_text(self, job_id: str, digest: bytes) -> bool:
        """True when a search item's text will not be parsed: the job's reading came from the very same
        item, or another shard owns the job (a replica never reads it, so its kept pages hold no JSON
        of other shards' jobs)."""
        return (self._owns is not None and not self._owns(job_id)) or self._book.holds_reading(job_id, digest)

    def _owned(self, job_ids: Iterable[str]) -> list[str]:
        """The jobs this process watches, of the given ones: the one ownership filter (sharding)."""
        if self._owns is None:
            return list(job_ids)
        return [job_id for job_id in job_ids if self._owns(job_id)]

    def _plan(self, watch: WatchList, discovery: Discovery | None) -> Plan:
        plan = plan_cycle(watch, discovery, self._book, self._owned)
        if discovery is None or not self._track_changes:
            return plan
        known = [*self._book.watched, *self._book.departed]  # a job back from elsewhere is no new job
        created = created_jobs(self._client, discovery, plan.watched, known)
        return dataclasses.replace(plan, created=tuple(created))

    def _outcomes(
        self, plan: Plan, login_error: Exception | None, stop: threading.Event | None
    ) -> list[Outcome | None]:
        if stop is not None and stop.is_set():
            return [None] * len(plan.items)  # stopping: keep what is known
        if login_error is not None:
            kind = error_kind(login_error)
            return [
                Outcome(item.job_id, self._book.memory(item.job_id), kind, reached_ccs=False)
                for item in plan.items
            ]
        return self._run(plan.items, stop)

    def _run(self, items: Sequence[WorkItem], stop: threading.Event | None) -> list[Outcome | None]:
        """Items that send no request run here (most discovered jobs at rest); the rest on the workers."""
        outcomes: list[Outcome | None] = [None] * len(items)
        remote: list[int] = []
        for index, item in enumerate(items):
            if self._reader.needs_request(item, self._book.reading(item.job_id)):
                remote.append(index)
            else:
                outcomes[index] = self._do(item)
        answers = self._pool.map(self._do, [items[index] for index in remote], stop)
        for index, answer in zip(remote, answers, strict=True):
            outcomes[index] = answer
        return outcomes

    def _do(self, item: WorkItem) -> Outcome:
        memory = self._book.memory(item.job_id)
        try:
            return self._reader.do(item, memory)
        except Exception as exc:  # one job's bug fails that job, not the worker or the cycle
            self.health.error("job", exc)
            message = f"internal error ({type(exc).__name__})"
            return Outcome(item.job_id, memory, error_kind(exc), message, reached_ccs=False)

    def _log_up_change(
        self, up: bool, login_error: Exception | None, outcomes: Sequence[Outcome | None]
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
            log.error("ccs_login_failed", error=error_kind(login_error), message=str(login_error))
        else:
            sample = next((outcome for outcome in outcomes if outcome is not None and outcome.error), None)
            log.error(
                "ccs_login_failed" if sample is not None and sample.error == "auth" else "ccs_unreachable",
                error=sample.error if sample is not None else "unknown",
                message=sample.message if sample is not None else "",
            )
