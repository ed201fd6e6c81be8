"""Tests of the audit head as metrics: ccs_audit_head_sequence and ccs_audit_head_hash48, read per scrape."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client import CollectorRegistry

from ccs_exporter.audit import AuditLog
from ccs_exporter.audit.auditor import ChangeAuditor
from ccs_exporter.audit.export.cursor import read_cursor
from ccs_exporter.audit.head import Head, HeadReader, head_path
from ccs_exporter.errors import AuditError
from ccs_exporter.exporter import Exporter
from ccs_exporter.exposition.live import LiveMetrics, RequestStats
from ccs_exporter.settings.checks import read_password_file
from ccs_exporter.settings.config import load_settings
from ccs_exporter.simulator import Simulator
from ccs_exporter.web.config import load_web_config

TESTS_DIR = Path(__file__).parent
head_module = importlib.import_module("ccs_exporter.audit.head")


def observation(number: int) -> dict[str, object]:
    return {
        "event": {"kind": "state", "action": "job.changed", "outcome": "success"},
        "audit": {"id": f"obs-{number}", "phase": "observation", "origin": "observed"},
    }


def last_record(path: Path) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(path.read_text(encoding="utf-8").splitlines()[-1])
    return record


def append_from_another_process(path: Path, count: int) -> None:
    done = subprocess.run(
        [sys.executable, str(TESTS_DIR / "audit_writer.py"), str(path), str(count), "cli"],
        env={**os.environ, "PYTHONPATH": str(TESTS_DIR.parent)},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "audit.log"


def head_values(audit_log: AuditLog) -> tuple[float | None, float | None]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ChangeAuditor(audit_log).collector())
    return (
        registry.get_sample_value("ccs_audit_head_sequence"),
        registry.get_sample_value("ccs_audit_head_hash48"),
    )


class TestHeadReader:
    def test_new_log_has_the_genesis_head(self, log_path: Path) -> None:
        """Before anything is written the head is sequence 0, hash 0 (the genesis hash)."""
        assert HeadReader(log_path).current() == Head(0, "0" * 64)
        log_path.write_bytes(b"")
        assert HeadReader(log_path).current() == Head(0, "0" * 64)

    @pytest.mark.integration
    def test_head_follows_appends_of_another_process(self, log_path: Path) -> None:
        """Records another process appends show in the next read."""
        reader = HeadReader(log_path)
        AuditLog(log_path, user_name="CCS\\demo").append(observation(1))
        assert reader.current() == Head(1, str(last_record(log_path)["audit"]["hash"]))
        append_from_another_process(log_path, 3)
        head = reader.current()
        assert head is not None and head.sequence == 4
        assert head.hash == last_record(log_path)["audit"]["hash"]

    def test_head_file_is_read_only_when_it_changed(
        self, log_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Scrapes of an unchanged head cost a stat, not a read."""
        audit_log = AuditLog(log_path, user_name="CCS\\demo")
        audit_log.append(observation(1))
        reads: list[Path] = []
        original = head_module.read_head

        def counting(path: Path) -> Head:
            reads.append(path)
            return original(path)

        monkeypatch.setattr(head_module, "read_head", counting)
        reader = HeadReader(log_path)
        for _ in range(20):
            reader.current()
        audit_log.append(observation(2))
        for _ in range(20):
            assert reader.current() == Head(2, str(last_record(log_path)["audit"]["hash"]))
        assert len(reads) == 2

    def test_missing_head_of_a_log_with_records_is_unknown(self, log_path: Path) -> None:
        """With records but no head file, there is no head to report, and the problem is told once."""
        AuditLog(log_path, user_name="CCS\\demo").append(observation(1))
        head_path(log_path).unlink()
        problems: list[str | None] = []
        reader = HeadReader(log_path, on_problem=problems.append)
        assert reader.current() is None
        assert reader.current() is None
        assert problems == [f"{head_path(log_path)} is missing"]

    def test_unreadable_head_then_repaired(self, log_path: Path) -> None:
        """A garbled head gives no head; the next append's head is read again, and the recovery told."""
        audit_log = AuditLog(log_path, user_name="CCS\\demo")
        audit_log.append(observation(1))
        head_path(log_path).write_text("garbage", encoding="utf-8")
        problems: list[str | None] = []
        reader = HeadReader(log_path, on_problem=problems.append)
        assert reader.current() is None
        audit_log.append(observation(2))
        head = reader.current()
        assert head is not None and head.sequence == 2
        assert len(problems) == 2 and "is not a head file" in str(problems[0]) and problems[1] is None


