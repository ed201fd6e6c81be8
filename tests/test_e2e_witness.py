"""End to end: Prometheus witnesses an audit log that the CLI appends to, and catches a forged rewrite.

Simulator, `ccs-exporter serve --audit-log` and a Prometheus with our rules (scraping and evaluating every
second) run on 127.0.0.1 in temp dirs and are stopped by their own PIDs. `jobs update` appends to the log
from other processes; then the log is rewritten as an attacker would (an edited record, the chain and
head recomputed), which plain `audit verify` calls intact and `audit verify --witness` does not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from audit_forger import edit_reason, forge, read_records
from local_prometheus import api, free_port, http_get, running_prometheus, stop, wait_until

from ccs_exporter.simulator import Simulator

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

REPO_ROOT = Path(__file__).resolve().parent.parent
RULES_FILE = REPO_ROOT / "prometheus" / "ccs-exporter.rules.yml"
BOUND_SECONDS = 60.0


@dataclass(frozen=True)
class Stack:
    """The simulator, the audit log the exporter serves the head of, and Prometheus' URL."""

    simulator: Simulator
    log: Path
    prometheus_url: str

    def head_sequence(self) -> float | None:
        result = api(self.prometheus_url, "/api/v1/query", query="ccs_audit_head_sequence")["result"]
        return float(result[0]["value"][1]) if result else None

    def firing(self, alertname: str) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = api(self.prometheus_url, "/api/v1/alerts")["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == alertname and a["state"] == "firing"]


def _environment(simulator: Simulator, log: Path) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("CCS_EXPORTER_")}
    environment.update(
        {
            "CCS_EXPORTER_URL": simulator.url,
            "CCS_EXPORTER_USERNAME": simulator.username,
            "CCS_EXPORTER_PASSWORD": simulator.password,
            "CCS_EXPORTER_AUDIT_LOG": str(log),
            "CCS_EXPORTER_LOG_LEVEL": "warning",
            "PYTHONPATH": str(REPO_ROOT),
        }
    )
    return environment


def _cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ccs_exporter", *args],
        env=_environment(stack.simulator, stack.log),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def stack(require_tool: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Simulator, exporter serving an audit log's head, and Prometheus with our rules, on 127.0.0.1."""
    prometheus = require_tool("prometheus")
    work = tmp_path_factory.mktemp("e2e-witness")
    log = work / "audit.jsonl"
    with Simulator(port=0, run_interval=None) as simulator:
        port = free_port()
        exporter = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ccs_exporter",
                "serve",
                "--job-ids",
                ",".join(simulator.job_ids[:2]),
                "--listen-address",
                f"127.0.0.1:{port}",
                "--poll-interval",
                "1",
            ],
            env=_environment(simulator, log),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_until(
                "exporter /readyz",
                lambda: http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200,
                BOUND_SECONDS,
                exporter,
            )
            config = {
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(RULES_FILE)],
                "scrape_configs": [
                    {"job_name": "ccs-exporter", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
                ],
            }
            with running_prometheus(prometheus, work, config) as url:
                yield Stack(simulator, log, url)
        finally:
            stop(exporter)


def _wait(what: str, check: Callable[[], bool]) -> float:
    started = time.monotonic()
    while time.monotonic() - started < BOUND_SECONDS:
        if check():
            return time.monotonic() - started
        time.sleep(0.25)
    pytest.fail(f"{what}: not within {BOUND_SECONDS:.0f} s")


class TestPrometheusAsWitness:
    def test_forged_rewrite_is_caught_by_the_witness_and_the_alert(
        self, stack: Stack, tmp_path: Path
    ) -> None:
        """CLI changes are witnessed; a forged rewrite passes plain verify, not --witness; the alert fires."""
        job_id = stack.simulator.job_ids[0]
        for number in range(3):
            spec = tmp_path / f"update-{number}.json"
            spec.write_text(json.dumps({"JobDescription": f"change {number}"}), encoding="utf-8")
            done = _cli(stack, "jobs", "update", job_id, "-f", str(spec), "--reason", f"CHG-{number}")
            assert done.returncode == 0, done.stderr
            # Each change's head is scraped before the next one (a loaded machine can delay scrapes).
            records = len(read_records(stack.log))
            waited = _wait("Prometheus scrapes the new head", lambda n=records: stack.head_sequence() == n)
            print(f"\nhead sequence {records} scraped {waited:.1f} s after the CLI change")
        assert records >= 6
        time.sleep(2)  # a few more scrapes of the same head

        honest = _cli(stack, "audit", "verify", str(stack.log), "--witness", stack.prometheus_url)
        assert honest.returncode == 0, honest.stderr
        assert f"agree, up to sequence {records}" in honest.stdout
        assert not stack.firing("CcsAuditLogRewritten")

        # The attacker: CHG-0's result says something else, chain and head recomputed.
        forge(stack.log, edit_reason(2, "emergency change, approved verbally"))
        forged_at = time.monotonic()
        plain = _cli(stack, "audit", "verify", str(stack.log))
        assert plain.returncode == 0 and f"intact ({records} records)" in plain.stdout

        caught = _cli(stack, "audit", "verify", str(stack.log), "--witness", stack.prometheus_url)
        assert caught.returncode == 1
        assert "line 2: Prometheus saw sequence 2 with hash" in caught.stderr
        assert "the log was rewritten" in caught.stderr
        assert f"line {records}: Prometheus saw sequence {records}" in caught.stderr

        _wait("CcsAuditLogRewritten fires", lambda: bool(stack.firing("CcsAuditLogRewritten")))
        print(f"CcsAuditLogRewritten firing {time.monotonic() - forged_at:.1f} s after the rewrite (or less)")
        (alert,) = stack.firing("CcsAuditLogRewritten")
        assert alert["labels"]["severity"] == "critical"
        assert alert["annotations"]["runbook_url"].endswith("docs/runbooks.md#ccsauditlogrewritten")
