"""The benchmark's separate processes: the CCS simulator and ``ccs-exporter serve``, stopped by PID.

Both run as their own Python processes so that neither the client under test nor the scraper shares a
GIL with them. Every wait is bounded; ``stop`` sends SIGTERM, then SIGKILL after a grace period. ``cpus``
pins a process to those CPUs from its start (Linux).
"""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import requests

from ccs_exporter.simulator.core import DEFAULT_PASSWORD, DEFAULT_USERNAME

_LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")


class ChildProcess:
    """A child process stopped by its own PID (SIGTERM, then SIGKILL): never by name."""

    def __init__(
        self,
        argv: list[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        cpus: frozenset[int] | None = None,
    ) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.popen = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env={**os.environ, **(env or {})},
            # Pinned between fork and exec, so every thread the program starts inherits it. The child runs
            # only sched_setaffinity there, which takes no lock another thread of this process may hold
            # (what makes preexec_fn unsafe in a threaded parent; glibc resets malloc's locks at fork).
            preexec_fn=None if cpus is None else functools.partial(os.sched_setaffinity, 0, cpus),
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self, grace_seconds: float = 10.0) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(grace_seconds)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        self._log.close()

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far (all its threads), from /proc/PID/stat."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def memory_kib(self) -> dict[str, int]:
        """VmRSS (resident now) and VmHWM (peak resident) from /proc/PID/status, in KiB."""
        values: dict[str, int] = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0])
        return values


class SimulatorProcess(ChildProcess):
    """``python -m ccs_exporter simulate`` with N generated jobs and a per-request latency."""

    def __init__(
        self, jobs: int, latency_ms: float, workdir: Path, cpus: frozenset[int] | None = None
    ) -> None:
        self.ids_file = workdir / f"sim-{jobs}-ids.txt"
        argv = [
            sys.executable,
            "-m",
            "ccs_exporter",
            "simulate",
            "--port",
            "0",
            "--jobs",
            str(jobs),
            "--latency-ms",
            str(latency_ms),
            "--job-ids-file",
            str(self.ids_file),
        ]
        super().__init__(argv, workdir / f"sim-{jobs}.log", cpus=cpus)
        self.url = self._read_url()
        self.job_ids = self.ids_file.read_text(encoding="utf-8").split()
        self.username = DEFAULT_USERNAME
        self.password = DEFAULT_PASSWORD
        self._control = requests.Session()

    def _read_url(self, timeout: float = 60.0) -> str:
        assert self.popen.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.popen.stdout.readline().decode("utf-8", "replace")
            if not line:
                break
            match = _LISTENING.search(line)
            if match:
                return match.group(1)
        self.stop()
        raise RuntimeError(f"the simulator did not start; see {self.log_path}")

    def control(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Call the simulator's control API (``/_simulator/...``); return its JSON answer."""
        response = self._control.request(
            method, f"{self.url}/_simulator/{path}", data=json.dumps(body or {}), timeout=30
        )
        response.raise_for_status()
        return response.json()

    def api_requests(self) -> int:
        """API requests served since the last reset (control requests excluded)."""
        return int(self.control("GET", "stats")["total"])

    def stop(self, grace_seconds: float = 10.0) -> None:
        if hasattr(self, "_control"):
            self._control.close()
        super().stop(grace_seconds)

    def __enter__(self) -> SimulatorProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def free_port() -> int:
    """A port free on 127.0.0.1 right now (a small race with other programs is acceptable here)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ExporterProcess(ChildProcess):
    """``python -m ccs_exporter serve`` watching every simulator job, cycles back to back."""

    def __init__(
        self,
        simulator: SimulatorProcess,
        concurrency: int,
        workdir: Path,
        poll_interval: float = 1.0,
        extra_settings: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        ca_file: Path | None = None,
        cpus: frozenset[int] | None = None,
    ) -> None:
        jobs = len(simulator.job_ids)
        config = workdir / f"exporter-{jobs}.json"
        password = workdir / "password"
        password.write_text(simulator.password, encoding="utf-8")
        self.port = free_port()
        # JSON is YAML: the settings file loader reads it, and 10,000 ids do not fit in one env var.
        config.write_text(
            json.dumps(
                {
                    "url": simulator.url,
                    "username": simulator.username,
                    "password_file": str(password),
                    "job_ids": simulator.job_ids,
                    "concurrency": concurrency,
                    "poll_interval_seconds": poll_interval,
                    "listen_address": f"127.0.0.1:{self.port}",
                    "log_level": "warning",
                    "log_format": "json",
                    **(extra_settings or {}),
                }
            ),
            encoding="utf-8",
        )
        argv = [sys.executable, "-m", "ccs_exporter", "serve", "--config", str(config)]
        super().__init__(argv, workdir / f"exporter-{jobs}.log", env, cpus)
        # With TLS (a tls_server_config in the web config), ``ca_file`` verifies the exporter's certificate.
        self.ca_file = ca_file
        self.url = f"{'https' if ca_file else 'http'}://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float) -> None:
        """Wait for /readyz (the first cycle published); raise with the log's path on timeout."""
        deadline = time.monotonic() + timeout
        with requests.Session() as session:
            while time.monotonic() < deadline:
                if self.popen.poll() is not None:
                    break
                try:
                    verify = str(self.ca_file) if self.ca_file else True
                    if session.get(f"{self.url}/readyz", timeout=5, verify=verify).status_code == 200:
                        return
                except requests.RequestException:
                    pass
                time.sleep(0.2)
        raise RuntimeError(f"the exporter was not ready within {timeout:g} s; see {self.log_path}")

    def __enter__(self) -> ExporterProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
