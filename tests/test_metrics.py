"""Metric semantics: what a run history becomes in the exposition, pinned case by case."""

from __future__ import annotations

import gzip
import platform
import subprocess
from dataclasses import replace
from datetime import datetime, timezone

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ccs_exporter.exposition.families import MAX_LABEL_LENGTH, TRUNCATION_MARKER, label_value
from ccs_exporter.exposition.formats import Format
from ccs_exporter.exposition.live import LiveMetrics, RequestStats
from ccs_exporter.exposition.renderer import ExpositionStore, render_snapshot
from ccs_exporter.models import JobRuns
from ccs_exporter.polling.snapshot import JobSnapshot, JobState, PollSnapshot, RunSummary, summarize_runs

JOB = "23c59087-f3d4-4e05-a39e-3440c58e58fb"


def _run(
    status: int, start: str | None, end: str | None, messages: list[str] | None = None
) -> dict[str, object]:
    return {
        "JobRunID": None,
        "Status": status,
        "JobStartTime": start,
        "JobEndTime": end,
        "JobMessages": [{"Category": category, "Message": "m"} for category in (messages or [])],
    }


def _runs(*runs: dict[str, object], total: int | None = None) -> JobRuns:
    return JobRuns.model_validate(
        {"JobID": JOB, "TotalJobRuns": total if total is not None else len(runs), "JobStatusInfo": list(runs)}
    )


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def _snapshot(*jobs: JobState, up: bool = True) -> PollSnapshot:
    return PollSnapshot(
        taken_at=2_000_000_000.0,
        jobs=jobs,
        up=up,
        last_success_at=2_000_000_000.0 if up else None,
        cycle_seconds=0.5,
        cycles=3,
    )


def _job(
    runs: RunSummary | None, *, name: str = "Nightly PCI", status: int = 4, read_at: float = 2e9 - 30
) -> JobState:
    data = JobSnapshot(
        job_id=JOB,
        name=name,
        job_type="CHAINED_EVALUATIONJOB",
        owner="CORP\\alice",
        is_system=False,
        last_run_status=status,
        modified_seconds=1_900_000_000.0,
        runs=runs,
    )
    return JobState(JOB, data, poll_success=True, read_at=read_at)


def _samples(exposition: bytes) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(exposition.decode("utf-8")):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def _value(exposition: bytes, name: str, **labels: str) -> float | None:
    return _samples(exposition).get((name, frozenset(labels.items())))


