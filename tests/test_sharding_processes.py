"""Three `ccs-exporter serve` processes as shards 0/3, 1/3 and 2/3 against one simulator.

Every job, configured or found by a search, is exported by exactly one of them, their union is every job,
each job's runs are read by its own shard only, and a job created in the console appears (and is audited)
in exactly one. The processes listen on free 127.0.0.1 ports and are stopped by their own PIDs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from conftest import free_port
from prometheus_client.parser import text_string_to_metric_families

from ccs_exporter.sharding import shard_of
from ccs_exporter.simulator import Simulator

pytestmark = pytest.mark.integration

TOTAL = 3
GENERATED = "(JobName StartsWith Generated)"
COLLECTION = "(JobType = COLLECTIONJOB)"


@dataclass
class ShardProcess:
    """One running shard: its process, metrics URL and config file."""

    index: int
    process: subprocess.Popen[bytes]
    base: str
    config: Path


def _scrape(base: str) -> dict[str, Any]:
    """The job ids a shard exports (in ccs_job_info) and its two shard gauges."""
    text = requests.get(f"{base}/metrics", timeout=5).text
    found: dict[str, Any] = {"jobs": set()}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "ccs_job_info":
                found["jobs"].add(sample.labels["job_id"])
            elif sample.name in ("ccs_exporter_shard_ordinal", "ccs_exporter_total_shards"):
                found[sample.name] = sample.value
    return found


def _cycles(base: str) -> float:
    """How many poll cycles a shard has completed."""
    text = requests.get(f"{base}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "ccs_poll_cycles_total":
                return float(sample.value)
    return 0.0


def _settled_jobs(sim: Simulator) -> list[str]:
    """The jobs with a finished latest run: their runs are read once and then only when they change."""
    settled = []
    for job in sim.job_ids:
        latest = sim.job_runs_snapshot(job, count=1)["JobStatusInfo"][:1]
        if latest and latest[0]["Status"] not in (1, 2):
            settled.append(job)
    return settled


def _runs_reads(sim: Simulator, job: str) -> int:
    return sum(job in record.path for record in sim.requests if record.endpoint == "jobruns")


def _audited(path: Path, action: str) -> set[str]:
    """The job ids of the audit records of ``action`` in one shard's audit log."""
    if not path.exists():
        return set()
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return {record["ccs"]["job"]["id"] for record in records if record["event"]["action"] == action}


def _wait(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{what} within {timeout} s")


@pytest.fixture
def sim(started: Callable[..., Simulator]) -> Simulator:
    """A simulator with 60 generated jobs, runs frozen."""
    started_simulator: Simulator = started(jobs=60, seed=18, run_interval=None)
    return started_simulator


@pytest.fixture
def shards(tmp_path: Path, sim: Simulator) -> Iterator[Callable[..., list[ShardProcess]]]:
    """Starts the three shards with the given settings (``audit``: each its own audit log, as the chart
    gives every pod its own volume); kills any left running by PID at the end."""
    started: list[ShardProcess] = []

    def start(settings: dict[str, Any], *, audit: bool = False) -> list[ShardProcess]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("CCS_EXPORTER_")}
        env["CCS_EXPORTER_PASSWORD"] = sim.password
        for index in range(TOTAL):
            port = free_port()
            config = tmp_path / f"shard-{index}.yaml"
            values = {
                "url": sim.url,
                "username": sim.username,
                "poll_interval_seconds": 0.5,
                "listen_address": f"127.0.0.1:{port}",
                "shard": f"{index}/{TOTAL}",
                **settings,
            }
            if audit:
                values["audit_log"] = str(tmp_path / f"audit-{index}.jsonl")
            config.write_text(yaml.safe_dump(values), encoding="utf-8")
            with (tmp_path / f"shard-{index}.log").open("wb") as log_file:
                process = subprocess.Popen(
                    [sys.executable, "-m", "ccs_exporter", "serve", "--config", str(config)],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=log_file,
                )
            started.append(ShardProcess(index, process, f"http://127.0.0.1:{port}", config))
        for shard in started:
            _wait(
                lambda shard=shard: requests.get(f"{shard.base}/readyz", timeout=2).status_code == 200,
                f"shard {shard.index} was not ready",
            )
        return started

    yield start
    for shard in started:
        if shard.process.poll() is None:
            os.kill(shard.process.pid, signal.SIGKILL)
        shard.process.wait(10)


