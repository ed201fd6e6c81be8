"""Tests of the payload models: tolerant parsing of what CCS sends, strict checks of what we send."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from ccs_exporter.models import (
    CreateJobRequest,
    Job,
    JobDetailsUpdate,
    JobMessage,
    JobRun,
    JobRuns,
    JobStatus,
    normalize_guid,
    parse_ccs_datetime,
    request_body,
)
from ccs_exporter.settings.inputs import describe_validation_error

FIXTURES_DIR = Path(__file__).parent / "fixtures"
UTC = timezone.utc
CREATE_SAMPLES = sorted(path.name for path in FIXTURES_DIR.glob("create_job_request*.json"))
UPDATE_SAMPLES = sorted(path.name for path in FIXTURES_DIR.glob("update_job_request*.json"))
CANARY = "Canary-Value-9f3Zq"


@pytest.fixture
def other_local_timezone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run with a local time zone far from UTC, so a parser that used local time would be caught."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _validation_error(model: Any, payload: Any) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(payload)
    return caught.value


class TestFixtures:
    def test_every_fixture_is_covered(self) -> None:
        """Every JSON file in tests/fixtures is parsed by one of the tests below."""
        covered = {
            "search_job_by_id.json",
            "job_without_config.json",
            "job_nulls_and_strings.json",
            "jobruns.json",
            "jobruns_edge_cases.json",
            "jobruns_empty.json",
            "job_message.json",
            "create_job_response.json",
            "token_response.json",
            *CREATE_SAMPLES,
            *UPDATE_SAMPLES,
            *(path.name for path in FIXTURES_DIR.glob("error_*.json")),
        }
        assert {path.name for path in FIXTURES_DIR.glob("*.json")} == covered

    @pytest.mark.parametrize(
        "name", ["search_job_by_id.json", "job_without_config.json", "job_nulls_and_strings.json"]
    )
    def test_job_fixtures_parse(self, load_fixture: Callable[[str], Any], name: str) -> None:
        """Every search-job-by-id payload parses into a Job with a normalised GUID."""
        job = Job.model_validate(load_fixture(name))
        assert job.JobProperties.JobID == normalize_guid(job.JobProperties.JobID)

    @pytest.mark.parametrize("name", ["jobruns.json", "jobruns_edge_cases.json", "jobruns_empty.json"])
    def test_jobruns_fixtures_parse(self, load_fixture: Callable[[str], Any], name: str) -> None:
        """Every jobruns payload parses, with as many runs as it lists."""
        payload = load_fixture(name)
        runs = JobRuns.model_validate(payload)
        assert len(runs.JobStatusInfo) == len(payload["JobStatusInfo"] or [])

    def test_job_message_fixture_parses(self, load_fixture: Callable[[str], Any]) -> None:
        """The JobMessages example of the jobruns page parses, backslash and all."""
        message = JobMessage.model_validate(load_fixture("job_message.json"))
        assert message.Category == "Error"
        assert message.Asset == "DomainName\\IP Address"
        assert message.DateTime == datetime(2021, 10, 19, 12, 1, 14, tzinfo=UTC)

    @pytest.mark.parametrize("name", CREATE_SAMPLES)
    def test_create_samples_validate(self, load_fixture: Callable[[str], Any], name: str) -> None:
        """Every Create Job body of the vendor page passes our local checks."""
        request = CreateJobRequest.model_validate(load_fixture(name))
        assert request.JobDetails.JobName

    @pytest.mark.parametrize("name", UPDATE_SAMPLES)
    def test_update_samples_validate(self, load_fixture: Callable[[str], Any], name: str) -> None:
        """Every Update Job body of the vendor page passes our local checks."""
        payload = load_fixture(name)
        details = JobDetailsUpdate.model_validate(payload["JobDetails"])
        assert request_body(details) == payload["JobDetails"]
        assert normalize_guid(payload["JobID"]) == payload["JobID"]

    def test_create_response_has_a_guid(self, load_fixture: Callable[[str], Any]) -> None:
        """The Create Job sample response holds a GUID JobID."""
        assert normalize_guid(load_fixture("create_job_response.json")["JobID"])

    def test_token_response_has_both_tokens(self, load_fixture: Callable[[str], Any]) -> None:
        """The hand-written token response has the two keys the vendor scripts read."""
        body = load_fixture("token_response.json")
        assert body["access_token"] and body["refresh_token"]

    @pytest.mark.parametrize("name", sorted(path.name for path in FIXTURES_DIR.glob("error_*.json")))
    def test_error_bodies_carry_a_message(self, load_fixture: Callable[[str], Any], name: str) -> None:
        """Every error fixture has the documented message in a Message field."""
        assert load_fixture(name)["Message"].strip()


class TestParseCcsDatetime:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("2018-09-20T11:14:34+05:30", datetime(2018, 9, 20, 5, 44, 34, tzinfo=UTC)),
            ("2018-09-20T05:44:42", datetime(2018, 9, 20, 5, 44, 42, tzinfo=UTC)),
            ("2018-11-18T02:14:27.5120788-08:00", datetime(2018, 11, 18, 10, 14, 27, 512078, tzinfo=UTC)),
            ("2018-11-18T21:14:27.513+05:30", datetime(2018, 11, 18, 15, 44, 27, 513000, tzinfo=UTC)),
            ("2019-01-05T04:10:27.5120788-08:00", datetime(2019, 1, 5, 12, 10, 27, 512078, tzinfo=UTC)),
            ("2018-09-17T11:44:53", datetime(2018, 9, 17, 11, 44, 53, tzinfo=UTC)),
            ("2024-03-01T10:00:00Z", datetime(2024, 3, 1, 10, 0, 0, tzinfo=UTC)),
            ("2024-03-01T10:00:00z", datetime(2024, 3, 1, 10, 0, 0, tzinfo=UTC)),
            ("2024-03-01T10:00:00.1234567Z", datetime(2024, 3, 1, 10, 0, 0, 123456, tzinfo=UTC)),
            ("2024-03-01T10:00:00+0100", datetime(2024, 3, 1, 9, 0, 0, tzinfo=UTC)),
            ("2024-03-01 10:00:00", datetime(2024, 3, 1, 10, 0, 0, tzinfo=UTC)),
            ("/Date(1537422282000)/", datetime(2018, 9, 20, 5, 44, 42, tzinfo=UTC)),
            ("/Date(1537422282000+0530)/", datetime(2018, 9, 20, 5, 44, 42, tzinfo=UTC)),
            ("/Date(-1000)/", datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)),
        ],
    )
    def test_table(self, other_local_timezone: None, text: str, expected: datetime) -> None:
        """Each DateTime shape becomes the same instant as an aware UTC datetime, whatever the local zone."""
        parsed = parse_ccs_datetime(text)
        assert parsed == expected
        assert parsed is not None and parsed.utcoffset() == timedelta(0)

    @pytest.mark.parametrize(
        "value",
        [None, "", "   ", "0001-01-01T00:00:00", "0001-01-01T00:00:00Z", "0001-01-01T00:00:00.0000000"],
    )
    def test_never_is_none(self, value: Any) -> None:
        """Null, empty and year 1 (CCS's "never") have no value."""
        assert parse_ccs_datetime(value) is None

    def test_docs_sample_pair_is_an_eight_second_run(self, other_local_timezone: None) -> None:
        """The jobruns sample's offset start and naive end are 8 seconds apart (naive means UTC)."""
        start = parse_ccs_datetime("2018-09-20T11:14:34+05:30")
        end = parse_ccs_datetime("2018-09-20T05:44:42")
        assert start is not None and end is not None
        assert (end - start).total_seconds() == 8

    @pytest.mark.parametrize("digits", [10, 12, 30, 200])
    def test_long_fractions_are_truncated(self, digits: int) -> None:
        """A fraction longer than nine digits is cut to microseconds, as the README promises, not refused."""
        fraction = ("5120788" + "9" * digits)[:digits]
        parsed = parse_ccs_datetime(f"2018-11-18T02:14:27.{fraction}-08:00")
        assert parsed == datetime(2018, 11, 18, 10, 14, 27, 512078, tzinfo=UTC)

    def test_naive_datetime_object_is_utc(self, other_local_timezone: None) -> None:
        """An already-parsed naive datetime is taken as UTC, not local time."""
        assert parse_ccs_datetime(datetime(2020, 1, 1, 12)) == datetime(2020, 1, 1, 12, tzinfo=UTC)

    @pytest.mark.parametrize(
        "value",
        [
            "yesterday",
            "2018-13-01T00:00:00",
            "2018-02-30T00:00:00",
            "2018-09-20T25:00:00",
            "2018-09-20T11:14:34+25:00",
            "2018-09-20T11:14:34 UTC",
            "/Date(abc)/",
            "/Date(99999999999999999999)/",
            "/Date(-99999999999999999999)/",
            12345,
            ["2018-09-20T05:44:42"],
        ],
    )
    def test_garbage_is_a_value_error(self, value: Any) -> None:
        """Anything that is not a DateTime raises ValueError (which pydantic reports), never another error."""
        with pytest.raises(ValueError):
            parse_ccs_datetime(value)

    def test_garbage_in_a_payload_is_a_validation_error(self) -> None:
        """A bad DateTime inside a payload fails validation and names the field."""
        exc = _validation_error(JobRun, {"JobStartTime": "/Date(99999999999999999999)/"})
        assert describe_validation_error(exc).startswith("JobStartTime:")


class TestJobStatus:
    def test_documented_codes(self) -> None:
        """Codes 0-7 map to the documented names, in lower case for labels."""
        labels = [JobStatus(code).label for code in range(8)]
        assert labels == ["none", "pending", "executing", "idle", "completed", "faulted", "custom", "aborted"]

    def test_only_pending_and_executing_are_running(self) -> None:
        """Pending and executing are the running states."""
        assert {status for status in JobStatus if status.is_running} == {
            JobStatus.PENDING,
            JobStatus.EXECUTING,
        }

    def test_unknown_run_status_is_kept_raw(self) -> None:
        """A run status outside 0-7 keeps its code and has no enum value."""
        run = JobRun.model_validate({"Status": 12})
        assert run.Status == 12
        assert run.status is None

    def test_unknown_last_run_status_is_kept_raw(self, load_fixture: Callable[[str], Any]) -> None:
        """A LastRunStatus outside 0-7 keeps its code and has no enum value."""
        job = Job.model_validate(load_fixture("job_nulls_and_strings.json"))
        assert job.JobProperties.LastRunStatus == 9
        assert job.JobProperties.last_run_status is None

    def test_known_last_run_status(self, load_fixture: Callable[[str], Any]) -> None:
        """A documented LastRunStatus maps to its enum value."""
        job = Job.model_validate(load_fixture("job_without_config.json"))
        assert job.JobProperties.last_run_status is JobStatus.COMPLETED


class TestJob:
    def test_docs_sample(self, load_fixture: Callable[[str], Any]) -> None:
        """The search-job-by-id sample parses into its documented values."""
        job = Job.model_validate(load_fixture("search_job_by_id.json"))
        props, config = job.JobProperties, job.JobConfigDetails
        assert props.JobID == "23c59087-f3d4-4e05-a39e-3440c58e58fb"
        assert props.JobType == "CHAINED_EVALUATIONJOB"
        assert props.LastRunDate is None
        assert props.last_run_status is JobStatus.NONE
        assert props.JobCreationTime == datetime(2018, 9, 17, 11, 44, 53, tzinfo=UTC)
        assert config is not None and config.Schedule is not None
        assert config.Schedule.StartDate == datetime(2018, 11, 18, 15, 44, 27, 513000, tzinfo=UTC)
        assert config.Schedule.RepeatDays == 50 and config.Schedule.RunPeriodically is True
        assert config.SuccessNotification is not None
        assert config.SuccessNotification.ToEmailAddress == "[email protected]"
        assert [asset.Type for asset in config.AssetsResolutionInfo] == [
            "symc-csm-AssetSystem-Asset-Wnt-Machine"
        ]
        assert config.Standards == ["20ed033e-ea47-4783-ad9c-01b112733e89"]

    def test_missing_config_details(self, load_fixture: Callable[[str], Any]) -> None:
        """A job without JobConfigDetails parses with no config, and its odd fields normalised."""
        job = Job.model_validate(load_fixture("job_without_config.json"))
        props = job.JobProperties
        assert job.JobConfigDetails is None
        assert props.JobID == "7a4f0c2e-1b3d-4e5f-8a9b-0c1d2e3f4a5b"
        assert props.IsSystemJob is True
        assert props.Owner is None
        assert props.JobCreationTime == datetime(2019, 2, 1, 8, 0, tzinfo=UTC)
        assert props.JobModifiedTime == datetime(2019, 2, 1, 8, 0, tzinfo=UTC)
        assert props.LastRunDate == datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)

    def test_nulls_become_empty_and_false(self, load_fixture: Callable[[str], Any]) -> None:
        """Null lists are empty, null booleans false, null and year-1 dates absent."""
        job = Job.model_validate(load_fixture("job_nulls_and_strings.json"))
        config = job.JobConfigDetails
        assert config is not None
        assert config.EvaluationResultViewers == []
        assert config.AssetsResolutionInfo == []
        assert config.Standards == []
        assert config.Schedule is None and config.SuccessNotification is None
        assert job.JobProperties.IsSystemJob is False
        assert job.JobProperties.JobCreationTime is None
        assert job.JobProperties.JobModifiedTime is None
        assert job.JobProperties.LastRunDate is None

    def test_string_booleans(self, load_fixture: Callable[[str], Any]) -> None:
        """String booleans ("true", "False") are read as booleans."""
        config = Job.model_validate(load_fixture("job_nulls_and_strings.json")).JobConfigDetails
        assert config is not None
        assert config.ShouldSendSuccessNotification is True
        assert config.ShouldSendFailureNotification is False

    def test_unknown_fields_are_kept(self, load_fixture: Callable[[str], Any]) -> None:
        """Fields the docs do not list survive parsing and dumping (the CLI prints them)."""
        job = Job.model_validate(load_fixture("job_without_config.json"))
        assert job.model_dump(mode="json")["JobProperties"]["FutureField"] == {"Anything": [1, 2, 3]}
        config = Job.model_validate(load_fixture("job_nulls_and_strings.json")).JobConfigDetails
        assert config is not None and config.model_extra == {
            "IsIncremental": "true",
            "UndocumentedSetting": 42,
        }

    def test_any_job_type_is_accepted(self, load_fixture: Callable[[str], Any]) -> None:
        """JobType is an opaque string: internal and unknown names are both accepted."""
        job = Job.model_validate(load_fixture("job_nulls_and_strings.json"))
        assert job.JobProperties.JobType == "SomeFutureJobType"

    def test_job_id_must_be_a_guid(self) -> None:
        """A job whose JobID is not a GUID is rejected, naming the field."""
        exc = _validation_error(Job, {"JobProperties": {"JobID": "not-a-guid"}})
        assert describe_validation_error(exc).startswith("JobProperties.JobID:")

    def test_job_properties_are_required(self) -> None:
        """A body without JobProperties is not a job."""
        exc = _validation_error(Job, {"JobConfigDetails": {}})
        assert describe_validation_error(exc).startswith("JobProperties:")


