"""Tests of audited job mutations: specs, JobService records (golden files), fail-closed, CLI, crashes."""

from __future__ import annotations

import base64
import copy
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from pydantic import SecretStr

from ccs_exporter.audit import GENESIS_HASH, AuditLog, secret_variants, verify
from ccs_exporter.client import CcsClient, RequestObserver
from ccs_exporter.errors import (
    AuditError,
    CcsError,
    ConfigError,
    ForbiddenError,
    NotFoundError,
    UnavailableError,
)
from ccs_exporter.operations.service import JobService
from ccs_exporter.operations.specs import load_spec
from ccs_exporter.simulator import Simulator

GOLDEN_DIR = Path(__file__).parent / "golden" / "audit"
UPDATE_GOLDEN = os.environ.get("UPDATE_GOLDEN") == "1"
BASE = "https://ccs.test:12431"
API = f"{BASE}/ccs/api/v1"
JOB_ID = "23c59087-f3d4-4e05-a39e-3440c58e58fb"
NEW_JOB_ID = "5ade67f0-0c93-49f3-9f2b-b8ec4beaa99c"
PASSWORD = "Canary-P@ss+w/rd="
FIXED_CLOCK = datetime(2024, 5, 1, 10, 0, tzinfo=timezone.utc)
TOKEN_BODY = {"access_token": "tok-access-canary", "refresh_token": "tok-refresh-canary", "expires_in": 3600}
# A minimal valid Create Job body (the vendor's sample) and a valid update.
CREATE_SPEC: dict[str, Any] = {
    "JobType": "CollectionEvaluationJob",
    "JobDetails": {
        "AssetsResolutionInfo": [
            {"Id": "d387d8b5-6278-4bcb-83c7-b55d2072d2a8", "Type": "symc-csm-AssetSystem-Asset-Unix-Machine"}
        ],
        "JobDescription": "Test CER Job",
        "JobName": "Test_Job11",
        "Standards": ["6b020d29-5fe8-47d0-bd89-ccd3339a5ebe"],
    },
}
UPDATE_DETAILS: dict[str, Any] = {"JobDescription": "Updated by ccs-exporter", "AssetTimeOut": 120}


