"""Hostile token answers and unusable passwords: the poll keeps going, nothing leaks, start-up says why.

Issue 23, findings 1 and 5: a 400-digit ``expires_in`` killed the poll workers (the exporter hung while
reporting healthy); a password that is not UTF-8 did the same and printed a traceback naming its
characters; a login form echoed URL-encoded by CCS or a proxy showed the password.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import responses
from pydantic import SecretStr

from ccs_exporter.client import CcsClient
from ccs_exporter.errors import BadResponseError, CcsError, ConfigError
from ccs_exporter.polling.cycle import Poller
from ccs_exporter.polling.workers import WorkerPool
from ccs_exporter.redaction import secret_variants

BASE = "https://ccs.test:12431"
API = f"{BASE}/ccs/api/v1"
TOKEN_URL = f"{API}/oauth/tokens"
JOB_ID = "23c59087-f3d4-4e05-a39e-3440c58e58fb"
PASSWORD = "p@ss w/rd+1"  # its form-encoded shape (p%40ss+w%2Frd%2B1) is what leaked
PASSWORD_B64 = base64.b64encode(PASSWORD.encode()).decode()
ROOT = Path(__file__).parent.parent


@pytest.fixture
def make_client() -> Iterator[Callable[..., CcsClient]]:
    made: list[CcsClient] = []

    def make(password: str = PASSWORD, **options: Any) -> CcsClient:
        options.setdefault("backoff_seconds", 0)
        options.setdefault("read_retries", 0)
        client = CcsClient(BASE, "CCS\\demo", SecretStr(password), **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def _job_body(load_fixture: Callable[[str], Any]) -> Any:
    return load_fixture("search_job_by_id.json")


class TestTokenLifetimes:
    """Whatever number the token answer states, the login works and the token is refreshed within a day."""

    @pytest.mark.parametrize(
        "expires_in",
        ["9" * 400, "1e400", "-1e400", "NaN", "Infinity", '"9999999999999999999999999"', "true", "0"],
        ids=["400-digits", "1e400", "-1e400", "NaN", "Infinity", "huge-string", "bool", "zero"],
    )
    def test_absurd_expires_in_still_logs_in(
        self,
        mocked_responses: responses.RequestsMock,
        make_client: Callable[..., CcsClient],
        expires_in: str,
    ) -> None:
        """The token is kept and reused; the absurd lifetime does not raise (OverflowError before)."""
        body = f'{{"access_token": "tok-a", "refresh_token": "tok-r", "expires_in": {expires_in}}}'
        mocked_responses.post(TOKEN_URL, body=body, content_type="application/json")
        client = make_client()
        client.authenticate()
        client.authenticate()
        assert len(mocked_responses.calls) == 1

    def test_lifetime_is_capped_at_a_day(self, mocked_responses: responses.RequestsMock) -> None:
        """A token said to live 10**400 s is refreshed after at most a day, not never."""
        now = [1000.0]
        body = '{"access_token": "tok-a", "expires_in": ' + "9" * 400 + "}"
        mocked_responses.post(TOKEN_URL, body=body, content_type="application/json")
        mocked_responses.post(TOKEN_URL, json={"access_token": "tok-b", "expires_in": 3600})
        client = CcsClient(BASE, "u", SecretStr(PASSWORD), clock=lambda: now[0], backoff_seconds=0)
        try:
            client.authenticate()
            now[0] += 86400
            client.authenticate()
        finally:
            client.close()
        assert len(mocked_responses.calls) == 2

    @pytest.mark.parametrize(
        "token",
        ["tök-ä", "tok\nInjected: 1", "x" * 20000, "tok a"],
        ids=["non-ascii", "newline", "20000-chars", "space"],
    )
    def test_token_that_cannot_be_a_header_is_a_bad_response(
        self, mocked_responses: responses.RequestsMock, make_client: Callable[..., CcsClient], token: str
    ) -> None:
        """A non-ASCII, multi-line, huge or spaced access token is a one-line CcsError, not a crash."""
        mocked_responses.post(TOKEN_URL, json={"access_token": token})
        with pytest.raises(BadResponseError) as caught:
            make_client().authenticate()
        assert token not in str(caught.value)


class TestPollSurvivesBadTokenAnswers:
    """The bug as reported: workers died one by one and the cycle count stopped while up stayed 1."""

    def test_cycles_keep_completing_after_a_400_digit_expires_in(
        self, make_client: Callable[..., CcsClient], load_fixture: Callable[[str], Any]
    ) -> None:
        """Five cycles (more than the 2 workers) each complete, with the job read."""
        with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
            mock.post(
                TOKEN_URL,
                body='{"access_token": "tok-a", "expires_in": ' + "9" * 400 + "}",
                content_type="application/json",
            )
            mock.get(f"{API}/jobs/{JOB_ID}", json=_job_body(load_fixture))
            mock.get(f"{API}/Jobs/{JOB_ID}/jobruns", json={"JobID": JOB_ID, "JobStatusInfo": []})
            poller = Poller(make_client(), [JOB_ID], concurrency=2)
            try:
                snapshots = [poller.poll_cycle() for _ in range(5)]
            finally:
                poller.close()
        assert [snapshot.cycles for snapshot in snapshots] == [1, 2, 3, 4, 5]
        assert all(snapshot.up and snapshot.failed_jobs == 0 for snapshot in snapshots)


class TestWorkersSurvive:
    def test_a_raising_function_leaves_every_worker_alive(self) -> None:
        """Ten batches of raising items on 2 workers all finish; the errors are counted."""
        pool = WorkerPool(2, name="test-pool")

        def explode(item: int) -> int:
            if item % 2:
                raise OverflowError("int too large to convert to float")
            return item

        try:
            results = [pool.map(explode, [1, 2, 3, 4]) for _ in range(10)]
        finally:
            pool.close()
        assert all(result == [None, 2, None, 4] for result in results)
        assert pool.errors == 20


class TestPasswordNotUtf8:
    """``CCS_EXPORTER_PASSWORD`` holding a byte that is not UTF-8 (a surrogate escape in Python)."""

    BAD = "pa\udcffss-w0rd"

    def test_client_refuses_it_with_a_config_error_not_showing_it(self) -> None:
        """A one-line ConfigError naming the password, without any of its characters or their position."""
        with pytest.raises(ConfigError) as caught:
            CcsClient(BASE, "u", SecretStr(self.BAD))
        message = str(caught.value)
        assert "UTF-8" in message and "\\udcff" not in message and "\udcff" not in message
        assert "pa" not in message.replace("password", "") and "position" not in message

    @pytest.mark.integration
    @pytest.mark.parametrize(
        "command",
        [["check-config"], ["jobs", "get", JOB_ID], ["serve", "--listen-address", "127.0.0.1:0"]],
        ids=["check-config", "jobs-get", "serve"],
    )
    def test_commands_exit_2_with_one_line(self, tmp_path: Path, command: list[str]) -> None:
        """check-config (which accepted it), jobs and serve: exit 2, one line, no traceback, no secret."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("CCS_EXPORTER_")}
        env.update(
            CCS_EXPORTER_URL="http://127.0.0.1:9",
            CCS_EXPORTER_USERNAME="CCS\\demo",
            CCS_EXPORTER_JOB_IDS=JOB_ID,
            PYTHONPATH=str(ROOT),
        )
        env_bytes = {key.encode(): value.encode() for key, value in env.items()}
        env_bytes[b"CCS_EXPORTER_PASSWORD"] = b"pa\xffss-w0rd"  # not UTF-8
        result = subprocess.run(
            [sys.executable, "-m", "ccs_exporter", *command],
            capture_output=True,
            env=env_bytes,  # type: ignore[arg-type]
            cwd=tmp_path,
            timeout=60,
            check=False,
        )
        stderr = result.stderr.decode("utf-8", "replace")
        assert result.returncode == 2, stderr
        assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
        assert "CCS_EXPORTER_PASSWORD" in stderr and "UTF-8" in stderr
        assert b"\xff" not in result.stderr and "udcff" not in stderr and "pa" not in stderr.split(":")[-1]