class TestJobRuns:
    def test_docs_sample_is_an_eight_second_faulted_run(
        self, load_fixture: Callable[[str], Any], other_local_timezone: None
    ) -> None:
        """The jobruns sample is one faulted run of 8 seconds with one error message."""
        runs = JobRuns.model_validate(load_fixture("jobruns.json"))
        assert runs.TotalJobRuns == 1
        (run,) = runs.JobStatusInfo
        assert run.status is JobStatus.FAULTED
        assert run.is_finished
        assert run.duration_seconds == 8.0
        assert run.ActivityStatusList == []
        assert run.Exception is None
        assert [message.Category for message in run.JobMessages] == ["Error"]
        assert run.JobMessages[0].Asset == "<Domain name>\\<IP Address>"

    def test_newest_first(self, load_fixture: Callable[[str], Any]) -> None:
        """Runs are ordered by start time, newest first, whatever order CCS sends; unstarted runs last."""
        runs = JobRuns.model_validate(load_fixture("jobruns_edge_cases.json"))
        assert [run.JobRunID[:8] for run in runs.newest_first() if run.JobRunID] == [
            "33333333",
            "22222222",
            "11111111",
            "55555555",
            "44444444",
        ]

    def test_newest_first_compares_instants_not_wall_clocks(self) -> None:
        """A run at 09:00-08:00 (17:00 UTC) is newer than one at 12:00 UTC."""
        runs = JobRuns.model_validate(
            {
                "JobStatusInfo": [
                    {"JobRunID": "utc", "JobStartTime": "2024-01-01T12:00:00"},
                    {"JobRunID": "pst", "JobStartTime": "2024-01-01T09:00:00-08:00"},
                ]
            }
        )
        assert [run.JobRunID for run in runs.newest_first()] == ["pst", "utc"]

    def test_null_lists_and_missing_fields(self, load_fixture: Callable[[str], Any]) -> None:
        """A run with null messages and no end time parses with an empty list and no end."""
        runs = JobRuns.model_validate(load_fixture("jobruns_edge_cases.json"))
        executing = runs.JobStatusInfo[1]
        assert executing.JobMessages == []
        assert executing.MessageCount == 0
        assert executing.JobEndTime is None
        assert JobRuns.model_validate(load_fixture("jobruns_empty.json")).newest_first() == []

    def test_message_categories(self, load_fixture: Callable[[str], Any]) -> None:
        """Warning and Information messages parse alongside errors."""
        run = JobRuns.model_validate(load_fixture("jobruns_edge_cases.json")).JobStatusInfo[0]
        assert [message.Category for message in run.JobMessages] == ["Warning", "Information"]

    def test_unknown_run_fields_are_kept(self, load_fixture: Callable[[str], Any]) -> None:
        """A field the docs do not list is kept on the run."""
        run = JobRuns.model_validate(load_fixture("jobruns_edge_cases.json")).JobStatusInfo[0]
        assert run.model_dump()["RunNode"] == "ccs-app-02"

    @pytest.mark.parametrize(
        ("run_id", "finished", "duration"),
        [
            ("11111111", True, 330.641976),
            ("22222222", True, 42.0),
            ("33333333", False, None),
            ("44444444", False, None),
            ("55555555", True, 10.0),
        ],
    )
    def test_is_finished_and_duration(
        self, load_fixture: Callable[[str], Any], run_id: str, finished: bool, duration: float | None
    ) -> None:
        """Runs with an end that are not running are finished; running ones have no duration."""
        runs = JobRuns.model_validate(load_fixture("jobruns_edge_cases.json")).JobStatusInfo
        (run,) = [run for run in runs if run.JobRunID and run.JobRunID.startswith(run_id)]
        assert run.is_finished is finished
        assert run.duration_seconds == (pytest.approx(duration) if duration is not None else None)

    def test_running_with_an_end_time_is_not_finished(self) -> None:
        """An executing run that already reports an end time is still not finished."""
        run = JobRun.model_validate(
            {"Status": 2, "JobStartTime": "2024-01-01T10:00:00", "JobEndTime": "2024-01-01T10:00:05"}
        )
        assert not run.is_finished
        assert run.duration_seconds is None

    def test_duration_is_never_negative(self) -> None:
        """An end before the start (clock skew between CCS nodes) gives a zero duration."""
        run = JobRun.model_validate(
            {"Status": 4, "JobStartTime": "2024-01-01T10:00:05", "JobEndTime": "2024-01-01T10:00:00"}
        )
        assert run.duration_seconds == 0.0

    def test_finished_without_start_has_no_duration(self) -> None:
        """A finished run whose start is unknown has no duration."""
        run = JobRun.model_validate({"Status": 5, "JobEndTime": "2024-01-01T10:00:00"})
        assert run.is_finished
        assert run.duration_seconds is None


