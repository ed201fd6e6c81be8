"""Tests of audited job operations: `jobs run` and `jobs abort`, their records, exit codes and matching."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from pydantic import SecretStr
from test_jobs import (
    API,
    BASE,
    FIXED_CLOCK,
    JOB_ID,
    PASSWORD,
    TOKEN_BODY,
    check_golden,
    make_service,
    read_records,
    run_cli,
)

from ccs_exporter.audit import AuditLog, intent_record, verify
from ccs_exporter.audit.auditor import ChangeAuditor
from ccs_exporter.client import CcsClient
from ccs_exporter.errors import (
    AuditError,
    BadRequestError,
    ConfigError,
    ForbiddenError,
    NotFoundError,
    UnavailableError,
)
from ccs_exporter.models import Job
from ccs_exporter.polling.cycle import Poller
from ccs_exporter.simulator import Simulator

JOB_FIXTURE = "search_job_by_id.json"
RUN_ID = "0b7d4c59-3f0e-4e8a-9d1c-6a2b8e4f7c13"
RUN_ANSWER = {"JobID": JOB_ID, "JobRunID": RUN_ID, "Status": 1, "Message": "Job run queued."}


@pytest.fixture
def sim(started: Callable[..., Simulator]) -> Simulator:
    started_simulator: Simulator = started(run_interval=None, password=PASSWORD)
    return started_simulator


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "audit.log"


def system_job(sim: Simulator) -> str:
    return next(j for j in sim.job_ids if sim.job_snapshot(j)["JobProperties"]["IsSystemJob"])


def idle_job(sim: Simulator) -> str:
    """A job with no run in progress, that the account may run."""
    return next(
        j
        for j in sim.job_ids
        if not sim.job_snapshot(j)["JobProperties"]["IsSystemJob"]
        and sim.job_snapshot(j)["JobProperties"]["LastRunStatus"] not in (1, 2)
    )


def running_job(sim: Simulator) -> str:
    return next(
        j
        for j in sim.job_ids
        if sim.job_snapshot(j)["JobProperties"]["LastRunStatus"] == 2
        and not sim.job_snapshot(j)["JobProperties"]["IsSystemJob"]
    )


def latest_run_id(sim: Simulator, job_id: str) -> str:
    runs = sim.job_runs_snapshot(job_id, count=0)["JobStatusInfo"]
    latest = max(runs, key=lambda run: str(run["JobStartTime"]))
    return str(latest["JobRunID"])


class TestRecords:
    """Golden records of run and abort against mocked CCS answers (deterministic payloads)."""

    def test_run_success(
        self, mocked_responses: responses.RequestsMock, log_path: Path, load_fixture: Any
    ) -> None:
        """A run intent names the job and the request; its result names the job, the run and the answer."""
        mocked_responses.add(responses.POST, f"{API}/oauth/tokens", json=TOKEN_BODY)
        mocked_responses.add(responses.GET, f"{API}/jobs/{JOB_ID}", json=load_fixture(JOB_FIXTURE))
        mocked_responses.add(
            responses.POST,
            f"{API}/jobs/{JOB_ID}",
            json=RUN_ANSWER,
            match=[responses.matchers.json_params_matcher({"Operation": "execute"})],
        )
        done = make_service(BASE, log_path).run(JOB_ID, reason="CHG-11")
        assert (done.run_id, done.status_code, done.message) == (RUN_ID, 200, "Job run queued.")
        intent, result = read_records(log_path)
        assert intent["change"]["requested"] == {"Operation": "execute"}
        assert intent["event"]["type"] == ["start"]
        assert result["ccs"]["job_run"] == {"id": RUN_ID}
        assert result["ccs"]["job"]["name"] == done.job_name
        assert result["user"]["name"] == "CCS\\demo" and result["reason"] == "CHG-11"
        check_golden("job.run-success", [intent, result])

    def test_run_refused(
        self, mocked_responses: responses.RequestsMock, log_path: Path, load_fixture: Any
    ) -> None:
        """A run CCS refuses (400 already running) is outcome failure with CCS's message."""
        mocked_responses.add(responses.POST, f"{API}/oauth/tokens", json=TOKEN_BODY)
        mocked_responses.add(responses.GET, f"{API}/jobs/{JOB_ID}", json=load_fixture(JOB_FIXTURE))
        mocked_responses.add(
            responses.POST, f"{API}/jobs/{JOB_ID}", status=400, json={"Message": "Job is already running."}
        )
        with pytest.raises(BadRequestError, match="already running"):
            make_service(BASE, log_path).run(JOB_ID, reason="CHG-11")
        check_golden("job.run-failure", read_records(log_path))

    def test_run_unanswered(
        self, mocked_responses: responses.RequestsMock, log_path: Path, load_fixture: Any
    ) -> None:
        """A run that timed out after it was sent is outcome unknown, never failure."""
        mocked_responses.add(responses.POST, f"{API}/oauth/tokens", json=TOKEN_BODY)
        mocked_responses.add(responses.GET, f"{API}/jobs/{JOB_ID}", json=load_fixture(JOB_FIXTURE))
        mocked_responses.add(
            responses.POST, f"{API}/jobs/{JOB_ID}", body=requests.exceptions.ReadTimeout("read timed out")
        )
        with pytest.raises(UnavailableError, match="may or may not have been carried out"):
            make_service(BASE, log_path).run(JOB_ID)
        check_golden("job.run-unknown", read_records(log_path))

    def test_abort_success(
        self, mocked_responses: responses.RequestsMock, log_path: Path, load_fixture: Any
    ) -> None:
        """An abort names the run; the JobID in CCS's answer names the job, read once after the abort."""
        mocked_responses.add(responses.POST, f"{API}/oauth/tokens", json=TOKEN_BODY)
        mocked_responses.add(
            responses.POST,
            f"{API}/jobs/{RUN_ID}",
            json={**RUN_ANSWER, "Status": 7, "Message": "Job run aborted."},
            match=[responses.matchers.json_params_matcher({"Operation": "abort"})],
        )
        job = copy.deepcopy(load_fixture("search_job_by_id.json"))
        job["JobProperties"]["LastRunStatus"] = 7
        mocked_responses.add(responses.GET, f"{API}/jobs/{JOB_ID}", json=job)
        done = make_service(BASE, log_path).abort(RUN_ID.upper(), reason="CHG-12")
        assert (done.job_id, done.run_id) == (JOB_ID, RUN_ID)
        intent, result = read_records(log_path)
        assert intent["ccs"] == {"job": {"id": None, "name": None}, "job_run": {"id": RUN_ID}}
        assert result["ccs"]["job"] == {"id": JOB_ID, "name": job["JobProperties"]["Name"]}
        assert result["event"]["type"] == ["end"]
        check_golden("job.abort-success", [intent, result])

    @pytest.mark.parametrize(
        "answer",
        [
            {"status": 204},
            {"status": 202},
            {"status": 200, "body": "Accepted"},
            {"status": 200, "json": ["unexpected", "shape"]},
        ],
    )
    def test_any_2xx_is_success(
        self, mocked_responses: responses.RequestsMock, log_path: Path, answer: dict[str, Any]
    ) -> None:
        """An abort answered with any 2xx, with or without a body of any shape, is outcome success."""
        mocked_responses.add(responses.POST, f"{API}/oauth/tokens", json=TOKEN_BODY)
        mocked_responses.add(responses.POST, f"{API}/jobs/{RUN_ID}", **answer)
        done = make_service(BASE, log_path).abort(RUN_ID)
        assert done.status_code == answer["status"]
        assert done.message == ("Accepted" if answer.get("body") else None)
        assert read_records(log_path)[-1]["event"]["outcome"] == "success"

    def test_intent_is_on_disk_before_the_token_request(
        self, mocked_responses: responses.RequestsMock, log_path: Path
    ) -> None:
        """The abort's intent is written before any request, the token request included."""
        seen_at_login: list[list[str]] = []

        def login(request: Any) -> tuple[int, dict[str, str], str]:
            seen_at_login.append([r["audit"]["phase"] for r in read_records(log_path)])
            return 200, {}, json.dumps(TOKEN_BODY)

        mocked_responses.add_callback(responses.POST, f"{API}/oauth/tokens", callback=login)
        mocked_responses.add(responses.POST, f"{API}/jobs/{RUN_ID}", status=204)
        make_service(BASE, log_path).abort(RUN_ID)
        assert seen_at_login == [["intent"]]


