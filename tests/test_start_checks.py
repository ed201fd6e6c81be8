"""check-config refuses what serve refuses, and no start error echoes a password (issue 23, 11, 12, 15).

``check-config`` passed a public or RSA key as the signing key, ``/dev/null`` as the audit log and did not
warn about a key file others may read; a password pasted into a job id, a setting or a config key was
echoed in the error; an audit log that exists but cannot be written passed the start check.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ccs_exporter.audit.signing import generate_key_files

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parent.parent
PASSWORD = "Pasted-S3cret\\x'q"  # a backslash and a quote: repr() escapes both
JOB_ID = "23c59087-f3d4-4e05-a39e-3440c58e58fb"


def _without_dac_override() -> None:
    """In the child, as root: drop the capabilities that ignore file modes (before exec, for good)."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("CCS_EXPORTER_")}
    environment.update(
        CCS_EXPORTER_URL="http://127.0.0.1:9",
        CCS_EXPORTER_USERNAME="CCS\\demo",
        CCS_EXPORTER_PASSWORD=PASSWORD,
        CCS_EXPORTER_JOB_IDS=JOB_ID,
        CCS_EXPORTER_LISTEN_ADDRESS="127.0.0.1:0",
        PYTHONPATH=str(ROOT),
    )
    environment.update(env)
    environment = {key: value for key, value in environment.items() if value}  # "" unsets
    return subprocess.run(
        [sys.executable, "-m", "ccs_exporter", *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=cwd,
        timeout=60,
        check=False,
        preexec_fn=_without_dac_override,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def rsa_key(path: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)
    return path


COMMANDS = [["check-config"], ["serve"]]


class TestSameRefusals:
    """Each case: ``serve`` and ``check-config`` both exit 2 with the same one-line reason."""

    @pytest.mark.parametrize("kind", ["public", "rsa"])
    def test_unusable_signing_key(self, tmp_path: Path, kind: str) -> None:
        """A public key (the .pub of keygen) or an RSA key as the signing key is refused by both."""
        private = tmp_path / "audit.key"
        generate_key_files(private)
        key = Path(f"{private}.pub") if kind == "public" else rsa_key(tmp_path / "rsa.key")
        lines = []
        for command in COMMANDS:
            result = run(
                command,
                tmp_path,
                CCS_EXPORTER_AUDIT_LOG=str(tmp_path / "audit.jsonl"),
                CCS_EXPORTER_AUDIT_SIGNING_KEY_FILE=str(key),
            )
            assert result.returncode == 2, (command, result.stderr)
            lines.append(one_line(result))
        assert lines[0] == lines[1]
        assert "CCS_EXPORTER_AUDIT_SIGNING_KEY_FILE" in lines[0] and "BEGIN" not in lines[0]

    @pytest.mark.parametrize("target", ["/dev/null", "fifo", "symlink-to-dev-null"])
    def test_audit_log_that_is_not_a_regular_file(self, tmp_path: Path, target: str) -> None:
        """/dev/null, a FIFO or a link to /dev/null as the audit log is refused by both (and jobs)."""
        if target == "fifo":
            path = tmp_path / "audit.fifo"
            os.mkfifo(path)
        elif target == "symlink-to-dev-null":
            path = tmp_path / "audit.jsonl"
            path.symlink_to("/dev/null")
        else:
            path = Path("/dev/null")
        for command in [*COMMANDS, ["jobs", "run", JOB_ID]]:
            result = run(command, tmp_path, CCS_EXPORTER_AUDIT_LOG=str(path))
            assert result.returncode == 2, (command, result.stderr)
            line = one_line(result)
            assert "CCS_EXPORTER_AUDIT_LOG" in line and "regular file" in line

    @pytest.mark.parametrize("mode", [0o444, 0o200], ids=["read-only", "write-only"])
    def test_existing_audit_log_that_cannot_be_used(self, tmp_path: Path, mode: int) -> None:
        """A read-only or write-only audit log (the writer reads the last record) fails the start check.

        As root the commands run without CAP_DAC_OVERRIDE, so file modes apply to them as to anyone.
        """
        path = tmp_path / "audit.jsonl"
        path.write_text("", encoding="utf-8")
        path.chmod(mode)
        for command in [*COMMANDS, ["jobs", "run", JOB_ID]]:
            result = run(command, tmp_path, CCS_EXPORTER_AUDIT_LOG=str(path))
            assert result.returncode == 2, (command, result.stderr)
            assert "CCS_EXPORTER_AUDIT_LOG" in one_line(result) and "not writable" in one_line(result)

    def test_key_readable_by_others_is_a_warning(self, tmp_path: Path) -> None:
        """check-config prints a warning about a group/world-readable key file and still exits 0."""
        key = tmp_path / "audit.key"
        generate_key_files(key)
        key.chmod(0o644)
        result = run(
            ["check-config"],
            tmp_path,
            CCS_EXPORTER_AUDIT_LOG=str(tmp_path / "audit.jsonl"),
            CCS_EXPORTER_AUDIT_SIGNING_KEY_FILE=str(key),
        )
        assert result.returncode == 0, result.stderr
        assert "warning:" in result.stderr and "read by other users" in result.stderr
        assert "PRIVATE KEY" not in result.stdout + result.stderr


class TestPastedPassword:
    """The password pasted into the wrong place is never echoed back."""

    @pytest.mark.parametrize(
        ("args", "env"),
        [
            (["jobs", "get", PASSWORD], {}),
            (["jobs", "runs", PASSWORD], {}),
            (["check-config"], {"CCS_EXPORTER_JOB_IDS": PASSWORD}),
            (["check-config"], {"CCS_EXPORTER_JOB_IDS": f"{JOB_ID}, {PASSWORD}"}),
            (["check-config"], {"CCS_EXPORTER_LISTEN_ADDRESS": PASSWORD}),
            (["serve"], {"CCS_EXPORTER_LISTEN_ADDRESS": PASSWORD}),
            (["check-config"], {"CCS_EXPORTER_SHARD": PASSWORD}),
            (["check-config"], {"CCS_EXPORTER_TOTAL_SHARDS": PASSWORD}),
            (["check-config"], {"CCS_EXPORTER_URL": f"https://{PASSWORD}"}),
            (["--listen-address", PASSWORD, "check-config"], {}),
        ],
        ids=[
            "jobs-get",
            "jobs-runs",
            "job-ids",
            "job-ids-second",
            "listen-address",
            "serve-listen-address",
            "shard",
            "total-shards",
            "url-host",
            "listen-flag",
        ],
    )
    def test_not_in_the_error(self, tmp_path: Path, args: list[str], env: dict[str, str]) -> None:
        """Exit 2 with one line that names the setting and shows [REDACTED], not the password."""
        result = run(args, tmp_path, **env)
        assert result.returncode == 2, result.stderr
        line = one_line(result)
        assert PASSWORD not in line and repr(PASSWORD)[1:-1] not in line and "Pasted-S3cret" not in line

    @pytest.mark.parametrize("where", ["key", "job_ids value", "password from the file"])
    def test_not_in_config_file_errors(self, tmp_path: Path, where: str) -> None:
        """An unknown key, a bad job id in the file, and the file's own password used as a job id."""
        config = tmp_path / "config.yaml"
        env: dict[str, str] = {"CCS_EXPORTER_JOB_IDS": ""}  # the file's job ids count
        if where == "key":
            config.write_text('"Pasted-S3cret\\\\x\'q": 1\n', encoding="utf-8")
        elif where == "job_ids value":
            config.write_text("job_ids: ['Pasted-S3cret\\x''q']\n", encoding="utf-8")
        else:
            config.write_text(
                "password: 'Pasted-S3cret\\x''q'\njob_ids: ['Pasted-S3cret\\x''q']\n", encoding="utf-8"
            )
            env["CCS_EXPORTER_PASSWORD"] = ""
        result = run(["check-config", "--config", str(config)], tmp_path, **env)
        assert result.returncode == 2, result.stderr
        assert "Pasted-S3cret" not in one_line(result)
