"""`ccs-exporter jobs search` and `jobs find` against the simulator and a mocked CCS, as users run them."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import responses
import structlog

from ccs_exporter.cli import main
from ccs_exporter.simulator import Simulator


@pytest.fixture(scope="module")
def sim(started_for_module: Callable[..., Simulator]) -> Simulator:
    """30 generated jobs, Search Jobs pages silently capped at 7."""
    started_simulator: Simulator = started_for_module(jobs=30, search_page_size_cap=7)
    return started_simulator


@pytest.fixture(autouse=True)
def no_faults(sim: Simulator) -> Iterator[None]:
    yield
    sim.faults.clear()


def _run(sim: Simulator, *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CCS_EXPORTER_")}
    env.update(
        CCS_EXPORTER_URL=sim.url,
        CCS_EXPORTER_USERNAME=sim.username,
        CCS_EXPORTER_PASSWORD=sim.password,
        CCS_EXPORTER_LOG_LEVEL="warning",
    )
    return subprocess.run(
        [sys.executable, "-m", "ccs_exporter", *args], env=env, capture_output=True, text=True, timeout=60
    )


def _names(stdout: str) -> list[str]:
    return [job["JobProperties"]["Name"] for job in json.loads(stdout)]


@pytest.mark.integration
class TestJobsSearch:
    """Printing every job an expression matches."""

    def test_every_page_is_printed_as_one_json_array(self, sim: Simulator) -> None:
        """Pages of 2 (and a server capping at 7) are all read: every match, once, in CCS's order."""
        sim.reset_requests()
        result = _run(sim, "jobs", "search", "(JobName EndsWith 7)", "--page-size", "2")
        assert result.returncode == 0, result.stderr
        assert _names(result.stdout) == ["Generated job 00007", "Generated job 00017", "Generated job 00027"]
        assert sim.request_count("search_jobs") == 3  # two pages and the empty one
        assert result.stderr == ""

    def test_rejected_expression_exits_1_with_ccs_message(self, sim: Simulator) -> None:
        """A 400 exits 1 with CCS's reason on one stderr line and prints nothing."""
        result = _run(sim, "jobs", "search", "(Colour = blue)")
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "400" in lines[0] and "Unknown attribute 'Colour'" in lines[0]
        assert result.stdout == ""

    def test_ccs_without_search_jobs_exits_1(self, sim: Simulator) -> None:
        """A CCS answering 404 for Search Jobs exits 1 with one line."""
        sim.faults.update({"search_unsupported": True})
        result = _run(sim, "jobs", "search", "(JobName EndsWith 7)")
        assert result.returncode == 1
        assert len(result.stderr.strip().splitlines()) == 1 and "404" in result.stderr

    @pytest.mark.parametrize(
        "args",
        [["  "], ["(JobName = a\u0007)"], ["x", "--page-size", "0"], ["x", "--page-size", "1001"]],
        ids=["blank", "control-character", "page-size-0", "page-size-1001"],
    )
    def test_bad_arguments_exit_2_before_any_request(self, sim: Simulator, args: list[str]) -> None:
        """A blank or unprintable expression, or a page size out of 1-1000, is a usage error: nothing sent."""
        sim.reset_requests()
        result = _run(sim, "jobs", "search", *args)
        assert result.returncode == 2
        assert sim.request_count() == 0

    def test_server_ignoring_page_is_said(self, sim: Simulator) -> None:
        """When page 1 repeats page 0, the jobs of page 0 are printed and stderr says paging was ignored."""
        sim.faults.update({"search_ignores_page": True})
        result = _run(sim, "jobs", "search", "(JobName StartsWith Generated)")
        assert result.returncode == 0
        assert len(json.loads(result.stdout)) == 7
        assert "ignores paging" in result.stderr

    def test_secrets_in_job_text_are_not_printed(self, sim: Simulator) -> None:
        """A job whose description holds the CCS password prints without it."""
        sim.add_job("Leaky search job", description=f"connect with password {sim.password}")
        result = _run(sim, "jobs", "search", "(JobName = Leaky search job)")
        assert result.returncode == 0, result.stderr
        assert _names(result.stdout) == ["Leaky search job"]
        assert sim.password not in result.stdout


