"""The simulator's jobs: the built-in dozen samples (``sample_jobs.json``) or N generated jobs."""

from __future__ import annotations

import json
import random
import uuid
from datetime import datetime, timedelta, timezone
from importlib import resources
from typing import Any

from ccs_exporter.simulator.records import (
    STATUS_ABORTED,
    STATUS_COMPLETED,
    STATUS_EXECUTING,
    STATUS_FAULTED,
    STATUS_PENDING,
    TIME_STYLES,
    RunMessage,
    StoredJob,
    StoredRun,
    build_messages,
    format_time,
)
from ccs_exporter.simulator.validation import CONFIG_JOB_TYPES, default_schedule

SAMPLE_FILE = "sample_jobs.json"
# Generated jobs' history ends here, so a seed always yields the same payloads.
GENERATED_EPOCH = datetime(2026, 11, 1, tzinfo=timezone.utc)


def load_sample_document() -> dict[str, Any]:
    """The parsed ``sample_jobs.json`` shipped with the package."""
    text = resources.files("ccs_exporter.simulator").joinpath(SAMPLE_FILE).read_text(encoding="utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


def sample_captured_at() -> datetime:
    """The moment the sample payloads describe (``CapturedAt``): their runs and schedules stand as of then."""
    text: str = load_sample_document()["CapturedAt"]
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def sample_jobs(username: str) -> list[StoredJob]:
    """The built-in sample jobs; an Owner of null becomes ``username``."""
    return [_stored_job(entry, username) for entry in load_sample_document()["Jobs"]]


def _stored_job(entry: dict[str, Any], username: str) -> StoredJob:
    props = entry["JobProperties"]
    runs = [
        StoredRun(
            run_id=run["JobRunID"],
            status=run["Status"],
            start=run["JobStartTime"],
            end=run["JobEndTime"],
            messages=tuple(RunMessage(**message) for message in run.get("JobMessages") or ()),
            summary=run.get("JobSummary"),
            status_details=run.get("StatusDetails"),
            custom_status_text=run.get("CustomStatusText"),
            exception=run.get("Exception"),
        )
        for run in reversed(entry["JobStatusInfo"])
    ]
    progression = entry.get("Progression")
    hung = runs[-1].run_id if progression == "hung" and runs and runs[-1].running else None
    return StoredJob(
        job_id=props["JobID"],
        name=props["Name"],
        job_type=props["JobType"],
        owner=props["Owner"] if props["Owner"] is not None else username,
        created=props["JobCreationTime"],
        modified=props["JobModifiedTime"],
        is_system=props["IsSystemJob"],
        config=entry["JobConfigDetails"],
        runs=runs,
        last_run_date=props["LastRunDate"],
        last_run_status=props["LastRunStatus"],
        time_style=entry.get("TimeStyle", "utc"),
        stalled=progression == "stalled",
        hung_run=hung,
    )


_GENERATED_TYPES = (*CONFIG_JOB_TYPES.values(), "REPORTJOB")
# Outcome of a generated job's latest run: mostly healthy, as a real estate would be.
_LATEST_OUTCOMES = (
    (STATUS_COMPLETED, 0.62),
    (STATUS_FAULTED, 0.18),
    (STATUS_ABORTED, 0.05),
    (STATUS_EXECUTING, 0.07),
    (STATUS_PENDING, 0.03),
    (0, 0.05),  # never run
)


def generated_jobs(count: int, username: str, rng: random.Random) -> list[StoredJob]:
    """``count`` varied jobs (ids, types, outcomes and messages from ``rng``), cheap to build and hold.

    Config details are shared between jobs except the name, and Update Job replaces them rather than
    changing them in place, so 10,000 jobs take a few megabytes.
    """
    shared_configs = {
        job_type: _shared_config(index) for index, job_type in enumerate(CONFIG_JOB_TYPES.values())
    }
    statuses = [status for status, _ in _LATEST_OUTCOMES]
    weights = [weight for _, weight in _LATEST_OUTCOMES]
    jobs: list[StoredJob] = []
    for index in range(count):
        job_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        job_type = _GENERATED_TYPES[index % len(_GENERATED_TYPES)]
        style = TIME_STYLES[index % len(TIME_STYLES)]
        name = f"Generated job {index + 1:05d}"
        created = GENERATED_EPOCH - timedelta(days=30 + index % 300, seconds=index)
        created_text = format_time(created, style)
        shared = shared_configs.get(job_type)
        config = None if shared is None else {**shared, "JobName": name}
        job = StoredJob(
            job_id=job_id,
            name=name,
            job_type=job_type,
            owner=username,
            created=created_text,
            modified=created_text,
            config=config,
            time_style=style,
        )
        latest = rng.choices(statuses, weights)[0]
        if latest != 0:
            _add_history(job, latest, rng, index)
        jobs.append(job)
    return jobs


def _add_history(job: StoredJob, latest: int, rng: random.Random, index: int) -> None:
    """One to three runs, a day apart, the newest with ``latest`` as its status."""
    history = rng.randint(0, 2)
    newest_start = GENERATED_EPOCH - timedelta(hours=1 + index % 20, minutes=index % 60)
    for back in range(history, -1, -1):
        start = newest_start - timedelta(days=back)
        status = latest if back == 0 else rng.choice((STATUS_COMPLETED, STATUS_COMPLETED, STATUS_FAULTED))
        run = StoredRun(
            str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            status,
            format_time(start, job.time_style, "start"),
        )
        if status not in (STATUS_PENDING, STATUS_EXECUTING):
            end = start + timedelta(seconds=rng.randint(30, 3600))
            run.end = format_time(end, job.time_style, "end")
            counts = _message_counts(status, rng)
            run.messages = build_messages(counts, format_time(end, job.time_style, "start"), job.owner)
        job.runs.append(run)
    job.refresh_last_run()


def _message_counts(status: int, rng: random.Random) -> dict[str, int]:
    if status == STATUS_FAULTED:
        return {"Error": rng.randint(1, 3), "Warning": rng.randint(0, 2)}
    if status == STATUS_ABORTED:
        return {"Warning": 1}
    return {"Information": rng.randint(0, 1), "Warning": rng.randint(0, 1) if rng.random() < 0.2 else 0}


def _shared_config(index: int) -> dict[str, Any]:
    schedule = default_schedule(format_time(GENERATED_EPOCH - timedelta(days=365), "offset"))
    schedule.update({"RunPeriodically": True, "RunEveryNDays": True, "RepeatDays": 1, "RecurrenceType": 1})
    return {
        "EvaluationResultViewers": [],
        "Schedule": schedule,
        "JobDescription": "Generated by the CCS simulator",
        "SuccessNotification": None,
        "FailureNotification": None,
        "ShouldSendSuccessNotification": False,
        "ShouldSendFailureNotification": False,
        "JobName": "",
        "AssetsResolutionInfo": [
            {
                "Id": f"9c135703-b76e-4eff-bfe2-8959d7ca41{index:02d}",
                "Type": "symc-csm-AssetSystem-Asset-Wnt-Machine",
            }
        ],
        "Standards": ["20ed033e-ea47-4783-ad9c-01b112733e89"],
    }
