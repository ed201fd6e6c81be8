"""`audit verify --witness` against a real Prometheus holding 20 days of scraped audit heads.

The history is written with `promtool tsdb create-blocks-from openmetrics` (a scrape a minute, the head
moving through the log's 60 records), then a Prometheus on 127.0.0.1 serves it from a temp dir. A second
exporter's log (other values) is in the same Prometheus, as in a real deployment.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from audit_forger import edit_reason, forge
from local_prometheus import free_port, running_prometheus

from ccs_exporter.audit import AuditLog, verify
from ccs_exporter.audit.witness import check_witness
from ccs_exporter.client.prometheus import PrometheusApi

pytestmark = pytest.mark.e2e

RECORDS = 60
DAYS = 20
SCRAPE_SECONDS = 60
SCRAPES = DAYS * 86400 // SCRAPE_SECONDS
OURS = 'instance="ccs:9879"'
witness_module = importlib.import_module("ccs_exporter.audit.witness")


@dataclass(frozen=True)
class History:
    """The Prometheus URL, the pristine log, and when the head first showed each sequence."""

    url: str
    log: Path
    first_seen: dict[int, float]


def _observation(number: int) -> dict[str, object]:
    return {
        "event": {"kind": "state", "action": "job.changed", "outcome": "success"},
        "audit": {"id": f"obs-{number}", "phase": "observation", "origin": "observed"},
    }


def _openmetrics(hashes: list[int], scrape_times: list[float]) -> tuple[str, dict[int, float]]:
    """Our exporter's head history and another exporter's, as OpenMetrics text."""
    first_seen: dict[int, float] = {}
    ours_seq, ours_hash, other_seq, other_hash = [], [], [], []
    for index, moment in enumerate(scrape_times):
        sequence = min(RECORDS, index * (RECORDS + 1) // len(scrape_times))
        first_seen.setdefault(sequence, moment)
        value = hash48_of(hashes, sequence)
        ours_seq.append(f'ccs_audit_head_sequence{{{OURS},job="ccs-exporter"}} {sequence} {moment:.0f}')
        ours_hash.append(f'ccs_audit_head_hash48{{{OURS},job="ccs-exporter"}} {value} {moment:.0f}')
        other = index // 2000 + 1
        labels = 'instance="other:9879",job="ccs-exporter"'
        other_seq.append(f"ccs_audit_head_sequence{{{labels}}} {other} {moment:.0f}")
        other_hash.append(f"ccs_audit_head_hash48{{{labels}}} {other * 7919} {moment:.0f}")
    text = "\n".join(
        [
            "# TYPE ccs_audit_head_sequence gauge",
            *ours_seq,
            *other_seq,
            "# TYPE ccs_audit_head_hash48 gauge",
            *ours_hash,
            *other_hash,
            "# EOF",
            "",
        ]
    )
    return text, first_seen


def hash48_of(hashes: list[int], sequence: int) -> int:
    return 0 if sequence == 0 else hashes[sequence - 1]


@pytest.fixture(scope="module")
def history(
    require_tool: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[History]:
    """A 60-record log and a Prometheus holding 20 days of its scraped heads (one a minute)."""
    promtool, prometheus = require_tool("promtool"), require_tool("prometheus")
    work = tmp_path_factory.mktemp("witness")
    log = work / "audit.log"
    audit_log = AuditLog(log, user_name="CCS\\demo", fsync=False)
    for number in range(RECORDS):
        audit_log.append(_observation(number))
    hashes = list(verify(log).hash48s)
    last = (time.time() // SCRAPE_SECONDS) * SCRAPE_SECONDS - 3600
    times = [last - (SCRAPES - 1 - index) * SCRAPE_SECONDS for index in range(SCRAPES)]
    text, first_seen = _openmetrics(hashes, times)
    source = work / "history.om"
    source.write_text(text, encoding="utf-8")
    (work / "data").mkdir()
    backfill = subprocess.run(
        [
            promtool,
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            "--max-block-duration=24h",
            str(source),
            "data",
        ],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert backfill.returncode == 0, backfill.stdout + backfill.stderr
    config = {"global": {"scrape_interval": "1m"}, "scrape_configs": []}
    with running_prometheus(prometheus, work, config, "--storage.tsdb.retention.time=60d") as url:
        yield History(url, log, first_seen)


@pytest.fixture
def log_copy(history: History, tmp_path: Path) -> Path:
    """A copy of the pristine log and its head, to tamper with."""
    copy = tmp_path / "audit.log"
    shutil.copy(history.log, copy)
    shutil.copy(f"{history.log}.head", f"{copy}.head")
    return copy


def run_verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ccs_exporter", "audit", "verify", *args],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


class TestWitnessAgrees:
    @pytest.mark.integration
    def test_intact_log_agrees_with_every_scrape(self, history: History, log_copy: Path) -> None:
        """Every one of the 28,800 scrapes over 20 days is read back, paired and found in the log."""
        done = run_verify(str(log_copy), "--witness", history.url, "--witness-selector", OURS)
        assert done.returncode == 0, done.stderr
        assert f"intact ({RECORDS} records)" in done.stdout
        assert f"witnessed by {history.url}: {SCRAPES} scrapes from " in done.stdout
        assert f"agree, up to sequence {RECORDS}" in done.stdout
        assert done.stderr == ""

    @pytest.mark.integration
    def test_small_queries_read_the_same_samples(
        self, history: History, log_copy: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With a small per-query budget the windows are split into more queries, and no scrape is lost."""
        # A 2-hour window holds 120 scrapes, 240 samples with both gauges: five queries each.
        monkeypatch.setattr(witness_module, "MAX_SAMPLES_PER_QUERY", 50)
        api = CountingApi(history.url)
        end = time.time()
        report = check_witness(verify(log_copy), api, OURS, end - 30 * 86400, end)
        assert (report.ok, report.scrapes, report.unpaired) == (True, SCRAPES, 0)
        assert api.queries >= 5 * DAYS * 12
        print(f"\nwitness: {report.scrapes} scrapes read in {api.queries} queries and 1 range query")

    @pytest.mark.integration
    def test_a_selector_matching_two_logs_fails_with_a_hint(self, history: History, log_copy: Path) -> None:
        """Without a selector the other exporter's heads disagree, and the output says to narrow it."""
        done = run_verify(str(log_copy), "--witness", history.url)
        assert done.returncode == 1
        assert "matched 2 series" in done.stderr and "--witness-selector" in done.stderr
        assert 'in {instance="other:9879",job="ccs-exporter"}' in done.stderr


