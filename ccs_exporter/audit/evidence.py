"""What CCS says now about a mutation whose result was never written: one lookup per action.

Each lookup reads CCS (never writes) and decides the outcome from what it finds, with the evidence:
create by searching the requested name, update by comparing the job with the request, delete by
whether the job is still there, run and abort from the job's runs. Times are compared with the
intent's, allowing ``skew`` for the clocks of this host and CCS. CCS being unreachable raises
``CcsError``: no outcome is guessed from silence.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from ccs_exporter.audit.records import JobRef
from ccs_exporter.errors import NotFoundError
from ccs_exporter.models import Job, JobRun, JobRuns, JobStatus, guid_or_none, parse_ccs_datetime

# Runs read to find the one a job.run started (the newest; a run started since the intent is among them).
RUN_WINDOW = 20


class JobList(Protocol):
    """What a search answers with."""

    @property
    def jobs(self) -> Sequence[Job]: ...


class CcsReader(Protocol):
    """The reads a lookup needs (``CcsClient`` has them)."""

    def get_job(self, job_id: str) -> Job: ...

    def get_job_runs(self, job_id: str, count: int = 1, show_messages: bool = False) -> JobRuns: ...

    def search_job_name(self, name: str) -> JobList: ...


@dataclass(frozen=True)
class PendingMutation:
    """An intent without a result, as its record describes it."""

    line: int
    audit_id: str
    action: str
    started: datetime | None
    record: Mapping[str, Any]
    job_id: str | None = None
    job_name: str | None = None
    run_id: str | None = None
    delete_job: bool = True
    requested: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Conclusion:
    """The outcome CCS shows, why (one sentence), the evidence, and what it names."""

    outcome: str
    reason: str
    evidence: dict[str, Any]
    job_id: str | None = None
    job_name: str | None = None
    run_id: str | None = None
    job: Job | None = None  # the job as read now (``change.after``)


def look_up(
    pending: PendingMutation,
    ccs: CcsReader,
    skew: timedelta,
    job_of_run: Callable[[str], JobRef | None],
) -> Conclusion:
    """What CCS shows about ``pending`` now; CcsError when CCS cannot be asked."""
    if pending.action == "job.create":
        return _created(pending, ccs, skew)
    if pending.action == "job.update":
        return _updated(pending, ccs, skew)
    if pending.action == "job.delete":
        return _deleted(pending, ccs, skew)
    if pending.action == "job.run":
        return _ran(pending, ccs, skew)
    if pending.action == "job.abort":
        return _aborted(pending, ccs, skew, job_of_run)
    return Conclusion("unknown", f"{pending.action} is not a mutation CCS can be asked about", {})


def _created(pending: PendingMutation, ccs: CcsReader, skew: timedelta) -> Conclusion:
    name = pending.job_name
    if not name:
        return Conclusion("unknown", "the intent names no job to search for", {})
    try:
        found = [job for job in ccs.search_job_name(name).jobs if job.JobProperties.Name == name]
    except NotFoundError as exc:
        return Conclusion("unknown", "this CCS cannot search jobs by name", {"search": str(exc)})
    evidence: dict[str, Any] = {"searched_name": name, "found": [_job_facts(job) for job in found]}
    if not found:
        return Conclusion(
            "failure",
            "no job has the requested name: the create was not carried out (or the job was deleted or "
            "renamed since)",
            evidence,
        )
    job = found[0]
    created = job.JobProperties.JobCreationTime
    facts = _named(job)
    if created is None or pending.started is None:
        return Conclusion(
            "unknown", "a job has the requested name but its creation time is unknown", evidence
        )
    if created < pending.started - skew:
        return Conclusion(
            "failure",
            "the job of that name was created before the intent: CCS refuses a second job of the same name",
            evidence,
            **facts,
        )
    return Conclusion(
        "success", "a job of the requested name was created after the intent", evidence, **facts, job=job
    )


def _updated(pending: PendingMutation, ccs: CcsReader, skew: timedelta) -> Conclusion:
    if pending.job_id is None:
        return Conclusion("unknown", "the intent names no job", {})
    try:
        job = ccs.get_job(pending.job_id)
    except NotFoundError:
        return Conclusion("unknown", "the job no longer exists, so what the update did cannot be seen", {})
    current = _definition(job)
    matched, differ, unseen = [], [], []
    for key, wanted in sorted(pending.requested.items()):
        if key not in current:
            unseen.append(key)
        elif _same(wanted, current[key]):
            matched.append(key)
        else:
            differ.append(key)
    modified = job.JobProperties.JobModifiedTime
    evidence: dict[str, Any] = {
        "fields_as_requested": matched,
        "fields_not_as_requested": {key: current[key] for key in differ},
        "fields_not_shown_by_ccs": unseen,
        "job_modified_time": _text(modified),
    }
    facts: dict[str, Any] = {**_named(job), "job": job}
    if modified is not None and pending.started is not None and modified < pending.started - skew:
        return Conclusion(
            "failure",
            "the job has not been modified since before the intent: the update was not carried out",
            evidence,
            **facts,
        )
    if not matched and not differ:
        return Conclusion("unknown", "CCS does not show any of the requested fields", evidence, **facts)
    if differ:
        return Conclusion(
            "unknown",
            "the job was modified after the intent but not as requested: a later change may have followed",
            evidence,
            **facts,
        )
    return Conclusion(
        "success",
        "the job holds every requested value it shows and was modified after the intent",
        evidence,
        **facts,
    )


def _deleted(pending: PendingMutation, ccs: CcsReader, skew: timedelta) -> Conclusion:
    if pending.job_id is None:
        return Conclusion("unknown", "the intent names no job", {})
    if pending.delete_job:
        try:
            job = ccs.get_job(pending.job_id)
        except NotFoundError as exc:
            return Conclusion("success", "the job no longer exists (404)", {"job": str(exc)})
        return Conclusion("failure", "the job still exists", {"job": _job_facts(job)}, **_named(job), job=job)
    try:
        runs = ccs.get_job_runs(pending.job_id, count=0)
    except NotFoundError:
        return Conclusion("unknown", "the job no longer exists, so its run history cannot be seen", {})
    older = [run for run in runs.JobStatusInfo if _started_before(run, pending.started, skew)]
    evidence = {
        "total_runs": runs.TotalJobRuns,
        "runs_from_before_the_intent": [_run_facts(r) for r in older[:5]],
    }
    if older:
        return Conclusion("failure", "runs from before the intent are still in the job's history", evidence)
    return Conclusion("success", "no run from before the intent is left in the job's history", evidence)


def _ran(pending: PendingMutation, ccs: CcsReader, skew: timedelta) -> Conclusion:
    if pending.job_id is None:
        return Conclusion("unknown", "the intent names no job", {})
    try:
        runs = ccs.get_job_runs(pending.job_id, count=RUN_WINDOW)
    except NotFoundError:
        return Conclusion("unknown", "the job no longer exists, so its runs cannot be seen", {})
    if pending.started is None:
        return Conclusion("unknown", "the intent has no time to compare runs with", {})
    low = pending.started - skew
    since = sorted(
        (run for run in runs.JobStatusInfo if run.JobStartTime is not None and run.JobStartTime >= low),
        key=lambda run: run.JobStartTime or low,
    )
    evidence: dict[str, Any] = {"runs_started_since_the_intent": [_run_facts(run) for run in since[:5]]}
    if not since:
        return Conclusion("failure", "no run of the job started after the intent", evidence)
    first = since[0]
    return Conclusion(
        "success",
        "a run of the job started after the intent (the earliest such run is taken as ours)",
        evidence,
        job_id=pending.job_id,
        run_id=guid_or_none(first.JobRunID),
    )


def _aborted(
    pending: PendingMutation,
    ccs: CcsReader,
    skew: timedelta,
    job_of_run: Callable[[str], JobRef | None],
) -> Conclusion:
    if pending.run_id is None:
        return Conclusion("unknown", "the intent names no run", {})
    job_id = pending.job_id
    if job_id is None:
        known = job_of_run(pending.run_id)
        job_id = known.id if known is not None else None
    if job_id is None:
        return Conclusion(
            "unknown", "the run's job is not known (CCS cannot look a job up by one of its runs)", {}
        )
    try:
        runs = ccs.get_job_runs(job_id, count=0)
    except NotFoundError:
        return Conclusion(
            "unknown", "the job no longer exists, so its runs cannot be seen", {"job_id": job_id}
        )
    run = next((r for r in runs.JobStatusInfo if guid_or_none(r.JobRunID) == pending.run_id), None)
    if run is None:
        return Conclusion("unknown", "the run is no longer in the job's history", {"job_id": job_id})
    evidence = {"run": _run_facts(run)}
    facts: dict[str, Any] = {"job_id": job_id, "run_id": pending.run_id}
    if run.status is not None and run.status.is_running:
        return Conclusion("failure", "the run is still in progress", evidence, **facts)
    if run.status is not JobStatus.ABORTED:
        return Conclusion("failure", "the run ended without being aborted", evidence, **facts)
    ended = run.JobEndTime
    if ended is not None and pending.started is not None and ended < pending.started - skew:
        return Conclusion("failure", "the run had been aborted before the intent", evidence, **facts)
    return Conclusion("success", "the run was aborted after the intent", evidence, **facts)


# --- helpers ---------------------------------------------------------------------------------------


def _definition(job: Job) -> dict[str, Any]:
    """The job's settings as an update names them: JobConfigDetails, and the name from the properties."""
    current: dict[str, Any] = {}
    if job.JobConfigDetails is not None:  # only what CCS sent: a field it left out cannot be compared
        current.update(job.JobConfigDetails.model_dump(mode="json", exclude_unset=True))
    if current.get("JobName") is None:
        current["JobName"] = job.JobProperties.Name
    return current


