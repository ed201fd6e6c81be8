"""Tests of the SIEM export: OCSF and ECS mapping (golden events, official schemas), and verify --format."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ccs_exporter.audit.export import FORMATS, format_named
from ccs_exporter.audit.export.ocsf import OCSF_VERSION
from ccs_exporter.audit.export.verify_export import verify_export
from ccs_exporter.audit.records import MUTATION_ACTIONS, OUTCOMES, canonical_json, record_hash
from ccs_exporter.audit.signing import SignatureChecker
from tests.siem_schemas import ecs_flat_or_skip, ecs_problems, ocsf_problems

SAMPLE_DIR = Path(__file__).parent / "golden" / "siem"
SAMPLE_LOG = SAMPLE_DIR / "audit.log"
PUBLIC_KEY = SAMPLE_DIR / "signing.pub"
UPDATE_GOLDEN = os.environ.get("UPDATE_GOLDEN") == "1"


def sample_lines() -> list[str]:
    return SAMPLE_LOG.read_text(encoding="utf-8").splitlines()


def exported(name: str) -> list[dict[str, Any]]:
    fmt = format_named(name)
    return [fmt.map(json.loads(line), line) for line in sample_lines()]


def write_export(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(event) + "\n" for event in events), encoding="utf-8")
    return path


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ccs_exporter", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, "TZ": "UTC"},
    )


class TestSample:
    def test_sample_covers_every_action_and_outcome(self) -> None:
        """The sample log (source of the golden events) holds every action a SIEM gets, in each outcome."""
        seen = {
            (r["event"]["action"], r["audit"]["phase"], r["event"].get("outcome"))
            for r in map(json.loads, sample_lines())
        }
        for action in MUTATION_ACTIONS:
            assert (action, "intent", None) in seen
            for outcome in OUTCOMES:
                assert (action, "result", outcome) in seen
        for action in ("job.created", "job.changed", "job.deleted"):
            assert (action, "observation", "success") in seen
        assert ("audit.recovered", "recovery", "success") in seen


class TestGoldenEvents:
    @pytest.mark.parametrize("name", ["ocsf", "ecs"])
    def test_export_matches_golden_file(self, name: str) -> None:
        """Each record's event is what the golden file holds (UPDATE_GOLDEN=1 rewrites it)."""
        text = "".join(json.dumps(event, sort_keys=True) + "\n" for event in exported(name))
        golden = SAMPLE_DIR / f"events.{name}.jsonl"
        if UPDATE_GOLDEN:
            golden.write_text(text, encoding="utf-8")
        assert text == golden.read_text(encoding="utf-8")

    def test_every_ocsf_event_is_valid_against_the_official_schema(self) -> None:
        """Every event validates against OCSF Entity Management (required attributes, enums, types)."""
        for event in exported("ocsf"):
            assert ocsf_problems(event, OCSF_VERSION) == [], event["metadata"]["sequence"]

    def test_ocsf_events_have_the_recommended_actor_and_source_for_our_own_changes(self) -> None:
        """Our own mutations name the CCS account and host; observed changes claim no actor."""
        for event in exported("ocsf"):
            origin = json.loads(event["raw_data"])["audit"]["origin"]
            assert ("actor" in event) == (origin == "performed") or event["activity_name"] == "Recover"
            if origin == "performed" and event["activity_name"] != "Recover":
                assert event["actor"]["user"]["name"] == "CCS\\auditor"
                assert event["src_endpoint"]["hostname"] == "ccs-exporter-0"

    @pytest.mark.integration
    def test_every_ecs_event_is_valid_against_the_official_field_definitions(self, require_tool: Any) -> None:
        """Every ECS event uses ECS fields with their types and allowed values; our own under ``ccs``."""
        ecs_flat_or_skip(require_tool)
        for event in exported("ecs"):
            assert ecs_problems(event, custom="ccs") == [], event["event"]["sequence"]

    def test_schema_checks_catch_a_bad_event(self, require_tool: Any) -> None:
        """The validators are not blind: unknown fields and wrong enums are reported."""
        ocsf = exported("ocsf")[0]
        ocsf["activity_id"] = 42
        ocsf["made_up"] = 1
        assert len(ocsf_problems(ocsf, OCSF_VERSION)) >= 2
        ecs_flat_or_skip(require_tool)
        ecs = exported("ecs")[0]
        ecs["event"]["kind"] = "gossip"
        ecs["event"]["made_up"] = 1
        ecs["event"]["category"] = "configuration"
        assert len(ecs_problems(ecs, custom="ccs")) >= 3

    @pytest.mark.parametrize("name", ["ocsf", "ecs"])
    def test_each_event_carries_the_record_its_sequence_and_hash(self, name: str) -> None:
        """The original line, byte for byte, and its sequence and chain hash travel with every event."""
        fmt = FORMATS[name]
        for line, event in zip(sample_lines(), exported(name), strict=True):
            record = json.loads(line)
            assert fmt.original_of(event) == line
            assert fmt.sequence_of(event) == record["event"]["sequence"]
            assert fmt.hash_of(event) == record["audit"]["hash"] == record_hash(record)

    def test_activities_fit_the_actions(self) -> None:
        """Create, update and delete are OCSF activities of their own; a run and an abort are Other."""
        names = {json.loads(e["raw_data"])["event"]["action"]: e["activity_name"] for e in exported("ocsf")}
        assert names["job.create"] == names["job.created"] == "Create"
        assert names["job.update"] == names["job.changed"] == "Update"
        assert names["job.delete"] == names["job.deleted"] == "Delete"
        assert {e["activity_id"] for e in exported("ocsf") if e["activity_name"] in ("Run", "Abort")} == {99}


