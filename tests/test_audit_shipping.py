"""Tests of shipping the audit trail: cursor, resume, follow, crashes (SIGKILL), a rewritten log."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ccs_exporter.audit import AuditLog
from ccs_exporter.audit.export import format_named
from ccs_exporter.audit.export.cursor import Cursor, CursorError, read_cursor, write_cursor
from ccs_exporter.audit.export.destinations import Shipment
from ccs_exporter.audit.export.shipper import RetryPolicy, Shipper, ShipSettings
from ccs_exporter.audit.export.source import SourceError

WRITER = Path(__file__).parent / "audit_writer.py"
EVENT_START = '{"@timestamp"'


def append(log: Path, count: int, label: str = "t") -> None:
    audit = AuditLog(log, user_name="CCS\\writer", fsync=False)
    for number in range(count):
        audit.append(
            {
                "event": {"kind": "state", "action": "job.changed", "outcome": "success"},
                "audit": {"id": f"{label}-{number}", "phase": "observation", "origin": "observed"},
            }
        )


class Collected:
    """A destination that keeps what it was sent; fails the first ``failures`` sends."""

    def __init__(self, failures: int = 0, name: str = "memory") -> None:
        self.name = name
        self.sequences: list[int] = []
        self.failures = failures

    def send(self, batch: Any) -> None:
        from ccs_exporter.audit.export.destinations import DeliveryError

        if self.failures:
            self.failures -= 1
            raise DeliveryError("busy")
        self.sequences.extend(item.sequence for item in batch)

    def close(self) -> None:
        pass


def ship(log: Path, cursor: Path | None, destination: Any, **kwargs: Any) -> Any:
    settings = ShipSettings(
        log, format_named("ecs"), cursor_path=cursor, retry=RetryPolicy(0.01, 0.02), **kwargs
    )
    return Shipper(settings, destination).run()


class TestCursor:
    def test_cursor_round_trip_and_atomic_replace(self, tmp_path: Path) -> None:
        """A written cursor reads back; no temporary file is left beside it."""
        path = tmp_path / "cursor.json"
        cursor = Cursor(7, "a" * 64, 1234, "stdout")
        write_cursor(path, cursor)
        write_cursor(path, cursor)
        assert read_cursor(path) == cursor
        assert sorted(p.name for p in tmp_path.iterdir()) == ["cursor.json"]

    @pytest.mark.parametrize(
        "content", [b"", b"{", b'{"sequence": -1, "hash": "x", "offset": 0}', b"x" * 5000]
    )
    def test_a_bad_cursor_file_is_refused_without_echoing_it(self, tmp_path: Path, content: bytes) -> None:
        """Not a cursor: CursorError naming the file, never its content."""
        path = tmp_path / "cursor.json"
        path.write_bytes(content)
        with pytest.raises(CursorError) as caught:
            read_cursor(path)
        assert str(path) in str(caught.value) and "xxxx" not in str(caught.value)


class TestShipper:
    def test_resumes_after_the_cursor_without_gap_or_repeat(self, tmp_path: Path) -> None:
        """Two runs with one cursor ship 1..N once each, whatever was appended in between."""
        log, cursor = tmp_path / "audit.log", tmp_path / "cursor.json"
        append(log, 450)
        first = Collected()
        ship(log, cursor, first)
        append(log, 30)
        second = Collected()
        report = ship(log, cursor, second)
        assert first.sequences == list(range(1, 451))
        assert second.sequences == list(range(451, 481))
        assert report.last.sequence == 480 and read_cursor(cursor) == report.last

    def test_delivery_failures_are_retried_and_nothing_is_skipped(self, tmp_path: Path) -> None:
        """A destination failing three times in a row still gets every record, in order."""
        log = tmp_path / "audit.log"
        append(log, 20)
        destination = Collected(failures=3)
        report = ship(log, None, destination)
        assert destination.sequences == list(range(1, 21)) and report.retries == 3

    def test_a_rewritten_log_stops_shipping(self, tmp_path: Path) -> None:
        """A log replaced by another chain (same length) no longer matches the cursor: SourceError."""
        log, cursor = tmp_path / "audit.log", tmp_path / "cursor.json"
        append(log, 10)
        ship(log, cursor, Collected())
        log.unlink()
        Path(f"{log}.head").unlink()
        append(log, 12, label="forged")
        with pytest.raises(SourceError, match="no longer matches"):
            ship(log, cursor, Collected())

    def test_a_log_that_breaks_its_chain_stops_shipping(self, tmp_path: Path) -> None:
        """A record deleted from the middle is never shipped past."""
        log = tmp_path / "audit.log"
        append(log, 10)
        lines = log.read_text(encoding="utf-8").splitlines(keepends=True)
        log.write_text("".join(lines[:4] + lines[5:]), encoding="utf-8")
        destination = Collected()
        with pytest.raises(SourceError, match=r"record 6 .* does not follow record 4"):
            ship(log, None, destination)
        assert destination.sequences == [1, 2, 3, 4]

    def test_a_cursor_of_another_destination_is_refused(self, tmp_path: Path) -> None:
        """One cursor file per destination: resuming with another's would skip records."""
        log, cursor = tmp_path / "audit.log", tmp_path / "cursor.json"
        append(log, 3)
        write_cursor(cursor, Cursor(0, "0" * 64, 0, "syslog+tls://siem:6514"))
        with pytest.raises(SourceError, match="belongs to destination"):
            ship(log, cursor, Collected())


