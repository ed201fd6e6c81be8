"""Hostile CCS data: huge, deep, odd or missing payloads cost bounded work and never break the exposition.

A tiny local CCS stub serves exactly the bytes each test wants (the simulator only serves well-formed jobs).
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from ccs_exporter.client import CcsClient
from ccs_exporter.errors import BadResponseError
from ccs_exporter.exposition.families import MAX_LABEL_LENGTH, TRUNCATION_MARKER
from ccs_exporter.exposition.renderer import render_snapshot
from ccs_exporter.polling.cycle import Poller

pytestmark = pytest.mark.integration

TOKEN = {"access_token": "stub-access", "refresh_token": "stub-refresh", "expires_in": 3600}
QUOTES = 'a "quoted" \\back\\slashed\\ name\nwith\r\nnewlines\t and } { = , labels'


def guid(number: int) -> str:
    return f"00000000-0000-4000-8000-{number:012d}"


def job_body(job_id: str, **properties: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "JobID": job_id,
        "Name": "plain",
        "JobType": "COLLECTIONJOB",
        "Owner": "CCS\\demo",
        "IsSystemJob": False,
        "JobModifiedTime": "2026-01-01T00:00:00Z",
        "LastRunDate": "2026-01-02T00:00:00Z",
        "LastRunStatus": 4,
    }
    base.update(properties)
    return {"JobProperties": base, "JobConfigDetails": None}


def runs_body(job_id: str, *runs: dict[str, Any], total: Any = 1) -> dict[str, Any]:
    return {"JobID": job_id, "TotalJobRuns": total, "JobStatusInfo": list(runs)}


def completed_run(**fields: Any) -> dict[str, Any]:
    run: dict[str, Any] = {
        "Status": 4,
        "JobStartTime": "2026-01-02T00:00:00Z",
        "JobEndTime": "2026-01-02T00:01:00Z",
        "JobMessages": [],
    }
    run.update(fields)
    return run


class CcsStub:
    """Serves ``routes[path]`` (bytes, or anything JSON-able) with status 200; a token for any login."""

    def __init__(self) -> None:
        self.routes: dict[str, Any] = {}
        self.chunked: set[str] = set()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self._send(json.dumps(TOKEN).encode(), close=False)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0].lower()
                if path not in stub.routes:
                    self.send_response(404)
                    self.send_header("Content-Length", "22")
                    self.end_headers()
                    self.wfile.write(b'{"Message":"No job."} ')
                    return
                body = stub.routes[path]
                raw = body if isinstance(body, bytes) else json.dumps(body).encode()
                self._send(raw, close=path in stub.chunked)

            def _send(self, raw: bytes, close: bool) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                if close:  # no length: the body ends when the connection does
                    self.send_header("Connection", "close")
                    self.close_connection = True
                else:
                    self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                try:
                    view = memoryview(raw)
                    for start in range(0, len(raw), 1 << 20):
                        self.wfile.write(view[start : start + (1 << 20)])
                except OSError:
                    pass  # the client stopped reading: what the size cap is for

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def set_job(self, job_id: str, job: Any, runs: Any = None) -> None:
        self.routes[f"/ccs/api/v1/jobs/{job_id}"] = job
        if runs is not None:
            self.routes[f"/ccs/api/v1/jobs/{job_id}/jobruns"] = runs

    def start(self) -> CcsStub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def stub() -> Iterator[CcsStub]:
    """A started CCS stub on a free local port."""
    server = CcsStub().start()
    yield server
    server.stop()


@pytest.fixture
def client_for(stub: CcsStub) -> Iterator[Callable[..., CcsClient]]:
    """Clients against the stub, without retries; closed afterwards."""
    made: list[CcsClient] = []

    def make(**options: Any) -> CcsClient:
        options.setdefault("read_retries", 0)
        options.setdefault("timeout", 10.0)
        client = CcsClient(stub.url, "CCS\\demo", SecretStr("pw-hostile"), **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def _samples(text: bytes) -> list[Any]:
    return [sample for family in text_string_to_metric_families(text.decode()) for sample in family.samples]


class TestOversizedBodies:
    """A body bigger than the cap is refused without being read to the end."""

    @pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "no-length"])
    def test_50_mb_body_is_a_bad_response(
        self, stub: CcsStub, client_for: Callable[..., CcsClient], chunked: bool
    ) -> None:
        """A 50 MB job body (declared or not) raises BadResponseError naming the cap."""
        job_id = guid(1)
        huge = (
            b'{"JobProperties": {"JobID": "' + job_id.encode() + b'", "Name": "' + b"x" * (50 << 20) + b'"}}'
        )
        stub.set_job(job_id, huge)
        if chunked:
            stub.chunked.add(f"/ccs/api/v1/jobs/{job_id}")
        with pytest.raises(BadResponseError) as caught:
            client_for().get_job(job_id)
        assert "larger than" in str(caught.value) and caught.value.path.endswith(job_id)

    def test_body_under_a_small_cap_is_read(
        self, stub: CcsStub, client_for: Callable[..., CcsClient]
    ) -> None:
        """The cap is a bound, not a filter: a body under it parses as usual."""
        job_id = guid(2)
        stub.set_job(job_id, job_body(job_id, Name="n" * 1000))
        assert client_for(max_response_bytes=4096).get_job(job_id).JobProperties.Name == "n" * 1000
        with pytest.raises(BadResponseError):
            client_for(max_response_bytes=512).get_job(job_id)

    def test_client_still_works_after_a_refused_body(
        self, stub: CcsStub, client_for: Callable[..., CcsClient]
    ) -> None:
        """After an oversized answer the pooled connection is dropped, not reused half-read."""
        big, small = guid(3), guid(4)
        stub.set_job(big, b"[" + b"1," * (2 << 20) + b"1]")
        stub.set_job(small, job_body(small))
        client = client_for(max_response_bytes=1 << 20)
        with pytest.raises(BadResponseError):
            client.get_job(big)
        assert client.get_job(small).JobProperties.JobID == small


class TestPathologicalJson:
    """Nesting and shapes that break naive parsers become BadResponseError."""

    @pytest.mark.parametrize("depth", [2_000, 200_000])
    def test_deep_nesting(self, stub: CcsStub, client_for: Callable[..., CcsClient], depth: int) -> None:
        """Arrays nested thousands deep raise BadResponseError, never RecursionError."""
        job_id = guid(5)
        stub.set_job(job_id, b"[" * depth + b"]" * depth)
        with pytest.raises(BadResponseError):
            client_for().get_job(job_id)

    def test_deep_nesting_inside_an_unknown_field(
        self, stub: CcsStub, client_for: Callable[..., CcsClient]
    ) -> None:
        """A deep value in a field we do not use is still refused cleanly."""
        job_id = guid(6)
        nested = b'{"JobProperties": {"JobID": "' + job_id.encode() + b'"}, "Extra": '
        stub.set_job(job_id, nested + b"[" * 50_000 + b"]" * 50_000 + b"}")
        with pytest.raises(BadResponseError):
            client_for().get_job(job_id)

    @pytest.mark.parametrize("body", [b"null", b"[]", b'"text"', b"12", b"{}", b'{"JobProperties": null}'])
    def test_wrong_shapes(self, stub: CcsStub, client_for: Callable[..., CcsClient], body: bytes) -> None:
        """JSON that is not a job object raises BadResponseError."""
        job_id = guid(7)
        stub.set_job(job_id, body)
        with pytest.raises(BadResponseError):
            client_for().get_job(job_id)


class TestHostileJobsInTheExposition:
    """A poll cycle over hostile jobs fails only the unreadable ones and renders valid exposition."""

    @pytest.fixture
    def hostile(self, stub: CcsStub) -> dict[str, str]:
        """Jobs with hostile names, absurd numbers, unknown codes, missing objects and bad bodies."""
        ids = {
            name: guid(index)
            for index, name in enumerate(
                ["quotes", "long", "numbers", "unknown_status", "no_properties", "deep", "null", "messages"],
                10,
            )
        }
        long_text = "L" * 100_000
        stub.set_job(
            ids["quotes"],
            job_body(ids["quotes"], Name=QUOTES, Owner=QUOTES, JobType=QUOTES),
            runs_body(ids["quotes"], completed_run()),
        )
        stub.set_job(
            ids["long"],
            job_body(ids["long"], Name=long_text, Owner=long_text, JobType=long_text),
            runs_body(ids["long"], completed_run()),
        )
        stub.set_job(
            ids["numbers"],
            job_body(ids["numbers"], LastRunStatus=-3, JobModifiedTime="9999-12-31T23:59:59.9999999+14:00"),
            runs_body(ids["numbers"], completed_run(MessageCount=-1), total=10**400),
        )
        stub.set_job(
            ids["unknown_status"],
            job_body(ids["unknown_status"], LastRunStatus=99),
            runs_body(ids["unknown_status"], completed_run(Status=12345), total=-5),
        )
        stub.set_job(ids["no_properties"], {"JobConfigDetails": None})
        stub.set_job(ids["deep"], b"{" + b'"a":{' * 100_000 + b"}" * 100_001)
        stub.set_job(ids["null"], b"null")
        messages = [{"Category": QUOTES + "C" * 5000, "Message": "M" * 1000}] * 500
        stub.set_job(
            ids["messages"],
            job_body(ids["messages"]),
            runs_body(ids["messages"], completed_run(JobMessages=messages)),
        )
        return ids

    def test_unreadable_jobs_fail_alone(
        self, hostile: dict[str, str], client_for: Callable[..., CcsClient]
    ) -> None:
        """Missing objects and bad bodies fail their job (bad_response); the rest succeed; CCS is up."""
        poller = Poller(client_for(), list(hostile.values()))
        try:
            snapshot = poller.poll_cycle()
        finally:
            poller.close()
        states = {job.job_id: job for job in snapshot.jobs}
        failed = {name for name, job_id in hostile.items() if not states[job_id].poll_success}
        assert failed == {"no_properties", "deep", "null"}
        assert {states[hostile[name]].error for name in failed} == {"bad_response"}
        assert snapshot.up

    def test_exposition_is_valid_and_labels_are_bounded(
        self,
        hostile: dict[str, str],
        client_for: Callable[..., CcsClient],
        require_tool: Callable[[str], str],
    ) -> None:
        """promtool finds nothing; every label value fits MAX_LABEL_LENGTH; long ones end in the marker."""
        promtool = require_tool("promtool")
        poller = Poller(client_for(), list(hostile.values()))
        try:
            text = render_snapshot(poller.poll_cycle())
        finally:
            poller.close()
        result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=60)
        assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
        samples = _samples(text)
        assert all(len(value) <= MAX_LABEL_LENGTH for sample in samples for value in sample.labels.values())
        info = {s.labels["job_id"]: s.labels for s in samples if s.name == "ccs_job_info"}
        assert info[hostile["quotes"]]["job_name"] == QUOTES  # escaped, not mangled
        assert info[hostile["long"]]["job_name"].endswith(TRUNCATION_MARKER)
        categories = [s.labels["category"] for s in samples if s.name == "ccs_job_last_run_messages"]
        assert all("\n" not in category for category in categories)

    def test_absurd_numbers_stay_finite(
        self, hostile: dict[str, str], client_for: Callable[..., CcsClient]
    ) -> None:
        """A 400-digit run count, negative counts and unknown codes render as finite numbers."""
        poller = Poller(client_for(), list(hostile.values()))
        try:
            text = render_snapshot(poller.poll_cycle())
        finally:
            poller.close()
        values = {(s.name, s.labels.get("job_id")): s.value for s in _samples(text)}
        assert values[("ccs_job_runs", hostile["numbers"])] == 1e300
        assert values[("ccs_job_runs", hostile["unknown_status"])] == 0
        assert values[("ccs_job_last_run_status_code", hostile["unknown_status"])] == 12345
        assert all(abs(value) <= 1e300 for value in values.values())


class TestMessageCategoryFlood:
    """A run whose messages carry thousands of distinct categories costs a bounded number of series."""

    def test_20000_categories_make_at_most_14_series_that_still_add_up(
        self, stub: CcsStub, client_for: Callable[..., CcsClient]
    ) -> None:
        """20,000 categories: the usual three, ten others and 'other'; the sum is every message."""
        job_id = guid(1)
        messages = [{"Category": f"Category {n}", "Message": "m"} for n in range(20_000)]
        messages += [{"Category": "Error", "Message": "m"}] * 3
        messages += [{"Category": "Category 19999", "Message": "m"}]
        stub.set_job(job_id, job_body(job_id), runs_body(job_id, completed_run(JobMessages=messages)))
        poller = Poller(client_for(), [job_id])
        try:
            text = render_snapshot(poller.poll_cycle())
        finally:
            poller.close()
        counts = {
            s.labels["category"]: s.value for s in _samples(text) if s.name == "ccs_job_last_run_messages"
        }
        assert len(counts) == 14
        assert sum(counts.values()) == len(messages)
        assert counts["error"] == 3 and counts["warning"] == 0 and counts["information"] == 0
        assert counts["category 19999"] == 2  # the most frequent other category keeps its series
        assert counts["other"] == 20_000 - 10
