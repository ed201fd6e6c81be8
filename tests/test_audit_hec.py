"""Tests of the Splunk HEC destination against a stand-in: auth, batching, acks, 503s, delays, TLS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hec_standin import Collector, running_collector
from web_helpers import Pki, make_pki

from ccs_exporter.audit import AuditLog
from ccs_exporter.audit.export import format_named
from ccs_exporter.audit.export.destinations import (
    DeliveryError,
    DestinationError,
    DestinationOptions,
    Shipment,
)
from ccs_exporter.audit.export.destinations.hec import HecDestination, read_token
from ccs_exporter.audit.export.verify_export import verify_export
from ccs_exporter.audit.signing import SignatureChecker

SAMPLE_LOG = Path(__file__).parent / "golden" / "siem" / "audit.log"
PUBLIC_KEY = Path(__file__).parent / "golden" / "siem" / "signing.pub"
TOKEN = "3f1c7a52-9d0e-4b8a-a6c1-5e2f7d9b0c44"


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    directory = tmp_path / "pki"
    directory.mkdir()
    return make_pki(directory)


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "hec.token"
    path.write_text(TOKEN + "\n", encoding="utf-8")
    return path


def export(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ccs_exporter", "audit", "export", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TZ": "UTC", **env},
    )


def hec_args(collector: Collector, pki: Pki, token_file: Path, *extra: str) -> list[str]:
    return [
        "--destination", f"https://127.0.0.1:{collector.port}/services/collector/event",
        "--destination-ca-bundle", str(pki.ca), "--hec-token-file", str(token_file), "--log-level", "warning",
        *extra,
    ]  # fmt: skip


def received_sequences(collector: Collector) -> list[int]:
    return [item["event"]["metadata"]["sequence"] for item in collector.events]


def as_export(collector: Collector, path: Path) -> Path:
    path.write_text("".join(json.dumps(item["event"]) + "\n" for item in collector.events), encoding="utf-8")
    return path


class TestDestination:
    def test_a_token_file_with_more_than_a_token_is_refused_without_showing_it(self, tmp_path: Path) -> None:
        """Two words, or nothing: ValueError naming the file only."""
        for content in ("a b", "", "\n"):
            path = tmp_path / "t"
            path.write_text(content, encoding="utf-8")
            with pytest.raises(ValueError) as caught:
                read_token(path)
            assert str(path) in str(caught.value) and "a b" not in str(caught.value)

    @pytest.mark.integration
    def test_bad_data_is_not_retried_and_503_is(self, pki: Pki, token_file: Path) -> None:
        """503 raises DeliveryError (retry); a 400 for the data raises DestinationError (never retried)."""
        collector = Collector(TOKEN, faults=["503"])
        with running_collector(collector, pki.server_cert, pki.server_key):
            options = DestinationOptions(ca_bundle=pki.ca, hec_token_file=token_file, timeout=5)
            destination = HecDestination(f"https://127.0.0.1:{collector.port}", options)
            batch = [Shipment(1, "h", "2026-03-01T09:00:00.000000Z", "ccs-0", 1, "job.run", "{}")]
            with pytest.raises(DeliveryError, match="503"):
                destination.send(batch)
            destination.send(batch)
            with pytest.raises(DestinationError, match="400"):
                destination.send(
                    [Shipment(2, "h", "2026-03-01T09:00:00.000000Z", "ccs-0", 1, "job.run", "not json")]
                )
            destination.close()
        assert collector.answers == [503, 200, 400]


@pytest.mark.integration
class TestStandIn:
    def test_every_record_arrives_with_token_auth_and_verifies(
        self, pki: Pki, token_file: Path, tmp_path: Path
    ) -> None:
        """One batch, `Authorization: Splunk <token>`, the format's sourcetype; what HEC holds verifies."""
        collector = Collector(TOKEN)
        home = tmp_path / "home"
        home.mkdir()
        (home / ".netrc").write_text(
            "machine 127.0.0.1 login someone password netrc-password\n", encoding="utf-8"
        )
        (home / ".netrc").chmod(0o600)
        with running_collector(collector, pki.server_cert, pki.server_key):
            args = hec_args(collector, pki, token_file)
            # Neither ~/.netrc nor $REQUESTS_CA_BUNDLE changes what is sent or trusted.
            done = export(
                str(SAMPLE_LOG), "--format", "ocsf", *args, HOME=str(home), REQUESTS_CA_BUNDLE="/nonexistent"
            )
        assert done.returncode == 0, done.stderr
        assert received_sequences(collector) == list(range(1, 38))
        assert {r["authorization"] for r in collector.requests} == {f"Splunk {TOKEN}"}
        assert {(e["sourcetype"], e["source"], e["host"]) for e in collector.events} == {
            ("ccs:audit:ocsf", "ccs-exporter", "ccs-exporter-0")
        }
        result = verify_export(
            as_export(collector, tmp_path / "siem.jsonl"),
            format_named("ocsf"),
            signatures=SignatureChecker.from_files([PUBLIC_KEY]),
        )
        assert result.ok and result.signed == 37
        assert TOKEN not in done.stderr

    def test_503s_and_slow_answers_lose_nothing(self, pki: Pki, token_file: Path) -> None:
        """Busy twice, then an answer slower than --timeout (the collector kept that batch): every record
        arrives; the batch sent again shows as duplicates, not as a gap."""
        collector = Collector(TOKEN, faults=["503", "503", "slow"], slow_seconds=3)
        with running_collector(collector, pki.server_cert, pki.server_key):
            done = export(
                str(SAMPLE_LOG), "--format", "ecs", *hec_args(collector, pki, token_file, "--timeout", "1")
            )
        assert done.returncode == 0, done.stderr
        sequences = [item["event"]["event"]["sequence"] for item in collector.events]
        assert set(sequences) == set(range(1, 38)) and len(sequences) == 74
        assert collector.answers[:2] == [503, 503]
        assert "audit_export_retry" in done.stderr and TOKEN not in done.stderr

    def test_indexer_acknowledgement_gates_the_cursor(
        self, pki: Pki, token_file: Path, tmp_path: Path
    ) -> None:
        """Acks on: a batch whose ackId never turns true is sent again; the cursor moves only after an ack."""
        collector = Collector(TOKEN, ack=True, faults=["unacked"])
        cursor = tmp_path / "cursor.json"
        with running_collector(collector, pki.server_cert, pki.server_key):
            done = export(
                str(SAMPLE_LOG), "--format", "ocsf", "--cursor", str(cursor),
                *hec_args(collector, pki, token_file, "--timeout", "1"),
            )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert received_sequences(collector) == list(range(1, 38)) * 2
        assert [r["path"] for r in collector.requests].count("/services/collector/ack") >= 2
        assert len({r["x-splunk-request-channel"] for r in collector.requests}) == 1
        assert json.loads(cursor.read_text(encoding="utf-8"))["sequence"] == 37

    def test_a_refused_token_ends_with_exit_1_and_never_shows_the_token(
        self, pki: Pki, tmp_path: Path, token_file: Path
    ) -> None:
        """A wrong token: retried, then exit 1 with one line; the token is in no output."""
        collector = Collector("another-token")
        with running_collector(collector, pki.server_cert, pki.server_key):
            done = export(str(SAMPLE_LOG), "--format", "ecs", *hec_args(collector, pki, token_file))
        assert done.returncode == 1
        assert "403" in done.stderr and TOKEN not in done.stderr and TOKEN not in done.stdout
        assert collector.events == []

    def test_tls_verification_is_on(self, pki: Pki, token_file: Path, tmp_path: Path) -> None:
        """Without the CA bundle the stand-in's certificate is not trusted: nothing is sent, exit 1."""
        collector = Collector(TOKEN)
        with running_collector(collector, pki.server_cert, pki.server_key):
            args = hec_args(collector, pki, token_file)
            at = args.index("--destination-ca-bundle")
            done = export(str(SAMPLE_LOG), "--format", "ecs", *(args[:at] + args[at + 2 :]))
        assert done.returncode == 1 and "TLS" in done.stderr
        assert collector.events == []

    def test_follow_with_faults_while_records_are_appended(
        self, pki: Pki, token_file: Path, tmp_path: Path
    ) -> None:
        """A follower shipping while records are appended, through 503s and a slow answer: all arrive."""
        log = tmp_path / "audit.log"
        audit = AuditLog(log, user_name="CCS\\writer", fsync=False)
        collector = Collector(
            TOKEN, ack=True, faults=["", "503", "slow", "503", "", "unacked"], slow_seconds=2
        )
        with running_collector(collector, pki.server_cert, pki.server_key):
            follower = subprocess.Popen(
                [sys.executable, "-m", "ccs_exporter", "audit", "export", str(log), "--format", "ecs",
                 "--follow",
                 "--cursor", str(tmp_path / "c"), *hec_args(collector, pki, token_file, "--timeout", "1")],
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                import time

                for number in range(120):
                    audit.append(
                        {
                            "event": {"action": "job.changed", "kind": "state"},
                            "audit": {"id": str(number), "phase": "observation", "origin": "observed"},
                        }
                    )
                    if number % 20 == 0:
                        time.sleep(0.3)
                deadline = time.monotonic() + 120
                while (
                    set(received_sequences_ecs(collector)) != set(range(1, 121))
                    and time.monotonic() < deadline
                ):
                    time.sleep(0.2)
            finally:
                follower.terminate()
                follower.wait(timeout=60)
        assert set(received_sequences_ecs(collector)) == set(range(1, 121))


def received_sequences_ecs(collector: Collector) -> list[int]:
    with collector.lock:
        return [item["event"]["event"]["sequence"] for item in collector.events]


def test_a_large_batch_is_split_into_requests_under_the_size_bound() -> None:
    """Big events are sent in several requests, each below 512 KiB, in order, none dropped."""
    from ccs_exporter.audit.export.destinations.hec import MAX_REQUEST_BYTES, request_bodies

    line = json.dumps({"pad": "x" * 20000})
    batch = [
        Shipment(n, "h", "2026-03-01T09:00:00.000000Z", "ccs-0", 1, "job.run", line) for n in range(1, 101)
    ]
    bodies = request_bodies(batch, "ccs:audit:ecs")
    assert len(bodies) >= 4 and all(len(body) <= MAX_REQUEST_BYTES for body in bodies)
    decoder = json.JSONDecoder()
    count = 0
    for body in bodies:
        text, position = body.decode(), 0
        while position < len(text):
            _, position = decoder.raw_decode(text, position)
            position += len(text[position:]) - len(text[position:].lstrip())
            count += 1
    assert count == 100
