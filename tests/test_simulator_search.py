"""The simulator's Search Jobs, search by name and console job control, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
import requests
from test_simulator import (
    ABORTED,
    API,
    ASSET_IMPORT,
    COMPLETED,
    EXECUTING,
    FAULTED,
    HOSTILE,
    NEVER_RUN,
    OTHER_OWNER,
    PENDING,
    REPORT,
    SHAPES,
    SYSTEM,
    UNKNOWN,
    Api,
)

from ccs_exporter.models import Job
from ccs_exporter.simulator import Simulator

pytestmark = pytest.mark.integration

COLLECTION_JOBS = [FAULTED, EXECUTING, HOSTILE]
SAMPLE_ORDER = [
    COMPLETED,
    FAULTED,
    ABORTED,
    EXECUTING,
    PENDING,
    NEVER_RUN,
    REPORT,
    ASSET_IMPORT,
    SYSTEM,
    OTHER_OWNER,
    HOSTILE,
    SHAPES,
]


@pytest.fixture
def api(simulator: Simulator) -> Iterator[Api]:
    client = Api(simulator)
    yield client
    client.session.close()


def search(api: Api, attributes: str | None, **params: Any) -> requests.Response:
    query = dict(params)
    if attributes is not None:
        query["Attributes"] = attributes
    return api.get("/Jobs", params=query)


def found_ids(response: requests.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [job["JobProperties"]["JobID"] for job in response.json()]


def control(sim: Simulator, method: str, path: str, body: Any = None) -> requests.Response:
    return requests.request(method, f"{sim.url}/_simulator/{path}", json=body, timeout=5)


class TestSearchExpressions:
    def test_equality_on_the_internal_type(self, api: Api) -> None:
        """``JobType = COLLECTIONJOB`` finds exactly the collection jobs, in the order they were added."""
        assert found_ids(search(api, "(JobType = COLLECTIONJOB)")) == COLLECTION_JOBS

    def test_attribute_names_and_operators_ignore_case(self, api: Api) -> None:
        """Attribute names, word operators and text values match whatever their case."""
        assert found_ids(search(api, "(jobtype = collectionjob)")) == COLLECTION_JOBS
        assert found_ids(search(api, "(JOBNAME CONTAINS pci)")) == [ABORTED]
        assert found_ids(search(api, "(jobName startswith 'pci')")) == [ABORTED]

    def test_surrounding_parentheses_are_optional(self, api: Api) -> None:
        """An expression without parentheses finds the same jobs as with them."""
        assert found_ids(search(api, "JobName Contains Evaluation")) == found_ids(
            search(api, "(JobName Contains Evaluation)")
        )

    def test_commas_combine_conditions_with_and(self, api: Api) -> None:
        """Each comma-separated condition narrows the result further."""
        evaluation = found_ids(search(api, "(JobType = EVALUATIONJOB)"))
        assert evaluation == [ABORTED, OTHER_OWNER, SHAPES]
        assert found_ids(search(api, "(JobType = EVALUATIONJOB, LastRunStatus = 4)")) == [OTHER_OWNER]
        assert (
            found_ids(search(api, "(JobType = EVALUATIONJOB, LastRunStatus = 4, JobName EndsWith x)")) == []
        )

    @pytest.mark.parametrize(
        ("expression", "expected"),
        [
            ("JobName = PCI DSS evaluation", [ABORTED]),
            ("JobName != PCI DSS evaluation", [job for job in SAMPLE_ORDER if job != ABORTED]),
            ("JobName Contains owned by", [OTHER_OWNER]),
            ("JobName StartsWith Collection", [EXECUTING]),
            ("JobName EndsWith servers", [COMPLETED]),
            ("JobCategory = CollectionEvaluationJob", [COMPLETED, PENDING, NEVER_RUN]),
            ("JobCategory = REPORTJOB", [REPORT]),
            (f"JobID = {{{ABORTED.upper()}}}", [ABORTED]),
        ],
    )
    def test_text_operators(self, api: Api, expression: str, expected: list[str]) -> None:
        """=, !=, Contains, StartsWith and EndsWith compare text without regard to case."""
        assert found_ids(search(api, expression)) == expected

    @pytest.mark.parametrize(
        ("expression", "expected"),
        [
            ("LastRunStatus = 0", [NEVER_RUN]),
            ("LastRunStatus >= 5", [FAULTED, ABORTED, HOSTILE, SHAPES]),
            ("LastRunStatus > 5", [ABORTED]),
            ("LastRunStatus < 2", [PENDING, NEVER_RUN]),
            ("LastRunStatus <= 1, LastRunStatus != 0", [PENDING]),
        ],
    )
    def test_number_comparisons(self, api: Api, expression: str, expected: list[str]) -> None:
        """LastRunStatus compares as a number with every comparison operator."""
        assert found_ids(search(api, expression)) == expected

    def test_date_comparisons_honour_offsets(self, api: Api) -> None:
        """A DateTime with an offset means the same instant as its UTC equivalent."""
        # The latest run of the executing sample started at 06:00 UTC = 11:30+05:30.
        utc = found_ids(search(api, "(LastRunDate >= 2026-11-23T06:00:00)"))
        offset = found_ids(search(api, "(LastRunDate >= 2026-11-23T11:30:00+05:30)"))
        assert EXECUTING in utc
        assert utc == offset
        assert found_ids(search(api, "(LastRunDate > 2026-11-23T06:00:00)")) == [
            job for job in utc if job != EXECUTING
        ]

    def test_dates_without_time_and_with_seven_digit_fractions(self, api: Api) -> None:
        """A date alone means midnight UTC; .NET's 7-digit fractions are read."""
        created = found_ids(search(api, "(JobCreationTime < 2026-02-01)"))
        assert created == [SYSTEM, SHAPES]
        exact = found_ids(search(api, "(JobCreationTime = 2026-01-18T02:14:27.5120788-08:00)"))
        assert exact == [SHAPES]

    def test_never_run_is_earlier_than_any_date(self, api: Api) -> None:
        """A job that never ran (0001-01-01) is before every DateTime and not after any."""
        assert found_ids(search(api, "(LastRunDate < 2000-01-01)")) == [NEVER_RUN]
        assert NEVER_RUN not in found_ids(search(api, "(LastRunDate > 2000-01-01)"))

    def test_quoted_values_may_hold_commas_parentheses_and_quotes(self, api: Api) -> None:
        """A quoted value keeps commas, parentheses and the other kind of quote."""
        assert found_ids(search(api, """(JobName StartsWith 'Prüfung "Q4"')""")) == [HOSTILE]
        assert found_ids(search(api, "(JobName Contains '(, x)')")) == []

    def test_answer_is_the_array_of_search_by_id_objects(self, api: Api) -> None:
        """Every result is exactly what search by id answers: config details only for CER-type jobs."""
        results = search(api, "(JobName Contains e)").json()
        assert isinstance(results, list) and results
        for result in results:
            job_id = result["JobProperties"]["JobID"]
            assert result == api.job(job_id)
            Job.model_validate(result)
        by_id = {result["JobProperties"]["JobID"]: result for result in results}
        assert by_id[REPORT]["JobConfigDetails"] is None
        assert by_id[COMPLETED]["JobConfigDetails"]["Schedule"]

    def test_results_follow_changes(self, api: Api) -> None:
        """A renamed, created or deleted job is found (or not) by the very next search."""
        assert found_ids(search(api, "(JobName Contains renamed)")) == []
        api.sim.set_job_name(COMPLETED, "Nightly - renamed")
        assert found_ids(search(api, "(JobName Contains renamed)")) == [COMPLETED]
        api.sim.finish_run(COMPLETED, 5)
        assert COMPLETED in found_ids(search(api, "(LastRunStatus = 5)"))
        api.sim.remove_job(COMPLETED)
        assert found_ids(search(api, "(JobName Contains renamed)")) == []

    def test_query_keys_ignore_case_and_it_needs_a_token(self, api: Api) -> None:
        """``attributes``/``PAGESIZE`` work in any case; without a token the answer is 401."""
        response = api.get("/jobs/", params={"attributes": "(JobType = COLLECTIONJOB)", "PAGESIZE": "2"})
        assert found_ids(response) == COLLECTION_JOBS[:2]
        anonymous = requests.get(
            api.sim.url + API + "/Jobs", params={"Attributes": "(JobName Contains a)"}, timeout=5
        )
        assert anonymous.status_code == 401

    def test_searches_are_counted_as_search_jobs(self, api: Api) -> None:
        """Search requests are counted under their own endpoint name, not as "job" or "unknown"."""
        api.sim.reset_requests()
        search(api, "(JobName Contains a)")
        search(api, "(JobName Like a)")
        assert api.sim.stats()["requests"] == {"search_jobs": {"200": 1, "400": 1}}


