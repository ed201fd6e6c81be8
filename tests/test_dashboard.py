"""The Grafana dashboard: importable JSON whose queries parse and use only metrics the exporter exposes."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
DASHBOARD_FILE = REPO_ROOT / "grafana" / "ccs-exporter.json"
RULES_FILE = REPO_ROOT / "prometheus" / "ccs-exporter.rules.yml"
SCRAPE_JOB_SELECTOR = 'job=~"$scrape_job"'
# The states of ccs_job_last_run_status, in the order of their status codes (0-7).
RUN_STATES = ("none", "pending", "executing", "idle", "completed", "faulted", "custom", "aborted")

# The exporter's public interface (issue 3) plus what Prometheus and client_python add.
EXPORTER_METRICS = frozenset(
    {
        "ccs_job_info",
        "ccs_job_last_run_status",
        "ccs_job_last_run_status_code",
        "ccs_job_last_run_start_timestamp_seconds",
        "ccs_job_last_run_end_timestamp_seconds",
        "ccs_job_last_run_duration_seconds",
        "ccs_job_last_run_messages",
        "ccs_job_runs",
        "ccs_job_last_success_timestamp_seconds",
        "ccs_job_consecutive_failures",
        "ccs_job_modified_timestamp_seconds",
        "ccs_job_poll_success",
        "ccs_job_data_age_seconds",
        "ccs_up",
        "ccs_last_poll_success_timestamp_seconds",
        "ccs_poll_duration_seconds",
        "ccs_poll_cycles_total",
        "ccs_api_requests_total",
        "ccs_api_request_duration_seconds_bucket",
        "ccs_api_request_duration_seconds_sum",
        "ccs_api_request_duration_seconds_count",
        "ccs_exporter_build_info",
        "ccs_audit_records_total",
        "ccs_audit_write_errors_total",
        "ccs_job_schedule_next_run_timestamp_seconds",
        "ccs_job_schedule_last_due_timestamp_seconds",
        "ccs_job_schedule_period_seconds",
        "ccs_job_run_time_limit_seconds",
        "ccs_exporter_shard_ordinal",
        "ccs_exporter_total_shards",
        "up",
    }
)
# Series our rules record (level:metric:operations); the dashboard may use them.
RECORDED_METRICS = frozenset(
    rule["record"]
    for group in yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))["groups"]
    for rule in group["rules"]
    if "record" in rule
)

# What Grafana puts in place of the variables when "All" is selected, and of its interval macros.
VARIABLE_VALUES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "${datasource}": "prometheus",
    "$scrape_job": ".*",
    "$instance": ".*",
    "$job_id": ".*",
}
_PROMQL_WORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"}
)
_PROMQL_CONSTANTS = frozenset({"inf", "nan"})


def load_dashboard() -> dict[str, Any]:
    """The dashboard JSON as committed."""
    loaded: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    return loaded


def substitute_variables(expr: str) -> str:
    """An expression as Grafana sends it with every variable set to "All"."""
    for name, value in VARIABLE_VALUES.items():
        expr = expr.replace(name, value)
    return expr


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, expression with variables substituted) for every panel target and annotation query."""
    dashboard = load_dashboard()
    queries: list[tuple[str, str]] = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            queries.append((f"panel {panel['title']!r} target {target['refId']}", target["expr"]))
    for annotation in dashboard["annotations"]["list"]:
        if annotation.get("expr"):
            queries.append((f"annotation {annotation['name']!r}", annotation["expr"]))
    return [(where, substitute_variables(expr)) for where, expr in queries]


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (strings, label matchers, ranges and groupings removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "{}", text)
    text = re.sub(r"\[[^\]]*\]", "[]", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set(re.findall(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()", text))
    return {name for name in names if name not in _PROMQL_WORDS and name.lower() not in _PROMQL_CONSTANTS}


def _panel(title: str) -> dict[str, Any]:
    panels = [panel for panel in load_dashboard()["panels"] if panel["title"] == title]
    assert len(panels) == 1, f"expected one panel titled {title!r}, got {len(panels)}"
    return panels[0]


def scrape_job_scoped(expr: str) -> list[str]:
    """Exporter metrics an expression selects without the scrape-job variable in their matchers."""
    found = re.findall(r"(?<![\w:])(ccs_[a-z0-9_]+|up|process_[a-z_]+)(?![\w:(])(\{[^}]*\})?", expr)
    return [name for name, matchers in found if SCRAPE_JOB_SELECTOR not in matchers]


def _variable(dashboard: dict[str, Any], name: str) -> dict[str, Any]:
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert name in variables, f"variable {name!r} missing; have {sorted(variables)}"
    return variables[name]


def _variable_query(variable: dict[str, Any]) -> str:
    query = variable["query"]
    return str(query["query"] if isinstance(query, dict) else query)


class TestMetricNames:
    """The helper that finds metric names in PromQL."""

    def test_finds_selected_metrics_only(self) -> None:
        """Functions, keywords, label names and durations are not taken for metric names."""
        expr = (
            'sum by (job_id, le) (rate(ccs_api_requests_total{code!~"2.."}[5m])) '
            "* on (job_id) group_left (job_name) topk by (job_id) (1, ccs_job_info) > bool 1e3 or vector(0)"
        )
        assert metric_names(expr) == {"ccs_api_requests_total", "ccs_job_info"}


class TestDashboardStructure:
    """The JSON is a Grafana 10 dashboard with the promised variables and panels."""

    def test_is_a_grafana_10_dashboard(self) -> None:
        """It parses, has a stable uid, schemaVersion 39 and no leftover import placeholders."""
        dashboard = load_dashboard()
        assert dashboard["uid"] == "ccs-exporter-jobs"
        assert dashboard["schemaVersion"] >= 39
        assert dashboard["id"] is None
        assert "${DS_" not in DASHBOARD_FILE.read_text(encoding="utf-8")

    def test_datasource_variable_drives_every_query(self) -> None:
        """A Prometheus datasource variable exists and every panel and target uses it."""
        dashboard = load_dashboard()
        assert _variable(dashboard, "datasource")["query"] == "prometheus"
        for panel in dashboard["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${datasource}", panel["title"]

    def test_job_id_variable_shows_names_and_selects_ids(self) -> None:
        """The job_id variable lists ccs_job_info's job_name as text and its job_id as value."""
        job = _variable(load_dashboard(), "job_id")
        assert "ccs_job_info" in _variable_query(job) and SCRAPE_JOB_SELECTOR in _variable_query(job)
        pattern = re.compile(job["regex"].strip("/").replace("(?<", "(?P<"))
        sample = (
            '{__name__="ccs_job_info", instance="a:9879", is_system="false", job="ccs", '
            'job_id="23c59087-f3d4-4e05-a39e-3440c58e58fb", job_name="Nightly PCI scan", job_owner="x"} 1 1'
        )
        match = pattern.search(sample)
        assert match is not None
        assert match.group("value") == "23c59087-f3d4-4e05-a39e-3440c58e58fb"
        assert match.group("text") == "Nightly PCI scan"
        assert job["multi"] and job["includeAll"] and job["allValue"] == ".*"

    def test_scrape_job_variable_lists_exporter_jobs_only(self) -> None:
        """scrape_job lists the scrape jobs of ccs_up; "All" means those, never every job in Prometheus."""
        variable = _variable(load_dashboard(), "scrape_job")
        assert _variable_query(variable) == "label_values(ccs_up, job)"
        assert variable["multi"] and variable["includeAll"]
        assert not variable.get("allValue"), "a custom All value (.*) would select every scrape job"

    def test_instance_variable_lists_exporters(self) -> None:
        """The instance variable lists the instances of the chosen scrape jobs that export ccs_up."""
        variable = _variable(load_dashboard(), "instance")
        assert _variable_query(variable) == 'label_values(ccs_up{job=~"$scrape_job"}, instance)'

    def test_no_hard_coded_scrape_job(self) -> None:
        """No query selects an exporter metric without the scrape_job variable (no job=~".*ccs.*" left)."""
        dashboard = load_dashboard()
        raw = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
        raw += [a["expr"] for a in dashboard["annotations"]["list"] if a.get("expr")]
        assert not [expr for expr in raw if '".*ccs.*"' in expr]
        unscoped = {name for expr in raw for name in scrape_job_scoped(expr)}
        assert not unscoped, f"selected without the scrape_job variable: {sorted(unscoped)}"

    def test_scope_finder_sees_unscoped_metrics(self) -> None:
        """The finder reports a bare or differently scoped exporter metric and ignores recorded series."""
        expr = 'up{job=~".*ccs.*"} + ccs_up + ccs_up{job=~"$scrape_job"} + job_id:ccs_job_x:max'
        assert scrape_job_scoped(expr) == ["up", "ccs_up"]

    @pytest.mark.parametrize(
        "title",
        [
            "All jobs",
            "Run status over time",
            "Missed schedules",
            "Stale evidence",
            "Jobs failing",
            "Jobs by status",
            "Failing jobs",
            "Run durations",
            "Messages by category",
            "Time since last success",
            "CCS reachable (ccs_up)",
            "Poll cycle duration",
            "CCS requests",
            "CCS errors",
            "CCS latency",
        ],
    )
    def test_has_panel(self, title: str) -> None:
        """The panel exists, once, and has at least one query."""
        assert _panel(title)["targets"]

    def test_failing_jobs_table_has_its_columns(self) -> None:
        """The failing-jobs table shows name, status, last run, last success and messages."""
        organize = next(t for t in _panel("Failing jobs")["transformations"] if t["id"] == "organize")
        columns = set(organize["options"]["renameByName"].values())
        assert {"Job", "Status", "Last run ended", "Last success", "Errors", "Warnings"} <= columns

    def test_all_jobs_table_has_the_compliance_columns(self) -> None:
        """The all-jobs table merges one query per column: status, runs, schedule, the missed occurrence."""
        table = _panel("All jobs")
        assert [t["id"] for t in table["transformations"]] == ["merge", "organize"]
        assert all(t["format"] == "table" and t["instant"] for t in table["targets"])
        organize = table["transformations"][1]["options"]
        assert set(organize["renameByName"].values()) == {
            "Job",
            "Job id",
            "Type",
            "Status",
            "Last run ended",
            "Last success",
            "Duration",
            "Errors",
            "Last due",
            "Next run",
            "Missed occurrence",
        }
        by_ref = {t["refId"]: t["expr"] for t in table["targets"]}
        named = {
            name: by_ref[key.removeprefix("Value #")]
            for key, name in organize["renameByName"].items()
            if key.startswith("Value #")
        }
        assert "ccs_job_schedule_next_run_timestamp_seconds" in named["Next run"]
        assert "ccs_job_schedule_last_due_timestamp_seconds" in named["Last due"]
        assert (
            "instance_job_id:ccs_job_schedule_last_due_timestamp_seconds:missed" in named["Missed occurrence"]
        )
        overrides = {o["matcher"]["options"]: o["properties"] for o in table["fieldConfig"]["overrides"]}
        missed = {prop["id"]: prop["value"] for prop in overrides["Missed occurrence"]}
        assert missed["custom.cellOptions"] == {"type": "color-background"}
        assert missed["color"]["fixedColor"] == "red"

    def test_run_status_timeline_maps_every_state(self) -> None:
        """The state timeline turns each job's state at 1 into its code and names all eight states."""
        timeline = _panel("Run status over time")
        assert timeline["type"] == "state-timeline"
        (target,) = timeline["targets"]
        assert target["legendFormat"] == "{{job_name}}" and not target["instant"]
        for code, state in enumerate(RUN_STATES):
            assert f'status="{state}"}} == 1) * {code})' in target["expr"], state
        (mapping,) = timeline["fieldConfig"]["defaults"]["mappings"]
        assert {int(code): option["text"] for code, option in mapping["options"].items()} == dict(
            enumerate(RUN_STATES)
        )

    def test_panels_fit_the_grid(self) -> None:
        """Panel ids are unique and every panel lies within Grafana's 24-column grid."""
        panels = load_dashboard()["panels"]
        ids = [panel["id"] for panel in panels]
        assert len(ids) == len(set(ids))
        for panel in panels:
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, panel["title"]


class TestDashboardQueries:
    """Every query is valid PromQL over the exporter's metrics."""

    @pytest.mark.parametrize(("where", "expr"), dashboard_queries(), ids=[w for w, _ in dashboard_queries()])
    def test_query_uses_only_exporter_metrics(self, where: str, expr: str) -> None:
        """The query selects only metrics the exporter (or Prometheus) exposes."""
        names = metric_names(expr)
        assert names, f"{where}: no metric found in {expr}"
        known = EXPORTER_METRICS | RECORDED_METRICS
        unknown = {name for name in names if name not in known and not name.startswith("process_")}
        assert not unknown, f"{where}: unknown metrics {sorted(unknown)} in {expr}"

    def test_variable_queries_use_exporter_metrics(self) -> None:
        """The scrape_job, instance and job_id variables are filled from exporter metrics."""
        dashboard = load_dashboard()
        for name in ("scrape_job", "instance", "job_id"):
            query = _variable_query(_variable(dashboard, name))
            inner = re.sub(r"^\w+\((.*?)(?:,\s*\w+)?\)$", r"\1", query)
            assert metric_names(substitute_variables(inner)) <= EXPORTER_METRICS, query

    @pytest.mark.integration
    def test_every_query_parses(self, require_tool: Callable[[str], str], tmp_path: Path) -> None:
        """promtool accepts every query (each checked as a recording rule's expression)."""
        promtool = require_tool("promtool")
        queries = dashboard_queries()
        rules = {
            "groups": [
                {
                    "name": "dashboard",
                    "rules": [
                        {"record": f"dashboard:query:{i}", "expr": expr}
                        for i, (_, expr) in enumerate(queries)
                    ],
                }
            ]
        }
        rules_file = tmp_path / "dashboard-queries.yml"
        rules_file.write_text(yaml.safe_dump(rules), encoding="utf-8")
        result = subprocess.run(
            [promtool, "check", "rules", str(rules_file)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"SUCCESS: {len(queries)} rules found" in result.stdout


@pytest.mark.integration
class TestStatusModes:
    """The run-status queries read the same with the full and the sparse status metric."""

    def test_timeline_value_is_the_status_code_in_both_modes(
        self, require_tool: Callable[[str], str], tmp_path: Path
    ) -> None:
        """With a series per state (full) or only the current one (sparse), each job gets its state's code."""
        promtool = require_tool("promtool")
        (expr,) = [t["expr"] for t in _panel("Run status over time")["targets"]]
        info = 'ccs_job_info{{instance="a:9879",job="ccs",job_id="{0}",job_name="{1}"}}'
        status = 'ccs_job_last_run_status{{instance="a:9879",job="ccs",job_id="{0}",status="{1}"}}'
        full = [
            {"series": status.format("f", state), "values": "1x10" if state == "executing" else "0x10"}
            for state in RUN_STATES
        ]
        sparse = [{"series": status.format("s", "faulted"), "values": "1x10"}]
        infos = [
            {"series": info.format(job, name), "values": "1x10"} for job, name in (("f", "F"), ("s", "S"))
        ]
        (tmp_path / "empty.rules.yml").write_text("groups: []\n", encoding="utf-8")
        test = {
            "rule_files": ["empty.rules.yml"],
            "tests": [
                {
                    "interval": "1m",
                    "input_series": full + sparse + infos,
                    "promql_expr_test": [
                        {
                            "expr": substitute_variables(expr),
                            "eval_time": "5m",
                            "exp_samples": [
                                {
                                    "labels": '{job_id="f",job_name="F"}',
                                    "value": RUN_STATES.index("executing"),
                                },
                                {"labels": '{job_id="s",job_name="S"}', "value": RUN_STATES.index("faulted")},
                            ],
                        }
                    ],
                }
            ],
        }
        (tmp_path / "timeline.test.yml").write_text(yaml.safe_dump(test), encoding="utf-8")
        result = subprocess.run(
            [promtool, "test", "rules", "timeline.test.yml"],
            capture_output=True,
            text=True,
            check=False,
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stdout + result.stderr


# Jobs in both status modes: (job_id, status at 0-3m, status from 4m). "x" changes state at 4m; "u" has a
# status code outside 0-7 (all eight states at 0 in full mode, no series in sparse mode).
_MODE_JOBS = (
    ("a", "completed", "completed"),
    ("x", "completed", "faulted"),
    ("d", "aborted", "aborted"),
    ("e", "executing", "executing"),
    ("p", "none", "pending"),
    ("u", None, None),
)


def _status_series(scrape_job: str, sparse: bool) -> list[dict[str, str]]:
    """ccs_job_last_run_status of _MODE_JOBS over 10 minutes, as the full or the sparse mode exports it."""
    series = []
    for job_id, before, after in _MODE_JOBS:
        for state in RUN_STATES:
            values = [1 if state == before else 0] * 4 + [1 if state == after else 0] * 6
            if sparse:
                if not any(values):
                    continue
                # A series that stops being current ends with a stale marker, as a scrape leaves it.
                text = " ".join(
                    "1" if v else "stale" if i and values[i - 1] else "_" for i, v in enumerate(values)
                )
            else:
                text = " ".join(str(v) for v in values)
            labels = f'instance="a:9879",job="{scrape_job}",job_id="{job_id}",status="{state}"'
            series.append({"series": f"ccs_job_last_run_status{{{labels}}}", "values": text})
    return series


def _job_series(scrape_job: str) -> list[dict[str, str]]:
    """The other per-job series the status queries join with, the same in both modes."""
    series = []
    for number, (job_id, _, _) in enumerate(_MODE_JOBS):
        labels = f'instance="a:9879",job="{scrape_job}",job_id="{job_id}"'
        series.append({"series": f'ccs_job_info{{{labels},job_name="Job {job_id}"}}', "values": "1x10"})
        for name, value in (
            ("ccs_job_last_run_end_timestamp_seconds", 1_790_000_000 + number),
            ("ccs_job_last_success_timestamp_seconds", 1_780_000_000 + number),
            ("ccs_job_consecutive_failures", number),
        ):
            series.append({"series": f"{name}{{{labels}}}", "values": f"{value}x10"})
        for category, count in (("error", number), ("warning", 2 * number)):
            messages = f'ccs_job_last_run_messages{{{labels},category="{category}"}}'
            series.append({"series": messages, "values": f"{count}x10"})
    return series


def _mode_differences(
    promtool: str, directory: Path, queries: list[tuple[str, str]]
) -> subprocess.CompletedProcess[str]:
    """promtool's verdict on: each query returns something, and the same, over full and sparse series."""
    tests = []
    for _, expr in queries:
        full = f"({substitute_variables(expr.replace('$scrape_job', 'full'))})"
        sparse = f"({substitute_variables(expr.replace('$scrape_job', 'sparse'))})"
        differences = (
            f"({full} != ignoring (job) {sparse}) or ({full} unless ignoring (job) {sparse})"
            f" or ({sparse} unless ignoring (job) {full})"
        )
        tests += [
            {"expr": f"absent({full})", "eval_time": "5m", "exp_samples": []},
            {"expr": differences, "eval_time": "5m", "exp_samples": []},
        ]
    test = {
        "rule_files": ["empty.rules.yml"],
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    *_status_series("full", sparse=False),
                    *_status_series("sparse", sparse=True),
                    *_job_series("full"),
                    *_job_series("sparse"),
                ],
                "promql_expr_test": tests,
            }
        ],
    }
    (directory / "empty.rules.yml").write_text("groups: []\n", encoding="utf-8")
    (directory / "modes.test.yml").write_text(yaml.safe_dump(test, width=1000), encoding="utf-8")
    return subprocess.run(
        [promtool, "test", "rules", "modes.test.yml"],
        capture_output=True,
        text=True,
        check=False,
        cwd=directory,
    )


@pytest.mark.integration
class TestStatusQueriesInBothModes:
    """Every dashboard query on ccs_job_last_run_status answers the same with the full and sparse metric."""

    def test_every_status_query_is_mode_agnostic(
        self, require_tool: Callable[[str], str], tmp_path: Path
    ) -> None:
        """Each query returns series, and the same series and values, from full and from sparse input."""
        queries = [(w, e) for w, e in dashboard_queries() if "ccs_job_last_run_status" in metric_names(e)]
        assert len(queries) >= 10
        result = _mode_differences(require_tool("promtool"), tmp_path, queries)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    def test_a_query_that_reads_the_zero_states_is_caught(
        self, require_tool: Callable[[str], str], tmp_path: Path
    ) -> None:
        """A query counting states at 0 gives a different answer in sparse mode, and the check says so."""
        query = 'count(ccs_job_last_run_status{job=~"$scrape_job", status="faulted"} == 0)'
        result = _mode_differences(require_tool("promtool"), tmp_path, [("zero states", query)])
        assert result.returncode != 0
        assert "!= ignoring (job)" in result.stdout + result.stderr  # the comparison failed, not absent()
