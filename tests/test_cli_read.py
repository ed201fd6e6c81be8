"""`ccs-exporter jobs get` and `jobs runs` against the simulator, as a user runs them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable

import pytest

from ccs_exporter.simulator import Simulator

pytestmark = pytest.mark.integration

FAULTED_JOB = "7c1d5e92-2b4a-4f6e-8d3c-5a9b0e1f2c02"
MISSING_JOB = "00000000-0000-4000-8000-000000000000"


@pytest.fixture(scope="module")
def sim(started_for_module: Callable[..., Simulator]) -> Simulator:
    """One simulator with the sample jobs for the module."""
    started_simulator: Simulator = started_for_module(run_interval=None)
    return started_simulator


def _run(sim: Simulator, *args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CCS_EXPORTER_")}
    env["TZ"] = "Asia/Kolkata"
    env.update(
        CCS_EXPORTER_URL=sim.url,
        CCS_EXPORTER_USERNAME=sim.username,
        CCS_EXPORTER_PASSWORD=password if password is not None else sim.password,
    )
    return subprocess.run(
        [sys.executable, "-m", "ccs_exporter", *args], env=env, capture_output=True, text=True, timeout=60
    )


class TestJobsGet:
    """Printing one job."""

    def test_prints_the_job_as_json(self, sim: Simulator) -> None:
        """A known job prints its properties and config as JSON and exits 0."""
        result = _run(sim, "jobs", "get", FAULTED_JOB.upper())
        assert result.returncode == 0, result.stderr
        job = json.loads(result.stdout)
        assert job["JobProperties"]["JobID"] == FAULTED_JOB
        assert job["JobProperties"]["Name"] == "Weekly collection - Linux"
        assert job["JobProperties"]["LastRunStatus"] == 5

    def test_unknown_job_exits_1_with_one_line(self, sim: Simulator) -> None:
        """A job CCS does not know exits 1 with CCS's "not found" on one stderr line."""
        result = _run(sim, "jobs", "get", MISSING_JOB)
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "not found" in lines[0] and "404" in lines[0]
        assert result.stdout == ""

    def test_wrong_password_exits_1_without_the_password(self, sim: Simulator) -> None:
        """A refused login exits 1 naming the user, never the password."""
        result = _run(sim, "jobs", "get", FAULTED_JOB, password="Sup3r+Secret/Canary=")
        assert result.returncode == 1
        assert "CCS\\demo" in result.stderr
        assert "Canary" not in result.stderr + result.stdout


class TestJobsRuns:
    """Printing a job's latest runs."""

    def test_runs_with_messages(self, sim: Simulator) -> None:
        """`--count 2 --messages` prints two runs, newest first, with their messages."""
        result = _run(sim, "jobs", "runs", FAULTED_JOB, "--count", "2", "--messages")
        assert result.returncode == 0, result.stderr
        runs = json.loads(result.stdout)
        assert runs["TotalJobRuns"] == 3
        assert len(runs["JobStatusInfo"]) == 2
        latest = runs["JobStatusInfo"][0]
        assert latest["Status"] == 5
        assert {message["Category"] for message in latest["JobMessages"]} == {"Error", "Warning"}

    def test_runs_without_messages_default_to_the_latest(self, sim: Simulator) -> None:
        """Without options one run comes back, without its messages."""
        result = _run(sim, "jobs", "runs", FAULTED_JOB)
        assert result.returncode == 0, result.stderr
        runs = json.loads(result.stdout)
        assert len(runs["JobStatusInfo"]) == 1
        assert runs["JobStatusInfo"][0]["JobMessages"] == []

    def test_unreachable_ccs_exits_1(self, sim: Simulator) -> None:
        """A CCS that refuses connections exits 1 with one line saying so."""
        with Simulator(port=0) as gone:
            url = gone.url
        env = {key: value for key, value in os.environ.items() if not key.startswith("CCS_EXPORTER_")}
        env.update(CCS_EXPORTER_URL=url, CCS_EXPORTER_USERNAME="CCS\\demo", CCS_EXPORTER_PASSWORD="x")
        result = subprocess.run(
            [sys.executable, "-m", "ccs_exporter", "jobs", "runs", FAULTED_JOB],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "refused" in lines[0]


class TestHumanOutput:
    """`-o table` for people, `-o json` (the default) for scripts."""

    def test_runs_table(self, sim: Simulator) -> None:
        """Runs show status names, local times (the machine's zone) and durations, newest first."""
        result = _run(sim, "jobs", "runs", FAULTED_JOB, "--count", "3", "-o", "table")
        assert result.returncode == 0, result.stderr
        runs = json.loads(_run(sim, "jobs", "runs", FAULTED_JOB, "--count", "3").stdout)["JobStatusInfo"]
        lines = result.stdout.splitlines()
        assert lines[0] == "3 run(s) in total, 3 shown"
        assert lines[1].split() == ["RUN", "ID", "STATUS", "STARTED", "ENDED", "DURATION", "MESSAGES"]
        assert [line.split()[1] for line in lines[2:5]] == ["faulted", "faulted", "completed"]
        assert [line.split()[0] for line in lines[2:5]] == [run["JobRunID"] for run in runs]
        assert all(" IST " in line for line in lines[2:5])
        assert all(re.search(r"\b\d+m \d\ds\b", line) for line in lines[2:5])
        # Messages counted by category (the table asks CCS for them), not a bare number.
        assert all(re.search(r"\b\d+ (error|warning|information)", line) for line in lines[2:4]), lines

    def test_get_table(self, sim: Simulator) -> None:
        """A job shows as one row with its name and its last status by name."""
        result = _run(sim, "jobs", "get", FAULTED_JOB, "-o", "table")
        assert result.returncode == 0, result.stderr
        header, row = result.stdout.splitlines()
        assert header.split()[:3] == ["JOB", "ID", "NAME"]
        assert row.startswith(FAULTED_JOB) and "Weekly collection - Linux" in row and "faulted" in row

    def test_json_is_the_default(self, sim: Simulator) -> None:
        """`-o json` prints exactly what no option prints."""
        assert (
            _run(sim, "jobs", "get", FAULTED_JOB, "-o", "json").stdout
            == _run(sim, "jobs", "get", FAULTED_JOB).stdout
        )

    def test_unknown_format_is_a_usage_error(self, sim: Simulator) -> None:
        """An unknown output format exits 2 before anything is sent."""
        before = sim.request_count()
        result = _run(sim, "jobs", "get", FAULTED_JOB, "-o", "yaml")
        assert result.returncode == 2 and "invalid choice" in result.stderr
        assert sim.request_count() == before

    def test_json_escapes_terminal_controls(self, sim: Simulator) -> None:
        """C1 controls and bidi overrides in CCS text are escaped in JSON, which still reads back the same."""
        name = "evil \u009b2J \u202egnp.exe"
        job_id = sim.add_job(name)
        result = _run(sim, "jobs", "get", job_id)
        assert result.returncode == 0, result.stderr
        assert "\u009b" not in result.stdout and "\u202e" not in result.stdout
        assert json.loads(result.stdout)["JobProperties"]["Name"] == name
