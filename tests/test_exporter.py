"""The exporter end to end against the simulator: polling, conditional fetches, failures, HTTP endpoints."""

from __future__ import annotations

import gzip
import json
import os
import platform
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from ccs_exporter.client import CcsClient
from ccs_exporter.exporter import Exporter
from ccs_exporter.exposition.renderer import render_snapshot
from ccs_exporter.polling.cycle import Poller
from ccs_exporter.polling.snapshot import PollSnapshot
from ccs_exporter.settings.config import Settings, load_settings
from ccs_exporter.simulator import Simulator

GOLDEN = Path(__file__).parent / "golden" / "exposition.prom"
# Families whose values depend on wall time or machine speed; everything else is pinned by the golden file.
_VOLATILE = ("ccs_poll_duration_seconds",)
# The states of ccs_job_last_run_status, in the order of their status codes (0-7).
RUN_STATES = ("none", "pending", "executing", "idle", "completed", "faulted", "custom", "aborted")


def _client(sim: Simulator, timeout: float = 10.0) -> CcsClient:
    from pydantic import SecretStr

    return CcsClient(sim.url, sim.username, SecretStr(sim.password), timeout=timeout, backoff_seconds=0.0)


def _series(text: bytes) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(text.decode("utf-8")):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def _job_series_names(text: bytes, job_id: str) -> set[str]:
    return {name for name, labels in _series(text) if ("job_id", job_id) in labels}


@pytest.fixture
def sim(started: Callable[..., Simulator]) -> Simulator:
    """A simulator with the built-in sample jobs, runs frozen in time."""
    started_simulator: Simulator = started(run_interval=None)
    return started_simulator


@pytest.fixture
def poller_for(sim: Simulator) -> Iterator[Callable[..., Poller]]:
    """Builds pollers over the simulator's jobs and closes them afterwards."""
    made: list[tuple[Poller, CcsClient]] = []

    def make(job_ids: list[str] | None = None, timeout: float = 10.0, **kwargs: object) -> Poller:
        client = _client(sim, timeout)
        poller = Poller(client, job_ids if job_ids is not None else sim.job_ids, **kwargs)  # type: ignore[arg-type]
        made.append((poller, client))
        return poller

    yield make
    for poller, client in made:
        poller.close()
        client.close()


def _golden_text(snapshot: PollSnapshot) -> str:
    lines = render_snapshot(snapshot).decode("utf-8").splitlines()
    return "\n".join(line for line in lines if not any(name in line for name in _VOLATILE)) + "\n"


@pytest.mark.integration
class TestGoldenExposition:
    """The whole job exposition for the fixed sample scenario."""

    def test_sample_scenario_matches_the_golden_file(
        self, sim: Simulator, poller_for: Callable[..., Poller]
    ) -> None:
        """Rendering the sample jobs gives exactly the reviewed exposition (UPDATE_GOLDEN=1 rewrites it).

        The clock is the samples' capture instant, so the schedule series stand as the README's table says.
        """
        captured_at = sim.captured_at.timestamp()
        poller = poller_for(clock=lambda: captured_at)
        text = _golden_text(poller.poll_cycle())
        if os.environ.get("UPDATE_GOLDEN"):
            GOLDEN.parent.mkdir(parents=True, exist_ok=True)
            GOLDEN.write_text(text, encoding="utf-8")
        assert text == GOLDEN.read_text(encoding="utf-8")


@pytest.mark.integration
class TestConditionalPolling:
    """A steady-state cycle costs about one request per job."""

    def test_runs_are_fetched_only_for_changed_or_running_jobs(
        self, sim: Simulator, poller_for: Callable[..., Poller]
    ) -> None:
        """After the first cycle, only running jobs and jobs with a new run fetch their runs."""
        poller = poller_for()
        first = poller.poll_cycle()
        jobs = len(sim.job_ids)
        assert first.runs_fetched == jobs
        running = sum(
            1
            for job in first.jobs
            if job.data is not None and job.data.runs is not None and job.data.runs.running
        )
        assert running >= 1  # the sample scenario has a job executing
        sim.reset_requests()
        second = poller.poll_cycle()
        assert sim.request_count("job") == jobs
        assert sim.request_count("jobruns") == running == second.runs_fetched
        assert sim.request_count("token") == 0

        idle = next(
            job.job_id for job in second.jobs if job.data and job.data.runs and not job.data.runs.running
        )
        sim.finish_run(idle, 5, {"Error": 2})
        sim.reset_requests()
        third = poller.poll_cycle()
        assert sim.request_count("jobruns") == running + 1
        state = next(job for job in third.jobs if job.job_id == idle)
        assert state.data is not None and state.data.runs is not None
        assert state.data.runs.status_code == 5
        assert dict(state.data.runs.messages)["error"] == 2


