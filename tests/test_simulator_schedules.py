"""The simulator's sample schedules, live samples and schedule-driven runs, read with the product's rules."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from test_simulator import (
    ABORTED,
    ASSET_IMPORT,
    COMPLETED,
    EXECUTING,
    FAULTED,
    HOSTILE,
    NEVER_RUN,
    OTHER_OWNER,
    PENDING,
    REPORT,
    SHAPES,
    SYSTEM,
)

from ccs_exporter.models import Job, JobRuns
from ccs_exporter.schedule import (
    Schedule,
    ScheduleKind,
    derive_run_time_limit,
    derive_schedule,
    last_occurrence,
    next_occurrence,
)
from ccs_exporter.simulator import Simulator
from ccs_exporter.simulator.samples import load_sample_document

GRACE = timedelta(hours=1)
# How each sample stands against its schedule at the capture instant: the scenario the README describes.
STANDING = {
    COMPLETED: "missed",
    FAULTED: "on time",
    ABORTED: "on time",
    EXECUTING: "on time",
    PENDING: "no schedule",
    NEVER_RUN: "not yet due",
    REPORT: "no schedule",
    ASSET_IMPORT: "no schedule",
    SYSTEM: "no schedule",
    OTHER_OWNER: "on time",
    HOSTILE: "on time",
    SHAPES: "on time",
}
KINDS = {
    COMPLETED: ScheduleKind.EVERY_N_DAYS,
    FAULTED: ScheduleKind.WEEKLY,
    ABORTED: ScheduleKind.MONTHLY_BY_ORDINAL_WEEKDAY,
    EXECUTING: ScheduleKind.EVERY_N_DAYS,
    NEVER_RUN: ScheduleKind.EVERY_N_DAYS,
    OTHER_OWNER: ScheduleKind.MONTHLY_BY_DAY,
    HOSTILE: ScheduleKind.ONCE,
    SHAPES: ScheduleKind.EVERY_N_DAYS,
}
_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?")


def read(sim: Simulator, job_id: str) -> tuple[Job, JobRuns]:
    return Job.model_validate(sim.job_snapshot(job_id)), JobRuns.model_validate(sim.job_runs_snapshot(job_id))


def schedule_of(job: Job) -> Schedule | None:
    block = job.JobConfigDetails.Schedule if job.JobConfigDetails is not None else None
    schedule = derive_schedule(block)
    return schedule if isinstance(schedule, Schedule) else None


def standing(sim: Simulator, job_id: str, now: datetime) -> str:
    """How the job stands against its schedule at ``now``, as the missed-schedule alert reads it."""
    job, runs = read(sim, job_id)
    schedule = schedule_of(job)
    if schedule is None:
        return "no schedule"
    due = last_occurrence(schedule, now)
    if due is None:
        return "not yet due"
    started = [run.JobStartTime for run in runs.JobStatusInfo if run.JobStartTime is not None]
    if any(start >= due for start in started):
        return "on time"
    return "missed" if now - due > GRACE else "due"


def over_limit(sim: Simulator, now: datetime) -> dict[str, bool]:
    """For each job with a run-time limit and a run in progress: whether that run is past its limit."""
    found: dict[str, bool] = {}
    for job_id in sim.job_ids:
        job, runs = read(sim, job_id)
        block = job.JobConfigDetails.Schedule if job.JobConfigDetails is not None else None
        limit = derive_run_time_limit(block)
        latest = runs.newest_first()[0] if runs.JobStatusInfo else None
        if isinstance(limit, float) and latest is not None and latest.JobEndTime is None:
            assert latest.JobStartTime is not None
            found[job_id] = (now - latest.JobStartTime).total_seconds() > limit
    return found


def all_datetimes(payload: Any) -> list[str]:
    if isinstance(payload, dict):
        return [text for value in payload.values() for text in all_datetimes(value)]
    if isinstance(payload, list):
        return [text for value in payload for text in all_datetimes(value)]
    return [payload] if isinstance(payload, str) and _SHAPE.fullmatch(payload) else []


def wait_for(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


class TestSampleSchedules:
    @pytest.mark.integration
    def test_every_kind_of_schedule_is_present(self, simulator: Simulator) -> None:
        """The samples schedule daily, every N days, weekly, monthly by day and by weekday, once and none."""
        kinds = {job_id: schedule_of(read(simulator, job_id)[0]) for job_id in simulator.job_ids}
        assert {job_id: s.kind for job_id, s in kinds.items() if s is not None} == KINDS
        every = {
            s.every for job_id, s in kinds.items() if s is not None and s.kind is ScheduleKind.EVERY_N_DAYS
        }
        assert every == {1, 50}
        pending = read(simulator, PENDING)[0].JobConfigDetails
        assert pending is not None and pending.Schedule is not None
        assert not pending.Schedule.RunPeriodically and not pending.Schedule.RunOnce

    @pytest.mark.integration
    def test_start_dates_carry_their_own_offsets(self, simulator: Simulator) -> None:
        """StartDates come naive (UTC), with +05:30 and with -08:00 and 7-digit fractions."""
        starts = {
            simulator.job_snapshot(job_id)["JobConfigDetails"]["Schedule"]["StartDate"] for job_id in KINDS
        }
        assert any(start.endswith("+05:30") for start in starts)
        assert any(re.search(r"\.\d{7}-08:00$", start) for start in starts)
        assert any(re.fullmatch(r"[\d\-T:]+", start) for start in starts)

    @pytest.mark.integration
    def test_at_the_capture_instant_one_job_missed_its_schedule(self, simulator: Simulator) -> None:
        """At CapturedAt the nightly job missed its schedule; others ran on time, are not due or have none."""
        now = simulator.captured_at
        assert now == datetime(2026, 11, 23, 8, tzinfo=timezone.utc)
        assert {job_id: standing(simulator, job_id, now) for job_id in simulator.job_ids} == STANDING

    @pytest.mark.integration
    def test_the_missed_job_is_well_past_the_grace_period(self, simulator: Simulator) -> None:
        """The missed occurrence is 7 hours old, and the job has not run for three days."""
        job, runs = read(simulator, COMPLETED)
        schedule = schedule_of(job)
        assert schedule is not None
        due = last_occurrence(schedule, simulator.captured_at)
        assert due is not None and simulator.captured_at - due == timedelta(hours=7)
        latest = runs.newest_first()[0].JobStartTime
        assert latest is not None and simulator.captured_at - latest > timedelta(days=3)

    @pytest.mark.integration
    def test_one_run_is_over_its_time_limit_and_one_within(self, simulator: Simulator) -> None:
        """The DMZ collection has run 2 h against a 1 h 30 limit; the branch CER is within its 4 h."""
        assert over_limit(simulator, simulator.captured_at) == {EXECUTING: True, PENDING: False}
        block = read(simulator, EXECUTING)[0].JobConfigDetails
        assert block is not None and block.Schedule is not None
        assert block.Schedule.EndJobRunConfigured and block.Schedule.EndJobRunTimeInterval == "01:30:00"

    @pytest.mark.integration
    def test_the_not_yet_due_job_is_due_in_weeks(self, simulator: Simulator) -> None:
        """The docs' sample job (never run) has its first occurrence after the capture instant."""
        schedule = schedule_of(read(simulator, NEVER_RUN)[0])
        assert schedule is not None
        upcoming = next_occurrence(schedule, simulator.captured_at)
        assert upcoming is not None and upcoming - simulator.captured_at > timedelta(days=20)

    def test_the_sample_file_tells_each_story(self) -> None:
        """Every sample states how it stands against its schedule; the stalled and hung ones say so."""
        jobs = load_sample_document()["Jobs"]
        assert all(job["ScheduleStory"] for job in jobs)
        marks = {
            job["JobProperties"]["JobID"]: job.get("Progression") for job in jobs if job.get("Progression")
        }
        assert marks == {COMPLETED: "stalled", EXECUTING: "hung"}


