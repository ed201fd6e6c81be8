"""Whether the poll path is making progress: errors caught anywhere in it, and when a cycle last completed.

Any exception in a worker, a cycle or the loop is caught where it happens, counted here by stage (a
bounded label) and logged once per stage and kind, and the cycle goes on. The watchdog side says when
no cycle has completed for ``stall_after_seconds`` (by default the larger of three poll intervals and a
floor), so a hung loop can never look healthy: readiness fails and ``ccs_up`` drops to 0.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

import structlog

log = structlog.get_logger(__name__)

# Where an error was caught: the label values of ccs_poll_errors_total (a fixed set, so bounded).
STAGES = ("login", "discovery", "job", "worker", "cycle", "publish", "reload")
# A cycle may legitimately take a while (a slow CCS, a long request timeout): never call the loop
# stalled before this, however short the interval.
MIN_STALL_SECONDS = 60.0
STALL_INTERVALS = 3


def stall_after(interval: float, floor: float = MIN_STALL_SECONDS) -> float:
    """How long without a completed cycle means the loop has stopped: max(3 intervals, ``floor``)."""
    return max(STALL_INTERVALS * interval, floor)


class PollHealth:
    """Counts errors caught on the poll path and watches for a loop that stopped completing cycles."""

    def __init__(self, stall_after_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_after_seconds = stall_after_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._errors = dict.fromkeys(STAGES, 0)
        self._logged: set[tuple[str, str]] = set()
        self._started = clock()
        self._last_completed: float | None = None

    def error(self, stage: str, exc: BaseException) -> None:
        """Count an error caught at ``stage``; the first of each kind per stage is logged (type only:
        the text of an unexpected error may quote a secret)."""
        stage = stage if stage in self._errors else "cycle"
        kind = type(exc).__name__
        with self._lock:
            self._errors[stage] += 1
            first = (stage, kind) not in self._logged and len(self._logged) < 256
            self._logged.add((stage, kind))
        if first:
            log.error("poll_error", stage=stage, error_type=kind)

    def errors(self) -> Mapping[str, int]:
        """Errors caught so far, by stage (every stage present)."""
        with self._lock:
            return dict(self._errors)

    def cycle_completed(self) -> None:
        """A cycle ran to the end and was published."""
        with self._lock:
            self._last_completed = self._clock()

    def stalled_for(self) -> float | None:
        """Seconds since the last completed cycle (or the start) when that is over the limit, else None."""
        with self._lock:
            since = self._last_completed if self._last_completed is not None else self._started
        elapsed = self._clock() - since
        return elapsed if elapsed > self.stall_after_seconds else None