class TestConfiguredIds:
    """Configured job ids are split over the shards by their GUID's hash."""

    def test_each_job_is_exported_by_exactly_one_shard(
        self, sim: Simulator, shards: Callable[..., list[ShardProcess]]
    ) -> None:
        """The shards' job sets are disjoint, cover every job, and follow shard_of(GUID, 3)."""
        running = shards({"job_ids": sim.job_ids})
        scraped = [_scrape(shard.base) for shard in running]
        exported = [found["jobs"] for found in scraped]
        assert all(exported), "a shard exports no job: 60 jobs should reach every shard"
        assert set().union(*exported) == set(sim.job_ids)
        assert sum(len(jobs) for jobs in exported) == len(sim.job_ids)
        for index, found in enumerate(scraped):
            assert found["jobs"] == {job for job in sim.job_ids if shard_of(job, TOTAL) == index}
            assert found["ccs_exporter_shard_ordinal"] == index
            assert found["ccs_exporter_total_shards"] == TOTAL

    def test_runs_are_read_by_the_owning_shard_only(
        self, sim: Simulator, shards: Callable[..., list[ShardProcess]]
    ) -> None:
        """A job whose runs do not move has its runs read once in all, not once per replica."""
        running = shards({"job_ids": sim.job_ids})
        for shard in running:
            os.kill(shard.process.pid, signal.SIGTERM)
            shard.process.wait(15)
        settled = _settled_jobs(sim)
        assert len(settled) > 20
        assert {job: _runs_reads(sim, job) for job in settled} == dict.fromkeys(settled, 1)

    def test_a_job_added_to_the_config_appears_in_one_shard(
        self, sim: Simulator, shards: Callable[..., list[ShardProcess]]
    ) -> None:
        """A job id added to every shard's config file appears in its owner's /metrics only."""
        configured = list(sim.job_ids)
        new_job = sim.add_job("Added in the console", job_id=str(uuid.UUID(int=18, version=4)))
        running = shards({"job_ids": configured})
        # Each shard also loses one of its own jobs, so that its reload can be seen.
        dropped = [next(job for job in configured if shard_of(job, TOTAL) == index) for index in range(TOTAL)]
        kept = [job for job in configured if job not in dropped]
        time.sleep(0.05)  # a distinct mtime even on coarse clocks
        for shard in running:
            values = yaml.safe_load(shard.config.read_text(encoding="utf-8"))
            values["job_ids"] = [*kept, new_job]
            shard.config.write_text(yaml.safe_dump(values), encoding="utf-8")
        for shard in running:
            _wait(
                lambda shard=shard: dropped[shard.index] not in _scrape(shard.base)["jobs"],
                f"shard {shard.index} did not reload its config",
            )
        owner = running[shard_of(new_job, TOTAL)]
        _wait(lambda: new_job in _scrape(owner.base)["jobs"], "the new job did not reach its shard")
        holders = [shard.index for shard in running if new_job in _scrape(shard.base)["jobs"]]
        assert holders == [owner.index]


class TestJobSearches:
    """Every shard lists the searches and keeps its own share of what they find."""

    def test_each_found_job_is_exported_by_exactly_one_shard(
        self, sim: Simulator, shards: Callable[..., list[ShardProcess]]
    ) -> None:
        """Two overlapping searches: the shards' jobs are disjoint, cover every job and follow the hash."""
        running = shards({"job_search": [GENERATED, COLLECTION]})
        scraped = [_scrape(shard.base) for shard in running]
        exported = [found["jobs"] for found in scraped]
        assert set().union(*exported) == set(sim.job_ids)
        assert sum(len(jobs) for jobs in exported) == len(sim.job_ids)
        for index, jobs in enumerate(exported):
            assert jobs == {job for job in sim.job_ids if shard_of(job, TOTAL) == index}
        for shard in running:
            os.kill(shard.process.pid, signal.SIGTERM)
            shard.process.wait(15)
        settled = _settled_jobs(sim)
        assert len(settled) > 20
        assert {job: _runs_reads(sim, job) for job in settled} == dict.fromkeys(settled, 1)
        assert sim.request_count("job") == 0  # found jobs cost no request of their own

    def test_a_job_created_in_the_console_appears_in_exactly_one_shard(
        self, sim: Simulator, shards: Callable[..., list[ShardProcess]], tmp_path: Path
    ) -> None:
        """A job created in the console is exported, and recorded as created, by its own shard only."""
        audit_logs = [tmp_path / f"audit-{index}.jsonl" for index in range(TOTAL)]
        running = shards({"job_search": [GENERATED]}, audit=True)
        before = [_cycles(shard.base) for shard in running]
        answer = requests.post(
            f"{sim.url}/_simulator/jobs", json={"Name": "Generated in the console"}, timeout=5
        )
        assert answer.status_code == 200, answer.text
        new_job = answer.json()["JobProperties"]["JobID"].lower()
        owner = running[shard_of(new_job, TOTAL)]
        _wait(lambda: new_job in _scrape(owner.base)["jobs"], "the console's job did not reach its shard")
        for shard, cycles in zip(running, before, strict=True):  # every shard listed after the creation
            _wait(lambda shard=shard, cycles=cycles: _cycles(shard.base) >= cycles + 2, "a shard stalled")
        holders = [shard.index for shard in running if new_job in _scrape(shard.base)["jobs"]]
        assert holders == [owner.index]
        _wait(lambda: new_job in _audited(audit_logs[owner.index], "job.created"), "no job.created record")
        assert [new_job in _audited(path, "job.created") for path in audit_logs] == [
            index == owner.index for index in range(TOTAL)
        ]
