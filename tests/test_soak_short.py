"""A short soak: `serve` polls for ~25 s while faults toggle; its threads and descriptors do not grow.

The long version is ``benchmarks/soak.py`` (10 minutes and more, memory too).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import free_port

from ccs_exporter.simulator import Simulator

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads /proc (Linux)"),
]

# Phases of ~2 s: faults on, then off, so every phase starts and ends connections and threads.
PHASES = ("hang", "errors", "drop", "malformed", "revoke", "down")
THREAD_SLACK = 2  # a scrape's connection thread may be alive when we look
FD_SLACK = 4


def counts(pid: int) -> tuple[int, int]:
    """(threads, open file descriptors) of a process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    threads = int(next(line for line in status.splitlines() if line.startswith("Threads:")).split()[1])
    return threads, len(os.listdir(f"/proc/{pid}/fd"))


@pytest.fixture
def serve() -> Iterator[tuple[subprocess.Popen[bytes], list[Simulator], str]]:
    """`ccs-exporter serve` at a 0.3 s interval against a simulator (replaceable on the same port)."""
    sims = [Simulator(port=0, run_interval=2.0).start()]
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("CCS_EXPORTER_")}
    env.update(
        CCS_EXPORTER_URL=sims[0].url,
        CCS_EXPORTER_USERNAME=sims[0].username,
        CCS_EXPORTER_PASSWORD=sims[0].password,
        CCS_EXPORTER_JOB_IDS=",".join(sims[0].job_ids),
        CCS_EXPORTER_LISTEN_ADDRESS=f"127.0.0.1:{port}",
        CCS_EXPORTER_POLL_INTERVAL_SECONDS="0.3",
        CCS_EXPORTER_REQUEST_TIMEOUT_SECONDS="0.5",
        CCS_EXPORTER_LOG_LEVEL="error",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "ccs_exporter", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process, sims, f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        sims[-1].stop()


def wait_up(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if "\nccs_up 1.0" in requests.get(f"{url}/metrics", timeout=2).text:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError("the exporter did not report ccs_up 1 in time")


class TestShortSoak:
    """Faults switching on and off leave no threads or descriptors behind."""

    def test_threads_and_fds_stay_flat(
        self, serve: tuple[subprocess.Popen[bytes], list[Simulator], str]
    ) -> None:
        """After two rounds of six faults, threads and fds are within a small bound of the warm-up counts."""
        process, sims, url = serve
        wait_up(url)
        baseline = [counts(process.pid) for _ in range(3)]
        highest_threads = max(threads for threads, _ in baseline)
        highest_fds = max(fds for _, fds in baseline)
        scrapes = 0
        for phase in PHASES * 2:
            sim = sims[-1]
            if phase == "down":
                sim.stop()
            elif phase == "revoke":
                sim.revoke_tokens()
            else:
                sim.faults.update(
                    {"hang": True}
                    if phase == "hang"
                    else {
                        "errors": {"error_rate": 1.0},
                        "drop": {"drop_connections": True},
                        "malformed": {"malformed_json": True},
                    }[phase]
                )
            ends = time.monotonic() + 1.2
            while time.monotonic() < ends:
                assert requests.get(f"{url}/metrics", timeout=2).status_code == 200
                scrapes += 1
                time.sleep(0.2)
            if phase == "down":
                sims.append(Simulator(port=sim.port, run_interval=2.0).start())
            else:
                sim.faults.clear()
            time.sleep(0.6)
        assert process.poll() is None
        wait_up(url)
        time.sleep(1)
        end = [counts(process.pid) for _ in range(3)]
        assert min(threads for threads, _ in end) <= highest_threads + THREAD_SLACK, (baseline, end)
        assert min(fds for _, fds in end) <= highest_fds + FD_SLACK, (baseline, end)
        assert scrapes > 50