def _create(**details: Any) -> dict[str, Any]:
    """A minimal valid Create Job body with ``details`` merged into JobDetails."""
    body: dict[str, Any] = {
        "JobType": "CollectionEvaluationJob",
        "JobDetails": {
            "AssetsResolutionInfo": [
                {
                    "Id": "d387d8b5-6278-4bcb-83c7-b55d2072d2a8",
                    "Type": "symc-csm-AssetSystem-Asset-Unix-Machine",
                }
            ],
            "JobName": "Test_Job11",
            "Standards": ["6b020d29-5fe8-47d0-bd89-ccd3339a5ebe"],
        },
    }
    body["JobDetails"].update(details)
    return body


def _create_error(body: dict[str, Any]) -> str:
    return describe_validation_error(_validation_error(CreateJobRequest, body))


def _update_error(details: dict[str, Any]) -> str:
    return describe_validation_error(_validation_error(JobDetailsUpdate, details), prefix="JobDetails")


class TestCreateJobRequest:
    def test_body_sent_is_the_sample(self, load_fixture: Callable[[str], Any]) -> None:
        """The body we send for the minimal sample is exactly the sample: no defaults are added."""
        sample = load_fixture("create_job_request.json")
        assert request_body(CreateJobRequest.model_validate(sample)) == sample

    def test_string_booleans_are_sent_as_booleans(self, load_fixture: Callable[[str], Any]) -> None:
        """The notifications sample's "true" strings are accepted and sent as JSON booleans."""
        body = request_body(
            CreateJobRequest.model_validate(load_fixture("create_job_request_notifications.json"))
        )
        assert body["JobDetails"]["ShouldSendSuccessNotification"] is True
        assert body["JobDetails"]["ShouldSendFailureNotification"] is True

    @pytest.mark.parametrize("field", ["AssetsResolutionInfo", "JobName", "Standards"])
    def test_mandatory_fields(self, field: str) -> None:
        """Each mandatory JobDetails field is required, and the error names it."""
        body = _create()
        del body["JobDetails"][field]
        assert _create_error(body).startswith(f"JobDetails.{field}:")

    @pytest.mark.parametrize("field", ["AssetsResolutionInfo", "Standards"])
    def test_mandatory_lists_are_not_empty(self, field: str) -> None:
        """An empty asset or standard list is as good as missing."""
        assert _create_error(_create(**{field: []})).startswith(f"JobDetails.{field}:")

    def test_job_type_required(self) -> None:
        """A body without JobType is rejected, naming JobType."""
        body = _create()
        del body["JobType"]
        assert _create_error(body).startswith("JobType:")

    @pytest.mark.parametrize("job_type", ["CollectionEvaluationJob", "CollectionJob", "EvaluationJob"])
    def test_job_types(self, job_type: str) -> None:
        """The three documented JobType values are accepted."""
        assert CreateJobRequest.model_validate({**_create(), "JobType": job_type}).JobType == job_type

    @pytest.mark.parametrize(
        "job_type", ["collectionevaluationjob", "COLLECTIONJOB", "DataCollectionJob", ""]
    )
    def test_job_type_is_case_sensitive(self, job_type: str) -> None:
        """A JobType in the wrong case or not documented is rejected with the valid values."""
        message = _create_error({**_create(), "JobType": job_type})
        assert message.startswith("JobType:")
        assert "CollectionEvaluationJob, CollectionJob, EvaluationJob (case-sensitive)" in message

    @pytest.mark.parametrize(("value", "ok"), [(0, False), (1, True), (500, True), (501, False)])
    def test_asset_timeout_range(self, value: int, ok: bool) -> None:
        """AssetTimeOut is 1-500 minutes."""
        self._check(_create(AssetTimeOut=value), ok, "JobDetails.AssetTimeOut:")

    @pytest.mark.parametrize(("value", "ok"), [(0, False), (1, True), (100, True), (101, False)])
    def test_incremental_period_up_to_100_days(self, value: int, ok: bool) -> None:
        """IncrementalPeriod of a new job is 1-100 days."""
        self._check(_create(IncrementalPeriod=value), ok, "JobDetails.IncrementalPeriod:")

    @pytest.mark.parametrize(("value", "ok"), [(0, True), (1000, True), (1001, False), (-1, False)])
    def test_collection_only_timeout_hours(self, value: int, ok: bool) -> None:
        """CollectionOnlyTimeOutHours is at most 1000."""
        self._check(_create(CollectionOnlyTimeOutHours=value), ok, "JobDetails.CollectionOnlyTimeOutHours:")

    @pytest.mark.parametrize(("value", "ok"), [(0, True), (59, True), (60, False), (-1, False)])
    def test_collection_only_timeout_mins(self, value: int, ok: bool) -> None:
        """CollectionOnlyTimeOutMins is at most 59."""
        self._check(_create(CollectionOnlyTimeOutMins=value), ok, "JobDetails.CollectionOnlyTimeOutMins:")

    @pytest.mark.parametrize("kind", ["Success", "Failure"])
    @pytest.mark.parametrize("flag", [True, "true", "True"])
    def test_notification_block_required_when_flag_true(self, kind: str, flag: Any) -> None:
        """A ShouldSend...Notification flag that is true needs its notification block."""
        message = _create_error(_create(**{f"ShouldSend{kind}Notification": flag}))
        assert message.startswith("JobDetails:")
        assert f"{kind}Notification is required" in message

    @pytest.mark.parametrize("kind", ["Success", "Failure"])
    def test_notification_needs_a_recipient(self, kind: str) -> None:
        """An enabled notification block without ToEmailAddress is rejected, naming it."""
        body = _create(**{f"ShouldSend{kind}Notification": True, f"{kind}Notification": {"Subject": "done"}})
        assert f"{kind}Notification.ToEmailAddress is required" in _create_error(body)

    @pytest.mark.parametrize("kind", ["Success", "Failure"])
    def test_notification_block_optional_when_flag_false(self, kind: str) -> None:
        """With the flag false (or absent) no notification block is needed."""
        CreateJobRequest.model_validate(_create(**{f"ShouldSend{kind}Notification": False}))
        CreateJobRequest.model_validate(_create(**{f"ShouldSend{kind}Notification": "false"}))

    def test_unknown_details_field_rejected(self) -> None:
        """A misspelt JobDetails field is an error naming it, not silently dropped."""
        message = _create_error(_create(JobNmae="x"))
        assert message.startswith("JobDetails.JobNmae: unknown field")

    def test_unknown_top_level_field_rejected(self) -> None:
        """A field beside JobDetails and JobType is rejected too."""
        assert _create_error({**_create(), "JobId": "x"}).startswith("JobId: unknown field")

    def test_unknown_schedule_field_rejected(self) -> None:
        """A misspelt Schedule field is rejected with its full path."""
        message = _create_error(_create(Schedule={"RunNOW": True}))
        assert message.startswith("JobDetails.Schedule.RunNOW: unknown field")

    def test_standards_must_be_guids(self) -> None:
        """A standard that is not a GUID is rejected, naming its position."""
        assert _create_error(_create(Standards=["CIS Windows"])).startswith("JobDetails.Standards.0:")

    def test_asset_id_must_be_a_guid(self) -> None:
        """An asset id that is not a GUID is rejected, naming its position."""
        body = _create(AssetsResolutionInfo=[{"Id": "server01", "Type": "Windows Machine"}])
        assert _create_error(body).startswith("JobDetails.AssetsResolutionInfo.0.Id:")

    def test_counts_further_errors(self) -> None:
        """The one-line message says how many other problems there are."""
        message = _create_error(_create(AssetTimeOut=0, CollectionOnlyTimeOutMins=60))
        assert message.endswith("(and 1 more)")
        assert "\n" not in message

    @staticmethod
    def _check(body: dict[str, Any], ok: bool, prefix: str) -> None:
        if ok:
            CreateJobRequest.model_validate(body)
        else:
            assert _create_error(body).startswith(prefix)


