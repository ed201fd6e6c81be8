"""`audit verify --witness` reaching a secured Prometheus: TLS, client certificates, basic auth, a prefix.

A real Prometheus on 127.0.0.1 (temp dir, stopped by its PID) runs with its own ``--web.config.file``
(TLS, ``RequireAndVerifyClientCert``, a bcrypt basic auth user) and ``--web.route-prefix=/prometheus``,
serving a backfilled history of an audit log's heads. Bearer tokens and extra headers (which Prometheus
itself does not check) are proven against a recording server that answers like Prometheus.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import bcrypt
import pytest
import yaml
from local_prometheus import free_port, stop, wait_until
from web_helpers import Pki, make_pki

from ccs_exporter.audit import AuditLog, verify

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

REPO_ROOT = Path(__file__).resolve().parent.parent
USER, PASSWORD = "witness", "Witness-Pw-7Hq2"
TOKEN = "tok-9f3c1e7a5b2d"
RECORDS = 5


@dataclass(frozen=True)
class Secured:
    """A secured Prometheus (its base URL with the prefix), its PKI, the log it witnessed, secret files."""

    url: str
    pki: Pki
    log: Path
    password_file: Path
    token_file: Path


def _backfill(promtool: str, work: Path, log: Path) -> None:
    hashes = list(verify(log).hash48s)
    now = time.time() // 60 * 60
    lines = ["# TYPE ccs_audit_head_sequence gauge"]
    hash_lines = ["# TYPE ccs_audit_head_hash48 gauge"]
    for index in range(240):  # a scrape a minute, 6 to 2 hours ago, the head moving through the log
        moment = now - 6 * 3600 + index * 60
        sequence = min(RECORDS, index * (RECORDS + 1) // 240)
        value = hashes[sequence - 1] if sequence else 0
        lines.append(f'ccs_audit_head_sequence{{instance="ccs:9879"}} {sequence} {moment:.0f}')
        hash_lines.append(f'ccs_audit_head_hash48{{instance="ccs:9879"}} {value} {moment:.0f}')
    (work / "history.om").write_text("\n".join([*lines, *hash_lines, "# EOF", ""]), encoding="utf-8")
    (work / "data").mkdir()
    done = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", "history.om", "data"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def secured(
    require_tool: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Secured]:
    promtool, prometheus = require_tool("promtool"), require_tool("prometheus")
    work = tmp_path_factory.mktemp("secured")
    pki = make_pki(work)
    log = work / "audit.log"
    audit_log = AuditLog(log, user_name="CCS\\demo", fsync=False)
    for number in range(RECORDS):
        audit_log.append(
            {
                "event": {"kind": "state", "action": "job.changed", "outcome": "success"},
                "audit": {"id": f"obs-{number}", "phase": "observation", "origin": "observed"},
            }
        )
    _backfill(promtool, work, log)
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    web_config = {
        "tls_server_config": {
            "cert_file": str(pki.server_cert),
            "key_file": str(pki.server_key),
            "client_auth_type": "RequireAndVerifyClientCert",
            "client_ca_file": str(pki.client_ca),
        },
        "basic_auth_users": {USER: hashed},
    }
    (work / "web.yml").write_text(yaml.safe_dump(web_config), encoding="utf-8")
    (work / "prometheus.yml").write_text("global: {scrape_interval: 1m}\n", encoding="utf-8")
    password_file, token_file = work / "password", work / "token"
    password_file.write_text(PASSWORD + "\n", encoding="utf-8")
    token_file.write_text(TOKEN + "\n", encoding="utf-8")
    port = free_port()
    process = subprocess.Popen(
        [
            prometheus,
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--web.config.file={work / 'web.yml'}",
            f"--web.external-url=https://127.0.0.1:{port}/prometheus",
            "--web.route-prefix=/prometheus",
            "--storage.tsdb.retention.time=30d",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"https://127.0.0.1:{port}/prometheus"
    try:
        # Ready means: the port accepts TLS connections (every check needs credentials).
        wait_until("prometheus listening", lambda: _listening(port), 60.0, process)
        yield Secured(url, pki, log, password_file, token_file)
    finally:
        stop(process)


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def run_verify(log: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ccs_exporter", "audit", "verify", str(log), *args],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def all_access(secured: Secured) -> list[str]:
    return [
        "--witness",
        secured.url,
        "--witness-ca-bundle",
        str(secured.pki.ca),
        "--witness-cert-file",
        str(secured.pki.client_cert),
        "--witness-key-file",
        str(secured.pki.client_key),
        "--witness-basic-auth-user",
        USER,
        "--witness-basic-auth-password-file",
        str(secured.password_file),
    ]


def without(args: list[str], *options: str) -> list[str]:
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in options:
            skip = True
            continue
        kept.append(arg)
    return kept


class TestSecuredPrometheus:
    """A real Prometheus behind its own TLS, client certificate check and basic auth, under a path prefix."""

    def test_all_credentials_check_the_log(self, secured: Secured) -> None:
        """CA, client certificate, basic auth and the prefix reach the API: every scraped head is checked."""
        done = run_verify(secured.log, *all_access(secured), "--witness-selector", 'instance="ccs:9879"')
        assert done.returncode == 0, done.stderr
        assert f"witnessed by {secured.url}: 240 scrapes" in done.stdout, done.stdout
        assert PASSWORD not in done.stdout + done.stderr

    def test_wrong_password_is_refused_and_never_echoed(self, secured: Secured, tmp_path: Path) -> None:
        """Prometheus' 401 ends in one line and exit 3; neither password appears."""
        wrong = tmp_path / "wrong"
        wrong.write_text("Not-The-Pw-123\n", encoding="utf-8")
        args = [*without(all_access(secured), "--witness-basic-auth-password-file")]
        done = run_verify(secured.log, *args, "--witness-basic-auth-password-file", str(wrong))
        assert done.returncode == 3, done.stderr
        assert "HTTP 401" in done.stderr and len(done.stderr.strip().splitlines()) == 1
        assert "Not-The-Pw-123" not in done.stdout + done.stderr

    def test_no_client_certificate_fails_the_handshake(self, secured: Secured) -> None:
        """Without --witness-cert-file the server's RequireAndVerifyClientCert refuses the connection."""
        args = without(all_access(secured), "--witness-cert-file", "--witness-key-file")
        done = run_verify(secured.log, *args)
        assert done.returncode == 3, done.stderr
        assert "TLS handshake failed" in done.stderr or "cannot connect" in done.stderr

    def test_untrusted_server_certificate_is_refused(self, secured: Secured) -> None:
        """Without the CA bundle the server's certificate is not trusted: TLS verification stays on."""
        done = run_verify(secured.log, *without(all_access(secured), "--witness-ca-bundle"))
        assert done.returncode == 3, done.stderr
        assert "TLS handshake failed" in done.stderr

    def test_without_the_prefix_prometheus_is_not_found(self, secured: Secured) -> None:
        """The prefix is part of the URL: without it the answer is not Prometheus' API."""
        args = all_access(secured)
        args[1] = secured.url.removesuffix("/prometheus")
        done = run_verify(secured.log, *args)
        assert done.returncode == 3, done.stderr
        assert "not an answer of the Prometheus API" in done.stderr


