"""Unit tests of job discovery: settings, the client's search endpoints, paging, the discoverer's memory."""

from __future__ import annotations

import copy
import dataclasses
import json
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from pydantic import SecretStr
from structlog.testing import capture_logs

from ccs_exporter.client import (
    BadSearchItem,
    CcsClient,
    PageReuse,
    SearchItem,
    SearchPage,
    body_digest,
    search_page,
)
from ccs_exporter.client import api as api_module
from ccs_exporter.client.api import JobsApi
from ccs_exporter.errors import (
    BadRequestError,
    BadResponseError,
    CcsError,
    ConfigError,
    NotFoundError,
    ServerError,
    UnavailableError,
)
from ccs_exporter.models import Job
from ccs_exporter.polling import discovery
from ccs_exporter.polling import listing as listing_module
from ccs_exporter.polling.discovery import Discoverer, search_label
from ccs_exporter.polling.listing import list_search
from ccs_exporter.polling.workers import WorkerPool
from ccs_exporter.settings.config import load_settings
from ccs_exporter.settings.values import MAX_JOB_SEARCHES

BASE = "https://ccs.example.test:12431"
API = BASE + "/ccs/api/v1"
SEARCH_URL = API + "/Jobs"
REQUIRED = {"url": BASE, "username": "CORP\\svc", "password": "pw"}


def guid(number: int) -> str:
    return f"00000000-0000-4000-8000-{number:012d}"


@pytest.fixture
def job_payload(load_fixture: Callable[[str], Any]) -> Callable[[int], dict[str, Any]]:
    """A search item (the search-by-id fixture) for job number N."""
    template = load_fixture("search_job_by_id.json")

    def make(number: int) -> dict[str, Any]:
        payload = copy.deepcopy(template)
        payload["JobProperties"]["JobID"] = guid(number)
        payload["JobProperties"]["Name"] = f"Job {number}"
        return payload

    return make


@pytest.fixture
def make_page(job_payload: Callable[[int], dict[str, Any]]) -> Callable[..., SearchPage]:
    """A SearchPage holding jobs with the given numbers (and bad items, if given)."""

    def make(*numbers: int, bad: tuple[BadSearchItem, ...] = ()) -> SearchPage:
        page = search_page([job_payload(n) for n in numbers])
        return SearchPage(page.items, bad)

    return make


class PagedServer:
    """A fake ``fetch(page)``: serves ``total`` jobs ``cap`` a page, and records the pages asked for."""

    def __init__(self, make_page: Callable[..., SearchPage], total: int, cap: int, ignore_page: bool = False):
        self.make_page = make_page
        self.total = total
        self.cap = cap
        self.ignore_page = ignore_page
        self.asked: list[int] = []

    def __call__(self, page: int) -> SearchPage:
        self.asked.append(page)
        start = 0 if self.ignore_page else page * self.cap
        return self.make_page(*range(start, min(self.total, start + self.cap)))


class TestJobSearchSettings:
    """``job_search`` and ``search_page_size`` are read, checked and reported like every setting."""

    def test_one_expression_is_kept_verbatim(self) -> None:
        """A single expression (commas and all) is one search, sent as written."""
        settings = load_settings(None, {**REQUIRED, "job_search": " (JobName Contains PCI, JobType = X) "})
        assert settings.job_search == ["(JobName Contains PCI, JobType = X)"]

    def test_json_list_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """CCS_EXPORTER_JOB_SEARCH may hold a JSON list; duplicates count once."""
        monkeypatch.setenv(
            "CCS_EXPORTER_JOB_SEARCH", '["(JobName Contains PCI)", "(JobType = A)", "(JobType = A)"]'
        )
        settings = load_settings(None, REQUIRED)
        assert settings.job_search == ["(JobName Contains PCI)", "(JobType = A)"]
        assert settings.search_page_size == 100

    def test_yaml_list_from_the_config_file(self, tmp_path: Any) -> None:
        """``job_search:`` in the YAML file takes a list."""
        config = tmp_path / "c.yaml"
        config.write_text(
            "job_search:\n  - (JobName StartsWith 'PCI')\nsearch_page_size: 500\n", encoding="utf-8"
        )
        settings = load_settings(config, REQUIRED)
        assert (settings.job_search, settings.search_page_size) == (["(JobName StartsWith 'PCI')"], 500)

    @pytest.mark.parametrize(
        ("value", "problem"),
        [
            ('["(JobType = A)", ""]', "expression 2 is empty"),
            ("[1]", "expression 1 is not a string"),
            ("(JobName = a\nb)", "line break"),
            ("(JobName = a\x85b)", "line break"),
            ("(JobName = a\u2028b)", "line break"),
            ("(JobName = a\udc80b)", "lone surrogate"),
            ('["x", ', "neither one expression nor a YAML/JSON list"),
            ("x" * 5000, "longer than 4096"),
            (str([f"(JobName = {n})" for n in range(MAX_JOB_SEARCHES + 1)]), f"at most {MAX_JOB_SEARCHES}"),
        ],
    )
    def test_bad_expressions_are_one_line_naming_the_setting(self, value: str, problem: str) -> None:
        """Empty, non-text, multi-line, unparsable, overlong or too many expressions stop the start."""
        with pytest.raises(ConfigError) as caught:
            load_settings(None, {**REQUIRED, "job_search": value})
        message = str(caught.value)
        assert "\n" not in message
        assert "CCS_EXPORTER_JOB_SEARCH (job_search)" in message and problem in message
        assert caught.value.field == "job_search"

    @pytest.mark.parametrize("size", [0, 1001, "many"])
    def test_page_size_out_of_range(self, size: object) -> None:
        """The page size is a whole number from 1 to 1000."""
        with pytest.raises(ConfigError, match="CCS_EXPORTER_SEARCH_PAGE_SIZE"):
            load_settings(None, {**REQUIRED, "search_page_size": size})