@pytest.mark.integration
class TestFailures:
    """One job's failure stays that job's, and values are kept or dropped as documented."""

    def test_deleted_job_loses_its_series_and_others_are_unaffected(
        self, sim: Simulator, poller_for: Callable[..., Poller]
    ) -> None:
        """After a 404 only ccs_job_poll_success 0 remains for that job; other jobs still succeed."""
        poller = poller_for()
        poller.poll_cycle()
        gone = sim.job_ids[0]
        sim.remove_job(gone)
        snapshot = poller.poll_cycle()
        text = render_snapshot(snapshot)
        assert _job_series_names(text, gone) == {"ccs_job_poll_success"}
        assert _series(text)[("ccs_job_poll_success", frozenset({("job_id", gone)}))] == 0
        assert all(job.poll_success for job in snapshot.jobs if job.job_id != gone)
        assert snapshot.up

    def test_unknown_job_id_fails_alone(self, sim: Simulator, poller_for: Callable[..., Poller]) -> None:
        """A configured id that CCS does not know is reported failed; ccs_up stays 1."""
        missing = "00000000-0000-4000-8000-000000000000"
        snapshot = poller_for([missing, sim.job_ids[0]]).poll_cycle()
        states = {job.job_id: job for job in snapshot.jobs}
        assert not states[missing].poll_success and states[missing].error == "not_found"
        assert states[sim.job_ids[0]].poll_success
        assert snapshot.up

    def test_timeouts_keep_last_values_and_recover(
        self, sim: Simulator, poller_for: Callable[..., Poller]
    ) -> None:
        """While CCS hangs jobs fail with their old values kept; when it answers again they recover."""
        poller = poller_for(sim.job_ids[:2], timeout=0.5)
        good = poller.poll_cycle()
        sim.faults.hang = True
        try:
            bad = poller.poll_cycle()
        finally:
            sim.faults.hang = False
        assert not bad.up
        assert all(not job.poll_success and job.error == "timeout" for job in bad.jobs)
        assert [job.data for job in bad.jobs] == [job.data for job in good.jobs]
        again = poller.poll_cycle()
        assert again.up and all(job.poll_success for job in again.jobs)

    def test_wrong_password_marks_ccs_down_and_keeps_values(self, sim: Simulator) -> None:
        """A refused login makes ccs_up 0 and every job failed with reason auth, sending no job request."""
        from pydantic import SecretStr

        with CcsClient(sim.url, sim.username, SecretStr("wrong"), backoff_seconds=0.0) as client:
            poller = Poller(client, sim.job_ids[:3])
            try:
                snapshot = poller.poll_cycle()
            finally:
                poller.close()
        assert not snapshot.up
        assert {job.error for job in snapshot.jobs} == {"auth"}
        assert sim.request_count("job") == 0

    def test_removed_jobs_are_forgotten_on_reload(
        self, sim: Simulator, poller_for: Callable[..., Poller]
    ) -> None:
        """Dropping a job from the list removes all of its series at the next cycle."""
        poller = poller_for(sim.job_ids[:3])
        poller.poll_cycle()
        poller.set_job_ids(sim.job_ids[1:3])
        text = render_snapshot(poller.poll_cycle())
        assert _job_series_names(text, sim.job_ids[0]) == set()
        assert _job_series_names(text, sim.job_ids[1])


