"""Tests of text that is not valid Unicode (lone UTF-16 surrogates) in records, specs and CCS answers."""

from __future__ import annotations

import json
from pathlib import Path

from ccs_exporter.audit import AuditLog, canonical_json, record_hash, verify

LONE = "\udcff"  # what a .NET server sends as JSON "\udcff"


def raw_lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


class TestRecords:
    def test_a_lone_surrogate_is_kept_as_its_json_escape(self, tmp_path: Path) -> None:
        """A lone surrogate is written as valid UTF-8 with the \\udcff escape, and the log verifies."""
        path = tmp_path / "audit.log"
        audit_log = AuditLog(path, user_name="CCS\\demo")
        audit_log.append(
            {
                "event": {"kind": "state", "action": "job.changed", "outcome": "success"},
                "audit": {"id": "x", "phase": "observation", "origin": "observed"},
                "ccs": {"job": {"name": f"bad{LONE}name", f"key{LONE}": "value"}},
            }
        )
        (line,) = raw_lines(path)
        text = line.decode("utf-8")  # strict: the line is valid UTF-8
        assert "bad\\udcffname" in text
        record = json.loads(text)
        assert record["ccs"]["job"]["name"] == f"bad{LONE}name"  # reads back as what CCS sent
        assert verify(path).ok

    def test_hash_is_the_same_before_and_after_reading_back(self) -> None:
        """The hash of a record with lone surrogates and a split surrogate pair equals that of its line."""
        record = {"a": f"x{LONE}", "b": "\ud83d\ude00", "c": "\\" + LONE, "audit": {}}
        line = canonical_json(record)
        line.encode("utf-8")
        assert canonical_json(json.loads(line)) == line
        assert record_hash(json.loads(line)) == record_hash(record)

    def test_plain_text_is_written_as_before(self) -> None:
        """Records without surrogates are the plain UTF-8 canonical JSON they always were."""
        record = {"name": "Évaluation \u2013 \U0001f600", "n": 1}
        assert canonical_json(record) == json.dumps(
            record, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
