"""Tests of `audit reconcile`: intents left by killed mutations get the outcome CCS shows, exactly once."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from test_interrupts import idle_job, start_cli, wait_for
from test_jobs import CREATE_SPEC, PASSWORD, read_records, run_cli

from ccs_exporter.audit import AuditLog, intent_record, verify
from ccs_exporter.audit.reconcile import reconcile
from ccs_exporter.client import CcsClient
from ccs_exporter.errors import AuditError
from ccs_exporter.models import Job
from ccs_exporter.operations.service import JobService
from ccs_exporter.simulator import Simulator

pytestmark = pytest.mark.integration


@pytest.fixture
def sim(started: Callable[..., Simulator]) -> Simulator:
    started_simulator: Simulator = started(run_interval=None, password=PASSWORD)
    return started_simulator


@pytest.fixture
def client(sim: Simulator) -> Iterator[CcsClient]:
    with CcsClient(sim.url, sim.username, SecretStr(PASSWORD), timeout=5) as ccs:
        yield ccs


def kill(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)


def killed_while_sent(sim: Simulator, log_path: Path, args: list[str], sent_after: str) -> None:
    """Run a CLI mutation, hold CCS once ``sent_after`` is answered, SIGKILL it, then let CCS go on.

    The request after ``sent_after`` reaches CCS and is carried out once released, but the killed
    process never writes its result: the log ends with an open intent.
    """
    sim.reset_requests()
    sim.faults.latency_seconds = 0.5
    process = start_cli(args, sim, log_path)
    wait_for(lambda: sim.request_count(sent_after) >= 1)
    sim.faults.hang = True
    time.sleep(1.5)  # the next request is sent meanwhile, and held after its 0.5 s of latency
    kill(process)
    sim.faults.hang = False
    sim.faults.latency_seconds = 0


def open_intent(log_path: Path, action: str, host: str = "crashed-host", **fields: Any) -> str:
    """An intent as a process on ``host`` that died before its result would have left it."""
    audit_log = AuditLog(log_path, user_name="CCS\\demo", host_name=host)
    intent = audit_log.intent(intent_record(action, method="POST", url_path="/ccs/api/v1/jobs", **fields))
    return intent.audit_id


def reconcile_cli(sim: Simulator, log_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_cli(["audit", "reconcile", str(log_path), *extra], sim, None, CCS_EXPORTER_LOG_LEVEL="error")


class TestKilledMutations:
    @pytest.mark.parametrize(
        ("action", "sent_after"),
        [("update", "job"), ("delete", "job"), ("run", "job"), ("create", "token")],
    )
    def test_sent_then_killed_is_reconciled_as_success(
        self, sim: Simulator, tmp_path: Path, action: str, sent_after: str
    ) -> None:
        """A mutation SIGKILLed after it reached CCS is reconciled as success; verify is intact again."""
        log_path = tmp_path / "audit.log"
        job_id = idle_job(sim)
        if action == "create":
            spec = tmp_path / "spec.json"
            spec.write_text(json.dumps(CREATE_SPEC), encoding="utf-8")
            args = ["jobs", "create", "-f", str(spec)]
        elif action == "update":
            spec = tmp_path / "details.json"
            spec.write_text(json.dumps({"JobDescription": "set before the crash"}), encoding="utf-8")
            args = ["jobs", "update", job_id, "-f", str(spec)]
        else:
            args = ["jobs", action, job_id]
        killed_while_sent(sim, log_path, args, sent_after)
        mutation = {"update": "update_job", "delete": "delete_job", "run": "job_operation"}
        wait_for(lambda: sim.request_count(mutation.get(action, "create_job")) == 1)
        assert "intent without a result" in (verify(log_path).problem or "")

        done = reconcile_cli(sim, log_path)
        assert done.returncode == 0, done.stderr
        assert f"job.{action}" in done.stdout and "recorded success" in done.stdout
        intent, result = read_records(log_path)[-2:]
        assert result["audit"]["id"] == intent["audit"]["id"]
        assert result["audit"]["reconciled"] is True
        assert result["event"]["outcome"] == "success"
        assert result["event"]["reason"].startswith("reconciled from CCS: ")
        assert result["user"]["name"] == intent["user"]["name"]
        assert result["reconcile"]["checked_by"]["name"] == sim.username
        if action == "create":
            assert result["ccs"]["job"]["id"] in sim.job_ids
        if action == "run":
            assert result["ccs"]["job_run"]["id"]
        assert verify(log_path).ok

        size = log_path.stat().st_size
        again = reconcile_cli(sim, log_path)
        assert again.returncode == 0
        assert "nothing to reconcile" in again.stdout
        assert log_path.stat().st_size == size

    def test_killed_before_sending_is_reconciled_as_failure(self, sim: Simulator, tmp_path: Path) -> None:
        """An update killed while its token request hung never reached CCS: reconciled as failure."""
        log_path = tmp_path / "audit.log"
        spec = tmp_path / "details.json"
        spec.write_text(json.dumps({"JobDescription": "never sent"}), encoding="utf-8")
        job_id = idle_job(sim)
        sim.faults.hang = True
        process = start_cli(["jobs", "update", job_id, "-f", str(spec)], sim, log_path)
        wait_for(lambda: log_path.exists() and b'"intent"' in log_path.read_bytes())
        kill(process)
        sim.faults.hang = False
        done = reconcile_cli(sim, log_path)
        assert done.returncode == 0, done.stderr
        result = read_records(log_path)[-1]
        assert result["event"]["outcome"] == "failure"
        assert "not been modified since before the intent" in result["event"]["reason"]
        assert verify(log_path).ok

    def test_killed_abort_finds_its_job_in_our_own_log(self, sim: Simulator, tmp_path: Path) -> None:
        """An abort killed after sending is reconciled from the job's runs; the job comes from our job.run."""
        log_path = tmp_path / "audit.log"
        with CcsClient(sim.url, sim.username, SecretStr(PASSWORD), timeout=5) as ccs:
            started = JobService(ccs, AuditLog(log_path, user_name=sim.username)).run(idle_job(sim))
        killed_while_sent(sim, log_path, ["jobs", "abort", started.run_id or ""], "token")
        wait_for(lambda: sim.request_count("job_operation") == 1)
        done = reconcile_cli(sim, log_path)
        assert done.returncode == 0, done.stderr
        result = read_records(log_path)[-1]
        assert (result["event"]["action"], result["event"]["outcome"]) == ("job.abort", "success")
        assert result["ccs"]["job"]["id"] == started.job_id
        assert result["reconcile"]["evidence"]["run"]["Status"] == 7
        assert verify(log_path).ok


