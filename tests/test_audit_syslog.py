"""Tests of the syslog destination: RFC 5424 messages, RFC 5425 framing, a real rsyslog over TLS."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from local_rsyslog import Rsyslog, find_rsyslogd, running_rsyslog
from web_helpers import CLIENT_DNS, Pki, make_pki

from ccs_exporter.audit.export import format_named
from ccs_exporter.audit.export.destinations import Shipment
from ccs_exporter.audit.export.destinations.syslog import octet_counted, syslog_message
from ccs_exporter.audit.export.verify_export import verify_export

SAMPLE_LOG = Path(__file__).parent / "golden" / "siem" / "audit.log"
PUBLIC_KEY = Path(__file__).parent / "golden" / "siem" / "signing.pub"
WRITER = Path(__file__).parent / "audit_writer.py"


class TestMessage:
    def test_rfc5424_header_structured_data_and_json_message(self) -> None:
        """PRI 110 (log audit, informational), version 1, the record's time, host, pid, action, sequenceId."""
        item = Shipment(42, "h" * 64, "2026-03-01T09:00:01.000250Z", "ccs-0", 17, "job.update", '{"a":1}')
        assert syslog_message(item) == (
            b"<110>1 2026-03-01T09:00:01.000250Z ccs-0 ccs-exporter 17 job.update "
            b'[meta sequenceId="42"] {"a":1}'
        )

    def test_header_fields_are_printable_ascii_without_spaces(self) -> None:
        """A host name with spaces or non-ASCII characters cannot break the header; missing fields are '-'."""
        item = Shipment(1, "h", "2026-03-01T09:00:01Z", "bad host\u00e9", None, "", "{}")
        assert syslog_message(item).split(b" ")[:6] == [
            b"<110>1",
            b"2026-03-01T09:00:01Z",
            b"badhost",
            b"ccs-exporter",
            b"-",
            b"-",
        ]

    def test_octet_counting_counts_bytes_not_characters(self) -> None:
        """RFC 5425: the length is of the UTF-8 bytes."""
        assert octet_counted("é".encode()) == b"2 \xc3\xa9"


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    directory = tmp_path / "pki"
    directory.mkdir()
    return make_pki(directory)


@pytest.fixture
def rsyslog(require_tool: Any, tmp_path: Path, pki: Pki) -> Any:
    binary = find_rsyslogd(require_tool)
    directory = tmp_path / "rsyslog"
    directory.mkdir()
    with running_rsyslog(binary, directory, pki.server_cert, pki.server_key, pki.ca) as server:
        yield server


def export(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ccs_exporter", "audit", "export", *args, "--log-level", "warning"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TZ": "UTC"},
        **kwargs,
    )


def wait_for(server: Rsyslog, count: int, seconds: float = 60) -> list[str]:
    deadline = time.monotonic() + seconds
    while len(server.lines()) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    return server.lines()


