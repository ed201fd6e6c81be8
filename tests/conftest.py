"""Shared test fixtures."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import responses

FIXTURES_DIR = Path(__file__).parent / "fixtures"
REPO_ROOT = Path(__file__).resolve().parent.parent
LOCAL_TOOLS_DIR = REPO_ROOT / ".tools" / "bin"
_TOOL_HINTS = {
    "promtool": "apt-get install prometheus",
    "prometheus": "apt-get install prometheus",
    "helm": "bash .ci/install-helm.sh",
    "kubectl": "bash .ci/install-helm.sh",
    "readme-generator": "bash .ci/install-readme-generator.sh (needs npm)",
    "ecs-schema": "bash .ci/install-ecs-schema.sh (needs npm)",
    "rsyslogd": "apt-get install rsyslog rsyslog-openssl",
}


@pytest.fixture
def load_fixture() -> Callable[[str], Any]:
    """A function returning the parsed JSON of ``tests/fixtures/<name>``."""

    def load(name: str) -> Any:
        return json.loads((FIXTURES_DIR / name).read_text(encoding="utf-8"))

    return load


@pytest.fixture
def mocked_responses() -> Iterator[responses.RequestsMock]:
    """A ``responses`` mock that fails the test when a registered response is never requested."""
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture(scope="session")
def require_tool() -> Callable[[str], str]:
    """A function returning an external program's path (``.tools/bin`` first, then ``PATH``).

    A missing program skips the test with the reason, except in CI (``CI`` set), where it fails the test:
    CI must never pass by skipping.
    """

    def find(name: str) -> str:
        local = LOCAL_TOOLS_DIR / name
        if local.is_file() and os.access(local, os.X_OK):
            return str(local)
        found = shutil.which(name)
        if found:
            return found
        hint = _TOOL_HINTS.get(name, f"install {name}")
        reason = f"{name} is not installed (not in .tools/bin or on PATH); to get it: {hint}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}. CI is set, so a missing tool is a failure, not a skip.")
        pytest.skip(reason)

    return find


@pytest.fixture
def simulator() -> Iterator[Any]:
    """A started CCS simulator (the built-in sample jobs, runs frozen); stopped after the test."""
    from ccs_exporter.simulator import Simulator

    with Simulator() as sim:
        yield sim


@pytest.fixture
def started() -> Iterator[Callable[..., Any]]:
    """Start simulators with custom options; all are stopped after the test."""
    from ccs_exporter.simulator import Simulator

    simulators: list[Simulator] = []

    def start(**options: Any) -> Simulator:
        sim = Simulator(**options).start()
        simulators.append(sim)
        return sim

    yield start
    for sim in simulators:
        sim.stop()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print how many documented commands tests/test_docs_commands.py ran, so CI's output shows the count."""
    ran = parsed = 0
    for outcome in ("passed", "failed"):
        for report in terminalreporter.stats.get(outcome, []):
            if getattr(report, "when", None) != "call":
                continue
            properties = dict(getattr(report, "user_properties", ()))
            ran += int(properties.get("docs_commands_run", 0))
            parsed += int(properties.get("docs_commands_parsed", 0))
    if ran or parsed:
        terminalreporter.write_sep("-", "documented commands")
        terminalreporter.write_line(
            f"documented commands: {ran} run, {parsed} parsed only (cannot run here: CANNOT_RUN in "
            "tests/test_docs_commands.py)"
        )