class TestJobDetailsUpdate:
    @pytest.mark.parametrize(
        ("value", "ok"), [(0, False), (1, True), (101, True), (1000, True), (1001, False)]
    )
    def test_incremental_period_up_to_1000_days(self, value: int, ok: bool) -> None:
        """IncrementalPeriod of an update is 1-1000 days (create allows only 100)."""
        if ok:
            JobDetailsUpdate.model_validate({"IncrementalPeriod": value})
        else:
            assert _update_error({"IncrementalPeriod": value}).startswith("JobDetails.IncrementalPeriod:")

    def test_every_field_optional(self) -> None:
        """An update may change only the description."""
        details = JobDetailsUpdate.model_validate({"JobDescription": "new"})
        assert request_body(details) == {"JobDescription": "new"}

    def test_empty_update_rejected(self) -> None:
        """An update that changes nothing is rejected."""
        assert "at least one field" in _update_error({})

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("AssetTimeOut", 501),
            ("CollectionOnlyTimeOutHours", 1001),
            ("CollectionOnlyTimeOutMins", 60),
            ("JobName", ""),
            ("Standards", []),
        ],
    )
    def test_shared_rules_apply(self, field: str, value: Any) -> None:
        """The create rules on ranges and non-empty values apply to updates too."""
        assert _update_error({field: value}).startswith(f"JobDetails.{field}:")

    def test_notification_rule_applies(self) -> None:
        """An update turning a notification on must give its block."""
        assert "FailureNotification is required" in _update_error({"ShouldSendFailureNotification": True})

    def test_unknown_field_rejected(self) -> None:
        """A misspelt update field is rejected, naming it."""
        assert _update_error({"JobDescripton": "x"}).startswith("JobDetails.JobDescripton: unknown field")

    def test_job_type_is_not_an_update_field(self) -> None:
        """JobType cannot be changed by an update."""
        assert _update_error({"JobType": "CollectionJob"}).startswith("JobDetails.JobType: unknown field")


