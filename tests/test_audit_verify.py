"""Tests of `verify` against a forger who recomputes the chain: the head, open intents, every finding."""

from __future__ import annotations

import importlib
import json
import threading
from pathlib import Path

import pytest
from audit_forger import append_copy_of, edit_reason, forge, read_records

from ccs_exporter.audit import AuditLog, intent_record, verify
from ccs_exporter.audit.head import hash48, head_path

# The module, not the function the package exports under the same name.
verify_module = importlib.import_module("ccs_exporter.audit.verify")
JOB_ID = "23c59087-f3d4-4e05-a39e-3440c58e58fb"


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "audit.log"


@pytest.fixture
def audit_log(log_path: Path) -> AuditLog:
    return AuditLog(log_path, user_name="CCS\\demo")


def write_mutation(audit_log: AuditLog, reason: str = "CHG-1") -> None:
    intent = audit_log.intent(
        intent_record("job.update", method="PATCH", url_path="/x", job_id=JOB_ID, reason=reason)
    )
    audit_log.result(intent.result("success", status_code=204))


def observation(number: int) -> dict[str, object]:
    return {
        "event": {"kind": "state", "action": "job.changed", "outcome": "success"},
        "audit": {"id": f"obs-{number}", "phase": "observation", "origin": "observed"},
    }


@pytest.fixture
def six_records(audit_log: AuditLog, log_path: Path) -> Path:
    for number in range(3):
        write_mutation(audit_log, f"CHG-{number}")
    return log_path


class TestForgerAgainstTheHead:
    def test_recomputed_chain_and_head_verify_intact(self, six_records: Path) -> None:
        """The limit of the chain and head alone: a forger who rewrites both gets an intact verdict."""
        forge(six_records, edit_reason(3, "approved by nobody"))
        assert verify(six_records).ok

    def test_records_appended_after_the_head_fail(self, six_records: Path) -> None:
        """Records chained correctly after the head's sequence, head left alone, are reported."""
        forge(six_records, append_copy_of(2, "forged"), update_head=False)
        forge(six_records, append_copy_of(2, "forged again"), update_head=False)
        result = verify(six_records)
        assert not result.ok
        assert result.line == 7
        assert "records 7 to 8 come after sequence 6" in (result.problem or "")
        assert "appended without updating the head" in (result.problem or "")

    def test_missing_head_is_reported_not_intact(self, six_records: Path) -> None:
        """A log with records but no head file is not called intact: truncation could not be checked."""
        head_path(six_records).unlink()
        result = verify(six_records)
        assert not result.ok
        assert ".head is missing" in (result.problem or "")
        assert result.line is None

    def test_empty_log_without_head_is_intact(self, log_path: Path) -> None:
        """A log that was created and never written has no head and nothing wrong."""
        log_path.write_bytes(b"")
        assert verify(log_path).ok

    @pytest.mark.parametrize(
        ("content", "words"),
        [
            (b"not json", "is not a head file"),
            (b'{"sequence": -1, "hash": "' + b"a" * 64 + b'"}', "no valid sequence"),
            (b'{"sequence": 6, "hash": "xyz"}', "no valid hash"),
            (b"{" + b" " * 5000 + b"}", "larger than"),
        ],
    )
    def test_unreadable_head_is_reported(self, six_records: Path, content: bytes, words: str) -> None:
        """A head file that is not one of ours is reported, saying what is wrong with it."""
        head_path(six_records).write_bytes(content)
        result = verify(six_records)
        assert not result.ok
        assert words in (result.problem or "")
        assert "cannot tell whether records were cut off" in (result.problem or "")


