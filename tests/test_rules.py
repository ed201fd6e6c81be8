"""The Prometheus rules: valid for promtool, unit-tested per alert, mixin-style, shipped in the chart."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
RULES_FILE = REPO_ROOT / "prometheus" / "ccs-exporter.rules.yml"
OVERRIDES_EXAMPLE = REPO_ROOT / "prometheus" / "ccs-exporter.overrides.example.yml"
RULE_TESTS = sorted((REPO_ROOT / "prometheus" / "tests").glob("*.test.yml"))
RENDER_SCRIPT = REPO_ROOT / "prometheus" / "render_rules.py"
CHART_RULES_COPY = REPO_ROOT / "helm" / "ccs-exporter" / "files" / "ccs-exporter.rules.yml"
RUNBOOKS = REPO_ROOT / "docs" / "runbooks.md"
RUNBOOK_URL = "https://github.com/ccs-exporter/ccs-exporter/blob/main/docs/runbooks.md"
DEFAULT_SELECTOR = 'job=~".*ccs.*"'
# Series recorded by the user's own rule files, which carry no scrape job.
USER_RECORDED = frozenset(
    {"ccs_job_success_max_age_seconds_override", "ccs_job_schedule_grace_seconds_override"}
)
# The three things every runbook section tells the person paged.
RUNBOOK_PARTS = ("**What it means.**", "**How to check.**", "**What to do.**")


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def _alerts() -> list[dict[str, Any]]:
    return [rule for rule in _rules() if "alert" in rule]


def _alert_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    for test_file in RULE_TESTS:
        document = yaml.safe_load(test_file.read_text(encoding="utf-8"))
        for group in document["tests"]:
            cases.extend(group.get("alert_rule_test", []))
    return cases


def exporter_selectors(expr: str) -> list[tuple[str, str]]:
    """(metric, its {...} matchers or "") for every selector of an exporter metric in ``expr``."""
    # Label lists of by/without/on/ignoring/group_left/group_right hold label names, not metrics.
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    found = re.findall(r"(?<![\w:])(ccs_[a-z0-9_]+|up)(?![\w:])(\{[^}]*\})?", expr)
    return [(name, matchers) for name, matchers in found if name not in USER_RECORDED]


def _runbook_sections() -> dict[str, str]:
    text = RUNBOOKS.read_text(encoding="utf-8")
    parts = re.split(r"^## (\S+)\s*$", text, flags=re.MULTILINE)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


@pytest.fixture(scope="module")
def promtool(require_tool: Callable[[str], str]) -> str:
    """The promtool binary (skips outside CI when missing)."""
    return require_tool("promtool")


def _promtool(promtool: str, *args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], capture_output=True, text=True, check=False, cwd=cwd)


def _render(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RENDER_SCRIPT), *args], capture_output=True, text=True, check=False
    )


@pytest.mark.integration
class TestPromtool:
    """promtool accepts the rules and their unit tests pass."""

    def test_check_rules_is_clean(self, promtool: str) -> None:
        """`promtool check rules` accepts the rules file and the overrides example without warnings."""
        result = _promtool(promtool, "check", "rules", str(RULES_FILE), str(OVERRIDES_EXAMPLE))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "WARNING" not in (result.stdout + result.stderr).upper()

    def test_rule_unit_tests_pass(self, promtool: str) -> None:
        """`promtool test rules` passes every file in prometheus/tests."""
        assert RULE_TESTS, "no prometheus/tests/*.test.yml found"
        result = _promtool(promtool, "test", "rules", *map(str, RULE_TESTS))
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.count("SUCCESS") == len(RULE_TESTS), result.stdout


class TestRuleCoverage:
    """Every alert is unit-tested both firing and not firing."""

    @pytest.mark.parametrize("alert", [rule["alert"] for rule in _alerts()])
    def test_alert_is_tested_firing_and_quiet(self, alert: str) -> None:
        """The unit tests hold a case where the alert fires and one where it does not."""
        cases = [case for case in _alert_cases() if case["alertname"] == alert]
        assert any(case.get("exp_alerts") for case in cases), f"{alert}: no test where it fires"
        assert any(not case.get("exp_alerts") for case in cases), f"{alert}: no test where it stays quiet"


class TestAlertContent:
    """Alerts carry what a person paged at night needs, in the monitoring-mixin style."""

    @pytest.mark.parametrize("rule", _alerts(), ids=lambda rule: str(rule["alert"]))
    def test_alert_has_severity_summary_description(self, rule: dict[str, Any]) -> None:
        """Each alert has a severity of critical or warning, a summary and a description."""
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert rule["annotations"]["description"].strip()

    @pytest.mark.parametrize("rule", _alerts(), ids=lambda rule: str(rule["alert"]))
    def test_summary_is_static_and_ends_in_a_period(self, rule: dict[str, Any]) -> None:
        """The summary is one fixed sentence (no template), so alerts group under it; details go below."""
        summary = rule["annotations"]["summary"]
        assert "{{" not in summary and "\n" not in summary.strip()
        assert summary[0].isupper() or summary.startswith("ccs-exporter"), summary
        assert summary.endswith("."), summary

    @pytest.mark.parametrize("rule", _alerts(), ids=lambda rule: str(rule["alert"]))
    def test_runbook_url_points_at_the_alerts_section(self, rule: dict[str, Any]) -> None:
        """runbook_url is docs/runbooks.md#<alert name in lower case>, the anchor of its section."""
        assert rule["annotations"]["runbook_url"] == f"{RUNBOOK_URL}#{rule['alert'].lower()}"

    @pytest.mark.parametrize(
        "rule",
        [rule for rule in _alerts() if "ccs_job_" in rule["expr"]],
        ids=lambda rule: str(rule["alert"]),
    )
    def test_job_alert_names_the_job(self, rule: dict[str, Any]) -> None:
        """A job alert joins job_name from ccs_job_info and shows the name and id in its description."""
        assert "group_left (job_name)" in rule["expr"] and "ccs_job_info" in rule["expr"]
        description = rule["annotations"]["description"]
        assert "$labels.job_name" in description and "$labels.job_id" in description


