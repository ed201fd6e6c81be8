"""Shared test fixtures."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import responses
import structlog

FIXTURES_DIR = Path(__file__).parent / "fixtures"
# Set CCS_TEST_RECORD_INTEGRATION=FILE to list, instead of failing, the unmarked tests that start a process
# or a server (one node id a line): how the integration markers were first placed.
_RECORD_INTEGRATION = os.environ.get("CCS_TEST_RECORD_INTEGRATION")
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


def _simulators() -> Iterator[Callable[..., Any]]:
    """The one simulator factory: ``start(**options)`` starts a simulator; all are stopped afterwards."""
    from ccs_exporter.simulator import Simulator

    simulators: list[Simulator] = []

    def start(**options: Any) -> Simulator:
        sim = Simulator(**{"port": 0, **options}).start()
        simulators.append(sim)
        return sim

    yield start
    for sim in simulators:
        sim.stop()


@pytest.fixture
def started() -> Iterator[Callable[..., Any]]:
    """Start simulators with custom options (on free ports); all are stopped after the test."""
    yield from _simulators()


@pytest.fixture(scope="module")
def started_for_module() -> Iterator[Callable[..., Any]]:
    """Start simulators shared by a module's tests; all are stopped after the module."""
    yield from _simulators()


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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the one network helper of the tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def child_signals() -> None:
    """``preexec_fn`` for a child a test signals: SIGINT and SIGTERM at their defaults, not as inherited.

    A parent started under ``nohup`` or as a background job ignores SIGINT, and children inherit that.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    """Each test starts with structlog's defaults: a test that configured logging (a level filter, say)
    must not hide the log lines a later test on the same worker captures."""
    yield
    structlog.reset_defaults()


@pytest.fixture(scope="session", autouse=True)
def _default_signal_dispositions() -> None:
    """The test process itself handles SIGINT as Python does by default, even when started under ``nohup``."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGTERM) is signal.SIG_IGN:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


class _Unmarked(RuntimeError):
    """A test without the integration marker started a process or a server."""


@contextlib.contextmanager
def _guarded(item: pytest.Item) -> Iterator[None]:
    """Hold a test without ``@pytest.mark.integration`` to what ``-m "not integration"`` promises.

    Starting a process or listening on a socket fails the test (or is recorded, see
    ``CCS_TEST_RECORD_INTEGRATION``), so the marker cannot drift from what the tests do.
    """
    if item.get_closest_marker("integration") is not None:
        yield
        return
    popen_init, listen = subprocess.Popen.__init__, socket.socket.listen

    def refuse(what: str) -> None:
        if _RECORD_INTEGRATION:
            with open(_RECORD_INTEGRATION, "a", encoding="utf-8") as record:
                record.write(f"{item.nodeid}\t{what}\n")
            return
        raise _Unmarked(f"{item.nodeid} {what}: mark it @pytest.mark.integration")

    def guarded_popen(self: Any, *args: Any, **kwargs: Any) -> None:
        refuse("starts a process")
        popen_init(self, *args, **kwargs)

    def guarded_listen(self: Any, *args: Any) -> None:
        refuse("starts a server")
        listen(self, *args)

    subprocess.Popen.__init__ = guarded_popen  # type: ignore[method-assign]
    socket.socket.listen = guarded_listen  # type: ignore[method-assign]
    try:
        yield
    finally:
        subprocess.Popen.__init__ = popen_init  # type: ignore[method-assign]
        socket.socket.listen = listen  # type: ignore[method-assign]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    """Fixtures of a test without the integration marker start no process or server either."""
    with _guarded(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """A test without the integration marker starts no process or server."""
    with _guarded(item):
        return (yield)