HOSTILE_EXPRESSIONS = [
    "",
    "   ",
    "()",
    "(JobName = x",
    "JobName = x)",
    "((JobName = x)",
    "(JobName = x))",
    "(JobName = (x)",
    "(Foo = 1)",
    "(Name = x)",
    "(JobName Like x)",
    "(JobName == x)",
    "(JobName <> x)",
    "(JobName =< x)",
    "(JobNameContains x)",
    "(JobName)",
    "(= x)",
    "(JobName = )",
    "(JobName Contains)",
    "(JobName = x,)",
    "(, JobName = x)",
    "(JobName = x,, JobType = y)",
    "(JobName = 'x)",
    "(JobName = x'y)",
    "(LastRunStatus Contains 4)",
    "(JobName < b)",
    "(JobType >= A)",
    "(LastRunStatus = four)",
    "(LastRunStatus = 99999999999999999999)",
    "(LastRunStatus = 4.5)",
    "(LastRunDate > yesterday)",
    "(LastRunDate > 2026-13-45)",
    "(LastRunDate StartsWith 2026)",
    "(JobName = x\x00)",
    "(" + "JobName Contains a, " * 40 + "JobName Contains b)",
    "(JobName Contains " + "a" * 5000 + ")",
    "(" * 3000 + ")" * 3000,
]


