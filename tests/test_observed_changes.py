"""Changes made to a job while it was out of the watched search still reach the audit trail (issue 23, 3).

A job renamed out of the search, edited and renamed back produced no record; a job created and renamed
out and back twice produced three ``job.created`` and no ``job.changed``; a job deleted and created again
under the same id between two readings was recorded as ``job.changed``.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from ccs_exporter.audit import AuditLog
from ccs_exporter.client import CcsClient
from ccs_exporter.models import Job
from ccs_exporter.polling.cycle import Poller
from ccs_exporter.simulator import Simulator

SEARCH = "(JobName Contains Zebra)"


@pytest.fixture
def watched(started: Callable[..., Simulator]) -> Iterator[tuple[Simulator, Poller]]:
    sim = started(port=0, run_interval=None)
    client = CcsClient(sim.url, sim.username, SecretStr(sim.password), timeout=10, backoff_seconds=0.0)
    poller = Poller(client, [], searches=[SEARCH], track_changes=True)
    yield sim, poller
    poller.close()
    client.close()


def _kinds(poller: Poller) -> list[tuple[str, str | None]]:
    snapshot = poller.poll_cycle()
    return [
        (change.kind, change.after.JobProperties.Name if change.after is not None else None)
        for change in snapshot.changes
    ]


@pytest.mark.integration
class TestLeavingAndComingBack:
    def test_edits_made_while_out_of_the_search_are_a_change_when_back(
        self, watched: tuple[Simulator, Poller]
    ) -> None:
        """Renamed out, edited, renamed back: one job.changed comparing it with how it left."""
        sim, poller = watched
        job_id = sim.add_job("Zebra nightly", description="before")
        poller.poll_cycle()  # the baseline
        time.sleep(1.1)  # JobModifiedTime has whole seconds: the edits must fall in a later one
        sim.set_job_name(job_id, "Elsewhere")
        assert _kinds(poller) == []  # it left: no record (it was not deleted)
        sim.edit_job(job_id, {"JobDescription": "edited while away"})
        sim.set_job_name(job_id, "Zebra nightly")
        snapshot = poller.poll_cycle()
        (change,) = snapshot.changes
        assert change.kind == "changed" and change.job_id == job_id
        assert change.before is not None and change.after is not None
        assert json.dumps(change.after.model_dump(mode="json")).count("edited while away") >= 1

    def test_created_then_out_and_back_twice_is_one_creation(self, watched: tuple[Simulator, Poller]) -> None:
        """Created, renamed out and back twice: one job.created; a change when back only if changed."""
        sim, poller = watched
        poller.poll_cycle()
        job_id = sim.add_job("Zebra new")
        assert _kinds(poller) == [("created", "Zebra new")]
        kinds: list[tuple[str, str | None]] = []
        for _ in range(2):
            time.sleep(1.1)  # JobModifiedTime has whole seconds
            sim.set_job_name(job_id, "Elsewhere")
            kinds += _kinds(poller)
            sim.set_job_name(job_id, "Zebra new")
            kinds += _kinds(poller)
        assert ("created", "Zebra new") not in kinds
        assert all(kind == "changed" for kind, _ in kinds)


def _description(job: Job | None) -> str | None:
    config = job.JobConfigDetails if job is not None else None
    return config.JobDescription if config is not None else None


@pytest.mark.integration
class TestSearchFoundJobs:
    """A job a search found is remembered as its item's JSON, parsed again only to hand on a change."""

    def test_a_changed_job_hands_on_its_previous_definition(self, watched: tuple[Simulator, Poller]) -> None:
        """Edited in the console: job.changed with the definition read before as ``before``, whole."""
        sim, poller = watched
        job_id = sim.add_job("Zebra weekly", description="before")
        read_before = Job.model_validate(sim.job_snapshot(job_id))
        poller.poll_cycle()
        poller.poll_cycle()  # at rest: the item read before is used again, not parsed
        time.sleep(1.1)  # JobModifiedTime has whole seconds: the edit must fall in a later one
        sim.edit_job(job_id, {"JobDescription": "after"})
        (change,) = poller.poll_cycle().changes
        assert (change.kind, change.job_id) == ("changed", job_id)
        assert (_description(change.before), _description(change.after)) == ("before", "after")
        assert change.before == read_before

    def test_a_deleted_job_is_handed_on_with_its_last_definition(
        self, watched: tuple[Simulator, Poller]
    ) -> None:
        """Deleted in the console: job.deleted carrying the job as it was last read."""
        sim, poller = watched
        job_id = sim.add_job("Zebra monthly", description="last words")
        read_before = Job.model_validate(sim.job_snapshot(job_id))
        poller.poll_cycle()
        sim.remove_job(job_id)
        (change,) = poller.poll_cycle().changes
        assert (change.kind, change.job_id, change.after) == ("deleted", job_id, None)
        assert change.before == read_before and _description(change.before) == "last words"


class TestRecreatedUnderTheSameId:
    def test_recorded_as_deleted_then_created(
        self, tmp_path: Path, load_fixture: Callable[[str], Any]
    ) -> None:
        """Before and after with different JobCreationTime: job.deleted then job.created, no job.changed."""
        before = Job.model_validate(load_fixture("search_job_by_id.json"))
        raw = copy.deepcopy(load_fixture("search_job_by_id.json"))
        raw["JobProperties"]["JobCreationTime"] = "2030-01-01T00:00:00Z"
        raw["JobProperties"]["Name"] = "same id, another job"
        after = Job.model_validate(raw)
        assert before.JobProperties.JobCreationTime != after.JobProperties.JobCreationTime
        log_path = tmp_path / "audit.jsonl"
        audit_log = AuditLog(log_path, user_name="CCS\\demo", fsync=False, match_window_seconds=0)
        audit_log.observe(before.JobProperties.JobID or "x", before, after)
        actions = [json.loads(line)["event"]["action"] for line in log_path.read_text().splitlines()]
        assert actions == ["job.deleted", "job.created"]

    def test_same_creation_time_is_still_a_change(
        self, tmp_path: Path, load_fixture: Callable[[str], Any]
    ) -> None:
        """An ordinary edit (same JobCreationTime) stays one job.changed."""
        before = Job.model_validate(load_fixture("search_job_by_id.json"))
        raw = copy.deepcopy(load_fixture("search_job_by_id.json"))
        raw["JobProperties"]["Name"] = "renamed"
        after = Job.model_validate(raw)
        log_path = tmp_path / "audit.jsonl"
        AuditLog(log_path, user_name="CCS\\demo", fsync=False).observe("x", before, after)
        actions = [json.loads(line)["event"]["action"] for line in log_path.read_text().splitlines()]
        assert actions == ["job.changed"]


@pytest.mark.integration
def test_a_flapping_search_writes_no_fiction(watched: tuple[Simulator, Poller]) -> None:
    """A search answering 404 every other cycle (12 cycles): no job.deleted, job.created or changes;
    the jobs stay watched from their last good listing."""
    sim, poller = watched
    ids = [sim.add_job(f"Zebra {number}") for number in range(3)]
    poller.poll_cycle()
    seen: list[str] = []
    for cycle in range(12):
        sim.faults.search_unsupported = cycle % 2 == 0
        snapshot = poller.poll_cycle()
        seen += [change.kind for change in snapshot.changes]
        assert sorted(job.job_id for job in snapshot.jobs) == sorted(ids)
    sim.faults.search_unsupported = False
    assert seen == []