@pytest.mark.integration
class TestWitnessCatchesForgery:
    def test_rewritten_log_verifies_alone_but_not_against_the_witness(
        self, history: History, log_copy: Path
    ) -> None:
        """A record edited with the chain and head recomputed: plain verify says intact, the witness fails."""
        forge(log_copy, edit_reason(10, "approved after all"))
        plain = run_verify(str(log_copy))
        assert plain.returncode == 0 and "intact (60 records)" in plain.stdout
        done = run_verify(str(log_copy), "--witness", history.url, "--witness-selector", OURS)
        assert done.returncode == 1
        lines = done.stderr.splitlines()
        first = next(line for line in lines if "line 10:" in line)
        seen = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(history.first_seen[10]))
        assert (
            f"Prometheus saw sequence 10 with hash {hash48_of(list(verify(history.log).hash48s), 10):012x}"
            in first
        )
        assert f"at {seen}" in first and "the log was rewritten" in first
        # Every later record's hash changed with the chain: each witnessed one is reported.
        assert sum("the log was rewritten" in line for line in lines) == RECORDS - 9
        assert "line 9:" not in done.stderr

    def test_truncated_log_fails_against_the_witness(self, history: History, log_copy: Path) -> None:
        """The last records cut off, head rewritten to match: the witness saw them, so it is reported."""
        forge(log_copy, lambda records: records[:50])
        assert run_verify(str(log_copy)).returncode == 0
        done = run_verify(str(log_copy), "--witness", history.url, "--witness-selector", OURS)
        assert done.returncode == 1
        assert "line 51: Prometheus saw sequence 51" in done.stderr
        assert "but the log ends at sequence 50: records were removed from the end" in done.stderr
        assert sum("removed from the end" in line for line in done.stderr.splitlines()) == 10

    def test_time_range_limits_what_is_checked(self, history: History, log_copy: Path) -> None:
        """With --witness-end before record 10 was first scraped, the rewrite of record 10 is not seen."""
        forge(log_copy, edit_reason(10, "approved after all"))
        before = history.first_seen[10] - 1
        done = run_verify(
            str(log_copy),
            "--witness",
            history.url,
            "--witness-selector",
            OURS,
            "--witness-end",
            f"{before:.0f}",
        )
        assert done.returncode == 0, done.stderr
        assert "agree, up to sequence 9" in done.stdout
        assert "records after it were not scraped" in done.stdout