def cli(*args: str, **kwargs: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "ccs_exporter", "audit", "export", *args, "--log-level", "error"],
        env={**os.environ, "TZ": "UTC"},
        **kwargs,
    )


def jobs_run(sim: Any, log: Path, job: int = 0) -> subprocess.Popen[bytes]:
    """`ccs-exporter jobs run` against the simulator, appending its intent and result to ``log`` (a job
    already running is refused by CCS: exit 1, and the intent and result are written all the same)."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("CCS_EXPORTER_")}
    environment.update(
        CCS_EXPORTER_URL=sim.url,
        CCS_EXPORTER_USERNAME=sim.username,
        CCS_EXPORTER_PASSWORD=sim.password,
        CCS_EXPORTER_AUDIT_LOG=str(log),
        CCS_EXPORTER_LOG_LEVEL="error",
        TZ="UTC",
    )
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ccs_exporter",
            "jobs",
            "run",
            sim.job_ids[job % len(sim.job_ids)],
            "--reason",
            "CHG-24",
        ],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def sequences_in(path: Path) -> list[int]:
    """Every event's sequence in a stdout capture; a line torn by SIGKILL is cut to the event after it."""
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        start = line.rfind(EVENT_START)
        try:
            found.append(json.loads(line[start:])["event"]["sequence"])
        except (ValueError, KeyError):
            continue  # a torn tail with no complete event after it: that batch was sent again
    return found


