"""The simulator's run and abort operations (``POST /jobs/{id}``), over real HTTP on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from test_simulator import (
    API,
    COMPLETED,
    EXECUTING,
    NEVER_RUN,
    OTHER_OWNER,
    PENDING,
    REPORT,
    SYSTEM,
    UNKNOWN,
    Api,
)

from ccs_exporter.models import JobRuns
from ccs_exporter.simulator import Simulator

pytestmark = pytest.mark.integration


@pytest.fixture
def api(simulator: Simulator) -> Iterator[Api]:
    client = Api(simulator)
    yield client
    client.session.close()


def operate(api: Api, target: str, body: Any) -> requests.Response:
    return api.request("POST", f"/jobs/{target}", json=body)


def latest_run(api: Api, job_id: str) -> dict[str, Any]:
    run: dict[str, Any] = api.runs(job_id, count=1)["JobStatusInfo"][0]
    return run


class TestExecute:
    def test_execute_queues_a_pending_run(self, api: Api) -> None:
        """Execute answers 200 with the new run's id; jobruns and LastRun* show it pending."""
        total = api.runs(COMPLETED)["TotalJobRuns"]
        response = operate(api, COMPLETED, {"Operation": "execute"})
        assert response.status_code == 200
        answer = response.json()
        assert answer["JobID"] == COMPLETED and answer["Status"] == 1
        run = latest_run(api, COMPLETED)
        assert run["JobRunID"] == answer["JobRunID"]
        assert run["Status"] == 1 and run["JobEndTime"] is None
        assert api.runs(COMPLETED)["TotalJobRuns"] == total + 1
        properties = api.job(COMPLETED)["JobProperties"]
        assert properties["LastRunStatus"] == 1
        assert properties["LastRunDate"] == run["JobStartTime"]
        JobRuns.model_validate(api.runs(COMPLETED))

    @pytest.mark.parametrize("operation", ["EXECUTE", "Execute", " execute "])
    def test_operation_names_and_keys_ignore_case(self, api: Api, operation: str) -> None:
        """The operation name and the body's key match without regard to case."""
        assert operate(api, NEVER_RUN, {"operation": operation}).status_code == 200
        assert latest_run(api, NEVER_RUN)["Status"] == 1

    @pytest.mark.parametrize("job_id", [EXECUTING, PENDING])
    def test_a_job_already_running_is_refused(self, api: Api, job_id: str) -> None:
        """A job whose latest run is pending or executing gets 400 and no second run."""
        total = api.runs(job_id)["TotalJobRuns"]
        response = operate(api, job_id, {"Operation": "execute"})
        assert response.status_code == 400
        assert "already running" in response.json()["Message"]
        assert api.runs(job_id)["TotalJobRuns"] == total

    def test_second_execute_is_refused_until_the_run_ends(self, api: Api) -> None:
        """Execute twice: the second is 400; after the run finishes it is accepted again."""
        assert operate(api, COMPLETED, {"Operation": "execute"}).status_code == 200
        assert operate(api, COMPLETED, {"Operation": "execute"}).status_code == 400
        api.sim.finish_run(COMPLETED, 4)
        assert operate(api, COMPLETED, {"Operation": "execute"}).status_code == 200

    def test_permissions_follow_update(self, api: Api) -> None:
        """A system job is 403 (as update); another owner's job and a report job may be run."""
        response = operate(api, SYSTEM, {"Operation": "execute"})
        assert response.status_code == 403
        assert response.json()["Message"]
        assert operate(api, OTHER_OWNER, {"Operation": "execute"}).status_code == 200
        assert operate(api, REPORT, {"Operation": "execute"}).status_code == 200

    def test_unknown_and_invalid_ids(self, api: Api) -> None:
        """An unknown GUID is 404 naming it; a malformed one 400."""
        response = operate(api, UNKNOWN, {"Operation": "execute"})
        assert response.status_code == 404
        assert UNKNOWN in response.json()["Message"]
        assert operate(api, "not-a-guid", {"Operation": "execute"}).status_code == 400


