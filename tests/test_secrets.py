"""Secret canaries: the CCS password, its Base64 form and every issued token appear nowhere we write.

Checked across failure modes (wrong password, 500s, timeouts, malformed JSON, dropped connections) in
debug logs, /metrics, audit records, error messages, tracebacks and the CLI's stdout/stderr. Plus TLS
verification towards CCS: on by default, a CA bundle to trust an internal CA, a warning when turned off.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
import structlog
from pydantic import SecretStr

from ccs_exporter.cli.logs import configure_logging
from ccs_exporter.client import CcsClient
from ccs_exporter.errors import CcsError, UnavailableError
from ccs_exporter.exporter import Exporter
from ccs_exporter.settings.config import load_settings
from ccs_exporter.simulator import Simulator

# Distinctive, non-ASCII, and its Base64 form holds "+", "/" and "=".
CANARY = "Canary-Pw-ÿ>?~Qz7"
CANARY_B64 = base64.b64encode(CANARY.encode()).decode()
FAILURE_MODES: dict[str, dict[str, Any]] = {
    "wrong_password": {"reject_logins": True},
    "500s": {"error_rate": 1.0},
    "timeouts": {"hang": True},
    "malformed_json": {"malformed_json": True},
    "dropped_connections": {"drop_connections": True},
}


def secret_forms() -> list[str]:
    """The password as typed, Base64, and both as they travel form-encoded."""
    return [CANARY, CANARY_B64, quote(CANARY, safe=""), quote(CANARY_B64, safe="")]


def assert_no_secret(text: str, tokens: set[str], where: str) -> None:
    for secret in [*secret_forms(), *tokens]:
        assert secret not in text, f"a secret leaked into {where}"


@pytest.fixture
def sim(started: Callable[..., Simulator]) -> Simulator:
    """A simulator whose account has the canary password."""
    started_simulator: Simulator = started(run_interval=None, password=CANARY)
    return started_simulator


class TokenCollector:
    """Every token the simulator issued, gathered before each revoke forgets them."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.tokens: set[str] = set()

    def collect(self) -> set[str]:
        self.tokens |= set(self.sim.issued_tokens())
        return self.tokens

    def revoke(self) -> None:
        self.collect()
        self.sim.revoke_tokens()


@pytest.fixture
def debug_logs() -> Iterator[io.StringIO]:
    """structlog at debug level into a buffer; the previous set-up restored after."""
    saved = structlog.get_config()
    stream = io.StringIO()
    configure_logging("debug", "json", stream=stream)
    yield stream
    structlog.configure(**saved)


@pytest.mark.integration
class TestExporterCanaries:
    """A running exporter leaks nothing through its logs or /metrics, whatever CCS does."""

    def test_logs_and_metrics_across_failures(self, sim: Simulator, debug_logs: io.StringIO) -> None:
        """Debug logs and every scrape stay free of the password, its Base64 form and all tokens."""
        tokens = TokenCollector(sim)
        settings = load_settings(
            None,
            {
                "url": sim.url,
                "username": sim.username,
                "password": CANARY,
                "job_ids": sim.job_ids[:3],
                "listen_address": "127.0.0.1:0",
                "poll_interval_seconds": 0.3,
                "request_timeout_seconds": 0.5,
                "log_level": "debug",
            },
        )
        scrapes: list[str] = []
        with Exporter(settings) as exporter:
            assert exporter.wait_ready(10)
            for faults in FAULT_SEQUENCE:
                tokens.revoke()  # every phase starts with fresh tokens to leak
                sim.faults.update({"clear": True, **faults})
                time.sleep(1.0)
                scrapes.append(requests.get(f"{exporter.url}/metrics", timeout=5).text)
            sim.faults.clear()
            time.sleep(1.0)
            scrapes.append(requests.get(f"{exporter.url}/metrics", timeout=5).text)
        issued = tokens.collect()
        assert len(issued) >= 4 and CANARY not in sim.job_ids
        logs = debug_logs.getvalue()
        assert "token_granted" in logs and "job_poll_failed" in logs  # the logs did see the failures
        assert_no_secret(logs, issued, "the debug log")
        for text in scrapes:
            assert_no_secret(text, issued, "/metrics")


