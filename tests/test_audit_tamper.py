"""Appends never vouch for tampering (issue 23, findings 10 and 15).

``audit reconcile`` appended a signed ``success`` result to an unsigned, forged intent (it checked the
chain, not the signatures); the writer chained onto a last record whose fields were edited (the next
record's hash and signature would then cover the edit); a failed mutation printed a structured warning
as well as its one-line error.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from test_jobs import PASSWORD, read_records, run_cli

from ccs_exporter.audit import AuditLog, intent_record, verify
from ccs_exporter.audit.reconcile import reconcile
from ccs_exporter.audit.signing import RecordSigner, generate_key_files
from ccs_exporter.client import CcsClient
from ccs_exporter.errors import AuditError
from ccs_exporter.simulator import Simulator


@pytest.fixture
def sim(started: Callable[..., Simulator]) -> Simulator:
    started_simulator: Simulator = started(run_interval=None, password=PASSWORD)
    return started_simulator


@pytest.fixture
def signer(tmp_path: Path) -> RecordSigner:
    key = tmp_path / "audit.key"
    generate_key_files(key)
    return RecordSigner.from_file(key)


def forged_intent(log_path: Path, job_id: str) -> None:
    """An intent appended by someone without the key: chained correctly, but unsigned."""
    forger = AuditLog(log_path, user_name="CCS\\demo", host_name="crashed-host")
    forger.intent(intent_record("job.delete", method="DELETE", url_path="/ccs/api/v1/Jobs", job_id=job_id))


class TestReconcileChecksSignatures:
    @pytest.mark.integration
    def test_unsigned_forged_intent_gets_no_signed_result(
        self, sim: Simulator, tmp_path: Path, signer: RecordSigner
    ) -> None:
        """With a signing key, an unsigned intent after signed records stays open; nothing is appended."""
        log_path = tmp_path / "audit.log"
        signed = AuditLog(log_path, user_name="CCS\\demo", signer=signer, host_name="crashed-host")
        signed.append(
            {
                "event": {"kind": "state", "action": "job.changed", "outcome": "success"},
                "audit": {"id": "first", "phase": "observation", "origin": "observed"},
            }
        )
        forged_intent(log_path, sim.job_ids[0])
        before = read_records(log_path)
        with CcsClient(sim.url, sim.username, SecretStr(PASSWORD), timeout=5) as client:
            steps = list(reconcile(signed, client, checked_by="x", min_age=timedelta(0)))
        assert len(steps) == 1 and not steps[0].written
        assert steps[0].problem is not None and "unsigned" in steps[0].problem
        assert read_records(log_path) == before
        assert sim.request_count("job") == 0  # CCS is not even asked about a forged intent

    @pytest.mark.integration
    def test_intent_signed_with_another_key_is_refused(
        self, sim: Simulator, tmp_path: Path, signer: RecordSigner
    ) -> None:
        """An intent signed by a key other than the configured one stays open too."""
        other_key = tmp_path / "other.key"
        generate_key_files(other_key)
        log_path = tmp_path / "audit.log"
        other = AuditLog(
            log_path, user_name="CCS\\demo", signer=RecordSigner.from_file(other_key), host_name="h"
        )
        other.intent(intent_record("job.delete", method="DELETE", url_path="/x", job_id=sim.job_ids[0]))
        signed = AuditLog(log_path, user_name="CCS\\demo", signer=signer)
        with CcsClient(sim.url, sim.username, SecretStr(PASSWORD), timeout=5) as client:
            steps = list(reconcile(signed, client, checked_by="x", min_age=timedelta(0)))
        assert not steps[0].written and "key id" in (steps[0].problem or "")
        assert len(read_records(log_path)) == 1

    @pytest.mark.integration
    def test_signed_intent_is_still_reconciled(
        self, sim: Simulator, tmp_path: Path, signer: RecordSigner
    ) -> None:
        """An intent signed by the configured key is closed as before, with a signed result."""
        log_path = tmp_path / "audit.log"
        signed = AuditLog(log_path, user_name="CCS\\demo", signer=signer, host_name="crashed-host")
        signed.intent(intent_record("job.delete", method="DELETE", url_path="/x", job_id=sim.job_ids[0]))
        with CcsClient(sim.url, sim.username, SecretStr(PASSWORD), timeout=5) as client:
            steps = list(reconcile(signed, client, checked_by="x", min_age=timedelta(0)))
        assert steps[0].written
        result = read_records(log_path)[-1]
        assert result["audit"]["phase"] == "result" and result["audit"]["signature"]


class TestWriterRefusesEditedTail:
    @pytest.mark.parametrize("how", ["new-file", "in-place-same-size"])
    def test_edited_last_record_is_refused_before_writing(self, tmp_path: Path, how: str) -> None:
        """A last record whose fields were edited (chain fields intact) makes the next append fail with
        AuditError, and the file is left as it was, even for a writer that had the tail cached."""
        log_path = tmp_path / "audit.log"
        audit_log = AuditLog(log_path, user_name="CCS\\demo", fsync=False)
        for number in range(2):
            audit_log.append(
                {
                    "event": {"kind": "state", "action": "job.changed", "outcome": "success"},
                    "audit": {"id": f"r{number}", "phase": "observation", "origin": "observed"},
                    "ccs": {"job": {"name": "nightly"}},
                }
            )
        text = log_path.read_text(encoding="utf-8")
        edited = text[: text.rindex("nightly")] + "hourly!" + text[text.rindex("nightly") + 7 :]
        if how == "new-file":
            log_path.unlink()
            log_path.write_text(edited, encoding="utf-8")
        else:
            with log_path.open("r+", encoding="utf-8") as handle:
                handle.write(edited)
        with pytest.raises(AuditError, match="was edited"):
            audit_log.append({"event": {"action": "job.changed"}, "audit": {"id": "r3"}})
        assert log_path.read_text(encoding="utf-8") == edited
        assert not verify(log_path).ok

    @pytest.mark.integration
    def test_jobs_command_refuses_before_sending(self, sim: Simulator, tmp_path: Path) -> None:
        """``jobs run`` onto an edited log: exit 1 with one line, no request to CCS."""
        log_path = tmp_path / "audit.log"
        AuditLog(log_path, user_name="CCS\\demo").append(
            {"event": {"action": "job.changed"}, "audit": {"id": "r1"}, "ccs": {"job": {"name": "a"}}}
        )
        record = json.loads(log_path.read_text(encoding="utf-8"))
        record["ccs"]["job"]["name"] = "b"
        log_path.write_text(json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n", "utf-8")
        sim.reset_requests()
        result = run_cli(
            ["jobs", "run", sim.job_ids[0], "--reason", "x"], sim, log_path, CCS_EXPORTER_LOG_LEVEL="info"
        )
        assert result.returncode == 1, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "was edited" in result.stderr
        assert sim.request_count("run_job") == 0 and sim.request_count("job_operation") == 0


@pytest.mark.integration
def test_failed_mutation_prints_only_its_one_line(sim: Simulator, tmp_path: Path) -> None:
    """A run refused by CCS (unknown job): one line on stderr, no structured warning beside it."""
    log_path = tmp_path / "audit.log"
    result = run_cli(
        ["jobs", "run", "00000000-0000-4000-8000-000000000999", "--reason", "x"],
        sim,
        log_path,
        CCS_EXPORTER_LOG_LEVEL="info",
    )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ccs-exporter: "), result.stderr
    assert "job_mutation_failed" not in result.stderr