class TestHostileSearches:
    @pytest.mark.parametrize("expression", HOSTILE_EXPRESSIONS)
    def test_malformed_expressions_are_400_with_a_message(self, api: Api, expression: str) -> None:
        """Every malformed expression gets 400 and a JSON Message, quickly, never a 500."""
        response = search(api, expression)
        assert response.status_code == 400, response.text
        message = response.json()["Message"]
        assert isinstance(message, str) and message.startswith("Invalid input data.")
        assert "\n" not in message and len(message) < 400

    def test_injection_looking_values_are_plain_text(self, api: Api) -> None:
        """A value with SQL-looking text is a name like any other: no job has it, nothing breaks."""
        assert found_ids(search(api, "JobName = x; DROP TABLE Jobs")) == []
        assert found_ids(search(api, "(JobName = '1'' OR ''1''=''1')")) == []
        assert len(found_ids(search(api, "(JobID Contains -)"))) == 12

    def test_missing_attributes_is_400(self, api: Api) -> None:
        """A search without Attributes (even with page and pagesize) is refused: it is mandatory."""
        response = search(api, None, page=0, pagesize=10)
        assert response.status_code == 400
        assert "Attributes is mandatory" in response.json()["Message"]

    def test_messages_name_the_problem(self, api: Api) -> None:
        """The Message names the unknown attribute, the unknown operator or the unbalanced parentheses."""
        assert "'Foo'" in search(api, "(Foo = 1)").json()["Message"]
        assert "Like" in search(api, "(JobName Like x)").json()["Message"]
        assert "parentheses" in search(api, "(JobName = x").json()["Message"]
        assert "LastRunStatus" in search(api, "(LastRunStatus Contains 4)").json()["Message"]

    @pytest.mark.parametrize(
        "params",
        [
            {"page": "-1"},
            {"page": "x"},
            {"page": "1.5"},
            {"page": "0x10"},
            {"page": "99999999999"},
            {"pagesize": "0"},
            {"pagesize": "-5"},
            {"pagesize": "ten"},
            {"pagesize": "10000000000000"},
            {"pagesize": "1e3"},
        ],
    )
    def test_bad_paging_values_are_400(self, api: Api, params: dict[str, str]) -> None:
        """Negative, non-numeric or beyond-Int32 page and pagesize are refused with a Message naming them."""
        response = search(api, "(JobName Contains a)", **params)
        assert response.status_code == 400
        assert next(iter(params)) in response.json()["Message"]