FAULT_SEQUENCE = [{}, *FAILURE_MODES.values(), {}]


@pytest.mark.integration
class TestErrorCanaries:
    """Client errors, their reprs and full tracebacks hold no secret."""

    @pytest.mark.parametrize("mode", sorted(FAILURE_MODES))
    def test_error_and_traceback(self, sim: Simulator, mode: str) -> None:
        """The error raised under each failure mode, with its traceback and causes, names no secret."""
        tokens = TokenCollector(sim)
        with CcsClient(
            sim.url, sim.username, SecretStr(CANARY), timeout=0.5, backoff_seconds=0, read_retries=1
        ) as client:
            client.authenticate()
            sim.faults.update(FAILURE_MODES[mode])
            if mode == "wrong_password":
                tokens.revoke()
            with pytest.raises(CcsError) as caught:
                client.get_job_runs(sim.job_ids[0], count=5, show_messages=True)
        exc = caught.value
        texts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
        chained = exc.__cause__ or exc.__context__
        if chained is not None:
            texts += [str(chained), repr(chained)]
        for text in texts:
            assert_no_secret(text, tokens.collect(), f"the {mode} error")


def run_cli(
    sim: Simulator, *argv: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m ccs_exporter` against the simulator with the canary password, at debug level."""
    base = {key: value for key, value in os.environ.items() if not key.startswith("CCS_EXPORTER_")}
    base.update(
        CCS_EXPORTER_URL=sim.url,
        CCS_EXPORTER_USERNAME=sim.username,
        CCS_EXPORTER_PASSWORD=CANARY,
        CCS_EXPORTER_LOG_LEVEL="debug",
        CCS_EXPORTER_LOG_FORMAT="json",
        CCS_EXPORTER_REQUEST_TIMEOUT_SECONDS="1",
    )
    base.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "ccs_exporter", *argv],
        env=base,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.integration
class TestCliCanaries:
    """The CLI's output and the audit log stay clean, on success and under every failure mode."""

    @pytest.mark.parametrize("mode", ["ok", *sorted(FAILURE_MODES)])
    def test_audited_update(self, sim: Simulator, tmp_path: Path, mode: str) -> None:
        """`jobs update --audit-log` writes records and output that hold no password or token."""
        tokens = TokenCollector(sim)
        details = tmp_path / "details.json"
        details.write_text(json.dumps({"JobDescription": f"canary check {mode}"}), encoding="utf-8")
        audit = tmp_path / "audit.jsonl"
        sim.faults.update(FAILURE_MODES.get(mode, {}))
        job_id = sim.job_ids[0]
        result = run_cli(sim, "jobs", "update", job_id, "-f", str(details), "--audit-log", str(audit))
        sim.faults.clear()
        assert result.returncode == (0 if mode == "ok" else 1), result.stderr
        records = audit.read_text(encoding="utf-8") if audit.exists() else ""
        assert records.strip(), "the audit log was not written"
        issued = tokens.collect()
        assert_no_secret(result.stdout + result.stderr, issued, "the CLI output")
        assert_no_secret(records, issued, "the audit log")
        if mode == "ok":
            assert len(issued) >= 2  # the check had tokens to look for

    @pytest.mark.parametrize("mode", sorted(FAILURE_MODES))
    def test_reads(self, sim: Simulator, mode: str) -> None:
        """`jobs runs` fails with one clean line under each failure mode."""
        tokens = TokenCollector(sim)
        sim.faults.update(FAILURE_MODES[mode])
        result = run_cli(sim, "jobs", "runs", sim.job_ids[0], "--count", "3", "--messages")
        sim.faults.clear()
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        assert_no_secret(result.stdout + result.stderr, tokens.collect(), "the CLI output")


# Text a user might have typed into a job (a description, a notification body) or a CCS message.
TYPED_SECRETS = {
    "account password": CANARY,
    "password=": "Hunter2-Typed-Canary",
    "URL credentials": "UrlPw-Typed-Canary",
    "bearer token": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjYW5hcnkifQ.c2lnbmF0dXJl",
}
TYPED_TEXT = (
    f"svc account {CANARY}; conn password=Hunter2-Typed-Canary; "
    "share https://svc:UrlPw-Typed-Canary@files.example.com/x; "
    "header Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjYW5hcnkifQ.c2lnbmF0dXJl"
)


class TestCliOutputScrubbed:
    """CCS data printed by the CLI is scrubbed as the audit log is: what users typed into jobs stays out."""

    @pytest.mark.integration
    @pytest.mark.parametrize("output", ["json", "table"])
    def test_jobs_get(self, sim: Simulator, output: str) -> None:
        """A job description holding the account password, a password=, URL credentials and a JWT."""
        job_id = sim.job_ids[0]
        sim.edit_job(job_id, {"JobDescription": TYPED_TEXT})
        result = run_cli(sim, "jobs", "get", job_id, "-o", output)
        assert result.returncode == 0, result.stderr
        for what, secret in TYPED_SECRETS.items():
            assert secret not in result.stdout + result.stderr, f"{what} reached the terminal"
        if output == "json":
            description = json.loads(result.stdout)["JobConfigDetails"]["JobDescription"]
            assert description.count("[REDACTED]") == len(TYPED_SECRETS)
            assert "files.example.com/x" in description  # the rest is kept
        assert sim.job_snapshot(job_id)["JobProperties"]["Name"] in result.stdout

    @pytest.mark.parametrize("output", ["json", "table"])
    def test_jobs_runs(self, monkeypatch: pytest.MonkeyPatch, output: str, capsys: Any) -> None:
        """Run messages holding secrets are scrubbed in `jobs runs --messages`."""
        import responses

        from ccs_exporter import cli

        saved = structlog.get_config()
        api = "https://ccs.example.test:12431/ccs/api/v1"
        job_id = "ff761384-4b49-40b4-97d8-0de38669075a"
        for name in list(os.environ):
            if name.startswith("CCS_EXPORTER_"):
                monkeypatch.delenv(name)
        monkeypatch.setenv("CCS_EXPORTER_URL", "https://ccs.example.test:12431")
        monkeypatch.setenv("CCS_EXPORTER_USERNAME", "CORP\\svc")
        monkeypatch.setenv("CCS_EXPORTER_PASSWORD", CANARY)
        fixtures = Path(__file__).parent / "fixtures"
        runs = json.loads((fixtures / "jobruns.json").read_text(encoding="utf-8"))
        runs["JobStatusInfo"][0]["JobMessages"][0]["MessageDetails"] = TYPED_TEXT
        runs["JobStatusInfo"][0]["Exception"] = f"login failed for password {CANARY}"
        token = json.loads((fixtures / "token_response.json").read_text(encoding="utf-8"))
        try:
            with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
                mock.post(f"{api}/oauth/tokens", json=token)
                mock.get(f"{api}/Jobs/{job_id}/jobruns", json=runs)
                code = cli.main(["jobs", "runs", job_id, "--messages", "-o", output])
        finally:
            structlog.configure(**saved)
        captured = capsys.readouterr()
        assert code == 0, captured.err
        for what, secret in TYPED_SECRETS.items():
            assert secret not in captured.out + captured.err, f"{what} reached the terminal"
        assert "[REDACTED]" in captured.out
        assert "Windows Data Collector" in captured.out  # the message itself is kept


@pytest.fixture(scope="module")
def self_signed(
    tmp_path_factory: pytest.TempPathFactory, require_tool: Callable[[str], str]
) -> tuple[Path, Path]:
    """A self-signed certificate and key for 127.0.0.1, made with openssl."""
    directory = tmp_path_factory.mktemp("ccs-tls")
    cert, key = directory / "ccs.pem", directory / "ccs.key"
    subprocess.run(
        [
            require_tool("openssl"),
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.fixture
def https_sim(self_signed: tuple[Path, Path]) -> Iterator[Simulator]:
    """A simulator serving HTTPS with the self-signed certificate."""
    cert, key = self_signed
    with Simulator(port=0, run_interval=None, password=CANARY, tls_cert=str(cert), tls_key=str(key)) as sim:
        yield sim


@pytest.mark.integration
class TestTlsToCcs:
    """TLS verification towards CCS: on by default, trust by CA bundle, and a warning when disabled."""

    def test_self_signed_refused_by_default(self, https_sim: Simulator) -> None:
        """An HTTPS CCS with a certificate no trusted CA signed is refused, and nothing reaches it."""
        result = run_cli(https_sim, "jobs", "get", https_sim.job_ids[0])
        assert result.returncode == 1
        assert "TLS handshake failed" in result.stderr and "CCS_EXPORTER_CA_BUNDLE" in result.stderr
        assert https_sim.request_count() == 0

    def test_ca_bundle_trusts_it(self, https_sim: Simulator, self_signed: tuple[Path, Path]) -> None:
        """CCS_EXPORTER_CA_BUNDLE pointing at the certificate makes the same call succeed, silently."""
        result = run_cli(
            https_sim,
            "jobs",
            "get",
            https_sim.job_ids[0],
            env={"CCS_EXPORTER_CA_BUNDLE": str(self_signed[0])},
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["JobProperties"]["JobID"] == https_sim.job_ids[0]
        assert "tls_verification_disabled" not in result.stderr

    def test_client_refuses_without_bundle(self, https_sim: Simulator) -> None:
        """The client itself raises UnavailableError (nothing sent) for the untrusted certificate."""
        client = CcsClient(https_sim.url, https_sim.username, SecretStr(CANARY))
        with client, pytest.raises(UnavailableError) as caught:
            client.authenticate()
        assert caught.value.sent is False

    @pytest.mark.parametrize(
        ("argv", "env"),
        [(["--insecure"], {}), ([], {"CCS_EXPORTER_VERIFY_TLS": "false"})],
        ids=["--insecure", "VERIFY_TLS=false"],
    )
    def test_disabled_verification_warns(
        self, https_sim: Simulator, argv: list[str], env: dict[str, str]
    ) -> None:
        """With verification off the call works and a tls_verification_disabled warning is logged first."""
        result = run_cli(https_sim, "jobs", "get", https_sim.job_ids[0], *argv, env=env)
        assert result.returncode == 0, result.stderr
        events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
        warnings = [event for event in events if event["event"] == "tls_verification_disabled"]
        assert len(warnings) == 1 and warnings[0]["level"] == "warning"
        assert events[0]["event"] == "tls_verification_disabled"

    def test_serve_warns_once_at_start(self, https_sim: Simulator) -> None:
        """`serve --insecure` logs the warning once at start, then polls the HTTPS CCS."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("CCS_EXPORTER_")}
        env.update(
            CCS_EXPORTER_URL=https_sim.url,
            CCS_EXPORTER_USERNAME=https_sim.username,
            CCS_EXPORTER_PASSWORD=CANARY,
            CCS_EXPORTER_JOB_IDS=https_sim.job_ids[0],
            CCS_EXPORTER_LOG_FORMAT="json",
        )
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ccs_exporter",
                "serve",
                "--insecure",
                "--listen-address",
                "127.0.0.1:0",
                "--poll-interval",
                "0.3",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 15
            while https_sim.request_count("job") < 2:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.1)
        finally:
            process.terminate()
            _, stderr = process.communicate(timeout=15)
        events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
        assert [event["event"] for event in events].count("tls_verification_disabled") == 1
        assert_no_secret(stderr, set(), "the serve log")
