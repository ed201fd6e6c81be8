"""The project's CcsClient against the CCS simulator over real HTTP: every endpoint, token flow and fault."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from ccs_exporter.client import CcsClient
from ccs_exporter.errors import (
    AuthError,
    BadRequestError,
    BadResponseError,
    CcsTimeoutError,
    ForbiddenError,
    NotFoundError,
    ServerError,
    UnavailableError,
)
from ccs_exporter.models import CreateJobRequest, JobDetailsUpdate, JobStatus
from ccs_exporter.simulator import Simulator

pytestmark = pytest.mark.integration

FAULTED = "7c1d5e92-2b4a-4f6e-8d3c-5a9b0e1f2c02"
EXECUTING = "5e7b9c14-3a2d-4b8f-a1e6-7c0d9f8e4d04"
NEVER_RUN = "23c59087-f3d4-4e05-a39e-3440c58e58fb"
REPORT = "e1f3a5c7-2d4b-4e6f-9a8c-0b2d4f6a8c07"
SYSTEM = "f8a0c2e4-6b8d-4f1a-8c3e-5d7f9b1d3f09"
OTHER_OWNER = "6a8c0e2f-4d6b-4a9c-9e1f-3b5d7f9b1d10"
UNKNOWN = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def client_for() -> Iterator[Callable[..., CcsClient]]:
    """Clients for a simulator (short timeouts and backoff by default); closed after the test."""
    clients: list[CcsClient] = []

    def make(sim: Simulator, **options: Any) -> CcsClient:
        options = {"timeout": 5.0, "backoff_seconds": 0.01, **options}
        client = CcsClient(sim.url, sim.username, SecretStr(sim.password), **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def create_request(name: str) -> CreateJobRequest:
    return CreateJobRequest.model_validate(
        {
            "JobType": "CollectionJob",
            "JobDetails": {
                "AssetsResolutionInfo": [
                    {
                        "Id": "d387d8b5-6278-4bcb-83c7-b55d2072d2a8",
                        "Type": "symc-csm-AssetSystem-Asset-Unix-Machine",
                    }
                ],
                "JobName": name,
                "Standards": ["6b020d29-5fe8-47d0-bd89-ccd3339a5ebe"],
                "AssetTimeOut": 30,
            },
        }
    )


class TestReads:
    def test_login_and_every_sample_job(
        self, simulator: Simulator, client_for: Callable[..., CcsClient]
    ) -> None:
        """The client logs in once and reads every sample job and its runs."""
        client = client_for(simulator)
        for job_id in simulator.job_ids:
            assert client.get_job(job_id).JobProperties.JobID == job_id
            client.get_job_runs(job_id, count=0, show_messages=True)
        assert client.logins == 1
        assert simulator.request_count("token") == 1
        assert simulator.request_count("job") == simulator.request_count("jobruns") == 12

    def test_job_runs_with_messages(self, simulator: Simulator, client_for: Callable[..., CcsClient]) -> None:
        """Runs come back with their messages and statuses."""
        runs = client_for(simulator).get_job_runs(FAULTED, count=0, show_messages=True)
        assert runs.TotalJobRuns == 3
        latest = runs.newest_first()[0]
        assert latest.status is JobStatus.FAULTED
        assert [message.Category for message in latest.JobMessages] == ["Error", "Error", "Warning"]

    def test_executing_run_is_not_finished(
        self, simulator: Simulator, client_for: Callable[..., CcsClient]
    ) -> None:
        """An executing run parses as running, with no end and no duration."""
        latest = client_for(simulator).get_job_runs(EXECUTING).JobStatusInfo[0]
        assert latest.status is JobStatus.EXECUTING
        assert (latest.is_finished, latest.duration_seconds) == (False, None)

    def test_properties_only_job(self, simulator: Simulator, client_for: Callable[..., CcsClient]) -> None:
        """A report job parses with no config details."""
        assert client_for(simulator).get_job(REPORT).JobConfigDetails is None

    def test_never_run_job(self, simulator: Simulator, client_for: Callable[..., CcsClient]) -> None:
        """The year-1 LastRunDate parses as never (None)."""
        assert client_for(simulator).get_job(NEVER_RUN).JobProperties.LastRunDate is None


class TestMutations:
    def test_create_update_delete(self, simulator: Simulator, client_for: Callable[..., CcsClient]) -> None:
        """A job created by the client can be read, renamed and deleted by it."""
        client = client_for(simulator)
        job_id = client.create_job(create_request("client job")).job_id
        assert job_id is not None
        assert client.get_job(job_id).JobProperties.JobType == "COLLECTIONJOB"
        client.update_job(job_id, JobDetailsUpdate(JobName="client job renamed"))
        assert client.get_job(job_id).JobProperties.Name == "client job renamed"
        assert client.delete_job(job_id).message is None
        with pytest.raises(NotFoundError):
            client.get_job(job_id)

    def test_delete_history_only(self, simulator: Simulator, client_for: Callable[..., CcsClient]) -> None:
        """delete_job(delete_job=False) keeps the job and empties its runs."""
        client = client_for(simulator)
        client.delete_job(FAULTED, delete_job=False)
        assert client.get_job_runs(FAULTED, count=0).TotalJobRuns == 0
        assert client.get_job(FAULTED).JobProperties.LastRunDate is None


class TestErrors:
    def test_unknown_job_is_not_found(
        self, simulator: Simulator, client_for: Callable[..., CcsClient]
    ) -> None:
        """A 404 becomes NotFoundError carrying the server's message."""
        with pytest.raises(NotFoundError) as caught:
            client_for(simulator).get_job(UNKNOWN)
        assert caught.value.status == 404
        assert "not found" in caught.value.message

    @pytest.mark.parametrize("job_id", [SYSTEM, OTHER_OWNER])
    def test_forbidden_delete(
        self, simulator: Simulator, client_for: Callable[..., CcsClient], job_id: str
    ) -> None:
        """Deleting a system job or another owner's job raises ForbiddenError."""
        with pytest.raises(ForbiddenError):
            client_for(simulator).delete_job(job_id)

    def test_duplicate_name_is_bad_request(
        self, simulator: Simulator, client_for: Callable[..., CcsClient]
    ) -> None:
        """Creating a job with an existing name raises BadRequestError with CCS's message."""
        with pytest.raises(BadRequestError) as caught:
            client_for(simulator).create_job(create_request("PCI DSS evaluation"))
        assert "already exists" in caught.value.message

    def test_unsupported_update_is_bad_request(
        self, simulator: Simulator, client_for: Callable[..., CcsClient]
    ) -> None:
        """Updating a properties-only job raises BadRequestError."""
        with pytest.raises(BadRequestError):
            client_for(simulator).update_job(REPORT, JobDetailsUpdate(JobName="x"))

    def test_server_errors_after_retries(
        self, simulator: Simulator, client_for: Callable[..., CcsClient]
    ) -> None:
        """With every request failing, a read is retried and then raises ServerError."""
        client = client_for(simulator, read_retries=2)
        client.authenticate()
        simulator.faults.error_rate = 1.0
        simulator.reset_requests()
        with pytest.raises(ServerError) as caught:
            client.get_job(FAULTED)
        assert caught.value.status == 500
        assert simulator.request_count("job") == 3

    def test_mutations_are_not_retried(
        self, simulator: Simulator, client_for: Callable[..., CcsClient]
    ) -> None:
        """A failing create is sent once."""
        client = client_for(simulator, read_retries=2)
        simulator.faults.error_rate = 1.0
        with pytest.raises(ServerError):
            client.create_job(create_request("never made"))
        assert simulator.request_count("create_job") == 1

    def test_hang_is_a_timeout(self, simulator: Simulator, client_for: Callable[..., CcsClient]) -> None:
        """A hanging CCS raises CcsTimeoutError after the client's timeout."""
        client = client_for(simulator, timeout=0.3)
        client.authenticate()
        simulator.faults.hang = True
        with pytest.raises(CcsTimeoutError):
            client.get_job(FAULTED)

    def test_malformed_json_is_a_bad_response(
        self, simulator: Simulator, client_for: Callable[..., CcsClient]
    ) -> None:
        """A truncated JSON body raises BadResponseError."""
        client = client_for(simulator)
        client.authenticate()
        simulator.faults.malformed_json = True
        with pytest.raises(BadResponseError):
            client.get_job(FAULTED)

    def test_dropped_connection_is_unavailable(
        self, simulator: Simulator, client_for: Callable[..., CcsClient]
    ) -> None:
        """A connection closed without an answer raises UnavailableError."""
        client = client_for(simulator, read_retries=1)
        client.authenticate()
        simulator.faults.drop_connections = True
        with pytest.raises(UnavailableError):
            client.get_job(FAULTED)

    def test_rejected_login_is_auth_error(
        self, simulator: Simulator, client_for: Callable[..., CcsClient]
    ) -> None:
        """A refused login raises AuthError without the password in its text."""
        simulator.faults.reject_logins = True
        with pytest.raises(AuthError) as caught:
            client_for(simulator).get_job(FAULTED)
        assert simulator.password not in str(caught.value)


