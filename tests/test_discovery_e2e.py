"""Discovery end to end against the simulator: bulk polling, failing searches, jobs coming and going."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from structlog.testing import capture_logs

from ccs_exporter.client import CcsClient
from ccs_exporter.exporter import Exporter
from ccs_exporter.exposition.renderer import render_snapshot
from ccs_exporter.polling.cycle import Poller
from ccs_exporter.polling.discovery import WatchList
from ccs_exporter.polling.snapshot import PollSnapshot
from ccs_exporter.settings.config import load_settings
from ccs_exporter.simulator import Simulator

pytestmark = pytest.mark.integration

GENERATED = "(JobName StartsWith Generated)"
DMZ = "(JobName Contains DMZ)"
DMZ_JOB = "5e7b9c14-3a2d-4b8f-a1e6-7c0d9f8e4d04"  # the one sample job it matches


def _series(text: bytes) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(text.decode("utf-8")):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def _search_value(snapshot: PollSnapshot, name: str, search: str) -> float | None:
    return _series(render_snapshot(snapshot)).get((name, frozenset({("search", search)})))


def _ids(snapshot: PollSnapshot) -> list[str]:
    return [job.job_id for job in snapshot.jobs]


def _finish_running(sim: Simulator, snapshot: PollSnapshot) -> None:
    for job in snapshot.jobs:
        if job.data is not None and job.data.runs is not None and job.data.runs.running:
            sim.finish_run(job.job_id, 4)


@pytest.fixture
def poller_for(started: Callable[..., Simulator]) -> Iterator[Callable[..., tuple[Simulator, Poller]]]:
    """Starts a simulator (options ``sim_*``) and a poller over it (the other options)."""
    made: list[tuple[Poller, CcsClient]] = []

    def make(job_ids: list[str] | None = None, **options: Any) -> tuple[Simulator, Poller]:
        sim_options = {key[4:]: options.pop(key) for key in list(options) if key.startswith("sim_")}
        sim = started(**sim_options)
        client = CcsClient(sim.url, sim.username, SecretStr(sim.password), timeout=10, backoff_seconds=0.0)
        poller = Poller(client, job_ids or [], **options)
        made.append((poller, client))
        return sim, poller

    yield make
    for poller, client in made:
        poller.close()
        client.close()


class TestBulkPolling:
    """Discovered jobs cost no request of their own."""

    def test_steady_state_at_rest_costs_the_pages_only(
        self, poller_for: Callable[..., tuple[Simulator, Poller]]
    ) -> None:
        """250 jobs at rest, 100 a page: 3 pages and the empty one, no per-job request at all."""
        sim, poller = poller_for(searches=[GENERATED], page_size=100, sim_jobs=250)
        first = poller.poll_cycle()
        assert len(first.jobs) == 250 and first.runs_fetched == 250 and first.failed_jobs == 0
        assert sim.request_count("job") == 0
        _finish_running(sim, first)
        poller.poll_cycle()  # reads the finished runs once
        sim.reset_requests()
        rest = poller.poll_cycle()
        assert sim.stats()["requests"] == {"search_jobs": {"200": 4}}
        assert rest.requests == 4 <= math.ceil(250 / 100) + 2
        assert _search_value(rest, "ccs_search_jobs", GENERATED) == 250
        assert _search_value(rest, "ccs_search_success", GENERATED) == 1
        assert _series(render_snapshot(rest))[("ccs_watched_jobs", frozenset())] == 250

    def test_a_changed_job_still_gets_its_runs_read(
        self, poller_for: Callable[..., tuple[Simulator, Poller]]
    ) -> None:
        """A new run on a discovered job is seen in the listing and its runs are read, nothing else."""
        sim, poller = poller_for(searches=[GENERATED], sim_jobs=30)
        _finish_running(sim, poller.poll_cycle())
        poller.poll_cycle()
        target = sim.job_ids[7]
        sim.finish_run(target, 5, {"Error": 3})
        sim.reset_requests()
        snapshot = poller.poll_cycle()
        assert sim.request_count("jobruns") == 1 and sim.request_count("job") == 0
        state = next(job for job in snapshot.jobs if job.job_id == target)
        assert state.data is not None and state.data.runs is not None and state.data.runs.status_code == 5

    def test_configured_and_discovered_jobs_are_one_union(
        self, poller_for: Callable[..., tuple[Simulator, Poller]]
    ) -> None:
        """Configured ids in any case or braces count once with the search's copy; others are read by id."""
        sim, poller = poller_for(searches=[DMZ])
        collection = DMZ_JOB
        report = "e1f3a5c7-2d4b-4e6f-9a8c-0b2d4f6a8c07"
        poller.set_job_ids([collection.upper(), "{" + collection + "}", report])
        sim.reset_requests()
        snapshot = poller.poll_cycle()
        assert sorted(_ids(snapshot)) == sorted([collection, report])
        assert sim.request_count("job") == 1  # the report job no search returns
        assert all(job.poll_success for job in snapshot.jobs)

    def test_a_silently_capped_page_size_still_finds_every_job(
        self, poller_for: Callable[..., tuple[Simulator, Poller]]
    ) -> None:
        """Asking 100 a page from a CCS that answers 7 pages on to the empty page."""
        sim, poller = poller_for(searches=[GENERATED], page_size=100, sim_jobs=40, sim_search_page_size_cap=7)
        snapshot = poller.poll_cycle()
        assert sorted(_ids(snapshot)) == sorted(sim.job_ids)
        assert sim.request_count("search_jobs") == 7  # 6 pages of jobs and the empty one

    def test_a_server_ignoring_page_is_not_looped(
        self, poller_for: Callable[..., tuple[Simulator, Poller]]
    ) -> None:
        """When every page is page 0, the second page ends the listing: bounded, and logged once."""
        sim, poller = poller_for(searches=[GENERATED], sim_jobs=40, sim_search_page_size_cap=5)
        sim.faults.update({"search_ignores_page": True})
        with capture_logs() as logs:
            snapshot = poller.poll_cycle()
            poller.poll_cycle()
        assert len(snapshot.jobs) == 5
        assert sim.request_count("search_jobs") == 4
        assert [entry["event"] for entry in logs].count("search_paging_ignored") == 1


