"""Tests of the CCS client against mocked HTTP: tokens, error mapping, retries, validation and secrets."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
import responses
from pydantic import SecretStr
from responses import matchers

from ccs_exporter.client import CcsClient, MutationResult
from ccs_exporter.errors import (
    AuthError,
    BadRequestError,
    BadResponseError,
    CcsError,
    CcsTimeoutError,
    ConfigError,
    ForbiddenError,
    NotFoundError,
    ServerError,
    UnavailableError,
)
from ccs_exporter.models import CreateJobRequest, JobDetailsUpdate

BASE = "https://ccs.example.test:12431"
API = BASE + "/ccs/api/v1"
TOKEN_URL = API + "/oauth/tokens"
JOB_ID = "23c59087-f3d4-4e05-a39e-3440c58e58fb"
JOB_URL = f"{API}/jobs/{JOB_ID}"
RUNS_URL = f"{API}/Jobs/{JOB_ID}/jobruns"
USERNAME = "CORP\\svc-ccs"
# Distinctive, and its Base64 form holds "+", "/" and "=" (the characters naive form bodies mangle).
PASSWORD = "Canary-S3cr3t->ÿÿ"
PASSWORD_B64 = base64.b64encode(PASSWORD.encode("utf-8")).decode("ascii")
ACCESS = "access-canary-7Hq2"
REFRESH = "refresh-canary-K9x4"


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    """A hand-moved clock for token lifetimes."""
    return FakeClock()


@pytest.fixture
def make_client(clock: FakeClock) -> Iterator[Callable[..., CcsClient]]:
    """Build clients against BASE with no backoff sleeps and the fake clock; closed after the test."""
    made: list[CcsClient] = []

    def make(**options: Any) -> CcsClient:
        options.setdefault("backoff_seconds", 0)
        options.setdefault("clock", clock)
        client = CcsClient(options.pop("base_url", BASE), USERNAME, SecretStr(PASSWORD), **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def token_body(
    access: str = ACCESS, refresh: str = REFRESH, expires_in: float | None = 3600
) -> dict[str, Any]:
    body: dict[str, Any] = {"access_token": access, "token_type": "bearer", "refresh_token": refresh}
    if expires_in is not None:
        body["expires_in"] = expires_in
    return body


def add_token(mock: responses.RequestsMock, status: int = 200, **body: Any) -> None:
    if status == 200:
        mock.post(TOKEN_URL, json=token_body(**body))
    else:
        mock.post(
            TOKEN_URL, status=status, json=body or {"Message": "The user name or password is incorrect."}
        )


def add_job(mock: responses.RequestsMock, load_fixture: Callable[[str], Any], token: str = ACCESS) -> None:
    mock.get(
        JOB_URL,
        json=load_fixture("search_job_by_id.json"),
        match=[matchers.header_matcher({"Authorization": f"Bearer {token}"})],
    )


def form(call: Any) -> dict[str, list[str]]:
    """The form fields a recorded request sent."""
    body = call.request.body
    text = body.decode("ascii") if isinstance(body, bytes) else body
    return parse_qs(text, keep_blank_values=True)


def token_calls(mock: responses.RequestsMock) -> list[Any]:
    return [call for call in mock.calls if call.request.url == TOKEN_URL]


class TestLogin:
    def test_form_encoded_base64_password(
        self,
        mocked_responses: responses.RequestsMock,
        make_client: Callable[..., CcsClient],
        load_fixture: Any,
    ) -> None:
        """The login is a form-encoded password grant whose Base64 password ("+", "/", "=") arrives intact."""
        assert all(char in PASSWORD_B64 for char in "+/=")
        add_token(mocked_responses)
        add_job(mocked_responses, load_fixture)
        make_client().get_job(JOB_ID)
        login = mocked_responses.calls[0]
        assert login.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
        assert form(login) == {"grant_type": ["password"], "username": [USERNAME], "password": [PASSWORD_B64]}

    def test_plain_password(
        self,
        mocked_responses: responses.RequestsMock,
        make_client: Callable[..., CcsClient],
        load_fixture: Any,
    ) -> None:
        """With plain encoding the password is sent as it is, still properly form-encoded."""
        add_token(mocked_responses)
        add_job(mocked_responses, load_fixture)
        make_client(password_encoding="plain").get_job(JOB_ID)
        assert form(mocked_responses.calls[0])["password"] == [PASSWORD]

    def test_unknown_encoding_is_a_config_error(self) -> None:
        """A password encoding other than base64 or plain is refused when the client is built."""
        with pytest.raises(ConfigError):
            CcsClient(BASE, USERNAME, SecretStr(PASSWORD), password_encoding="rot13")

    def test_token_reused(
        self,
        mocked_responses: responses.RequestsMock,
        make_client: Callable[..., CcsClient],
        load_fixture: Any,
    ) -> None:
        """Later calls reuse the token: one login for three requests."""
        add_token(mocked_responses)
        add_job(mocked_responses, load_fixture)
        client = make_client()
        for _ in range(3):
            client.get_job(JOB_ID)
        assert len(token_calls(mocked_responses)) == 1
        assert client.logins == 1

    def test_failed_login_is_auth_error_without_password(
        self, mocked_responses: responses.RequestsMock, make_client: Callable[..., CcsClient]
    ) -> None:
        """A refused login raises AuthError naming the user and CCS's message, never the password."""
        add_token(mocked_responses, status=401)
        with pytest.raises(AuthError) as caught:
            make_client().get_job(JOB_ID)
        text = str(caught.value)
        assert "The user name or password is incorrect." in text
        assert USERNAME in text
        assert PASSWORD not in text and PASSWORD_B64 not in text
        assert caught.value.status == 401
        assert caught.value.method == "POST" and caught.value.path == "/ccs/api/v1/oauth/tokens"
        assert len(mocked_responses.calls) == 1

    @pytest.mark.parametrize("status", [400, 403])
    def test_login_refused_with_other_codes(
        self, mocked_responses: responses.RequestsMock, make_client: Callable[..., CcsClient], status: int
    ) -> None:
        """A login answered 400 or 403 is an AuthError too (bad credentials, disabled account)."""
        add_token(mocked_responses, status=status)
        with pytest.raises(AuthError):
            make_client().get_job(JOB_ID)

    def test_login_server_error(
        self, mocked_responses: responses.RequestsMock, make_client: Callable[..., CcsClient]
    ) -> None:
        """A login answered 500 is a server error, not a credentials problem."""
        add_token(mocked_responses, status=500)
        with pytest.raises(ServerError):
            make_client().get_job(JOB_ID)

    @pytest.mark.parametrize("body", [{"token_type": "bearer"}, {"access_token": ""}, ["x"]])
    def test_token_response_without_access_token(
        self, mocked_responses: responses.RequestsMock, make_client: Callable[..., CcsClient], body: Any
    ) -> None:
        """A 200 token response without an access token is a bad response."""
        mocked_responses.post(TOKEN_URL, json=body)
        with pytest.raises(BadResponseError):
            make_client().get_job(JOB_ID)

    def test_token_response_not_json(
        self, mocked_responses: responses.RequestsMock, make_client: Callable[..., CcsClient]
    ) -> None:
        """A 200 token response that is not JSON is a bad response."""
        mocked_responses.post(TOKEN_URL, body="<html>login</html>", content_type="text/html")
        with pytest.raises(BadResponseError):
            make_client().get_job(JOB_ID)

    def test_refused_login_is_not_hammered(
        self,
        mocked_responses: responses.RequestsMock,
        make_client: Callable[..., CcsClient],
        clock: FakeClock,
    ) -> None:
        """Right after a refused login the next call fails without another login attempt."""
        add_token(mocked_responses, status=401)
        client = make_client()
        with pytest.raises(AuthError):
            client.get_job(JOB_ID)
        clock.now += 1
        with pytest.raises(AuthError):
            client.get_job(JOB_ID)
        assert len(mocked_responses.calls) == 1

    def test_login_tried_again_later(
        self,
        mocked_responses: responses.RequestsMock,
        make_client: Callable[..., CcsClient],
        clock: FakeClock,
        load_fixture: Any,
    ) -> None:
        """Some minutes after a refused login the client logs in again and succeeds."""
        add_token(mocked_responses, status=401)
        client = make_client()
        with pytest.raises(AuthError):
            client.get_job(JOB_ID)
        add_token(mocked_responses)
        add_job(mocked_responses, load_fixture)
        clock.now += 301
        assert client.get_job(JOB_ID).JobProperties.JobID == JOB_ID


