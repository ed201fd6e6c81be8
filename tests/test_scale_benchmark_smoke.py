"""The scale benchmark still runs: ``benchmarks/scale.py --quick`` completes and reports every figure.

No timing is asserted (CI machines vary); the figures are benchmarks/README.md's business. What is
checked is that each figure was measured and makes sense: memory within what a process can hold, one
listing's requests per cycle at rest, every job's runs read in the cycle after every job changed, a
latency for each format, encoding and phase with p50 not above p99, only the encodings the back-to-back
scraper was told to ask for, with --pin the exporter alone on its CPU, with --audit every job created or
deleted elsewhere recorded.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "scale.py"
PHASES = ("cold start", "at rest", "every job changed")
VARIANTS = ("text, plain", "text, gzip", "OpenMetrics, plain", "OpenMetrics, gzip")
GZIP_VARIANTS = ("text, gzip", "OpenMetrics, gzip")
PLACEMENT = re.compile(
    r"^- CPUs: pinned \(exporter (\d+), simulator (\d+), this process (\d+), stress scraper (\d+)\)$", re.M
)
TWO_CPUS = len(os.sched_getaffinity(0)) >= 2 if hasattr(os, "sched_getaffinity") else False


def _table(stdout: str) -> dict[str, str]:
    return {
        cells[0]: cells[1]
        for line in stdout.splitlines()
        if line.startswith("| ")
        for cells in [[cell.strip() for cell in line.strip("|").split("|")]]
    }


def _check_placement(stdout: str, *, pinned: bool) -> None:
    """Pinned: the exporter alone on its CPU, the simulator and the scrapers together on another."""
    placement = PLACEMENT.search(stdout)
    if pinned:
        assert placement, stdout
        assert placement[1] != placement[2] == placement[3] == placement[4]
    else:
        assert placement is None and "- CPUs: not pinned (" in stdout


def _check_audit(stdout: str, table: dict[str, str], *, audited: bool) -> None:
    """Audited: the 5 jobs created and the 5 deleted elsewhere (50 jobs) each recorded, nothing failed."""
    if not audited:
        assert "; audit log off" in stdout
        assert not [label for label in table if label.startswith("audit")]
        return
    assert "; audit log on (observed changes recorded)" in stdout
    assert table["audit: jobs created / deleted elsewhere, recorded as observed"] == "5 / 5 of 5 each"
    records, size, errors = table["audit log at the end: records / KiB / write errors"].split(" / ")
    assert int(records) >= 10 and int(size) > 0 and errors == "0"
    low, _, high = table["RSS changed elsewhere (audit): min / median / max MiB"].split(" / ")
    assert 0 < int(low) <= int(high)


class TestScaleBenchmark:
    """The quick mode of the scale benchmark, run as a user would."""

    @pytest.mark.parametrize(
        ("options", "pattern", "stressed"),
        [
            pytest.param([], "stress plain+gzip", VARIANTS, id="plain-and-gzip"),
            pytest.param(
                ["--stress-gzip-only", "--audit"], "stress gzip only", GZIP_VARIANTS, id="gzip-only-audit"
            ),
            pytest.param(
                ["--pin"],
                "stress plain+gzip",
                VARIANTS,
                id="pinned",
                marks=pytest.mark.skipif(not TWO_CPUS, reason="--pin needs 2 CPUs"),
            ),
        ],
    )
    def test_quick_run_reports_every_figure(
        self, tmp_path: Path, options: list[str], pattern: str, stressed: tuple[str, ...]
    ) -> None:
        """A --quick run exits 0 and reports discovery, memory, CPU, requests and every latency, all sane."""
        result = subprocess.run(
            [sys.executable, str(SCRIPT), "--quick", *options],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"- scrape pattern: {pattern}: " in result.stdout
        _check_placement(result.stdout, pinned="--pin" in options)
        table = _table(result.stdout)
        _check_audit(result.stdout, table, audited="--audit" in options)
        assert 0 < float(table["discovery: start to first published cycle, s"]) < 120
        assert "(50 jobs)" in table["first cycle: wall s / requests"]
        peak = int(table["RSS peak (VmHWM), MiB"])
        assert 10 < peak < 1024
        for phase in ("cold start", "at rest", "every job changed", "soak"):
            low, middle, high = (int(v) for v in table[f"RSS {phase}: min / median / max MiB"].split(" / "))
            # The kernel raises VmHWM at some points only (not when madvise gives pages back), so a
            # VmRSS sample taken in between may pass it by a little.
            assert 0 < low <= middle <= high <= peak + 2
        assert re.match(
            r"^[+-]\d+\.\d over \d+ cycles",
            table["RSS soak growth per cycle, KiB (after a quarter of warm-up)"],
        )
        cpu = float(table["at rest: CPU s per cycle per 1,000 jobs (no scraping)"].split()[0])
        # /proc counts CPU in clock ticks (10 ms): four cycles of 50 jobs at rest may take less than one.
        assert 0 <= cpu < 10
        # 50 jobs: one page and the empty page that ends the listing, no request of any job.
        assert set(table["at rest: requests per cycle"].split(" / ")) == {"2"}
        changed = table["every job changed: the cycle's wall s / requests / runs read / CPU s"].split(" / ")
        assert changed[2] == "50"  # every job's runs read again
        for phase in PHASES:
            for variant in stressed:
                cell = table[f"/metrics {phase}, {variant} (back to back): p50 / p99 ms"]
                match = re.match(r"^(\d+\.\d) / (\d+\.\d) \(n=(\d+)\)$", cell)
                assert match, f"{phase}, {variant}: {cell}"
                p50, p99, count = float(match[1]), float(match[2]), int(match[3])
                assert 0 < p50 <= p99 and count > 0
        back_to_back = {label for label in table if label.endswith("(back to back): p50 / p99 ms")}
        assert len(back_to_back) == len(PHASES) * len(stressed)
        assert table["scrapes after the first cycle: all / failed"].endswith(" / 0")
        assert "RSS by minute (max, MiB): " in result.stdout