@pytest.mark.integration
class TestJobChangesAsData:
    """The poller hands on job changes in the snapshot; it never writes anything itself."""

    def test_rename_and_removal_are_in_the_snapshot(
        self, sim: Simulator, poller_for: Callable[..., Poller]
    ) -> None:
        """A console rename gives a change with both readings; a removal gives one whose after is None."""
        renamed, removed, quiet = sim.job_ids[:3]
        poller = poller_for([renamed, removed, quiet], track_changes=True)
        assert poller.poll_cycle().changes == ()
        sim.set_job_name(renamed, "Renamed in the console")
        sim.remove_job(removed)
        changes = {change.job_id: change for change in poller.poll_cycle().changes}
        assert set(changes) == {renamed, removed}
        assert changes[renamed].before.JobProperties.Name != "Renamed in the console"
        after = changes[renamed].after
        assert after is not None and after.JobProperties.Name == "Renamed in the console"
        assert changes[removed].after is None
        assert changes[removed].before.JobProperties.JobID == removed
        assert poller.poll_cycle().changes == ()

    def test_no_changes_without_tracking(self, sim: Simulator, poller_for: Callable[..., Poller]) -> None:
        """Without track_changes the poller keeps no job payloads and reports no changes."""
        poller = poller_for(sim.job_ids[:2])
        poller.poll_cycle()
        sim.set_job_name(sim.job_ids[0], "Renamed in the console")
        assert poller.poll_cycle().changes == ()


def _settings(sim: Simulator, **extra: object) -> Settings:
    values: dict[str, object] = {
        "url": sim.url,
        "username": sim.username,
        "password": sim.password,
        "job_ids": sim.job_ids,
        "listen_address": "127.0.0.1:0",
        "poll_interval_seconds": 0.2,
        "request_timeout_seconds": 5.0,
    }
    values.update(extra)
    return load_settings(None, values)


@pytest.mark.integration
class TestExporterHttp:
    """The HTTP endpoints of a running exporter."""

    def test_endpoints_answer(self, sim: Simulator) -> None:
        """/healthz, /readyz, / and /metrics answer; unknown paths are 404."""
        with Exporter(_settings(sim)) as exporter:
            assert exporter.wait_ready(10)
            base = exporter.url
            assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
            assert requests.get(f"{base}/readyz", timeout=5).status_code == 200
            landing = requests.get(f"{base}/", timeout=5)
            assert "/metrics" in landing.text
            assert requests.get(f"{base}/nope", timeout=5).status_code == 404
            metrics = requests.get(f"{base}/metrics", timeout=5)
            assert metrics.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            series = _series(metrics.content)
            assert series[("ccs_up", frozenset())] == 1
            build = {("version", "0.1.0"), ("python_version", platform.python_version())}
            assert ("ccs_exporter_build_info", frozenset(build)) in series
            assert any(name == "process_resident_memory_bytes" for name, _ in series)
            infos = [labels for name, labels in series if name == "ccs_job_info"]
            assert len(infos) == len(sim.job_ids)

    def test_sparse_status_metric_setting_serves_one_status_series_per_job(self, sim: Simulator) -> None:
        """status_metric=sparse: each job has one ccs_job_last_run_status series, its state, at 1."""
        with Exporter(_settings(sim, status_metric="sparse")) as exporter:
            assert exporter.wait_ready(10)
            series = _series(requests.get(f"{exporter.url}/metrics", timeout=5).content)
        states: dict[str, str] = {}
        codes: dict[str, str] = {}
        for (name, labels), value in series.items():
            job = dict(labels)
            if name == "ccs_job_last_run_status":
                assert value == 1 and job["job_id"] not in states
                states[job["job_id"]] = job["status"]
            elif name == "ccs_job_last_run_status_code":
                codes[job["job_id"]] = RUN_STATES[int(value)]
        assert len(states) == len(sim.job_ids)
        assert states == codes

    def test_not_ready_before_the_first_cycle(self, sim: Simulator) -> None:
        """/readyz says 503 while the first cycle is still running, and /metrics already answers."""
        sim.faults.hang = True
        try:
            with Exporter(_settings(sim)) as exporter:
                assert requests.get(f"{exporter.url}/readyz", timeout=5).status_code == 503
                assert requests.get(f"{exporter.url}/metrics", timeout=5).status_code == 200
                sim.faults.hang = False
                assert exporter.wait_ready(15)
                assert requests.get(f"{exporter.url}/readyz", timeout=5).status_code == 200
        finally:
            sim.faults.hang = False

    def test_gzip_body_is_the_same_exposition(self, sim: Simulator) -> None:
        """A scraper asking for gzip gets a valid gzip stream holding the same job series."""
        with Exporter(_settings(sim, poll_interval_seconds=60)) as exporter:
            assert exporter.wait_ready(10)
            raw = requests.get(
                f"{exporter.url}/metrics", headers={"Accept-Encoding": "gzip"}, timeout=5, stream=True
            ).raw.read()
            plain = requests.get(
                f"{exporter.url}/metrics", headers={"Accept-Encoding": "identity"}, timeout=5
            )
        unzipped = gzip.decompress(raw)
        jobs = {key for key in _series(unzipped) if key[0].startswith("ccs_job_")}
        assert jobs == {key for key in _series(plain.content) if key[0].startswith("ccs_job_")}

    def test_scrape_does_not_wait_for_a_hung_cycle(self, sim: Simulator) -> None:
        """While CCS hangs mid-cycle, /metrics still answers from the last snapshot."""
        with Exporter(_settings(sim, request_timeout_seconds=30)) as exporter:
            assert exporter.wait_ready(10)
            sim.faults.hang = True
            try:
                time.sleep(0.5)  # the next cycle is now blocked on CCS for up to 30 s
                started = time.monotonic()
                response = requests.get(f"{exporter.url}/metrics", timeout=5)
                waited = time.monotonic() - started
            finally:
                sim.faults.hang = False
        assert response.status_code == 200
        assert ("ccs_up", frozenset()) in _series(response.content)
        assert waited < 5  # far less than the 30 s the cycle is stuck for

    def test_cycles_repeat_and_track_changes(self, sim: Simulator) -> None:
        """A new faulted run in CCS shows in /metrics within a few cycles."""
        job = sim.job_ids[0]
        with Exporter(_settings(sim)) as exporter:
            assert exporter.wait_ready(10)
            sim.finish_run(job, 5, {"Error": 3})
            deadline = time.monotonic() + 10
            value = None
            while time.monotonic() < deadline:
                text = requests.get(f"{exporter.url}/metrics", timeout=5).content
                value = _series(text).get(
                    ("ccs_job_last_run_status", frozenset({("job_id", job), ("status", "faulted")}))
                )
                if value == 1:
                    break
                time.sleep(0.1)
        assert value == 1