class TestSummarizeRuns:
    """Deriving the metric figures from a jobruns window."""

    def test_mixed_offsets_make_the_documented_eight_second_run(self) -> None:
        """The docs' sample pair (+05:30 start, naive end) is an 8-second run: naive means UTC."""
        summary = summarize_runs(_runs(_run(5, "2018-09-20T11:14:34+05:30", "2018-09-20T05:44:42")))
        assert summary.duration_seconds == 8.0
        assert summary.end_seconds == _ts("2018-09-20T05:44:42")
        assert summary.start_seconds == _ts("2018-09-20T05:44:34")

    def test_seven_digit_fractions_and_negative_offsets_parse(self) -> None:
        """A .NET timestamp with 7 fractional digits and a -08:00 offset lands on the right UTC second."""
        summary = summarize_runs(
            _runs(_run(4, "2018-11-18T02:14:27.5120788-08:00", "2018-11-18T10:15:27.5120788"))
        )
        assert summary.start_seconds == pytest.approx(_ts("2018-11-18T10:14:27.512078"))
        assert summary.duration_seconds == pytest.approx(60.0)

    def test_never_run_job_has_no_times(self) -> None:
        """A job without runs has no start, end, duration or success, and status none."""
        summary = summarize_runs(_runs(total=0))
        assert (summary.start_seconds, summary.end_seconds, summary.duration_seconds) == (None, None, None)
        assert summary.last_success_seconds is None
        assert summary.status_code == 0

    def test_running_job_reports_its_previous_finished_run(self) -> None:
        """While a run executes, start is the new run's, end and duration are the latest finished run's."""
        summary = summarize_runs(
            _runs(
                _run(2, "2026-01-02T10:00:00Z", None),
                _run(4, "2026-01-01T10:00:00Z", "2026-01-01T10:05:00Z"),
            )
        )
        assert summary.running
        assert summary.status_code == 2
        assert summary.start_seconds == _ts("2026-01-02T10:00:00")
        assert summary.end_seconds == _ts("2026-01-01T10:05:00")
        assert summary.duration_seconds == 300.0

    def test_consecutive_failures_count_back_to_the_last_success(self) -> None:
        """Faulted and aborted runs since the latest completed one count; older failures do not."""
        summary = summarize_runs(
            _runs(
                _run(5, "2026-01-05T10:00:00Z", "2026-01-05T10:01:00Z"),
                _run(7, "2026-01-04T10:00:00Z", "2026-01-04T10:01:00Z"),
                _run(5, "2026-01-03T10:00:00Z", "2026-01-03T10:01:00Z"),
                _run(4, "2026-01-02T10:00:00Z", "2026-01-02T10:01:00Z"),
                _run(5, "2026-01-01T10:00:00Z", "2026-01-01T10:01:00Z"),
            )
        )
        assert summary.consecutive_failures == 3
        assert summary.last_success_seconds == _ts("2026-01-02T10:01:00")

    def test_runs_are_ordered_by_start_not_by_position(self) -> None:
        """The newest run is found by start time even when CCS lists it last."""
        summary = summarize_runs(
            _runs(
                _run(4, "2026-01-01T10:00:00Z", "2026-01-01T10:01:00Z"),
                _run(5, "2026-01-02T10:00:00Z", "2026-01-02T10:01:00Z", ["Error", "Error", "Warning"]),
            )
        )
        assert summary.status_code == 5
        assert dict(summary.messages) == {"error": 2, "warning": 1, "information": 0}

    def test_known_success_survives_a_window_without_one(self) -> None:
        """A success seen in an earlier poll is kept when the window now holds only failures."""
        summary = summarize_runs(_runs(_run(5, "2026-01-05T10:00:00Z", "2026-01-05T10:01:00Z")), 1234.0)
        assert summary.last_success_seconds == 1234.0

    def test_message_categories_are_lower_case(self) -> None:
        """Categories are folded to lower case and a missing one is 'unknown'."""
        summary = summarize_runs(
            _runs(_run(4, "2026-01-01T10:00:00Z", "2026-01-01T10:01:00Z", ["INFORMATION", "Custom Thing"]))
        )
        messages = dict(summary.messages)
        assert messages["information"] == 1
        assert messages["custom thing"] == 1

    def test_rare_categories_beyond_ten_are_counted_as_other(self) -> None:
        """Past ten other categories the most frequent stay (ties: first seen); the rest sum to 'other'."""
        categories = ["Error", "Warning", *(f"kind {n}" for n in range(15)), "kind 14", "kind 14", "Other"]
        summary = summarize_runs(_runs(_run(5, "2026-01-01T10:00:00Z", "2026-01-01T10:01:00Z", categories)))
        messages = dict(summary.messages)
        expected_kinds = {"kind 14", *(f"kind {n}" for n in range(9))}
        assert set(messages) == {"error", "warning", "information", "other", *expected_kinds}
        assert messages["kind 14"] == 3
        assert messages["other"] == 1 + 5  # CCS's own "Other" and kinds 9-13
        assert sum(messages.values()) == len(categories)

    def test_ten_other_categories_need_no_other_series(self) -> None:
        """With ten other categories or fewer, each keeps its own series and no 'other' appears."""
        categories = [f"kind {n}" for n in range(10)]
        summary = summarize_runs(_runs(_run(4, "2026-01-01T10:00:00Z", "2026-01-01T10:01:00Z", categories)))
        assert "other" not in dict(summary.messages)
        assert len(summary.messages) == 13


