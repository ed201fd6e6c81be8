"""The exporter under CCS faults: it keeps serving, says what is wrong, keeps stale values, recovers alone.

Each fault is injected into the simulator while an exporter polls it every half second with a short
request timeout. Logs are captured as JSON lines to check that errors are logged once per state change.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import structlog
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from ccs_exporter.cli.logs import configure_logging
from ccs_exporter.client import LOGIN_BACKOFF_MAX_SECONDS, LOGIN_BACKOFF_SECONDS, CcsClient
from ccs_exporter.client import tokens as token_module
from ccs_exporter.errors import AuthError
from ccs_exporter.exporter import Exporter
from ccs_exporter.settings.config import load_settings
from ccs_exporter.simulator import Simulator

pytestmark = pytest.mark.integration

JOBS = 4  # fewer than the per-cycle cap on job log lines, so every state change is visible
INTERVAL = 0.5
TIMEOUT = 0.5
# Generous behaviour bounds, not performance targets.
SCRAPE_BOUND = 2.0
RECOVERY_BOUND = 6.0


class LogCapture:
    """JSON log lines written by structlog since the test started (or since ``mark``)."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self._mark = 0

    def mark(self) -> None:
        self._mark = len(self.stream.getvalue())

    def events(self, since_mark: bool = True) -> list[dict[str, Any]]:
        text = self.stream.getvalue()[self._mark if since_mark else 0 :]
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def problems(self) -> list[dict[str, Any]]:
        """Warning and error events since the mark."""
        return [event for event in self.events() if event["level"] in ("warning", "error", "critical")]


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    """structlog configured to write JSON lines into a buffer; the previous set-up restored after."""
    saved = structlog.get_config()
    capture = LogCapture()
    configure_logging("info", "json", stream=capture.stream)
    yield capture
    structlog.configure(**saved)


@dataclass
class Ccs:
    """The simulator, replaceable by a new one on the same port (CCS down, then back)."""

    sim: Simulator
    extra: dict[str, Any] = field(default_factory=dict)

    def down(self) -> None:
        self.sim.stop()

    def up(self) -> None:
        port, deadline = self.sim.port, time.monotonic() + 10
        while True:
            try:
                self.sim = Simulator(port=port, run_interval=None, **self.extra).start()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


@pytest.fixture
def ccs() -> Iterator[Ccs]:
    """A running simulator with the sample jobs (runs frozen)."""
    holder = Ccs(Simulator(port=0, run_interval=None).start())
    yield holder
    holder.sim.stop()


def settings_for(sim: Simulator, **extra: Any) -> Any:
    values: dict[str, Any] = {
        "url": sim.url,
        "username": sim.username,
        "password": sim.password,
        "job_ids": sim.job_ids[:JOBS],
        "listen_address": "127.0.0.1:0",
        "poll_interval_seconds": INTERVAL,
        "request_timeout_seconds": TIMEOUT,
        "concurrency": JOBS,
    }
    values.update(extra)
    return load_settings(None, values)


@pytest.fixture
def exporter_for(logs: LogCapture) -> Iterator[Callable[..., Exporter]]:
    """Starts exporters (ready before returned) and stops them after the test."""
    started: list[Exporter] = []

    def start(sim: Simulator, **extra: Any) -> Exporter:
        exporter = Exporter(settings_for(sim, **extra)).start()
        started.append(exporter)
        assert exporter.wait_ready(15)
        return exporter

    yield start
    for exporter in started:
        exporter.stop()


Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(exporter: Exporter) -> Series:
    """/metrics as {(name, labels): value}; fails if it does not answer within SCRAPE_BOUND."""
    started = time.monotonic()
    response = requests.get(f"{exporter.url}/metrics", timeout=SCRAPE_BOUND)
    assert time.monotonic() - started < SCRAPE_BOUND
    assert response.status_code == 200
    found: Series = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def job_values(series: Series, name: str) -> dict[str, float]:
    return {dict(labels)["job_id"]: value for (metric, labels), value in series.items() if metric == name}


def wait_for(exporter: Exporter, predicate: Callable[[Series], bool], timeout: float) -> tuple[Series, float]:
    """Scrape until ``predicate`` holds; return the last scrape and how long it took."""
    started = time.monotonic()
    while True:
        series = scrape(exporter)
        if predicate(series):
            return series, time.monotonic() - started
        assert time.monotonic() - started < timeout, "condition not reached in time"
        time.sleep(0.05)