class TestPaging:
    def test_pages_are_zero_based_and_end_with_an_empty_page(self, api: Api) -> None:
        """Pages of 5 give 5, 5, 2 and then an empty page; together every job once, in order."""
        pages = [found_ids(search(api, "(JobID Contains -)", page=n, pagesize=5)) for n in range(4)]
        assert [len(page) for page in pages] == [5, 5, 2, 0]
        assert [job for page in pages for job in page] == SAMPLE_ORDER

    def test_missing_paging_means_page_zero_up_to_the_cap(self, api: Api) -> None:
        """Without page and pagesize the first page holds up to the cap (all 12 samples by default)."""
        assert found_ids(search(api, "(JobID Contains -)")) == SAMPLE_ORDER

    def test_a_page_far_past_the_end_is_empty(self, api: Api) -> None:
        """A valid page number past the last page answers an empty array, not an error."""
        assert found_ids(search(api, "(JobID Contains -)", page=2_000_000_000, pagesize=1000)) == []

    def test_the_page_size_cap_shortens_pages_silently(self, started: Callable[..., Simulator]) -> None:
        """With a cap of 4, asking for 100 gives 4 jobs a page, and page 1 continues after them."""
        api = Api(started(search_page_size_cap=4))
        first = found_ids(search(api, "(JobID Contains -)", page=0, pagesize=100))
        second = found_ids(search(api, "(JobID Contains -)", page=1, pagesize=100))
        assert first == SAMPLE_ORDER[:4]
        assert second == SAMPLE_ORDER[4:8]

    def test_the_cap_can_change_at_runtime_over_http(self, api: Api) -> None:
        """Setting search_page_size_cap through the control API applies to the next search."""
        assert control(api.sim, "POST", "faults", {"search_page_size_cap": 3}).status_code == 200
        assert len(found_ids(search(api, "(JobID Contains -)", pagesize=100))) == 3
        assert control(api.sim, "POST", "faults", {"search_page_size_cap": 0}).status_code == 400
        control(api.sim, "POST", "faults", {"clear": True})
        assert len(found_ids(search(api, "(JobID Contains -)", pagesize=100))) == 12

    def test_a_server_that_ignores_page_answers_page_zero(self, api: Api) -> None:
        """With search_ignores_page every page repeats the first one, as a careless server would."""
        api.sim.faults.search_ignores_page = True
        first = found_ids(search(api, "(JobID Contains -)", page=0, pagesize=5))
        assert found_ids(search(api, "(JobID Contains -)", page=1, pagesize=5)) == first
        assert found_ids(search(api, "(JobID Contains -)", page=7, pagesize=5)) == first

    def test_generated_jobs_list_completely_at_page_size_100(self, started: Callable[..., Simulator]) -> None:
        """2,500 generated jobs list as 25 full pages and an empty one, each id exactly once."""
        sim = started(jobs=2500, seed=4)
        api = Api(sim)
        seen: list[str] = []
        for page in range(30):
            ids = found_ids(search(api, "(JobName StartsWith Generated)", page=page, pagesize=100))
            if not ids:
                break
            assert len(ids) == 100
            seen.extend(ids)
        assert page == 25
        assert seen == sim.job_ids
        reports = found_ids(search(api, "(JobType = REPORTJOB)", pagesize=1000))
        expected = [
            job for job in sim.job_ids if sim.job_snapshot(job)["JobProperties"]["JobType"] == "REPORTJOB"
        ]
        assert reports == expected and 0 < len(reports) < 2500


class TestOlderCcs:
    def test_search_unsupported_answers_404_for_search_and_by_name(self, api: Api) -> None:
        """With search_unsupported both GET /Jobs forms answer 404; search by id still works."""
        control(api.sim, "POST", "faults", {"search_unsupported": True})
        assert search(api, "(JobName Contains a)").status_code == 404
        assert api.get("/Jobs", params={"jobname": "PCI DSS evaluation"}).status_code == 404
        assert "No HTTP resource" in search(api, "(JobName Contains a)").json()["Message"]
        assert api.get(f"/jobs/{ABORTED}").status_code == 200
        control(api.sim, "POST", "faults", {"clear": True})
        assert search(api, "(JobName Contains a)").status_code == 200


class TestSearchByName:
    def test_exact_name_returns_the_job_in_an_array(self, api: Api) -> None:
        """Search by name answers an array holding the one job with exactly that name."""
        response = api.get("/Jobs", params={"jobname": "PCI DSS evaluation"})
        assert response.status_code == 200
        assert response.json() == [api.job(ABORTED)]

    @pytest.mark.parametrize("name", ["pci dss evaluation", "PCI DSS", "PCI DSS evaluation ", "nothing"])
    def test_anything_but_the_exact_name_finds_nothing(self, api: Api, name: str) -> None:
        """Another case, a part of the name or a trailing space finds no job: an empty array."""
        response = api.get("/Jobs", params={"jobname": name})
        assert response.status_code == 200
        assert response.json() == []

    def test_hostile_name_round_trips(self, api: Api) -> None:
        """The name with quotes, backslashes, a newline and non-ASCII text is found exactly."""
        name = api.job(HOSTILE)["JobProperties"]["Name"]
        assert found_ids(api.get("/Jobs", params={"JobName": name})) == [HOSTILE]

    def test_empty_name_is_400(self, api: Api) -> None:
        """An empty jobname is refused with a Message."""
        response = api.get("/Jobs", params={"jobname": ""})
        assert response.status_code == 400
        assert "jobname" in response.json()["Message"]

    def test_get_with_jobid_is_not_delete(self, api: Api) -> None:
        """``GET /Jobs?jobid=`` is a search without Attributes (400); DELETE with jobid still deletes."""
        assert api.get("/Jobs", params={"jobid": COMPLETED}).status_code == 400
        assert api.get(f"/jobs/{COMPLETED}").status_code == 200
        assert api.delete(COMPLETED).status_code == 204
        assert api.get(f"/jobs/{COMPLETED}").status_code == 404

    def test_counted_as_search_job_name(self, api: Api) -> None:
        """Searches by name are counted under their own endpoint name."""
        api.sim.reset_requests()
        api.get("/Jobs", params={"jobname": "x"})
        assert api.sim.request_count("search_job_name") == 1


