"""End to end: simulator -> exporter -> a real Prometheus with our rules -> the alerts fire.

Everything listens on 127.0.0.1 on free ports; Prometheus keeps its config and TSDB in a temp dir and is
stopped by its own PID. Prometheus scrapes and evaluates every second, so the only delay is the chain
itself: simulator -> exporter poll (1 s) -> scrape (1 s) -> rule evaluation (1 s). The simulator runs
live: its samples stand at start as at their capture instant, so one job has missed its schedule and one
run is past its run-time limit, whenever the test runs. Prometheus loads the shipped rules with only the
`for` of CcsJobRunOverTimeLimit shortened (5 minutes would make the test wait 5 minutes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import free_port
from test_dashboard import (
    EXPORTER_METRICS,
    RECORDED_METRICS,
    RUN_STATES,
    dashboard_queries,
    load_dashboard,
    metric_names,
)

from ccs_exporter.simulator import Simulator

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

REPO_ROOT = Path(__file__).resolve().parent.parent
RULES_FILE = REPO_ROOT / "prometheus" / "ccs-exporter.rules.yml"
# The test's only change to the shipped rules: these alerts wait this long instead of their `for`.
SHORT_FOR = {"CcsJobRunOverTimeLimit": "2s"}
# The sample jobs that deserve the schedule alerts (README, "The CCS simulator"): the nightly job the
# scheduler stopped starting, and the DMZ collection whose run hangs past its 1 h 30 limit.
MISSED_SCHEDULE_JOB = "3f2a7c41-8e5b-4d09-a6c3-1b7e9d2f4a01"
OVER_TIME_LIMIT_JOB = "5e7b9c14-3a2d-4b8f-a1e6-7c0d9f8e4d04"
SCHEDULE_ALERT_BOUND_SECONDS = 30.0
# The promise to users: a faulted run pages within a minute of CCS recording it.
FIRING_BOUND_SECONDS = 60.0
STARTUP_BOUND_SECONDS = 30.0
FAULTED = 5
# Metrics that only exist with an audit log configured (this stack has none).
AUDIT_METRICS = frozenset({"ccs_audit_records_total", "ccs_audit_write_errors_total"})
# Local HTTP only: never through a proxy from the environment.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with _HTTP.open(url, timeout=timeout) as response:
            return int(response.status), response.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


def _wait_for(what: str, check: Callable[[], bool], bound: float, process: subprocess.Popen[str]) -> float:
    """Seconds until ``check()`` holds; fails after ``bound`` seconds or when ``process`` exits."""
    started = time.monotonic()
    while time.monotonic() - started < bound:
        if process.poll() is not None:
            pytest.fail(f"{what}: process exited with {process.returncode}: {_tail(process)}")
        try:
            if check():
                return time.monotonic() - started
        except (OSError, ValueError):
            pass
        time.sleep(0.25)
    pytest.fail(f"{what}: not within {bound:.0f} s")


def _tail(process: subprocess.Popen[str]) -> str:
    if process.poll() is None or process.stderr is None:
        return ""
    return process.stderr.read()[-2000:]


def _stop(process: subprocess.Popen[str]) -> None:
    """Stops one process we started, by its PID: SIGTERM, then SIGKILL after 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@dataclass(frozen=True)
