"""`ccs-exporter serve` and `demo` as a user runs them: real processes, signals, config reloads."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
import yaml
from conftest import free_port
from prometheus_client.parser import text_string_to_metric_families

from ccs_exporter.simulator import Simulator


def _job_ids_in(text: str) -> set[str]:
    return {
        sample.labels["job_id"]
        for family in text_string_to_metric_families(text)
        if family.name == "ccs_job_info"
        for sample in family.samples
    }


def _cycles(text: str) -> float:
    """The value of ccs_poll_cycles_total in an exposition."""
    found = [
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "ccs_poll_cycles"
        for sample in family.samples
    ]
    return found[0] if found else 0.0


def _wait_for(url: str, predicate: object = None, timeout: float = 20.0) -> requests.Response:
    """Poll ``url`` until it answers 200 (and ``predicate(response)`` holds); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: str = "no answer"
    while time.monotonic() < deadline:
        try:
            response = requests.get(url, timeout=2)
            if response.status_code == 200 and (predicate is None or predicate(response)):  # type: ignore[operator]
                return response
            last = f"{response.status_code}"
        except requests.ConnectionError as exc:
            last = type(exc).__name__
        time.sleep(0.2)
    pytest.fail(f"{url} did not become ready within {timeout} s (last: {last})")


@pytest.fixture
def sim(started: Callable[..., Simulator]) -> Simulator:
    """A simulator with the sample jobs, runs frozen."""
    started_simulator: Simulator = started(run_interval=None)
    return started_simulator