@pytest.mark.integration
class TestAgainstSimulator:
    def test_run_then_abort_names_job_and_run_everywhere(self, sim: Simulator, log_path: Path) -> None:
        """A run queues a pending run in CCS; aborting it by its JobRunID names the job from our own log."""
        job_id = idle_job(sim)
        service = make_service(sim.url, log_path)
        started = service.run(job_id, reason="CHG-20")
        assert started.run_id == latest_run_id(sim, job_id)
        assert sim.job_snapshot(job_id)["JobProperties"]["LastRunStatus"] == 1
        stopped = service.abort(started.run_id or "", reason="CHG-21")
        assert sim.job_snapshot(job_id)["JobProperties"]["LastRunStatus"] == 7
        records = read_records(log_path)
        assert [(r["event"]["action"], r["audit"]["phase"]) for r in records] == [
            ("job.run", "intent"),
            ("job.run", "result"),
            ("job.abort", "intent"),
            ("job.abort", "result"),
        ]
        abort_intent, abort_result = records[2:]
        assert abort_intent["ccs"]["job"]["id"] == job_id  # found in the log before anything was sent
        assert abort_result["ccs"]["job"]["name"] == stopped.job_name == started.job_name
        assert abort_result["change"]["after"]["JobProperties"]["LastRunStatus"] == 7
        assert records[0]["audit"]["id"] == records[1]["audit"]["id"] != records[2]["audit"]["id"]
        assert verify(log_path).ok

    @pytest.mark.parametrize("status", [202, 204])
    def test_run_answered_without_a_body_finds_its_run(
        self, sim: Simulator, log_path: Path, status: int
    ) -> None:
        """When execute is answered without a body, the pending run read afterwards is the one recorded."""
        sim.faults.operation_status = status
        job_id = idle_job(sim)
        done = make_service(sim.url, log_path).run(job_id)
        assert done.run_id == latest_run_id(sim, job_id)
        assert done.message is None
        assert read_records(log_path)[-1]["ccs"]["job_run"] == {"id": done.run_id}

    def test_abort_of_a_run_started_elsewhere_has_no_job_without_an_answer(
        self, sim: Simulator, log_path: Path
    ) -> None:
        """Aborting a run we did not start, answered 204, names the run only: CCS has no run-to-job lookup."""
        sim.faults.operation_status = 204
        job_id = running_job(sim)
        run_id = latest_run_id(sim, job_id)
        sim.reset_requests()
        make_service(sim.url, log_path).abort(run_id)
        result = read_records(log_path)[-1]
        assert result["ccs"]["job"] == {"id": None, "name": None}
        assert result["ccs"]["job_run"] == {"id": run_id}
        assert sim.request_count() == 2  # the token and the abort: nothing was searched for the job

    @pytest.mark.parametrize(
        ("operation", "target", "error"),
        [
            ("run", "unknown", NotFoundError),
            ("run", "system", ForbiddenError),
            ("run", "running", BadRequestError),
            ("abort", "unknown", NotFoundError),
            ("abort", "finished", BadRequestError),
        ],
    )
    def test_refusals_are_failures(
        self, sim: Simulator, log_path: Path, operation: str, target: str, error: type[Exception]
    ) -> None:
        """Unknown ids, a system job, a job already running and a finished run are refused and recorded."""
        service = make_service(sim.url, log_path)
        if target == "unknown":
            target_id = "11111111-2222-4333-8444-555555555555"
        elif target == "system":
            target_id = system_job(sim)
        elif target == "running":
            target_id = running_job(sim)
        else:
            target_id = latest_run_id(sim, next(j for j in sim.job_ids if j != running_job(sim)))
        with pytest.raises(error):
            getattr(service, operation)(target_id)
        result = read_records(log_path)[-1]
        assert (result["audit"]["phase"], result["event"]["outcome"]) == ("result", "failure")
        assert verify(log_path).ok

    def test_unknown_job_is_not_sent(self, sim: Simulator, log_path: Path) -> None:
        """A run of a job that cannot be read first is never sent (404 on the read, no execute)."""
        with pytest.raises(NotFoundError, match="nothing was changed"):
            make_service(sim.url, log_path).run("11111111-2222-4333-8444-555555555555")
        assert sim.request_count("job_operation") == 0

    @pytest.mark.parametrize("operation", ["run", "abort"])
    def test_malformed_guid_sends_and_records_nothing(
        self, sim: Simulator, log_path: Path, operation: str
    ) -> None:
        """An id that is not a GUID is refused before any record or request."""
        with pytest.raises(ConfigError, match="not a GUID"):
            getattr(make_service(sim.url, log_path), operation)("42; DROP TABLE jobs")
        assert sim.request_count() == 0
        assert not log_path.exists()

    @pytest.mark.parametrize("operation", ["run", "abort"])
    def test_unwritable_log_sends_nothing(self, sim: Simulator, operation: str) -> None:
        """When the intent cannot be written, nothing at all is sent to CCS."""
        with pytest.raises(AuditError):
            getattr(make_service(sim.url, "/dev/full"), operation)(sim.job_ids[0])
        assert sim.request_count() == 0

    def test_results_are_counted_for_metrics(self, sim: Simulator, log_path: Path) -> None:
        """job.run and job.abort results count in ccs_audit_records_total's action and outcome."""
        service = make_service(sim.url, log_path)
        done = service.run(idle_job(sim))
        service.abort(done.run_id or "")
        with pytest.raises(BadRequestError):
            service.abort(done.run_id or "")
        counts = service._audit.stats().records
        assert counts == {("job.run", "success"): 1, ("job.abort", "success"): 1, ("job.abort", "failure"): 1}