class TestRenderSnapshot:
    """The job part of /metrics."""

    def test_state_set_has_exactly_one_state_at_one(self) -> None:
        """The status state set has eight series, one of them 1."""
        summary = summarize_runs(_runs(_run(5, "2026-01-01T10:00:00Z", "2026-01-01T10:01:00Z")))
        text = render_snapshot(_snapshot(_job(summary)))
        states = {
            labels: value
            for (name, labels), value in _samples(text).items()
            if name == "ccs_job_last_run_status"
        }
        assert len(states) == 8
        assert [dict(labels)["status"] for labels, value in states.items() if value == 1] == ["faulted"]
        assert _value(text, "ccs_job_last_run_status_code", job_id=JOB) == 5

    def test_sparse_status_has_only_the_current_state(self) -> None:
        """With the sparse status metric a job has one status series, its current state at 1."""
        summary = summarize_runs(_runs(_run(5, "2026-01-01T10:00:00Z", "2026-01-01T10:01:00Z")))
        text = render_snapshot(_snapshot(_job(summary)), sparse_status=True)
        states = {
            dict(labels)["status"]: value
            for (name, labels), value in _samples(text).items()
            if name == "ccs_job_last_run_status"
        }
        assert states == {"faulted": 1}
        assert _value(text, "ccs_job_last_run_status_code", job_id=JOB) == 5

    def test_sparse_status_of_an_unknown_code_has_no_series(self) -> None:
        """A status outside 0-7 has no state to show in sparse mode: only the raw code remains."""
        summary = summarize_runs(_runs(_run(9, "2026-01-01T10:00:00Z", "2026-01-01T10:01:00Z")))
        text = render_snapshot(_snapshot(_job(summary)), sparse_status=True)
        assert not [name for name, _ in _samples(text) if name == "ccs_job_last_run_status"]
        assert _value(text, "ccs_job_last_run_status_code", job_id=JOB) == 9

    def test_sparse_status_saves_seven_series_per_job(self) -> None:
        """1,000 jobs: sparse has 7,000 fewer series, all status series at 0; no other series changes."""
        jobs = []
        for index in range(1000):
            job = _job(summarize_runs(_runs(_run(index % 8, "2026-01-01T10:00:00Z", None))), status=index % 8)
            assert job.data is not None
            job_id = f"00000000-0000-4000-8000-{index:012d}"
            jobs.append(
                JobState(job_id, replace(job.data, job_id=job_id), poll_success=True, read_at=job.read_at)
            )
        full = _samples(render_snapshot(_snapshot(*jobs)))
        sparse = _samples(render_snapshot(_snapshot(*jobs), sparse_status=True))
        assert len(full) - len(sparse) == 7000
        assert {
            key: value for key, value in full.items() if value == 1 or key[0] != "ccs_job_last_run_status"
        } == sparse

    def test_unknown_status_code_is_kept_raw_with_no_state_set(self) -> None:
        """A status outside 0-7 shows as the raw code and no state at 1."""
        summary = summarize_runs(_runs(_run(9, "2026-01-01T10:00:00Z", "2026-01-01T10:01:00Z")))
        text = render_snapshot(_snapshot(_job(summary)))
        assert _value(text, "ccs_job_last_run_status_code", job_id=JOB) == 9
        ones = [v for (n, _), v in _samples(text).items() if n == "ccs_job_last_run_status" and v == 1]
        assert ones == []

    def test_never_run_job_has_no_time_series_but_has_info(self) -> None:
        """A job that never ran exposes info and status none, never a zero or year-1 timestamp."""
        text = render_snapshot(_snapshot(_job(summarize_runs(_runs(total=0)), status=0)))
        names = {name for name, _ in _samples(text)}
        for absent in (
            "ccs_job_last_run_start_timestamp_seconds",
            "ccs_job_last_run_end_timestamp_seconds",
            "ccs_job_last_run_duration_seconds",
            "ccs_job_last_success_timestamp_seconds",
        ):
            assert absent not in names
        assert _value(text, "ccs_job_last_run_status", job_id=JOB, status="none") == 1
        assert _value(text, "ccs_job_runs", job_id=JOB) == 0

    def test_properties_only_before_runs_are_read_shows_status_from_properties(self) -> None:
        """Without a run summary the status comes from LastRunStatus and no run series appear."""
        text = render_snapshot(_snapshot(_job(None, status=7)))
        assert _value(text, "ccs_job_last_run_status", job_id=JOB, status="aborted") == 1
        assert _value(text, "ccs_job_runs", job_id=JOB) is None

    def test_hostile_names_are_escaped(self) -> None:
        """Quotes, backslashes, newlines and non-ASCII in a job name survive a round trip."""
        name = 'Prüfung "PCI" \\\\ nightly\nsecond line'
        text = render_snapshot(_snapshot(_job(None, name=name)))
        info = [dict(labels) for (n, labels), _ in _samples(text).items() if n == "ccs_job_info"]
        assert info[0]["job_name"] == name
        assert info[0]["is_system"] == "false"

    def test_long_label_values_are_truncated_with_a_marker(self) -> None:
        """A huge job name is cut to the label limit and says so."""
        text = render_snapshot(_snapshot(_job(None, name="x" * 10_000)))
        info = [dict(labels) for (n, labels), _ in _samples(text).items() if n == "ccs_job_info"]
        assert len(info[0]["job_name"]) == MAX_LABEL_LENGTH
        assert info[0]["job_name"].endswith(TRUNCATION_MARKER)

    def test_lone_surrogates_do_not_break_the_exposition(self) -> None:
        """A name holding an unpaired surrogate (legal in JSON) still renders as UTF-8."""
        assert label_value("bad \ud800 name").encode("utf-8")

    def test_absurd_numbers_are_clamped(self) -> None:
        """A 400-digit TotalJobRuns renders as a finite number instead of crashing."""
        summary = summarize_runs(_runs(total=10**400))
        text = render_snapshot(_snapshot(_job(summary)))
        value = _value(text, "ccs_job_runs", job_id=JOB)
        assert value is not None and value > 1e299

    def test_failed_job_keeps_values_and_reports_their_age(self) -> None:
        """A job whose poll failed keeps its last good values, poll_success 0 and the data's age."""
        summary = summarize_runs(_runs(_run(4, "2026-01-01T10:00:00Z", "2026-01-01T10:01:00Z")))
        ok = _job(summary, read_at=2e9 - 600)
        failed = JobState(JOB, ok.data, poll_success=False, error="timeout", read_at=ok.read_at)
        text = render_snapshot(_snapshot(failed))
        assert _value(text, "ccs_job_poll_success", job_id=JOB) == 0
        assert _value(text, "ccs_job_data_age_seconds", job_id=JOB) == 600
        assert _value(text, "ccs_job_last_success_timestamp_seconds", job_id=JOB) == _ts(
            "2026-01-01T10:01:00"
        )

    def test_gone_job_has_only_poll_success(self) -> None:
        """A job that answered 404 exposes only ccs_job_poll_success 0."""
        text = render_snapshot(_snapshot(JobState(JOB, None, poll_success=False, error="not_found")))
        job_names = {name for name, labels in _samples(text) if ("job_id", JOB) in labels}
        assert job_names == {"ccs_job_poll_success"}

    def test_exporter_health_series(self) -> None:
        """ccs_up, last success, cycle duration and cycle count are present."""
        text = render_snapshot(_snapshot(up=False))
        assert _value(text, "ccs_up") == 0
        assert _value(text, "ccs_poll_duration_seconds") == 0.5
        assert _value(text, "ccs_poll_cycles_total") == 3
        assert _value(text, "ccs_last_poll_success_timestamp_seconds") is None