@pytest.mark.integration
class TestObservedChangesAudit:
    """With an audit log, serve records job changes made elsewhere, after publishing the cycle."""

    def test_console_rename_and_removal_are_recorded_and_counted(
        self, sim: Simulator, tmp_path: Path
    ) -> None:
        """A console rename and removal become job.changed and job.deleted records, counted in /metrics."""
        from ccs_exporter.audit import AuditLog, verify

        path = tmp_path / "audit.log"
        renamed, removed = sim.job_ids[:2]
        audit_log = AuditLog(path, user_name=sim.username)
        with Exporter(_settings(sim, job_ids=[renamed, removed]), audit_log=audit_log) as exporter:
            assert exporter.wait_ready(10)
            sim.set_job_name(renamed, "Renamed in the console")
            sim.remove_job(removed)
            deadline = time.monotonic() + 10
            series: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
            while time.monotonic() < deadline:
                series = _series(requests.get(f"{exporter.url}/metrics", timeout=5).content)
                deleted = (
                    "ccs_audit_records_total",
                    frozenset({("action", "job.deleted"), ("outcome", "success")}),
                )
                if series.get(deleted) == 1:
                    break
                time.sleep(0.1)
        changed = ("ccs_audit_records_total", frozenset({("action", "job.changed"), ("outcome", "success")}))
        assert series.get(changed) == 1
        assert series.get(("ccs_audit_write_errors_total", frozenset())) == 0
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        assert sorted((r["event"]["action"], r["ccs"]["job"]["id"]) for r in records) == [
            ("job.changed", renamed),
            ("job.deleted", removed),
        ]
        assert all(r["audit"]["origin"] == "observed" for r in records)
        assert verify(path).ok

    def test_serve_audit_log_never_holds_the_password(self, sim: Simulator, tmp_path: Path) -> None:
        """The audit log serve builds from the settings removes the CCS password from observed changes."""
        from ccs_exporter.audit import AuditLog

        path = tmp_path / "audit.log"
        job_id = sim.job_ids[0]
        settings = _settings(sim, job_ids=[job_id], audit_log=path)
        with Exporter(settings, audit_log=AuditLog.from_settings(settings)) as exporter:
            assert exporter.wait_ready(10)
            sim.edit_job(job_id, {"JobDescription": f"temporary login {sim.password} for the audit"})
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not (path.exists() and path.read_text(encoding="utf-8")):
                time.sleep(0.1)
        text = path.read_text(encoding="utf-8")
        assert "temporary login [REDACTED] for the audit" in text
        assert sim.password not in text

    def test_no_audit_families_without_an_audit_log(self, sim: Simulator) -> None:
        """Without an audit log, /metrics has no ccs_audit_* families."""
        with Exporter(_settings(sim, job_ids=sim.job_ids[:1])) as exporter:
            assert exporter.wait_ready(10)
            text = requests.get(f"{exporter.url}/metrics", timeout=5).text
        assert "ccs_audit_" not in text


