"""Tests of the audit log: record format, hash chain, fail-closed writes, concurrency, verify, observe()."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from ccs_exporter.audit import (
    GENESIS_HASH,
    REDACTED,
    AuditLog,
    AuditStats,
    Redactor,
    diff_snapshots,
    intent_record,
    record_hash,
    secret_variants,
    verify,
)
from ccs_exporter.errors import AuditError
from ccs_exporter.models import Job

TESTS_DIR = Path(__file__).parent
JOB_ID = "23c59087-f3d4-4e05-a39e-3440c58e58fb"


def read_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def observation(number: int, label: str = "t") -> dict[str, Any]:
    return {
        "event": {"kind": "state", "action": "job.changed", "outcome": "success"},
        "audit": {"id": f"{label}-{number}", "phase": "observation", "origin": "observed"},
    }


def make_job(load_fixture: Callable[[str], Any], modified: str, description: str = "Demo Update Job") -> Job:
    payload = copy.deepcopy(load_fixture("search_job_by_id.json"))
    payload["JobProperties"]["JobModifiedTime"] = modified
    payload["JobConfigDetails"]["JobDescription"] = description
    return Job.model_validate(payload)


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "audit.log"


@pytest.fixture
def audit_log(log_path: Path) -> AuditLog:
    return AuditLog(log_path, user_name="CCS\\demo", secrets=secret_variants("S3cr3t-Passw0rd!"))


def write_mutation(audit_log: AuditLog, outcome: str = "success") -> None:
    intent = audit_log.intent(
        intent_record(
            "job.update",
            method="PATCH",
            url_path="/ccs/api/v1/jobs",
            job_id=JOB_ID,
            requested={"JobName": "x"},
        )
    )
    audit_log.result(intent.result(outcome, status_code=204))


class TestAuditRecord:
    def test_intent_holds_the_ecs_fields_the_issue_lists(self, audit_log: AuditLog, log_path: Path) -> None:
        """An intent record carries timestamp, action, sequence, audit id/phase/hashes, users, host, job."""
        audit_log.intent(
            intent_record(
                "job.update",
                method="PATCH",
                url_path="/ccs/api/v1/jobs",
                job_id=JOB_ID,
                job_name="Nightly",
                reason="CHG-1234",
                requested={"JobDescription": "new"},
            )
        )
        (record,) = read_records(log_path)
        assert record["@timestamp"].endswith("Z")
        assert record["event"]["action"] == "job.update"
        assert record["event"]["sequence"] == 1
        assert record["event"]["kind"] == "event"
        assert "outcome" not in record["event"]
        assert record["audit"]["phase"] == "intent"
        assert record["audit"]["origin"] == "performed"
        assert record["audit"]["prev_hash"] == GENESIS_HASH
        assert record["audit"]["hash"] == record_hash(record)
        assert record["user"]["name"] == "CCS\\demo"
        assert record["process"]["user"]["name"]
        assert record["host"]["name"]
        assert record["ccs"]["job"] == {"id": JOB_ID, "name": "Nightly"}
        assert record["http"]["request"]["method"] == "PATCH"
        assert record["reason"] == "CHG-1234"
        assert record["change"]["requested"] == {"JobDescription": "new"}

    def test_result_shares_the_intent_id_and_chains_to_it(self, audit_log: AuditLog, log_path: Path) -> None:
        """The result has the intent's audit.id, the next sequence and the intent's hash as prev_hash."""
        write_mutation(audit_log, "failure")
        intent, result = read_records(log_path)
        assert result["audit"]["id"] == intent["audit"]["id"]
        assert result["audit"]["phase"] == "result"
        assert result["event"]["outcome"] == "failure"
        assert result["event"]["sequence"] == 2
        assert result["audit"]["prev_hash"] == intent["audit"]["hash"]
        assert result["http"]["response"]["status_code"] == 204

    def test_lines_are_canonical_json(self, audit_log: AuditLog, log_path: Path) -> None:
        """Each line is the record serialised with sorted keys and no spaces, so verify can recompute it."""
        write_mutation(audit_log)
        for line in log_path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            assert line == json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def test_result_holds_before_after_and_diff(
        self, audit_log: AuditLog, log_path: Path, load_fixture: Callable[[str], Any]
    ) -> None:
        """A result with before and after jobs records both and a diff of just the changed fields."""
        before = make_job(load_fixture, "2024-01-01T00:00:00Z", "old")
        after = make_job(load_fixture, "2024-01-02T00:00:00Z", "new")
        intent = audit_log.intent(intent_record("job.update", method="PATCH", url_path="/x", job_id=JOB_ID))
        audit_log.result(intent.result("success", before=before, after=after))
        result = read_records(log_path)[1]
        assert result["change"]["diff"] == {
            "JobConfigDetails.JobDescription": {"before": "old", "after": "new"},
            "JobProperties.JobModifiedTime": {
                "before": "2024-01-01T00:00:00Z",
                "after": "2024-01-02T00:00:00Z",
            },
        }
        assert result["change"]["before"]["JobConfigDetails"]["JobDescription"] == "old"


class TestRedactor:
    def test_known_secrets_and_their_base64_are_removed(self) -> None:
        """The password and its Base64 form are replaced wherever they appear in a string."""
        redact = Redactor(secret_variants("hunter2-pw"))
        text = redact("sent hunter2-pw and aHVudGVyMi1wdw== today")
        assert text == f"sent {REDACTED} and {REDACTED} today"

    def test_secret_named_keys_are_redacted(self) -> None:
        """Values under keys such as password, access_token or Authorization never survive."""
        redacted = Redactor()(
            {"Password": "x1", "access_token": "t", "Authorization": "Bearer z", "Name": "ok"}
        )
        assert redacted == {
            "Password": REDACTED,
            "access_token": REDACTED,
            "Authorization": REDACTED,
            "Name": "ok",
        }

    def test_secret_looking_text_in_notification_fields_is_redacted(self) -> None:
        """Notification blocks are kept, but bearer tokens, JWTs and password=... inside them are cut out."""
        block = {
            "ToEmailAddress": "ops@example.com",
            "Subject": "token=abc123def please",
            "Body": "use password: Tr0ub4dor and Bearer eyJhbGciOi.eyJzdWIiOiIx.c2ln or https://u:pw@host/x",
        }
        redacted = Redactor()(block)
        assert redacted["ToEmailAddress"] == "ops@example.com"
        assert "abc123def" not in redacted["Subject"]
        for secret in ("Tr0ub4dor", "eyJhbGciOi", ":pw@"):
            assert secret not in redacted["Body"]

    def test_booleans_under_secret_looking_keys_are_kept(self) -> None:
        """A flag is not a secret, even under a secret-sounding key."""
        assert Redactor()({"token_valid": True}) == {"token_valid": True}

    def test_secrets_never_reach_the_file(self, audit_log: AuditLog, log_path: Path) -> None:
        """A password smuggled into a spec is absent from the written log, in plain and Base64 form."""
        audit_log.intent(
            intent_record(
                "job.create",
                method="POST",
                url_path="/x",
                requested={"JobDescription": "pw S3cr3t-Passw0rd! b64 UzNjcjN0LVBhc3N3MHJkIQ=="},
            )
        )
        text = log_path.read_text(encoding="utf-8")
        assert "S3cr3t-Passw0rd!" not in text
        assert "UzNjcjN0LVBhc3N3MHJkIQ==" not in text


class TestDiffSnapshots:
    def test_nested_changes_are_dotted_paths(self) -> None:
        """Only changed leaves appear, named by their dotted path; lists compare as whole values."""
        diff = diff_snapshots({"a": {"b": 1, "c": [1]}, "d": 1}, {"a": {"b": 2, "c": [1, 2]}, "d": 1})
        assert diff == {"a.b": {"before": 1, "after": 2}, "a.c": {"before": [1], "after": [1, 2]}}

    def test_added_and_removed_keys_show_none(self) -> None:
        """A field that appears or disappears has None on the missing side."""
        assert diff_snapshots({"x": 1}, {"y": 2}) == {
            "x": {"before": 1, "after": None},
            "y": {"before": None, "after": 2},
        }


class TestAppend:
    def test_sequence_is_gap_free_across_instances(self, log_path: Path) -> None:
        """A second AuditLog on the same file continues the sequence and the chain of the first."""
        first = AuditLog(log_path, user_name="a")
        first.append(observation(1))
        second = AuditLog(log_path, user_name="b")
        second.append(observation(2))
        first.append(observation(3))
        assert [r["event"]["sequence"] for r in read_records(log_path)] == [1, 2, 3]
        assert verify(log_path).ok

    def test_disk_full_raises_audit_error_and_counts_it(self) -> None:
        """Writing to /dev/full raises AuditError naming the cause and counts a write error."""
        audit_log = AuditLog("/dev/full", user_name="u")
        with pytest.raises(AuditError, match="No space left on device"):
            audit_log.intent(intent_record("job.delete", method="DELETE", url_path="/x", job_id=JOB_ID))
        assert audit_log.stats().write_errors == 1

    def test_unwritable_path_raises_audit_error(self, tmp_path: Path) -> None:
        """A path whose parent is a regular file cannot be created, even by root, and raises AuditError."""
        (tmp_path / "not-a-dir").write_text("x")
        audit_log = AuditLog(tmp_path / "not-a-dir" / "audit.log", user_name="u")
        with pytest.raises(AuditError, match="cannot open audit log"):
            audit_log.append(observation(1))

    def test_deleted_log_is_not_silently_restarted(self, audit_log: AuditLog, log_path: Path) -> None:
        """When the log is deleted underneath, the head file makes the next write fail, not a new chain."""
        audit_log.append(observation(1))
        log_path.unlink()
        with pytest.raises(AuditError, match="records were deleted or the file was replaced"):
            audit_log.append(observation(2))
        assert not log_path.exists() or log_path.read_text() == ""

    def test_truncated_log_is_refused(self, audit_log: AuditLog, log_path: Path) -> None:
        """Records cut off the end are noticed by the next writer, which refuses to chain onto them."""
        for number in range(3):
            audit_log.append(observation(number))
        lines = log_path.read_text().splitlines(keepends=True)
        log_path.write_text("".join(lines[:2]))
        with pytest.raises(AuditError, match="ends at sequence 2"):
            AuditLog(log_path, user_name="other").append(observation(9))

    def test_torn_last_line_is_recorded_and_removed(self, audit_log: AuditLog, log_path: Path) -> None:
        """A torn last line (a crash mid-write) is replaced by a recovery record naming its size and hash."""
        audit_log.append(observation(1))
        with log_path.open("ab") as handle:
            handle.write(b'{"@timestamp":"2024-')
        AuditLog(log_path, user_name="u").append(observation(2))
        records = read_records(log_path)
        assert [r["event"]["action"] for r in records] == ["job.changed", "audit.recovered", "job.changed"]
        assert records[1]["audit"]["removed"]["bytes"] == 20
        assert verify(log_path).ok

    def test_unreadable_last_record_fails_closed(self, audit_log: AuditLog, log_path: Path) -> None:
        """A damaged last record (a complete non-JSON line) stops writes rather than forking the chain."""
        audit_log.append(observation(1))
        with log_path.open("a") as handle:
            handle.write("garbage\n")
        with pytest.raises(AuditError, match="unreadable"):
            AuditLog(log_path, user_name="u").append(observation(2))

    def test_stats_count_results_and_observations_by_action_and_outcome(self, audit_log: AuditLog) -> None:
        """stats() counts each completed record once by (action, outcome); intents are not counted."""
        write_mutation(audit_log, "success")
        write_mutation(audit_log, "unknown")
        audit_log.append(observation(1))
        assert audit_log.stats() == AuditStats(
            records={
                ("job.update", "success"): 1,
                ("job.update", "unknown"): 1,
                ("job.changed", "success"): 1,
            },
            write_errors=0,
        )

    def test_stats_snapshot_is_immutable(self, audit_log: AuditLog) -> None:
        """A stats snapshot does not change when more records are written."""
        snapshot = audit_log.stats()
        audit_log.append(observation(1))
        assert snapshot.records == {}


@pytest.mark.integration
class TestConcurrentWriters:
    def test_threads_and_a_second_process_give_one_gap_free_chain(self, log_path: Path) -> None:
        """16 threads and another process appending at once produce a verifiable chain with every record."""
        per_thread, per_process = 40, 300
        audit_log = AuditLog(log_path, user_name="CCS\\demo")
        other = subprocess.Popen(
            [sys.executable, str(TESTS_DIR / "audit_writer.py"), str(log_path), str(per_process), "proc"],
            env={**os.environ, "PYTHONPATH": str(TESTS_DIR.parent)},
        )
        start = threading.Barrier(16)
        errors: list[BaseException] = []

        def write(label: str) -> None:
            start.wait()
            try:
                for number in range(per_thread):
                    audit_log.append(observation(number, label))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(f"thread{n}",)) for n in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert other.wait(timeout=60) == 0
        assert errors == []
        total = 16 * per_thread + per_process
        result = verify(log_path)
        assert result.ok, result.problem
        assert result.records == total
        records = read_records(log_path)
        assert [r["event"]["sequence"] for r in records] == list(range(1, total + 1))
        assert len({r["audit"]["id"] for r in records}) == total
        assert audit_log.stats().records == {("job.changed", "success"): 16 * per_thread}


class TestVerify:
    @pytest.fixture
    def lines(self, audit_log: AuditLog, log_path: Path) -> list[str]:
        for _ in range(3):
            write_mutation(audit_log)
        return log_path.read_text(encoding="utf-8").splitlines(keepends=True)

    def rewrite(self, log_path: Path, lines: list[str]) -> None:
        log_path.write_text("".join(lines), encoding="utf-8")

    def test_intact_log_verifies(self, lines: list[str], log_path: Path) -> None:
        """An untouched log is ok, with every record counted."""
        result = verify(log_path)
        assert (result.ok, result.records, result.line, result.problem) == (True, 6, None, None)

    def test_empty_log_verifies(self, log_path: Path) -> None:
        """An empty log has nothing wrong with it."""
        log_path.write_text("")
        assert verify(log_path).ok

    def test_missing_log_is_reported(self, tmp_path: Path) -> None:
        """A log that cannot be read is not ok."""
        result = verify(tmp_path / "nope.log")
        assert not result.ok
        assert "cannot read" in (result.problem or "")

    def test_edited_line_is_caught(self, lines: list[str], log_path: Path) -> None:
        """Changing a value in a record (here the reason) is reported at that line."""
        record = json.loads(lines[2])
        record["reason"] = "nothing to see"
        lines[2] = json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"
        self.rewrite(log_path, lines)
        result = verify(log_path)
        assert (result.ok, result.line) == (False, 3)
        assert "edited" in (result.problem or "")

    def test_edited_line_with_recomputed_hash_is_caught_by_the_next_line(
        self, lines: list[str], log_path: Path
    ) -> None:
        """A forger who recomputes the edited record's hash still breaks the next record's prev_hash."""
        record = json.loads(lines[2])
        record["reason"] = "forged"
        record["audit"]["hash"] = record_hash(record)
        lines[2] = json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"
        self.rewrite(log_path, lines)
        result = verify(log_path)
        assert (result.ok, result.line) == (False, 4)
        assert "chain broken" in (result.problem or "")

    def test_inserted_line_is_caught(self, lines: list[str], log_path: Path) -> None:
        """A copied record inserted in the middle breaks the chain at the insertion."""
        lines.insert(2, lines[0])
        self.rewrite(log_path, lines)
        result = verify(log_path)
        assert (result.ok, result.line) == (False, 3)

    def test_deleted_line_is_caught(self, lines: list[str], log_path: Path) -> None:
        """Removing a record from the middle is reported at the line that follows the gap."""
        del lines[3]
        self.rewrite(log_path, lines)
        result = verify(log_path)
        assert not result.ok
        problems = {finding.line: finding.problem for finding in result.findings}
        assert "chain broken" in problems[4]
        # The deleted record was a result: its intent is reported as open too.
        assert "intent without a result" in problems[3]

    def test_reordered_lines_are_caught(self, lines: list[str], log_path: Path) -> None:
        """Swapping two records is reported at the first of them."""
        lines[2], lines[3] = lines[3], lines[2]
        self.rewrite(log_path, lines)
        result = verify(log_path)
        assert (result.ok, result.line) == (False, 3)

    def test_truncation_at_a_record_boundary_is_caught_by_the_head(
        self, lines: list[str], log_path: Path
    ) -> None:
        """Cutting whole records off the end is caught through the head file."""
        self.rewrite(log_path, lines[:4])
        result = verify(log_path)
        assert (result.ok, result.line) == (False, 5)
        assert "truncated" in (result.problem or "")

    def test_rewritten_log_is_caught_by_the_head(
        self, lines: list[str], log_path: Path, tmp_path: Path
    ) -> None:
        """A whole log regenerated with a valid chain of its own does not match the head's hash."""
        forged = tmp_path / "forged.log"
        forger = AuditLog(forged, user_name="mallory")
        for _ in range(3):
            write_mutation(forger)
        log_path.write_bytes(forged.read_bytes())
        result = verify(log_path)
        assert (result.ok, result.line) == (False, 6)
        assert "rewritten" in (result.problem or "")

    def test_truncation_mid_line_is_a_torn_last_line(
        self, lines: list[str], audit_log: AuditLog, log_path: Path
    ) -> None:
        """A log cut inside its last record (here an observation) is reported as a torn last line."""
        audit_log.append(observation(1))
        last = log_path.read_text(encoding="utf-8").splitlines(keepends=True)[-1]
        self.rewrite(log_path, [*lines, last[:40]])
        result = verify(log_path)
        assert (result.ok, result.line, result.torn_last_line) == (False, 7, True)
        assert "torn last line" in (result.problem or "")

    def test_torn_result_reports_the_open_intent_and_the_torn_line(
        self, lines: list[str], log_path: Path
    ) -> None:
        """A result torn mid-write leaves its intent without a result (reported first) and a torn line."""
        self.rewrite(log_path, [*lines[:5], lines[5][:40]])
        result = verify(log_path)
        assert (result.ok, result.line, result.torn_last_line, result.open_intents) == (False, 5, True, 1)
        assert "intent without a result" in (result.problem or "")
        assert "torn last line" in result.findings[1].problem
        assert result.findings[1].line == 6

    def test_intent_without_result_is_caught(self, audit_log: AuditLog, log_path: Path) -> None:
        """An intent whose result never came (a crash after sending) is reported at the intent's line."""
        write_mutation(audit_log)
        audit_log.intent(intent_record("job.delete", method="DELETE", url_path="/x", job_id=JOB_ID))
        audit_log.append(observation(1))
        result = verify(log_path)
        assert (result.ok, result.line) == (False, 3)
        assert "job.delete intent without a result" in (result.problem or "")

    def test_nan_smuggled_into_a_record_is_caught(self, lines: list[str], log_path: Path) -> None:
        """A value our writer never produces (NaN) fails verification instead of crashing it."""
        lines[0] = lines[0].replace('"reason":null', '"reason":NaN')
        self.rewrite(log_path, lines)
        assert verify(log_path).line == 1


