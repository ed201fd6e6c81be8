"""`audit verify` says what it can know: a missing file is a usage error, an unsigned log is unsigned."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ccs_exporter.audit import AuditLog
from ccs_exporter.audit.signing import generate_key_files


def verify_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CCS_EXPORTER_")}
    return subprocess.run(
        [sys.executable, "-m", "ccs_exporter", "audit", "verify", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.integration
def test_missing_file_exits_2(tmp_path: Path) -> None:
    """A mistyped log name is a usage error (2) on one line, not a damaged log (1)."""
    result = verify_cli("missing.jsonl", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "ccs-exporter: configuration error: missing.jsonl: no such file"
    assert result.stdout == ""


@pytest.mark.integration
def test_log_from_before_any_key_is_called_unsigned(tmp_path: Path) -> None:
    """--public-key on a log written without a signing key: the records are unsigned; no claim that
    signatures were removed, which the log cannot show."""
    log = tmp_path / "audit.jsonl"
    audit_log = AuditLog(log, user_name="CCS\\demo")
    for number in range(2):
        audit_log.append(
            {
                "event": {"kind": "state", "action": "job.changed", "outcome": "success"},
                "audit": {"id": f"obs-{number}", "phase": "observation", "origin": "observed"},
            }
        )
    generate_key_files(tmp_path / "new.key")
    result = verify_cli(str(log), "--public-key", str(tmp_path / "new.key.pub"), cwd=tmp_path)
    assert result.returncode == 1
    assert "the records are unsigned" in result.stderr
    assert "signatures were removed" not in result.stderr
    assert verify_cli(str(log), cwd=tmp_path).returncode == 0
