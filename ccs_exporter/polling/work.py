"""One cycle's work for one job, as a union of small kinds, and what doing it gave.

The plan (``plan.py``) gives each watched job one ``WorkItem``; the reader (``reading.py``) does it and
returns an ``Outcome``; the book (``book.py``) keeps each job's ``JobMemory`` between cycles.
"""

from __future__ import annotations

from dataclasses import dataclass

from ccs_exporter.client import SearchItem
from ccs_exporter.models import Job
from ccs_exporter.polling.discovery import StaleJob
from ccs_exporter.polling.schedule_reading import ScheduleReading
from ccs_exporter.polling.snapshot import JobChange, JobSnapshot


@dataclass(frozen=True, slots=True)
class ReadById:
    """A configured job no search listed this cycle: read it by id (one request, and its runs if needed)."""

    job_id: str


@dataclass(frozen=True, slots=True)
class ParseItem:
    """A job a search listed with an item other than the one its last reading came from: parse the item."""

    job_id: str
    item: SearchItem


@dataclass(frozen=True, slots=True)
class ReuseReading:
    """A job listed with the very item its last reading came from: that reading stands."""

    job_id: str


@dataclass(frozen=True, slots=True)
class KeepStale:
    """A job whose search failed this cycle: it keeps its last values, marked stale."""

    job_id: str
    stale: StaleJob


@dataclass(frozen=True, slots=True)
class ReportBad:
    """A job whose search item could not be read."""

    job_id: str
    message: str


@dataclass(frozen=True, slots=True)
class LookUpLeaving:
    """A discovered job that left every search result: look it up once by id, then forget it."""

    job_id: str


WorkItem = ReadById | ParseItem | ReuseReading | KeepStale | ReportBad | LookUpLeaving


@dataclass(slots=True)
class JobMemory:
    """What the poller remembers of a job between cycles (not published).

    ``read_at`` is when ``snapshot`` was last read or found unchanged: a job at rest keeps its memory
    and its snapshot, and only this time moves (in place, on the cycle's thread).
    """

    snapshot: JobSnapshot | None = None
    # The last definition, kept with the audit trail on to hand on with a change: a job found by a search
    # as its item's compact JSON (parsed only when needed), a job read by id as parsed.
    job: Job | bytes | None = None
    runs_key: tuple[object, ...] | None = None
    schedule: ScheduleReading | None = None
    error: str | None = None
    digest: bytes | None = None  # of the search item this reading came from
    read_at: float | None = None

    def with_reading(self, snapshot: JobSnapshot, read_at: float) -> JobMemory:
        """This memory with another reading (``dataclasses.replace`` costs several times more, per job)."""
        return JobMemory(snapshot, self.job, self.runs_key, self.schedule, self.error, self.digest, read_at)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one work item gave: the job's new memory (None when it is gone), or why it failed."""

    job_id: str
    memory: JobMemory | None  # None: the job is gone (404)
    error: str | None
    message: str = ""
    reached_ccs: bool = True
    runs_fetched: bool = False
    change: JobChange | None = None
    left: bool = False  # no longer watched: its series end


@dataclass(frozen=True)
class Plan:
    """One cycle's work: an item per watched job (in order), then the jobs leaving the watch."""

    items: tuple[WorkItem, ...]
    watched: tuple[str, ...]
    discovered: frozenset[str]
    created: tuple[JobChange, ...] = ()