class TestObserve:
    @pytest.fixture
    def jobs(self, load_fixture: Callable[[str], Any]) -> dict[str, Job]:
        return {
            "v1": make_job(load_fixture, "2024-05-01T10:00:00Z", "one"),
            "v2": make_job(load_fixture, "2024-05-01T10:05:00Z", "two"),
            "v3": make_job(load_fixture, "2024-05-01T10:09:00Z", "three"),
        }

    @pytest.fixture
    def clocked_log(self, log_path: Path) -> AuditLog:
        # Our own mutations happen at 10:05, when CCS stamps JobModifiedTime of v2.
        return AuditLog(log_path, "CCS\\demo", clock=lambda: datetime(2024, 5, 1, 10, 5, tzinfo=timezone.utc))

    def own_update(
        self, audit_log: AuditLog, before: Job, after: Job | None, outcome: str = "success"
    ) -> None:
        intent = audit_log.intent(intent_record("job.update", method="PATCH", url_path="/x", job_id=JOB_ID))
        audit_log.result(intent.result(outcome, before=before, after=after))

    def test_external_change_is_recorded_with_a_diff(
        self, clocked_log: AuditLog, log_path: Path, jobs: dict[str, Job]
    ) -> None:
        """A change we did not make becomes a job.changed record, marked observed, with the diff."""
        clocked_log.observe(JOB_ID, jobs["v1"], jobs["v2"])
        (record,) = read_records(log_path)
        assert record["event"]["action"] == "job.changed"
        assert record["event"]["kind"] == "state"
        assert record["audit"]["origin"] == "observed"
        assert record["audit"]["phase"] == "observation"
        assert "user" not in record
        assert record["ccs"]["job"]["id"] == JOB_ID
        assert record["change"]["diff"]["JobConfigDetails.JobDescription"] == {
            "before": "one",
            "after": "two",
        }
        assert verify(log_path).ok

    def test_own_update_is_not_recorded_twice(
        self, clocked_log: AuditLog, log_path: Path, jobs: dict[str, Job]
    ) -> None:
        """The change made by our own audited update is recognised and not recorded again."""
        self.own_update(clocked_log, jobs["v1"], jobs["v2"])
        clocked_log.observe(JOB_ID, jobs["v1"], jobs["v2"])
        assert len(read_records(log_path)) == 2

    def test_own_update_from_another_process_is_recognised(
        self, log_path: Path, clocked_log: AuditLog, jobs: dict[str, Job]
    ) -> None:
        """An update written to the same file by another AuditLog (the CLI's process) is recognised too."""
        cli_log = AuditLog(log_path, "CCS\\demo")
        self.own_update(cli_log, jobs["v1"], jobs["v2"])
        clocked_log.observe(JOB_ID, jobs["v1"], jobs["v2"])
        assert len(read_records(log_path)) == 2

    def test_later_external_change_is_still_recorded(
        self, clocked_log: AuditLog, log_path: Path, jobs: dict[str, Job]
    ) -> None:
        """After our own update was matched, a later console change to the same job is recorded."""
        self.own_update(clocked_log, jobs["v1"], jobs["v2"])
        clocked_log.observe(JOB_ID, jobs["v1"], jobs["v2"])
        clocked_log.observe(JOB_ID, jobs["v2"], jobs["v3"])
        records = read_records(log_path)
        assert [r["event"]["action"] for r in records] == ["job.update", "job.update", "job.changed"]
        assert records[2]["change"]["diff"]["JobConfigDetails.JobDescription"]["after"] == "three"

    def test_change_beyond_our_update_is_recorded(
        self, clocked_log: AuditLog, log_path: Path, jobs: dict[str, Job]
    ) -> None:
        """When the poller sees a state newer than our update left, someone else changed it too."""
        self.own_update(clocked_log, jobs["v1"], jobs["v2"])
        clocked_log.observe(JOB_ID, jobs["v1"], jobs["v3"])
        assert read_records(log_path)[-1]["event"]["action"] == "job.changed"

    def test_failed_own_update_does_not_hide_a_change(
        self, clocked_log: AuditLog, log_path: Path, jobs: dict[str, Job]
    ) -> None:
        """Our update that CCS refused changed nothing, so an observed change is someone else's."""
        self.own_update(clocked_log, jobs["v1"], None, outcome="failure")
        clocked_log.observe(JOB_ID, jobs["v1"], jobs["v2"])
        assert read_records(log_path)[-1]["event"]["action"] == "job.changed"

    def test_update_with_unknown_outcome_matches_by_time(
        self, clocked_log: AuditLog, log_path: Path, jobs: dict[str, Job]
    ) -> None:
        """An update whose outcome is unknown explains a change stamped within the clock-skew window."""
        self.own_update(clocked_log, jobs["v1"], None, outcome="unknown")
        clocked_log.observe(JOB_ID, jobs["v1"], jobs["v2"])
        assert len(read_records(log_path)) == 2

    def test_update_far_from_the_change_does_not_match(self, log_path: Path, jobs: dict[str, Job]) -> None:
        """An update in flight hours away from the observed modification time does not explain it."""
        late = AuditLog(log_path, "u", clock=lambda: datetime(2024, 5, 1, 18, 0, tzinfo=timezone.utc))
        late.intent(intent_record("job.update", method="PATCH", url_path="/x", job_id=JOB_ID))
        late.observe(JOB_ID, jobs["v1"], jobs["v2"])
        assert read_records(log_path)[-1]["event"]["action"] == "job.changed"

    def test_external_deletion_is_recorded(
        self, clocked_log: AuditLog, log_path: Path, jobs: dict[str, Job]
    ) -> None:
        """A watched job that disappears without our delete becomes job.deleted with its last state."""
        clocked_log.observe(JOB_ID, jobs["v2"], None)
        (record,) = read_records(log_path)
        assert record["event"]["action"] == "job.deleted"
        assert record["audit"]["origin"] == "observed"
        assert record["change"]["before"]["JobProperties"]["JobID"] == JOB_ID
        assert record["change"]["after"] is None

    def test_own_deletion_is_not_recorded_twice(
        self, clocked_log: AuditLog, log_path: Path, jobs: dict[str, Job]
    ) -> None:
        """Our own audited delete explains the job's disappearance."""
        intent = clocked_log.intent(
            intent_record("job.delete", method="DELETE", url_path="/x", job_id=JOB_ID, delete_job=True)
        )
        clocked_log.result(intent.result("success", before=jobs["v2"]))
        clocked_log.observe(JOB_ID, jobs["v2"], None)
        assert len(read_records(log_path)) == 2

    def test_history_only_delete_does_not_explain_a_disappearance(
        self, clocked_log: AuditLog, log_path: Path, jobs: dict[str, Job]
    ) -> None:
        """A --keep-job delete (DeleteJob=False) keeps the job, so its disappearance is someone else's."""
        intent = clocked_log.intent(
            intent_record("job.delete", method="DELETE", url_path="/x", job_id=JOB_ID, delete_job=False)
        )
        clocked_log.result(intent.result("success", before=jobs["v2"]))
        clocked_log.observe(JOB_ID, jobs["v2"], None)
        assert read_records(log_path)[-1]["event"]["action"] == "job.deleted"

    def test_observe_never_raises_and_counts_the_error(self, jobs: dict[str, Job]) -> None:
        """A write failure inside observe() is logged and counted, never raised into the poller."""
        audit_log = AuditLog("/dev/full", "u")
        audit_log.observe(JOB_ID, jobs["v1"], jobs["v2"])
        assert audit_log.stats().write_errors == 1

    @staticmethod
    def created_job(jobs: dict[str, Job], name: str, created: str) -> Job:
        payload = jobs["v1"].model_dump(mode="json")
        payload["JobProperties"].update(Name=name, JobCreationTime=created)
        return Job.model_validate(payload)

    def test_external_creation_is_recorded_as_ccs_returned_the_job(
        self, clocked_log: AuditLog, log_path: Path, jobs: dict[str, Job]
    ) -> None:
        """A job created elsewhere becomes job.created: observed, no user, the job as CCS returned it."""
        job = self.created_job(jobs, "Console job", "2024-05-01T10:04:00Z")
        clocked_log.observe(JOB_ID, None, job)
        (record,) = read_records(log_path)
        assert record["event"]["action"] == "job.created"
        assert record["event"]["type"] == ["creation"]
        assert (record["event"]["kind"], record["audit"]["origin"]) == ("state", "observed")
        assert "user" not in record
        assert record["ccs"]["job"]["name"] == "Console job"
        assert record["change"]["before"] is None
        assert record["change"]["after"] == job.model_dump(mode="json")
        assert verify(log_path).ok

    def test_own_create_is_not_recorded_twice(
        self, clocked_log: AuditLog, log_path: Path, jobs: dict[str, Job]
    ) -> None:
        """The job our own audited create made is recognised by the JobID its result recorded."""
        intent = clocked_log.intent(
            intent_record("job.create", method="POST", url_path="/x", job_name="Ours")
        )
        clocked_log.result(intent.result("success", job_id=JOB_ID))
        clocked_log.observe(JOB_ID, None, self.created_job(jobs, "Ours", "2024-05-01T10:05:00Z"))
        assert [r["event"]["action"] for r in read_records(log_path)] == ["job.create", "job.create"]

    def test_create_with_unknown_outcome_matches_by_name_and_time(
        self, clocked_log: AuditLog, log_path: Path, jobs: dict[str, Job]
    ) -> None:
        """A create that timed out (no JobID known) explains a job of that name created in the window."""
        intent = clocked_log.intent(
            intent_record("job.create", method="POST", url_path="/x", job_name="Ours")
        )
        clocked_log.result(intent.result("unknown"))
        clocked_log.observe(JOB_ID, None, self.created_job(jobs, "ours", "2024-05-01T10:07:00Z"))
        assert len(read_records(log_path)) == 2

    @pytest.mark.parametrize(
        ("name", "created", "outcome"),
        [
            ("Another", "2024-05-01T10:05:00Z", "unknown"),
            ("Ours", "2024-05-01T13:00:00Z", "unknown"),
            ("Ours", "2024-05-01T10:05:00Z", "failure"),
        ],
        ids=["other-name", "hours-later", "refused-create"],
    )
    def test_creation_our_create_cannot_explain_is_recorded(
        self,
        clocked_log: AuditLog,
        log_path: Path,
        jobs: dict[str, Job],
        name: str,
        created: str,
        outcome: str,
    ) -> None:
        """Another name, a creation far from our create, or a create CCS refused: someone else's job."""
        intent = clocked_log.intent(
            intent_record("job.create", method="POST", url_path="/x", job_name="Ours")
        )
        clocked_log.result(intent.result(outcome))
        clocked_log.observe(JOB_ID, None, self.created_job(jobs, name, created))
        assert read_records(log_path)[-1]["event"]["action"] == "job.created"

    def test_one_create_explains_one_appearance(
        self, clocked_log: AuditLog, log_path: Path, jobs: dict[str, Job]
    ) -> None:
        """Each of our creates explains one observed job only; a second job of that name is recorded."""
        intent = clocked_log.intent(
            intent_record("job.create", method="POST", url_path="/x", job_name="Ours")
        )
        clocked_log.result(intent.result("unknown"))
        job = self.created_job(jobs, "Ours", "2024-05-01T10:05:00Z")
        clocked_log.observe(JOB_ID, None, job)
        clocked_log.observe("ff761384-4b49-40b4-97d8-0de38669075a", None, job)
        assert [r["event"]["action"] for r in read_records(log_path)][-1] == "job.created"
        assert len(read_records(log_path)) == 3

    def test_observations_are_counted(self, clocked_log: AuditLog, jobs: dict[str, Job]) -> None:
        """Observed changes and deletions count under their actions with outcome success."""
        clocked_log.observe(JOB_ID, jobs["v1"], jobs["v2"])
        clocked_log.observe(JOB_ID, jobs["v2"], None)
        assert clocked_log.stats().records == {("job.changed", "success"): 1, ("job.deleted", "success"): 1}