class TestSearchFailures:
    """A failing search costs no job its series; unsupported and rejected searches leave the rest alone."""

    def test_failing_pages_keep_the_series_and_say_so(
        self, poller_for: Callable[..., tuple[Simulator, Poller]]
    ) -> None:
        """While Search Jobs answers 500, its jobs keep their values (stale, failed); the search shows 0."""
        sim, poller = poller_for(searches=[GENERATED], sim_jobs=20)
        good = poller.poll_cycle()
        sim.faults.update({"error_rate": 1.0})
        failing = poller.poll_cycle()
        assert _ids(failing) == _ids(good)
        assert all(job.data is not None and not job.poll_success for job in failing.jobs)
        assert {job.error for job in failing.jobs} == {"server_error"}
        assert _search_value(failing, "ccs_search_success", GENERATED) == 0
        assert _search_value(failing, "ccs_search_jobs", GENERATED) == 20
        assert failing.changes == ()
        sim.faults.clear()
        recovered = poller.poll_cycle()
        assert all(job.poll_success for job in recovered.jobs)
        assert _search_value(recovered, "ccs_search_success", GENERATED) == 1

    def test_ccs_without_search_jobs_still_polls_the_configured_ids(
        self, poller_for: Callable[..., tuple[Simulator, Poller]]
    ) -> None:
        """A 404 for Search Jobs is 'unsupported', logged once; configured ids go on and CCS counts as up."""
        sim, poller = poller_for(searches=[GENERATED])
        sim.faults.update({"search_unsupported": True})
        poller.set_job_ids(sim.job_ids[:2])
        with capture_logs() as logs:
            first = poller.poll_cycle()
            second = poller.poll_cycle()
        assert _ids(second) == sim.job_ids[:2] and all(job.poll_success for job in second.jobs)
        assert first.up and second.up
        assert [(s.success, s.error) for s in second.searches] == [(False, "unsupported")]
        assert [entry["event"] for entry in logs].count("search_unsupported") == 1

    def test_a_rejected_expression_does_not_stop_the_others(
        self, poller_for: Callable[..., tuple[Simulator, Poller]]
    ) -> None:
        """A 400 is reported with CCS's message; the other search's jobs are watched."""
        _, poller = poller_for(searches=["(Colour = blue)", DMZ])
        with capture_logs() as logs:
            snapshot = poller.poll_cycle()
        assert _ids(snapshot) == [DMZ_JOB]
        rejected = next(entry for entry in logs if entry["event"] == "search_rejected")
        assert rejected["search"] == "(Colour = blue)" and "Unknown attribute 'Colour'" in rejected["message"]
        assert _search_value(snapshot, "ccs_search_success", "(Colour = blue)") == 0
        assert _search_value(snapshot, "ccs_search_success", DMZ) == 1