class TestAbort:
    def test_abort_ends_a_run_in_progress(self, api: Api) -> None:
        """Aborting the executing run answers 200; the run ends as aborted (7) with an end time."""
        run_id = latest_run(api, EXECUTING)["JobRunID"]
        response = operate(api, run_id, {"Operation": "abort"})
        assert response.status_code == 200
        assert response.json()["Status"] == 7 and response.json()["JobRunID"] == run_id
        run = latest_run(api, EXECUTING)
        assert run["JobRunID"] == run_id
        assert run["Status"] == 7 and run["JobEndTime"] is not None
        assert any(api.sim.username in message["Message"] for message in run["JobMessages"])
        assert api.job(EXECUTING)["JobProperties"]["LastRunStatus"] == 7

    def test_abort_of_a_queued_run_then_run_again(self, api: Api) -> None:
        """A run queued by execute can be aborted (ABORT in capitals), and the job run again."""
        run_id = operate(api, COMPLETED, {"Operation": "execute"}).json()["JobRunID"]
        assert operate(api, run_id.upper(), {"OPERATION": "ABORT"}).status_code == 200
        assert operate(api, COMPLETED, {"Operation": "execute"}).status_code == 200

    def test_a_run_not_in_progress_is_400(self, api: Api) -> None:
        """A finished run, or one aborted already, cannot be aborted: 400 with a Message."""
        finished = latest_run(api, COMPLETED)["JobRunID"]
        response = operate(api, finished, {"Operation": "abort"})
        assert response.status_code == 400
        assert "not in progress" in response.json()["Message"]
        running = latest_run(api, PENDING)["JobRunID"]
        assert operate(api, running, {"Operation": "abort"}).status_code == 200
        assert operate(api, running, {"Operation": "abort"}).status_code == 400

    def test_a_job_id_is_not_a_run_id(self, api: Api) -> None:
        """Abort takes a JobRunID: a job's id, or an unknown GUID, is 404."""
        assert operate(api, EXECUTING, {"Operation": "abort"}).status_code == 404
        assert operate(api, UNKNOWN, {"Operation": "abort"}).status_code == 404

    def test_a_system_jobs_run_is_403(self, api: Api) -> None:
        """Aborting a run of a system job is refused as updating it is: 403."""
        run_id = latest_run(api, SYSTEM)["JobRunID"]
        assert operate(api, run_id, {"Operation": "abort"}).status_code == 403


class TestOperationRequests:
    @pytest.mark.parametrize(
        "body",
        [{}, {"Operation": ""}, {"Operation": "run"}, {"Operation": 1}, {"Op": "execute"}, [], "execute"],
    )
    def test_bad_operations_are_400(self, api: Api, body: Any) -> None:
        """A missing, empty, unknown or mistyped operation is 400 with a Message; nothing runs."""
        total = api.runs(COMPLETED)["TotalJobRuns"]
        response = operate(api, COMPLETED, body)
        assert response.status_code == 400
        assert response.json()["Message"]
        assert api.runs(COMPLETED)["TotalJobRuns"] == total

    def test_unparseable_body_is_400(self, api: Api) -> None:
        """A body that is not JSON is a parse error, as on create and update."""
        response = api.request("POST", f"/jobs/{COMPLETED}", data=b"{Operation: execute")
        assert response.status_code == 400

    def test_needs_a_token(self, api: Api) -> None:
        """Without a bearer token the answer is 401 and nothing runs."""
        response = requests.post(
            f"{api.sim.url}{API}/jobs/{COMPLETED}", json={"Operation": "execute"}, timeout=5
        )
        assert response.status_code == 401
        assert latest_run(api, COMPLETED)["Status"] == 4

    @pytest.mark.parametrize("status", [202, 204])
    def test_answer_without_a_body_on_request(self, api: Api, status: int) -> None:
        """With operation_status 202 or 204 run and abort answer that status with an empty body."""
        control = requests.post(
            f"{api.sim.url}/_simulator/faults", json={"operation_status": status}, timeout=5
        )
        assert control.status_code == 200
        response = operate(api, COMPLETED, {"Operation": "execute"})
        assert response.status_code == status and response.content == b""
        run_id = latest_run(api, COMPLETED)["JobRunID"]
        assert latest_run(api, COMPLETED)["Status"] == 1
        aborted = operate(api, run_id, {"Operation": "abort"})
        assert aborted.status_code == status and aborted.content == b""
        assert operate(api, COMPLETED, {"Operation": "nonsense"}).status_code == 400

    def test_operation_status_accepts_only_2xx_choices(self, api: Api) -> None:
        """operation_status other than 200, 202 or 204 is refused by the control API."""
        for value in (201, 500, "204", True):
            response = requests.post(
                f"{api.sim.url}/_simulator/faults", json={"operation_status": value}, timeout=5
            )
            assert response.status_code == 400

    def test_counted_as_job_operation(self, api: Api) -> None:
        """Run and abort requests are counted under "job_operation"."""
        api.sim.reset_requests()
        operate(api, COMPLETED, {"Operation": "execute"})
        operate(api, UNKNOWN, {"Operation": "abort"})
        assert api.sim.stats()["requests"] == {"job_operation": {"200": 1, "404": 1}}


class TestProgressionOfStartedRuns:
    def test_an_executed_run_progresses_to_a_final_status(self, started: Callable[..., Simulator]) -> None:
        """With runs progressing, a run started by execute goes executing and then finishes."""
        sim = started(run_interval=0.4, seed=11)
        api = Api(sim)
        job_id = sim.add_job("Run me")
        run_id = operate(api, job_id, {"Operation": "execute"}).json()["JobRunID"]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            runs = {run["JobRunID"]: run for run in api.runs(job_id)["JobStatusInfo"]}
            if runs[run_id]["JobEndTime"] is not None:
                break
            time.sleep(0.02)
        assert runs[run_id]["Status"] in (4, 5, 7)
        assert api.job(job_id)["JobProperties"]["LastRunStatus"] == runs[run_id]["Status"]