class TestDescribeValidationError:
    @pytest.mark.parametrize(
        ("details", "field"),
        [
            ({"JobName": 12345}, "JobDetails.JobName"),
            ({"AssetTimeOut": CANARY}, "JobDetails.AssetTimeOut"),
            ({"Standards": [CANARY]}, "JobDetails.Standards.0"),
            ({"AssetsResolutionInfo": [{"Id": CANARY, "Type": "t"}]}, "JobDetails.AssetsResolutionInfo.0.Id"),
            ({"Schedule": {"StartDate": CANARY}}, "JobDetails.Schedule.StartDate"),
            ({"Schedule": {"EndJobRunTimeInterval": CANARY}}, "JobDetails.Schedule.EndJobRunTimeInterval"),
            ({"Schedule": {"RunNow": CANARY}}, "JobDetails.Schedule.RunNow"),
            ({"ShouldSendSuccessNotification": CANARY}, "JobDetails.ShouldSendSuccessNotification"),
            ({"SuccessNotification": CANARY}, "JobDetails.SuccessNotification"),
            ({CANARY: CANARY}, f"JobDetails.{CANARY}"),
        ],
    )
    def test_names_the_field_never_the_value(self, details: dict[str, Any], field: str) -> None:
        """The message starts with the field's path and never repeats the bad value."""
        message = _create_error(_create(**details))
        assert message.startswith(f"{field}: ")
        assert CANARY not in message.removeprefix(f"{field}: ")
        assert "12345" not in message

    def test_job_type_value_not_echoed(self) -> None:
        """A wrong JobType is named but its value is not repeated."""
        message = _create_error({**_create(), "JobType": CANARY})
        assert message.startswith("JobType: ") and CANARY not in message

    def test_prefix(self) -> None:
        """A prefix is put before the field path."""
        exc = _validation_error(JobDetailsUpdate, {"AssetTimeOut": 0})
        assert describe_validation_error(exc, prefix="spec.yaml").startswith("spec.yaml.AssetTimeOut:")

    def test_unchanged_input(self) -> None:
        """Validating a body does not modify the caller's dict."""
        body = _create(ShouldSendSuccessNotification="true", SuccessNotification={"ToEmailAddress": "a@b"})
        before = copy.deepcopy(body)
        CreateJobRequest.model_validate(body)
        assert body == before
