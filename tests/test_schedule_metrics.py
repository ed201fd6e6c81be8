"""Schedule series: what each job's CCS schedule says about now, recomputed every cycle, absent if unknown."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from structlog.testing import capture_logs
from test_hostile_data import CcsStub, completed_run, guid, job_body, runs_body

from ccs_exporter.client import CcsClient
from ccs_exporter.exposition.renderer import render_snapshot
from ccs_exporter.models import Job
from ccs_exporter.polling.cycle import Poller
from ccs_exporter.polling.snapshot import PollSnapshot
from ccs_exporter.simulator import Simulator

NIGHTLY = "3f2a7c41-8e5b-4d09-a6c3-1b7e9d2f4a01"  # every day at 01:00 UTC, stalled
DMZ = "5e7b9c14-3a2d-4b8f-a1e6-7c0d9f8e4d04"  # every day at 06:00 UTC, 1 h 30 limit
BRANCH = "c2d4f6a8-9b1e-4d3c-8f5a-2e7b0c9d5e05"  # on demand only, 4 h limit
FRESH = "23c59087-f3d4-4e05-a39e-3440c58e58fb"  # every 50 days from 2026-12-18: not yet due
ONCE = "b3d5f7a9-1c3e-4a5b-8d7f-9e1b3d5f7a11"  # once, 2026-11-22T19:00:00
REPORT = "e1f3a5c7-2d4b-4e6f-9a8c-0b2d4f6a8c07"  # no JobConfigDetails
NEXT = "ccs_job_schedule_next_run_timestamp_seconds"
LAST_DUE = "ccs_job_schedule_last_due_timestamp_seconds"
PERIOD = "ccs_job_schedule_period_seconds"
LIMIT = "ccs_job_run_time_limit_seconds"
SCHEDULE_FAMILIES = (NEXT, LAST_DUE, PERIOD, LIMIT)
DAY = 86_400.0
CAPTURED_AT = "2026-11-23T08:00:00+00:00"  # the samples' capture instant


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _series(snapshot: PollSnapshot) -> dict[tuple[str, str], float]:
    """(metric, job_id) -> value for every job series of the rendered snapshot."""
    found = {}
    for family in text_string_to_metric_families(render_snapshot(snapshot).decode("utf-8")):
        for sample in family.samples:
            if "job_id" in sample.labels and "status" not in sample.labels:
                found[(sample.name, sample.labels["job_id"])] = sample.value
    return found


class Clock:
    """A settable wall clock for the poller."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sim(started: Callable[..., Simulator]) -> Simulator:
    """The sample jobs, frozen at their capture instant."""
    started_simulator: Simulator = started(run_interval=None)
    return started_simulator


@pytest.fixture
def poller_at(sim: Simulator) -> Iterator[Callable[[Clock], Poller]]:
    """Pollers over every sample job with the given clock; closed afterwards."""
    made: list[tuple[Poller, CcsClient]] = []

    def make(clock: Clock) -> Poller:
        client = CcsClient(
            sim.url, sim.username, SecretStr(sim.password), timeout=10.0, backoff_seconds=0.0, read_retries=0
        )
        poller = Poller(client, sim.job_ids, clock=clock)
        made.append((poller, client))
        return poller

    yield make
    for poller, client in made:
        poller.close()
        client.close()