class TestExpositionStore:
    """The rendered bytes the server hands out."""

    @pytest.mark.parametrize("fmt", list(Format))
    def test_gzip_and_plain_hold_the_same_exposition(self, fmt: Format) -> None:
        """In each format, the pre-compressed body decompresses to the plain one."""
        store = ExpositionStore()
        assert store.current is None
        summary = summarize_runs(_runs(_run(5, "2026-01-01T10:00:00Z", "2026-01-01T10:01:00Z", ["Error"])))
        store.publish(_snapshot(_job(summary)))
        assert store.current is not None
        plain = b"".join(store.current.body(fmt))
        assert gzip.decompress(b"".join(store.current.body(fmt, gzipped=True))) == plain
        assert b"ccs_job_last_run_status{" in plain


class TestLiveMetrics:
    """The per-scrape part of /metrics."""

    def test_requests_are_counted_by_endpoint_and_code(self) -> None:
        """Observed attempts appear in ccs_api_requests_total and the latency histogram."""
        stats = RequestStats()
        stats.observe("job", "200", 0.02)
        stats.observe("job", "200", 0.2)
        stats.observe("token", "timeout", 30.0)
        text = LiveMetrics(stats).render()
        assert _value(text, "ccs_api_requests_total", endpoint="job", code="200") == 2
        assert _value(text, "ccs_api_requests_total", endpoint="token", code="timeout") == 1
        assert _value(text, "ccs_api_request_duration_seconds_bucket", endpoint="job", le="0.025") == 1
        assert _value(text, "ccs_api_request_duration_seconds_count", endpoint="job") == 2

    def test_build_info_names_the_exporter_and_python_versions(self) -> None:
        """ccs_exporter_build_info carries the exporter's version and the running Python's."""
        text = LiveMetrics(RequestStats()).render()
        version = __import__("ccs_exporter").__version__
        python = platform.python_version()
        assert _value(text, "ccs_exporter_build_info", version=version, python_version=python) == 1

    def test_python_collectors_are_registered_as_in_client_python(self) -> None:
        """The platform and garbage collector families of client_python's default registry are served."""
        text = LiveMetrics(RequestStats()).render()
        names = {name for name, _ in _samples(text)}
        assert {"python_gc_objects_collected_total", "python_gc_collections_total", "python_info"} <= names
        info = {dict(labels)["version"] for (name, labels) in _samples(text) if name == "python_info"}
        assert info == {platform.python_version()}
        assert "process_cpu_seconds_total" in names


@pytest.mark.integration
class TestPromtoolCheckMetrics:
    """promtool, Prometheus' own linter, finds nothing in our exposition."""

    @pytest.mark.parametrize("sparse_status", [False, True])
    def test_full_exposition_passes_promtool(self, require_tool, sparse_status: bool) -> None:  # type: ignore[no-untyped-def]
        """A snapshot with every kind of job plus the live part lints clean, with either status metric."""
        promtool = require_tool("promtool")
        running = summarize_runs(
            _runs(
                _run(2, "2026-01-02T10:00:00Z", None, ["Error"]),
                _run(4, "2026-01-01T10:00:00Z", "2026-01-01T10:05:00Z"),
            )
        )
        stats = RequestStats()
        stats.observe("job", "200", 0.02)
        snapshot = _snapshot(_job(running, name='a "b"\nc'))
        body = LiveMetrics(stats).render() + render_snapshot(snapshot, sparse_status=sparse_status)
        result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=60)
        assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
        assert result.stdout.strip() == b"" and result.stderr.strip() == b""