class TestNaming:
    """Recording rules follow Prometheus' level:metric:operations convention."""

    @pytest.mark.parametrize("record", [rule["record"] for rule in _rules() if "record" in rule])
    def test_recording_rule_name(self, record: str) -> None:
        """The name is <labels kept>:<ccs metric>:<operations>, e.g. job_id:..._seconds:max."""
        assert re.fullmatch(r"[a-z_]+:ccs_[a-z0-9_]+:[a-z0-9_]+", record), record
        level = record.split(":")[0]
        assert level in {"job_id", "instance_job_id"}, record


class TestSelector:
    """Every selector of an exporter metric carries the scrape-job selector, which can be replaced."""

    @pytest.mark.parametrize("rule", _rules(), ids=lambda rule: str(rule.get("alert") or rule["record"]))
    def test_every_exporter_selector_carries_the_scrape_job(self, rule: dict[str, Any]) -> None:
        """No exporter metric is selected without job=~".*ccs.*" (user overrides carry no job)."""
        selectors = exporter_selectors(rule["expr"])
        unscoped = [name for name, matchers in selectors if DEFAULT_SELECTOR not in matchers]
        assert not unscoped, f"selected without the scrape-job selector: {unscoped}"

    def test_finder_sees_bare_and_scoped_selectors(self) -> None:
        """The selector finder reports bare metrics; recorded names, overrides and grouping labels are not."""
        expr = (
            'up == 0 or ccs_up{job="x"} and job_id:ccs_job_x:max or ccs_job_success_max_age_seconds_override'
            " or count by (job, ccs_server) (ccs_up)"
        )
        assert exporter_selectors(expr) == [("up", ""), ("ccs_up", '{job="x"}'), ("ccs_up", "")]

    @pytest.mark.integration
    def test_render_replaces_selector_and_runbook_address(self, promtool: str, tmp_path: Path) -> None:
        """render_rules.py swaps every selector and runbook address; promtool accepts the result."""
        result = _render(
            "--selector", '{job="ccs-prod", env="prod"}', "--runbook-url", "https://wiki.example/rb.md"
        )
        assert result.returncode == 0, result.stderr
        shipped = RULES_FILE.read_text(encoding="utf-8")
        assert DEFAULT_SELECTOR not in result.stdout and RUNBOOK_URL not in result.stdout
        assert result.stdout.count('job="ccs-prod", env="prod"') == shipped.count(DEFAULT_SELECTOR)
        assert result.stdout.count("https://wiki.example/rb.md#") == len(_alerts())
        rendered = tmp_path / "rules.yml"
        rendered.write_text(result.stdout, encoding="utf-8")
        check = _promtool(promtool, "check", "rules", str(rendered))
        assert check.returncode == 0, check.stdout + check.stderr

    @pytest.mark.integration
    def test_rendered_rules_pass_the_unit_tests(self, promtool: str, tmp_path: Path) -> None:
        """With one more matcher in the selector, the unit tests (series without that label) still pass."""
        selector = 'job=~".*ccs.*",env!="staging"'
        result = _render("--selector", selector)
        assert result.returncode == 0, result.stderr
        (tmp_path / "ccs-exporter.rules.yml").write_text(result.stdout, encoding="utf-8")
        (tmp_path / OVERRIDES_EXAMPLE.name).write_text(OVERRIDES_EXAMPLE.read_text(encoding="utf-8"))
        tests_dir = tmp_path / "tests"
        tests_dir.mkdir()
        for test_file in RULE_TESTS:
            text = test_file.read_text(encoding="utf-8").replace(DEFAULT_SELECTOR, selector)
            (tests_dir / test_file.name).write_text(text, encoding="utf-8")
        run = _promtool(promtool, "test", "rules", *(f"tests/{t.name}" for t in RULE_TESTS), cwd=tmp_path)
        assert run.returncode == 0, run.stdout + run.stderr

    @pytest.mark.integration
    @pytest.mark.parametrize("selector", ['job="ccs', "job", "{}", 'job="a" env="b"'])
    def test_render_refuses_a_malformed_selector(self, selector: str) -> None:
        """A selector that is not label matchers exits 2 with one line naming --selector."""
        result = _render("--selector", selector)
        assert result.returncode == 2
        assert result.stdout == ""
        assert len(result.stderr.strip().splitlines()) == 1 and "--selector" in result.stderr