def _verify(tmp_path: Path, name: str, events: list[dict[str, Any]], **kwargs: Any) -> Any:
    return verify_export(write_export(tmp_path / f"export.{name}", events), FORMATS[name], **kwargs)


class TestVerifyExport:
    @pytest.mark.parametrize("name", ["ocsf", "ecs", "jsonl"])
    def test_an_intact_export_verifies_with_its_signatures(self, tmp_path: Path, name: str) -> None:
        """Every record rebuilt from the events: chain, sequence and every signature check out."""
        checker = SignatureChecker.from_files([PUBLIC_KEY])
        result = _verify(tmp_path, name, exported(name), signatures=checker)
        assert result.ok, result.findings
        assert (result.records, result.signed, result.last_sequence) == (37, 37, 37)

    @pytest.mark.parametrize("name", ["ocsf", "ecs"])
    def test_a_dropped_event_is_reported_with_its_sequence(self, tmp_path: Path, name: str) -> None:
        """The SIEM lost sequence 12: verify names it."""
        events = [e for e in exported(name) if FORMATS[name].sequence_of(e) != 12]
        result = _verify(tmp_path, name, events)
        assert not result.ok
        assert any("sequence 12 missing" in f.problem for f in result.findings)

    @pytest.mark.parametrize("name", ["ocsf", "ecs"])
    def test_a_reordered_event_is_reported_with_its_sequence(self, tmp_path: Path, name: str) -> None:
        """Sequence 20 arriving after 21 is reported; no record is called missing or edited."""
        events = exported(name)
        events[19], events[20] = events[20], events[19]
        result = _verify(tmp_path, name, events)
        assert [f.problem for f in result.findings] == [
            "sequence 20 comes after sequence 21: events were reordered"
        ]

    def test_an_edited_event_field_is_reported(self, tmp_path: Path) -> None:
        """An event whose mapped fields were changed in the SIEM (original untouched) is reported."""
        events = exported("ocsf")
        events[4]["entity"]["name"] = "harmless job"
        result = _verify(tmp_path, "ocsf", events)
        assert [(f.line, f.problem) for f in result.findings] == [
            (5, "sequence 5: the event was edited: entity.name differ from its original")
        ]

    def test_an_edited_original_is_reported(self, tmp_path: Path) -> None:
        """An original edited consistently with its event breaks the record's hash."""
        fmt = FORMATS["ecs"]
        record = json.loads(sample_lines()[7])
        record["user"]["name"] = "CCS\\someone-else"
        line = canonical_json(record)
        events = exported("ecs")
        events[7] = fmt.map(record, line)
        result = _verify(tmp_path, "ecs", events)
        assert any(f.line == 8 and "record was edited" in f.problem for f in result.findings)

    def test_a_forged_chain_fails_the_signatures(self, tmp_path: Path) -> None:
        """Rehashing every record after an edit keeps the chain intact but not the signatures."""
        records = [json.loads(line) for line in sample_lines()]
        records[2]["reason"] = "nothing to see"
        previous = records[0]["audit"]["prev_hash"]
        for record in records:
            record["audit"]["prev_hash"] = previous
            record["audit"]["hash"] = previous = record_hash(record)
        fmt = FORMATS["ocsf"]
        events = [fmt.map(r, canonical_json(r)) for r in records]
        assert _verify(tmp_path, "ocsf", events).ok
        forged = _verify(tmp_path, "ocsf", events, signatures=SignatureChecker.from_files([PUBLIC_KEY]))
        assert {f.line for f in forged.findings} == set(range(3, 38))

    def test_duplicates_of_at_least_once_shipping_are_counted_not_reported(self, tmp_path: Path) -> None:
        """A batch shipped twice (same sequences, same hashes) is intact, with the duplicates counted."""
        events = exported("ecs")
        result = _verify(tmp_path, "ecs", events + events[30:])
        assert result.ok and result.duplicates == 7

    def test_one_sequence_with_two_contents_is_reported(self, tmp_path: Path) -> None:
        """A second, different record under a sequence already seen is a problem."""
        events = exported("ecs")
        other = json.loads(json.dumps(events[3]))
        other["event"]["original"] = other["event"]["original"].replace("CCS\\\\auditor", "CCS\\\\x")
        result = _verify(tmp_path, "ecs", [*events, other])
        assert any("sequence 4 again" in f.problem for f in result.findings)