def messages_as_export(lines: list[str], path: Path) -> Path:
    """The MSG part of what rsyslog wrote (after the structured data), one event per line."""
    path.write_text("".join(line.split("] ", 1)[1] + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.mark.integration
class TestRealRsyslog:
    @pytest.mark.parametrize("name", ["ocsf", "ecs"])
    def test_rsyslog_receives_every_record_with_its_proof(
        self, rsyslog: Rsyslog, pki: Pki, tmp_path: Path, name: str
    ) -> None:
        """Every record arrives over TLS, and what rsyslog stored verifies as intact with its signatures."""
        done = export(
            str(SAMPLE_LOG), "--format", name,
            "--destination", f"syslog+tls://127.0.0.1:{rsyslog.port}", "--destination-ca-bundle", str(pki.ca),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        lines = wait_for(rsyslog, 37)
        assert len(lines) == 37
        assert [line.split('sequenceId="')[1].split('"')[0] for line in lines] == [
            str(n) for n in range(1, 38)
        ]
        assert all(line.startswith("ccs-exporter ") for line in lines)
        from ccs_exporter.audit.signing import SignatureChecker

        result = verify_export(
            messages_as_export(lines, tmp_path / "siem.jsonl"),
            format_named(name),
            signatures=SignatureChecker.from_files([PUBLIC_KEY]),
        )
        assert result.ok and result.records == 37 and result.signed == 37, result.findings

    def test_an_untrusted_certificate_is_refused(self, rsyslog: Rsyslog, tmp_path: Path) -> None:
        """TLS verification is on: a CA that did not sign rsyslog's certificate gets nothing sent; exit 1."""
        other = tmp_path / "other"
        other.mkdir()
        done = export(
            str(SAMPLE_LOG), "--format", "ecs",
            "--destination", f"syslog+tls://127.0.0.1:{rsyslog.port}",
            "--destination-ca-bundle", str(make_pki(other).ca),
        )  # fmt: skip
        assert done.returncode == 1
        assert "certificate" in done.stderr and len(done.stderr.strip().splitlines()) <= 6
        assert rsyslog.lines() == []

    def test_follow_across_an_rsyslog_restart_loses_nothing(
        self, require_tool: Any, pki: Pki, tmp_path: Path
    ) -> None:
        """rsyslog stopped while records are appended, then started again: every record arrives."""
        binary = find_rsyslogd(require_tool)
        log = tmp_path / "audit.log"
        subprocess.run([sys.executable, str(WRITER), str(log), "20", "a"], check=True, timeout=120)
        first_dir, second_dir = tmp_path / "r1", tmp_path / "r2"
        first_dir.mkdir()
        second_dir.mkdir()
        received: list[str] = []
        follower = None
        try:
            with running_rsyslog(binary, first_dir, pki.server_cert, pki.server_key, pki.ca) as first:
                destination = f"syslog+tls://127.0.0.1:{first.port}"
                follower = subprocess.Popen(
                    [
                        sys.executable, "-m", "ccs_exporter", "audit", "export", str(log), "--format", "ecs",
                        "--follow", "--cursor", str(tmp_path / "cursor"), "--log-level", "error",
                        "--destination", destination, "--destination-ca-bundle", str(pki.ca),
                    ]
                )  # fmt: skip
                received += wait_for(first, 20)
                port = first.port
            subprocess.run([sys.executable, str(WRITER), str(log), "20", "b"], check=True, timeout=120)
            with running_rsyslog(
                binary, second_dir, pki.server_cert, pki.server_key, pki.ca, port=port
            ) as second:
                more = wait_for(second, 20, seconds=120)
                received += more
        finally:
            if follower is not None:
                follower.send_signal(signal.SIGTERM)
                follower.wait(timeout=60)
        sequences = {json.loads(line.split("] ", 1)[1])["event"]["sequence"] for line in received}
        assert sequences == set(range(1, 41))


@pytest.mark.integration
def test_mutual_tls_with_a_client_certificate(require_tool: Any, pki: Pki, tmp_path: Path) -> None:
    """An rsyslog that requires client certificates gets every record from --destination-cert/-key, and
    nothing without them."""
    binary = find_rsyslogd(require_tool)
    directory = tmp_path / "mtls"
    directory.mkdir()
    trusted = directory / "trusted.pem"
    trusted.write_bytes(pki.client_ca.read_bytes() + pki.ca.read_bytes())
    with running_rsyslog(
        binary,
        directory,
        pki.server_cert,
        pki.server_key,
        trusted,
        auth_mode="x509/name",
        permitted_peer=CLIENT_DNS,
    ) as server:
        base = [
            str(SAMPLE_LOG), "--format", "ecs", "--timeout", "5",
            "--destination", f"syslog+tls://127.0.0.1:{server.port}", "--destination-ca-bundle", str(pki.ca),
        ]  # fmt: skip
        refused = export(*base)
        assert refused.returncode == 1
        done = export(
            *base, "--destination-cert", str(pki.client_cert), "--destination-key", str(pki.client_key)
        )
        assert done.returncode == 0, done.stderr
        assert len(wait_for(server, 37)) == 37


@pytest.mark.integration
def test_a_client_key_that_is_not_a_key_is_exit_2(pki: Pki, tmp_path: Path) -> None:
    """A certificate given without a usable key: one line naming the flags, exit 2, nothing sent."""
    done = export(
        str(SAMPLE_LOG), "--format", "ecs", "--destination", "syslog+tls://127.0.0.1:9",
        "--destination-cert", str(pki.client_cert), "--destination-key", str(pki.ca),
    )  # fmt: skip
    assert done.returncode == 2 and "--destination-cert" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