class TestHeadMetrics:
    def test_gauges_are_the_last_records_sequence_and_hash_prefix(self, log_path: Path) -> None:
        """ccs_audit_head_hash48 is the first 12 hex digits of the last hash, exact as a float."""
        audit_log = AuditLog(log_path, user_name="CCS\\demo")
        for number in range(3):
            audit_log.append(observation(number))
        last_hash = str(last_record(log_path)["audit"]["hash"])
        assert head_values(audit_log) == (3.0, float(int(last_hash[:12], 16)))
        assert int(head_values(audit_log)[1] or 0) == int(last_hash[:12], 16)

    def test_gauges_absent_while_the_head_is_missing(self, log_path: Path) -> None:
        """No head, no head gauges: a wrong value would be worse than none."""
        audit_log = AuditLog(log_path, user_name="CCS\\demo")
        audit_log.append(observation(1))
        head_path(log_path).unlink()
        assert head_values(audit_log) == (None, None)

    @pytest.mark.integration
    def test_exposition_with_the_head_passes_promtool(
        self, log_path: Path, require_tool: Callable[[str], str]
    ) -> None:
        """promtool check metrics finds nothing in the live part with the audit families."""
        promtool = require_tool("promtool")
        audit_log = AuditLog(log_path, user_name="CCS\\demo")
        audit_log.append(observation(1))
        body = LiveMetrics(RequestStats(), [ChangeAuditor(audit_log).collector()]).render()
        assert b"ccs_audit_head_hash48 " in body
        result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=60)
        assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
        assert result.stdout.strip() == b"" and result.stderr.strip() == b""

    @pytest.mark.integration
    def test_serve_shows_records_the_cli_appended(self, tmp_path: Path) -> None:
        """serve's /metrics follows the head as another process appends, without a poll cycle."""
        path = tmp_path / "audit.log"
        with Simulator(port=0, run_interval=None) as sim:
            settings = load_settings(
                None,
                {
                    "url": sim.url,
                    "username": sim.username,
                    "password": sim.password,
                    "job_ids": sim.job_ids[:1],
                    "listen_address": "127.0.0.1:0",
                    "poll_interval_seconds": 3600,
                    "audit_log": path,
                },
            )
            with Exporter(settings, audit_log=AuditLog.from_settings(settings)) as exporter:
                assert exporter.wait_ready(10)
                before = requests.get(f"{exporter.url}/metrics", timeout=5).text
                append_from_another_process(path, 5)
                after = requests.get(f"{exporter.url}/metrics", timeout=5).text
        assert "ccs_audit_head_sequence 0.0" in before
        assert "ccs_audit_head_sequence 5.0" in after
        last_hash = str(last_record(path)["audit"]["hash"])
        expected = next(line for line in after.splitlines() if line.startswith("ccs_audit_head_hash48 "))
        assert float(expected.split()[1]) == int(last_hash[:12], 16)


def _unblock_fifo_readers(path: Path) -> None:
    """Open ``path`` for writing once, so a reader stuck opening the FIFO (the defect) can go on."""
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


def _outcome_within(seconds: float, fifo: Path, work: Callable[[], object]) -> BaseException | None:
    """Run ``work`` on a thread: the exception it raised (None if none); fails the test if it blocked."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            work()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    hung = thread.is_alive()
    _unblock_fifo_readers(fifo)
    thread.join(5)
    assert not hung, "blocked on the FIFO"
    return outcome[0]


class TestHeadIsNotARegularFile:
    def test_reader_refuses_a_fifo_at_once(self, log_path: Path) -> None:
        """A FIFO in place of the head is reported as not a regular file; nothing waits on it."""
        AuditLog(log_path, user_name="CCS\\demo").append(observation(1))
        fifo = head_path(log_path)
        fifo.unlink()
        os.mkfifo(fifo)
        error = _outcome_within(5, fifo, lambda: head_module.read_head(fifo))
        assert isinstance(error, ValueError) and "not a regular file" in str(error)
        problems: list[str | None] = []
        reader = HeadReader(log_path, on_problem=problems.append)
        assert _outcome_within(5, fifo, reader.current) is None
        assert reader.current() is None
        assert problems == [f"{fifo} is not a regular file"]

    def test_writer_refuses_to_append_instead_of_hanging(self, log_path: Path) -> None:
        """The writer reads the head before each append: a FIFO there fails the append, it never blocks."""
        AuditLog(log_path, user_name="CCS\\demo").append(observation(1))
        fifo = head_path(log_path)
        fifo.unlink()
        os.mkfifo(fifo)
        audit_log = AuditLog(log_path, user_name="CCS\\demo")
        error = _outcome_within(10, fifo, lambda: audit_log.append(observation(2)))
        assert isinstance(error, AuditError) and "not a regular file" in str(error)
        assert len(log_path.read_text(encoding="utf-8").splitlines()) == 1

    @pytest.mark.integration
    def test_serve_keeps_answering_with_a_fifo_as_head(self, tmp_path: Path) -> None:
        """/metrics and /healthz answer (without head gauges) while a FIFO sits where the head belongs."""
        path = tmp_path / "audit.log"
        AuditLog(path, user_name="CCS\\demo").append(observation(1))
        head_path(path).unlink()
        os.mkfifo(head_path(path))
        with Simulator(port=0, run_interval=None) as sim:
            settings = load_settings(
                None,
                {
                    "url": sim.url,
                    "username": sim.username,
                    "password": sim.password,
                    "job_ids": sim.job_ids[:1],
                    "listen_address": "127.0.0.1:0",
                    "poll_interval_seconds": 3600,
                    "audit_log": path,
                },
            )
            with Exporter(settings, audit_log=AuditLog.from_settings(settings)) as exporter:
                try:
                    assert exporter.wait_ready(10)
                    metrics = requests.get(f"{exporter.url}/metrics", timeout=5)
                    health = requests.get(f"{exporter.url}/healthz", timeout=5)
                finally:
                    _unblock_fifo_readers(head_path(path))
        assert metrics.status_code == 200 and health.status_code == 200
        samples = [line.split()[0] for line in metrics.text.splitlines() if not line.startswith("#")]
        assert "ccs_up" in samples and "ccs_audit_head_sequence" not in samples


class TestOtherFilesReadWhileServing:
    """Files read while serving, not only the head: a FIFO in their place is refused at once."""

    def test_cursor_password_and_web_config_fifos_are_refused(self, tmp_path: Path) -> None:
        """The export cursor (each scrape), the password file (each login) and the web config (each
        reload) each give their one-line error for a FIFO, and none of them waits on it."""
        fifo = tmp_path / "fifo"
        os.mkfifo(fifo)
        readers: list[Callable[[], object]] = [
            lambda: read_cursor(fifo),
            lambda: read_password_file(fifo),
            lambda: load_web_config(fifo),
        ]
        for read in readers:
            error = _outcome_within(5, fifo, read)
            assert error is not None and "not a regular file" in str(error), repr(error)