def healthy(series: Series) -> bool:
    polls = job_values(series, "ccs_job_poll_success")
    return series.get(("ccs_up", frozenset())) == 1 and len(polls) == JOBS and all(polls.values())


def all_failed(series: Series) -> bool:
    polls = job_values(series, "ccs_job_poll_success")
    return len(polls) == JOBS and not any(polls.values())


@dataclass(frozen=True)
class Fault:
    apply: Callable[[Ccs], None]
    clear: Callable[[Ccs], None]
    up: float  # ccs_up while the fault lasts
    error: str  # the jobs' failure kind
    alarm: str  # the one CCS-level event logged when it starts


def _set(**faults: Any) -> Callable[[Ccs], None]:
    def apply(ccs: Ccs) -> None:
        for name, value in faults.items():
            setattr(ccs.sim.faults, name, value)

    return apply


def _wrong_password(ccs: Ccs) -> None:
    ccs.sim.revoke_tokens()
    ccs.sim.faults.reject_logins = True


FAULTS = {
    "connection_refused": Fault(Ccs.down, Ccs.up, 0, "unavailable", "ccs_unreachable"),
    "hang": Fault(_set(hang=True), lambda ccs: ccs.sim.faults.clear(), 0, "timeout", "ccs_unreachable"),
    "500_burst": Fault(
        _set(error_rate=1.0), lambda ccs: ccs.sim.faults.clear(), 0, "server_error", "ccs_unreachable"
    ),
    "malformed_json": Fault(
        _set(malformed_json=True), lambda ccs: ccs.sim.faults.clear(), 1, "bad_response", ""
    ),
    "dropped_connections": Fault(
        _set(drop_connections=True), lambda ccs: ccs.sim.faults.clear(), 0, "unavailable", "ccs_unreachable"
    ),
    "wrong_password": Fault(
        _wrong_password, lambda ccs: ccs.sim.faults.clear(), 0, "auth", "ccs_login_failed"
    ),
}