@pytest.mark.integration
class TestCli:
    def test_export_and_verify_round_trip(self, tmp_path: Path) -> None:
        """`audit export` writes one event per line to stdout; `audit verify --format` calls it intact."""
        done = cli("audit", "export", str(SAMPLE_LOG), "--format", "ocsf", "--log-level", "error")
        assert done.returncode == 0, done.stderr
        (tmp_path / "siem.jsonl").write_text(done.stdout, encoding="utf-8")
        check = cli(
            "audit",
            "verify",
            "--format",
            "ocsf",
            str(tmp_path / "siem.jsonl"),
            "--public-key",
            str(PUBLIC_KEY),
        )
        assert check.returncode == 0, check.stderr
        assert "intact (37 events: 37 records, sequences 1 to 37" in check.stdout

    def test_verify_reports_a_lost_event_with_exit_1(self, tmp_path: Path) -> None:
        """A lost event: exit 1, the sequence on stderr."""
        events = exported("ecs")
        del events[9]
        check = cli("audit", "verify", "--format", "ecs", str(write_export(tmp_path / "e.jsonl", events)))
        assert check.returncode == 1
        assert "sequence 10 missing" in check.stderr

    @pytest.mark.parametrize(
        ("extra", "named"),
        [
            (["--format", "xml"], "--format"),
            (
                ["--format", "ecs", "--destination", "https://admin:hunter2@splunk.example:8088"],
                "--destination",
            ),
            (["--format", "ecs", "--destination", "https://splunk.example:8088/?token=abc"], "--destination"),
            (["--format", "ecs", "--destination", "ftp://x:1"], "--destination"),
            (
                [
                    "--format",
                    "ecs",
                    "--destination",
                    "syslog+tls://h:6514",
                    "--destination-ca-bundle",
                    "nope.pem",
                ],
                "ca-bundle",
            ),
            (["--format", "ecs", "--destination", "https://splunk.example:8088"], "--hec-token-file"),
            (
                ["--format", "ecs", "--destination", "https://s:8088", "--hec-token-file", "missing"],
                "--hec-token-file",
            ),
            (["--format", "ecs", "--cursor", "no/such/dir/cursor"], "--cursor"),
        ],
    )
    def test_bad_input_is_one_line_and_exit_2(self, tmp_path: Path, extra: list[str], named: str) -> None:
        """Each bad flag: exit 2, one line naming it, no credentials echoed, nothing on stdout."""
        done = cli("audit", "export", str(SAMPLE_LOG), *extra, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert done.stdout == ""
        assert len(done.stderr.strip().splitlines()) == 1
        assert named in done.stderr
        assert "hunter2" not in done.stderr and "abc" not in done.stderr

    def test_an_unreadable_cursor_is_exit_2(self, tmp_path: Path) -> None:
        """A cursor file that is not a cursor stops the command before anything is shipped."""
        cursor = tmp_path / "cursor.json"
        cursor.write_text("{not json", encoding="utf-8")
        done = cli("audit", "export", str(SAMPLE_LOG), "--format", "ecs", "--cursor", str(cursor))
        assert (done.returncode, done.stdout) == (2, "")
        assert "--cursor" in done.stderr and "not a cursor file" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1

    def test_the_hec_token_is_never_shown(self, tmp_path: Path) -> None:
        """A token file with two tokens is refused without echoing either."""
        token = tmp_path / "token"
        token.write_text("11111111-aaaa secret-second-token\n", encoding="utf-8")
        done = cli(
            "audit", "export", str(SAMPLE_LOG), "--format", "ecs",
            "--destination", "https://127.0.0.1:9", "--hec-token-file", str(token),
        )  # fmt: skip
        assert done.returncode == 2
        assert "11111111" not in done.stderr and "secret-second" not in done.stderr
