"""The benchmark script still runs: ``benchmarks/run.py --quick`` completes and prints every row.

No timing is asserted (CI machines vary); the figures themselves are benchmarks/README.md's business.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"
ROWS = (
    "cold poll, naive: sequential, new connection each",
    "cold poll, tuned raw requests (pooled), concurrency 8",
    "cold poll, exporter Poller, concurrency 8",
    "cold poll, exporter / raw at concurrency 8",
    "cold poll, naive / exporter at concurrency 8",
    "steady, simulator mix: requests per job per cycle",
    "steady, simulator mix: CPU s per cycle per 1,000 jobs",
    "steady, every job at rest: requests per job per cycle",
    "steady, every job at rest: CPU s per cycle per 1,000 jobs",
    "/metrics during cycles, plain: p50 / p99 ms",
    "/metrics during cycles, gzip: p50 / p99 ms",
    "/metrics CCS hung, plain: p50 / p99 ms",
    "/metrics CCS hung, gzip: p50 / p99 ms",
    "exporter RSS: max sampled / peak (VmHWM), MiB",
    "exposition size, plain / gzip",
)
TARGETS = (
    "steady state <= 1.05",
    "cold poll within 1.25x",
    "cold poll >= 5x",
    "/metrics p99 < 50 ms",
    "RSS < 150 MB",
)


class TestBenchmarkScript:
    """The quick mode of the benchmark script, run as a user would."""

    def test_quick_run_prints_every_row_and_target(self) -> None:
        """A --quick run exits 0 and prints a filled table row for every figure and a verdict per target."""
        result = subprocess.run(
            [sys.executable, str(SCRIPT), "--quick"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        table = {
            cells[0]: cells[1]
            for line in result.stdout.splitlines()
            if line.startswith("| ")
            for cells in [[cell.strip() for cell in line.strip("|").split("|")]]
        }
        for row in ROWS:
            assert row in table, f"row missing: {row}\n{result.stdout}"
            assert table[row] not in ("", "n/a"), f"row not measured: {row}"
        assert "/metrics CCS slow" in result.stdout
        verdicts = re.findall(r"^- (PASS|MISS): (.*)$", result.stdout, re.MULTILINE)
        for target in TARGETS:
            assert any(text.startswith(target) for _, text in verdicts), f"no verdict for {target}"


DISCOVERY_SCRIPT = SCRIPT.parent / "discovery.py"
DISCOVERY_ROWS = (
    "cold start, tuned raw client (list + runs): wall s",
    "cold start, exporter (discovery): wall s",
    "at rest, by id (before): requests per cycle",
    "at rest, discovery: requests per cycle",
    "at rest, discovery: CPU s per cycle per 1,000 jobs",
)


class TestDiscoveryBenchmarkScript:
    """The quick mode of the discovery benchmark, run as a user would."""

    def test_quick_run_prints_every_row_and_target(self) -> None:
        """A --quick run exits 0, fills every row, and judges the request, cold-start and CPU targets."""
        result = subprocess.run(
            [sys.executable, str(DISCOVERY_SCRIPT), "--quick"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        table = {
            cells[0]: cells[1]
            for line in result.stdout.splitlines()
            if line.startswith("| ")
            for cells in [[cell.strip() for cell in line.strip("|").split("|")]]
        }
        for row in DISCOVERY_ROWS:
            assert table.get(row) not in (None, "", "n/a"), f"row not measured: {row}\n{result.stdout}"
        assert "(0 per-job requests in 1 cycles)" in table["at rest, discovery: requests per cycle"]
        verdicts = [text for _, text in re.findall(r"^- (PASS|MISS): (.*)$", result.stdout, re.MULTILINE)]
        for target in ("at rest <= ceil(N/100) + 2", "cold start within 1.25x", "at rest CPU per cycle"):
            assert any(text.startswith(target) for text in verdicts), f"no verdict for {target}"


class TestScheduleCostScript:
    """The schedule-series benchmark, run small as a user would."""

    def test_small_run_prints_every_part(self) -> None:
        """benchmarks/schedule_cost.py on 40 jobs exits 0 and prints a figure for every part it measures."""
        result = subprocess.run(
            [sys.executable, str(SCRIPT.parent / "schedule_cost.py"), "--jobs", "40", "--repeat", "1"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert "40 jobs, 30 with a known schedule" in result.stdout
        for part in ("derive every schedule", "unchanged-block check", "render: added by schedules"):
            assert re.search(
                rf"^\| {part}.*\| +-?\d+\.\d{{3}} \| +-?\d+\.\d{{3}} \|$", result.stdout, re.MULTILINE
            )
        assert "added per steady-state cycle (median)" in result.stdout