@pytest.fixture
def run_serve(tmp_path: Path, sim: Simulator) -> Iterator[object]:
    """Starts `ccs-exporter serve` processes with a config file; kills leftovers by PID at the end."""
    started: list[subprocess.Popen[bytes]] = []

    def start(job_ids: list[str], interval: float = 0.3) -> tuple[subprocess.Popen[bytes], str, Path]:
        port = free_port()
        config = tmp_path / "config.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "url": sim.url,
                    "username": sim.username,
                    "job_ids": job_ids,
                    "poll_interval_seconds": interval,
                    "listen_address": f"127.0.0.1:{port}",
                }
            ),
            encoding="utf-8",
        )
        env = {key: value for key, value in os.environ.items() if not key.startswith("CCS_EXPORTER_")}
        env["CCS_EXPORTER_PASSWORD"] = sim.password
        process = subprocess.Popen(
            [sys.executable, "-m", "ccs_exporter", "serve", "--config", str(config)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        started.append(process)
        return process, f"http://127.0.0.1:{port}", config

    yield start
    for process in started:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait(10)


class TestServe:
    """The daemon's life cycle."""

    @pytest.mark.integration
    def test_sighup_reloads_the_job_list(self, sim: Simulator, run_serve) -> None:  # type: ignore[no-untyped-def]
        """After the config file drops a job and SIGHUP arrives, that job's series disappear."""
        process, base, config = run_serve(sim.job_ids[:3], interval=30)
        first = _wait_for(f"{base}/metrics", lambda r: len(_job_ids_in(r.text)) == 3)
        assert _job_ids_in(first.text) == set(sim.job_ids[:3])
        data = yaml.safe_load(config.read_text(encoding="utf-8"))
        data["job_ids"] = sim.job_ids[1:3]
        config.write_text(yaml.safe_dump(data), encoding="utf-8")
        os.kill(process.pid, signal.SIGHUP)
        # With a 30 s interval, seeing the change within 10 s shows SIGHUP starts a cycle at once.
        reloaded = _wait_for(f"{base}/metrics", lambda r: sim.job_ids[0] not in _job_ids_in(r.text), 10)
        assert _job_ids_in(reloaded.text) == set(sim.job_ids[1:3])

    @pytest.mark.integration
    def test_sighup_picks_up_changed_searches(self, sim: Simulator, run_serve) -> None:  # type: ignore[no-untyped-def]
        """Replacing the config file's job_search and sending SIGHUP swaps the discovered jobs."""
        process, base, config = run_serve([], interval=30)
        _wait_for(f"{base}/readyz")  # the SIGHUP handler is in place
        data = yaml.safe_load(config.read_text(encoding="utf-8"))
        data["job_search"] = ["(JobType = REPORTJOB)"]
        config.write_text(yaml.safe_dump(data), encoding="utf-8")
        os.kill(process.pid, signal.SIGHUP)
        report = "e1f3a5c7-2d4b-4e6f-9a8c-0b2d4f6a8c07"  # the one REPORTJOB sample
        first = _wait_for(f"{base}/metrics", lambda r: _job_ids_in(r.text) == {report}, 10)
        assert 'ccs_search_success{search="(JobType = REPORTJOB)"} 1.0' in first.text
        data["job_search"] = ["(JobName Contains DMZ)"]
        config.write_text(yaml.safe_dump(data), encoding="utf-8")
        os.kill(process.pid, signal.SIGHUP)
        swapped = _wait_for(f"{base}/metrics", lambda r: report not in _job_ids_in(r.text), 10)
        assert _job_ids_in(swapped.text) == {"5e7b9c14-3a2d-4b8f-a1e6-7c0d9f8e4d04"}
        assert "REPORTJOB" not in swapped.text.split("ccs_search_jobs", 1)[1]

    @pytest.mark.integration
    def test_changed_config_file_is_picked_up(self, sim: Simulator, run_serve) -> None:  # type: ignore[no-untyped-def]
        """Adding a job to the config file makes it appear without a restart."""
        _, base, config = run_serve(sim.job_ids[:1])
        _wait_for(f"{base}/readyz")
        data = yaml.safe_load(config.read_text(encoding="utf-8"))
        data["job_ids"] = sim.job_ids[:2]
        time.sleep(0.05)  # a distinct mtime even on coarse clocks
        config.write_text(yaml.safe_dump(data), encoding="utf-8")
        reloaded = _wait_for(f"{base}/metrics", lambda r: len(_job_ids_in(r.text)) == 2)
        assert _job_ids_in(reloaded.text) == set(sim.job_ids[:2])

    @pytest.mark.integration
    def test_bad_reload_keeps_the_old_list(self, sim: Simulator, run_serve) -> None:  # type: ignore[no-untyped-def]
        """A config file made invalid while running is reported (log line and
        ccs_exporter_config_last_reload_successful 0) and the old job list stays; fixed, it goes back to 1."""
        process, base, config = run_serve(sim.job_ids[:2])
        _wait_for(f"{base}/readyz")
        good = config.read_text(encoding="utf-8")
        first = _reload_state(requests.get(f"{base}/metrics", timeout=5).text)
        assert first[0] == 1.0
        config.write_text(good + "job_ids: [not-a-guid]\n", encoding="utf-8")
        os.kill(process.pid, signal.SIGHUP)
        failed = _wait_for(f"{base}/metrics", lambda r: _reload_state(r.text)[0] == 0.0, 10)
        assert _job_ids_in(failed.text) == set(sim.job_ids[:2])
        assert _reload_state(failed.text)[1] == first[1]  # the last success is still the start
        time.sleep(1.1)  # a later second for the success timestamp
        config.write_text(good, encoding="utf-8")
        os.kill(process.pid, signal.SIGHUP)
        fixed = _wait_for(f"{base}/metrics", lambda r: _reload_state(r.text)[0] == 1.0, 10)
        assert _reload_state(fixed.text)[1] > first[1]
        os.kill(process.pid, signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
        assert b"reload_failed" in stderr
        assert process.returncode == 0

    @pytest.mark.integration
    def test_nothing_to_watch_warns_at_start_and_each_reload(self, sim: Simulator, run_serve) -> None:  # type: ignore[no-untyped-def]
        """No job ids and no search: a nothing_to_watch warning at start and after each SIGHUP."""
        process, base, _ = run_serve([], interval=30)
        _wait_for(f"{base}/readyz")
        assert "ccs_watched_jobs 0.0" in requests.get(f"{base}/metrics", timeout=5).text
        for _ in range(2):
            os.kill(process.pid, signal.SIGHUP)
            time.sleep(1.0)
        os.kill(process.pid, signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
        warnings = [line for line in stderr.decode().splitlines() if '"nothing_to_watch"' in line]
        assert len(warnings) == 3, stderr.decode()
        assert all('"level": "warning"' in line and "CCS_EXPORTER_JOB_SEARCH" in line for line in warnings)

    @pytest.mark.integration
    def test_search_matching_nothing_is_logged_once(self, sim: Simulator, run_serve) -> None:  # type: ignore[no-untyped-def]
        """A search CCS finds no job for is logged once with its expression, not every cycle."""
        process, base, config = run_serve([], interval=0.3)
        _wait_for(f"{base}/readyz")
        data = yaml.safe_load(config.read_text(encoding="utf-8"))
        data["job_search"] = ["(JobName Contains No Such Job Anywhere)"]
        config.write_text(yaml.safe_dump(data), encoding="utf-8")
        os.kill(process.pid, signal.SIGHUP)
        _wait_for(f"{base}/metrics", lambda r: "No Such Job Anywhere" in r.text)
        _wait_for(f"{base}/metrics", lambda r: _cycles(r.text) >= 5)  # several cycles with the search
        os.kill(process.pid, signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
        said = [line for line in stderr.decode().splitlines() if '"search_matched_nothing"' in line]
        assert len(said) == 1, stderr.decode()
        assert "(JobName Contains No Such Job Anywhere)" in said[0]
        assert "nothing_to_watch" in stderr.decode()  # at start, before the search was added

    @pytest.mark.integration
    def test_sigterm_stops_cleanly(self, sim: Simulator, run_serve) -> None:  # type: ignore[no-untyped-def]
        """SIGTERM ends the process with exit code 0 and an exporter_stopped log line."""
        process, base, _ = run_serve(sim.job_ids[:2])
        _wait_for(f"{base}/readyz")
        os.kill(process.pid, signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
        assert process.returncode == 0
        assert b'"exporter_stopped"' in stderr

    @pytest.mark.integration
    def test_busy_port_is_a_configuration_error(self, sim: Simulator, run_serve) -> None:  # type: ignore[no-untyped-def]
        """A listen address already in use exits 2 with one line naming the setting."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            env = {key: value for key, value in os.environ.items() if not key.startswith("CCS_EXPORTER_")}
            env.update(
                CCS_EXPORTER_URL=sim.url,
                CCS_EXPORTER_USERNAME=sim.username,
                CCS_EXPORTER_PASSWORD=sim.password,
                CCS_EXPORTER_LISTEN_ADDRESS=f"127.0.0.1:{port}",
            )
            result = subprocess.run(
                [sys.executable, "-m", "ccs_exporter", "serve"], env=env, capture_output=True, timeout=30
            )
        assert result.returncode == 2
        lines = result.stderr.decode().strip().splitlines()
        assert len(lines) == 1 and "listen_address" in lines[0]


@pytest.mark.integration
class TestDemo:
    """The README's run command."""

    def test_demo_serves_metrics_and_stops_on_ctrl_c(self) -> None:
        """`ccs-exporter demo` prints the URL, serves the sample jobs, and exits 0 on SIGINT."""
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "ccs_exporter", "demo", "--listen-address", f"127.0.0.1:{port}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            response = _wait_for(
                f"http://127.0.0.1:{port}/metrics", lambda r: len(_job_ids_in(r.text)) >= 12, timeout=30
            )
            assert "ccs_up 1.0" in response.text
            process.send_signal(signal.SIGINT)
            stdout, _ = process.communicate(timeout=15)
        finally:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(10)
        assert process.returncode == 0
        assert f"http://127.0.0.1:{port}/metrics" in stdout.decode()

    def test_busy_simulator_port_is_one_line(self) -> None:
        """`demo --simulator-port` on a port already taken exits 2 with one line naming the option."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "ccs_exporter",
                    "demo",
                    "--simulator-port",
                    str(port),
                    "--listen-address",
                    "127.0.0.1:0",
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [result.stderr.strip()]
        assert "--simulator-port" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.integration
class TestSimulateInput:
    """`ccs-exporter simulate` refuses bad options with one line, before it listens."""

    @pytest.mark.parametrize(
        ("args", "named"),
        [
            (["--port", "70000"], "--port"),
            (["--port", "http"], "--port"),
            (["--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem"], "--tls-cert"),
            (["--job-ids-file", "/"], "--job-ids-file"),
            (["--job-ids-file", "/nonexistent/dir/ids.txt"], "--job-ids-file"),
        ],
    )
    def test_bad_option_exits_2_naming_it(self, args: list[str], named: str) -> None:
        """A port out of range, a missing TLS file or an unwritable ids file: exit 2, no traceback."""
        result = subprocess.run(
            [sys.executable, "-m", "ccs_exporter", "simulate", "--port", "0", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2, result.stderr
        assert named in result.stderr
        assert "Traceback" not in result.stderr


def _reload_state(text: str) -> tuple[float, float]:
    """(ccs_exporter_config_last_reload_successful, ..._success_timestamp_seconds) in an exposition."""
    values = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith("ccs_exporter_config_last_reload_")
    }
    return (
        values["ccs_exporter_config_last_reload_successful"],
        values["ccs_exporter_config_last_reload_success_timestamp_seconds"],
    )