class TestTokenRefresh:
    def test_refresh_before_expiry(
        self,
        mocked_responses: responses.RequestsMock,
        make_client: Callable[..., CcsClient],
        clock: FakeClock,
        load_fixture: Any,
    ) -> None:
        """Shortly before the access token expires, the client refreshes it with the refresh token."""
        add_token(mocked_responses)
        add_job(mocked_responses, load_fixture)
        client = make_client()
        client.get_job(JOB_ID)
        mocked_responses.post(TOKEN_URL, json=token_body(access="access-2", refresh="refresh-2"))
        add_job(mocked_responses, load_fixture, token="access-2")
        clock.now += 3600 - 10
        client.get_job(JOB_ID)
        refresh = token_calls(mocked_responses)[1]
        assert form(refresh) == {"grant_type": ["refresh_token"], "refresh_token": [REFRESH]}
        assert (client.logins, client.refreshes) == (1, 1)

    def test_no_refresh_while_fresh(
        self,
        mocked_responses: responses.RequestsMock,
        make_client: Callable[..., CcsClient],
        clock: FakeClock,
        load_fixture: Any,
    ) -> None:
        """Well before expiry the token is used as it is."""
        add_token(mocked_responses, expires_in=600)
        add_job(mocked_responses, load_fixture)
        client = make_client()
        client.get_job(JOB_ID)
        clock.now += 500
        client.get_job(JOB_ID)
        assert len(token_calls(mocked_responses)) == 1

    def test_documented_lifetime_without_expires_in(
        self,
        mocked_responses: responses.RequestsMock,
        make_client: Callable[..., CcsClient],
        clock: FakeClock,
        load_fixture: Any,
    ) -> None:
        """Without expires_in the token is taken to live the documented 60 minutes."""
        add_token(mocked_responses, expires_in=None)
        add_job(mocked_responses, load_fixture)
        client = make_client()
        client.get_job(JOB_ID)
        clock.now += 50 * 60
        client.get_job(JOB_ID)
        assert client.refreshes == 0
        mocked_responses.post(TOKEN_URL, json=token_body(access="access-2"))
        add_job(mocked_responses, load_fixture, token="access-2")
        clock.now += 10 * 60
        client.get_job(JOB_ID)
        assert client.refreshes == 1

    @pytest.mark.parametrize("status", [400, 401, 500])
    def test_refresh_failure_falls_back_to_login(
        self,
        mocked_responses: responses.RequestsMock,
        make_client: Callable[..., CcsClient],
        clock: FakeClock,
        load_fixture: Any,
        status: int,
    ) -> None:
        """When the refresh is refused, the client logs in with the password and carries on."""
        add_token(mocked_responses)
        add_job(mocked_responses, load_fixture)
        client = make_client()
        client.get_job(JOB_ID)
        mocked_responses.post(TOKEN_URL, status=status, json={"Message": "invalid_grant"})
        mocked_responses.post(TOKEN_URL, json=token_body(access="access-2"))
        add_job(mocked_responses, load_fixture, token="access-2")
        clock.now += 3600
        client.get_job(JOB_ID)
        grants = [form(call)["grant_type"][0] for call in token_calls(mocked_responses)]
        assert grants == ["password", "refresh_token", "password"]
        assert client.logins == 2

    def test_expired_refresh_token_means_login(
        self,
        mocked_responses: responses.RequestsMock,
        make_client: Callable[..., CcsClient],
        clock: FakeClock,
        load_fixture: Any,
    ) -> None:
        """After the refresh token's 90 minutes the client logs in directly, without trying to refresh."""
        add_token(mocked_responses)
        add_job(mocked_responses, load_fixture)
        client = make_client()
        client.get_job(JOB_ID)
        mocked_responses.post(TOKEN_URL, json=token_body(access="access-2"))
        add_job(mocked_responses, load_fixture, token="access-2")
        clock.now += 91 * 60
        client.get_job(JOB_ID)
        grants = [form(call)["grant_type"][0] for call in token_calls(mocked_responses)]
        assert grants == ["password", "password"]

    def test_401_reauthenticates_and_retries_once(
        self,
        mocked_responses: responses.RequestsMock,
        make_client: Callable[..., CcsClient],
        load_fixture: Any,
    ) -> None:
        """A 401 on a request makes the client log in again and repeat the request once."""
        add_token(mocked_responses)
        mocked_responses.get(JOB_URL, status=401, json={"Message": "Token expired"})
        mocked_responses.post(TOKEN_URL, json=token_body(access="access-2"))
        add_job(mocked_responses, load_fixture, token="access-2")
        job = make_client().get_job(JOB_ID)
        assert job.JobProperties.JobID == JOB_ID
        assert len(token_calls(mocked_responses)) == 2

    def test_second_401_is_auth_error(
        self, mocked_responses: responses.RequestsMock, make_client: Callable[..., CcsClient]
    ) -> None:
        """When the request is refused again with a fresh token, the client gives up with AuthError."""
        add_token(mocked_responses)
        mocked_responses.get(JOB_URL, status=401, json={"Message": "Authorization has been denied."})
        add_token(mocked_responses, access="access-2")
        with pytest.raises(AuthError) as caught:
            make_client().get_job(JOB_ID)
        assert caught.value.status == 401
        assert "Authorization has been denied." in str(caught.value)
        assert len([call for call in mocked_responses.calls if call.request.url == JOB_URL]) == 2

    def test_401_on_mutation_is_retried_once(
        self,
        mocked_responses: responses.RequestsMock,
        make_client: Callable[..., CcsClient],
        load_fixture: Any,
    ) -> None:
        """A create refused with 401 was not carried out, so it is sent once more after a new login."""
        add_token(mocked_responses)
        mocked_responses.post(f"{API}/jobs", status=401)
        add_token(mocked_responses, access="access-2")
        mocked_responses.post(f"{API}/jobs", json=load_fixture("create_job_response.json"))
        request = CreateJobRequest.model_validate(load_fixture("create_job_request.json"))
        assert make_client().create_job(request).job_id == "5ade67f0-0c93-49f3-9f2b-b8ec4beaa99c"