class Stack:
    """The running chain: the simulator, the exporter's base URL and Prometheus' base URL."""

    simulator: Simulator
    exporter_url: str
    prometheus_url: str

    def api(self, path: str, **params: str) -> Any:
        """A Prometheus HTTP API call's ``data``; fails the test on an error status."""
        url = f"{self.prometheus_url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        status, body = _get(url)
        payload = json.loads(body)
        assert status == 200 and payload["status"] == "success", f"{path} {params}: {status} {body[:500]}"
        return payload["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector."""
        data = self.api("/api/v1/query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result


def rules_with_short_for(target: Path) -> Path:
    """The shipped rules, with only the ``for`` of the alerts in ``SHORT_FOR`` changed, in ``target``."""
    document = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    changed = set()
    for group in document["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") in SHORT_FOR:
                rule["for"] = SHORT_FOR[rule["alert"]]
                changed.add(rule["alert"])
    assert changed == set(SHORT_FOR), f"not in the shipped rules: {set(SHORT_FOR) - changed}"
    target.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return target


@pytest.fixture(scope="module")
def stack(require_tool: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Simulator, exporter (`python -m ccs_exporter serve`) and Prometheus with our rules on 127.0.0.1."""
    prometheus = require_tool("prometheus")
    work_dir = tmp_path_factory.mktemp("prometheus")
    with Simulator(port=0, live=True) as simulator:
        exporter_port = free_port()
        exporter_url = f"http://127.0.0.1:{exporter_port}"
        exporter = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ccs_exporter",
                "serve",
                "--url",
                simulator.url,
                "--username",
                simulator.username,
                "--job-ids",
                ",".join(simulator.job_ids),
                "--listen-address",
                f"127.0.0.1:{exporter_port}",
                "--poll-interval",
                "1",
            ],
            env={
                **os.environ,
                "CCS_EXPORTER_PASSWORD": simulator.password,
                "CCS_EXPORTER_LOG_LEVEL": "warning",
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        processes = [exporter]
        try:
            _wait_for(
                "exporter /readyz",
                lambda: _get(f"{exporter_url}/readyz")[0] == 200,
                STARTUP_BOUND_SECONDS,
                exporter,
            )
            prometheus_port = free_port()
            config = {
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rules_with_short_for(work_dir / "rules.yml"))],
                "scrape_configs": [
                    {
                        "job_name": "ccs-exporter",
                        "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}],
                    }
                ],
            }
            config_file = work_dir / "prometheus.yml"
            config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
            server = subprocess.Popen(
                [
                    prometheus,
                    f"--config.file={config_file}",
                    f"--storage.tsdb.path={work_dir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{prometheus_port}",
                    "--log.level=warn",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            processes.append(server)
            stack = Stack(simulator, exporter_url, f"http://127.0.0.1:{prometheus_port}")
            _wait_for(
                "prometheus /-/ready",
                lambda: _get(f"{stack.prometheus_url}/-/ready")[0] == 200,
                STARTUP_BOUND_SECONDS,
                server,
            )
            _wait_for(
                "first scrape of every watched job",
                lambda: (
                    len(stack.query("ccs_job_info")) == len(simulator.job_ids)
                    and stack.query("ccs_up")[0]["value"][1] == "1"
                ),
                STARTUP_BOUND_SECONDS,
                server,
            )
            yield stack
        finally:
            for process in reversed(processes):
                _stop(process)


def _firing(stack: Stack, alertname: str) -> list[dict[str, Any]]:
    alerts: list[dict[str, Any]] = stack.api("/api/v1/alerts")["alerts"]
    return [a for a in alerts if a["labels"]["alertname"] == alertname and a["state"] == "firing"]


class TestFaultAlert:
    """A run that faults in CCS becomes a firing CcsJobRunFaulted alert in Prometheus."""

    @pytest.mark.integration
    def test_fault_fires_within_bound(
        self, stack: Stack, record_property: Callable[[str, object], None]
    ) -> None:
        """Within 60 s of a faulted run, CcsJobRunFaulted fires for that job, named, and not before."""
        completed = {
            s["metric"]["job_id"] for s in stack.query('ccs_job_last_run_status{status="completed"} == 1')
        }
        completed.discard(MISSED_SCHEDULE_JOB)  # a new run would end its missed schedule
        assert completed, "the simulator should start with some completed jobs"
        job_id = sorted(completed)[0]
        (info,) = stack.query(f'ccs_job_info{{job_id="{job_id}"}}')
        job_name = info["metric"]["job_name"]
        assert job_id not in {a["labels"]["job_id"] for a in _firing(stack, "CcsJobRunFaulted")}

        stack.simulator.finish_run(job_id, status=FAULTED, messages={"Error": 2})
        started = time.monotonic()
        alert: dict[str, Any] | None = None
        while time.monotonic() - started < FIRING_BOUND_SECONDS:
            alert = next(
                (a for a in _firing(stack, "CcsJobRunFaulted") if a["labels"]["job_id"] == job_id), None
            )
            if alert is not None:
                break
            time.sleep(0.25)
        elapsed = time.monotonic() - started
        record_property("seconds_to_firing", round(elapsed, 2))
        print(f"\nCcsJobRunFaulted firing for {job_id} after {elapsed:.1f} s")
        assert alert is not None, (
            f"CcsJobRunFaulted not firing for {job_id} within {FIRING_BOUND_SECONDS:.0f} s"
        )
        assert alert["labels"]["job_name"] == job_name
        assert alert["labels"]["severity"] == "warning"
        assert alert["annotations"]["summary"] == "A CCS job run faulted."
        assert f'"{job_name}" ({job_id}' in alert["annotations"]["description"]
        assert alert["annotations"]["runbook_url"].endswith("docs/runbooks.md#ccsjobrunfaulted")
        (errors,) = stack.query(f'ccs_job_last_run_messages{{job_id="{job_id}", category="error"}}')
        assert errors["value"][1] == "2"

    @pytest.mark.integration
    def test_rules_evaluate_cleanly(self, stack: Stack) -> None:
        """Every rule of ours is loaded and evaluates without error against real exporter data."""
        groups = stack.api("/api/v1/rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        expected = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))["groups"]
        assert len(rules) == sum(len(group["rules"]) for group in expected)
        broken = {rule["name"]: rule.get("lastError") for rule in rules if rule["health"] != "ok"}
        assert not broken

    def test_healthy_exporter_raises_no_exporter_alert(self, stack: Stack) -> None:
        """While the exporter and CCS are fine, no exporter alert is pending or firing."""
        alerts = stack.api("/api/v1/alerts")["alerts"]
        names = {a["labels"]["alertname"] for a in alerts}
        assert not names & {
            "CcsExporterDown",
            "CcsExporterAbsent",
            "CcsExporterCannotReachCcs",
            "CcsJobPollFailing",
        }


class TestOpenMetricsScrape:
    """Prometheus asks for OpenMetrics first and scrapes it cleanly."""

    def test_prometheus_scrapes_openmetrics(self, stack: Stack) -> None:
        """The target is healthy and its metadata has OpenMetrics' info and counter families."""
        (target,) = stack.api("/api/v1/targets")["activeTargets"]
        assert target["health"] == "up" and not target["lastError"]
        metadata = stack.api("/api/v1/metadata")
        assert metadata["ccs_exporter_build"][0]["type"] == "info"  # text 0.0.4 would say a gauge _info
        assert metadata["ccs_job"][0]["type"] == "info"
        assert metadata["ccs_poll_cycles"][0]["type"] == "counter"
        (cycles,) = stack.query("ccs_poll_cycles_total")
        assert float(cycles["value"][1]) >= 1


def _firing_jobs(stack: Stack, alertname: str) -> dict[str, dict[str, Any]]:
    return {alert["labels"]["job_id"]: alert for alert in _firing(stack, alertname)}


class TestScheduleAlerts:
    """The schedule alerts fire for the sample jobs that deserve them, and for no other."""

    def test_test_rules_differ_from_the_shipped_ones_only_in_for(self, stack: Stack) -> None:
        """Prometheus evaluates the shipped expressions; only CcsJobRunOverTimeLimit's `for` is shorter."""
        shipped = {
            rule.get("alert") or rule["record"]: rule
            for group in yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))["groups"]
            for rule in group["rules"]
        }
        loaded = [rule for group in stack.api("/api/v1/rules")["groups"] for rule in group["rules"]]
        assert {rule["name"] for rule in loaded} == set(shipped)
        for rule in loaded:
            formatted = stack.api("/api/v1/format_query", query=rule["query"])
            assert formatted == stack.api("/api/v1/format_query", query=shipped[rule["name"]]["expr"])
            if rule["type"] == "alerting" and rule["name"] not in SHORT_FOR:
                assert rule["duration"] == _seconds(shipped[rule["name"]].get("for", "0s")), rule["name"]

    def test_missed_schedule_fires_for_the_stalled_job_only(self, stack: Stack) -> None:
        """CcsJobMissedSchedule fires for the job 7 h past its occurrence, not for on-time or other jobs."""
        firing = _wait_until_firing(stack, "CcsJobMissedSchedule", MISSED_SCHEDULE_JOB)
        assert set(firing) == {MISSED_SCHEDULE_JOB}
        alert = firing[MISSED_SCHEDULE_JOB]
        assert alert["labels"]["job_name"] == "Nightly CER - Windows servers"
        assert alert["labels"]["severity"] == "critical"
        assert "was due to run 7h 0m" in alert["annotations"]["description"]
        scheduled = {
            s["metric"]["job_id"] for s in stack.query("ccs_job_schedule_last_due_timestamp_seconds")
        }
        assert len(scheduled) >= 5  # on-time scheduled jobs were there to fire on, and did not

    def test_run_over_time_limit_fires_for_the_hung_run_only(self, stack: Stack) -> None:
        """CcsJobRunOverTimeLimit fires for the run 30 min past its limit, not for one within its limit."""
        firing = _wait_until_firing(stack, "CcsJobRunOverTimeLimit", OVER_TIME_LIMIT_JOB)
        assert set(firing) == {OVER_TIME_LIMIT_JOB}
        alert = firing[OVER_TIME_LIMIT_JOB]
        assert alert["labels"]["job_name"] == "Collection - DMZ assets"
        assert "pending or executing for 2h 0m" in alert["annotations"]["description"]
        limits = {s["metric"]["job_id"] for s in stack.query("ccs_job_run_time_limit_seconds")}
        assert len(limits - {OVER_TIME_LIMIT_JOB}) >= 1  # a job within its limit was there, and did not fire

    def test_dashboard_shows_the_missed_occurrence(self, stack: Stack) -> None:
        """The dashboard counts one missed schedule and shows the missed occurrence in that job's row."""
        _wait_until_firing(stack, "CcsJobMissedSchedule", MISSED_SCHEDULE_JOB)
        queries = {where: expr for where, expr in dashboard_queries()}
        (count,) = stack.query(queries["panel 'Missed schedules' target A"])
        assert count["value"][1] == "1"
        missed = stack.query(queries["panel 'All jobs' target I"])
        assert [s["metric"]["job_id"] for s in missed] == [MISSED_SCHEDULE_JOB]
        (due,) = stack.query(f'ccs_job_schedule_last_due_timestamp_seconds{{job_id="{MISSED_SCHEDULE_JOB}"}}')
        assert float(missed[0]["value"][1]) == float(due["value"][1]) * 1000


def _seconds(duration: str) -> float:
    """A Prometheus duration of one unit (``5m``, ``1h``, ``0s``) in seconds."""
    return float(duration[:-1]) * {"s": 1, "m": 60, "h": 3600}[duration[-1]]


def _wait_until_firing(stack: Stack, alertname: str, job_id: str) -> dict[str, dict[str, Any]]:
    """The alert's firing instances by job_id once ``job_id`` fires; fails after the bound."""
    started = time.monotonic()
    while time.monotonic() - started < SCHEDULE_ALERT_BOUND_SECONDS:
        firing = _firing_jobs(stack, alertname)
        if job_id in firing:
            return firing
        time.sleep(0.25)
    pytest.fail(f"{alertname} not firing for {job_id} within {SCHEDULE_ALERT_BOUND_SECONDS:.0f} s")


class TestDashboardAgainstPrometheus:
    """The dashboard's queries run against real data."""

    def test_every_query_runs(self, stack: Stack) -> None:
        """Every panel and annotation query runs as an instant and a range query without error."""
        end = time.time()
        window = {"start": str(end - 60), "end": str(end), "step": "5"}
        failures: list[str] = []
        for where, expr in dashboard_queries():
            for path, params in (
                ("/api/v1/query", {"query": expr}),
                ("/api/v1/query_range", {"query": expr, **window}),
            ):
                status, body = _get(f"{stack.prometheus_url}{path}?{urllib.parse.urlencode(params)}")
                if status != 200 or json.loads(body)["status"] != "success":
                    failures.append(f"{where} ({path}): {status} {body[:300]}")
        assert not failures

    def test_key_panels_show_data(self, stack: Stack) -> None:
        """Jobs by status, durations, CCS requests and latency return series for the simulator's jobs."""
        queries = {where: expr for where, expr in dashboard_queries()}
        for where in (
            "panel 'All jobs' target A",
            "panel 'All jobs' target B",
            "panel 'Run status over time' target A",
            "panel 'Jobs by status' target A",
            "panel 'Run durations' target A",
            "panel 'CCS requests' target A",
            "panel 'CCS reachable (ccs_up)' target A",
            "panel 'Time since last success' target A",
        ):
            assert stack.query(queries[where]), f"{where} returned nothing: {queries[where]}"

    def test_variable_queries_list_jobs_by_name(self, stack: Stack) -> None:
        """scrape_job finds the exporter's job, instance the exporter, job_id one entry per watched job."""
        dashboard = load_dashboard()
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert variables["scrape_job"]["query"]["query"] == "label_values(ccs_up, job)"
        assert stack.api("/api/v1/label/job/values", **{"match[]": "ccs_up"}) == ["ccs-exporter"]
        instances = stack.api("/api/v1/label/instance/values", **{"match[]": 'ccs_up{job=~"ccs-exporter"}'})
        assert instances == [stack.exporter_url.removeprefix("http://")]
        job_query = variables["job_id"]["query"]["query"]
        inner = job_query.removeprefix("query_result(").removesuffix(")")
        inner = inner.replace("$scrape_job", "ccs-exporter").replace("$instance", ".*")
        names = {s["metric"]["job_id"]: s["metric"]["job_name"] for s in stack.query(inner)}
        assert sorted(names) == sorted(stack.simulator.job_ids)

    def test_status_timeline_shows_each_jobs_state(self, stack: Stack) -> None:
        """The run-status timeline gives every job the code of its state at 1 in ccs_job_last_run_status."""
        queries = {where: expr for where, expr in dashboard_queries()}
        timeline = stack.query(queries["panel 'Run status over time' target A"])
        current = {
            s["metric"]["job_id"]: s["metric"]["status"] for s in stack.query("ccs_job_last_run_status == 1")
        }
        shown = {s["metric"]["job_id"]: RUN_STATES[int(float(s["value"][1]))] for s in timeline}
        assert shown == current
        assert all(s["metric"].get("job_name") for s in timeline)

    def test_exporter_exposes_every_dashboard_metric(self, stack: Stack) -> None:
        """Each metric the dashboard uses is in the exporter's /metrics (audit ones need an audit log)."""
        status, body = _get(f"{stack.exporter_url}/metrics")
        assert status == 200
        exposed = {line.split("{")[0].split(" ")[0] for line in body.splitlines() if line and line[0] != "#"}
        used = set().union(*(metric_names(expr) for _, expr in dashboard_queries()))
        missing = used - exposed - AUDIT_METRICS - RECORDED_METRICS - {"up"}
        assert not missing
        assert used <= EXPORTER_METRICS | RECORDED_METRICS | {
            name for name in used if name.startswith("process_")
        }
