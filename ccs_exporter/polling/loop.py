"""The poll loop: runs poll cycles in a background thread on a fixed cadence and publishes each snapshot.

Cycles never overlap; one longer than the interval is counted and the next starts at the next tick. A
reload (SIGHUP, a changed config file) hands the poller a new watch list between cycles. Any error in a
cycle, a publish or a reload is caught, counted by stage and logged once, and the loop goes on. A
watchdog thread republishes the last snapshot as stalled (``up`` false) when no cycle has completed for
``PollHealth.stall_after_seconds``, since a loop stuck in a call never publishes anything itself.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable

import structlog

from ccs_exporter.errors import ConfigError
from ccs_exporter.polling.cycle import Poller
from ccs_exporter.polling.discovery import WatchList
from ccs_exporter.polling.health import PollHealth
from ccs_exporter.polling.heap import release_free_memory
from ccs_exporter.polling.snapshot import PollSnapshot
from ccs_exporter.settings.reloads import ReloadRecord

log = structlog.get_logger(__name__)

NOTHING_TO_WATCH = (
    "no job ids and no job search: set CCS_EXPORTER_JOB_IDS or CCS_EXPORTER_JOB_SEARCH (job_ids, job_search "
    "in the --config file); until then ccs_watched_jobs is 0 and no job is polled"
)


def warn_if_nothing_to_watch(watch: WatchList) -> None:
    """The warning serve logs at start and at each reload when it has nothing to watch."""
    if watch.empty:
        log.warning("nothing_to_watch", hint=NOTHING_TO_WATCH)


class PollLoop:
    """Runs poll cycles in a background thread every ``interval`` seconds and publishes each snapshot."""

    def __init__(
        self,
        poller: Poller,
        interval: float,
        publish: Callable[[PollSnapshot], None],
        *,
        reload: Callable[[], WatchList] | None = None,
        source_changed: Callable[[], bool] | None = None,
        on_stall: Callable[[PollSnapshot], None] | None = None,
        reloads: ReloadRecord | None = None,
    ) -> None:
        self._poller = poller
        self.reloads = reloads or ReloadRecord()
        self._health: PollHealth = poller.health
        # Where the watchdog publishes the stalled snapshot: not ``publish``, which may be what hangs
        # (and would hand on the last cycle's changes a second time).
        self._on_stall = on_stall
        self._last: PollSnapshot | None = None
        self._stalled = False
        self._interval = interval
        self._publish = publish
        self._reload = reload
        self._source_changed = source_changed
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._reload_requested = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ccs-poll-loop", daemon=True)
        self._watchdog = threading.Thread(target=self._watch, name="ccs-poll-watchdog", daemon=True)
        self._overruns = 0
        self._slow = False

    @property
    def ready(self) -> bool:
        """True once the first cycle has been published."""
        return self._ready.is_set()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until the first cycle is published; False on timeout."""
        return self._ready.wait(timeout)

    @property
    def health(self) -> PollHealth:
        """Errors caught on the poll path and the time of the last completed cycle."""
        return self._health

    def start(self) -> None:
        """Start the background thread and its watchdog."""
        self._thread.start()
        self._watchdog.start()

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

    def _watch(self) -> None:
        """The watchdog: when no cycle completed for too long, republish the last snapshot as stalled."""
        period = min(1.0, self._health.stall_after_seconds / 10)
        while not self._stop.wait(period):
            stalled_for = self._health.stalled_for()
            if stalled_for is None or self._stalled:
                continue
            last = self._last
            if last is None:
                continue  # nothing published yet: /readyz already says not ready
            self._stalled = True
            log.error(
                "poll_loop_stalled",
                seconds_since_last_cycle=round(stalled_for, 1),
                limit_seconds=self._health.stall_after_seconds,
            )
            if self._on_stall is not None:
                stalled = dataclasses.replace(last, up=False, stalled=True, changes=(), errors=self._errors())
                try:
                    self._on_stall(stalled)
                except Exception as exc:
                    self._health.error("publish", exc)

    def _errors(self) -> tuple[tuple[str, int], ...]:
        return tuple(self._health.errors().items())

    def _run(self) -> None:
        warn_if_nothing_to_watch(self._poller.watch)
        while not self._stop.is_set():
            self._maybe_reload()
            started = time.monotonic()
            try:
                snapshot = self._poller.poll_cycle(self._stop)
            except Exception as exc:  # never let one cycle's bug end the loop
                self._health.error("cycle", exc)
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
                snapshot = dataclasses.replace(snapshot, overruns=self._overruns, errors=self._errors())
                try:
                    self._publish(snapshot)
                except Exception as exc:  # not published, so not completed: the watchdog will see
                    self._health.error("publish", exc)
                else:
                    self._last = snapshot
                    self._health.cycle_completed()
                    if self._stalled:
                        self._stalled = False
                        log.info("poll_loop_resumed")
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
                release_free_memory()  # what the cycle and the last exposition held
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
            except Exception:  # an unreadable file is no change; a SIGHUP still reloads
                changed = False
        if not changed:
            return
        self._reload_requested.clear()
        try:
            watch = self._reload()
        except ConfigError as exc:
            log.error("reload_failed", error=str(exc), kept_jobs=len(self._poller.job_ids))
            self.reloads.failed()
            return
        except Exception as exc:  # not a bad file but a bug: counted, and the old list stays
            self.reloads.failed()
            self._health.error("reload", exc)
            log.error("reload_failed", error=type(exc).__name__, kept_jobs=len(self._poller.job_ids))
            return
        self._poller.set_watch(watch)
        self.reloads.succeeded()
        log.info("job_list_reloaded", jobs=len(watch.job_ids), searches=len(watch.searches))
        warn_if_nothing_to_watch(watch)