@pytest.mark.integration
class TestScheduleSeries:
    """Each job's schedule and run-time limit as series, present only where they apply."""

    def test_series_say_what_each_schedule_says_at_capture(
        self, sim: Simulator, poller_at: Callable[[Clock], Poller]
    ) -> None:
        """At the samples' capture instant the missed nightly job was due at 01:00 and runs again tomorrow."""
        series = _series(poller_at(Clock(sim.captured_at.timestamp())).poll_cycle())
        assert series[(LAST_DUE, NIGHTLY)] == _ts("2026-11-23T01:00:00+00:00")
        assert series[(NEXT, NIGHTLY)] == _ts("2026-11-24T01:00:00+00:00")
        assert series[(PERIOD, NIGHTLY)] == DAY
        assert series[(LIMIT, DMZ)] == 5400.0
        assert series[(NEXT, FRESH)] == _ts("2026-12-18T21:14:27.513+05:30")
        assert series[(PERIOD, FRESH)] == 50 * DAY
        assert series[(LAST_DUE, ONCE)] == _ts("2026-11-22T19:00:00+00:00")

    def test_series_are_absent_where_they_do_not_apply(
        self, sim: Simulator, poller_at: Callable[[Clock], Poller]
    ) -> None:
        """No next run after a one-off, no last due before the first, no schedule or limit that is not set."""
        series = _series(poller_at(Clock(sim.captured_at.timestamp())).poll_cycle())
        present = {(name, job) for name, job in series if name in SCHEDULE_FAMILIES}
        assert (NEXT, ONCE) not in present and (PERIOD, ONCE) not in present
        assert (LAST_DUE, FRESH) not in present
        assert {name for name, job in present if job == BRANCH} == {LIMIT}
        assert not {name for name, job in present if job == REPORT}
        assert (LIMIT, NIGHTLY) not in present

    def test_series_advance_every_cycle_without_a_change_in_ccs(
        self, sim: Simulator, poller_at: Callable[[Clock], Poller]
    ) -> None:
        """A day later, with nothing changed in CCS and no runs fetched, the occurrences are a day later."""
        clock = Clock(sim.captured_at.timestamp())
        poller = poller_at(clock)
        before = _series(poller.poll_cycle())
        clock.now += DAY
        sim.reset_requests()
        after_snapshot = poller.poll_cycle()
        after = _series(after_snapshot)
        assert sim.request_count("jobruns") == after_snapshot.runs_fetched < len(sim.job_ids)
        for name in (NEXT, LAST_DUE):
            assert after[(name, NIGHTLY)] == before[(name, NIGHTLY)] + DAY
        assert (LAST_DUE, FRESH) not in after  # 2026-12-18 is still ahead

    def test_series_advance_while_the_job_cannot_be_read(
        self, sim: Simulator, poller_at: Callable[[Clock], Poller]
    ) -> None:
        """While CCS answers 500, the kept schedule still gives this cycle's occurrences."""
        clock = Clock(sim.captured_at.timestamp())
        poller = poller_at(clock)
        poller.poll_cycle()
        sim.faults.error_rate = 1.0
        clock.now += 2 * DAY
        series = _series(poller.poll_cycle())
        assert series[("ccs_job_poll_success", NIGHTLY)] == 0.0
        assert series[(LAST_DUE, NIGHTLY)] == _ts("2026-11-25T01:00:00+00:00")
        assert series[(NEXT, NIGHTLY)] == _ts("2026-11-26T01:00:00+00:00")

    def test_jobs_found_by_a_search_have_their_schedule(self, sim: Simulator) -> None:
        """A job watched through Search Jobs (no request of its own) has the schedule of its search item."""
        client = CcsClient(sim.url, sim.username, SecretStr(sim.password), timeout=10.0, read_retries=0)
        poller = Poller(client, [], searches=["JobName StartsWith Nightly"], clock=lambda: _ts(CAPTURED_AT))
        try:
            series = _series(poller.poll_cycle())
        finally:
            poller.close()
            client.close()
        assert sim.request_count("job") == 0
        assert series[(LAST_DUE, NIGHTLY)] == _ts("2026-11-23T01:00:00+00:00")
        assert {job for _, job in series} == {NIGHTLY}

    def test_changed_schedule_shows_at_the_next_cycle(
        self, sim: Simulator, poller_at: Callable[[Clock], Poller]
    ) -> None:
        """A job moved from daily to weekly on Wednesdays in the console is weekly in the next cycle."""
        clock = Clock(sim.captured_at.timestamp())
        poller = poller_at(clock)
        poller.poll_cycle()
        sim.edit_job(NIGHTLY, {"Schedule": {"RecurrenceType": 2, "WeeklyRecurEvery": 1, "WeeklyDay": 3}})
        series = _series(poller.poll_cycle())
        assert series[(PERIOD, NIGHTLY)] == 7 * DAY
        assert series[(NEXT, NIGHTLY)] == _ts("2026-11-25T01:00:00+00:00")  # Wednesday
        assert series[(LAST_DUE, NIGHTLY)] == _ts("2026-11-18T01:00:00+00:00")


def _unknown(events: list[dict[str, Any]], job_id: str) -> list[tuple[str, str]]:
    return [
        (event["log_level"], event["reason"])
        for event in events
        if event["event"] == "job_schedule_unknown" and event["job_id"] == job_id
    ]


@pytest.mark.integration
class TestUnknownScheduleLog:
    """A job whose schedule is unknown is logged once per reason, never every cycle."""

    def test_each_reason_is_logged_once(self, sim: Simulator, poller_at: Callable[[Clock], Poller]) -> None:
        """Three cycles log each unscheduled job once; an unknown RecurrenceType is a warning, once."""
        poller = poller_at(Clock(sim.captured_at.timestamp()))
        with capture_logs() as events:
            for _ in range(3):
                poller.poll_cycle()
            sim.edit_job(NIGHTLY, {"Schedule": {"RecurrenceType": 9}})
            for _ in range(3):
                poller.poll_cycle()
        assert _unknown(events, BRANCH) == [("info", "neither RunOnce nor RunPeriodically is true")]
        assert _unknown(events, REPORT) == [("info", "the job has no Schedule")]
        assert _unknown(events, NIGHTLY) == [("warning", "unknown RecurrenceType 9")]
        assert not _unknown(events, DMZ)

    def test_a_schedule_known_again_is_logged(
        self, sim: Simulator, poller_at: Callable[[Clock], Poller]
    ) -> None:
        """After an unknown schedule is fixed, the log says what the schedule is now."""
        sim.edit_job(NIGHTLY, {"Schedule": {"RecurrenceType": 9}})
        poller = poller_at(Clock(sim.captured_at.timestamp()))
        poller.poll_cycle()
        sim.edit_job(NIGHTLY, {"Schedule": {"RecurrenceType": 1}})
        with capture_logs() as events:
            poller.poll_cycle()
            poller.poll_cycle()
        known = [event for event in events if event["event"] == "job_schedule_known"]
        assert [(event["job_id"], event["schedule"]) for event in known] == [
            (NIGHTLY, "every 1 day(s) at 01:00 +00:00")
        ]


