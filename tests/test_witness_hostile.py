"""`audit verify --witness` against a broken or hostile Prometheus: one line, exit 3, bounded time and RAM.

A small HTTP server on 127.0.0.1 (free port, its own thread, stopped by the test) answers every query with
what the test sets: nesting too deep for a parser, NaN and 1e400 as counts, a 400-digit time, an answer
dripped a byte a second, a 40 MB answer. `ccs-exporter audit verify` runs as its own process.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ccs_exporter.audit import AuditLog

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parent.parent
Answer = Callable[[BaseHTTPRequestHandler], None]


def _json_answer(body: bytes) -> Answer:
    def send(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return send


def _matrix(values: str) -> bytes:
    return (
        b'{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":['
        + values.encode()
        + b"]}]}}"
    )


class _Hostile(ThreadingHTTPServer):
    daemon_threads = True
    answer: Answer


class _Handler(BaseHTTPRequestHandler):
    server: _Hostile

    def do_GET(self) -> None:
        if "/runtimeinfo" in self.path:
            self.send_error(404)
            return
        with contextlib.suppress(OSError):  # the client went away
            self.server.answer(self)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hostile() -> Iterator[_Hostile]:
    server = _Hostile(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def audit_log(tmp_path: Path) -> Path:
    path = tmp_path / "audit.log"
    log = AuditLog(path, user_name="CCS\\demo", fsync=False)
    log.append(
        {
            "event": {"kind": "state", "action": "job.changed", "outcome": "success"},
            "audit": {"id": "obs-1", "phase": "observation", "origin": "observed"},
        }
    )
    return path


# Runs a command and writes its exit status and its own peak RSS (KiB) to stdout. The command is forked
# from this small launcher, not from the test worker: Linux carries a parent's peak RSS over into the
# child it forks (and across exec), so a worker that had grown would be counted as the command's peak.
_PEAK_RSS_LAUNCHER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def verify_against(url: str, log: Path, *extra: str) -> tuple[int, str, float, int]:
    """(exit code, stderr, seconds, peak RSS in KiB) of `audit verify LOG --witness URL`."""
    started = time.monotonic()
    command = [sys.executable, "-m", "ccs_exporter", "audit", "verify", str(log), "--witness", url, *extra]
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS_LAUNCHER, *command],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=120,  # a bound for a broken build, far above any expectation
        check=False,
    )
    code, peak_kib = (int(word) for word in done.stdout.split())
    return code, done.stderr, time.monotonic() - started, peak_kib


def _one_line_exit_3(code: int, stderr: str) -> None:
    assert code == 3, stderr
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr


class TestBrokenAnswers:
    """Answers no Prometheus sends end in one line and exit 3, never a traceback."""

    @pytest.mark.parametrize(
        ("body", "words"),
        [
            (b"[" * 100_000 + b"]" * 100_000, "not an answer of the Prometheus API"),
            (_matrix('[1700000000,"NaN"]'), "sample count that is not one"),
            (_matrix('[1700000000,"1e400"]'), "sample count that is not one"),
            (_matrix('[1700000000,"-3"]'), "sample count that is not one"),
            (_matrix("[" + "9" * 400 + ',"1"]'), "not an answer of the Prometheus API"),
            (_matrix('["' + "9" * 400 + '","1"]'), "not a Unix time"),
            (_matrix('[NaN,"1"]'), "not an answer of the Prometheus API"),
            (_matrix('[1e400,"1"]'), "not an answer of the Prometheus API"),
            (_matrix('"not a pair"'), "not [time, value]"),
            (_matrix('[1700000000,{"a":1}]'), "not [time, value]"),
        ],
        ids=[
            "deep",
            "nan",
            "1e400",
            "negative",
            "400-digit-int",
            "400-digit-string",
            "NaN",
            "inf",
            "str",
            "obj",
        ],
    )
    def test_broken_answer_exits_3_in_one_line(
        self, hostile: _Hostile, audit_log: Path, body: bytes, words: str
    ) -> None:
        """Each broken answer is named in one line; the log's own verdict is still given."""
        hostile.answer = _json_answer(body)
        code, stderr, _, _ = verify_against(f"http://127.0.0.1:{hostile.server_address[1]}", audit_log)
        _one_line_exit_3(code, stderr)
        assert words in stderr


class TestSlowAndLargeAnswers:
    """A server cannot hold the command past its timeout or make it take gigabytes."""

    def test_dripping_server_does_not_outlive_the_timeout(self, hostile: _Hostile, audit_log: Path) -> None:
        """A byte a second (head and body) is cut at --witness-timeout for the whole answer, not per read."""
        stop = threading.Event()

        def drip(handler: BaseHTTPRequestHandler) -> None:
            answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
            for byte in (answer + b" " * 100_000)[:60]:
                if stop.wait(1.0):
                    return
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()

        hostile.answer = drip
        try:
            code, stderr, seconds, _ = verify_against(
                f"http://127.0.0.1:{hostile.server_address[1]}", audit_log, "--witness-timeout", "3"
            )
        finally:
            stop.set()
        _one_line_exit_3(code, stderr)
        assert "no whole answer within 3 s" in stderr
        assert seconds < 12, f"took {seconds:.1f} s at a 3 s timeout"

    def test_40_mb_answer_is_refused_without_reading_it_whole(
        self, hostile: _Hostile, audit_log: Path
    ) -> None:
        """A 40 MB answer (no Content-Length, chunks) is cut at the cap: exit 3 and under 150 MB RSS."""

        def flood(handler: BaseHTTPRequestHandler) -> None:
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.end_headers()
            handler.wfile.write(b'{"status":"success","data":{"resultType":"matrix","result":[')
            series = b'{"metric":{"a":"b"},"values":[' + b'[1700000000,"1"],' * 4000 + b'[1,"1"]]},'
            for _ in range(40 * 1024 * 1024 // len(series)):
                handler.wfile.write(series)
            handler.wfile.write(b'{"metric":{},"values":[]}]}}')

        hostile.answer = flood
        code, stderr, _, rss_kib = verify_against(f"http://127.0.0.1:{hostile.server_address[1]}", audit_log)
        _one_line_exit_3(code, stderr)
        assert "answer larger than" in stderr
        assert rss_kib < 150 * 1024, f"peak RSS {rss_kib / 1024:.0f} MiB"
