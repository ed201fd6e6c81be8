"""The HTTP flood benchmark still runs: ``benchmarks/web_floods.py --quick`` completes and prints every row
(the memory attacks' too).

No timing is asserted (machines vary); the figures are benchmarks/README.md's business. The thread
count is not a timing: 100 idle connections must not add threads to the exporter.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "web_floods.py"
ROWS = (
    "at rest",
    "100 idle connections",
    "100 slowloris connections (a header byte per second)",
    "wrong-password flood, 8 clients from 127.0.0.1",
    "wrong-password flood, 8 clients from 8 addresses",
    "partial-handshake flood, TLS: 100 connections x 2 rounds",
    "partial-handshake flood, plain HTTP: 100 connections x 2 rounds",
    "5 slow readers (64 KiB every 1 s), 200 jobs, 2 s cycles",
)


class TestWebFloodsScript:
    """The quick mode of the flood benchmark, run as a user would."""

    def test_quick_run_prints_every_attack(self) -> None:
        """A --quick run exits 0, prints a row per attack, and the idle connections added no thread."""
        result = subprocess.run(
            [sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, timeout=300, check=False
        )
        assert result.returncode == 0, result.stderr[-3000:]
        table = {
            cells[0]: cells[1:]
            for line in result.stdout.splitlines()
            if line.startswith("| ")
            for cells in [[cell.strip() for cell in line.strip("|").split("|")]]
        }
        for row in ROWS:
            assert row in table, f"row missing: {row}\n{result.stdout}"
        assert int(table["100 idle connections"][0]) <= int(table["at rest"][0]) + 1
        assert "cores" in table["wrong-password flood, 8 clients from 127.0.0.1"][2]
        tls_flood = table["partial-handshake flood, TLS: 100 connections x 2 rounds"]
        assert all(float(rss) > 0 for rss in tls_flood[:3]) and "200 connections opened" in tls_flood[3]
