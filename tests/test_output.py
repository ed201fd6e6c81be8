"""Tests of `-o table`: status names, local times, durations, and cells hostile data cannot abuse."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from ccs_exporter.cli.output import (
    MAX_CELL,
    duration,
    jobs_table,
    json_text,
    local_time,
    render,
    runs_table,
    scrubbed,
    status_name,
)
from ccs_exporter.models import Job, JobRuns

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@pytest.fixture
def india(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The machine's local zone is Asia/Kolkata (UTC+05:30, no daylight saving)."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def rows_of(text: str) -> list[list[str]]:
    """The table's lines split on runs of two or more spaces (how a reader sees the columns)."""
    import re

    return [re.split(r" {2,}", line) for line in text.splitlines() if line]


class TestLocalTime:
    def test_shown_in_the_local_zone(self, india: None) -> None:
        """A UTC instant is shown as the local wall-clock time with the zone's name."""
        moment = datetime(2018, 9, 20, 5, 44, 42, tzinfo=timezone.utc)
        assert local_time(moment) == "2018-09-20 11:14:42 IST"

    def test_none_is_a_dash(self) -> None:
        """No time (a job that never ran) is a dash, never year 1 or 1970."""
        assert local_time(None) == "-"


class TestDuration:
    @pytest.mark.parametrize(
        ("seconds", "shown"),
        [
            (None, "-"),
            (0, "0s"),
            (0.4, "<1s"),
            (8, "8s"),
            (59.6, "1m 00s"),
            (245, "4m 05s"),
            (3725, "1h 02m 05s"),
            (86400 * 3 + 4 * 3600 + 5 * 60 + 9, "3d 04h 05m"),
        ],
    )
    def test_readable(self, seconds: float | None, shown: str) -> None:
        """Seconds become the largest units that matter, zero-padded after the first."""
        assert duration(seconds) == shown


class TestStatusName:
    def test_documented_and_unknown_codes(self) -> None:
        """Documented codes become names; any other code stays visible as a code."""
        assert [status_name(code) for code in (0, 2, 4, 5, 7)] == [
            "none",
            "executing",
            "completed",
            "faulted",
            "aborted",
        ]
        assert status_name(9) == "code 9"


class TestRunsTable:
    def test_docs_sample(self, india: None) -> None:
        """The jobruns sample shows as a faulted 8-second run, in local time, with its message counted."""
        text = runs_table(JobRuns.model_validate(fixture("jobruns.json")))
        header, row = rows_of(text)[1:]
        assert header == ["RUN ID", "STATUS", "STARTED", "ENDED", "DURATION", "MESSAGES"]
        assert row == [
            "413e6d92-6de0-4a89-8752-149270dd4369",
            "faulted",
            "2018-09-20 11:14:34 IST",
            "2018-09-20 11:14:42 IST",
            "8s",
            "1 error",
        ]
        assert text.startswith("1 run(s) in total, 1 shown")

    def test_messages_table(self, india: None) -> None:
        """With messages, each message is a row with its time, category, asset and text."""
        text = runs_table(JobRuns.model_validate(fixture("jobruns.json")), messages=True)
        message_rows = rows_of(text.split("\n\n")[1])
        assert message_rows[0] == ["RUN ID", "TIME", "CATEGORY", "ASSET", "MESSAGE"]
        assert message_rows[1][1:4] == ["2021-10-19 17:31:14 IST", "Error", "<Domain name>\\<IP Address>"]
        assert message_rows[1][4].startswith(
            "Windows Data Collector: query returned with message(s). The cred"
        )

    def test_running_and_odd_runs(self, india: None) -> None:
        """A run still executing has no end or duration; an unknown status code stays visible."""
        runs = JobRuns.model_validate(
            {
                "TotalJobRuns": 5,
                "JobStatusInfo": [
                    {
                        "JobRunID": "a",
                        "Status": 2,
                        "JobStartTime": "2024-03-01T10:00:00Z",
                        "JobEndTime": None,
                    },
                    {"JobRunID": "b", "Status": 9, "JobStartTime": "2024-02-01T10:00:00Z", "MessageCount": 4},
                ],
            }
        )
        rows = rows_of(runs_table(runs))
        assert rows[0] == ["5 run(s) in total, 2 shown"]
        assert rows[2] == ["a", "executing", "2024-03-01 15:30:00 IST", "-", "-", "-"]
        assert rows[3][:2] == ["b", "code 9"] and rows[3][-1] == "4 (--messages lists them)"