class TestConcurrency:
    def test_concurrent_workers_log_in_once(
        self,
        mocked_responses: responses.RequestsMock,
        make_client: Callable[..., CcsClient],
        load_fixture: Any,
    ) -> None:
        """Sixteen workers starting together without a token share a single login."""

        def slow_token(request: Any) -> tuple[int, dict[str, str], str]:
            time.sleep(0.05)  # widen the window in which a racing worker could log in too
            return 200, {}, json.dumps(token_body())

        mocked_responses.add_callback(responses.POST, TOKEN_URL, callback=slow_token)
        add_job(mocked_responses, load_fixture)
        client = make_client(pool_size=16)
        barrier = threading.Barrier(16)
        failures: list[BaseException] = []

        def worker() -> None:
            barrier.wait()
            try:
                client.get_job(JOB_ID)
            except BaseException as exc:  # reported below, in the test thread
                failures.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert failures == []
        assert len(token_calls(mocked_responses)) == 1
        assert client.logins == 1
        assert len(mocked_responses.calls) == 17


class TestErrorMapping:
    @pytest.mark.parametrize(
        ("status", "error_type", "fixture"),
        [
            (400, BadRequestError, "error_400_invalid_job_id.json"),
            (403, ForbiddenError, "error_403.json"),
            (404, NotFoundError, "error_404.json"),
            (500, ServerError, "error_500.json"),
            (502, ServerError, "error_500.json"),
        ],
    )
    def test_status_to_error(
        self,
        mocked_responses: responses.RequestsMock,
        make_client: Callable[..., CcsClient],
        load_fixture: Any,
        status: int,
        error_type: type[CcsError],
        fixture: str,
    ) -> None:
        """Each status maps to its error class, carrying method, path, status and CCS's Message."""
        add_token(mocked_responses)
        body = load_fixture(fixture)
        mocked_responses.get(JOB_URL, status=status, json=body)
        with pytest.raises(error_type) as caught:
            make_client(read_retries=0).get_job(JOB_ID)
        exc = caught.value
        assert type(exc) is error_type
        assert (exc.method, exc.path, exc.status) == ("GET", f"/ccs/api/v1/jobs/{JOB_ID}", status)
        assert exc.message == body["Message"]
        assert str(exc) == f"GET /ccs/api/v1/jobs/{JOB_ID} -> {status}: {body['Message']}"

    def test_401_maps_to_auth_error(
        self, mocked_responses: responses.RequestsMock, make_client: Callable[..., CcsClient]
    ) -> None:
        """A request refused with 401 even after a new login is an AuthError."""
        for access in (ACCESS, "access-2"):
            add_token(mocked_responses, access=access)
            mocked_responses.get(JOB_URL, status=401)
        with pytest.raises(AuthError) as caught:
            make_client().get_job(JOB_ID)
        assert caught.value.status == 401

    @pytest.mark.parametrize(
        ("body", "content_type", "expected"),
        [
            (
                "Service Unavailable: backend pool down",
                "text/plain",
                "Service Unavailable: backend pool down",
            ),
            ("<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html", "Bad Gateway"),
            ("", "text/plain", "Bad Gateway"),
            ('{"message": "lower-case key"}', "application/json", "lower-case key"),
            ('"a bare JSON string"', "application/json", "a bare JSON string"),
            ('{"Message": "multi\\nline\\r\\n  message"}', "application/json", "multi line message"),
            ("{not json", "application/json", "{not json"),
        ],
    )
    def test_any_error_body_survives(
        self,
        mocked_responses: responses.RequestsMock,
        make_client: Callable[..., CcsClient],
        body: str,
        content_type: str,
        expected: str,
    ) -> None:
        """Whatever the error body (text, HTML, empty, odd JSON), the error carries a one-line message."""
        add_token(mocked_responses)
        mocked_responses.get(JOB_URL, status=502, body=body, content_type=content_type)
        with pytest.raises(ServerError) as caught:
            make_client(read_retries=0).get_job(JOB_ID)
        assert caught.value.message == expected

    @pytest.mark.parametrize("body", ["<html>oops</html>", "", '{"JobConfigDetails": {}}', "[1, 2]"])
    def test_unusable_job_body(
        self, mocked_responses: responses.RequestsMock, make_client: Callable[..., CcsClient], body: str
    ) -> None:
        """A 200 whose body is not a job is a BadResponseError with the status."""
        add_token(mocked_responses)
        mocked_responses.get(JOB_URL, body=body)
        with pytest.raises(BadResponseError) as caught:
            make_client().get_job(JOB_ID)
        assert caught.value.status == 200

    def test_unusable_runs_body(
        self, mocked_responses: responses.RequestsMock, make_client: Callable[..., CcsClient]
    ) -> None:
        """A jobruns body of the wrong shape is a BadResponseError."""
        add_token(mocked_responses)
        mocked_responses.get(RUNS_URL, json={"JobStatusInfo": [{"Status": "finished"}]})
        with pytest.raises(BadResponseError) as caught:
            make_client().get_job_runs(JOB_ID)
        assert "JobStatusInfo.0.Status" in str(caught.value)