class _Recording(ThreadingHTTPServer):
    daemon_threads = True
    seen: list[tuple[str, dict[str, str]]]
    echo_error: bool = False


class _RecordingHandler(BaseHTTPRequestHandler):
    server: _Recording

    def do_GET(self) -> None:
        self.server.seen.append((self.path, dict(self.headers.items())))
        if self.server.echo_error:  # a proxy that repeats the request's credentials in its error
            body = {
                "status": "error",
                "errorType": "bad_data",
                "error": f"denied: {dict(self.headers.items())}",
            }
            status = 400
        elif "/api/v1/query_range" in self.path:
            body = {"status": "success", "data": {"resultType": "matrix", "result": []}}
            status = 200
        else:
            body = {"status": "success", "data": {}}
            status = 200
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recording() -> Iterator[_Recording]:
    server = _Recording(("127.0.0.1", 0), _RecordingHandler)
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def small_log(tmp_path: Path) -> Path:
    path = tmp_path / "audit.log"
    AuditLog(path, user_name="CCS\\demo", fsync=False).append(
        {
            "event": {"kind": "state", "action": "job.changed", "outcome": "success"},
            "audit": {"id": "obs-1", "phase": "observation", "origin": "observed"},
        }
    )
    return path


class TestTokenAndHeaders:
    """Bearer token, extra headers and the prefix as a Mimir/Cortex/Thanos gateway would receive them."""

    def test_token_and_tenant_header_reach_the_prefixed_api(
        self, recording: _Recording, small_log: Path, tmp_path: Path
    ) -> None:
        """Every request goes under the prefix with the Bearer token and each --witness-header."""
        token_file = tmp_path / "token"
        token_file.write_text(TOKEN + "\n", encoding="utf-8")
        url = f"http://127.0.0.1:{recording.server_address[1]}/mimir/prometheus/"
        done = run_verify(
            small_log,
            "--witness",
            url,
            "--witness-bearer-token-file",
            str(token_file),
            "--witness-header",
            "X-Scope-OrgID=team-a",
            "--witness-header",
            "X-Extra=1",
        )
        assert done.returncode == 3  # no samples: nothing was scraped
        assert recording.seen
        for path, headers in recording.seen:
            assert path.startswith("/mimir/prometheus/api/v1/")
            assert headers["Authorization"] == f"Bearer {TOKEN}"
            assert headers["X-Scope-OrgID"] == "team-a" and headers["X-Extra"] == "1"
        assert TOKEN not in done.stdout + done.stderr

    def test_credentials_echoed_by_the_server_are_redacted(
        self, recording: _Recording, small_log: Path, tmp_path: Path
    ) -> None:
        """An error answer repeating the Authorization header shows [REDACTED], never the token."""
        recording.echo_error = True
        token_file = tmp_path / "token"
        token_file.write_text(TOKEN, encoding="utf-8")
        url = f"http://127.0.0.1:{recording.server_address[1]}"
        done = run_verify(small_log, "--witness", url, "--witness-bearer-token-file", str(token_file))
        assert done.returncode == 3
        assert "bad_data" in done.stderr and "[REDACTED]" in done.stderr
        assert TOKEN not in done.stdout + done.stderr