class TestLiveSamples:
    @pytest.mark.integration
    def test_live_samples_stand_as_at_capture_time_but_now(self, started: Callable[..., Simulator]) -> None:
        """With live=True the same jobs are missed, over limit, on time or not due, relative to now."""
        before = datetime.now(timezone.utc)
        sim = started(live=True)
        assert (
            before - timedelta(seconds=1)
            <= sim.captured_at
            <= datetime.now(timezone.utc) + timedelta(seconds=1)
        )
        now = datetime.now(timezone.utc)
        assert {job_id: standing(sim, job_id, now) for job_id in sim.job_ids} == STANDING
        assert over_limit(sim, now) == {EXECUTING: True, PENDING: False}

    @pytest.mark.integration
    def test_every_datetime_moves_by_the_same_seconds_and_keeps_its_shape(
        self, simulator: Simulator, started: Callable[..., Simulator]
    ) -> None:
        """Each DateTime keeps its offset and fraction digits; all move by one whole-second delta."""
        live = started(live=True)
        delta = live.captured_at - simulator.captured_at
        assert delta.microseconds == 0
        for job_id in simulator.job_ids:
            fixed = all_datetimes([simulator.job_snapshot(job_id), simulator.job_runs_snapshot(job_id)])
            moved = all_datetimes([live.job_snapshot(job_id), live.job_runs_snapshot(job_id)])
            assert len(fixed) == len(moved)
            for old, new in zip(fixed, moved, strict=True):
                old_shape, new_shape = _SHAPE.fullmatch(old), _SHAPE.fullmatch(new)
                assert old_shape is not None and new_shape is not None
                assert old_shape.groups() == new_shape.groups()
                if old.startswith("0001-01-01"):
                    assert new == old
                else:
                    assert _instant(new) - _instant(old) == delta

    @pytest.mark.integration
    def test_weekday_and_monthday_follow_the_moved_runs(self, started: Callable[..., Simulator]) -> None:
        """The weekly, monthly and ordinal schedules name the day their moved on-time run fell on."""
        sim = started(live=True)
        for job_id in (FAULTED, ABORTED, OTHER_OWNER):
            job, runs = read(sim, job_id)
            schedule = schedule_of(job)
            assert schedule is not None
            due = last_occurrence(schedule, sim.captured_at)
            assert due is not None
            starts = [run.JobStartTime for run in runs.JobStatusInfo if run.JobStartTime is not None]
            assert min(abs((start - due).total_seconds()) for start in starts) < 10

    @pytest.mark.integration
    def test_live_payloads_validate(self, started: Callable[..., Simulator]) -> None:
        """Every live sample payload parses with the models."""
        sim = started(live=True)
        for job_id in sim.job_ids:
            read(sim, job_id)

    def test_live_applies_to_samples_only(self) -> None:
        """Asking for live generated jobs is refused at construction."""
        with pytest.raises(ValueError, match="live"):
            Simulator(jobs=5, live=True)