class TestRunbooks:
    """docs/runbooks.md has one section per alert: what it means, how to check, what to do."""

    def test_one_section_per_alert(self) -> None:
        """The sections are exactly the alerts, each under a heading that is the alert's name."""
        assert sorted(_runbook_sections()) == sorted(rule["alert"] for rule in _alerts())

    @pytest.mark.parametrize("alert", [rule["alert"] for rule in _alerts()])
    def test_section_says_what_why_and_how(self, alert: str) -> None:
        """Each section explains the alert, how to check it and what to do, in that order."""
        section = _runbook_sections().get(alert, "")
        positions = [section.find(part) for part in RUNBOOK_PARTS]
        assert all(position >= 0 for position in positions), f"{alert}: missing one of {RUNBOOK_PARTS}"
        assert positions == sorted(positions), f"{alert}: parts out of order"


class TestChartCopy:
    """The Helm chart ships the same rules as prometheus/."""

    def test_chart_rules_are_identical(self) -> None:
        """helm/ccs-exporter/files/ccs-exporter.rules.yml is a byte-for-byte copy of the rules file."""
        assert CHART_RULES_COPY.read_bytes() == RULES_FILE.read_bytes(), (
            "the chart's copy of the rules differs; run: "
            "cp prometheus/ccs-exporter.rules.yml helm/ccs-exporter/files/ccs-exporter.rules.yml"
        )