class TestUrlEncodedPassword:
    """Finding 5: the login form echoed by CCS or a proxy, URL-encoded, is redacted in every form."""

    def test_every_form_encoded_shape_is_a_known_variant(self) -> None:
        """quote_plus and quote forms of the password and of its Base64 form are all redacted."""
        variants = set(secret_variants(PASSWORD))
        for form in (PASSWORD, PASSWORD_B64):
            assert {quote_plus(form), quote(form, safe=""), quote(form)} <= variants

    @pytest.mark.parametrize("encoding", ["plain", "base64"])
    def test_echoed_login_form_is_redacted_in_the_error(
        self, mocked_responses: responses.RequestsMock, make_client: Callable[..., CcsClient], encoding: str
    ) -> None:
        """A 401 echoing ``grant_type=password&...&password=p%40ss+w%2Frd%2B1`` shows none of the password."""
        sent = PASSWORD if encoding == "plain" else PASSWORD_B64
        echoed = f"bad login for form username=CCS%5Cdemo&grant_type=password&pw={quote_plus(sent)} "
        echoed += f"(also {quote(sent, safe='')} and {quote(sent)})"
        mocked_responses.post(TOKEN_URL, status=401, json={"Message": echoed})
        with pytest.raises(CcsError) as caught:
            make_client(password_encoding=encoding).authenticate()
        message = str(caught.value)
        assert "[REDACTED]" in message
        for form in (PASSWORD, PASSWORD_B64):
            for shape in (quote_plus(form), quote(form, safe=""), quote(form)):
                assert shape not in message

    @pytest.mark.integration
    def test_check_config_connect_does_not_show_it(self, tmp_path: Path) -> None:
        """``check-config --connect`` against a CCS echoing the form URL-encoded: no password shown."""
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Echo(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                form = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
                body = json.dumps({"Message": f"rejected form: {form}"}).encode()
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            env = {key: value for key, value in os.environ.items() if not key.startswith("CCS_EXPORTER_")}
            env.update(
                CCS_EXPORTER_URL=f"http://127.0.0.1:{server.server_address[1]}",
                CCS_EXPORTER_USERNAME="CCS\\demo",
                CCS_EXPORTER_PASSWORD=PASSWORD,
                PYTHONPATH=str(ROOT),
            )
            result = subprocess.run(
                [sys.executable, "-m", "ccs_exporter", "check-config", "--connect"],
                capture_output=True,
                text=True,
                env=env,
                cwd=tmp_path,
                timeout=60,
                check=False,
            )
        finally:
            server.shutdown()
            server.server_close()
        output = result.stdout + result.stderr
        assert result.returncode == 1, output
        assert "[REDACTED]" in output
        for form in (PASSWORD, PASSWORD_B64):
            for shape in (form, quote_plus(form), quote(form, safe=""), quote(form)):
                assert shape not in output