class TestJobsComingAndGoing:
    """Jobs appear, leave and disappear between cycles; changes go on as data."""

    def test_console_jobs_appear_and_go(self, poller_for: Callable[..., tuple[Simulator, Poller]]) -> None:
        """A created job is watched and reported, a deleted one reported, a renamed one leaves quietly."""
        sim, poller = poller_for(searches=["(JobName Contains Zebra)"], track_changes=True)
        kept = sim.add_job("Zebra kept", job_type="DMZJOB")
        deleted = sim.add_job("Zebra deleted")
        renamed = sim.add_job("Zebra renamed")
        baseline = poller.poll_cycle()
        assert sorted(_ids(baseline)) == sorted([kept, deleted, renamed]) and baseline.changes == ()
        assert poller.poll_cycle().changes == ()
        created = sim.add_job("Zebra created")
        sim.remove_job(deleted)
        sim.set_job_name(renamed, "Weekly now")
        sim.reset_requests()
        snapshot = poller.poll_cycle()
        assert sorted(_ids(snapshot)) == sorted([kept, created])
        assert sorted((change.kind, change.job_id) for change in snapshot.changes) == sorted(
            [("created", created), ("deleted", deleted)]
        )
        made = next(change for change in snapshot.changes if change.kind == "created")
        assert made.after is not None and made.after.JobProperties.Name == "Zebra created"
        assert sim.request_count("job") == 2  # the two jobs that left, looked up once each
        sim.reset_requests()
        assert poller.poll_cycle().changes == ()
        assert sim.request_count("job") == 0

    def test_an_old_job_matching_anew_is_not_created(
        self, poller_for: Callable[..., tuple[Simulator, Poller]]
    ) -> None:
        """A job renamed into a search's match was created long ago: watched, but not reported created."""
        sim, poller = poller_for(searches=["(JobName Contains Zebra)"], track_changes=True)
        poller.poll_cycle()
        old = sim.job_ids[0]  # a sample job created in 2026's first months
        sim.set_job_name(old, "Zebra from now on")
        snapshot = poller.poll_cycle()
        assert _ids(snapshot) == [old] and snapshot.changes == ()

    def test_ownership_filter_decides_what_is_read_and_exported(
        self, poller_for: Callable[..., tuple[Simulator, Poller]]
    ) -> None:
        """Jobs the predicate refuses are neither read, nor exported, nor counted as watched."""
        sim, poller = poller_for(
            searches=[GENERATED],
            sim_jobs=20,
            owns=lambda job_id: job_id[0] in "01234567",
        )
        snapshot = poller.poll_cycle()
        expected = [job_id for job_id in sim.job_ids if job_id[0] in "01234567"]
        assert 0 < len(expected) < 20
        assert sorted(_ids(snapshot)) == sorted(expected)
        assert sim.request_count("jobruns") == len(expected)

    def test_reload_swaps_searches_without_lookups(
        self, poller_for: Callable[..., tuple[Simulator, Poller]]
    ) -> None:
        """A reload replacing a search drops its jobs without looking them up and lists the new one."""
        sim, poller = poller_for(searches=[DMZ])
        poller.poll_cycle()
        poller.set_watch(WatchList((), ("(JobType = REPORTJOB)",), 100))
        sim.reset_requests()
        snapshot = poller.poll_cycle()
        assert _ids(snapshot) == ["e1f3a5c7-2d4b-4e6f-9a8c-0b2d4f6a8c07"]
        assert sim.request_count("job") == 0