class TestJobsTable:
    def test_docs_sample(self, india: None) -> None:
        """A job that never ran shows dashes for its last run, and the next run its schedule gives."""
        job = Job.model_validate(fixture("search_job_by_id.json"))
        now = datetime(2018, 12, 1, tzinfo=timezone.utc)
        header, row = rows_of(jobs_table([job], now))
        assert header == ["JOB ID", "NAME", "TYPE", "OWNER", "LAST RUN", "STATUS", "NEXT RUN"]
        # Every 50 days from 2018-11-18 21:14:27 +05:30.
        assert row == [
            "23c59087-f3d4-4e05-a39e-3440c58e58fb",
            "CreateJob_FreshCollectionEvaluation",
            "CHAINED_EVALUATIONJOB",
            "<name>",
            "-",
            "none",
            "2019-01-07 21:14:27 IST",
        ]

    def test_job_without_schedule(self) -> None:
        """A job without configuration details has no next run."""
        job = Job.model_validate(fixture("job_without_config.json"))
        row = rows_of(jobs_table([job], datetime.now(timezone.utc)))[1]
        assert row[-1] == "-"

    def test_next_run_moves_with_now(self) -> None:
        """The next run shown is the first occurrence after now, not a fixed date."""
        job = Job.model_validate(fixture("search_job_by_id.json"))
        first = rows_of(jobs_table([job], datetime(2018, 12, 1, tzinfo=timezone.utc)))[1][-1]
        later = rows_of(jobs_table([job], datetime(2018, 12, 1, tzinfo=timezone.utc) + timedelta(days=50)))[
            1
        ][-1]
        assert first != later


class TestHostileCells:
    """CCS text cannot drive the terminal or break the columns."""

    @pytest.mark.parametrize(
        "name",
        [
            "\x1b[2J\x1b[31mcleared",
            "two\nlines",
            "carriage\rreturn",
            "bidi \u202eevil\u202c",
            "c1 \x9b31m csi",
            "bell\x07",
        ],
    )
    def test_control_characters_escaped(self, name: str) -> None:
        """Escape sequences, newlines, C1 controls and bidi overrides never reach the terminal raw."""
        job = Job.model_validate(
            {"JobProperties": {"JobID": "23c59087-f3d4-4e05-a39e-3440c58e58fb", "Name": name}}
        )
        text = jobs_table([job], datetime.now(timezone.utc))
        assert len(text.splitlines()) == 2
        assert all(char.isprintable() for char in text.replace("\n", ""))

    @pytest.mark.parametrize(("name", "shown"), [("two\nlines", "two\\nlines"), ("a\tb\rc", "a\\tb\\rc")])
    def test_line_breaks_shown_escaped(self, name: str, shown: str) -> None:
        """A newline in a job name shows as \\n (as the docs say controls are escaped), not as a space."""
        job = Job.model_validate(
            {"JobProperties": {"JobID": "23c59087-f3d4-4e05-a39e-3440c58e58fb", "Name": name}}
        )
        assert shown in jobs_table([job], datetime.now(timezone.utc))

    def test_long_values_cut(self) -> None:
        """A 10,000-character job name is cut, so the other columns stay on screen."""
        job = Job.model_validate(
            {"JobProperties": {"JobID": "23c59087-f3d4-4e05-a39e-3440c58e58fb", "Name": "x" * 10_000}}
        )
        row = rows_of(jobs_table([job], datetime.now(timezone.utc)))[1]
        assert len(row[1]) == MAX_CELL and row[1].endswith("...")

    def test_columns_line_up(self) -> None:
        """Each column starts at the same position on every line."""
        text = render(["A", "BB", "C"], [["long value", "x", "1"], ["s", "much longer", "2"]])
        lines = text.splitlines()
        assert {line.index(cell) for line, cell in zip(lines, ["BB", "x", "much longer"], strict=True)} == {
            12
        }
        assert {line.rindex(cell) for line, cell in zip(lines, ["C", "1", "2"], strict=True)} == {25}


class TestJsonText:
    def test_terminal_controls_escaped_same_json(self) -> None:
        """C1 controls, bidi overrides and lone surrogates are escaped; the JSON reads back the same."""
        payload = {"Name": "a\x9b2J b\u202ec \udcff d\x1b[31m", "Plain": "Zürich ✓"}
        text = json_text(payload)
        assert all(char.isprintable() or char in "\n " for char in text)
        text.encode("utf-8")  # printable to any UTF-8 terminal
        assert json.loads(text)["Name"] == payload["Name"]
        assert "Zürich ✓" in text  # ordinary non-ASCII stays readable


class TestScrubbed:
    def test_secrets_removed_model_kept(self) -> None:
        """Secrets in a description become [REDACTED]; the same model type comes back, other fields kept."""
        job = Job.model_validate(fixture("search_job_by_id.json"))
        assert job.JobConfigDetails is not None
        job.JobConfigDetails.JobDescription = "ops pw Tr0ub4dor-x9 and token=abc123def"
        clean = scrubbed(job, ["Tr0ub4dor-x9"])
        assert isinstance(clean, Job) and clean.JobConfigDetails is not None
        assert clean.JobConfigDetails.JobDescription == "ops pw [REDACTED] and token=[REDACTED]"
        assert clean.JobProperties == job.JobProperties