@pytest.mark.integration
class TestFollow:
    def test_follow_ships_what_other_processes_append_and_stops_on_sigterm(self, tmp_path: Path) -> None:
        """Records appended by other processes arrive; SIGTERM ends the follower with exit 0."""
        log, out = tmp_path / "audit.log", tmp_path / "out.jsonl"
        with open(out, "wb") as sink:
            follower = cli(
                str(log), "--format", "ecs", "--follow", "--cursor", str(tmp_path / "c"), stdout=sink
            )
            try:
                subprocess.run([sys.executable, str(WRITER), str(log), "25", "a"], check=True, timeout=60)
                deadline = time.monotonic() + 30
                while len(sequences_in(out)) < 25 and time.monotonic() < deadline:
                    time.sleep(0.1)
            finally:
                follower.send_signal(signal.SIGTERM)
                code = follower.wait(timeout=30)
        assert code == 0
        assert sequences_in(out) == list(range(1, 26))

    def test_sigkill_twenty_times_loses_nothing(self, tmp_path: Path, simulator: Any) -> None:
        """A follower killed with SIGKILL 20 times while writer processes and `ccs-exporter jobs run`
        append, then restarted: every sequence arrives, none is skipped; duplicates are counted."""
        rng = random.Random(24)
        log, out, cursor = tmp_path / "audit.log", tmp_path / "out.jsonl", tmp_path / "cursor.json"
        seen_during = []
        with open(out, "ab") as sink:
            for round_number in range(20):
                writer = subprocess.Popen([sys.executable, str(WRITER), str(log), "30", f"w{round_number}"])
                job_run = None
                if round_number % 4 == 0:  # the audited CLI appends its intent and result meanwhile
                    job_run = jobs_run(simulator, log, job=round_number // 4)
                follower = cli(str(log), "--format", "ecs", "--follow", "--cursor", str(cursor), stdout=sink)
                before = seen_during[-1] if seen_during else 0
                deadline = time.monotonic() + 120
                while len(sequences_in(out)) <= before and time.monotonic() < deadline:
                    time.sleep(
                        0.02
                    )  # killed once it is shipping: a random point of the work, not of start-up
                time.sleep(rng.uniform(0, 0.3))
                follower.kill()
                follower.wait(timeout=30)
                assert writer.wait(timeout=120) == 0
                assert job_run is None or job_run.wait(timeout=120) in (0, 1)
                seen_during.append(len(sequences_in(out)))
        with open(out, "ab") as sink:
            last = cli(str(log), "--format", "ecs", "--cursor", str(cursor), stdout=sink)
            assert last.wait(timeout=120) == 0
        received = sequences_in(out)
        total = 600 + 2 * 5  # the writers' records, and an intent and a result per `jobs run`
        assert set(received) == set(range(1, total + 1)), sorted(set(range(1, total + 1)) - set(received))[
            :20
        ]
        assert len(set(seen_during)) == 20  # every follower was killed after it had shipped something
        actions = {
            json.loads(line[line.rfind(EVENT_START) :])["event"]["action"]
            for line in out.read_text().splitlines()
            if EVENT_START in line
        }
        assert "job.run" in actions
        print(f"{total} records, {len(received)} events received, {len(received) - total} duplicates")
        assert read_cursor(cursor) is not None and read_cursor(cursor).sequence == total  # type: ignore[union-attr]

    def test_cursor_mismatch_is_one_line_and_exit_1(self, tmp_path: Path) -> None:
        """A log rewritten under a cursor: the command stops with exit 1 and one line, ships nothing."""
        log, cursor = tmp_path / "audit.log", tmp_path / "cursor.json"
        append(log, 5)
        ship(log, cursor, Collected(name="stdout"))
        Path(f"{log}.head").unlink()
        log.unlink()
        append(log, 5, label="other")
        follower = cli(
            str(log),
            "--format",
            "ecs",
            "--cursor",
            str(cursor),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        stdout, stderr = follower.communicate(timeout=60)
        assert follower.returncode == 1 and stdout == b""
        assert len(stderr.decode().strip().splitlines()) == 1 and b"no longer matches" in stderr


def test_stdout_shipment_lines() -> None:
    """The stdout destination writes each event line followed by a newline and flushes."""
    import io

    from ccs_exporter.audit.export.destinations.stdout import StdoutDestination

    stream = io.BytesIO()
    StdoutDestination(stream).send(
        [Shipment(1, "h", "t", None, None, "a", '{"x":1}'), Shipment(2, "h", "t", None, None, "a", "{}")]
    )
    assert stream.getvalue() == b'{"x":1}\n{}\n'


class TestShippingMetrics:
    def test_shipped_sequence_per_cursor_and_unreadable_cursor(self, tmp_path: Path) -> None:
        """Each cursor's sequence and destination; a missing file is 0; a broken one is readable 0."""
        from prometheus_client import CollectorRegistry

        from ccs_exporter.audit.export.metrics import ShippingCollector

        good, missing, broken = tmp_path / "good", tmp_path / "missing", tmp_path / "broken"
        write_cursor(good, Cursor(41, "b" * 64, 100, "syslog+tls://siem:6514"))
        broken.write_text("nonsense", encoding="utf-8")
        registry = CollectorRegistry()
        registry.register(ShippingCollector([good, missing, broken]))
        value = registry.get_sample_value
        name = "ccs_audit_export_shipped_sequence"
        assert value(name, {"cursor": str(good), "destination": "syslog+tls://siem:6514"}) == 41
        assert value(name, {"cursor": str(missing), "destination": ""}) == 0
        assert value(name, {"cursor": str(broken), "destination": ""}) is None
        assert value("ccs_audit_export_cursor_readable", {"cursor": str(broken)}) == 0
        write_cursor(good, Cursor(42, "c" * 64, 200, "syslog+tls://siem:6514"))
        assert value(name, {"cursor": str(good), "destination": "syslog+tls://siem:6514"}) == 42

    def test_setting_takes_a_comma_separated_list(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """CCS_EXPORTER_AUDIT_EXPORT_CURSORS: comma-separated files, at most 16."""
        from ccs_exporter.settings.values import parse_cursor_paths

        assert parse_cursor_paths("/a/c1, /b/c2,/a/c1") == [Path("/a/c1"), Path("/b/c2")]
        with pytest.raises(ValueError, match="at most 16"):
            parse_cursor_paths(",".join(f"/c{n}" for n in range(17)))


@pytest.mark.integration
class TestServeExposesShipping:
    def test_metrics_show_the_head_and_what_was_shipped(self, tmp_path: Path) -> None:
        """serve with CCS_EXPORTER_AUDIT_EXPORT_CURSORS: /metrics has the shipped sequence beside the head."""
        import requests

        from ccs_exporter.exporter import Exporter
        from ccs_exporter.settings.config import load_settings
        from ccs_exporter.simulator import Simulator

        log, cursor = tmp_path / "audit.log", tmp_path / "siem.cursor"
        append(log, 12)
        ship(log, cursor, Collected(name="stdout"))
        append(log, 3)
        with Simulator() as sim:
            settings = load_settings(
                None,
                {
                    "url": sim.url,
                    "username": sim.username,
                    "password": sim.password,
                    "job_ids": sim.job_ids[:1],
                    "listen_address": "127.0.0.1:0",
                    "poll_interval_seconds": 0.5,
                    "audit_log": log,
                    "audit_export_cursors": str(cursor),
                },
            )
            with Exporter(settings, audit_log=AuditLog.from_settings(settings)) as exporter:
                assert exporter.wait_ready(20)
                text = requests.get(f"{exporter.url}/metrics", timeout=10).text
        assert "ccs_audit_head_sequence 15.0" in text
        assert f'ccs_audit_export_shipped_sequence{{cursor="{cursor}",destination="stdout"}} 12.0' in text
        assert f'ccs_audit_export_cursor_readable{{cursor="{cursor}"}} 1.0' in text

    def test_a_follower_waits_for_a_log_that_does_not_exist_yet(self, tmp_path: Path) -> None:
        """A sidecar starting before the first record: it waits, then ships what is written."""
        log, out = tmp_path / "audit.log", tmp_path / "out.jsonl"
        with open(out, "wb") as sink:
            follower = cli(str(log), "--format", "ecs", "--follow", "--poll-interval", "0.05", stdout=sink)
            try:
                time.sleep(1.0)
                assert follower.poll() is None  # still waiting, not failed
                append(log, 4)
                deadline = time.monotonic() + 60
                while len(sequences_in(out)) < 4 and time.monotonic() < deadline:
                    time.sleep(0.05)
            finally:
                follower.terminate()
                assert follower.wait(timeout=60) == 0
        assert sequences_in(out) == [1, 2, 3, 4]


class TestTornLine:
    def test_a_torn_line_repaired_by_the_writer_is_shipped_through(self, tmp_path: Path) -> None:
        """A follower that saw a torn last line ships the recovery record and what follows, no error."""
        import threading

        log = tmp_path / "audit.log"
        append(log, 3)
        destination = Collected()
        settings = ShipSettings(log, format_named("ecs"), follow=True, poll_seconds=0.02)
        shipper = Shipper(settings, destination)
        failures: list[BaseException] = []

        def run() -> None:
            try:
                shipper.run()
            except BaseException as exc:
                failures.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        try:
            deadline = time.monotonic() + 30
            while len(destination.sequences) < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            with open(log, "ab") as handle:
                handle.write(b'{"@timestamp":"2026-03-01T09:00:00.000000Z","audit":{"hash":"0123')  # a crash
            time.sleep(0.3)  # the follower has looked at the torn line
            append(log, 2, label="after")
            while len(destination.sequences) < 6 and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            shipper.stop()
            thread.join(timeout=30)
        assert failures == []
        assert destination.sequences == [1, 2, 3, 4, 5, 6]  # 4 is the recovery record