class TestFaults:
    """Every fault: still serving, honest metrics, stale values kept, logged once, recovered alone."""

    @pytest.mark.parametrize("name", sorted(FAULTS))
    def test_fault_is_reported_and_recovered(
        self,
        name: str,
        ccs: Ccs,
        exporter_for: Callable[..., Exporter],
        logs: LogCapture,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """During the fault ccs_up/poll_success say so and data ages grow; after it, all recovers alone."""
        fault = FAULTS[name]
        # The real lockout guard waits 15 s after a refused login; a second keeps this test short.
        monkeypatch.setattr(token_module, "LOGIN_BACKOFF_SECONDS", 1.0)
        exporter = exporter_for(ccs.sim)
        before = wait_for(exporter, healthy, 10)[0]
        job_ids = set(job_values(before, "ccs_job_poll_success"))
        kept = job_values(before, "ccs_job_last_run_status_code")
        logs.mark()

        fault.apply(ccs)
        during, _ = wait_for(exporter, all_failed, 10)
        ages = job_values(during, "ccs_job_data_age_seconds")
        assert exporter.last_snapshot is not None
        cycles = exporter.last_snapshot.cycles
        deadline = time.monotonic() + 10
        while exporter.last_snapshot.cycles < cycles + 2:  # more failing cycles
            assert time.monotonic() < deadline
            time.sleep(0.1)
        later = scrape(exporter)
        assert exporter.loop._thread.is_alive()
        assert later[("ccs_up", frozenset())] == fault.up
        assert all_failed(later)
        assert job_values(later, "ccs_job_last_run_status_code") == kept  # last good values stay
        assert set(job_values(later, "ccs_job_info")) == job_ids
        assert all(job_values(later, "ccs_job_data_age_seconds")[job] > ages[job] for job in job_ids)
        assert exporter.last_snapshot is not None
        assert {job.error for job in exporter.last_snapshot.jobs} == {fault.error}

        fault.clear(ccs)
        _, recovery = wait_for(exporter, healthy, RECOVERY_BOUND)
        time.sleep(2 * INTERVAL)
        assert healthy(scrape(exporter))

        problems = Counter((event["event"], event.get("job_id")) for event in logs.problems())
        assert all(count == 1 for count in problems.values()), problems
        failed = {job for (event, job) in problems if event == "job_poll_failed"}
        assert failed == job_ids or fault.alarm == "ccs_login_failed"
        if fault.alarm:
            assert problems[(fault.alarm, None)] == 1
        recovered = Counter(
            (event["event"], event.get("job_id")) for event in logs.events() if event["level"] == "info"
        )
        assert all(recovered[("job_poll_recovered", job)] == 1 for job in failed)
        assert recovered[("ccs_reachable", None)] == (1 if fault.up == 0 else 0)
        print(f"{name}: recovered {recovery:.2f} s after the fault cleared")


class TestTokens:
    """Token faults are absorbed without failing a poll."""

    def test_all_tokens_revoked(
        self, ccs: Ccs, exporter_for: Callable[..., Exporter], logs: LogCapture
    ) -> None:
        """After a CCS restart revokes every token, one new login follows and no poll fails."""
        exporter = exporter_for(ccs.sim)
        wait_for(exporter, healthy, 10)
        logs.mark()
        ccs.sim.reset_requests()
        ccs.sim.revoke_tokens()
        time.sleep(6 * INTERVAL)
        assert healthy(scrape(exporter))
        assert ccs.sim.request_count("token") == 1
        assert logs.problems() == []

    def test_short_lived_tokens(self, exporter_for: Callable[..., Exporter], logs: LogCapture) -> None:
        """With 1 s access and 1.5 s refresh tokens, refreshes and re-logins keep every poll working."""
        with Simulator(port=0, run_interval=None, access_token_seconds=1.0, refresh_token_seconds=1.5) as sim:
            exporter = exporter_for(sim)
            time.sleep(5)
            assert healthy(scrape(exporter))
            tokens = sim.request_count("token")
            # Read while CCS still answers: once the simulator stops, the exporter's next poll fails.
            problems = logs.problems()
        assert problems == []
        assert 3 <= tokens <= 20  # renewed, but not on every request

    def test_refused_refresh_falls_back_to_login(
        self, exporter_for: Callable[..., Exporter], logs: LogCapture
    ) -> None:
        """An expired access token whose refresh token CCS no longer knows leads to a login, not a failure."""
        with Simulator(port=0, run_interval=None, access_token_seconds=1.0, refresh_token_seconds=600) as sim:
            exporter = exporter_for(sim, poll_interval_seconds=2.0)
            sim.revoke_tokens()  # the client still holds them; the access token expires before the next cycle
            sim.reset_requests()
            time.sleep(2.5)
            assert healthy(scrape(exporter))
            token_statuses = Counter(record.status for record in sim.requests if record.endpoint == "token")
        assert token_statuses == {400: 1, 200: 1}  # the refused refresh, then the login
        assert logs.problems() == []


class TestWrongPassword:
    """A wrong password cannot lock the CCS account."""

    def test_few_login_attempts(self, ccs: Ccs, exporter_for: Callable[..., Exporter]) -> None:
        """Polling every 0.2 s with a refused password makes one login attempt in 6 s, not thirty."""
        ccs.sim.faults.reject_logins = True
        exporter = Exporter(settings_for(ccs.sim, poll_interval_seconds=0.2)).start()
        try:
            time.sleep(6)
            series = scrape(exporter)
        finally:
            exporter.stop()
        assert series[("ccs_up", frozenset())] == 0
        assert ccs.sim.request_count("token") == 1
        assert ccs.sim.request_count("job") == 0

    def test_backoff_schedule(self, ccs: Ccs) -> None:
        """Attempts come 15 s, 30 s, 60 s... apart up to 5 minutes: at most 3 in any minute, 10 in an hour."""
        ccs.sim.faults.reject_logins = True
        now = [0.0]
        attempts: list[float] = []
        with CcsClient(
            ccs.sim.url, ccs.sim.username, SecretStr("wrong"), backoff_seconds=0, clock=lambda: now[0]
        ) as client:
            for second in range(3600):
                now[0] = float(second)
                before = ccs.sim.request_count("token")
                with pytest.raises(AuthError):
                    client.authenticate()
                if ccs.sim.request_count("token") > before:
                    attempts.append(now[0])
        gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
        assert gaps[:5] == [15, 30, 60, 120, 240]
        assert LOGIN_BACKOFF_SECONDS == 15 and all(gap == LOGIN_BACKOFF_MAX_SECONDS for gap in gaps[5:])
        assert max(sum(1 for at in attempts if start <= at < start + 60) for start in attempts) <= 3
        assert len(attempts) <= 16


def _serve(sim: Simulator, *extra: str) -> subprocess.Popen[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CCS_EXPORTER_")}
    env.update(
        CCS_EXPORTER_URL=sim.url,
        CCS_EXPORTER_USERNAME=sim.username,
        CCS_EXPORTER_PASSWORD=sim.password,
        CCS_EXPORTER_JOB_IDS=",".join(sim.job_ids),
        CCS_EXPORTER_LOG_FORMAT="json",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "ccs_exporter", "serve", "--listen-address", "127.0.0.1:0", *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class TestSigterm:
    """SIGTERM ends `serve` promptly even while CCS hangs."""

    @pytest.mark.parametrize("when", ["jobs_hang", "login_hangs"])
    def test_sigterm_while_ccs_hangs(self, ccs: Ccs, when: str) -> None:
        """With requests stuck for up to 30 s, SIGTERM still exits 0 within a few seconds."""
        if when == "login_hangs":
            ccs.sim.faults.hang = True
        process = _serve(ccs.sim, "--poll-interval", "0.5", "--request-timeout", "30")
        lines: list[str] = []
        started_up = threading.Event()

        def read_stderr() -> None:
            assert process.stderr is not None
            for line in process.stderr:
                lines.append(line)
                if '"exporter_started"' in line:
                    started_up.set()

        reader = threading.Thread(target=read_stderr, daemon=True)
        reader.start()
        try:
            # Signal handlers are in place once the exporter says it started (a loaded machine may take
            # seconds to import); before that SIGTERM would end the interpreter the default way.
            assert started_up.wait(30), "".join(lines)
            deadline = time.monotonic() + 15
            while when == "jobs_hang" and ccs.sim.request_count("job") == 0:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.05)
            ccs.sim.faults.hang = True
            time.sleep(1.5)  # a cycle is now stuck on CCS
            assert process.poll() is None
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=20)
            took = time.monotonic() - started
            reader.join(5)
            stderr = "".join(lines)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            ccs.sim.faults.clear()
        assert process.returncode == 0, stderr
        assert took < 8, f"took {took:.1f} s"
        assert "exporter_stopped" in stderr and "Traceback" not in stderr
        print(f"SIGTERM ({when}): exited in {took:.2f} s")

    def test_revoked_tokens_and_refused_login_are_down_at_once(self, ccs: Ccs) -> None:
        """When CCS revokes the token and refuses the new login mid-run, that very cycle says ccs_up 0."""
        from ccs_exporter.polling.cycle import Poller

        client = CcsClient(ccs.sim.url, ccs.sim.username, SecretStr(ccs.sim.password), backoff_seconds=0)
        poller = Poller(client, ccs.sim.job_ids[:JOBS])
        try:
            assert poller.poll_cycle().up
            _wrong_password(ccs)
            snapshot = poller.poll_cycle()
        finally:
            poller.close()
            client.close()
        assert {job.error for job in snapshot.jobs} == {"auth"}
        assert not snapshot.up


class TestLogVolume:
    """Many jobs changing state at once are summed up, and good news is not a warning."""

    def test_outage_and_recovery_of_many_jobs(self, ccs: Ccs, logs: LogCapture) -> None:
        """Twelve jobs failing log ten lines and one warning; their recovery logs no warning at all."""
        from ccs_exporter.polling.cycle import Poller

        client = CcsClient(
            ccs.sim.url,
            ccs.sim.username,
            SecretStr(ccs.sim.password),
            timeout=TIMEOUT,
            backoff_seconds=0,
            pool_size=12,  # one connection per worker: urllib3 warns when a 13th is discarded
        )
        poller = Poller(client, ccs.sim.job_ids, concurrency=12)
        try:
            poller.poll_cycle()
            logs.mark()
            ccs.sim.faults.malformed_json = True
            poller.poll_cycle()
            poller.poll_cycle()
            failing = logs.problems()
            logs.mark()
            ccs.sim.faults.clear()
            poller.poll_cycle()
            recovering = logs.events()
        finally:
            poller.close()
            client.close()
        assert len(ccs.sim.job_ids) == 12
        assert [event["event"] for event in failing].count("job_poll_failed") == 10
        summary = [event for event in failing if event["event"] == "job_poll_changes_not_logged"]
        assert len(summary) == 1 and summary[0]["jobs"] == 2 and summary[0]["failing"] == 2
        assert [event for event in recovering if event["level"] != "info"] == []
        assert [event["event"] for event in recovering].count("job_poll_recovered") == 10
