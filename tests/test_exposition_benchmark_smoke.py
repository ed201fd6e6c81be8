"""The exposition benchmark still runs: ``benchmarks/exposition.py --quick`` completes and fills its table.

No timing is asserted; the figures are benchmarks/README.md's business.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "exposition.py"
ROWS = (
    "text, plain",
    "text, gzip",
    "OpenMetrics, plain",
    "OpenMetrics, gzip",
    "name[]=ccs_up & ccs_job_last_run_status, text, plain",
    "name[]=ccs_up & ccs_job_last_run_status, OpenMetrics, gzip",
    "name[]=ccs_up, OpenMetrics, gzip",
)


class TestExpositionBenchmark:
    """The quick mode of the exposition benchmark, run as a user would."""

    def test_quick_run_fills_every_row(self) -> None:
        """A --quick run exits 0, reports no scrape errors, and measures every variant in both modes."""
        result = subprocess.run(
            [sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, timeout=300, check=False
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert ", 0 errors;" in result.stdout
        assert "1,400 fewer (7.00 per job)" in result.stdout  # 200 jobs, sparse status
        table = {
            cells[0]: cells[1:]
            for line in result.stdout.splitlines()
            if line.startswith("| ")
            for cells in [[cell.strip() for cell in line.strip("|").split("|")]]
        }
        for row in ROWS:
            assert row in table, f"row missing: {row}\n{result.stdout}"
            assert "n/a" not in table[row] and "" not in table[row], f"row not measured: {row}"