class TestConsoleJobs:
    def test_a_job_created_in_the_console_appears_everywhere(self, api: Api) -> None:
        """POST /_simulator/jobs adds a never-run job created now, found by id, search and name."""
        before = datetime.now(timezone.utc).replace(microsecond=0)
        response = control(api.sim, "POST", "jobs", {"Name": "Console job", "JobType": "COLLECTIONJOB"})
        assert response.status_code == 200, response.text
        job = response.json()
        job_id = job["JobProperties"]["JobID"]
        created = datetime.fromisoformat(job["JobProperties"]["JobCreationTime"]).replace(tzinfo=timezone.utc)
        assert before <= created <= datetime.now(timezone.utc)
        assert job["JobProperties"]["LastRunStatus"] == 0
        assert job == api.job(job_id)
        assert found_ids(api.get("/Jobs", params={"jobname": "Console job"})) == [job_id]
        assert found_ids(search(api, f"(JobCreationTime >= {before:%Y-%m-%dT%H:%M:%S})")) == [job_id]
        assert job_id in control(api.sim, "GET", "jobs").json()["job_ids"]

    def test_console_fields(self, api: Api) -> None:
        """JobID, owner, system flag and a properties-only type are taken as given."""
        body = {"name": "Imported", "jobtype": "REPORTJOB", "owner": "CCS\\other", "IsSystemJob": True}
        job = control(api.sim, "POST", "jobs", {**body, "JobID": "{" + UNKNOWN.upper() + "}"}).json()
        assert job["JobProperties"]["JobID"] == UNKNOWN
        assert job["JobProperties"]["Owner"] == "CCS\\other"
        assert job["JobProperties"]["IsSystemJob"] is True
        assert job["JobConfigDetails"] is None

    @pytest.mark.parametrize(
        "body",
        [
            {},
            {"Name": ""},
            {"Name": 5},
            {"Name": "x", "Colour": "red"},
            {"Name": "x", "IsSystemJob": "yes"},
            {"Name": "x", "JobID": "not-a-guid"},
            {"Name": "PCI DSS evaluation"},
            {"Name": "x", "JobID": ABORTED},
            [],
        ],
    )
    def test_bad_console_creations_are_400(self, api: Api, body: Any) -> None:
        """Missing or mistyped fields, unknown fields, a duplicate name or id: 400 with an error."""
        before = list(api.sim.job_ids)
        response = control(api.sim, "POST", "jobs", body)
        assert response.status_code == 400
        assert response.json()["error"]
        assert api.sim.job_ids == before

    def test_a_job_deleted_in_the_console_disappears(self, api: Api) -> None:
        """DELETE /_simulator/jobs/{id} removes any job, a system job too, without a token."""
        for job_id in (SYSTEM, OTHER_OWNER):
            response = control(api.sim, "DELETE", f"jobs/{job_id.upper()}")
            assert response.status_code == 200
            assert api.get(f"/jobs/{job_id}").status_code == 404
            assert job_id not in found_ids(search(api, "(JobID Contains -)"))
        assert control(api.sim, "DELETE", f"jobs/{SYSTEM}").status_code == 404
        assert control(api.sim, "DELETE", "jobs/nonsense").status_code == 400


class TestSimulateOption:
    def test_a_page_size_cap_below_one_exits_2_with_one_line(self) -> None:
        """``simulate --search-page-size-cap 0`` stops at once with one line naming the option."""
        result = subprocess.run(
            [sys.executable, "-m", "ccs_exporter", "simulate", "--port", "0", "--search-page-size-cap", "0"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [
            "ccs-exporter: --search-page-size-cap must be 1 or more"
        ]