class TestObservation:
    """A run we started is not a change of the job's definition, and never reported as done elsewhere."""

    @pytest.fixture
    def versions(self, load_fixture: Any) -> tuple[Job, Job]:
        before = copy.deepcopy(load_fixture("search_job_by_id.json"))
        before["JobProperties"].update(JobModifiedTime="2024-05-01T09:00:00Z", LastRunStatus=4)
        after = copy.deepcopy(before)
        # As if CCS stamped JobModifiedTime when a run started (the simulator does not; a real CCS might).
        after["JobProperties"].update(
            JobModifiedTime="2024-05-01T10:00:02Z", LastRunStatus=1, LastRunDate="2024-05-01T10:00:01Z"
        )
        return Job.model_validate(before), Job.model_validate(after)

    def clocked(self, path: Path) -> AuditLog:
        return AuditLog(path, "CCS\\demo", clock=lambda: FIXED_CLOCK)

    @pytest.mark.parametrize("action", ["job.run", "job.abort"])
    def test_own_run_state_change_is_not_recorded(
        self, log_path: Path, versions: tuple[Job, Job], action: str
    ) -> None:
        """A run-state change that moved JobModifiedTime, near our own run or abort, writes no observation."""
        audit_log = self.clocked(log_path)
        intent = audit_log.intent(
            intent_record(action, method="POST", url_path="/x", job_id=JOB_ID, run_id=RUN_ID)
        )
        audit_log.result(intent.result("success"))
        audit_log.observe(JOB_ID, *versions)
        assert len(read_records(log_path)) == 2

    def test_run_state_change_from_elsewhere_is_recorded(
        self, log_path: Path, versions: tuple[Job, Job]
    ) -> None:
        """The same change without a run of ours is job.changed, as any JobModifiedTime move is."""
        self.clocked(log_path).observe(JOB_ID, *versions)
        (record,) = read_records(log_path)
        assert record["event"]["action"] == "job.changed"
        assert set(record["change"]["diff"]) == {
            "JobProperties.JobModifiedTime",
            "JobProperties.LastRunDate",
            "JobProperties.LastRunStatus",
        }

    def test_our_run_does_not_hide_a_definition_change(
        self, log_path: Path, versions: tuple[Job, Job]
    ) -> None:
        """A definition change made elsewhere is recorded even when our run happened in the same interval."""
        before, after = versions
        payload = after.model_dump(mode="json")
        payload["JobConfigDetails"]["JobDescription"] = "edited in the console"
        audit_log = self.clocked(log_path)
        intent = audit_log.intent(intent_record("job.run", method="POST", url_path="/x", job_id=JOB_ID))
        audit_log.result(intent.result("success"))
        audit_log.observe(JOB_ID, before, Job.model_validate(payload))
        assert read_records(log_path)[-1]["event"]["action"] == "job.changed"

    def test_a_run_far_from_the_change_does_not_match(
        self, tmp_path: Path, versions: tuple[Job, Job]
    ) -> None:
        """Our run long before the previous reading does not explain the change."""
        path = tmp_path / "audit.log"
        early = AuditLog(path, "CCS\\demo", clock=lambda: FIXED_CLOCK - timedelta(hours=2))
        intent = early.intent(intent_record("job.run", method="POST", url_path="/x", job_id=JOB_ID))
        early.result(intent.result("success"))
        self.clocked(path).observe(JOB_ID, *versions)
        assert read_records(path)[-1]["event"]["action"] == "job.changed"

    @pytest.mark.integration
    def test_polling_while_we_run_and_abort_records_nothing(self, sim: Simulator, log_path: Path) -> None:
        """The exporter's poll cycles around our run and abort write no observation at all."""
        job_id = idle_job(sim)
        poll_client = CcsClient(sim.url, sim.username, SecretStr(PASSWORD), timeout=5)
        poller = Poller(poll_client, [job_id], track_changes=True)
        auditor = ChangeAuditor(AuditLog(log_path, user_name=sim.username))
        service = make_service(sim.url, log_path)
        try:
            auditor.record(poller.poll_cycle().changes)
            done = service.run(job_id)
            auditor.record(poller.poll_cycle().changes)
            service.abort(done.run_id or "")
            auditor.record(poller.poll_cycle().changes)
            sim.set_job_name(job_id, "Renamed in the console")  # the control: a real change is seen
            auditor.record(poller.poll_cycle().changes)
        finally:
            poller.close()
            poll_client.close()
        actions = [(r["event"]["action"], r["audit"]["origin"]) for r in read_records(log_path)]
        assert actions == [
            ("job.run", "performed"),
            ("job.run", "performed"),
            ("job.abort", "performed"),
            ("job.abort", "performed"),
            ("job.changed", "observed"),
        ]