class TestRetries:
    def test_read_retries_on_5xx(
        self,
        mocked_responses: responses.RequestsMock,
        make_client: Callable[..., CcsClient],
        load_fixture: Any,
    ) -> None:
        """A read that meets 500 and 503 is repeated and succeeds."""
        add_token(mocked_responses)
        mocked_responses.get(JOB_URL, status=500)
        mocked_responses.get(JOB_URL, status=503)
        add_job(mocked_responses, load_fixture)
        assert make_client().get_job(JOB_ID).JobProperties.JobID == JOB_ID

    def test_read_retries_are_bounded(
        self, mocked_responses: responses.RequestsMock, make_client: Callable[..., CcsClient]
    ) -> None:
        """A read failing every time is tried 1 + read_retries times, then raises ServerError."""
        add_token(mocked_responses)
        mocked_responses.get(JOB_URL, status=500, json={"Message": "down"})
        with pytest.raises(ServerError):
            make_client(read_retries=2).get_job(JOB_ID)
        assert len([call for call in mocked_responses.calls if call.request.url == JOB_URL]) == 3

    def test_read_retries_on_connection_error(
        self,
        mocked_responses: responses.RequestsMock,
        make_client: Callable[..., CcsClient],
        load_fixture: Any,
    ) -> None:
        """A read whose connection drops is repeated and succeeds."""
        add_token(mocked_responses)
        mocked_responses.get(JOB_URL, body=requests.exceptions.ConnectionError("Connection reset by peer"))
        add_job(mocked_responses, load_fixture)
        assert make_client().get_job(JOB_ID).JobProperties.JobID == JOB_ID

    def test_connection_errors_exhaust_retries(
        self, mocked_responses: responses.RequestsMock, make_client: Callable[..., CcsClient]
    ) -> None:
        """A read that never connects ends as UnavailableError carrying method and path."""
        add_token(mocked_responses)
        mocked_responses.get(JOB_URL, body=requests.exceptions.ConnectionError("Connection reset by peer"))
        with pytest.raises(UnavailableError) as caught:
            make_client(read_retries=1).get_job(JOB_ID)
        assert (caught.value.method, caught.value.path) == ("GET", f"/ccs/api/v1/jobs/{JOB_ID}")
        assert len([call for call in mocked_responses.calls if call.request.url == JOB_URL]) == 2

    @pytest.mark.parametrize("status", [500, 502, 503])
    def test_no_retry_for_mutations_on_5xx(
        self,
        mocked_responses: responses.RequestsMock,
        make_client: Callable[..., CcsClient],
        load_fixture: Any,
        status: int,
    ) -> None:
        """Create, update and delete answered with 5xx are sent once: CCS may have carried them out."""
        add_token(mocked_responses)
        mocked_responses.post(f"{API}/jobs", status=status)
        mocked_responses.patch(f"{API}/jobs", status=status)
        mocked_responses.delete(f"{API}/Jobs", status=status)
        client = make_client()
        with pytest.raises(ServerError):
            client.create_job(CreateJobRequest.model_validate(load_fixture("create_job_request.json")))
        with pytest.raises(ServerError):
            client.update_job(JOB_ID, JobDetailsUpdate(JobDescription="x"))
        with pytest.raises(ServerError):
            client.delete_job(JOB_ID)
        assert [call.request.method for call in mocked_responses.calls] == ["POST", "POST", "PATCH", "DELETE"]

    def test_no_retry_for_mutations_on_dropped_connection(
        self, mocked_responses: responses.RequestsMock, make_client: Callable[..., CcsClient]
    ) -> None:
        """A delete whose connection drops is not repeated."""
        add_token(mocked_responses)
        mocked_responses.delete(f"{API}/Jobs", body=requests.exceptions.ConnectionError("Connection aborted"))
        with pytest.raises(UnavailableError):
            make_client().delete_job(JOB_ID)
        assert len(mocked_responses.calls) == 2

    def test_read_timeout(
        self, mocked_responses: responses.RequestsMock, make_client: Callable[..., CcsClient]
    ) -> None:
        """A read timeout is a CcsTimeoutError with sent=True, and is not retried."""
        add_token(mocked_responses)
        mocked_responses.get(JOB_URL, body=requests.exceptions.ReadTimeout("read timed out"))
        with pytest.raises(CcsTimeoutError) as caught:
            make_client(timeout=7).get_job(JOB_ID)
        assert caught.value.sent is True
        assert (caught.value.method, caught.value.path) == ("GET", f"/ccs/api/v1/jobs/{JOB_ID}")
        assert "7 s" in str(caught.value)
        assert len(mocked_responses.calls) == 2

    def test_connect_timeout(
        self, mocked_responses: responses.RequestsMock, make_client: Callable[..., CcsClient]
    ) -> None:
        """A connect timeout is a CcsTimeoutError with sent=False."""
        add_token(mocked_responses)
        mocked_responses.patch(f"{API}/jobs", body=requests.exceptions.ConnectTimeout("connect timed out"))
        with pytest.raises(CcsTimeoutError) as caught:
            make_client().update_job(JOB_ID, JobDetailsUpdate(JobDescription="x"))
        assert caught.value.sent is False

    def test_connection_refused(self, make_client: Callable[..., CcsClient]) -> None:
        """A refused connection is an UnavailableError with sent=False, naming the request."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        client = make_client(base_url=f"http://127.0.0.1:{port}", read_retries=0)
        with pytest.raises(UnavailableError) as caught:
            client.get_job(JOB_ID)
        assert caught.value.sent is False
        assert "refused" in str(caught.value)
        assert caught.value.method == "POST" and caught.value.path == "/ccs/api/v1/oauth/tokens"


class TestEndpoints:
    @pytest.mark.parametrize(
        "bad_id", ["not-a-guid", "", "23c59087-f3d4-4e05-a39e-3440c58e58f", "../../oauth"]
    )
    def test_guid_checked_before_any_request(
        self, mocked_responses: responses.RequestsMock, make_client: Callable[..., CcsClient], bad_id: str
    ) -> None:
        """A job id that is not a GUID is a ConfigError for every endpoint, and nothing is sent."""
        client = make_client()
        calls: list[Callable[[], object]] = [
            lambda: client.get_job(bad_id),
            lambda: client.get_job_runs(bad_id),
            lambda: client.update_job(bad_id, JobDetailsUpdate(JobDescription="x")),
            lambda: client.delete_job(bad_id),
        ]
        for call in calls:
            with pytest.raises(ConfigError):
                call()
        assert len(mocked_responses.calls) == 0
        assert client.requests_sent == 0

    def test_guid_normalised_in_url(
        self,
        mocked_responses: responses.RequestsMock,
        make_client: Callable[..., CcsClient],
        load_fixture: Any,
    ) -> None:
        """A braced upper-case job id is sent in lower case without braces."""
        add_token(mocked_responses)
        add_job(mocked_responses, load_fixture)
        make_client().get_job("{" + JOB_ID.upper() + "}")
        assert mocked_responses.calls[1].request.url == JOB_URL

    def test_get_job(
        self,
        mocked_responses: responses.RequestsMock,
        make_client: Callable[..., CcsClient],
        load_fixture: Any,
    ) -> None:
        """get_job sends an authenticated GET and returns the parsed job."""
        add_token(mocked_responses)
        add_job(mocked_responses, load_fixture)
        job = make_client().get_job(JOB_ID)
        assert job.JobProperties.Name == "CreateJob_FreshCollectionEvaluation"
        assert mocked_responses.calls[1].request.headers["Accept"] == "application/json"

    @pytest.mark.parametrize(("count", "messages", "sent"), [(2, True, "true"), (0, False, "false")])
    def test_get_job_runs(
        self,
        mocked_responses: responses.RequestsMock,
        make_client: Callable[..., CcsClient],
        load_fixture: Any,
        count: int,
        messages: bool,
        sent: str,
    ) -> None:
        """get_job_runs sends count and showmessages and returns the parsed runs."""
        add_token(mocked_responses)
        mocked_responses.get(
            RUNS_URL,
            json=load_fixture("jobruns.json"),
            match=[matchers.query_param_matcher({"count": str(count), "showmessages": sent})],
        )
        runs = make_client().get_job_runs(JOB_ID, count=count, show_messages=messages)
        assert runs.JobStatusInfo[0].duration_seconds == 8.0

    def test_negative_count_refused(
        self, mocked_responses: responses.RequestsMock, make_client: Callable[..., CcsClient]
    ) -> None:
        """A negative run count is refused before anything is sent."""
        with pytest.raises(ConfigError):
            make_client().get_job_runs(JOB_ID, count=-1)
        assert len(mocked_responses.calls) == 0

    def test_create_job(
        self,
        mocked_responses: responses.RequestsMock,
        make_client: Callable[..., CcsClient],
        load_fixture: Any,
    ) -> None:
        """create_job POSTs the body as given and returns the status and the new JobID normalised."""
        sample = load_fixture("create_job_request.json")
        add_token(mocked_responses)
        mocked_responses.post(
            f"{API}/jobs",
            json={"JobID": "{5ADE67F0-0C93-49F3-9F2B-B8EC4BEAA99C}"},
            match=[matchers.json_params_matcher(sample)],
        )
        result = make_client().create_job(CreateJobRequest.model_validate(sample))
        assert result == MutationResult(200, job_id="5ade67f0-0c93-49f3-9f2b-b8ec4beaa99c")

    @pytest.mark.parametrize(
        "body", ['{"JobID": "not-a-guid"}', "{}", '{"JobID": null}', "[]", "created", '"5ade67f0"']
    )
    def test_create_job_bad_body(
        self,
        mocked_responses: responses.RequestsMock,
        make_client: Callable[..., CcsClient],
        load_fixture: Any,
        body: str,
    ) -> None:
        """A create answered 200 without a usable JobID is a BadResponseError."""
        add_token(mocked_responses)
        mocked_responses.post(f"{API}/jobs", body=body)
        with pytest.raises(BadResponseError) as caught:
            make_client().create_job(CreateJobRequest.model_validate(load_fixture("create_job_request.json")))
        assert (caught.value.method, caught.value.status) == ("POST", 200)

    def test_update_job(
        self,
        mocked_responses: responses.RequestsMock,
        make_client: Callable[..., CcsClient],
        load_fixture: Any,
    ) -> None:
        """update_job PATCHes JobDetails and the normalised JobID (as in the vendor sample); returns 204."""
        sample = load_fixture("update_job_request.json")
        add_token(mocked_responses)
        mocked_responses.patch(f"{API}/jobs", status=204, match=[matchers.json_params_matcher(sample)])
        details = JobDetailsUpdate.model_validate(sample["JobDetails"])
        assert make_client().update_job(sample["JobID"].upper(), details) == MutationResult(204)

    @pytest.mark.parametrize(("delete_job", "flag"), [(True, "True"), (False, "False")])
    def test_delete_job(
        self,
        mocked_responses: responses.RequestsMock,
        make_client: Callable[..., CcsClient],
        delete_job: bool,
        flag: str,
    ) -> None:
        """delete_job sends jobid and DeleteJob=True/False as query parameters; returns the status."""
        add_token(mocked_responses)
        mocked_responses.delete(
            f"{API}/Jobs",
            status=204,
            match=[matchers.query_param_matcher({"jobid": JOB_ID, "DeleteJob": flag})],
        )
        assert make_client().delete_job(JOB_ID, delete_job=delete_job) == MutationResult(204)

    def test_delete_job_message(
        self, mocked_responses: responses.RequestsMock, make_client: Callable[..., CcsClient]
    ) -> None:
        """A delete answered 200 with a message returns that message with the status."""
        add_token(mocked_responses)
        mocked_responses.delete(f"{API}/Jobs", json={"Message": "Job and its 3 runs deleted."})
        assert make_client().delete_job(JOB_ID) == MutationResult(200, "Job and its 3 runs deleted.")


class TestObserver:
    def test_observer_sees_every_attempt(
        self,
        mocked_responses: responses.RequestsMock,
        make_client: Callable[..., CcsClient],
        load_fixture: Any,
    ) -> None:
        """The observer gets (endpoint, code, seconds) for every attempt, retries and token included."""
        seen: list[tuple[str, str, float]] = []
        add_token(mocked_responses)
        mocked_responses.get(JOB_URL, status=503)
        add_job(mocked_responses, load_fixture)
        mocked_responses.get(RUNS_URL, body=requests.exceptions.ReadTimeout())
        client = make_client(observer=lambda *args: seen.append(args))
        client.get_job(JOB_ID)
        with pytest.raises(CcsTimeoutError):
            client.get_job_runs(JOB_ID)
        assert [(endpoint, code) for endpoint, code, _ in seen] == [
            ("token", "200"),
            ("job", "503"),
            ("job", "200"),
            ("jobruns", "timeout"),
        ]
        assert all(isinstance(seconds, float) and seconds >= 0 for _, _, seconds in seen)
        assert client.requests_sent == 4


def _secrets() -> list[str]:
    return [PASSWORD, PASSWORD_B64, ACCESS, REFRESH, "access-2", "refresh-2"]


def _echo(text: str) -> dict[str, str]:
    """An error body that repeats what it was sent, as some proxies and frameworks do."""
    return {"Message": f"rejected: {text}"}


def _failure_scenarios() -> dict[str, Callable[[responses.RequestsMock, FakeClock, CcsClient], None]]:
    def login_refused_echoing(mock: responses.RequestsMock, clock: FakeClock, client: CcsClient) -> None:
        mock.post(TOKEN_URL, status=401, json=_echo(f"password={PASSWORD_B64} ({PASSWORD})"))
        client.get_job(JOB_ID)

    def login_500_text(mock: responses.RequestsMock, clock: FakeClock, client: CcsClient) -> None:
        mock.post(TOKEN_URL, status=500, body=f"grant_type=password&password={PASSWORD_B64}")
        client.get_job(JOB_ID)

    def token_not_json(mock: responses.RequestsMock, clock: FakeClock, client: CcsClient) -> None:
        mock.post(TOKEN_URL, body=f"access_token={ACCESS}")
        client.get_job(JOB_ID)

    def twice_401_echoing_token(mock: responses.RequestsMock, clock: FakeClock, client: CcsClient) -> None:
        mock.post(TOKEN_URL, json=token_body())
        mock.get(JOB_URL, status=401, json=_echo(f"Bearer {ACCESS}"))
        mock.post(TOKEN_URL, json=token_body(access="access-2", refresh="refresh-2"))
        mock.get(JOB_URL, status=401, json=_echo("Bearer access-2"))
        client.get_job(JOB_ID)

    def server_error_echoing(mock: responses.RequestsMock, clock: FakeClock, client: CcsClient) -> None:
        mock.post(TOKEN_URL, json=token_body())
        mock.delete(
            f"{API}/Jobs", status=500, body=f"Authorization: Bearer {ACCESS}", content_type="text/plain"
        )
        client.delete_job(JOB_ID)

    def refresh_and_login_refused(mock: responses.RequestsMock, clock: FakeClock, client: CcsClient) -> None:
        mock.post(TOKEN_URL, json=token_body())
        mock.get(JOB_URL, json={"JobProperties": {"JobID": JOB_ID}})
        client.get_job(JOB_ID)
        clock.now += 3600
        mock.post(TOKEN_URL, status=400, json=_echo(f"refresh_token={REFRESH}"))
        mock.post(TOKEN_URL, status=401, json=_echo(PASSWORD))
        client.get_job(JOB_ID)

    def login_suspended(mock: responses.RequestsMock, clock: FakeClock, client: CcsClient) -> None:
        mock.post(TOKEN_URL, status=401)
        with pytest.raises(AuthError):
            client.get_job(JOB_ID)
        client.get_job(JOB_ID)

    def read_timeout(mock: responses.RequestsMock, clock: FakeClock, client: CcsClient) -> None:
        mock.post(TOKEN_URL, json=token_body())
        mock.get(RUNS_URL, body=requests.exceptions.ReadTimeout(f"read timed out {ACCESS}"))
        client.get_job_runs(JOB_ID)

    def connection_dropped(mock: responses.RequestsMock, clock: FakeClock, client: CcsClient) -> None:
        mock.post(TOKEN_URL, body=requests.exceptions.ConnectionError(f"Connection aborted {PASSWORD_B64}"))
        client.get_job(JOB_ID)

    def bad_job_body(mock: responses.RequestsMock, clock: FakeClock, client: CcsClient) -> None:
        mock.post(TOKEN_URL, json=token_body())
        mock.get(JOB_URL, json={"JobProperties": {"JobID": ACCESS}})
        client.get_job(JOB_ID)

    return {
        function.__name__: function
        for function in (
            login_refused_echoing,
            login_500_text,
            token_not_json,
            twice_401_echoing_token,
            server_error_echoing,
            refresh_and_login_refused,
            login_suspended,
            read_timeout,
            connection_dropped,
            bad_job_body,
        )
    }


class TestSecretsNeverInErrors:
    @pytest.mark.parametrize("scenario", sorted(_failure_scenarios()))
    def test_no_secret_in_error_text(
        self,
        mocked_responses: responses.RequestsMock,
        make_client: Callable[..., CcsClient],
        clock: FakeClock,
        scenario: str,
    ) -> None:
        """Neither the password (plain or Base64) nor any token appears in the error's str or repr."""
        client = make_client(read_retries=0)
        with pytest.raises(CcsError) as caught:
            _failure_scenarios()[scenario](mocked_responses, clock, client)
        exc = caught.value
        texts = [str(exc), repr(exc), exc.message, *map(str, exc.args)]
        for secret in _secrets():
            for text in texts:
                assert secret not in text
        assert exc.__cause__ is None or not isinstance(exc.__cause__, requests.RequestException)


class TestErrorHierarchy:
    @pytest.mark.parametrize(
        ("status", "error_type", "kind"),
        [
            (400, BadRequestError, "bad_request"),
            (401, AuthError, "auth"),
            (403, ForbiddenError, "forbidden"),
            (404, NotFoundError, "not_found"),
            (409, CcsError, "ccs_error"),
            (500, ServerError, "server_error"),
            (503, ServerError, "server_error"),
        ],
    )
    def test_from_status_picks_the_class_and_kind(
        self, status: int, error_type: type[CcsError], kind: str
    ) -> None:
        """CcsError.from_status maps a status to its class (which names its kind) and keeps the request."""
        error = CcsError.from_status(status, "refused", method="GET", path="/ccs/api/v1/jobs/x")
        assert type(error) is error_type
        assert error.kind == kind
        assert str(error) == f"GET /ccs/api/v1/jobs/x -> {status}: refused"

    def test_unavailable_kinds(self) -> None:
        """A timeout and an unreachable CCS have their own kinds, as the poller reports them."""
        assert CcsTimeoutError("late").kind == "timeout"
        assert UnavailableError("down").kind == "unavailable"
        assert BadResponseError("garbled").kind == "bad_response"
