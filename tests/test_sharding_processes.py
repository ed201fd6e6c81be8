"""Three `ccs-exporter serve` processes as shards 0/3, 1/3 and 2/3 against one simulator.

Every job is exported by exactly one of them, their union is every job, and each job's runs are read by
its own shard only. The processes listen on free 127.0.0.1 ports and are stopped by their own PIDs.
"""

from __future__ import annotations

import os
import signal
import socket
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
from prometheus_client.parser import text_string_to_metric_families

from ccs_exporter.sharding import shard_of
from ccs_exporter.simulator import Simulator

TOTAL = 3


@dataclass
class ShardProcess:
    """One running shard: its process, metrics URL and config file."""

    index: int
    process: subprocess.Popen[bytes]
    base: str
    config: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
def sim() -> Iterator[Simulator]:
    """A simulator with 60 generated jobs, runs frozen."""
    with Simulator(port=0, jobs=60, seed=18, run_interval=None) as simulator:
        yield simulator


@pytest.fixture
def shards(tmp_path: Path, sim: Simulator) -> Iterator[Callable[[dict[str, Any]], list[ShardProcess]]]:
    """Starts the three shards with the given settings; kills any left running by PID at the end."""
    started: list[ShardProcess] = []

    def start(settings: dict[str, Any]) -> list[ShardProcess]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("CCS_EXPORTER_")}
        env["CCS_EXPORTER_PASSWORD"] = sim.password
        for index in range(TOTAL):
            port = _free_port()
            config = tmp_path / f"shard-{index}.yaml"
            values = {
                "url": sim.url,
                "username": sim.username,
                "poll_interval_seconds": 0.5,
                "listen_address": f"127.0.0.1:{port}",
                "shard": f"{index}/{TOTAL}",
                **settings,
            }
            config.write_text(yaml.safe_dump(values), encoding="utf-8")
            process = subprocess.Popen(
                [sys.executable, "-m", "ccs_exporter", "serve", "--config", str(config)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
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
        if shard.process.stderr is not None:
            shard.process.stderr.close()


class TestConfiguredIds:
    """Configured job ids are split over the shards by their GUID's hash."""

    def test_each_job_is_exported_by_exactly_one_shard(
        self, sim: Simulator, shards: Callable[[dict[str, Any]], list[ShardProcess]]
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
        self, sim: Simulator, shards: Callable[[dict[str, Any]], list[ShardProcess]]
    ) -> None:
        """A job whose runs do not move has its runs read once in all, not once per replica."""
        running = shards({"job_ids": sim.job_ids})
        for shard in running:
            os.kill(shard.process.pid, signal.SIGTERM)
            shard.process.wait(15)
        reads = [record.path for record in sim.requests if record.endpoint == "jobruns"]
        settled = [
            job
            for job in sim.job_ids
            if sim.job_runs_snapshot(job, count=1)["JobStatusInfo"][:1]
            and sim.job_runs_snapshot(job, count=1)["JobStatusInfo"][0]["Status"] not in (1, 2)
        ]
        assert len(settled) > 20
        for job in settled:
            assert sum(job in path for path in reads) == 1, job

    def test_a_job_added_to_the_config_appears_in_one_shard(
        self, sim: Simulator, shards: Callable[[dict[str, Any]], list[ShardProcess]]
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