def _same(wanted: Any, current: Any) -> bool:
    """``current`` holds ``wanted``: keys not asked for are ignored, GUIDs and times compare by value."""
    if isinstance(wanted, Mapping):
        return isinstance(current, Mapping) and all(
            key in current and _same(value, current[key]) for key, value in wanted.items()
        )
    if isinstance(wanted, list):
        return (
            isinstance(current, list)
            and len(wanted) == len(current)
            and all(_same(a, b) for a, b in zip(wanted, current, strict=True))
        )
    if isinstance(wanted, str) and isinstance(current, str):
        return (
            wanted == current
            or guid_or_none(wanted) == guid_or_none(current) is not None
            or _same_time(wanted, current)
        )
    if isinstance(wanted, bool) or isinstance(current, bool):
        return str(wanted).lower() == str(current).lower()
    return bool(wanted == current)


def _same_time(a: str, b: str) -> bool:
    try:
        first, second = parse_ccs_datetime(a), parse_ccs_datetime(b)
    except ValueError:
        return False
    return first is not None and first == second


def _started_before(run: JobRun, moment: datetime | None, skew: timedelta) -> bool:
    return run.JobStartTime is not None and moment is not None and run.JobStartTime < moment - skew


def _text(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _named(job: Job) -> dict[str, Any]:
    return {"job_id": guid_or_none(job.JobProperties.JobID), "job_name": job.JobProperties.Name or None}


def _job_facts(job: Job) -> dict[str, Any]:
    props = job.JobProperties
    return {
        "JobID": props.JobID,
        "Name": props.Name,
        "JobCreationTime": _text(props.JobCreationTime),
        "JobModifiedTime": _text(props.JobModifiedTime),
    }


def _run_facts(run: JobRun) -> dict[str, Any]:
    return {
        "JobRunID": run.JobRunID,
        "Status": run.Status,
        "JobStartTime": _text(run.JobStartTime),
        "JobEndTime": _text(run.JobEndTime),
    }