@pytest.fixture
def stub() -> Iterator[CcsStub]:
    """A started CCS stub on a free local port."""
    server = CcsStub().start()
    yield server
    server.stop()


def _stub_poller(stub: CcsStub, job_ids: list[str]) -> Poller:
    client = CcsClient(stub.url, "CCS\\demo", SecretStr("pw-stub"), timeout=10.0, read_retries=0)
    return Poller(client, job_ids, clock=lambda: _ts(CAPTURED_AT))


def _scheduled_job(job_id: str, schedule: Any) -> dict[str, Any]:
    body = job_body(job_id)
    body["JobConfigDetails"] = {"JobName": "plain", "Schedule": schedule}
    return body


class TestHostileSchedules:
    """A schedule CCS sends in a shape we cannot use costs the job its schedule series, nothing else."""

    @pytest.mark.integration
    @pytest.mark.parametrize(
        ("schedule", "kind"),
        [("weekly", "a string"), (7, "a number"), ([{"RecurrenceType": 1}], "a list"), (True, "a boolean")],
    )
    def test_schedule_that_is_not_an_object(self, stub: CcsStub, schedule: Any, kind: str) -> None:
        """The job keeps its other series, has no schedule series, and one warning names what came."""
        job_id = guid(11)
        stub.set_job(job_id, _scheduled_job(job_id, schedule), runs_body(job_id, completed_run()))
        poller = _stub_poller(stub, [job_id])
        try:
            with capture_logs() as events:
                snapshot = poller.poll_cycle()
                poller.poll_cycle()
        finally:
            poller.close()
        series = _series(snapshot)
        assert series[("ccs_job_poll_success", job_id)] == 1.0
        assert series[("ccs_job_last_run_start_timestamp_seconds", job_id)] == _ts(
            "2026-01-02T00:00:00+00:00"
        )
        assert not {name for name, _ in series if name in SCHEDULE_FAMILIES}
        assert _unknown(events, job_id) == [("warning", f"Schedule is {kind}, not an object")]
        assert not [event for event in events if event["event"] == "job_run_time_limit_unknown"]

    @pytest.mark.integration
    def test_schedule_changed_without_a_new_job_modified_time(self, stub: CcsStub) -> None:
        """A schedule that changes while JobModifiedTime stays (same second, or not kept) is read again."""
        job_id = guid(14)
        daily = {
            "RunPeriodically": True,
            "RecurrenceType": 1,
            "RunEveryNDays": True,
            "RepeatDays": 1,
            "StartDate": "2026-01-01T01:00:00Z",
        }
        stub.set_job(job_id, _scheduled_job(job_id, daily), runs_body(job_id, completed_run()))
        poller = _stub_poller(stub, [job_id])
        try:
            before = _series(poller.poll_cycle())
            stub.set_job(job_id, _scheduled_job(job_id, {**daily, "RepeatDays": 3}))
            after = _series(poller.poll_cycle())
        finally:
            poller.close()
        assert (before[(PERIOD, job_id)], after[(PERIOD, job_id)]) == (DAY, 3 * DAY)

    def test_job_json_shows_the_schedule_as_sent(self) -> None:
        """`jobs get` and audit records show the odd Schedule as CCS sent it, not an object of defaults."""
        job = Job.model_validate(_scheduled_job(guid(12), "weekly"))
        assert job.model_dump(mode="json")["JobConfigDetails"]["Schedule"] == "weekly"

    @pytest.mark.integration
    @pytest.mark.parametrize(
        "start",
        ["9999-12-31T23:59:59-12:00", "0001-01-02T00:00:00+14:00", "9999-12-31T23:59:59+14:00"],
    )
    def test_schedule_at_the_ends_of_the_calendar_renders(self, stub: CcsStub, start: str) -> None:
        """A daily schedule starting at year 1 or 9999 renders (or is unknown) without breaking /metrics."""
        job_id = guid(13)
        schedule = {"RunPeriodically": True, "RecurrenceType": 1, "RunEveryNDays": True, "RepeatDays": 1}
        stub.set_job(job_id, _scheduled_job(job_id, {**schedule, "StartDate": start}), runs_body(job_id))
        poller = _stub_poller(stub, [job_id])
        try:
            series = _series(poller.poll_cycle())
        finally:
            poller.close()
        assert series[("ccs_job_poll_success", job_id)] == 1.0
        for name in (NEXT, LAST_DUE):
            value = series.get((name, job_id))
            assert value is None or datetime(1, 1, 1, tzinfo=timezone.utc).timestamp() <= value
            assert (
                value is None or value <= datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc).timestamp()
            )
        now = _ts(CAPTURED_AT)
        if (LAST_DUE, job_id) in series:
            assert now - DAY < series[(LAST_DUE, job_id)] <= now < series[(NEXT, job_id)]
