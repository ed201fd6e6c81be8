"""What each watched job's CCS ``Schedule`` says, derived once per change of the block, and the log lines.

The poller keeps one ``ScheduleReading`` per job between cycles: deriving a schedule reads some twenty
fields, computing occurrences from it (done at every rendering) takes microseconds. An unknown schedule
is logged when its reason changes, so each job says it once, not every cycle.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from ccs_exporter.models import JobSchedule
from ccs_exporter.schedule import (
    NoRunTimeLimit,
    NoSchedule,
    Schedule,
    derive_run_time_limit,
    derive_schedule,
)

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ScheduleReading:
    """What a job's ``Schedule`` says, derived once and kept while the block stays the same.

    Only the block's fingerprint is kept, not the block (a few kilobytes a job). Unknown schedules and
    limits are logged when their reason changes, not every cycle.
    """

    fingerprint: int | None
    schedule: Schedule | NoSchedule
    run_time_limit: float | NoRunTimeLimit

    @classmethod
    def of(cls, job_id: str, block: JobSchedule | None, previous: ScheduleReading | None) -> ScheduleReading:
        """The reading for this cycle: ``previous`` while the block is unchanged, else a new one."""
        fingerprint = block.fingerprint() if block is not None else None
        if previous is not None and previous.fingerprint == fingerprint:
            return previous
        reading = cls(fingerprint, derive_schedule(block), derive_run_time_limit(block))
        reading._log_change(job_id, previous)
        return reading

    def _log_change(self, job_id: str, previous: ScheduleReading | None) -> None:
        schedule, limit = self.schedule, self.run_time_limit
        before = previous.schedule if previous is not None else None
        if isinstance(schedule, NoSchedule):
            if not isinstance(before, NoSchedule) or before.reason != schedule.reason:
                say = log.warning if schedule.invalid else log.info
                say("job_schedule_unknown", job_id=job_id, reason=schedule.reason)
        elif isinstance(before, NoSchedule):
            log.info("job_schedule_known", job_id=job_id, schedule=schedule.describe())
        old_limit = previous.run_time_limit if previous is not None else None
        if (
            isinstance(limit, NoRunTimeLimit)
            and limit.invalid
            and not (isinstance(schedule, NoSchedule) and schedule.reason == limit.reason)
            and not (isinstance(old_limit, NoRunTimeLimit) and old_limit.reason == limit.reason)
        ):
            log.warning("job_run_time_limit_unknown", job_id=job_id, reason=limit.reason)

    @property
    def known_schedule(self) -> Schedule | None:
        """The schedule, or None when it is unknown."""
        return self.schedule if isinstance(self.schedule, Schedule) else None

    @property
    def known_run_time_limit(self) -> float | None:
        """The run-time limit in seconds, or None when there is none."""
        return self.run_time_limit if isinstance(self.run_time_limit, float) else None
