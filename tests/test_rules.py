"""The Prometheus rules: valid for promtool, unit-tested per alert, shipped unchanged in the Helm chart."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
RULES_FILE = REPO_ROOT / "prometheus" / "ccs-exporter.rules.yml"
OVERRIDES_EXAMPLE = REPO_ROOT / "prometheus" / "ccs-exporter.overrides.example.yml"
RULE_TESTS = sorted((REPO_ROOT / "prometheus" / "tests").glob("*.test.yml"))
CHART_RULES_COPY = REPO_ROOT / "helm" / "ccs-exporter" / "files" / "ccs-exporter.rules.yml"


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


@pytest.fixture(scope="module")
def promtool(require_tool: Callable[[str], str]) -> str:
    """The promtool binary (skips outside CI when missing)."""
    return require_tool("promtool")


class TestPromtool:
    """promtool accepts the rules and their unit tests pass."""

    def test_check_rules_is_clean(self, promtool: str) -> None:
        """`promtool check rules` accepts the rules file and the overrides example without warnings."""
        result = subprocess.run(
            [promtool, "check", "rules", str(RULES_FILE), str(OVERRIDES_EXAMPLE)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "WARNING" not in (result.stdout + result.stderr).upper()

    def test_rule_unit_tests_pass(self, promtool: str) -> None:
        """`promtool test rules` passes every file in prometheus/tests."""
        assert RULE_TESTS, "no prometheus/tests/*.test.yml found"
        result = subprocess.run(
            [promtool, "test", "rules", *map(str, RULE_TESTS)],
            capture_output=True,
            text=True,
            check=False,
            cwd=REPO_ROOT,
        )
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
    """Alerts carry what a person paged at night needs."""

    @pytest.mark.parametrize("rule", _alerts(), ids=lambda rule: str(rule["alert"]))
    def test_alert_has_severity_and_summary(self, rule: dict[str, Any]) -> None:
        """Each alert has a severity of critical or warning, a summary and a description."""
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert rule["annotations"]["summary"].strip()
        assert rule["annotations"]["description"].strip()

    @pytest.mark.parametrize(
        "rule",
        [rule for rule in _alerts() if "ccs_job_" in rule["expr"]],
        ids=lambda rule: str(rule["alert"]),
    )
    def test_job_alert_names_the_job(self, rule: dict[str, Any]) -> None:
        """A job alert joins job_name from ccs_job_info and shows it in its summary."""
        assert "group_left (job_name)" in rule["expr"] and "ccs_job_info" in rule["expr"]
        assert "$labels.job_name" in rule["annotations"]["summary"]


class TestChartCopy:
    """The Helm chart ships the same rules as prometheus/."""

    def test_chart_rules_are_identical(self) -> None:
        """helm/ccs-exporter/files/ccs-exporter.rules.yml is a byte-for-byte copy of the rules file."""
        assert CHART_RULES_COPY.read_bytes() == RULES_FILE.read_bytes(), (
            "the chart's copy of the rules differs; run: "
            "cp prometheus/ccs-exporter.rules.yml helm/ccs-exporter/files/ccs-exporter.rules.yml"
        )