class TestEveryFinding:
    def test_open_intent_does_not_hide_truncation_or_edits(self, audit_log: AuditLog, log_path: Path) -> None:
        """A crash's open intent, an edited line and a truncated end are all reported, with the count."""
        write_mutation(audit_log)
        audit_log.intent(
            intent_record("job.delete", method="DELETE", url_path="/x", job_id=JOB_ID)
        )  # the "crash"
        for number in range(4):
            audit_log.append(observation(number))
        lines = log_path.read_text(encoding="utf-8").splitlines(keepends=True)
        lines[4] = lines[4].replace('"obs-1"', '"obs-x"')
        log_path.write_text("".join(lines[:6]), encoding="utf-8")  # the last record is cut off
        result = verify(log_path)
        assert (result.ok, result.open_intents, result.problem_count) == (False, 1, 3)
        problems = {finding.line: finding.problem for finding in result.findings}
        assert "job.delete intent without a result" in problems[3]
        assert "record was edited" in problems[5]
        assert "truncated" in problems[7]

    def test_every_open_intent_is_listed(self, audit_log: AuditLog, log_path: Path) -> None:
        """Each intent without a result is its own finding, at its own line."""
        for _ in range(3):
            audit_log.intent(intent_record("job.update", method="PATCH", url_path="/x", job_id=JOB_ID))
        result = verify(log_path)
        assert result.open_intents == 3
        assert [finding.line for finding in result.findings] == [1, 2, 3]

    def test_intent_closed_by_a_later_result_is_not_open(self, audit_log: AuditLog, log_path: Path) -> None:
        """A result written later (other records in between) closes its intent."""
        intent = audit_log.intent(intent_record("job.update", method="PATCH", url_path="/x", job_id=JOB_ID))
        audit_log.append(observation(1))
        audit_log.result(intent.result("unknown"))
        assert verify(log_path).ok

    def test_findings_are_bounded(
        self, audit_log: AuditLog, log_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A log damaged on every line gives a bounded list and counts the rest."""
        monkeypatch.setattr(verify_module, "MAX_FINDINGS", 5)
        log_path.write_text("garbage\n" * 40, encoding="utf-8")
        result = verify(log_path)
        assert len(result.findings) == 5
        assert result.problem_count == 41  # 40 lines and the missing head

    def test_overlong_line_is_skipped_not_held(
        self, six_records: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A line longer than the limit is reported and skipped; the lines after it are still checked."""
        monkeypatch.setattr(verify_module, "MAX_LINE_BYTES", 1000)
        lines = six_records.read_text(encoding="utf-8").splitlines(keepends=True)
        lines.insert(2, "x" * 5000 + "\n")
        six_records.write_text("".join(lines), encoding="utf-8")
        result = verify(six_records)
        problems = {finding.line: finding.problem for finding in result.findings}
        assert "longer than 1000 bytes" in problems[3]
        assert result.records == 6
        assert set(problems) == {3}, problems


class TestConcurrentWriter:
    def test_verify_while_another_writer_appends_is_clean(self, audit_log: AuditLog, log_path: Path) -> None:
        """Appends racing with verify are never mistaken for records after the head or a truncation."""
        write_mutation(audit_log)
        stop = threading.Event()

        def append() -> None:
            number = 0
            while not stop.is_set():
                audit_log.append(observation(number))
                number += 1

        writer = threading.Thread(target=append)
        writer.start()
        try:
            results = [verify(log_path) for _ in range(40)]
        finally:
            stop.set()
            writer.join()
        assert all(result.ok for result in results), [r.problem for r in results if not r.ok]
        assert results[-1].records > results[0].records


class TestHashes:
    def test_hash48_of_each_line_is_kept_for_the_witness(self, six_records: Path) -> None:
        """verify keeps the first 48 bits of every record's hash, by line."""
        records = read_records(six_records)
        assert list(verify(six_records).hash48s) == [hash48(r["audit"]["hash"]) for r in records]

    def test_head_of_the_intact_log(self, six_records: Path) -> None:
        """The head that verify read is the last record's sequence and hash."""
        result = verify(six_records)
        last = read_records(six_records)[-1]
        assert result.head is not None
        assert (result.head.sequence, result.head.hash) == (6, last["audit"]["hash"])
        assert json.loads(head_path(six_records).read_text())["sequence"] == 6