class TestBadOptions:
    """Wrong credential options are usage errors: exit 2, one line naming the option, no secret."""

    @pytest.mark.parametrize(
        ("args", "words"),
        [
            (["--witness-basic-auth-user", "u"], "go together"),
            (["--witness-cert-file", "/etc/hostname"], "go together"),
            (["--witness-bearer-token-file", "/nonexistent/token"], "--witness-bearer-token-file"),
            (["--witness-header", "X-Scope-OrgID"], "NAME=VALUE"),
            (["--witness-header", "Authorization=Bearer Secret-Hdr-42"], "set by the client"),
        ],
    )
    def test_bad_option_exits_2(self, small_log: Path, args: list[str], words: str) -> None:
        done = run_verify(small_log, "--witness", "http://127.0.0.1:9", *args)
        assert done.returncode == 2, done.stderr
        assert words in done.stderr and len(done.stderr.strip().splitlines()) == 1
        assert "Secret-Hdr-42" not in done.stderr

    def test_empty_token_file_exits_2(self, small_log: Path, tmp_path: Path) -> None:
        empty = tmp_path / "token"
        empty.write_text("\n", encoding="utf-8")
        done = run_verify(
            small_log, "--witness", "http://127.0.0.1:9", "--witness-bearer-token-file", str(empty)
        )
        assert done.returncode == 2 and "is empty" in done.stderr


@pytest.mark.integration
def test_a_secret_file_named_token_is_named_in_errors(small_log: Path, tmp_path: Path) -> None:
    """A token file mounted as ``.../token`` (a Kubernetes Secret) is named whole in its error."""
    empty = tmp_path / "token"
    empty.write_text("", encoding="utf-8")
    done = run_verify(small_log, "--witness", "http://127.0.0.1:9", "--witness-bearer-token-file", str(empty))
    assert done.returncode == 2
    assert f"{str(empty)!r}: is empty" in done.stderr
