"""The memory profile still runs: ``benchmarks/memory_profile.py`` at a few jobs prints every figure.

No size is asserted beyond sense (Python objects, machines vary); the figures are benchmarks/README.md's
business. Checked: every section is there, each size is a number, the exposition holds gzip members and
only headers plain (the job samples are held compressed), and the cycle where every job changed peaked above
the state at rest, higher than what it held when it ended.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "memory_profile.py"
MIB = r"(-?\d+(?:\.\d)?) MiB"


def _mib(stdout: str, label: str) -> float:
    match = re.search(re.escape(label) + r"[^\n]*?" + MIB, stdout)
    assert match, (label, stdout)
    return float(match[1])


class TestMemoryProfile:
    def test_small_run_prints_every_section(self, tmp_path: Path) -> None:
        """50 jobs, one cycle at rest: held memory, peaks, the listing, the exposition by kind, and the
        cycle where every job changed, with where each holding was allocated."""
        done = subprocess.run(
            [sys.executable, str(SCRIPT), "--jobs", "50", "--rest-cycles", "1", "--top", "5"],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin", "TZ": "UTC", "NO_PROXY": "127.0.0.1"},
            check=False,
        )
        assert done.returncode == 0, done.stderr
        out = done.stdout
        assert _mib(out, "held between cycles") > 0
        assert 10 < _mib(out, "process RSS now") < 2048
        assert _mib(out, "a listing held while the cycle runs") >= 0
        assert "(50 items," in out
        found = re.findall(r"^    (text gzip|openmetrics gzip|text|openmetrics): ([\d,]+) KiB$", out, re.M)
        kinds = {kind: int(size.replace(",", "")) for kind, size in found}
        assert set(kinds) == {"text", "openmetrics", "text gzip", "openmetrics gzip"}
        assert kinds["text"] < kinds["text gzip"]  # headers only held plain: the samples are gzip members
        changed = out.split("the cycle where every job changed", 1)[1]
        peak = _mib(changed, "peak added during the cycle")
        assert peak > 0 and _mib(changed, "held when it ends, before its publish") <= peak
        assert re.search(r"^ +-?\d+\.\d\d MiB +[\d,-]+ blocks +\S+:\d+$", changed, re.M), changed
        later = r"two cycles later, at rest: -?\d+\.\d MiB more than before it; RSS \d+ MiB"
        assert re.search(later, changed), changed