class TestLookups:
    def test_a_later_change_makes_an_update_unknown(
        self, sim: Simulator, client: CcsClient, tmp_path: Path
    ) -> None:
        """An update whose job was changed since, but not as requested, is unknown: CCS cannot tell."""
        log_path = tmp_path / "audit.log"
        job_id = idle_job(sim)
        open_intent(log_path, "job.update", job_id=job_id, requested={"JobDescription": "ours"})
        sim.edit_job(job_id, {"JobDescription": "someone else's"})
        steps = list(
            reconcile(AuditLog(log_path, "CCS\\demo"), client, checked_by="CCS\\demo", min_age=timedelta(0))
        )
        assert [step.finding.outcome for step in steps if step.finding] == ["unknown"]
        evidence = read_records(log_path)[-1]["reconcile"]["evidence"]
        assert evidence["fields_not_as_requested"] == {"JobDescription": "someone else's"}
        assert verify(log_path).ok

    def test_fields_ccs_does_not_show_make_an_update_unknown(
        self, sim: Simulator, client: CcsClient, tmp_path: Path
    ) -> None:
        """An update of AssetTimeOut alone cannot be checked (search by id does not return it): unknown."""
        log_path = tmp_path / "audit.log"
        job_id = idle_job(sim)
        open_intent(log_path, "job.update", job_id=job_id, requested={"AssetTimeOut": 120})
        sim.edit_job(job_id, {"JobDescription": "touched after the intent"})
        list(reconcile(AuditLog(log_path, "CCS\\demo"), client, checked_by="x", min_age=timedelta(0)))
        result = read_records(log_path)[-1]
        assert result["event"]["outcome"] == "unknown"
        assert result["reconcile"]["evidence"]["fields_not_shown_by_ccs"] == ["AssetTimeOut"]

    def test_a_name_taken_before_the_intent_is_a_failed_create(
        self, sim: Simulator, client: CcsClient, tmp_path: Path
    ) -> None:
        """A create whose name belongs to a job created long before the intent was refused as a duplicate."""
        log_path = tmp_path / "audit.log"
        taken = sim.job_snapshot(sim.job_ids[0])["JobProperties"]["Name"]
        open_intent(log_path, "job.create", job_name=taken)
        list(reconcile(AuditLog(log_path, "CCS\\demo"), client, checked_by="CCS\\demo", min_age=timedelta(0)))
        result = read_records(log_path)[-1]
        assert result["event"]["outcome"] == "failure"
        assert "created before the intent" in result["event"]["reason"]

    def test_an_abort_of_an_unknown_job_is_unknown(
        self, sim: Simulator, client: CcsClient, tmp_path: Path
    ) -> None:
        """An abort whose run no record of ours ties to a job is unknown: CCS has no run-to-job lookup."""
        log_path = tmp_path / "audit.log"
        open_intent(log_path, "job.abort", run_id="0b7d4c59-3f0e-4e8a-9d1c-6a2b8e4f7c13")
        steps = list(
            reconcile(AuditLog(log_path, "CCS\\demo"), client, checked_by="CCS\\demo", min_age=timedelta(0))
        )
        assert steps[0].finding is not None and steps[0].finding.outcome == "unknown"
        assert sim.request_count() == 0
        assert verify(log_path).ok


