"""The process's own tokens echoed by CCS into job text are never printed or kept (issue 23, finding 8).

``jobs run`` and ``jobs get`` printed the access and refresh tokens CCS had echoed into a job's text, and
the audit record of the run kept them.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import responses

from ccs_exporter import cli

BASE = "https://ccs.example.test:12431"
API = f"{BASE}/ccs/api/v1"
JOB_ID = "23c59087-f3d4-4e05-a39e-3440c58e58fb"
ACCESS = "own-access-token-5Kq8Zt"
REFRESH = "own-refresh-token-9Wm2Xv"
ECHO = f"debug dump: token {ACCESS} / refresh {REFRESH}"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in list(os.environ):
        if name.startswith("CCS_EXPORTER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CCS_EXPORTER_URL", BASE)
    monkeypatch.setenv("CCS_EXPORTER_USERNAME", "CORP\\svc-ccs")
    monkeypatch.setenv("CCS_EXPORTER_PASSWORD", "Echo-Test-Pw1")
    monkeypatch.setenv("CCS_EXPORTER_LOG_LEVEL", "error")
    log_path = tmp_path / "audit.jsonl"
    monkeypatch.setenv("CCS_EXPORTER_AUDIT_LOG", str(log_path))
    return log_path


def _echoing_job(load_fixture: Callable[[str], Any]) -> Any:
    job = copy.deepcopy(load_fixture("search_job_by_id.json"))
    job["JobProperties"]["JobID"] = JOB_ID
    job["JobProperties"]["Name"] = f"nightly {ACCESS}"
    job["JobProperties"]["Description"] = ECHO
    return job


def _mock(mock: responses.RequestsMock, load_fixture: Callable[[str], Any]) -> None:
    mock.post(
        f"{API}/oauth/tokens",
        json={"access_token": ACCESS, "refresh_token": REFRESH, "expires_in": 3600},
    )
    mock.get(f"{API}/jobs/{JOB_ID}", json=_echoing_job(load_fixture))


@pytest.mark.parametrize("output", ["json", "table"])
def test_jobs_get_does_not_print_them(
    env: Path, load_fixture: Callable[[str], Any], capsys: pytest.CaptureFixture[str], output: str
) -> None:
    """``jobs get`` shows [REDACTED] where the job's text holds the process's tokens."""
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        _mock(mock, load_fixture)
        assert cli.main(["jobs", "get", JOB_ID, "-o", output]) == 0
    printed = capsys.readouterr()
    assert ACCESS not in printed.out + printed.err and REFRESH not in printed.out + printed.err
    assert "[REDACTED]" in printed.out


def test_jobs_run_neither_prints_nor_records_them(
    env: Path, load_fixture: Callable[[str], Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """``jobs run``: CCS's answer echoing the tokens is printed and recorded with them redacted."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        _mock(mock, load_fixture)
        mock.post(f"{API}/jobs/{JOB_ID}", json={"Message": f"started; {ECHO}", "JobRunID": "run-1"})
        assert cli.main(["jobs", "run", JOB_ID, "--reason", "echo test"]) == 0
    printed = capsys.readouterr()
    kept = env.read_text(encoding="utf-8")
    for where in (printed.out, printed.err, kept):
        assert ACCESS not in where and REFRESH not in where
    assert "[REDACTED]" in printed.out and "[REDACTED]" in kept