class TestSearchLabel:
    """The ``search`` label is the expression, bounded."""

    def test_short_expression_is_its_own_label(self) -> None:
        """An expression of ordinary length is the label as written."""
        assert search_label("(JobType = CHAINED_EVALUATIONJOB)") == "(JobType = CHAINED_EVALUATIONJOB)"

    def test_long_expressions_are_cut_and_stay_distinct(self) -> None:
        """Two long expressions sharing a long prefix get two bounded labels."""
        prefix = "(JobName Contains " + "x" * 300
        first, second = search_label(prefix + "a)"), search_label(prefix + "b)")
        assert first != second
        assert len(first) <= discovery.MAX_SEARCH_LABEL_LENGTH and first.startswith(prefix[:80])


class TestListSearch:
    """Paging ends only on an empty page, a page with nothing new, or the bounds."""

    def test_short_pages_do_not_end_the_listing(self, make_page: Callable[..., SearchPage]) -> None:
        """A server capping pages at 7 jobs is paged until its empty page: every job is found."""
        server = PagedServer(make_page, total=30, cap=7)
        listing = list_search(server)
        assert listing is not None
        assert list(listing.jobs) == [guid(n) for n in range(30)]
        assert server.asked == [0, 1, 2, 3, 4, 5]
        assert not listing.truncated and not listing.page_ignored

    def test_items_read_before_are_kept_without_their_text(
        self, make_page: Callable[..., SearchPage]
    ) -> None:
        """An item whose digest the caller already read from keeps its id and digest but not its JSON;
        a changed or new item keeps its JSON, to be parsed."""
        pages = [make_page(1, 2, 3), make_page()]
        first = list_search(lambda page: pages[page])
        assert first is not None
        read = {guid(1): first.jobs[guid(1)].digest, guid(2): b"another item"}
        listing = list_search(
            lambda page: pages[page], known=lambda job_id, digest: read.get(job_id) == digest
        )
        assert listing is not None and list(listing.jobs) == [guid(1), guid(2), guid(3)]
        assert (
            listing.jobs[guid(1)].text == b"" and listing.jobs[guid(1)].digest == first.jobs[guid(1)].digest
        )
        assert listing.jobs[guid(2)].text == first.jobs[guid(2)].text != b""
        assert listing.jobs[guid(3)].text == first.jobs[guid(3)].text != b""

    def test_a_server_ignoring_page_is_read_once(self, make_page: Callable[..., SearchPage]) -> None:
        """When page 1 repeats page 0's jobs, the listing ends there instead of looping."""
        server = PagedServer(make_page, total=30, cap=7, ignore_page=True)
        listing = list_search(server)
        assert listing is not None and listing.page_ignored
        assert server.asked == [0, 1]
        assert len(listing.jobs) == 7

    def test_a_page_with_some_new_jobs_goes_on(self, make_page: Callable[..., SearchPage]) -> None:
        """Jobs shifting between pages (one repeated) do not end the listing early."""
        pages = [make_page(1, 2, 3), make_page(3, 4, 5), make_page(6), make_page()]
        listing = list_search(lambda page: pages[page])
        assert listing is not None and list(listing.jobs) == [guid(n) for n in range(1, 7)]

    def test_page_bound_stops_an_endless_server(
        self, make_page: Callable[..., SearchPage], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A server that always has new jobs is read up to the page bound, and the listing says so."""
        monkeypatch.setattr(listing_module, "MAX_SEARCH_PAGES", 5)
        server = PagedServer(make_page, total=10**9, cap=3)
        listing = list_search(server)
        assert listing is not None and listing.truncated
        assert server.asked == [0, 1, 2, 3, 4]
        assert len(listing.jobs) == 15

    def test_job_bound_stops_the_listing(
        self, make_page: Callable[..., SearchPage], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A listing stops once it holds the job bound."""
        monkeypatch.setattr(listing_module, "MAX_SEARCH_JOBS", 10)
        listing = list_search(PagedServer(make_page, total=100, cap=4))
        assert listing is not None and listing.truncated and len(listing.jobs) == 12

    def test_bad_items_are_kept_aside(self, make_page: Callable[..., SearchPage]) -> None:
        """Items that cannot be read are reported by id, or counted when they have none."""
        bad = (
            BadSearchItem(guid(9), "item 1: LastRunStatus: not a number"),
            BadSearchItem(None, "item 2: x"),
        )
        pages = [make_page(1, bad=bad), make_page()]
        listing = list_search(lambda page: pages[page])
        assert listing is not None
        assert list(listing.jobs) == [guid(1)]
        assert listing.bad == {guid(9): "item 1: LastRunStatus: not a number"}
        assert (listing.unreadable, listing.size) == (1, 2)

    def test_pages_of_unreadable_items_do_not_end_the_listing(
        self, make_page: Callable[..., SearchPage]
    ) -> None:
        """A page whose items all lack a JobID is not taken for a repeated page."""
        junk = (BadSearchItem(None, "item 0: not an object"),)
        pages = [make_page(bad=junk), make_page(bad=junk), make_page(1), make_page()]
        listing = list_search(lambda page: pages[page])
        assert listing is not None and list(listing.jobs) == [guid(1)] and listing.unreadable == 2

    def test_errors_propagate(self, make_page: Callable[..., SearchPage]) -> None:
        """A failed page fails the listing: it is complete or it is not used."""

        def fetch(page: int) -> SearchPage:
            if page == 1:
                raise ServerError("boom", status=500)
            return make_page(page)

        with pytest.raises(ServerError):
            list_search(fetch)

    def test_stop_abandons_the_listing(self, make_page: Callable[..., SearchPage]) -> None:
        """A stop between pages gives no listing at all."""
        stop = threading.Event()

        def fetch(page: int) -> SearchPage:
            stop.set()
            return make_page(page)

        assert list_search(fetch, stop) is None

    def test_its_pages_are_kept_without_the_text_of_items_read_before(
        self, make_page: Callable[..., SearchPage], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A listing keeps each page it read, at most MAX_SEARCH_PAGES of them: an item the caller had read
        from the same digest without its JSON, any other with it."""
        monkeypatch.setattr(listing_module, "MAX_SEARCH_PAGES", 3)
        read = {guid(0), guid(3)}
        listing = list_search(
            PagedServer(make_page, total=10**9, cap=2), known=lambda job_id, digest: job_id in read
        )
        assert listing is not None and listing.truncated
        assert [[item.text == b"" for item in page.items] for page in listing.kept] == [
            [True, False],
            [False, True],
            [False, False],
        ]


@pytest.fixture
def client() -> Iterator[CcsClient]:
    with CcsClient(BASE, "CORP\\svc", SecretStr("pw"), backoff_seconds=0.0) as made:
        yield made


def _token(mock: responses.RequestsMock) -> None:
    mock.post(API + "/oauth/tokens", json={"access_token": "a", "refresh_token": "r", "expires_in": 3600})


class TestClientSearch:
    """Search Jobs and search by name in the client: paths, parameters and tolerant parsing."""

    def test_expression_is_sent_verbatim_with_paging(
        self, client: CcsClient, mocked_responses: responses.RequestsMock, job_payload: Callable[[int], Any]
    ) -> None:
        """``Attributes`` arrives exactly as configured ("+" included), with 0-based page and pagesize."""
        _token(mocked_responses)
        expression = "(JobModifiedTime > 2026-01-01T00:00:00+05:30, JobName Contains a&b)"
        mocked_responses.get(SEARCH_URL, json=[job_payload(1)])
        page = client.search_jobs(expression, page=3, page_size=250)
        query = parse_qs(urlsplit(mocked_responses.calls[-1].request.url or "").query)
        assert query == {"Attributes": [expression], "page": ["3"], "pagesize": ["250"]}
        assert [client.search_item_job(item).JobProperties.Name for item in page.items] == ["Job 1"]

    @pytest.mark.parametrize("wrap", ["Jobs", "items", "Results", "whatever"])
    def test_an_object_wrapping_the_array_is_accepted(
        self,
        wrap: str,
        client: CcsClient,
        mocked_responses: responses.RequestsMock,
        job_payload: Callable[[int], Any],
    ) -> None:
        """``{"Jobs": [...]}`` and the like (any single list) give the same jobs as a bare array."""
        _token(mocked_responses)
        mocked_responses.get(SEARCH_URL, json={"TotalCount": 2, wrap: [job_payload(1), job_payload(2)]})
        assert client.search_jobs("(JobType = A)").size == 2

    @pytest.mark.parametrize("body", [b"", b"null", b"[]"])
    def test_empty_answers_are_empty_pages(
        self, body: bytes, client: CcsClient, mocked_responses: responses.RequestsMock
    ) -> None:
        """No body, ``null`` and ``[]`` all mean no jobs on this page."""
        _token(mocked_responses)
        mocked_responses.get(SEARCH_URL, body=body, status=200, content_type="application/json")
        assert client.search_jobs("(JobType = A)").size == 0

    def test_bad_items_are_reported_not_fatal(
        self, client: CcsClient, mocked_responses: responses.RequestsMock, job_payload: Callable[[int], Any]
    ) -> None:
        """Items that are no job are reported; a job that does not validate fails when read, alone."""
        _token(mocked_responses)
        broken = job_payload(2)
        broken["JobProperties"]["LastRunStatus"] = "often"
        mocked_responses.get(SEARCH_URL, json=[job_payload(1), broken, "junk", {"JobProperties": None}])
        page = client.search_jobs("(JobType = A)")
        assert [item.job_id for item in page.items] == [guid(1), guid(2)]
        assert [item.job_id for item in page.bad_items] == [None, None]
        assert client.search_item_job(page.items[0]).JobProperties.JobID == guid(1)
        with pytest.raises(BadResponseError, match=f"job {guid(2)}: JobProperties.LastRunStatus"):
            client.search_item_job(page.items[1])

    @pytest.mark.parametrize("body", [{"a": [1], "b": [2]}, 42, "text"])
    def test_unrecognisable_answers_fail_the_page(
        self, body: Any, client: CcsClient, mocked_responses: responses.RequestsMock
    ) -> None:
        """An answer with no recognisable array is a BadResponseError naming the shape."""
        _token(mocked_responses)
        mocked_responses.get(SEARCH_URL, json=body)
        with pytest.raises(BadResponseError, match="neither a JSON array"):
            client.search_jobs("(JobType = A)")

    def test_search_by_name_sends_jobname(
        self, client: CcsClient, mocked_responses: responses.RequestsMock, job_payload: Callable[[int], Any]
    ) -> None:
        """Search by name asks ``GET /Jobs?jobname=...``; CCS's single object is accepted too."""
        _token(mocked_responses)
        mocked_responses.get(SEARCH_URL, json=job_payload(4))
        page = client.search_job_name("PCI & friends")
        query = parse_qs(urlsplit(mocked_responses.calls[-1].request.url or "").query)
        assert query == {"jobname": ["PCI & friends"]}
        assert page.jobs[0].JobProperties.JobID == guid(4)

    def test_empty_name_is_refused_before_sending(self, client: CcsClient) -> None:
        """A blank name is a usage error, not a request."""
        with pytest.raises(ConfigError):
            client.search_job_name("  ")


class TestClientPageReuse:
    """A Search Jobs answer carries its body's digest; a page kept from the same bytes is not parsed again."""

    def test_a_page_carries_the_digest_of_its_body(
        self, client: CcsClient, mocked_responses: responses.RequestsMock, job_payload: Callable[[int], Any]
    ) -> None:
        """The same bytes twice give the same digest; one changed job gives another."""
        _token(mocked_responses)
        changed = job_payload(2)
        changed["JobProperties"]["LastRunStatus"] = 5
        for jobs in (
            [job_payload(1), job_payload(2)],
            [job_payload(1), job_payload(2)],
            [job_payload(1), changed],
        ):
            mocked_responses.get(SEARCH_URL, json=jobs)
        first, again, other = (client.search_jobs("(JobType = A)") for _ in range(3))
        assert first.digest == again.digest != other.digest
        assert first.digest == body_digest(mocked_responses.calls[1].response.content)  # type: ignore[union-attr]

    def test_a_kept_page_for_the_same_bytes_is_the_answer_unparsed(
        self,
        client: CcsClient,
        mocked_responses: responses.RequestsMock,
        job_payload: Callable[[int], Any],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """With ``reuse`` holding the page parsed from the same bytes, that page comes back, the request
        is still made, and the body is not decoded a second time."""
        decoded = _count_decodes(monkeypatch)
        _token(mocked_responses)
        mocked_responses.get(SEARCH_URL, json=[job_payload(1), job_payload(2)])
        first = client.search_jobs("(JobType = A)", page=0, page_size=2)
        asked: list[bytes] = []

        def reuse(digest: bytes) -> SearchPage | None:
            asked.append(digest)
            return first if digest == first.digest else None

        again = client.search_jobs("(JobType = A)", page=0, page_size=2, reuse=reuse)
        assert again is first and asked == [first.digest]
        assert len([call for call in mocked_responses.calls if "/Jobs" in str(call.request.url)]) == 2
        assert decoded == [SEARCH_URL.removeprefix(BASE)]

    def test_without_a_kept_page_the_body_is_parsed(
        self, client: CcsClient, mocked_responses: responses.RequestsMock, job_payload: Callable[[int], Any]
    ) -> None:
        """A ``reuse`` with nothing for these bytes, or offering a page of other bytes, gets a new parse."""
        _token(mocked_responses)
        mocked_responses.get(SEARCH_URL, json=[job_payload(1)])
        stale = SearchPage((), (), body_digest(b"[]"))
        nothing = client.search_jobs("(JobType = A)", reuse=lambda digest: None)
        other = client.search_jobs("(JobType = A)", reuse=lambda digest: stale)
        for page in (nothing, other):
            assert [item.job_id for item in page.items] == [guid(1)]
            assert page.digest == nothing.digest != stale.digest

    @pytest.mark.parametrize(
        ("answer", "error"),
        [
            ({"status": 500, "json": {"Message": "boom"}}, ServerError),
            ({"status": 404, "json": {"Message": "No HTTP resource was found"}}, NotFoundError),
            ({"status": 200, "body": b"[" + b" " * 4096 + b"]"}, BadResponseError),
        ],
    )
    def test_a_bad_answer_fails_even_when_reuse_would_match(
        self,
        answer: dict[str, Any],
        error: type[CcsError],
        mocked_responses: responses.RequestsMock,
        job_payload: Callable[[int], Any],
    ) -> None:
        """An error status or an oversized body is an error as before, whatever page ``reuse`` offers."""
        kept = search_page([job_payload(1)])
        asked: list[bytes] = []

        def reuse(digest: bytes) -> SearchPage:
            asked.append(digest)
            return dataclasses.replace(kept, digest=digest)

        _token(mocked_responses)
        mocked_responses.get(SEARCH_URL, content_type="application/json", **answer)
        with (
            CcsClient(
                BASE, "CORP\\svc", SecretStr("pw"), backoff_seconds=0.0, max_response_bytes=1024
            ) as client,
            pytest.raises(error),
        ):
            client.search_jobs("(JobType = A)", reuse=reuse)
        assert asked == []


def _count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the response bodies the client decodes as JSON from now on."""
    decoded: list[str] = []
    original = api_module.json_body

    def counting(response: Any, method: str, path: str) -> Any:
        decoded.append(path)
        return original(response, method, path)

    monkeypatch.setattr(api_module, "json_body", counting)
    return decoded


class TestSearchItems:
    """Search items are kept as compact JSON with a digest, and read when needed."""

    def test_equal_items_have_equal_digests(self, job_payload: Callable[[int], dict[str, Any]]) -> None:
        """The same job twice gives the same digest; any change to it another."""
        changed = job_payload(1)
        changed["JobProperties"]["LastRunStatus"] = 5
        first, again, other = search_page([job_payload(1), job_payload(1), changed]).items
        assert first.digest == again.digest != other.digest
        assert len(first.digest) == 16 and first.text.isascii()

    def test_non_ascii_text_survives(self, job_payload: Callable[[int], dict[str, Any]]) -> None:
        """Names with non-ASCII characters and quotes read back exactly."""
        from ccs_exporter.models import Job

        payload = job_payload(1)
        payload["JobProperties"]["Name"] = 'Prüfung "Q4" \u2013 監査\n'
        (item,) = search_page([payload]).items
        assert Job.model_validate_json(item.text).JobProperties.Name == 'Prüfung "Q4" \u2013 監査\n'


class ScriptedClient:
    """A stand-in client whose pages come from a function of (expression, page) that may raise."""

    def __init__(self, answer: Callable[[str, int], SearchPage]) -> None:
        self.answer = answer
        self.calls: list[tuple[str, int, int]] = []

    def search_jobs(
        self, expression: str, page: int = 0, page_size: int = 100, reuse: PageReuse | None = None
    ) -> SearchPage:
        self.calls.append((expression, page, page_size))
        return self.answer(expression, page)


@pytest.fixture
def pool() -> Iterator[WorkerPool]:
    made = WorkerPool(2)
    yield made
    made.close()


class TestDiscoverer:
    """The discoverer's memory: last good results, failures, logs once per state change."""

    def test_a_failed_page_keeps_the_last_good_result(
        self, pool: WorkerPool, make_page: Callable[..., SearchPage]
    ) -> None:
        """When page 1 fails, the search's jobs stay (stale, with the error) and its state says failure."""
        failing = threading.Event()

        def answer(expression: str, page: int) -> SearchPage:
            if failing.is_set() and page == 1:
                raise ServerError("Server encountered an error", status=500)
            return [make_page(1, 2), make_page(3), make_page()][page]

        client = ScriptedClient(answer)
        discoverer = Discoverer(client, ["(JobType = A)"])  # type: ignore[arg-type]
        first = discoverer.discover(pool, 0.0)
        assert list(first.fresh) == [guid(1), guid(2), guid(3)] and first.searches[0].success
        failing.set()
        second = discoverer.discover(pool, 1.0)
        assert second.fresh == {}
        assert set(second.stale) == {guid(1), guid(2), guid(3)}
        assert second.stale[guid(1)].error == "server_error" and not second.stale[guid(1)].reached_ccs
        state = second.searches[0]
        assert (state.success, state.jobs, state.error) == (False, 3, "server_error")

    def test_failures_are_logged_once_per_state_change(
        self, pool: WorkerPool, make_page: Callable[..., SearchPage]
    ) -> None:
        """Three failing cycles log one search_failed; the recovery logs one search_recovered."""
        failing = [True, True, True, False, False]
        cycle = [0]

        def answer(expression: str, page: int) -> SearchPage:
            if failing[cycle[0]]:
                raise UnavailableError("connection refused")
            return [make_page(1), make_page()][page]

        discoverer = Discoverer(ScriptedClient(answer), ["(JobType = A)"])  # type: ignore[arg-type]
        with capture_logs() as logs:
            for cycle[0] in range(5):
                discoverer.discover(pool, float(cycle[0]))
        events = [entry["event"] for entry in logs]
        assert events == ["search_failed", "search_recovered"]

    @pytest.mark.parametrize(
        ("error", "kind", "event"),
        [
            (NotFoundError("No HTTP resource was found", status=404), "unsupported", "search_unsupported"),
            (CcsError("Method Not Allowed", status=405), "unsupported", "search_unsupported"),
            (
                BadRequestError("Invalid input data. Unknown attribute 'Foo'", status=400),
                "bad_expression",
                "search_rejected",
            ),
        ],
    )
    def test_unsupported_and_rejected_searches_leave_the_others_alone(
        self,
        pool: WorkerPool,
        make_page: Callable[..., SearchPage],
        error: CcsError,
        kind: str,
        event: str,
    ) -> None:
        """A 404/405 is 'unsupported', a 400 is a bad expression logged with CCS's message; others go on."""

        def answer(expression: str, page: int) -> SearchPage:
            if expression == "(Foo = 1)":
                raise error
            return [make_page(1), make_page()][page]

        discoverer = Discoverer(ScriptedClient(answer), ["(Foo = 1)", "(JobType = A)"])  # type: ignore[arg-type]
        with capture_logs() as logs:
            found = discoverer.discover(pool, 0.0)
            discoverer.discover(pool, 1.0)
        assert list(found.fresh) == [guid(1)]
        assert [(s.label, s.success, s.error) for s in found.searches] == [
            ("(Foo = 1)", False, kind),
            ("(JobType = A)", True, None),
        ]
        assert [entry["event"] for entry in logs].count(event) == 1  # two cycles, one line
        logged = next(entry for entry in logs if entry["event"] == event)
        if kind == "bad_expression":
            assert "Unknown attribute 'Foo'" in logged["message"]

    def test_searches_overlapping_give_each_job_once(
        self, pool: WorkerPool, make_page: Callable[..., SearchPage]
    ) -> None:
        """A job two searches return is one discovered job; each search still counts it."""
        results = {"A": [make_page(1, 2), make_page()], "B": [make_page(2, 3), make_page()]}
        discoverer = Discoverer(ScriptedClient(lambda e, p: results[e][p]), ["A", "B"])  # type: ignore[arg-type]
        found = discoverer.discover(pool, 0.0)
        assert found.job_ids() == [guid(1), guid(2), guid(3)]
        assert [state.jobs for state in found.searches] == [2, 2]

    def test_listed_since_needs_an_earlier_complete_listing(
        self, pool: WorkerPool, make_page: Callable[..., SearchPage]
    ) -> None:
        """A search's first listing is its baseline; later ones say when the previous complete one began."""
        discoverer = Discoverer(ScriptedClient(lambda e, p: [make_page(1), make_page()][p]), ["A"])  # type: ignore[arg-type]
        assert discoverer.discover(pool, 100.0).listed_since == {}
        assert discoverer.discover(pool, 160.0).listed_since == {guid(1): 100.0}

    def test_removed_search_hands_its_jobs_over_as_forgotten(
        self, pool: WorkerPool, make_page: Callable[..., SearchPage]
    ) -> None:
        """After a reload drops a search, its jobs are named once as forgotten (no lookups for them)."""
        results = {"A": [make_page(1), make_page()], "B": [make_page(2), make_page()]}
        discoverer = Discoverer(ScriptedClient(lambda e, p: results[e][p]), ["A", "B"])  # type: ignore[arg-type]
        discoverer.discover(pool, 0.0)
        discoverer.configure(["A"], 100)
        assert discoverer.discover(pool, 1.0).forgotten == {guid(2)}
        assert discoverer.discover(pool, 2.0).forgotten == frozenset()


class _PlainText:
    """A token source with nothing to hide: FakeCcs sends no request."""

    def access_token(self) -> str:
        return ""

    def invalidate(self, access: str) -> None:
        return None

    def redact(self, text: str, *also: str | None) -> str:
        return text


class _SearchAnswers:
    """A transport answering Search Jobs from a FakeCcs's items, a page of ``pagesize`` at a time, as the
    JSON bytes CCS would send: the client parses (or reuses) them as it would a real answer."""

    def __init__(self, ccs: FakeCcs) -> None:
        self._ccs = ccs

    def call(self, endpoint: Any, path: str, tokens: Any, *, params: dict[str, str], **_: Any) -> Any:
        page, size = int(params["page"]), int(params["pagesize"])
        if page in self._ccs.failing_pages:
            raise ServerError("Server encountered an error", status=500)
        items = [*self._ccs.raw_items, *self._ccs.jobs.values()][page * size : (page + 1) * size]
        response = requests.Response()
        response.status_code = 200
        response._content = json.dumps(items).encode("utf-8")
        return response


class FakeCcs:
    """A stand-in client over an in-memory set of jobs: search pages, search by id and runs."""

    def __init__(self, jobs: dict[str, dict[str, Any]], runs: dict[str, Any]) -> None:
        self.jobs = jobs
        self.runs = runs
        self.raw_items: list[Any] = []  # extra items (unreadable ones) listed before the jobs
        self.failing_pages: set[int] = set()  # Search Jobs pages answered with a 500
        self.runs_missing: set[str] = set()  # jobs whose runs are answered with a 404
        self.requests_sent = 0
        self.by_id: list[str] = []
        self._api = JobsApi(_SearchAnswers(self), _PlainText())  # type: ignore[arg-type]

    def authenticate(self) -> None:
        return None

    def search_jobs(
        self, expression: str, page: int = 0, page_size: int = 100, reuse: PageReuse | None = None
    ) -> SearchPage:
        self.requests_sent += 1
        return self._api.search_jobs(expression, page, page_size, reuse)

    def search_item_job(self, item: SearchItem) -> Job:
        return self._api.search_item_job(item)

    def get_job(self, job_id: str) -> Job:
        self.requests_sent += 1
        self.by_id.append(job_id)
        if job_id not in self.jobs:
            raise NotFoundError("Job not found.", status=404)
        return Job.model_validate(self.jobs[job_id])

    def get_job_runs(self, job_id: str, count: int = 1, show_messages: bool = False) -> Any:
        self.requests_sent += 1
        from ccs_exporter.models import JobRuns

        if job_id in self.runs_missing:
            raise NotFoundError("Job not found.", status=404)
        return JobRuns.model_validate({**self.runs, "JobID": job_id})


@pytest.fixture
def make_poller(ccs: FakeCcs) -> Iterator[Callable[..., Any]]:
    """Pollers of one search over the test class's ``ccs``, closed after the test."""
    from ccs_exporter.polling.cycle import Poller

    made: list[Poller] = []

    def make(clock: Callable[[], float] = lambda: 1_790_000_000.0, **options: Any) -> Poller:
        poller = Poller(ccs, [], searches=["(JobType = A)"], clock=clock, **options)  # type: ignore[arg-type]
        made.append(poller)
        return poller

    yield make
    for poller in made:
        poller.close()


class TestPollerWithDiscovery:
    """The poller's use of discovery, against a stand-in CCS and a clock the test sets."""

    @pytest.fixture
    def ccs(
        self, job_payload: Callable[[int], dict[str, Any]], load_fixture: Callable[[str], Any]
    ) -> FakeCcs:
        jobs = {guid(n): job_payload(n) for n in (1, 2)}
        for payload in jobs.values():
            payload["JobProperties"]["JobCreationTime"] = "2026-01-01T00:00:00Z"
        return FakeCcs(jobs, load_fixture("jobruns.json"))

    def test_an_unreadable_item_fails_its_job_alone(
        self, ccs: FakeCcs, make_poller: Callable[..., Any]
    ) -> None:
        """A job whose search item cannot be read keeps its last values, failed as bad_response, alone."""
        poller = make_poller()
        poller.poll_cycle()
        broken = ccs.jobs.pop(guid(2))
        broken["JobProperties"]["LastRunStatus"] = "often"
        ccs.raw_items = [broken]
        snapshot = poller.poll_cycle()
        states = {job.job_id: job for job in snapshot.jobs}
        assert states[guid(1)].poll_success
        assert (states[guid(2)].poll_success, states[guid(2)].error) == (False, "bad_response")
        assert states[guid(2)].data is not None  # last good values kept
        assert ccs.by_id == []

    @pytest.mark.parametrize(("minutes_before", "created"), [(4, True), (6, False)])
    def test_creation_time_is_compared_with_five_minutes_of_skew(
        self,
        ccs: FakeCcs,
        make_poller: Callable[..., Any],
        job_payload: Callable[[int], dict[str, Any]],
        minutes_before: int,
        created: bool,
    ) -> None:
        """A new job created up to 5 minutes before the previous complete listing counts as created."""
        from datetime import datetime, timezone

        now = [1_790_000_000.0]
        poller = make_poller(clock=lambda: now[0], track_changes=True)
        poller.poll_cycle()
        listed_at = now[0]
        now[0] += 60
        poller.poll_cycle()  # the previous complete listing is now this one
        previous_listing = now[0]
        payload = job_payload(3)
        stamp = datetime.fromtimestamp(previous_listing - minutes_before * 60, tz=timezone.utc)
        payload["JobProperties"]["JobCreationTime"] = stamp.isoformat()
        ccs.jobs[guid(3)] = payload
        now[0] += 60
        snapshot = poller.poll_cycle()
        assert listed_at < previous_listing
        assert [(c.kind, c.job_id) for c in snapshot.changes] == ([("created", guid(3))] if created else [])

    def test_first_listing_is_the_baseline(self, ccs: FakeCcs, make_poller: Callable[..., Any]) -> None:
        """Jobs present at start, however new, are no creations."""
        for payload in ccs.jobs.values():
            payload["JobProperties"]["JobCreationTime"] = "2026-09-21T01:00:00Z"
        poller = make_poller(clock=lambda: 1_790_000_000.0, track_changes=True)
        assert poller.poll_cycle().changes == ()

    def test_unchanged_jobs_cost_nothing_and_stay_fresh(
        self, ccs: FakeCcs, make_poller: Callable[..., Any]
    ) -> None:
        """At rest a job's unchanged item costs no request, and its reading counts as read this cycle."""
        now = [1_790_000_000.0]
        poller = make_poller(clock=lambda: now[0])
        poller.poll_cycle()
        now[0] += 60
        before = ccs.requests_sent
        snapshot = poller.poll_cycle()
        assert ccs.requests_sent - before == 2  # the page of jobs and the empty one
        assert {job.read_at for job in snapshot.jobs if job.data is not None} == {now[0]}

    def test_unchanged_jobs_keep_the_very_same_reading(
        self, ccs: FakeCcs, make_poller: Callable[..., Any]
    ) -> None:
        """At rest each job's reading is the same object cycle after cycle; only its read time moves."""
        now = [1_790_000_000.0]
        poller = make_poller(clock=lambda: now[0])
        first = {job.job_id: job for job in poller.poll_cycle().jobs}
        now[0] += 60
        again = {job.job_id: job for job in poller.poll_cycle().jobs}
        assert first.keys() == again.keys() == {guid(1), guid(2)}
        assert all(again[job_id].data is first[job_id].data for job_id in first)
        assert [job.read_at for job in again.values()] == [now[0], now[0]]

    def test_a_job_whose_runs_are_read_again_unchanged_keeps_its_reading(
        self, ccs: FakeCcs, make_poller: Callable[..., Any]
    ) -> None:
        """A run in progress has the runs read every cycle; the same runs leave the same reading."""
        ccs.jobs[guid(1)]["JobProperties"]["LastRunStatus"] = 2
        now = [1_790_000_000.0]
        poller = make_poller(clock=lambda: now[0])
        first = next(job for job in poller.poll_cycle().jobs if job.job_id == guid(1))
        now[0] += 60
        snapshot = poller.poll_cycle()
        again = next(job for job in snapshot.jobs if job.job_id == guid(1))
        assert snapshot.runs_fetched == 1
        assert again.data is first.data and again.read_at == now[0]

    def test_a_configured_job_read_again_unchanged_keeps_its_reading(self, ccs: FakeCcs) -> None:
        """A configured job no search lists is read by id every cycle; the same values, the same reading."""
        from ccs_exporter.polling.cycle import Poller

        now = [1_790_000_000.0]
        poller = Poller(ccs, [guid(1)], clock=lambda: now[0])  # type: ignore[arg-type]
        try:
            (first,) = poller.poll_cycle().jobs
            now[0] += 60
            (again,) = poller.poll_cycle().jobs
        finally:
            poller.close()
        assert ccs.by_id == [guid(1), guid(1)]
        assert again.data is first.data and again.read_at == now[0]

    def test_a_search_found_job_is_remembered_as_its_item(self, ccs: FakeCcs) -> None:
        """With changes tracked, a job parsed from its search item keeps that item's very JSON bytes
        (about a sixth of the parsed job), and a job read by id keeps the parsed job."""
        from ccs_exporter.polling.reading import JobReader
        from ccs_exporter.polling.work import ParseItem, ReadById

        reader = JobReader(ccs, history_window=10, track_changes=True, clock=lambda: 0.0)  # type: ignore[arg-type]
        (found,) = [item for item in ccs.search_jobs("(JobType = A)").items if item.job_id == guid(1)]
        parsed = reader.do(ParseItem(guid(1), found), None)
        by_id = reader.do(ReadById(guid(2)), None)
        assert parsed.memory is not None and parsed.memory.job is found.text
        assert by_id.memory is not None and isinstance(by_id.memory.job, Job)

    def test_an_unchanged_job_with_a_run_in_progress_has_its_runs_read(
        self, ccs: FakeCcs, make_poller: Callable[..., Any]
    ) -> None:
        """A job whose LastRunStatus says executing gets its runs read every cycle, unchanged or not."""
        ccs.jobs[guid(1)]["JobProperties"]["LastRunStatus"] = 2
        poller = make_poller()
        poller.poll_cycle()
        before = ccs.requests_sent
        assert poller.poll_cycle().runs_fetched == 1
        assert ccs.requests_sent - before == 3  # two pages and job 1's runs


class TestPageReuse:
    """A search's pages whose bytes are the same as in its last good listing are not parsed again."""

    @pytest.fixture
    def ccs(
        self, job_payload: Callable[[int], dict[str, Any]], load_fixture: Callable[[str], Any]
    ) -> FakeCcs:
        """Five jobs: in pages of 2, [1, 2], [3, 4], [5] and the empty page."""
        return FakeCcs({guid(n): job_payload(n) for n in range(1, 6)}, load_fixture("jobruns.json"))

    def test_a_cycle_at_rest_decodes_no_page_and_asks_for_each(
        self, ccs: FakeCcs, make_poller: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """At rest every page is still asked for, none is decoded again, and every job stays read."""
        decoded = _count_decodes(monkeypatch)
        poller = make_poller(page_size=2)
        poller.poll_cycle()
        assert len(decoded) == 4
        before = ccs.requests_sent
        snapshot = poller.poll_cycle()
        assert len(decoded) == 4  # none more
        assert ccs.requests_sent - before == 4  # the four pages: no runs are read at rest
        assert sorted(job.job_id for job in snapshot.jobs if job.poll_success) == [
            guid(n) for n in range(1, 6)
        ]

    def test_a_shard_keeps_no_json_of_the_jobs_of_other_shards(
        self, ccs: FakeCcs, make_poller: Callable[..., Any]
    ) -> None:
        """A replica lists every job but reads only its own: the pages it keeps between cycles hold no
        item text at all, neither of its own jobs (read) nor of the others (never read here)."""
        mine = {guid(2), guid(5)}
        poller = make_poller(page_size=2, owns=lambda job_id: job_id in mine)
        for _ in range(2):
            snapshot = poller.poll_cycle()
        assert {job.job_id for job in snapshot.jobs if job.poll_success} == mine
        kept = [
            item
            for search in poller._discoverer._searches.values()
            for page in search.pages
            for item in page.items
        ]
        assert len(kept) == 5 and all(item.text == b"" for item in kept)

    def test_kept_pages_let_go_of_the_json_of_jobs_read_in_the_cycle(
        self, ccs: FakeCcs, make_poller: Callable[..., Any]
    ) -> None:
        """The first cycle, and one where a job changed, parse the items they need; the pages kept after
        them hold no JSON of those jobs (it would otherwise wait a whole interval for the next listing)."""
        poller = make_poller(page_size=2)

        def kept_texts() -> list[bytes]:
            searches = poller._discoverer._searches.values()
            return [
                item.text for search in searches for page in search.pages for item in page.items if item.text
            ]

        poller.poll_cycle()
        assert kept_texts() == []
        ccs.jobs[guid(4)]["JobProperties"]["Name"] = "Job 4, renamed"
        snapshot = poller.poll_cycle()
        assert {job.data.name for job in snapshot.jobs if job.data is not None} >= {"Job 4, renamed"}
        assert kept_texts() == []

    def test_a_page_whose_bytes_changed_is_parsed_and_its_change_seen(
        self, ccs: FakeCcs, make_poller: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A job renamed changes its page's bytes: that page alone is decoded, and the new name read."""
        poller = make_poller(page_size=2)
        poller.poll_cycle()
        ccs.jobs[guid(3)]["JobProperties"]["Name"] = "Job 3, renamed"
        decoded = _count_decodes(monkeypatch)
        snapshot = poller.poll_cycle()
        assert len(decoded) == 1
        names = {job.job_id: job.data.name for job in snapshot.jobs if job.data is not None}
        assert names == {guid(n): "Job 3, renamed" if n == 3 else f"Job {n}" for n in range(1, 6)}

    def test_a_failed_listing_lets_go_of_its_pages(
        self, ccs: FakeCcs, make_poller: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """After a listing fails, the next one decodes every page again, unchanged as they are."""
        poller = make_poller(page_size=2)
        poller.poll_cycle()
        ccs.failing_pages.add(1)
        failed = poller.poll_cycle()
        assert failed.searches[0].error == "server_error"
        ccs.failing_pages.clear()
        decoded = _count_decodes(monkeypatch)
        assert poller.poll_cycle().searches[0].success
        assert len(decoded) == 4

    def test_a_new_page_size_lets_go_of_the_pages(
        self, ccs: FakeCcs, make_poller: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A reload changing the page size decodes every page again, even pages of the same bytes (five
        jobs in pages of 5 or of 10); the pages of that listing are then reused."""
        poller = make_poller(page_size=5)
        poller.poll_cycle()
        decoded = _count_decodes(monkeypatch)
        poller.set_watch(dataclasses.replace(poller.watch, page_size=10))
        poller.poll_cycle()
        assert len(decoded) == 2
        poller.poll_cycle()
        assert len(decoded) == 2

    def test_a_job_whose_reading_went_has_its_unchanged_item_parsed(
        self, ccs: FakeCcs, make_poller: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A job whose reading was lost while its page stayed the same (kept without the job's JSON) is
        read from a new parse of that page, not failed for want of its JSON."""
        ccs.jobs[guid(3)]["JobProperties"]["LastRunStatus"] = 2  # executing: its runs are read each cycle
        poller = make_poller(page_size=2)
        poller.poll_cycle()
        ccs.runs_missing.add(guid(3))
        lost = {job.job_id: job for job in poller.poll_cycle().jobs}
        assert (lost[guid(3)].error, lost[guid(3)].data) == ("not_found", None)
        ccs.runs_missing.clear()
        decoded = _count_decodes(monkeypatch)
        back = {job.job_id: job for job in poller.poll_cycle().jobs}
        assert back[guid(3)].poll_success and back[guid(3)].data is not None
        assert back[guid(3)].data.name == "Job 3"
        assert len(decoded) == 1  # the page holding job 3; the others are reused

    def test_a_kept_page_stands_only_for_its_bytes_and_known_items(
        self, make_page: Callable[..., SearchPage]
    ) -> None:
        """``reuse_kept`` gives the kept page for its own digest while every item kept without JSON is
        still known; for other bytes, or once such an item is not known, nothing."""
        listed = make_page(1, 2)
        full = dataclasses.replace(listed, digest=body_digest(b"page 0"))
        kept = dataclasses.replace(full, items=(dataclasses.replace(full.items[0], text=b""), full.items[1]))
        known = {guid(1)}

        def is_known(job_id: str, digest: bytes) -> bool:
            return job_id in known

        reuse = listing_module.reuse_kept(kept, is_known)
        assert reuse(kept.digest) is kept
        assert reuse(body_digest(b"page 1")) is None
        known.clear()
        assert reuse(kept.digest) is None
        assert listing_module.reuse_kept(full, None)(full.digest) is full  # every text still there


class TestWorkerPoolMemory:
    """What the worker threads keep between cycles."""

    def test_a_listing_is_not_kept_after_its_cycle(self, pool: WorkerPool) -> None:
        """Once map has returned and its results are dropped, no worker keeps them alive (a search's
        whole listing would otherwise stay in memory while the thread waits, cycle after cycle)."""

        class Listing:
            pass

        results = pool.map(lambda _: Listing(), [None, None])
        refs = [weakref.ref(result) for result in results if result is not None]
        del results
        deadline = time.monotonic() + 5
        while any(ref() is not None for ref in refs) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert all(ref() is None for ref in refs)