class TestSafety:
    def test_dry_run_writes_nothing(self, sim: Simulator, tmp_path: Path) -> None:
        """--dry-run says what it would record and leaves the log byte for byte as it was."""
        log_path = tmp_path / "audit.log"
        open_intent(log_path, "job.delete", job_id=sim.job_ids[0], delete_job=True)
        before = log_path.read_bytes()
        done = reconcile_cli(sim, log_path, "--dry-run", "--min-age", "0")
        assert done.returncode == 0, done.stderr
        assert "would record failure: the job still exists" in done.stdout
        assert log_path.read_bytes() == before

    def test_a_result_written_meanwhile_is_not_duplicated(
        self, sim: Simulator, client: CcsClient, tmp_path: Path
    ) -> None:
        """When the mutation's own result lands while CCS is asked, reconcile appends nothing for it."""
        log_path = tmp_path / "audit.log"
        writer = AuditLog(log_path, user_name="CCS\\demo", host_name="slow-host")
        intent = writer.intent(
            intent_record("job.delete", method="DELETE", url_path="/x", job_id=sim.job_ids[0])
        )

        class LateResult:
            """CCS reads that let the slow mutation finish first, as a concurrent writer would."""

            def get_job(self, job_id: str) -> Job:
                writer.result(intent.result("failure", status_code=403))
                return client.get_job(job_id)

            def __getattr__(self, name: str) -> Any:
                return getattr(client, name)

        steps = list(
            reconcile(AuditLog(log_path, "CCS\\demo"), LateResult(), checked_by="x", min_age=timedelta(0))
        )
        assert steps[0].written is False and "meanwhile" in (steps[0].problem or "")
        assert [r["audit"]["phase"] for r in read_records(log_path)] == ["intent", "result"]
        assert verify(log_path).ok

    def test_an_intent_of_a_running_process_is_left_alone(self, sim: Simulator, tmp_path: Path) -> None:
        """An intent whose process still runs on this host is not reconciled; the command exits 1."""
        log_path = tmp_path / "audit.log"
        open_intent(log_path, "job.delete", host=socket.gethostname(), job_id=sim.job_ids[0])
        assert read_records(log_path)[0]["process"]["pid"] == os.getpid()
        done = reconcile_cli(sim, log_path, "--min-age", "0")
        assert done.returncode == 1
        assert "still in progress" in done.stdout
        assert len(read_records(log_path)) == 1

    def test_a_recent_intent_from_another_host_waits_for_min_age(
        self, sim: Simulator, tmp_path: Path
    ) -> None:
        """An intent another host wrote a moment ago is left open until it is --min-age old."""
        log_path = tmp_path / "audit.log"
        open_intent(log_path, "job.delete", job_id=sim.job_ids[0])
        assert reconcile_cli(sim, log_path).returncode == 1
        assert len(read_records(log_path)) == 1
        assert reconcile_cli(sim, log_path, "--min-age", "0").returncode == 0
        assert len(read_records(log_path)) == 2

    def test_ccs_unreachable_leaves_the_intent_open(self, sim: Simulator, tmp_path: Path) -> None:
        """When CCS cannot be asked, no outcome is guessed: nothing is appended and the command exits 1."""
        log_path = tmp_path / "audit.log"
        open_intent(log_path, "job.delete", job_id=sim.job_ids[0])
        sim.faults.drop_connections = True
        done = reconcile_cli(sim, log_path, "--min-age", "0")
        assert done.returncode == 1
        assert "CCS could not be asked" in done.stdout
        assert len(read_records(log_path)) == 1

    def test_a_tampered_log_is_refused(self, sim: Simulator, client: CcsClient, tmp_path: Path) -> None:
        """A log with an edited record is not reconciled: AuditError naming the line, nothing appended."""
        log_path = tmp_path / "audit.log"
        open_intent(log_path, "job.delete", job_id=sim.job_ids[0])
        open_intent(log_path, "job.delete", job_id=sim.job_ids[1])
        lines = log_path.read_text(encoding="utf-8").splitlines(keepends=True)
        lines[0] = lines[0].replace("crashed-host", "another-host")
        log_path.write_text("".join(lines), encoding="utf-8")
        with pytest.raises(AuditError, match="line 1: record was edited"):
            list(reconcile(AuditLog(log_path, "CCS\\demo"), client, checked_by="x", min_age=timedelta(0)))
        assert len(read_records(log_path)) == 2
        assert sim.request_count() == 0
