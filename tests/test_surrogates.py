"""Tests of text that is not valid Unicode (lone UTF-16 surrogates) in records, specs and CCS answers."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr
from test_jobs import CREATE_SPEC, PASSWORD, read_records, run_cli

from ccs_exporter.audit import AuditLog, canonical_json, record_hash, verify
from ccs_exporter.client import CcsClient
from ccs_exporter.errors import ConfigError
from ccs_exporter.operations.service import JobService
from ccs_exporter.simulator import Simulator

LONE = "\udcff"  # what a .NET server sends as JSON "\udcff"


def raw_lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


class TestRecords:
    def test_a_lone_surrogate_is_kept_as_its_json_escape(self, tmp_path: Path) -> None:
        """A lone surrogate is written as valid UTF-8 with the \\udcff escape, and the log verifies."""
        path = tmp_path / "audit.log"
        audit_log = AuditLog(path, user_name="CCS\\demo")
        audit_log.append(
            {
                "event": {"kind": "state", "action": "job.changed", "outcome": "success"},
                "audit": {"id": "x", "phase": "observation", "origin": "observed"},
                "ccs": {"job": {"name": f"bad{LONE}name", f"key{LONE}": "value"}},
            }
        )
        (line,) = raw_lines(path)
        text = line.decode("utf-8")  # strict: the line is valid UTF-8
        assert "bad\\udcffname" in text
        record = json.loads(text)
        assert record["ccs"]["job"]["name"] == f"bad{LONE}name"  # reads back as what CCS sent
        assert verify(path).ok

    def test_hash_is_the_same_before_and_after_reading_back(self) -> None:
        """The hash of a record with lone surrogates and a split surrogate pair equals that of its line."""
        record = {"a": f"x{LONE}", "b": "\ud83d\ude00", "c": "\\" + LONE, "audit": {}}
        line = canonical_json(record)
        line.encode("utf-8")
        assert canonical_json(json.loads(line)) == line
        assert record_hash(json.loads(line)) == record_hash(record)

    def test_plain_text_is_written_as_before(self) -> None:
        """Records without surrogates are the plain UTF-8 canonical JSON they always were."""
        record = {"name": "Évaluation \u2013 \U0001f600", "n": 1}
        assert canonical_json(record) == json.dumps(
            record, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )


@pytest.mark.integration
class TestCcsData:
    """CCS text with a lone surrogate never crashes the result of a mutation that was already sent."""

    def test_update_of_a_job_whose_name_holds_one_is_recorded(self, tmp_path: Path) -> None:
        """The job read before and after holds "\\udcff": the update exits 0 and the log verifies."""
        log_path = tmp_path / "audit.log"
        details = tmp_path / "details.json"
        details.write_text(json.dumps({"JobDescription": "plain text"}), encoding="utf-8")
        with Simulator(port=0, password=PASSWORD) as sim:
            job_id = sim.job_ids[0]
            sim.set_job_name(job_id, f"Nightly {LONE} scan")
            done = run_cli(["jobs", "update", job_id, "-f", str(details)], sim, log_path)
            printed = run_cli(["jobs", "get", job_id], sim, None)
        assert done.returncode == 0, done.stderr
        result = read_records(log_path)[-1]
        assert result["event"]["outcome"] == "success"
        assert result["ccs"]["job"]["name"] == f"Nightly {LONE} scan"
        assert "Nightly \\udcff scan" in log_path.read_text(encoding="utf-8")
        assert verify(log_path).ok
        assert printed.returncode == 0, printed.stderr
        assert json.loads(printed.stdout)["JobProperties"]["Name"] == f"Nightly {LONE} scan"

    def test_run_answered_with_one_prints_it_escaped(self, tmp_path: Path) -> None:
        """A run of such a job prints its name with the JSON escape and records it."""
        log_path = tmp_path / "audit.log"
        with Simulator(port=0, password=PASSWORD) as sim:
            job_id = next(
                j for j in sim.job_ids if sim.job_snapshot(j)["JobProperties"]["LastRunStatus"] not in (1, 2)
            )
            sim.set_job_name(job_id, f"{LONE}")
            done = run_cli(["jobs", "run", job_id], sim, log_path)
        assert done.returncode == 0, done.stderr
        assert '"JobName": "\\udcff"' in done.stdout
        assert verify(log_path).ok


class TestInput:
    @pytest.mark.integration
    @pytest.mark.parametrize("suffix", [".json", ".yaml"])
    def test_a_spec_holding_one_exits_2_naming_the_field(self, tmp_path: Path, suffix: str) -> None:
        """A spec with "\\udcff" in a value exits 2 on one line naming the field; nothing sent or recorded."""
        log_path = tmp_path / "audit.log"
        spec = tmp_path / f"details{suffix}"
        spec.write_text('{"JobDescription": "bad \\udcff text"}', encoding="utf-8")
        with Simulator(port=0, password=PASSWORD) as sim:
            done = run_cli(["jobs", "update", sim.job_ids[0], "-f", str(spec)], sim, log_path)
            assert sim.request_count() == 0
        assert done.returncode == 2
        (line,) = done.stderr.strip().splitlines()
        assert "JobDetails.JobDescription: holds a lone UTF-16 surrogate" in line
        assert not log_path.exists()

    def test_a_create_spec_with_one_in_a_list_names_its_place(self) -> None:
        """The error names where the bad text is, inside lists too."""
        spec = copy.deepcopy(CREATE_SPEC)
        spec["JobDetails"]["Standards"] = ["6b020d29-5fe8-47d0-bd89-ccd3339a5ebe", f"x{LONE}"]
        service = JobService(
            CcsClient("http://127.0.0.1:9", "CCS\\demo", SecretStr("x")), AuditLog("/nonexistent/a", "x")
        )
        with pytest.raises(ConfigError, match=r"JobDetails\.Standards\[1\]: holds a lone UTF-16 surrogate"):
            service.create(spec)

    @pytest.mark.integration
    def test_a_reason_that_is_not_utf8_exits_2(self, tmp_path: Path) -> None:
        """--reason with bytes that are not UTF-8 (argv gives them as surrogates) exits 2; nothing sent."""
        log_path = tmp_path / "audit.log"
        with Simulator(port=0, password=PASSWORD) as sim:
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "ccs_exporter",
                    "jobs",
                    "delete",
                    sim.job_ids[0],
                    "--reason",
                    b"CHG-\xff",
                ],
                env=cli_environment(sim, log_path),
                capture_output=True,
                check=False,
            )
            assert sim.request_count() == 0
        assert done.returncode == 2
        assert b"reason: holds bytes that are not UTF-8" in done.stderr
        assert not log_path.exists()


def cli_environment(sim: Simulator, log_path: Path) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("CCS_EXPORTER_")}
    environment.update(
        {
            "CCS_EXPORTER_URL": sim.url,
            "CCS_EXPORTER_USERNAME": sim.username,
            "CCS_EXPORTER_PASSWORD": PASSWORD,
            "CCS_EXPORTER_AUDIT_LOG": str(log_path),
            "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
        }
    )
    return environment