def _wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


class TestExporterWithAuditLog:
    """serve with an audit log records console creations and deletions of discovered jobs."""

    def test_console_create_and_delete_become_records(self, simulator: Simulator, tmp_path: Path) -> None:
        """A console-created job gets job.created (observed, no user), a deleted one job.deleted."""
        from ccs_exporter.audit import AuditLog, verify

        path = tmp_path / "audit.log"
        settings = load_settings(
            None,
            {
                "url": simulator.url,
                "username": simulator.username,
                "password": simulator.password,
                "job_search": "(JobName Contains Zebra)",
                "listen_address": "127.0.0.1:0",
                "poll_interval_seconds": 0.2,
                "audit_log": path,
            },
        )
        doomed = simulator.add_job("Zebra doomed")
        with Exporter(settings, audit_log=AuditLog.from_settings(settings)) as exporter:
            assert exporter.wait_ready(10)
            cycles = exporter.last_snapshot.cycles if exporter.last_snapshot else 0
            _wait_for(lambda: (exporter.last_snapshot.cycles if exporter.last_snapshot else 0) > cycles + 1)
            created = simulator.add_job("Zebra created", job_type="EVALUATIONJOB")
            simulator.remove_job(doomed)
            _wait_for(lambda: path.exists() and len(path.read_text(encoding="utf-8").splitlines()) >= 2)
            body = requests.get(f"{exporter.url}/metrics", timeout=5).content
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        assert sorted((r["event"]["action"], r["ccs"]["job"]["id"]) for r in records) == sorted(
            [("job.created", created), ("job.deleted", doomed)]
        )
        made = next(r for r in records if r["event"]["action"] == "job.created")
        assert made["audit"]["origin"] == "observed" and "user" not in made
        assert made["change"]["after"]["JobProperties"]["Name"] == "Zebra created"
        assert verify(path).ok
        series = _series(body)
        assert series[("ccs_search_success", frozenset({("search", "(JobName Contains Zebra)")}))] == 1
        assert (
            series[
                ("ccs_audit_records_total", frozenset({("action", "job.created"), ("outcome", "success")}))
            ]
            == 1
        )

    def test_our_own_create_is_not_recorded_again(self, simulator: Simulator, tmp_path: Path) -> None:
        """A job created through the audited job service is not also recorded as observed."""
        from ccs_exporter.audit import AuditLog
        from ccs_exporter.operations.service import JobService

        path = tmp_path / "audit.log"
        settings = load_settings(
            None,
            {
                "url": simulator.url,
                "username": simulator.username,
                "password": simulator.password,
                "job_search": "(JobName StartsWith Ours)",
                "listen_address": "127.0.0.1:0",
                "poll_interval_seconds": 0.2,
                "audit_log": path,
            },
        )
        spec = json.loads((Path(__file__).parent / "fixtures" / "create_job_request.json").read_text())
        spec["JobDetails"]["JobName"] = "Ours, created by the service"
        with Exporter(settings, audit_log=AuditLog.from_settings(settings)) as exporter:
            assert exporter.wait_ready(10)
            with CcsClient.from_settings(settings) as client:
                job_id = JobService(client, AuditLog.from_settings(settings)).create(spec)
            _wait_for(lambda: any(job.job_id == job_id for job in exporter.last_snapshot.jobs))  # type: ignore[union-attr]
            cycles = exporter.last_snapshot.cycles  # type: ignore[union-attr]
            _wait_for(lambda: exporter.last_snapshot.cycles > cycles + 1)  # type: ignore[union-attr]
        actions = [
            json.loads(line)["event"]["action"] for line in path.read_text(encoding="utf-8").splitlines()
        ]
        assert actions == ["job.create", "job.create"]