@pytest.mark.integration
class TestCommands:
    def test_run_prints_what_ccs_said(self, sim: Simulator, log_path: Path) -> None:
        """`jobs run` exits 0 and prints the job, the new JobRunID and CCS's message as JSON."""
        job_id = idle_job(sim)
        done = run_cli(["jobs", "run", job_id, "--reason", "CHG-30"], sim, log_path)
        assert done.returncode == 0, done.stderr
        printed = json.loads(done.stdout)
        assert printed["JobID"] == job_id
        assert printed["JobRunID"] == latest_run_id(sim, job_id)
        assert printed["Message"] == "Job run queued."
        assert printed["AuditID"] == read_records(log_path)[-1]["audit"]["id"]

    def test_abort_of_a_finished_run_exits_1_with_ccs_message_on_one_line(
        self, sim: Simulator, log_path: Path
    ) -> None:
        """`jobs abort` of a run not in progress exits 1 with CCS's 400 message on one line."""
        job_id = idle_job(sim)
        done = run_cli(["jobs", "abort", latest_run_id(sim, job_id)], sim, log_path)
        assert done.returncode == 1
        line = done.stderr.strip().splitlines()[-1]
        assert line.startswith("ccs-exporter: CCS request failed:") and "is not in progress" in line
        assert "Traceback" not in done.stderr

    @pytest.mark.parametrize("args", [["run", "not-a-guid"], ["abort", "{1234}"]])
    def test_malformed_ids_exit_2(self, sim: Simulator, log_path: Path, args: list[str]) -> None:
        """A malformed GUID exits 2 on one line; nothing is sent or recorded."""
        done = run_cli(["jobs", *args], sim, log_path)
        assert done.returncode == 2
        assert "not a GUID" in done.stderr and len(done.stderr.strip().splitlines()) == 1
        assert sim.request_count() == 0 and not log_path.exists()

    @pytest.mark.parametrize("operation", ["run", "abort"])
    def test_no_audit_log_exits_2_and_sends_nothing(self, sim: Simulator, operation: str) -> None:
        """Without an audit log the operation is a configuration error: exit 2, nothing sent."""
        done = run_cli(["jobs", operation, sim.job_ids[0]], sim, None)
        assert done.returncode == 2
        assert "CCS_EXPORTER_AUDIT_LOG" in done.stderr
        assert sim.request_count() == 0

    def test_unknown_run_exits_1(self, sim: Simulator, log_path: Path) -> None:
        """Aborting a run id CCS does not know exits 1 with the 404 and records failure."""
        done = run_cli(["jobs", "abort", "11111111-2222-4333-8444-555555555555"], sim, log_path)
        assert done.returncode == 1
        assert "404" in done.stderr
        assert read_records(log_path)[-1]["event"]["outcome"] == "failure"
