"""Tests of Ctrl-C during an audited mutation: a real `ccs-exporter` process interrupted at each step."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_jobs import CREATE_SPEC, PASSWORD, read_records

from ccs_exporter.audit import verify
from ccs_exporter.operations.interrupts import interrupts_deferred
from ccs_exporter.simulator import Simulator

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def sim(started: Callable[..., Simulator]) -> Simulator:
    started_simulator: Simulator = started(run_interval=None, password=PASSWORD)
    return started_simulator


def start_cli(args: list[str], sim: Simulator, audit_path: Path) -> subprocess.Popen[str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("CCS_EXPORTER_")}
    environment.update(
        {
            "CCS_EXPORTER_URL": sim.url,
            "CCS_EXPORTER_USERNAME": sim.username,
            "CCS_EXPORTER_PASSWORD": PASSWORD,
            "CCS_EXPORTER_AUDIT_LOG": str(audit_path),
            "CCS_EXPORTER_LOG_LEVEL": "error",
            "CCS_EXPORTER_REQUEST_TIMEOUT_SECONDS": "60",
            "PYTHONPATH": str(ROOT),
        }
    )
    return subprocess.Popen(
        [sys.executable, "-m", "ccs_exporter", *args],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def interrupt(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    """Send SIGINT (what Ctrl-C sends) and collect the exit code and output."""
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    return process.returncode, stdout, stderr


def has_intent(path: Path) -> bool:
    return path.exists() and b'"phase":"intent"' in path.read_bytes()


def idle_job(sim: Simulator) -> str:
    return next(
        j
        for j in sim.job_ids
        if not sim.job_snapshot(j)["JobProperties"]["IsSystemJob"]
        and sim.job_snapshot(j)["JobProperties"]["LastRunStatus"] not in (1, 2)
    )


@pytest.mark.integration
class TestCtrlC:
    def test_before_the_request_is_sent_records_failure(self, sim: Simulator, tmp_path: Path) -> None:
        """Ctrl-C while the token request hangs: result failure, exit 130, one line, the run never sent."""
        log_path = tmp_path / "audit.log"
        job_id = idle_job(sim)
        sim.faults.latency_seconds = 5  # the token request, the first one, waits here
        process = start_cli(["jobs", "run", job_id], sim, log_path)
        wait_for(lambda: has_intent(log_path))
        time.sleep(0.3)
        code, _, stderr = interrupt(process)
        sim.faults.latency_seconds = 0
        assert code == 130
        (line,) = stderr.strip().splitlines()
        assert "interrupted before the job run was sent: nothing was changed" in line
        intent, result = read_records(log_path)
        assert result["audit"]["id"] == intent["audit"]["id"]
        assert result["event"]["outcome"] == "failure"
        assert "before the request was sent" in result["error"]["message"]
        time.sleep(6)  # anything still on its way would have arrived by now
        assert sim.request_count("job_operation") == 0
        assert sim.job_snapshot(job_id)["JobProperties"]["LastRunStatus"] not in (1, 2)
        assert verify(log_path).ok

    def test_while_ccs_delays_the_answer_records_unknown(self, sim: Simulator, tmp_path: Path) -> None:
        """Ctrl-C while the execute is on its way: result unknown, exit 130, and CCS did run the job."""
        log_path = tmp_path / "audit.log"
        job_id = idle_job(sim)
        sim.faults.latency_seconds = 1
        process = start_cli(["jobs", "run", job_id], sim, log_path)
        wait_for(lambda: sim.request_count("job") >= 1)  # the job was read; the execute comes next
        sim.faults.hang = True  # ... and is held after its 1 s of latency, until the test lets it go
        time.sleep(1.5)
        code, _, stderr = interrupt(process)
        sim.faults.hang = False
        wait_for(lambda: sim.request_count("job_operation") == 1)
        assert code == 130
        (line,) = stderr.strip().splitlines()
        assert "the job run was sent and may or may not have been carried out" in line
        result = read_records(log_path)[-1]
        assert (result["audit"]["phase"], result["event"]["outcome"]) == ("result", "unknown")
        assert result["ccs"]["job"]["name"]  # the job read before the request names it
        assert sim.job_snapshot(job_id)["JobProperties"]["LastRunStatus"] == 1
        assert verify(log_path).ok

    def test_after_ccs_answered_records_success_and_prints_the_job_id(
        self, sim: Simulator, tmp_path: Path
    ) -> None:
        """Ctrl-C while the created job is read back: result success, and the message names the new JobID."""
        log_path = tmp_path / "audit.log"
        spec = tmp_path / "spec.json"
        spec.write_text(json.dumps(CREATE_SPEC), encoding="utf-8")
        sim.faults.latency_seconds = 1
        process = start_cli(["jobs", "create", "-f", str(spec)], sim, log_path)
        wait_for(lambda: sim.request_count("create_job") == 1)
        sim.faults.hang = True  # the read after the create is held
        time.sleep(1.5)
        code, stdout, stderr = interrupt(process)
        sim.faults.hang = False
        new_ids = [j for j in sim.job_ids if sim.job_snapshot(j)["JobProperties"]["Name"] == "Test_Job11"]
        assert len(new_ids) == 1
        assert code == 130
        assert stdout == ""
        (line,) = stderr.strip().splitlines()
        assert f"interrupted after CCS carried out the job create (JobID {new_ids[0]})" in line
        result = read_records(log_path)[-1]
        assert result["event"]["outcome"] == "success"
        assert result["ccs"]["job"]["id"] == new_ids[0]
        assert "interrupted" in result["change"]["after_error"]
        assert verify(log_path).ok

    def test_during_the_read_before_an_update_nothing_is_changed(
        self, sim: Simulator, tmp_path: Path
    ) -> None:
        """Ctrl-C while the job is read before an update: failure, and the job keeps its description."""
        log_path = tmp_path / "audit.log"
        details = tmp_path / "details.json"
        details.write_text(json.dumps({"JobDescription": "never applied"}), encoding="utf-8")
        job_id = idle_job(sim)
        sim.faults.latency_seconds = 1
        process = start_cli(["jobs", "update", job_id, "-f", str(details)], sim, log_path)
        wait_for(lambda: sim.request_count("token") >= 1)
        sim.faults.hang = True  # the read of the job is held
        time.sleep(1.5)
        code, _, stderr = interrupt(process)
        sim.faults.hang = False
        assert code == 130
        assert "interrupted before the job update was sent" in stderr
        assert read_records(log_path)[-1]["event"]["outcome"] == "failure"
        time.sleep(1.5)
        assert sim.request_count("update_job") == 0
        assert sim.job_snapshot(job_id)["JobConfigDetails"]["JobDescription"] != "never applied"
        assert verify(log_path).ok


class TestDeferredInterrupts:
    def test_ctrl_c_inside_is_delivered_after_the_block(self) -> None:
        """SIGINT during a held-back block lets the block finish and raises KeyboardInterrupt right after."""
        steps: list[str] = []
        with pytest.raises(KeyboardInterrupt):
            with interrupts_deferred():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)  # the signal is handled by now, and held back
                steps.append("finished")
            steps.append("after")  # pragma: no cover - never reached
        assert steps == ["finished"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    def test_a_failing_block_keeps_its_own_error(self) -> None:
        """When the block fails after a SIGINT, its error is raised, not the interrupt."""

        def failing() -> Any:
            with interrupts_deferred():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)
                raise OSError("disk full")

        with pytest.raises(OSError, match="disk full"):
            failing()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