class TestTokens:
    def test_revoked_tokens_mean_a_transparent_new_login(
        self, simulator: Simulator, client_for: Callable[..., CcsClient]
    ) -> None:
        """After a CCS restart the 401 leads to one new login and the call succeeds."""
        client = client_for(simulator)
        client.get_job(FAULTED)
        simulator.revoke_tokens()
        assert client.get_job(FAULTED).JobProperties.JobID == FAULTED
        assert client.logins == 2
        assert simulator.request_count("job") == 3

    def test_expiring_access_token_is_refreshed(
        self, started: Callable[..., Simulator], client_for: Callable[..., CcsClient]
    ) -> None:
        """Once the access token nears expiry the client uses the refresh token, not the password."""
        sim = started(access_token_seconds=0.5, refresh_token_seconds=60)
        client = client_for(sim)
        client.get_job(FAULTED)
        time.sleep(0.5)
        client.get_job(FAULTED)
        assert (client.logins, client.refreshes) == (1, 1)
        assert sim.request_count("job") == 2

    def test_plain_password_encoding(
        self, started: Callable[..., Simulator], client_for: Callable[..., CcsClient]
    ) -> None:
        """A simulator expecting the plain password accepts a client configured for plain."""
        sim = started(password_encoding="plain")
        assert client_for(sim, password_encoding="plain").get_job(FAULTED).JobProperties.JobID == FAULTED

    def test_password_with_plus_in_base64(
        self, started: Callable[..., Simulator], client_for: Callable[..., CcsClient]
    ) -> None:
        """The client form-encodes a Base64 password holding '+', so the login succeeds."""
        sim = started(password="Prüfung>1")
        assert client_for(sim).get_job(FAULTED).JobProperties.JobID == FAULTED
