"""The simulator's stored records: jobs and runs as compact slotted objects, and how they render.

DateTimes are kept already formatted in the shape each job uses, so payloads are assembled per request
without conversions; ``format_time`` renders the shapes the vendor pages show.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

NEVER = "0001-01-01T00:00:00"

STATUS_PENDING = 1
STATUS_EXECUTING = 2
STATUS_COMPLETED = 4
STATUS_FAULTED = 5
STATUS_ABORTED = 7

_IST = timezone(timedelta(hours=5, minutes=30))
_PST = timezone(timedelta(hours=-8))
TIME_STYLES = ("utc", "offset", "dotnet", "mixed")


def utc_now() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(timezone.utc)


def format_time(moment: datetime, style: str, role: str = "stamp") -> str:
    """Render a DateTime in one of the shapes the vendor pages show.

    ``utc``: naive UTC (``2026-10-01T05:44:42``); ``offset``: with ``+05:30``; ``dotnet``: .NET's 7-digit
    fraction with ``-08:00``; ``mixed``: like the jobruns sample, starts with ``+05:30`` and ends naive UTC.
    """
    if style == "mixed":
        style = "offset" if role == "start" else "utc"
    if style == "offset":
        return moment.astimezone(_IST).replace(microsecond=0).isoformat()
    if style == "dotnet":
        local = moment.astimezone(_PST)
        seventh = (local.microsecond * 7) % 10
        return f"{local:%Y-%m-%dT%H:%M:%S}.{local.microsecond:06d}{seventh}-08:00"
    return f"{moment.astimezone(timezone.utc):%Y-%m-%dT%H:%M:%S}"


class RunMessage(NamedTuple):
    """One entry of a run's ``JobMessages``."""

    DateTime: str
    Message: str
    MessageDetails: str | None
    Category: str
    Asset: str | None
    AssetType: str | None
    AssetOwner: str | None


_MESSAGE_TEMPLATES: dict[str, tuple[tuple[str, str], ...]] = {
    "Error": (
        (
            "Windows Data Collector: query returned with message(s).",
            "The credentials for asset have not been configured. "
            "Please configure credentials using platform configuration.",
        ),
        (
            "UNIX Data Collector: connection failed.",
            "The asset did not answer on port 22 within the timeout.",
        ),
    ),
    "Warning": (
        ("Asset timed out.", "Data collection on the asset exceeded AssetTimeOut and was skipped."),
        ("Stale data used.", "Collected data older than the incremental period was evaluated."),
    ),
    "Information": (
        ("Evaluation completed.", "All checks of the standard were evaluated."),
        ("Data collection completed.", "Data was collected from every reachable asset."),
    ),
}
_ASSETS = (
    ("CORP\\10.20.0.11", "Windows Machine"),
    ("CORP\\10.20.0.12", "Windows Machine"),
    ("lnx-web-01.corp.example", "UNIX Machine"),
    ("CORP\\sql-01", "SQL Server Database"),
)


def build_messages(counts: Mapping[str, int], at: str, owner: str | None) -> tuple[RunMessage, ...]:
    """Messages of the given categories (``{"Error": 2, "Warning": 1}``), from fixed templates."""
    messages: list[RunMessage] = []
    for category, count in counts.items():
        templates = _MESSAGE_TEMPLATES.get(category, ((f"{category} message.", None),))
        for index in range(max(0, int(count))):
            text, details = templates[index % len(templates)]
            asset, asset_type = _ASSETS[(len(messages) + index) % len(_ASSETS)]
            messages.append(RunMessage(at, text, details, category, asset, asset_type, owner))
    return tuple(messages)


@dataclass(slots=True)
class StoredRun:
    """One run of a job; ``end`` is None while it is pending or executing."""

    run_id: str
    status: int
    start: str
    end: str | None = None
    messages: tuple[RunMessage, ...] = ()
    summary: str | None = None
    status_details: str | None = None
    custom_status_text: str | None = None
    exception: str | None = None

    @property
    def running(self) -> bool:
        return self.end is None

    def payload(self, show_messages: bool) -> dict[str, Any]:
        return {
            "Exception": self.exception,
            "ActivityStatusList": None,
            "CustomStatusText": self.custom_status_text,
            "JobEndTime": self.end,
            "JobStartTime": self.start,
            "JobSummary": self.summary,
            "Status": self.status,
            "StatusDetails": self.status_details,
            "JobRunID": self.run_id,
            "MessageCount": len(self.messages),
            "JobMessages": [message._asdict() for message in self.messages] if show_messages else None,
        }


@dataclass(slots=True)
class StoredJob:
    """A job as CCS holds it: properties, config details (None for other job types) and runs."""

    job_id: str
    name: str
    job_type: str
    owner: str
    created: str
    modified: str
    is_system: bool = False
    config: dict[str, Any] | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    runs: list[StoredRun] = field(default_factory=list)
    last_run_date: str = NEVER
    last_run_status: int = 0
    time_style: str = "utc"
    # Sample scenarios: the scheduler never starts a stalled job; a hung run never ends by itself.
    stalled: bool = False
    hung_run: str | None = None
    # Bumped whenever the run progression schedules this job, so stale scheduled events are ignored.
    schedule_seq: int = 0

    def properties(self) -> dict[str, Any]:
        return {
            "IsSystemJob": self.is_system,
            "JobCreationTime": self.created,
            "JobID": self.job_id,
            "JobModifiedTime": self.modified,
            "JobType": self.job_type,
            "LastRunDate": self.last_run_date,
            "LastRunStatus": self.last_run_status,
            "Name": self.name,
            "Owner": self.owner,
        }

    def payload(self) -> dict[str, Any]:
        return {"JobProperties": self.properties(), "JobConfigDetails": self.config}

    def runs_payload(self, count: int, show_messages: bool) -> dict[str, Any]:
        newest_first = self.runs[::-1] if count == 0 else self.runs[: -count - 1 : -1]
        return {
            "TotalJobRuns": len(self.runs),
            "JobID": self.job_id,
            "JobStatusInfo": [run.payload(show_messages) for run in newest_first],
        }

    @property
    def running_run(self) -> StoredRun | None:
        """The latest run when it has not finished."""
        return self.runs[-1] if self.runs and self.runs[-1].running else None

    def refresh_last_run(self) -> None:
        """LastRunDate/LastRunStatus from the latest run (its start time), or "never"."""
        if self.runs:
            self.last_run_date = self.runs[-1].start
            self.last_run_status = self.runs[-1].status
        else:
            self.last_run_date = NEVER
            self.last_run_status = 0


SUMMARIES = {
    STATUS_COMPLETED: "Job completed successfully.",
    STATUS_FAULTED: "Job completed with errors.",
    STATUS_ABORTED: "Job was aborted.",
}
