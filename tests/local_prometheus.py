"""Test helper: a real Prometheus on 127.0.0.1 (free port, temp dir), stopped by its own PID."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from conftest import free_port

# Local HTTP only: never through a proxy from the environment.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))
STARTUP_BOUND_SECONDS = 60.0


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """(status, body) of a GET on loopback."""
    try:
        with _HTTP.open(url, timeout=timeout) as response:
            return int(response.status), response.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


def api(base_url: str, path: str, **params: str) -> Any:
    """The ``data`` of a Prometheus API call; AssertionError on an error status."""
    url = f"{base_url}{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    status, body = http_get(url)
    payload = json.loads(body)
    assert status == 200 and payload["status"] == "success", f"{path} {params}: {status} {body[:500]}"
    return payload["data"]


def stop(process: subprocess.Popen[str]) -> None:
    """Stop one process we started, by its PID: SIGTERM, then SIGKILL after 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def wait_until(what: str, check: Any, bound: float, process: subprocess.Popen[str]) -> float:
    """Seconds until ``check()`` is true; AssertionError after ``bound`` s or when ``process`` exits."""
    started = time.monotonic()
    while time.monotonic() - started < bound:
        if process.poll() is not None:
            tail = process.stderr.read()[-2000:] if process.stderr else ""
            raise AssertionError(f"{what}: process exited with {process.returncode}: {tail}")
        try:
            if check():
                return time.monotonic() - started
        except (OSError, ValueError, AssertionError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {bound:.0f} s")


@contextmanager
def running_prometheus(
    binary: str, work_dir: Path, config: dict[str, Any], *extra_args: str
) -> Iterator[str]:
    """Prometheus with ``config`` and its TSDB in ``work_dir``; yields its base URL."""
    config_file = work_dir / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={work_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
            *extra_args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            "prometheus /-/ready",
            lambda: http_get(f"{url}/-/ready")[0] == 200,
            STARTUP_BOUND_SECONDS,
            process,
        )
        yield url
    finally:
        stop(process)
