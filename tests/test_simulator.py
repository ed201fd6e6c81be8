"""The CCS simulator over real HTTP on 127.0.0.1, driven with plain ``requests`` (not the project client)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from ccs_exporter.models import Job, JobRuns
from ccs_exporter.simulator import Simulator
from ccs_exporter.simulator.faults import RequestRecord
from ccs_exporter.simulator.samples import load_sample_document

API = "/ccs/api/v1"
COMPLETED = "3f2a7c41-8e5b-4d09-a6c3-1b7e9d2f4a01"
FAULTED = "7c1d5e92-2b4a-4f6e-8d3c-5a9b0e1f2c02"
ABORTED = "a94e0b37-4c2f-4e18-9d5a-6b8c7d0e3f03"
EXECUTING = "5e7b9c14-3a2d-4b8f-a1e6-7c0d9f8e4d04"
PENDING = "c2d4f6a8-9b1e-4d3c-8f5a-2e7b0c9d5e05"
NEVER_RUN = "23c59087-f3d4-4e05-a39e-3440c58e58fb"
REPORT = "e1f3a5c7-2d4b-4e6f-9a8c-0b2d4f6a8c07"
ASSET_IMPORT = "0d2f4b6e-8a1c-4e3b-b5d7-9f1a3c5e7b08"
SYSTEM = "f8a0c2e4-6b8d-4f1a-8c3e-5d7f9b1d3f09"
OTHER_OWNER = "6a8c0e2f-4d6b-4a9c-9e1f-3b5d7f9b1d10"
HOSTILE = "b3d5f7a9-1c3e-4a5b-8d7f-9e1b3d5f7a11"
SHAPES = "4c6e8a0b-2d4f-4b6d-9f8a-1c3e5a7c9e12"
UNKNOWN = "00000000-0000-4000-8000-000000000000"
# Its Base64 ("UHLDvGZ1bmc+MQ==") holds a "+", which an unescaped form body turns into a space.
PLUS_PASSWORD = "Prüfung>1"


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def token_request(sim: Simulator, form: dict[str, str]) -> requests.Response:
    return requests.post(sim.url + API + "/oauth/tokens", data=form, timeout=5)


def login(sim: Simulator, password: str | None = None) -> dict[str, Any]:
    """The token response of a correct, form-encoded password grant (Base64 password)."""
    form = {"grant_type": "password", "username": sim.username, "password": b64(password or sim.password)}
    response = token_request(sim, form)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


class Api:
    """A logged-in ``requests`` session against a simulator."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {login(sim)['access_token']}"

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 5)
        return self.session.request(method, self.sim.url + API + path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.get(f"/jobs/{job_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def runs(self, job_id: str, count: int = 0, messages: bool = True) -> dict[str, Any]:
        response = self.get(f"/Jobs/{job_id}/jobruns", params={"count": count, "showmessages": messages})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def create(self, body: Any) -> requests.Response:
        return self.request("POST", "/jobs", json=body)

    def update(self, body: Any) -> requests.Response:
        return self.request("PATCH", "/jobs", json=body)

    def delete(self, job_id: str, delete_job: str | None = None) -> requests.Response:
        params = {"jobid": job_id} if delete_job is None else {"jobid": job_id, "DeleteJob": delete_job}
        return self.request("DELETE", "/Jobs", params=params)


@pytest.fixture
def api(simulator: Simulator) -> Iterator[Api]:
    client = Api(simulator)
    yield client
    client.session.close()


def minimal_create(name: str = "Test_Job11", **details: Any) -> dict[str, Any]:
    """The vendor's minimal Create Job body, with extra JobDetails fields."""
    body: dict[str, Any] = {
        "JobDetails": {
            "AssetsResolutionInfo": [
                {
                    "Id": "d387d8b5-6278-4bcb-83c7-b55d2072d2a8",
                    "Type": "symc-csm-AssetSystem-Asset-Unix-Machine",
                }
            ],
            "JobDescription": "Test CER Job",
            "JobName": name,
            "Standards": ["6b020d29-5fe8-47d0-bd89-ccd3339a5ebe"],
        },
        "JobType": "CollectionEvaluationJob",
    }
    body["JobDetails"].update(details)
    return body


@pytest.mark.integration
class TestTokenEndpoint:
    def test_password_grant_with_base64_password_returns_a_token_pair(self, simulator: Simulator) -> None:
        """A form-encoded password grant with the Base64 password answers 200 with both tokens."""
        body = login(simulator)
        assert body["token_type"] == "bearer"
        assert body["expires_in"] == 3600
        assert body["refresh_token_expires_in"] == 5400
        assert len(body["access_token"]) >= 32
        assert body["access_token"] != body["refresh_token"]

    def test_tokens_are_different_on_every_login(self, simulator: Simulator) -> None:
        """Two logins get different, unpredictable tokens."""
        assert login(simulator)["access_token"] != login(simulator)["access_token"]

    def test_base64_mode_rejects_the_plain_password(self, simulator: Simulator) -> None:
        """In Base64 mode the password sent as plain text is refused with invalid_grant."""
        form = {"grant_type": "password", "username": simulator.username, "password": simulator.password}
        response = token_request(simulator, form)
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_grant"

    def test_plain_mode_accepts_the_password_as_is(self, started: Callable[..., Simulator]) -> None:
        """With password_encoding plain the password is sent unencoded, and Base64 is refused."""
        sim = started(password_encoding="plain")
        form = {"grant_type": "password", "username": sim.username, "password": sim.password}
        assert token_request(sim, form).status_code == 200
        assert token_request(sim, {**form, "password": b64(sim.password)}).status_code == 400

    def test_wrong_password_is_invalid_grant(self, simulator: Simulator) -> None:
        """A wrong password answers 400 invalid_grant, and the answer does not echo it."""
        form = {"grant_type": "password", "username": simulator.username, "password": b64("wrong-secret")}
        response = token_request(simulator, form)
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_grant"
        assert "wrong-secret" not in response.text and b64("wrong-secret") not in response.text

    def test_username_matches_case_insensitively(self, simulator: Simulator) -> None:
        """Windows account names compare without case."""
        form = {"grant_type": "password", "username": "ccs\\DEMO", "password": b64(simulator.password)}
        assert token_request(simulator, form).status_code == 200

    def test_unescaped_plus_fails_while_form_encoding_succeeds(
        self, started: Callable[..., Simulator]
    ) -> None:
        """The vendor samples' concatenated body turns the '+' of a Base64 password into a space and fails."""
        sim = started(password=PLUS_PASSWORD)
        encoded = b64(PLUS_PASSWORD)
        assert "+" in encoded
        concatenated = f"grant_type=password&username={sim.username}&password={encoded}"
        response = requests.post(
            sim.url + API + "/oauth/tokens",
            data=concatenated,
            headers={"Content-Type": "application/json"},
            timeout=5,
        )
        assert response.status_code == 400
        assert login(sim, PLUS_PASSWORD)["access_token"]

    def test_form_is_parsed_whatever_the_content_type(self, simulator: Simulator) -> None:
        """A properly escaped form sent as application/json (as the samples do) still logs in."""
        body = f"grant_type=password&username=CCS%5Cdemo&password={b64(simulator.password)}"
        response = requests.post(
            simulator.url + API + "/oauth/tokens",
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=5,
        )
        assert response.status_code == 200

    def test_refresh_grant_rotates_the_refresh_token(self, simulator: Simulator) -> None:
        """A refresh grant gives a new working pair; the used refresh token stops working."""
        first = login(simulator)
        form = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
        refreshed = token_request(simulator, form)
        assert refreshed.status_code == 200
        new_access = refreshed.json()["access_token"]
        response = requests.get(
            f"{simulator.url}{API}/jobs/{COMPLETED}",
            headers={"Authorization": f"Bearer {new_access}"},
            timeout=5,
        )
        assert response.status_code == 200
        again = token_request(simulator, form)
        assert again.status_code == 400
        assert again.json()["error"] == "invalid_grant"

    def test_unknown_refresh_token_is_invalid_grant(self, simulator: Simulator) -> None:
        """An unknown refresh token answers 400 invalid_grant."""
        response = token_request(simulator, {"grant_type": "refresh_token", "refresh_token": "made-up"})
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_grant"

    def test_expired_refresh_token_is_invalid_grant(self, started: Callable[..., Simulator]) -> None:
        """A refresh token past its lifetime answers 400 invalid_grant."""
        sim = started(refresh_token_seconds=0.2)
        refresh = login(sim)["refresh_token"]
        time.sleep(0.3)
        response = token_request(sim, {"grant_type": "refresh_token", "refresh_token": refresh})
        assert response.status_code == 400

    def test_issued_tokens_lists_access_and_refresh_tokens(self, simulator: Simulator) -> None:
        """issued_tokens holds every token handed out until they are revoked."""
        tokens = login(simulator)
        assert set(simulator.issued_tokens()) == {tokens["access_token"], tokens["refresh_token"]}
        simulator.revoke_tokens()
        assert simulator.issued_tokens() == []

    def test_unsupported_grant_type(self, simulator: Simulator) -> None:
        """A grant type other than password or refresh_token answers unsupported_grant_type."""
        response = token_request(simulator, {"grant_type": "client_credentials"})
        assert response.status_code == 400
        assert response.json()["error"] == "unsupported_grant_type"

    def test_fractional_lifetimes_are_reported_exactly(self, started: Callable[..., Simulator]) -> None:
        """A sub-second lifetime (for tests) is reported as a fraction, not rounded to 0."""
        assert login(started(access_token_seconds=0.5))["expires_in"] == 0.5


@pytest.mark.integration
class TestAuthentication:
    @pytest.mark.parametrize(
        "headers",
        [{}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic Q0NTXGRlbW86eA=="}],
        ids=["missing", "unknown", "not-bearer"],
    )
    def test_api_calls_without_a_valid_token_get_401(
        self, simulator: Simulator, headers: dict[str, str]
    ) -> None:
        """A missing, unknown or non-bearer token answers 401 with a JSON Message."""
        response = requests.get(f"{simulator.url}{API}/jobs/{COMPLETED}", headers=headers, timeout=5)
        assert response.status_code == 401
        assert response.json()["Message"]
        assert response.headers["WWW-Authenticate"] == "Bearer"

    def test_expired_access_token_gets_401(self, started: Callable[..., Simulator]) -> None:
        """An access token past its lifetime answers 401."""
        sim = started(access_token_seconds=0.2)
        headers = {"Authorization": f"Bearer {login(sim)['access_token']}"}
        url = f"{sim.url}{API}/jobs/{COMPLETED}"
        assert requests.get(url, headers=headers, timeout=5).status_code == 200
        time.sleep(0.3)
        assert requests.get(url, headers=headers, timeout=5).status_code == 401

    def test_revoke_tokens_invalidates_access_and_refresh_tokens(self, simulator: Simulator) -> None:
        """After revoke_tokens (a CCS restart) both tokens are refused; a new login works."""
        tokens = login(simulator)
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        simulator.revoke_tokens()
        assert (
            requests.get(f"{simulator.url}{API}/jobs/{COMPLETED}", headers=headers, timeout=5).status_code
            == 401
        )
        form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
        assert token_request(simulator, form).status_code == 400
        assert login(simulator)["access_token"]


@pytest.mark.integration
class TestSearchJob:
    def test_returns_properties_and_config(self, api: Api) -> None:
        """A CER job answers its properties and config details, as in the search-by-id sample."""
        body = api.job(NEVER_RUN)
        props = body["JobProperties"]
        assert props["JobType"] == "CHAINED_EVALUATIONJOB"
        assert props["Name"] == "CreateJob_FreshCollectionEvaluation"
        assert props["LastRunDate"] == "0001-01-01T00:00:00"
        assert props["LastRunStatus"] == 0
        assert props["Owner"] == "CCS\\demo"
        assert body["JobConfigDetails"]["JobName"] == props["Name"]
        # The sample's StartDate shape (+05:30, milliseconds), moved past CapturedAt: not yet due.
        assert body["JobConfigDetails"]["Schedule"]["StartDate"] == "2026-12-18T21:14:27.513+05:30"
        assert body["JobConfigDetails"]["Schedule"]["RepeatDays"] == 50

    @pytest.mark.parametrize("job_id", [REPORT, ASSET_IMPORT, SYSTEM])
    def test_other_job_types_answer_properties_only(self, api: Api, job_id: str) -> None:
        """Jobs other than CER/collection/evaluation have JobConfigDetails null."""
        body = api.job(job_id)
        assert body["JobConfigDetails"] is None
        assert body["JobProperties"]["JobType"] not in (
            "CHAINED_EVALUATIONJOB",
            "COLLECTIONJOB",
            "EVALUATIONJOB",
        )

    def test_system_job_is_flagged(self, api: Api) -> None:
        """The system sample job has IsSystemJob true."""
        assert api.job(SYSTEM)["JobProperties"]["IsSystemJob"] is True

    def test_non_guid_is_400(self, api: Api) -> None:
        """A job id that is not a GUID answers 400 "JobID is invalid."."""
        response = api.get("/jobs/not-a-guid")
        assert response.status_code == 400
        assert response.json() == {"Message": "JobID is invalid."}

    def test_unknown_job_is_404_naming_the_id(self, api: Api) -> None:
        """An unknown GUID answers 404 with the documented message."""
        response = api.get(f"/jobs/{UNKNOWN}")
        assert response.status_code == 404
        assert response.json() == {"Message": f"Job for specified JobID '{UNKNOWN}' not found."}

    def test_paths_are_case_insensitive_with_trailing_slash(self, api: Api) -> None:
        """Mixed-case paths, an upper-case GUID and a trailing slash reach the same job."""
        response = api.session.get(f"{api.sim.url}/CCS/Api/V1/JOBS/{COMPLETED.upper()}/", timeout=5)
        assert response.status_code == 200
        assert response.json()["JobProperties"]["JobID"] == COMPLETED

    def test_hostile_name_round_trips(self, api: Api) -> None:
        """Quotes, backslashes, a newline and non-ASCII in a name survive JSON intact."""
        name = api.job(HOSTILE)["JobProperties"]["Name"]
        assert name == 'Prüfung "Q4" C:\\Jobs\\new\nline \u2013 監査'

    def test_mixed_datetime_shapes_are_emitted(self, api: Api) -> None:
        """The DateTime sample job shows 7-digit fractions with -08:00 and +05:30 offsets."""
        props = api.job(SHAPES)["JobProperties"]
        assert props["JobCreationTime"] == "2026-01-18T02:14:27.5120788-08:00"
        assert props["JobModifiedTime"].endswith("+05:30")

    def test_sample_payloads_are_reproducible(self, api: Api, started: Callable[..., Simulator]) -> None:
        """Two simulators serve byte-identical sample jobs and runs (golden tests can rely on it)."""
        other = Api(started(seed=123))
        for job_id in api.sim.job_ids:
            assert api.get(f"/jobs/{job_id}").content == other.get(f"/jobs/{job_id}").content
            path = f"/jobs/{job_id}/jobruns?count=0&showmessages=true"
            assert api.get(path).content == other.get(path).content


@pytest.mark.integration
class TestJobRuns:
    def test_defaults_to_one_run_without_messages(self, api: Api) -> None:
        """Without parameters: the newest run only, JobMessages null but MessageCount kept."""
        body = api.get(f"/Jobs/{FAULTED}/jobruns").json()
        assert body["TotalJobRuns"] == 3
        assert body["JobID"] == FAULTED
        (run,) = body["JobStatusInfo"]
        assert run["Status"] == 5
        assert run["JobMessages"] is None
        assert run["MessageCount"] == 3

    def test_count_zero_returns_all_runs_newest_first(self, api: Api) -> None:
        """count=0 returns every run, newest first."""
        runs = api.runs(SHAPES)["JobStatusInfo"]
        assert [run["Status"] for run in runs] == [5, 5, 5, 4]
        starts = [run.JobStartTime for run in JobRuns.model_validate({"JobStatusInfo": runs}).JobStatusInfo]
        assert starts == sorted(starts, reverse=True)

    def test_messages_carry_categories(self, api: Api) -> None:
        """showmessages=true includes messages of the Error, Warning and Information categories."""
        run = api.runs(SHAPES, count=1)["JobStatusInfo"][0]
        assert [message["Category"] for message in run["JobMessages"]] == ["Error", "Warning", "Information"]
        assert run["MessageCount"] == 3

    def test_query_keys_are_case_insensitive(self, api: Api) -> None:
        """COUNT and ShowMessages work like count and showmessages."""
        body = api.get(f"/jobs/{FAULTED}/JobRuns?COUNT=2&ShowMessages=True").json()
        assert len(body["JobStatusInfo"]) == 2
        assert body["JobStatusInfo"][0]["JobMessages"]

    def test_executing_job_has_an_open_latest_run(self, api: Api) -> None:
        """The executing sample: latest run status 2 without an end, an older run finished."""
        latest, older = api.runs(EXECUTING)["JobStatusInfo"]
        assert (latest["Status"], latest["JobEndTime"]) == (2, None)
        assert older["Status"] == 4 and older["JobEndTime"]
        assert api.job(EXECUTING)["JobProperties"]["LastRunStatus"] == 2

    def test_pending_job_has_a_queued_latest_run(self, api: Api) -> None:
        """The pending sample: latest run status 1 without an end."""
        latest = api.runs(PENDING, count=1)["JobStatusInfo"][0]
        assert (latest["Status"], latest["JobEndTime"]) == (1, None)

    def test_never_run_job_has_no_runs(self, api: Api) -> None:
        """A job that never ran answers TotalJobRuns 0 and an empty list."""
        body = api.runs(NEVER_RUN)
        assert (body["TotalJobRuns"], body["JobStatusInfo"]) == (0, [])

    @pytest.mark.parametrize("query", ["count=-1", "count=two", "showmessages=maybe"])
    def test_bad_parameters_are_400(self, api: Api, query: str) -> None:
        """A negative or non-numeric count, or a non-boolean showmessages, answers 400."""
        assert api.get(f"/Jobs/{COMPLETED}/jobruns?{query}").status_code == 400

    def test_bad_and_unknown_ids(self, api: Api) -> None:
        """A non-GUID answers 400, an unknown GUID 404."""
        assert api.get("/Jobs/xyz/jobruns").json() == {"Message": "JobID is invalid."}
        assert api.get(f"/Jobs/{UNKNOWN}/jobruns").status_code == 404


@pytest.mark.integration
class TestCreateJob:
    def test_minimal_vendor_body_creates_a_never_run_job_owned_by_the_user(self, api: Api) -> None:
        """The vendor's minimal body answers 200 with a JobID; the job then appears in search."""
        response = api.create(minimal_create())
        assert response.status_code == 200
        job_id = response.json()["JobID"]
        assert job_id in api.sim.job_ids
        props = api.job(job_id)["JobProperties"]
        assert props["JobType"] == "CHAINED_EVALUATIONJOB"
        assert props["Owner"] == api.sim.username
        assert props["LastRunDate"] == "0001-01-01T00:00:00"
        assert props["IsSystemJob"] is False

    @pytest.mark.parametrize(
        "fixture",
        [
            "create_job_request.json",
            "create_job_request_run_now.json",
            "create_job_request_scheduled.json",
            "create_job_request_multiple_assets.json",
            "create_job_request_notifications.json",
        ],
    )
    def test_every_vendor_sample_body_is_accepted(
        self, api: Api, load_fixture: Callable[[str], Any], fixture: str
    ) -> None:
        """The five sample bodies of the Create Job page (string booleans included) are accepted."""
        response = api.create(load_fixture(fixture))
        assert response.status_code == 200, response.text

    def test_run_now_starts_a_pending_run(self, api: Api, load_fixture: Callable[[str], Any]) -> None:
        """A job created with Schedule.RunNow true has a pending run straight away."""
        job_id = api.create(load_fixture("create_job_request_run_now.json")).json()["JobID"]
        assert api.runs(job_id)["JobStatusInfo"][0]["Status"] == 1

    @pytest.mark.parametrize(
        ("job_type", "internal"),
        [("CollectionJob", "COLLECTIONJOB"), ("EvaluationJob", "EVALUATIONJOB")],
    )
    def test_job_types_map_to_internal_names(self, api: Api, job_type: str, internal: str) -> None:
        """Create-time job types appear under their internal names in search."""
        body = {**minimal_create(f"typed {job_type}"), "JobType": job_type}
        job_id = api.create(body).json()["JobID"]
        assert api.job(job_id)["JobProperties"]["JobType"] == internal

    def test_job_type_is_case_sensitive(self, api: Api) -> None:
        """A JobType in the wrong case is not supported."""
        response = api.create({**minimal_create(), "JobType": "collectionjob"})
        assert response.status_code == 400
        assert response.json() == {"Message": "Given job type 'collectionjob' not supported."}

    @pytest.mark.parametrize("missing", ["JobType", "JobDetails"])
    def test_null_type_or_details_is_400(self, api: Api, missing: str) -> None:
        """A missing JobType or JobDetails answers the documented null-input message."""
        body = minimal_create()
        body[missing] = None
        response = api.create(body)
        assert response.status_code == 400
        assert response.json()["Message"] == "Invalid input data. Either JobType or JobDetails is null."

    @pytest.mark.parametrize("field", ["JobName", "AssetsResolutionInfo", "Standards"])
    def test_mandatory_fields(self, api: Api, field: str) -> None:
        """Each mandatory JobDetails field, when missing, answers 400 naming it."""
        body = minimal_create()
        del body["JobDetails"][field]
        response = api.create(body)
        assert response.status_code == 400
        assert field in response.json()["Message"]

    @pytest.mark.parametrize(
        ("field", "bad", "good"),
        [
            ("AssetTimeOut", 0, 1),
            ("AssetTimeOut", 501, 500),
            ("IncrementalPeriod", 101, 100),
            ("IncrementalPeriod", 0, 1),
            ("CollectionOnlyTimeOutHours", 1001, 1000),
            ("CollectionOnlyTimeOutMins", 60, 59),
        ],
    )
    def test_ranges(self, api: Api, field: str, bad: int, good: int) -> None:
        """Values outside the documented ranges answer 400 naming the field; the limits are accepted."""
        response = api.create(minimal_create(f"range {field} {bad}", **{field: bad}))
        assert response.status_code == 400
        assert field in response.json()["Message"]
        assert api.create(minimal_create(f"range {field} {good}", **{field: good})).status_code == 200

    @pytest.mark.parametrize("kind", ["Success", "Failure"])
    def test_notification_block_required_when_its_flag_is_true(self, api: Api, kind: str) -> None:
        """ShouldSend...Notification true (even as the string "true") needs its notification block."""
        response = api.create(minimal_create(**{f"ShouldSend{kind}Notification": "true"}))
        assert response.status_code == 400
        assert f"{kind}Notification" in response.json()["Message"]
        block = {"ToEmailAddress": "ops@example.com", "FromEmailAddress": "ccs@example.com"}
        ok = minimal_create(**{f"ShouldSend{kind}Notification": "true", f"{kind}Notification": block})
        assert api.create(ok).status_code == 200

    def test_duplicate_name_is_400(self, api: Api) -> None:
        """A name another job already has answers 400 with the documented message."""
        response = api.create(minimal_create("Nightly CER - Windows servers"))
        assert response.status_code == 400
        assert response.json()["Message"] == (
            "The specified name Nightly CER - Windows servers already exists. Create a job with a new name."
        )

    @pytest.mark.parametrize("body", [b"{not json", b'"a string"'], ids=["invalid", "not-object"])
    def test_unparseable_body_is_400(self, api: Api, body: bytes) -> None:
        """A body that is not a JSON object answers the documented parse error."""
        response = api.request("POST", "/jobs", data=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 400
        assert response.json()["Message"].startswith("Exception while parsing JSON.")

    def test_wrong_value_type_is_a_parse_error(self, api: Api) -> None:
        """A non-numeric AssetTimeOut answers the parse error."""
        response = api.create(minimal_create(AssetTimeOut="soon"))
        assert response.status_code == 400
        assert response.json()["Message"].startswith("Exception while parsing JSON.")


@pytest.mark.integration
class TestUpdateJob:
    def test_update_changes_name_and_modified_time(self, api: Api) -> None:
        """PATCH answers 204; the new name shows in properties and config, JobModifiedTime moves."""
        before = api.job(COMPLETED)["JobProperties"]["JobModifiedTime"]
        body = {"JobDetails": {"JobName": "Renamed", "JobDescription": "new"}, "JobID": COMPLETED}
        response = api.update(body)
        assert response.status_code == 204
        assert response.content == b""
        job = api.job(COMPLETED)
        assert job["JobProperties"]["Name"] == "Renamed"
        assert job["JobConfigDetails"]["JobName"] == "Renamed"
        assert job["JobConfigDetails"]["JobDescription"] == "new"
        assert job["JobProperties"]["JobModifiedTime"] != before

    def test_update_of_a_created_job(self, api: Api) -> None:
        """A job created through the API can be updated through it."""
        job_id = api.create(minimal_create("to update")).json()["JobID"]
        assert api.update({"JobDetails": {"AssetTimeOut": 30}, "JobID": job_id}).status_code == 204

    def test_incremental_period_allows_up_to_1000(self, api: Api) -> None:
        """Update accepts IncrementalPeriod 1000 (create stops at 100) and refuses 1001."""
        assert api.update({"JobDetails": {"IncrementalPeriod": 1000}, "JobID": COMPLETED}).status_code == 204
        response = api.update({"JobDetails": {"IncrementalPeriod": 1001}, "JobID": COMPLETED})
        assert response.status_code == 400
        assert "IncrementalPeriod" in response.json()["Message"]

    @pytest.mark.parametrize("body", [{"JobDetails": {"JobName": "x"}}, {"JobID": COMPLETED}])
    def test_missing_id_or_details_is_400(self, api: Api, body: dict[str, Any]) -> None:
        """A body without JobID or JobDetails answers the documented null-input message."""
        response = api.update(body)
        assert response.status_code == 400
        assert response.json()["Message"] == "Invalid input data. Either JobID or JobDetails is null."

    def test_unknown_and_invalid_ids(self, api: Api) -> None:
        """An unknown job answers 404, a non-GUID 400."""
        assert api.update({"JobDetails": {"JobName": "x"}, "JobID": UNKNOWN}).status_code == 404
        assert api.update({"JobDetails": {"JobName": "x"}, "JobID": "nope"}).status_code == 400

    def test_system_job_is_403(self, api: Api) -> None:
        """Updating a system job answers 403."""
        response = api.update({"JobDetails": {"JobName": "x"}, "JobID": SYSTEM})
        assert response.status_code == 403
        assert response.json()["Message"] == "You are not authorized to perform this task. Access is denied."

    def test_properties_only_job_type_is_not_supported(self, api: Api) -> None:
        """A report job cannot be updated: its type is not supported."""
        response = api.update({"JobDetails": {"JobName": "x"}, "JobID": REPORT})
        assert response.status_code == 400
        assert response.json()["Message"] == "Given job type 'REPORTJOB' not supported."

    def test_duplicate_name_is_400(self, api: Api) -> None:
        """Renaming to another job's name answers 400."""
        response = api.update({"JobDetails": {"JobName": "PCI DSS evaluation"}, "JobID": COMPLETED})
        assert response.status_code == 400
        assert "already exists" in response.json()["Message"]

    def test_notification_flag_needs_a_block(self, api: Api) -> None:
        """Turning a notification on for a job without its block answers 400."""
        body = {"JobDetails": {"ShouldSendFailureNotification": True}, "JobID": ABORTED}
        assert api.update(body).status_code == 400


@pytest.mark.integration
class TestDeleteJob:
    def test_delete_removes_the_job(self, api: Api) -> None:
        """DELETE with DeleteJob=True answers 204 and the job is gone."""
        response = api.delete(COMPLETED, "True")
        assert response.status_code == 204
        assert api.get(f"/jobs/{COMPLETED}").status_code == 404
        assert COMPLETED not in api.sim.job_ids

    def test_delete_job_defaults_to_true(self, api: Api) -> None:
        """Without DeleteJob the job is deleted."""
        assert api.delete(FAULTED).status_code == 204
        assert api.get(f"/jobs/{FAULTED}").status_code == 404

    def test_delete_job_false_keeps_the_job_and_drops_its_runs(self, api: Api) -> None:
        """DeleteJob=False answers 204, keeps the job and deletes its run history."""
        assert api.delete(FAULTED, "False").status_code == 204
        assert api.runs(FAULTED)["TotalJobRuns"] == 0
        props = api.job(FAULTED)["JobProperties"]
        assert (props["LastRunDate"], props["LastRunStatus"]) == ("0001-01-01T00:00:00", 0)

    def test_delete_job_false_keeps_a_run_in_progress(self, api: Api) -> None:
        """Dropping history keeps the executing run, which is not history yet."""
        api.delete(EXECUTING, "false")
        runs = api.runs(EXECUTING)["JobStatusInfo"]
        assert [(run["Status"], run["JobEndTime"]) for run in runs] == [(2, None)]

    @pytest.mark.parametrize("job_id", [SYSTEM, OTHER_OWNER])
    def test_system_and_other_owners_jobs_are_403(self, api: Api, job_id: str) -> None:
        """Deleting a system job or another user's job answers 403 and keeps it."""
        response = api.delete(job_id)
        assert response.status_code == 403
        assert api.get(f"/jobs/{job_id}").status_code == 200

    def test_unknown_invalid_and_missing_ids(self, api: Api) -> None:
        """An unknown job answers 404; a non-GUID or missing jobid answers 400."""
        assert api.delete(UNKNOWN).status_code == 404
        assert api.delete("nope").status_code == 400
        assert api.request("DELETE", "/Jobs").status_code == 400

    def test_query_keys_are_case_insensitive(self, api: Api) -> None:
        """JOBID and deletejob work like jobid and DeleteJob."""
        response = api.request("DELETE", f"/jobs/?JOBID={ABORTED}&deletejob=false")
        assert response.status_code == 204
        assert api.runs(ABORTED)["TotalJobRuns"] == 0

    def test_a_created_job_can_be_deleted_by_its_creator(self, api: Api) -> None:
        """Jobs created through the API belong to the simulator's user."""
        job_id = api.create(minimal_create("short-lived")).json()["JobID"]
        assert api.delete(job_id).status_code == 204


@pytest.mark.integration
class TestRouting:
    @pytest.mark.parametrize(
        ("method", "path"),
        [("GET", "/nothing"), ("PUT", f"{API}/jobs"), ("GET", f"{API}/jobs/{COMPLETED}/other")],
    )
    def test_unknown_routes_are_404_and_counted_as_unknown(
        self, simulator: Simulator, method: str, path: str
    ) -> None:
        """Paths and methods outside the API answer 404 JSON, counted under "unknown"."""
        response = requests.request(method, simulator.url + path, timeout=5)
        assert response.status_code == 404
        assert response.json()["Message"]
        assert simulator.request_count("unknown") == 1


class TestPayloadsValidate:
    @pytest.mark.integration
    def test_every_sample_payload_validates_against_the_models(self, api: Api) -> None:
        """Every search and jobruns answer of every sample job parses with Job and JobRuns."""
        for job_id in api.sim.job_ids:
            job = Job.model_validate(api.job(job_id))
            assert job.JobProperties.JobID == job_id
            runs = JobRuns.model_validate(api.runs(job_id))
            assert runs.TotalJobRuns == len(runs.JobStatusInfo)
            JobRuns.model_validate(api.runs(job_id, count=1, messages=False))

    @pytest.mark.integration
    def test_sample_consecutive_failures_parse_as_documented(self, api: Api) -> None:
        """The failure-streak samples have 2 and 3 faulted runs after a completed one."""
        for job_id, streak in ((FAULTED, 2), (SHAPES, 3)):
            statuses = [run.Status for run in JobRuns.model_validate(api.runs(job_id)).newest_first()]
            assert statuses[: streak + 1] == [5] * streak + [4]

    @pytest.mark.integration
    def test_naive_end_pairs_with_offset_start_as_utc(self, api: Api) -> None:
        """The +05:30 start and naive end of the faulted sample make a run of minutes, not hours."""
        run = JobRuns.model_validate(api.runs(FAULTED, count=1)).JobStatusInfo[0]
        assert run.duration_seconds is not None and 0 < run.duration_seconds < 3600

    @pytest.mark.integration
    def test_generated_and_created_payloads_validate(self, started: Callable[..., Simulator]) -> None:
        """Generated jobs and jobs created and run at runtime validate too."""
        sim = started(jobs=200, seed=7)
        client = Api(sim)
        job_id = client.create(minimal_create("fresh")).json()["JobID"]
        sim.finish_run(job_id, 5, {"Error": 2, "Warning": 1, "Information": 1})
        for each in sim.job_ids:
            Job.model_validate(client.job(each))
            JobRuns.model_validate(client.runs(each))

    def test_sample_file_describes_every_job(self) -> None:
        """Every sample job in sample_jobs.json states its purpose and has a unique name and id."""
        jobs = load_sample_document()["Jobs"]
        assert len(jobs) == 12
        assert all(job["Purpose"] for job in jobs)
        assert len({job["JobProperties"]["JobID"] for job in jobs}) == 12
        assert len({job["JobProperties"]["Name"] for job in jobs}) == 12


class TestGeneratedJobs:
    def test_ten_thousand_jobs_are_distinct(self) -> None:
        """10,000 generated jobs are 10,000 jobs with ids of their own (the benchmarks time the build)."""
        sim = Simulator(jobs=10_000)
        assert len(set(sim.job_ids)) == 10_000

    def test_seed_makes_jobs_reproducible(self) -> None:
        """The same seed yields the same jobs; another seed other ids."""
        first, again, other = (
            Simulator(jobs=20, seed=1),
            Simulator(jobs=20, seed=1),
            Simulator(jobs=20, seed=2),
        )
        assert first.job_ids == again.job_ids
        assert [first.job_snapshot(i) for i in first.job_ids] == [
            again.job_snapshot(i) for i in again.job_ids
        ]
        assert first.job_ids != other.job_ids

    def test_generated_jobs_vary(self) -> None:
        """Generated jobs cover several outcomes and both config and properties-only types."""
        sim = Simulator(jobs=300)
        statuses = {sim.job_snapshot(i)["JobProperties"]["LastRunStatus"] for i in sim.job_ids}
        assert {0, 2, 4, 5, 7} <= statuses
        configs = {sim.job_snapshot(i)["JobConfigDetails"] is None for i in sim.job_ids}
        assert configs == {True, False}


@pytest.mark.integration
class TestProgression:
    def test_runs_progress_to_a_final_status(self, started: Callable[..., Simulator]) -> None:
        """With a short run_interval a new run goes pending/executing and then finishes."""
        sim = started(run_interval=0.3, seed=3)
        before = sim.job_runs_snapshot(NEVER_RUN)["TotalJobRuns"]
        seen_running = False
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            runs = sim.job_runs_snapshot(NEVER_RUN)
            latest = runs["JobStatusInfo"][0] if runs["JobStatusInfo"] else None
            if latest is not None and latest["Status"] in (1, 2):
                assert latest["JobEndTime"] is None
                seen_running = True
            if seen_running and latest is not None and latest["Status"] in (4, 5, 7):
                assert latest["JobEndTime"] is not None
                break
            time.sleep(0.005)
        else:
            pytest.fail("no run progressed to a final status within 10 s")
        assert runs["TotalJobRuns"] > before
        props = sim.job_snapshot(NEVER_RUN)["JobProperties"]
        assert props["LastRunStatus"] == latest["Status"]
        assert props["LastRunDate"] == latest["JobStartTime"]

    def test_progressed_runs_have_messages_of_several_categories(
        self, started: Callable[..., Simulator]
    ) -> None:
        """After a few cycles the runs carry Error, Warning and Information messages and validate."""
        sim = started(jobs=40, run_interval=0.2, seed=5)
        time.sleep(1.0)
        categories: set[str] = set()
        for job_id in sim.job_ids:
            runs = sim.job_runs_snapshot(job_id)
            JobRuns.model_validate(runs)
            for run in runs["JobStatusInfo"]:
                categories.update(message["Category"] for message in run["JobMessages"] or [])
        assert categories == {"Error", "Warning", "Information"}

    def test_without_run_interval_nothing_changes(self, simulator: Simulator) -> None:
        """With run_interval None the payloads stay exactly as they are."""
        before = [simulator.job_runs_snapshot(i) for i in simulator.job_ids]
        time.sleep(0.3)
        assert [simulator.job_runs_snapshot(i) for i in simulator.job_ids] == before


@pytest.mark.integration
class TestFaults:
    def test_latency_delays_requests(self, api: Api) -> None:
        """latency_seconds delays every API request by at least that long."""
        api.sim.faults.latency_seconds = 0.3
        began = time.perf_counter()
        assert api.get(f"/jobs/{COMPLETED}").status_code == 200
        assert time.perf_counter() - began >= 0.3

    def test_constructor_latency_is_the_baseline_clear_returns_to(
        self, started: Callable[..., Simulator]
    ) -> None:
        """latency_seconds given to the constructor is what clear() restores."""
        sim = started(latency_seconds=0.05)
        sim.faults.latency_seconds = 2.0
        sim.faults.clear()
        assert sim.faults.latency_seconds == 0.05

    def test_error_rate_one_answers_500_but_logins_work(self, api: Api) -> None:
        """error_rate 1.0 answers every API request 500 with a Message; token requests are spared."""
        api.sim.faults.error_rate = 1.0
        response = api.get(f"/jobs/{COMPLETED}")
        assert response.status_code == 500
        assert response.json()["Message"].startswith("Server encountered an error")
        assert login(api.sim)["access_token"]

    def test_token_errors_extends_faults_to_the_token_endpoint(self, simulator: Simulator) -> None:
        """With token_errors the error rate hits token requests too."""
        simulator.faults.error_rate = 1.0
        simulator.faults.token_errors = True
        form = {"grant_type": "password", "username": simulator.username, "password": b64(simulator.password)}
        assert token_request(simulator, form).status_code == 500

    def test_hang_blocks_until_cleared(self, api: Api) -> None:
        """hang makes requests time out on the client; after clear() they are answered again."""
        api.sim.faults.hang = True
        with pytest.raises(requests.exceptions.ReadTimeout):
            api.get(f"/jobs/{COMPLETED}", timeout=0.3)
        api.sim.faults.clear()
        assert api.get(f"/jobs/{COMPLETED}").status_code == 200

    def test_hang_is_released_by_clearing_mid_request(self, api: Api) -> None:
        """A request hanging when the fault is cleared is then answered."""
        api.sim.faults.hang = True
        timer = threading.Timer(0.2, api.sim.faults.clear)
        timer.start()
        try:
            assert api.get(f"/jobs/{COMPLETED}", timeout=5).status_code == 200
        finally:
            timer.cancel()

    def test_malformed_json_truncates_200_bodies(self, api: Api) -> None:
        """malformed_json answers 200 with a body that is not valid JSON but matches Content-Length."""
        api.sim.faults.malformed_json = True
        response = api.get(f"/jobs/{COMPLETED}")
        assert response.status_code == 200
        assert int(response.headers["Content-Length"]) == len(response.content)
        with pytest.raises(ValueError):
            json.loads(response.content)

    def test_drop_connections_closes_without_answering(self, api: Api) -> None:
        """drop_connections closes the connection unanswered; the request is recorded with status 0."""
        api.sim.faults.drop_connections = True
        with pytest.raises(requests.exceptions.ConnectionError):
            api.get(f"/jobs/{COMPLETED}")
        assert api.sim.requests[-1] == RequestRecord("GET", f"{API}/jobs/{COMPLETED}", "job", 0)

    def test_reject_logins_refuses_the_right_password(self, simulator: Simulator) -> None:
        """reject_logins answers invalid_grant to a correct login until cleared."""
        simulator.faults.reject_logins = True
        form = {"grant_type": "password", "username": simulator.username, "password": b64(simulator.password)}
        response = token_request(simulator, form)
        assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")
        simulator.faults.clear()
        assert token_request(simulator, form).status_code == 200


class TestControlApi:
    def control(self, sim: Simulator, method: str, path: str, body: Any = None) -> requests.Response:
        return requests.request(method, f"{sim.url}/_simulator/{path}", json=body, timeout=5)

    @pytest.mark.integration
    def test_stats_and_reset(self, api: Api) -> None:
        """stats counts API requests by endpoint and status; reset-stats zeroes them."""
        api.get(f"/jobs/{COMPLETED}")
        api.get(f"/jobs/{UNKNOWN}")
        stats = self.control(api.sim, "GET", "stats").json()
        assert stats["requests"]["job"] == {"200": 1, "404": 1}
        assert stats["requests"]["token"] == {"200": 1}
        assert stats["total"] == 3
        assert self.control(api.sim, "POST", "reset-stats").status_code == 200
        assert api.sim.request_count() == 0

    @pytest.mark.integration
    def test_jobs_lists_the_ids(self, simulator: Simulator) -> None:
        """jobs lists the job ids in order."""
        assert self.control(simulator, "GET", "jobs").json() == {"job_ids": simulator.job_ids}

    @pytest.mark.integration
    def test_faults_set_and_clear(self, simulator: Simulator) -> None:
        """faults sets any fault field and clears them with "clear"; unknown fields are 400."""
        answer = self.control(simulator, "POST", "faults", {"error_rate": 1.0, "hang": False})
        assert answer.json()["error_rate"] == 1.0
        assert simulator.faults.error_rate == 1.0
        self.control(simulator, "POST", "faults", {"clear": True})
        assert simulator.faults.error_rate == 0.0
        assert self.control(simulator, "POST", "faults", {"explode": True}).status_code == 400
        assert self.control(simulator, "POST", "faults", {"hang": "yes"}).status_code == 400

    @pytest.mark.integration
    def test_control_requests_ignore_faults(self, simulator: Simulator) -> None:
        """Control requests are answered while API requests hang, so a hang can be cleared remotely."""
        simulator.faults.hang = True
        assert self.control(simulator, "POST", "faults", {"clear": True}).status_code == 200
        assert simulator.faults.hang is False

    @pytest.mark.integration
    def test_revoke_tokens(self, api: Api) -> None:
        """revoke-tokens makes the session's token fail with 401."""
        self.control(api.sim, "POST", "revoke-tokens")
        assert api.get(f"/jobs/{COMPLETED}").status_code == 401

    @pytest.mark.integration
    def test_finish_run_and_start_run(self, api: Api) -> None:
        """start-run opens a run, finish-run ends it with the given status and messages."""
        started = self.control(api.sim, "POST", f"jobs/{NEVER_RUN}/start-run")
        assert started.json()["JobStatusInfo"][0]["Status"] == 2
        body = {"Status": 5, "Messages": {"Error": 2, "Warning": 1}}
        finished = self.control(api.sim, "POST", f"jobs/{NEVER_RUN}/finish-run", body).json()
        run = finished["JobStatusInfo"][0]
        assert (finished["TotalJobRuns"], run["Status"], run["MessageCount"]) == (1, 5, 3)
        assert api.job(NEVER_RUN)["JobProperties"]["LastRunStatus"] == 5

    @pytest.mark.integration
    def test_finish_runs_finishes_every_job_or_only_the_running(self, api: Api) -> None:
        """finish-runs ends every run in progress, or gives every job a new finished run."""
        running = [
            job_id
            for job_id in api.sim.job_ids
            if api.job(job_id)["JobProperties"]["LastRunStatus"] in (1, 2)
        ]
        assert running
        answer = self.control(api.sim, "POST", "finish-runs", {"Status": 4, "RunningOnly": True}).json()
        assert answer == {"finished": len(running)}
        assert all(api.job(job_id)["JobProperties"]["LastRunStatus"] == 4 for job_id in running)
        answer = self.control(api.sim, "POST", "finish-runs", {"Status": 5}).json()
        assert answer == {"finished": len(api.sim.job_ids)}
        assert {api.job(job_id)["JobProperties"]["LastRunStatus"] for job_id in api.sim.job_ids} == {5}
        bad = self.control(api.sim, "POST", "finish-runs", {"Status": 4, "RunningOnly": 1})
        assert bad.status_code == 400

    @pytest.mark.integration
    def test_control_errors(self, simulator: Simulator) -> None:
        """Unknown jobs are 404, a bad finish body 400, a second start 409, unknown paths 404."""
        assert self.control(simulator, "POST", f"jobs/{UNKNOWN}/start-run").status_code == 404
        assert (
            self.control(simulator, "POST", f"jobs/{COMPLETED}/finish-run", {"Status": "x"}).status_code
            == 400
        )
        assert self.control(simulator, "POST", f"jobs/{EXECUTING}/start-run").status_code == 409
        assert self.control(simulator, "GET", "nothing").status_code == 404

    @pytest.mark.integration
    def test_control_requests_are_not_api_requests(self, simulator: Simulator) -> None:
        """Control requests count under "control" and not in request_count()."""
        self.control(simulator, "GET", "stats")
        self.control(simulator, "GET", "jobs")
        assert simulator.request_count() == 0
        assert simulator.request_count("control") == 2


@pytest.mark.integration
class TestRequestCounting:
    def test_counts_by_endpoint_template(self, api: Api) -> None:
        """Each request is counted under its endpoint template, whatever the id or case."""
        api.get(f"/jobs/{COMPLETED}")
        api.get(f"/JOBS/{FAULTED}")
        api.get(f"/Jobs/{FAULTED}/jobruns")
        api.create(minimal_create("counted"))
        api.update({"JobDetails": {"JobName": "counted 2"}, "JobID": COMPLETED})
        api.delete(COMPLETED)
        counts = {name: api.sim.request_count(name) for name in ("token", "job", "jobruns")}
        assert counts == {"token": 1, "job": 2, "jobruns": 1}
        assert [api.sim.request_count(name) for name in ("create_job", "update_job", "delete_job")] == [
            1,
            1,
            1,
        ]
        assert api.sim.request_count() == 7

    def test_records_hold_method_path_endpoint_and_status(self, api: Api) -> None:
        """sim.requests records each request as it arrived, with the answer's status."""
        api.get(f"/jobs/{UNKNOWN}")
        assert api.sim.requests[-1] == RequestRecord("GET", f"{API}/jobs/{UNKNOWN}", "job", 404)

    def test_requests_in_flight_at_a_reset_are_not_counted(self, api: Api) -> None:
        """A request that arrived before reset_requests is not counted when it is answered later."""
        api.sim.faults.latency_seconds = 0.3
        caller = threading.Thread(target=api.get, args=(f"/jobs/{COMPLETED}",))
        caller.start()
        time.sleep(0.1)
        api.sim.reset_requests()
        caller.join(5)
        assert api.sim.request_count() == 0

    def test_reset_requests(self, api: Api) -> None:
        """reset_requests empties the records and counts."""
        api.sim.reset_requests()
        assert (api.sim.requests, api.sim.request_count()) == ([], 0)


@pytest.mark.integration
class TestScenarioControl:
    def test_finish_run_appends_a_finished_run(self, simulator: Simulator) -> None:
        """finish_run adds a run ending now with the status and messages; LastRun* follow."""
        simulator.finish_run(COMPLETED, 5, {"Error": 2, "Warning": 1})
        runs = simulator.job_runs_snapshot(COMPLETED)
        latest = runs["JobStatusInfo"][0]
        assert runs["TotalJobRuns"] == 4
        assert latest["Status"] == 5 and latest["JobEndTime"]
        assert [m["Category"] for m in latest["JobMessages"]] == ["Error", "Error", "Warning"]
        run = JobRuns.model_validate(runs).JobStatusInfo[0]
        assert run.duration_seconds is not None and 0 < run.duration_seconds < 60
        props = simulator.job_snapshot(COMPLETED)["JobProperties"]
        assert (props["LastRunStatus"], props["LastRunDate"]) == (5, latest["JobStartTime"])

    def test_start_run_then_finish_run_completes_the_same_run(self, simulator: Simulator) -> None:
        """start_run opens an executing run that finish_run then ends."""
        simulator.start_run(NEVER_RUN)
        opened = simulator.job_runs_snapshot(NEVER_RUN)["JobStatusInfo"][0]
        assert (opened["Status"], opened["JobEndTime"]) == (2, None)
        simulator.finish_run(NEVER_RUN, 4)
        runs = simulator.job_runs_snapshot(NEVER_RUN)
        assert runs["TotalJobRuns"] == 1
        assert runs["JobStatusInfo"][0]["JobRunID"] == opened["JobRunID"]
        assert runs["JobStatusInfo"][0]["Status"] == 4

    def test_start_run_refuses_a_second_run(self, simulator: Simulator) -> None:
        """A job with a run in progress cannot start another."""
        with pytest.raises(ValueError):
            simulator.start_run(EXECUTING)

    def test_set_job_name_changes_name_and_modified_time(self, simulator: Simulator) -> None:
        """set_job_name renames as in the console and moves JobModifiedTime."""
        before = simulator.job_snapshot(REPORT)["JobProperties"]
        simulator.set_job_name(REPORT, "Quarterly report")
        after = simulator.job_snapshot(REPORT)["JobProperties"]
        assert after["Name"] == "Quarterly report"
        assert after["JobModifiedTime"] != before["JobModifiedTime"]

    def test_edit_job_applies_update_rules(self, simulator: Simulator) -> None:
        """edit_job changes config fields and refuses invalid values."""
        simulator.edit_job(COMPLETED, {"JobDescription": "edited"})
        assert simulator.job_snapshot(COMPLETED)["JobConfigDetails"]["JobDescription"] == "edited"
        with pytest.raises(ValueError):
            simulator.edit_job(COMPLETED, {"AssetTimeOut": 0})

    def test_remove_job(self, api: Api) -> None:
        """remove_job deletes any job, as in the console; search then answers 404."""
        api.sim.remove_job(SYSTEM)
        assert api.get(f"/jobs/{SYSTEM}").status_code == 404
        with pytest.raises(KeyError):
            api.sim.job_snapshot(SYSTEM)

    def test_add_job(self, api: Api) -> None:
        """add_job adds a never-run job; other job types are properties-only."""
        cer = api.sim.add_job("Added CER")
        report = api.sim.add_job("Added report", job_type="REPORTJOB", owner="CCS\\someone")
        assert api.job(cer)["JobConfigDetails"]["JobName"] == "Added CER"
        assert api.job(report)["JobConfigDetails"] is None
        assert api.sim.job_ids[-2:] == [cer, report]
        assert api.delete(report).status_code == 403
        with pytest.raises(ValueError):
            api.sim.add_job("Added CER")

    def test_unknown_job_is_key_error(self, simulator: Simulator) -> None:
        """Scenario methods raise KeyError for an unknown job."""
        with pytest.raises(KeyError):
            simulator.finish_run(UNKNOWN, 4)


@pytest.mark.integration
class TestLifecycle:
    def test_url_and_credentials(self, simulator: Simulator) -> None:
        """url names the bound port; username and password are the defaults."""
        assert simulator.url == f"http://127.0.0.1:{simulator.port}"
        assert simulator.port > 0
        assert (simulator.username, simulator.password) == ("CCS\\demo", "demo-password")

    def test_stop_closes_idle_keep_alive_connections(self) -> None:
        """stop() closes a client's idle keep-alive connection and returns quickly."""
        sim = Simulator().start()
        conn = socket.create_connection(("127.0.0.1", sim.port), timeout=5)
        try:
            conn.sendall(b"GET /_simulator/jobs HTTP/1.1\r\nHost: x\r\n\r\n")
            assert conn.recv(65536).startswith(b"HTTP/1.1 200 OK")
            began = time.perf_counter()
            sim.stop()
            assert time.perf_counter() - began < 2
            assert conn.recv(65536) == b""
        finally:
            conn.close()
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"http://127.0.0.1:{sim.port}/_simulator/jobs", timeout=2)

    def test_stop_ends_hanging_requests(self) -> None:
        """A request hanging on the hang fault gets its connection closed by stop()."""
        sim = Simulator().start()
        sim.faults.hang = True
        errors: list[BaseException] = []

        def call() -> None:
            try:
                requests.get(f"{sim.url}{API}/jobs/{COMPLETED}", timeout=10)
            except requests.exceptions.RequestException as exc:
                errors.append(exc)

        caller = threading.Thread(target=call)
        caller.start()
        time.sleep(0.2)
        sim.stop()
        caller.join(5)
        assert not caller.is_alive()
        assert isinstance(errors[0], requests.exceptions.ConnectionError)

    def test_keep_alive_serves_many_requests_on_one_connection(self, api: Api) -> None:
        """A pooled session reuses one connection; every answer carries Content-Length."""
        for _ in range(20):
            response = api.get(f"/jobs/{COMPLETED}")
            assert response.headers["Content-Length"] == str(len(response.content))
            assert response.headers["Connection"] == "keep-alive"

    def test_https_with_a_certificate(self, tmp_path: Path, started: Callable[..., Simulator]) -> None:
        """With tls_cert/tls_key the simulator serves HTTPS that a client trusting the cert can use."""
        openssl = shutil.which("openssl")
        if openssl is None:
            pytest.skip("openssl is needed to make a test certificate")
        cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
            check=True,
            capture_output=True,
        )  # fmt: skip
        sim = started(tls_cert=str(cert), tls_key=str(key))
        assert sim.url.startswith("https://")
        form = {"grant_type": "password", "username": sim.username, "password": b64(sim.password)}
        response = requests.post(sim.url + API + "/oauth/tokens", data=form, verify=str(cert), timeout=5)
        assert response.status_code == 200


@pytest.mark.integration
class TestSimulateCommand:
    def test_runs_until_sigterm_and_prints_how_to_log_in(self, tmp_path: Path) -> None:
        """`simulate` prints URL, user and password, writes the ids file and exits 0 on SIGTERM."""
        ids_file = tmp_path / "ids.txt"
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ccs_exporter",
                "simulate",
                "--port",
                "0",
                "--job-ids-file",
                str(ids_file),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line.startswith("CCS simulator listening on http://127.0.0.1:")
            assert "(12 jobs; user CCS\\demo, password demo-password)" in line
            assert len(ids_file.read_text().split()) == 12
            url = line.split()[4]
            assert requests.get(f"{url}/_simulator/jobs", timeout=5).status_code == 200
            process.send_signal(signal.SIGTERM)
            assert process.wait(10) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