class TestConcurrency:
    """Workers share one client and one token."""

    @pytest.mark.integration
    def test_one_login_for_many_workers(self, sim: Simulator, poller_for: Callable[..., Poller]) -> None:
        """Sixteen workers polling together log in exactly once."""
        poller = poller_for(concurrency=16)
        sim.reset_requests()
        poller.poll_cycle()
        assert sim.request_count("token") == 1

    def test_worker_pool_skips_the_rest_when_stopped(self) -> None:
        """Stopping mid-batch returns at once with the unstarted items skipped."""
        from ccs_exporter.polling.workers import WorkerPool

        pool = WorkerPool(1)
        stop = threading.Event()
        release = threading.Event()

        def slow(item: int) -> int:
            if item == 0:
                stop.set()
                release.wait(5)
            return item

        results: list[list[int | None]] = []
        thread = threading.Thread(target=lambda: results.append(pool.map(slow, [0, 1, 2], stop)))
        thread.start()
        thread.join(5)
        release.set()
        pool.close()
        assert results and results[0][1:] == [None, None]


@pytest.mark.integration
class TestPasswordFileRotation:
    """A password file is read again before each login, as a rotated Kubernetes secret needs."""

    def test_fixed_password_file_is_used_at_once(self, sim: Simulator, tmp_path: Path) -> None:
        """After a refused login, writing the right password into the file lets the next login through."""
        from ccs_exporter.errors import AuthError

        password_file = tmp_path / "password"
        password_file.write_text("wrong-password\n", encoding="utf-8")
        settings = load_settings(
            None, {"url": sim.url, "username": sim.username, "password_file": str(password_file)}
        )
        with CcsClient.from_settings(settings) as client:
            with pytest.raises(AuthError):
                client.authenticate()
            with pytest.raises(AuthError, match="suspended"):
                client.authenticate()  # the backoff holds while the password is unchanged
            password_file.write_text(sim.password + "\n", encoding="utf-8")
            client.authenticate()
            assert client.get_job(sim.job_ids[0]).JobProperties.JobID == sim.job_ids[0]

    def test_unreadable_file_keeps_the_last_password(self, sim: Simulator, tmp_path: Path) -> None:
        """A password file gone missing after start keeps the password read before."""
        password_file = tmp_path / "password"
        password_file.write_text(sim.password, encoding="utf-8")
        settings = load_settings(
            None, {"url": sim.url, "username": sim.username, "password_file": str(password_file)}
        )
        with CcsClient.from_settings(settings) as client:
            client.authenticate()
            password_file.unlink()
            sim.revoke_tokens()
            assert client.get_job(sim.job_ids[0]).JobProperties.JobID == sim.job_ids[0]
            assert client.logins == 2


@pytest.mark.integration
class TestResponseSizeSetting:
    """CCS_EXPORTER_MAX_RESPONSE_BYTES bounds what the client accepts from CCS."""

    def test_answers_over_the_limit_fail_the_job(self, sim: Simulator) -> None:
        """With a 64 KiB limit a job whose runs answer is larger is reported bad_response; others pass."""
        from ccs_exporter.errors import BadResponseError

        job_id = sim.job_ids[0]
        for _ in range(25):
            sim.finish_run(job_id, 5, {"Error": 40})  # 25 runs x 40 messages: far over 64 KiB
        settings = load_settings(
            None,
            {
                "url": sim.url,
                "username": sim.username,
                "password": sim.password,
                "max_response_bytes": 64 * 1024,
            },
        )
        with CcsClient.from_settings(settings) as client:
            with pytest.raises(BadResponseError):
                client.get_job_runs(job_id, count=0, show_messages=True)
            assert client.get_job_runs(sim.job_ids[1], count=0, show_messages=True).JobStatusInfo