def read_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def normalised(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records with the values that differ between runs (ids, hashes, pid) replaced by placeholders."""
    text = json.dumps(records)
    for audit_id in {record["audit"]["id"] for record in records}:
        text = text.replace(audit_id, "<audit-id>")
    result: list[dict[str, Any]] = json.loads(text)
    for record in result:
        record["audit"]["id"] = "<audit-id>"
        record["audit"]["hash"] = "<hash>"
        if record["audit"]["prev_hash"] != GENESIS_HASH:
            record["audit"]["prev_hash"] = "<hash>"
        record["process"]["pid"] = "<pid>"
        record["service"]["version"] = "<version>"
    return result


def check_golden(name: str, records: list[dict[str, Any]]) -> None:
    path = GOLDEN_DIR / f"{name}.json"
    text = json.dumps(normalised(records), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if UPDATE_GOLDEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing golden file {path}; run with UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8")


@pytest.fixture
def sim(started: Callable[..., Simulator]) -> Simulator:
    started_simulator: Simulator = started(run_interval=None, password=PASSWORD)
    return started_simulator


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "audit.log"


def make_service(
    url: str,
    audit_path: Path | str,
    timeout: float = 5.0,
    username: str = "CCS\\demo",
    observer: RequestObserver | None = None,
) -> JobService:
    client = CcsClient(
        url, username, SecretStr(PASSWORD), timeout=timeout, observer=observer, backoff_seconds=0.01
    )
    audit_log = AuditLog(
        audit_path,
        user_name=username,
        secrets=secret_variants(PASSWORD),
        host_name="test-host",
        os_user="tester",
        clock=lambda: FIXED_CLOCK,
    )
    return JobService(client, audit_log)


@pytest.fixture
def job_payload(load_fixture: Callable[[str], Any]) -> dict[str, Any]:
    payload: dict[str, Any] = load_fixture("search_job_by_id.json")
    return payload


class TestLoadSpec:
    def test_json_spec_is_read(self, tmp_path: Path) -> None:
        """A .json spec is parsed into a mapping."""
        path = tmp_path / "spec.json"
        path.write_text(json.dumps(CREATE_SPEC))
        assert load_spec(path) == CREATE_SPEC

    def test_yaml_spec_is_read(self, tmp_path: Path) -> None:
        """A .yaml spec is parsed into a mapping."""
        path = tmp_path / "details.yaml"
        path.write_text("JobDescription: nightly\nAssetTimeOut: 30\n")
        assert load_spec(path) == {"JobDescription": "nightly", "AssetTimeOut": 30}

    def test_bad_json_names_the_file_and_line(self, tmp_path: Path) -> None:
        """Invalid JSON is a ConfigError naming the file and the line."""
        path = tmp_path / "spec.json"
        path.write_text('{\n  "JobType": "CollectionJob",\n  oops\n}')
        with pytest.raises(ConfigError, match=r"spec\.json: not valid JSON at line 3"):
            load_spec(path)

    def test_non_mapping_is_rejected(self, tmp_path: Path) -> None:
        """A spec that is a list, not an object, is a ConfigError."""
        path = tmp_path / "spec.yaml"
        path.write_text("- a\n- b\n")
        with pytest.raises(ConfigError, match="must hold a JSON/YAML object"):
            load_spec(path)

    def test_missing_file_is_a_config_error(self, tmp_path: Path) -> None:
        """A spec file that does not exist is a ConfigError naming it."""
        with pytest.raises(ConfigError, match=r"nope\.json: cannot read it"):
            load_spec(tmp_path / "nope.json")


class TestJobServiceRecords:
    """Golden records for each action x outcome, against mocked CCS responses (deterministic payloads)."""

    @pytest.fixture
    def service(self, log_path: Path) -> JobService:
        return make_service(BASE, log_path)

    def token(self, mock: responses.RequestsMock) -> None:
        mock.add(responses.POST, f"{API}/oauth/tokens", json=TOKEN_BODY)

    def job_versions(self, job_payload: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        after = copy.deepcopy(job_payload)
        after["JobProperties"]["JobModifiedTime"] = "2024-05-01T10:00:01"
        after["JobConfigDetails"]["JobDescription"] = UPDATE_DETAILS["JobDescription"]
        return job_payload, after

    def test_create_success(
        self, service: JobService, mocked_responses: responses.RequestsMock, log_path: Path, job_payload: Any
    ) -> None:
        """A created job's records hold the spec, the new JobID, CCS's 200 and the job as created."""
        self.token(mocked_responses)
        mocked_responses.add(responses.POST, f"{API}/jobs", json={"JobID": NEW_JOB_ID})
        created = copy.deepcopy(job_payload)
        created["JobProperties"]["JobID"] = NEW_JOB_ID
        mocked_responses.add(responses.GET, f"{API}/jobs/{NEW_JOB_ID}", json=created)
        assert service.create(CREATE_SPEC, reason="CHG-1") == NEW_JOB_ID
        records = read_records(log_path)
        assert records[1]["ccs"]["job"]["id"] == NEW_JOB_ID
        assert records[1]["http"]["response"]["status_code"] == 200
        check_golden("job.create-success", records)

    def test_create_failure(
        self, service: JobService, mocked_responses: responses.RequestsMock, log_path: Path
    ) -> None:
        """A refused create (400 duplicate name) is outcome failure with CCS's status and message."""
        self.token(mocked_responses)
        mocked_responses.add(
            responses.POST,
            f"{API}/jobs",
            status=400,
            json={"Message": "Job with the same name already exists."},
        )
        with pytest.raises(CcsError, match="same name"):
            service.create(CREATE_SPEC, reason="CHG-1")
        records = read_records(log_path)
        assert records[1]["event"]["outcome"] == "failure"
        check_golden("job.create-failure", records)

    def test_create_unknown(
        self, service: JobService, mocked_responses: responses.RequestsMock, log_path: Path
    ) -> None:
        """A create that timed out after sending is outcome unknown, never failure."""
        self.token(mocked_responses)
        mocked_responses.add(
            responses.POST, f"{API}/jobs", body=requests.exceptions.ReadTimeout("read timed out")
        )
        with pytest.raises(UnavailableError, match="may or may not have been carried out"):
            service.create(CREATE_SPEC, reason="CHG-1")
        records = read_records(log_path)
        assert records[1]["event"]["outcome"] == "unknown"
        check_golden("job.create-unknown", records)

    def test_update_success(
        self, service: JobService, mocked_responses: responses.RequestsMock, log_path: Path, job_payload: Any
    ) -> None:
        """An update's result holds the before and after jobs, their diff and CCS's 204."""
        before, after = self.job_versions(job_payload)
        self.token(mocked_responses)
        mocked_responses.add(responses.GET, f"{API}/jobs/{JOB_ID}", json=before)
        mocked_responses.add(responses.PATCH, f"{API}/jobs", status=204)
        mocked_responses.add(responses.GET, f"{API}/jobs/{JOB_ID}", json=after)
        service.update(JOB_ID, UPDATE_DETAILS, reason="CHG-2")
        records = read_records(log_path)
        assert set(records[1]["change"]["diff"]) == {
            "JobConfigDetails.JobDescription",
            "JobProperties.JobModifiedTime",
        }
        assert records[1]["http"]["response"]["status_code"] == 204
        check_golden("job.update-success", records)

    def test_update_failure(
        self, service: JobService, mocked_responses: responses.RequestsMock, log_path: Path, job_payload: Any
    ) -> None:
        """A refused update (403) is outcome failure and keeps the before state."""
        self.token(mocked_responses)
        mocked_responses.add(responses.GET, f"{API}/jobs/{JOB_ID}", json=job_payload)
        mocked_responses.add(
            responses.PATCH, f"{API}/jobs", status=403, json={"Message": "Access is denied."}
        )
        with pytest.raises(ForbiddenError):
            service.update(JOB_ID, UPDATE_DETAILS, reason="CHG-2")
        records = read_records(log_path)
        assert records[1]["change"]["before"]["JobProperties"]["JobID"] == JOB_ID
        check_golden("job.update-failure", records)

    def test_update_unknown(
        self, service: JobService, mocked_responses: responses.RequestsMock, log_path: Path, job_payload: Any
    ) -> None:
        """An update whose connection dropped after sending is outcome unknown."""
        self.token(mocked_responses)
        mocked_responses.add(responses.GET, f"{API}/jobs/{JOB_ID}", json=job_payload)
        mocked_responses.add(
            responses.PATCH, f"{API}/jobs", body=requests.exceptions.ConnectionError("Connection aborted.")
        )
        with pytest.raises(UnavailableError):
            service.update(JOB_ID, UPDATE_DETAILS, reason="CHG-2")
        records = read_records(log_path)
        assert records[1]["event"]["outcome"] == "unknown"
        check_golden("job.update-unknown", records)

    def test_delete_success(
        self, service: JobService, mocked_responses: responses.RequestsMock, log_path: Path, job_payload: Any
    ) -> None:
        """A delete's result holds the job as it was, DeleteJob=true and CCS's 204."""
        self.token(mocked_responses)
        mocked_responses.add(responses.GET, f"{API}/jobs/{JOB_ID}", json=job_payload)
        mocked_responses.add(responses.DELETE, f"{API}/Jobs", status=204)
        service.delete(JOB_ID, keep_job=False, reason="CHG-3")
        records = read_records(log_path)
        assert records[0]["ccs"]["delete_job"] is True
        check_golden("job.delete-success", records)

    def test_delete_failure(
        self, service: JobService, mocked_responses: responses.RequestsMock, log_path: Path, job_payload: Any
    ) -> None:
        """A refused delete (403 system job) is outcome failure."""
        self.token(mocked_responses)
        mocked_responses.add(responses.GET, f"{API}/jobs/{JOB_ID}", json=job_payload)
        mocked_responses.add(
            responses.DELETE, f"{API}/Jobs", status=403, json={"Message": "A system job cannot be deleted."}
        )
        with pytest.raises(ForbiddenError):
            service.delete(JOB_ID, keep_job=True, reason="CHG-3")
        check_golden("job.delete-failure", read_records(log_path))

    def test_delete_unknown(
        self, service: JobService, mocked_responses: responses.RequestsMock, log_path: Path, job_payload: Any
    ) -> None:
        """A delete that timed out after sending is outcome unknown."""
        self.token(mocked_responses)
        mocked_responses.add(responses.GET, f"{API}/jobs/{JOB_ID}", json=job_payload)
        mocked_responses.add(
            responses.DELETE, f"{API}/Jobs", body=requests.exceptions.ReadTimeout("timed out")
        )
        with pytest.raises(UnavailableError):
            service.delete(JOB_ID, reason="CHG-3")
        check_golden("job.delete-unknown", read_records(log_path))

    def test_job_missing_before_is_failure_and_nothing_sent(
        self, service: JobService, mocked_responses: responses.RequestsMock, log_path: Path
    ) -> None:
        """When the job cannot be read first (404), the mutation is not sent and the outcome is failure."""
        self.token(mocked_responses)
        mocked_responses.add(
            responses.GET, f"{API}/jobs/{JOB_ID}", status=404, json={"Message": "Job not found"}
        )
        with pytest.raises(NotFoundError, match="nothing was changed"):
            service.delete(JOB_ID)
        records = read_records(log_path)
        assert [r["audit"]["phase"] for r in records] == ["intent", "result"]
        assert records[1]["event"]["outcome"] == "failure"
        assert records[1]["http"]["response"]["status_code"] == 404
        assert not any(call.request.method == "DELETE" for call in mocked_responses.calls)

    def test_read_timeout_before_sending_is_failure(
        self, service: JobService, mocked_responses: responses.RequestsMock, log_path: Path
    ) -> None:
        """A timeout while reading the before-state is failure: the mutation itself never went out."""
        self.token(mocked_responses)
        mocked_responses.add(responses.GET, f"{API}/jobs/{JOB_ID}", body=requests.exceptions.ReadTimeout("t"))
        with pytest.raises(UnavailableError):
            service.update(JOB_ID, UPDATE_DETAILS)
        assert read_records(log_path)[1]["event"]["outcome"] == "failure"

    def test_unreadable_after_state_is_noted_not_failed(
        self, service: JobService, mocked_responses: responses.RequestsMock, log_path: Path, job_payload: Any
    ) -> None:
        """If the job cannot be re-read after a successful update, the outcome stays success with a note."""
        self.token(mocked_responses)
        mocked_responses.add(responses.GET, f"{API}/jobs/{JOB_ID}", json=job_payload)
        mocked_responses.add(responses.PATCH, f"{API}/jobs", status=204)
        mocked_responses.add(responses.GET, f"{API}/jobs/{JOB_ID}", status=403, json={"Message": "denied"})
        service.update(JOB_ID, UPDATE_DETAILS)
        result = read_records(log_path)[1]
        assert result["event"]["outcome"] == "success"
        assert "denied" in result["change"]["after_error"]
        assert result["change"]["after"] is None


@pytest.mark.integration
class TestValidation:
    @pytest.mark.parametrize(
        ("mutate", "field"),
        [
            (lambda s: s["JobDetails"].__setitem__("AssetTimeOut", 0), "JobDetails.AssetTimeOut"),
            (lambda s: s["JobDetails"].__setitem__("AssetTimeOut", 501), "JobDetails.AssetTimeOut"),
            (lambda s: s.__setitem__("JobType", "collectionjob"), "JobType"),
            (lambda s: s["JobDetails"].pop("JobName"), "JobDetails.JobName"),
            (lambda s: s["JobDetails"].pop("Standards"), "JobDetails.Standards"),
            (lambda s: s["JobDetails"].__setitem__("IncrementalPeriod", 101), "JobDetails.IncrementalPeriod"),
            (
                lambda s: s["JobDetails"].__setitem__("CollectionOnlyTimeOutMins", 60),
                "CollectionOnlyTimeOutMins",
            ),
            (
                lambda s: s["JobDetails"].__setitem__("CollectionOnlyTimeOutHours", 1001),
                "CollectionOnlyTimeOutHours",
            ),
            (
                lambda s: s["JobDetails"].__setitem__("ShouldSendSuccessNotification", True),
                "SuccessNotification",
            ),
            (lambda s: s["JobDetails"].__setitem__("JobNmae", "typo"), "JobDetails.JobNmae"),
        ],
    )
    def test_bad_create_spec_names_the_field_and_sends_nothing(
        self, sim: Simulator, log_path: Path, mutate: Callable[[dict[str, Any]], Any], field: str
    ) -> None:
        """A spec breaking a documented rule is a ConfigError naming the field; no request, no record."""
        spec = copy.deepcopy(CREATE_SPEC)
        mutate(spec)
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
            make_service(sim.url, log_path).create(spec, reason=None)
        assert sim.request_count() == 0
        assert not log_path.exists()

    @pytest.mark.parametrize(
        ("details", "field"),
        [
            ({}, "JobDetails"),
            ({"IncrementalPeriod": 1001}, "JobDetails.IncrementalPeriod"),
            ({"Standards": ["not-a-guid"]}, "JobDetails.Standards.0"),
        ],
    )
    def test_bad_update_details_send_nothing(
        self, sim: Simulator, log_path: Path, details: dict[str, Any], field: str
    ) -> None:
        """Invalid update details are a ConfigError naming the field, with zero requests."""
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
            make_service(sim.url, log_path).update(sim.job_ids[0], details, reason=None)
        assert sim.request_count() == 0

    def test_bad_job_id_sends_nothing(self, sim: Simulator, log_path: Path) -> None:
        """A job id that is not a GUID is refused before any request or record."""
        with pytest.raises(ConfigError, match="not a GUID"):
            make_service(sim.url, log_path).delete("job-42", reason=None)
        assert sim.request_count() == 0
        assert not log_path.exists()


@pytest.mark.integration
class TestFailClosed:
    @pytest.fixture(params=["dev-full", "parent-is-a-file"])
    def broken_path(self, request: pytest.FixtureRequest, tmp_path: Path) -> Path:
        if request.param == "dev-full":
            return Path("/dev/full")
        (tmp_path / "plain-file").write_text("x")
        return tmp_path / "plain-file" / "audit.log"

    @pytest.mark.parametrize("action", ["create", "update", "delete"])
    def test_unwritable_log_refuses_the_mutation_with_zero_requests(
        self, sim: Simulator, broken_path: Path, action: str
    ) -> None:
        """When the intent cannot be written, AuditError is raised and no request reaches CCS at all."""
        service = make_service(sim.url, broken_path)
        with pytest.raises(AuditError):
            if action == "create":
                service.create(CREATE_SPEC, reason="x")
            elif action == "update":
                service.update(sim.job_ids[0], UPDATE_DETAILS, reason="x")
            else:
                service.delete(sim.job_ids[0], reason="x")
        assert sim.request_count() == 0

    def test_unwritable_result_says_the_mutation_succeeded(
        self, sim: Simulator, log_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """If the result cannot be written after CCS applied the change, the error says it SUCCEEDED."""
        service = make_service(sim.url, log_path)

        def broken_result(*args: Any, **kwargs: Any) -> Any:
            raise AuditError("cannot write audit log: No space left on device")

        monkeypatch.setattr(service._audit, "result", broken_result)
        job_id = sim.job_ids[0]
        with pytest.raises(AuditError, match=r"update SUCCEEDED in CCS.*has no result"):
            service.update(job_id, {"JobDescription": "changed anyway"})
        assert sim.job_snapshot(job_id)["JobConfigDetails"]["JobDescription"] == "changed anyway"

    def test_unwritable_result_after_a_refusal_says_it_failed(
        self, sim: Simulator, log_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """If the result of a refused delete cannot be written, the error says the delete FAILED."""
        service = make_service(sim.url, log_path)
        monkeypatch.setattr(
            service._audit, "result", lambda *a, **k: (_ for _ in ()).throw(AuditError("disk full"))
        )
        system_job = next(j for j in sim.job_ids if sim.job_snapshot(j)["JobProperties"]["IsSystemJob"])
        with pytest.raises(AuditError, match="delete FAILED in CCS"):
            service.delete(system_job)


@pytest.mark.integration
class TestAgainstSimulator:
    def test_create_update_delete_round_trip(self, sim: Simulator, log_path: Path) -> None:
        """Create, update and delete against the simulator leave six records that verify, with a real diff."""
        service = make_service(sim.url, log_path)
        job_id = service.create(CREATE_SPEC, reason="CHG-9")
        service.update(job_id, {"JobName": "Renamed_Job"}, reason="CHG-9")
        service.delete(job_id, reason="CHG-9")
        records = read_records(log_path)
        assert [(r["event"]["action"], r["audit"]["phase"]) for r in records] == [
            ("job.create", "intent"),
            ("job.create", "result"),
            ("job.update", "intent"),
            ("job.update", "result"),
            ("job.delete", "intent"),
            ("job.delete", "result"),
        ]
        assert all(r["event"].get("outcome", "success") == "success" for r in records)
        update_diff = records[3]["change"]["diff"]
        assert update_diff["JobProperties.Name"] == {"before": "Test_Job11", "after": "Renamed_Job"}
        assert records[5]["ccs"]["job"]["name"] == "Renamed_Job"
        assert job_id not in sim.job_ids
        assert verify(log_path).ok

    def test_keep_job_deletes_history_only(self, sim: Simulator, log_path: Path) -> None:
        """--keep-job sends DeleteJob=False: the job stays and the record says so."""
        job_id = sim.job_ids[0]
        make_service(sim.url, log_path).delete(job_id, keep_job=True)
        assert job_id in sim.job_ids
        assert read_records(log_path)[0]["change"]["requested"] == {"DeleteJob": False}

    def test_observe_tells_own_changes_from_console_changes(self, sim: Simulator, log_path: Path) -> None:
        """Against the simulator: our update is not re-recorded, a console rename and removal are."""
        service = make_service(sim.url, log_path)
        client = service._client
        job_id = sim.job_ids[0]
        poller_log = AuditLog(log_path, user_name=sim.username)  # the exporter's own instance
        first = client.get_job(job_id)
        service.update(job_id, {"JobDescription": "changed through ccs-exporter"})
        second = client.get_job(job_id)
        assert second.JobProperties.JobModifiedTime != first.JobProperties.JobModifiedTime
        poller_log.observe(job_id, first, second)
        assert len(read_records(log_path)) == 2
        sim.set_job_name(job_id, "Renamed in the console")
        third = client.get_job(job_id)
        poller_log.observe(job_id, second, third)
        sim.remove_job(job_id)
        poller_log.observe(job_id, third, None)
        records = read_records(log_path)
        assert [r["event"]["action"] for r in records[2:]] == ["job.changed", "job.deleted"]
        assert records[2]["change"]["diff"]["JobProperties.Name"]["after"] == "Renamed in the console"
        assert all(r["audit"]["origin"] == "observed" for r in records[2:])
        assert verify(log_path).ok

    @pytest.mark.parametrize("fault", ["hang", "drop_connections"])
    def test_fault_on_the_mutation_gives_unknown(self, sim: Simulator, log_path: Path, fault: str) -> None:
        """A mutation CCS received but never answered (hang, dropped connection) is outcome unknown."""

        def fault_after_reading(endpoint: str, code: str, seconds: float) -> None:
            if endpoint == "job":  # the before-read is done: break CCS for the PATCH that follows
                setattr(sim.faults, fault, True)

        service = make_service(sim.url, log_path, timeout=0.5, observer=fault_after_reading)
        try:
            with pytest.raises(UnavailableError, match="may or may not"):
                service.update(sim.job_ids[0], {"JobDescription": "sent into the void"})
        finally:
            setattr(sim.faults, fault, False)
        result = read_records(log_path)[-1]
        assert (result["audit"]["phase"], result["event"]["outcome"]) == ("result", "unknown")

    def test_hang_before_sending_is_failure(self, sim: Simulator, log_path: Path) -> None:
        """When CCS hangs on the before-read, the update is never sent and the outcome is failure."""
        service = make_service(sim.url, log_path, timeout=0.5)
        service._client.authenticate()
        sim.faults.hang = True
        try:
            with pytest.raises(UnavailableError):
                service.delete(sim.job_ids[0])
        finally:
            sim.faults.hang = False
        assert read_records(log_path)[-1]["event"]["outcome"] == "failure"
        assert sim.request_count("delete_job") == 0


# --- the command line -------------------------------------------------------------------------------


def run_cli(
    args: list[str], sim: Simulator | None, audit_path: Path | str | None, timeout: float = 30.0, **env: str
) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("CCS_EXPORTER_")}
    environment.update(
        {
            "CCS_EXPORTER_URL": sim.url if sim is not None else "http://127.0.0.1:9",
            "CCS_EXPORTER_USERNAME": sim.username if sim is not None else "CCS\\demo",
            "CCS_EXPORTER_PASSWORD": PASSWORD,
            "CCS_EXPORTER_LOG_LEVEL": "debug",
            "CCS_EXPORTER_LOG_FORMAT": "json",
            "PYTHONPATH": str(Path(__file__).parent.parent),
        }
    )
    if audit_path is not None:
        environment["CCS_EXPORTER_AUDIT_LOG"] = str(audit_path)
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-m", "ccs_exporter", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
        check=False,
    )


@pytest.mark.integration
class TestJobsCommand:
    def test_create_prints_the_job_id(self, sim: Simulator, tmp_path: Path, log_path: Path) -> None:
        """`jobs create -f SPEC` prints the new JobID, exits 0 and leaves a verifiable log."""
        spec = tmp_path / "spec.yaml"
        spec.write_text(json.dumps(CREATE_SPEC))
        done = run_cli(["jobs", "create", "-f", str(spec), "--reason", "CHG-7"], sim, log_path)
        assert done.returncode == 0, done.stderr
        job_id = done.stdout.strip()
        assert job_id in sim.job_ids
        assert read_records(log_path)[1]["ccs"]["job"]["id"] == job_id
        assert read_records(log_path)[1]["reason"] == "CHG-7"

    def test_bad_spec_exits_2_naming_the_field_with_zero_requests(
        self, sim: Simulator, tmp_path: Path, log_path: Path
    ) -> None:
        """A spec with AssetTimeOut out of range exits 2, names the field, and sends nothing."""
        spec = tmp_path / "details.json"
        spec.write_text(json.dumps({"AssetTimeOut": 900}))
        done = run_cli(["jobs", "update", sim.job_ids[0], "-f", str(spec)], sim, log_path)
        assert done.returncode == 2
        assert "JobDetails.AssetTimeOut" in done.stderr
        assert sim.request_count() == 0
        assert not log_path.exists()

    def test_missing_audit_log_setting_exits_2(self, sim: Simulator) -> None:
        """Without CCS_EXPORTER_AUDIT_LOG a mutation is refused as a configuration error, nothing sent."""
        done = run_cli(["jobs", "delete", sim.job_ids[0]], sim, None)
        assert done.returncode == 2
        assert "CCS_EXPORTER_AUDIT_LOG" in done.stderr
        assert sim.request_count() == 0

    def test_device_as_audit_log_exits_2_with_zero_requests(self, sim: Simulator) -> None:
        """/dev/full as the audit log (no record could ever be kept) refuses the delete at start: exit 2,
        one line naming the setting, no request."""
        done = run_cli(["jobs", "delete", sim.job_ids[0]], sim, "/dev/full")
        assert done.returncode == 2
        assert "CCS_EXPORTER_AUDIT_LOG" in done.stderr and "not a regular file" in done.stderr
        assert sim.request_count() == 0

    def test_refused_delete_exits_1(self, sim: Simulator, log_path: Path) -> None:
        """Deleting another owner's job exits 1 with CCS's refusal, recorded as failure."""
        other = next(
            j for j in sim.job_ids if sim.job_snapshot(j)["JobProperties"]["Owner"] == "CCS\\auditor"
        )
        done = run_cli(["jobs", "delete", other], sim, log_path)
        assert done.returncode == 1
        assert "403" in done.stderr
        assert read_records(log_path)[-1]["event"]["outcome"] == "failure"

    def test_secrets_never_appear_in_log_stdout_or_stderr(
        self, sim: Simulator, tmp_path: Path, log_path: Path
    ) -> None:
        """The password, its Base64 form and the issued tokens appear in no output, even at debug level."""
        spec = copy.deepcopy(CREATE_SPEC)
        spec["JobDetails"]["ShouldSendFailureNotification"] = True
        spec["JobDetails"]["FailureNotification"] = {
            "ToEmailAddress": "ops@example.com",
            "Subject": "job failed",
            "Body": f"login with {PASSWORD} if needed",
        }
        path = tmp_path / "spec.json"
        path.write_text(json.dumps(spec))
        outputs = []
        done = run_cli(["jobs", "create", "-f", str(path)], sim, log_path)
        assert done.returncode == 0, done.stderr
        outputs += [done.stdout, done.stderr]
        job_id = done.stdout.strip()
        for args in (["jobs", "update", job_id, "-f", str(path)], ["jobs", "delete", job_id]):
            done = run_cli(args, sim, log_path)
            outputs += [done.stdout, done.stderr]
        tokens = list(sim._tokens._access) + list(sim._tokens._refresh)  # no public accessor
        assert tokens, "the simulator issued no tokens"
        canaries = [PASSWORD, base64.b64encode(PASSWORD.encode()).decode(), *tokens]
        everything = "\n".join([*outputs, log_path.read_text(encoding="utf-8")])
        for canary in canaries:
            assert canary not in everything
        assert "ops@example.com" in log_path.read_text(encoding="utf-8")


@pytest.mark.integration
class TestAuditVerifyCommand:
    def test_intact_log_exits_0(self, sim: Simulator, log_path: Path) -> None:
        """`audit verify` on an untouched log prints that it is intact and exits 0."""
        make_service(sim.url, log_path).delete(sim.job_ids[0], keep_job=True)
        done = run_cli(["audit", "verify", str(log_path)], None, None)
        assert done.returncode == 0
        assert "intact (2 records)" in done.stdout

    def test_tampered_log_exits_1_naming_the_line(self, sim: Simulator, log_path: Path) -> None:
        """`audit verify` on an edited log exits 1 and names the first bad line."""
        service = make_service(sim.url, log_path)
        service.delete(sim.job_ids[0], keep_job=True)
        service.delete(sim.job_ids[1], keep_job=True)
        lines = log_path.read_text().splitlines(keepends=True)
        lines[2] = lines[2].replace('"reason":null', '"reason":"approved"')
        log_path.write_text("".join(lines))
        done = run_cli(["audit", "verify", str(log_path)], None, None)
        assert done.returncode == 1
        assert "line 3: record was edited" in done.stderr

    def test_missing_file_exits_2(self, tmp_path: Path) -> None:
        """`audit verify` on a missing file is a usage error: exit 2, saying there is no such file."""
        done = run_cli(["audit", "verify", str(tmp_path / "none.log")], None, None)
        assert done.returncode == 2
        assert "no such file" in done.stderr


@pytest.mark.integration
class TestCrashSafety:
    def test_sigkill_at_random_points_never_loses_an_intent(self, sim: Simulator, tmp_path: Path) -> None:
        """Killing `jobs update` at random moments never leaves a change CCS saw without its intent record.

        After each kill the log either verifies, or verify reports only the damage a crash can leave: an
        intent without a result, or a torn last line.
        """
        job_id = sim.job_ids[0]
        rng = random.Random(4)
        iterations, seen_by_ccs, killed_after_send, clean = 36, 0, 0, 0
        # Slow CCS down so the requests (token, before-read, PATCH, after-read) span most of the command's
        # life and the kills land in every phase, not only in the interpreter's start-up.
        sim.faults.latency_seconds = 0.08
        # Learn how long a whole command takes, to spread the kills over its lifetime.
        warm = tmp_path / "warm.json"
        warm.write_text(json.dumps({"JobDescription": "warm-up"}))
        started = time.monotonic()
        assert (
            run_cli(["jobs", "update", job_id, "-f", str(warm)], sim, tmp_path / "warm.log").returncode == 0
        )
        duration = time.monotonic() - started
        for number in range(iterations):
            marker = f"kill-test-{number}"
            spec = tmp_path / f"spec-{number}.json"
            spec.write_text(json.dumps({"JobDescription": marker}))
            audit_path = tmp_path / f"audit-{number}.log"
            sim.reset_requests()
            process = subprocess.Popen(
                [sys.executable, "-m", "ccs_exporter", "jobs", "update", job_id, "-f", str(spec)],
                env={
                    **{k: v for k, v in os.environ.items() if not k.startswith("CCS_EXPORTER_")},
                    "CCS_EXPORTER_URL": sim.url,
                    "CCS_EXPORTER_USERNAME": sim.username,
                    "CCS_EXPORTER_PASSWORD": PASSWORD,
                    "CCS_EXPORTER_AUDIT_LOG": str(audit_path),
                    "PYTHONPATH": str(Path(__file__).parent.parent),
                },
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if number % 3 == 0:  # anywhere in the command's life, start-up included
                time.sleep(rng.uniform(0.4, 1.0) * duration)
            else:  # once the intent is on disk, so a busy machine's slow start-up cannot hide the requests
                deadline = time.monotonic() + 10 * duration
                while process.poll() is None and time.monotonic() < deadline:
                    if audit_path.exists() and audit_path.stat().st_size > 0:
                        break
                    time.sleep(0.005)
                time.sleep(rng.uniform(0.0, 0.5))
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            changed = sim.request_count("update_job") > 0
            records = read_records_tolerant(audit_path)
            intents = [r for r in records if r["audit"]["phase"] == "intent"]
            if changed:
                seen_by_ccs += 1
                assert any(r["change"]["requested"]["JobDescription"] == marker for r in intents), number
                if not any(r["audit"]["phase"] == "result" for r in records):
                    killed_after_send += 1
            if not audit_path.exists():
                assert not changed
                continue
            result = verify(audit_path)
            if result.ok:
                clean += 1
                continue
            # A kill between a record and the head update leaves the head one record behind (or missing).
            crash_damage = (
                "intent without a result",
                "torn last line",
                "appended without updating",
                "missing",
            )
            for finding in result.findings:
                assert any(words in finding.problem for words in crash_damage), finding
                assert finding.line is None or finding.line >= len(records), result
        print(
            f"kill test: {iterations} kills, {seen_by_ccs} reached CCS, {killed_after_send} before the result"
        )
        assert seen_by_ccs > 0


def read_records_tolerant(path: Path) -> list[dict[str, Any]]:
    """Complete records of a log a crash may have torn at the end."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").split("\n")[:-1]:
        records.append(json.loads(line))
    return records
