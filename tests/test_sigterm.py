"""SIGTERM during an audited mutation acts as Ctrl-C (issue 23, finding 14).

``timeout 2 ccs-exporter jobs run ...`` left an intent without a result and said nothing; now the intent
is closed with the result the mutation got to and one line says what happened.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from test_interrupts import ROOT, has_intent, idle_job, start_cli, wait_for
from test_jobs import PASSWORD, read_records

from ccs_exporter.audit import verify
from ccs_exporter.simulator import Simulator

pytestmark = pytest.mark.integration


@pytest.fixture
def sim(started: Callable[..., Simulator]) -> Simulator:
    started_simulator: Simulator = started(run_interval=None, password=PASSWORD)
    return started_simulator


def test_sigterm_before_the_request_records_failure(sim: Simulator, tmp_path: Path) -> None:
    """SIGTERM while the token request hangs: a failure result for the intent, exit 130, one line."""
    log_path = tmp_path / "audit.log"
    job_id = idle_job(sim)
    sim.faults.latency_seconds = 5
    process = start_cli(["jobs", "run", job_id], sim, log_path)
    wait_for(lambda: has_intent(log_path))
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    sim.faults.latency_seconds = 0
    assert process.returncode == 130
    (line,) = stderr.strip().splitlines()
    assert "nothing was changed" in line
    intent, result = read_records(log_path)
    assert result["audit"]["id"] == intent["audit"]["id"] and result["event"]["outcome"] == "failure"
    assert verify(log_path).ok


def test_timeout_command_leaves_no_open_intent(sim: Simulator, tmp_path: Path) -> None:
    """The reported case, ``timeout N ccs-exporter jobs run`` against a CCS that hangs: the SIGTERM
    ``timeout`` sends reaches the command after its intent is written (``timeout`` passes on the SIGTERM it
    is sent, so the test sends it once the intent is there instead of guessing how long a start takes)."""
    timeout = shutil.which("timeout")
    if timeout is None:
        pytest.skip("coreutils timeout is not installed")
    log_path = tmp_path / "audit.log"
    job_id = idle_job(sim)
    sim.faults.hang = True
    env = {
        "CCS_EXPORTER_URL": sim.url,
        "CCS_EXPORTER_USERNAME": sim.username,
        "CCS_EXPORTER_PASSWORD": PASSWORD,
        "CCS_EXPORTER_AUDIT_LOG": str(log_path),
        "CCS_EXPORTER_LOG_LEVEL": "error",
        "PYTHONPATH": str(ROOT),
        "PATH": "/usr/bin:/bin",
    }
    process = subprocess.Popen(
        [timeout, "120", sys.executable, "-m", "ccs_exporter", "jobs", "run", job_id],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: has_intent(log_path), timeout=60.0)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    sim.faults.hang = False
    result = subprocess.CompletedProcess(process.args, process.returncode, "", stderr)
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    records = read_records(log_path)
    intents = {r["audit"]["id"] for r in records if r["audit"]["phase"] == "intent"}
    results = {r["audit"]["id"] for r in records if r["audit"]["phase"] == "result"}
    assert intents and intents == results
    assert verify(log_path).ok