@pytest.mark.integration
class TestScheduledRuns:
    def test_a_job_starts_a_run_at_its_occurrence(self, started: Callable[..., Simulator]) -> None:
        """In live mode a job scheduled once, a few seconds ahead, starts a pending run then, not before."""
        sim = started(live=True)
        # Far enough ahead that a loaded machine still edits the schedule before the occurrence.
        at = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=4)
        once = {"RunOnce": True, "RunPeriodically": False, "StartDate": f"{at:%Y-%m-%dT%H:%M:%S}"}
        totals = {
            job_id: sim.job_runs_snapshot(job_id)["TotalJobRuns"] for job_id in (OTHER_OWNER, COMPLETED)
        }
        for job_id in (OTHER_OWNER, COMPLETED):
            schedule = {**sim.job_snapshot(job_id)["JobConfigDetails"]["Schedule"], **once}
            sim.edit_job(job_id, {"Schedule": schedule})
        assert wait_for(lambda: sim.job_runs_snapshot(OTHER_OWNER)["TotalJobRuns"] > totals[OTHER_OWNER], 15)
        run = JobRuns.model_validate(sim.job_runs_snapshot(OTHER_OWNER)).newest_first()[0]
        assert run.Status == 1 and run.JobStartTime is not None and run.JobStartTime >= at
        # The stalled sample never starts, whatever its schedule says.
        assert sim.job_runs_snapshot(COMPLETED)["TotalJobRuns"] == totals[COMPLETED]

    def test_with_an_interval_only_unscheduled_jobs_run_on_it(
        self, started: Callable[..., Simulator]
    ) -> None:
        """live + run_interval: the report job runs on the interval; scheduled, stalled, hung ones do not."""
        sim = started(live=True, run_interval=0.3, seed=2)
        watched = (REPORT, FAULTED, COMPLETED, EXECUTING)
        before = {job_id: sim.job_runs_snapshot(job_id) for job_id in watched}
        assert wait_for(
            lambda: sim.job_runs_snapshot(REPORT)["TotalJobRuns"] > before[REPORT]["TotalJobRuns"] + 1, 10
        )
        for job_id in (FAULTED, COMPLETED, EXECUTING):
            assert sim.job_runs_snapshot(job_id) == before[job_id]

    def test_hung_and_stalled_samples_hold_on_an_interval_too(
        self, started: Callable[..., Simulator]
    ) -> None:
        """With only run_interval the hung run stays executing and the stalled job never starts."""
        sim = started(run_interval=0.2, seed=9)
        hung, stalled = sim.job_runs_snapshot(EXECUTING), sim.job_runs_snapshot(COMPLETED)
        assert wait_for(lambda: sim.job_runs_snapshot(FAULTED)["TotalJobRuns"] > 4, 10)
        assert sim.job_runs_snapshot(EXECUTING) == hung
        assert sim.job_runs_snapshot(COMPLETED) == stalled

    def test_an_aborted_hung_run_frees_the_job(self, started: Callable[..., Simulator]) -> None:
        """The hung run refuses a second run until it is aborted; then the job can run again."""
        sim = started(live=True)
        hung_run = sim.job_runs_snapshot(EXECUTING, count=1)["JobStatusInfo"][0]["JobRunID"]
        with pytest.raises(ValueError):
            sim.start_run(EXECUTING)
        sim.finish_run(EXECUTING, 7)
        latest = sim.job_runs_snapshot(EXECUTING, count=1)["JobStatusInfo"][0]
        assert latest["JobRunID"] == hung_run and latest["Status"] == 7
        sim.start_run(EXECUTING)


@pytest.mark.integration
class TestLiveCommand:
    def test_live_with_generated_jobs_exits_2_with_one_line(self) -> None:
        """``simulate --live --jobs 5`` stops at once with one line: live applies to the samples."""
        result = subprocess.run(
            [sys.executable, "-m", "ccs_exporter", "simulate", "--port", "0", "--live", "--jobs", "5"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [
            "ccs-exporter: --live applies to the sample jobs, not to --jobs"
        ]


def _instant(text: str) -> datetime:
    match = re.fullmatch(r"(.{19})(\.\d+)?(Z|[+-]\d{2}:\d{2})?", text)
    assert match is not None
    fraction = (match[2] or ".0")[1:8].ljust(7, "0")
    zone = match[3] or "+00:00"
    base = datetime.fromisoformat(match[1] + zone.replace("Z", "+00:00"))
    return base + timedelta(microseconds=int(fraction) / 10)
