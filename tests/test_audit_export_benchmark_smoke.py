"""The audit export benchmark still runs: ``benchmarks/audit_export.py --quick`` prints every row.

No timing is asserted (machines vary); the figures are benchmarks/README.md's business.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "audit_export.py"
ROWS = (
    "map only, ocsf: records/s",
    "map only, ecs: records/s",
    "ship to stdout, ocsf: records/s",
    "ship to syslog over TLS (RFC 5425), ocsf: records/s",
    "ship to HEC stand-in (with indexer acks), ocsf: records/s",
    "follow, append -> HEC ack, poll 0.2 s: p50 / p95 / max ms",
)


@pytest.mark.integration
def test_quick_run_prints_every_figure_and_delivers_every_record() -> None:
    """Every row is printed with a number, and every destination received all 300 records."""
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    lines = {line[:58].strip(): line[58:].strip() for line in done.stdout.splitlines()}
    for row in ROWS:
        assert row in lines and lines[row][:1].isdigit(), (row, done.stdout)
    assert lines["ship to syslog over TLS (RFC 5425), ocsf: records/s"].endswith("(300 received)")
    assert lines["ship to HEC stand-in (with indexer acks), ocsf: records/s"].endswith("(300 received)")