@pytest.mark.integration
class TestTableOutput:
    """`-o table` for people: one row per job."""

    def test_search_table(self, sim: Simulator) -> None:
        """Every match is one row under the header, with its status by name."""
        result = _run(sim, "jobs", "search", "(JobName EndsWith 7)", "--page-size", "2", "-o", "table")
        assert result.returncode == 0, result.stderr
        header, *rows = result.stdout.splitlines()
        assert header.split()[:3] == ["JOB", "ID", "NAME"]
        assert [row.split("  ")[1].strip() for row in rows] == [
            "Generated job 00007",
            "Generated job 00017",
            "Generated job 00027",
        ]

    def test_find_table_scrubbed(self, sim: Simulator) -> None:
        """A found job shows as a row; a name holding the password is scrubbed there too."""
        name = f"Table job {sim.password}"
        sim.add_job(name)
        result = _run(sim, "jobs", "find", name, "-o", "table")
        assert result.returncode == 0, result.stderr
        assert len(result.stdout.splitlines()) == 2
        assert "Table job [REDACTED]" in result.stdout and sim.password not in result.stdout


@pytest.mark.integration
class TestJobsFind:
    """Search by name."""

    def test_exact_name_prints_the_job(self, sim: Simulator) -> None:
        """The job with exactly that name is printed (in a JSON array)."""
        result = _run(sim, "jobs", "find", "Generated job 00003")
        assert result.returncode == 0, result.stderr
        assert _names(result.stdout) == ["Generated job 00003"]

    def test_no_such_name_exits_1(self, sim: Simulator) -> None:
        """A name no job has exits 1 with one line; nothing on stdout."""
        result = _run(sim, "jobs", "find", "generated job 00003")  # names match exactly, case included
        assert result.returncode == 1
        assert "no job is named 'generated job 00003'" in result.stderr and result.stdout == ""


BASE = "https://ccs.example.test:12431"


@pytest.mark.integration
class TestHostileAnswers:
    """Items CCS sends that cannot be read are reported, and the rest still printed."""

    @pytest.fixture
    def env(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
        """The settings in the environment; the logging main() configures is undone afterwards."""
        saved = structlog.get_config()
        for key in list(os.environ):
            if key.startswith("CCS_EXPORTER_"):
                monkeypatch.delenv(key)
        monkeypatch.setenv("CCS_EXPORTER_URL", BASE)
        monkeypatch.setenv("CCS_EXPORTER_USERNAME", "CORP\\svc")
        monkeypatch.setenv("CCS_EXPORTER_PASSWORD", "pw")
        monkeypatch.setenv("CCS_EXPORTER_LOG_LEVEL", "error")
        yield
        structlog.configure(**saved)

    def test_unreadable_items_exit_1_after_printing_the_rest(
        self,
        env: None,
        mocked_responses: responses.RequestsMock,
        load_fixture: Callable[[str], Any],
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """A wrapped answer with one broken job prints the good one, then one stderr line, exit 1."""
        good = load_fixture("search_job_by_id.json")
        broken = copy.deepcopy(good)
        broken["JobProperties"]["JobID"] = "ff761384-4b49-40b4-97d8-0de38669075a"
        broken["JobProperties"]["LastRunStatus"] = {"nested": "nonsense"}
        mocked_responses.post(
            BASE + "/ccs/api/v1/oauth/tokens", json={"access_token": "a", "expires_in": 3600}
        )
        mocked_responses.get(BASE + "/ccs/api/v1/Jobs", json={"Jobs": [good, broken]})
        mocked_responses.get(BASE + "/ccs/api/v1/Jobs", json={"Jobs": []})
        assert main(["jobs", "search", "(JobType = A)"]) == 1
        captured = capsys.readouterr()
        assert [job["JobProperties"]["JobID"] for job in json.loads(captured.out)] == [
            good["JobProperties"]["JobID"]
        ]
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1
        assert "1 job(s)" in lines[0] and "ff761384-4b49-40b4-97d8-0de38669075a" in lines[0]