@pytest.mark.integration
class TestWitnessErrors:
    def test_unreachable_prometheus_exits_3_in_one_line(self, log_copy: Path) -> None:
        """Nothing listening: exit 3, one line, the file's own verdict not hidden."""
        url = f"http://127.0.0.1:{free_port()}"
        done = run_verify(str(log_copy), "--witness", url)
        assert done.returncode == 3
        assert done.stderr.count("\n") == 1 and "cannot connect (connection refused)" in done.stderr
        assert "Traceback" not in done.stderr

    def test_problems_in_the_file_win_over_a_witness_error(self, log_copy: Path) -> None:
        """A file with problems exits 1 even when the witness cannot be asked; both are said."""
        Path(f"{log_copy}.head").unlink()
        done = run_verify(str(log_copy), "--witness", f"http://127.0.0.1:{free_port()}")
        assert done.returncode == 1
        assert ".head is missing" in done.stderr and "not checked against the witness" in done.stderr

    def test_selector_matching_nothing_exits_3(self, history: History, log_copy: Path) -> None:
        """A selector no series matches is not taken for agreement."""
        done = run_verify(str(log_copy), "--witness", history.url, "--witness-selector", 'instance="nope"')
        assert done.returncode == 3
        assert "has no ccs_audit_head_* samples" in done.stderr

    def test_malformed_selector_exits_3_with_prometheus_reason(
        self, history: History, log_copy: Path
    ) -> None:
        """Prometheus' own complaint about the selector is shown on one line."""
        done = run_verify(str(log_copy), "--witness", history.url, "--witness-selector", 'instance="x')
        assert done.returncode == 3
        assert "bad_data" in done.stderr and len(done.stderr.strip().splitlines()) == 1

    def test_something_else_than_prometheus_exits_3(self, log_copy: Path, simulator: Any) -> None:
        """A server that is not Prometheus (here the CCS simulator) is named as such."""
        done = run_verify(str(log_copy), "--witness", simulator.url)
        assert done.returncode == 3
        assert "not an answer of the Prometheus API" in done.stderr

    @pytest.mark.parametrize(
        ("url", "words"),
        [
            ("http://user:secret-pw@127.0.0.1:9090", "must not hold a user name or password"),
            ("ftp://127.0.0.1:9090", "must be http:// or https://"),
        ],
    )
    def test_unusable_url_exits_2(self, log_copy: Path, url: str, words: str) -> None:
        """A URL that cannot be used is a usage error, and a password in it is never echoed."""
        done = run_verify(str(log_copy), "--witness", url)
        assert done.returncode == 2
        assert words in done.stderr and "secret-pw" not in done.stderr + done.stdout


class CountingApi(PrometheusApi):
    """The real client, counting the instant queries it sends."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.queries = 0

    def query(self, expr: str, at: float) -> Any:
        self.queries += 1
        return super().query(expr, at)
