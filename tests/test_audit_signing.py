"""Tests of signed audit records: keygen, signing from the settings, verify --public-key, key secrecy."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from audit_forger import append_copy_of, edit_reason, forge, read_records
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ccs_exporter.audit import AuditLog, verify
from ccs_exporter.audit.signing import RecordSigner, SignatureChecker, generate_key_files
from ccs_exporter.simulator import Simulator

REPO_ROOT = Path(__file__).resolve().parent.parent
JOB_ID = "23c59087-f3d4-4e05-a39e-3440c58e58fb"


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("CCS_EXPORTER_")}
    environment.update({"PYTHONPATH": str(REPO_ROOT), **env})
    return subprocess.run(
        [sys.executable, "-m", "ccs_exporter", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def observation(number: int) -> dict[str, object]:
    return {
        "event": {"kind": "state", "action": "job.changed", "outcome": "success"},
        "audit": {"id": f"obs-{number}", "phase": "observation", "origin": "observed"},
    }


def key_material(key_file: Path) -> list[str]:
    """Every form the private key could leak in: PEM body lines, raw bytes as hex and Base64."""
    pem = key_file.read_text(encoding="ascii")
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    raw = key.private_bytes(  # type: ignore[union-attr]
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    body = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    return [*body, raw.hex(), base64.b64encode(raw).decode(), base64.b64encode(raw).decode().rstrip("=")]


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    """Two key pairs, as after a rotation: a (old) and b (new)."""
    made = {}
    for name in ("a", "b"):
        generate_key_files(tmp_path / f"{name}.key")
        made[name] = tmp_path / f"{name}.key"
    return made


def checker(*private_keys: Path) -> SignatureChecker:
    return SignatureChecker.from_files([Path(f"{key}.pub") for key in private_keys])


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "audit.log"


def signed_log(path: Path, key: Path, count: int = 4) -> AuditLog:
    audit_log = AuditLog(path, user_name="CCS\\demo", signer=RecordSigner.from_file(key))
    for number in range(count):
        audit_log.append(observation(number))
    return audit_log


@pytest.mark.integration
class TestKeygen:
    def test_writes_a_private_key_0600_and_its_public_half(self, tmp_path: Path) -> None:
        """keygen writes KEYFILE (0600) and KEYFILE.pub and prints the key id, not the key."""
        key = tmp_path / "audit-signing.key"
        done = cli("audit", "keygen", str(key))
        assert done.returncode == 0, done.stderr
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert Path(f"{key}.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
        key_id = checker(key).key_ids[0]
        assert f"key id {key_id}" in done.stdout
        for secret in key_material(key):
            assert secret not in done.stdout + done.stderr

    @pytest.mark.parametrize("existing", ["audit.key", "audit.key.pub"])
    def test_refuses_to_overwrite(self, tmp_path: Path, existing: str) -> None:
        """An existing key or public key is never replaced: exit 2, one line, files untouched."""
        (tmp_path / existing).write_text("keep me")
        done = cli("audit", "keygen", str(tmp_path / "audit.key"))
        assert done.returncode == 2
        assert len(done.stderr.strip().splitlines()) == 1 and "never overwritten" in done.stderr
        assert (tmp_path / existing).read_text() == "keep me"
        assert sorted(p.name for p in tmp_path.iterdir()) == [existing]

    def test_missing_directory_is_one_line(self, tmp_path: Path) -> None:
        """A key path in a directory that does not exist: exit 2, one line, no traceback."""
        done = cli("audit", "keygen", str(tmp_path / "nope" / "audit.key"))
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


class TestSignedRecords:
    def test_every_record_carries_key_id_and_a_valid_signature(
        self, keys: dict[str, Path], log_path: Path
    ) -> None:
        """Records are signed over their hash and verify with the public key."""
        signed_log(log_path, keys["a"])
        records = read_records(log_path)
        assert {r["audit"]["key_id"] for r in records} == set(checker(keys["a"]).key_ids)
        assert all(len(base64.b64decode(r["audit"]["signature"])) == 64 for r in records)
        result = verify(log_path, signatures=checker(keys["a"]))
        assert (result.ok, result.signed) == (True, 4)

    def test_rotated_keys_are_chosen_by_key_id(self, keys: dict[str, Path], log_path: Path) -> None:
        """Records signed by the old key then the new one verify with both public keys given."""
        signed_log(log_path, keys["a"], 2)
        signed_log(log_path, keys["b"], 2)
        assert verify(log_path, signatures=checker(keys["a"], keys["b"])).ok
        only_new = verify(log_path, signatures=checker(keys["b"]))
        assert [f.line for f in only_new.findings] == [1, 2]
        assert "none of the --public-key files has" in only_new.findings[0].problem

    def test_records_before_signing_was_enabled_are_accepted(
        self, keys: dict[str, Path], log_path: Path
    ) -> None:
        """A log that was unsigned before the key was set verifies: signing starts somewhere."""
        AuditLog(log_path, user_name="CCS\\demo").append(observation(0))
        signed_log(log_path, keys["a"], 2)
        result = verify(log_path, signatures=checker(keys["a"]))
        assert (result.ok, result.records, result.signed) == (True, 3, 2)

    def test_wrong_public_key_fails_every_record(self, keys: dict[str, Path], log_path: Path) -> None:
        """Checking with a key that did not sign names the record's key id as unknown."""
        signed_log(log_path, keys["a"], 3)
        result = verify(log_path, signatures=checker(keys["b"]))
        assert result.problem_count == 3
        assert all("none of the --public-key files has" in f.problem for f in result.findings)


class TestForgerWithoutTheKey:
    def test_recomputed_chain_keeps_old_signatures_that_no_longer_fit(
        self, keys: dict[str, Path], log_path: Path
    ) -> None:
        """The forger's edit, chain and head pass plain verify; every record after it has a bad signature."""
        signed_log(log_path, keys["a"], 5)
        forge(log_path, edit_reason(3, "forged"))
        assert verify(log_path).ok
        result = verify(log_path, signatures=checker(keys["a"]))
        assert [f.line for f in result.findings] == [3, 4, 5]
        assert all("bad signature" in f.problem for f in result.findings)

    def test_forged_record_appended_unsigned_fails(self, keys: dict[str, Path], log_path: Path) -> None:
        """A record appended after signed ones, chain and head recomputed, with no signature, is reported."""
        signed_log(log_path, keys["a"], 3)

        def append_unsigned(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
            forged = json.loads(json.dumps(records[0]))
            forged["audit"]["id"] = "forged"
            del forged["audit"]["signature"], forged["audit"]["key_id"]
            return [*records, forged]

        forge(log_path, append_unsigned)
        assert verify(log_path).ok
        (finding,) = verify(log_path, signatures=checker(keys["a"])).findings
        assert finding.line == 4 and "unsigned record after signed ones" in finding.problem

    def test_forged_record_with_a_borrowed_signature_fails(
        self, keys: dict[str, Path], log_path: Path
    ) -> None:
        """A forged record that copies another record's key id and signature has a bad signature."""
        signed_log(log_path, keys["a"], 3)
        forge(log_path, append_copy_of(1, "forged"))
        (finding,) = verify(log_path, signatures=checker(keys["a"])).findings
        assert finding.line == 4 and "bad signature" in finding.problem

    def test_stripped_tail_signatures_fail(self, keys: dict[str, Path], log_path: Path) -> None:
        """Removing the signatures of the last records (to rewrite them) leaves unsigned after signed."""
        signed_log(log_path, keys["a"], 4)
        records = read_records(log_path)
        for record in records[2:]:
            del record["audit"]["signature"], record["audit"]["key_id"]
        forge(log_path, lambda _: records)
        result = verify(log_path, signatures=checker(keys["a"]))
        assert [f.line for f in result.findings] == [3, 4]
        assert "unsigned record after signed ones" in result.findings[0].problem

    def test_every_signature_stripped_fails(self, keys: dict[str, Path], log_path: Path) -> None:
        """A log with no signature at all, checked with a public key, is reported."""
        signed_log(log_path, keys["a"], 3)
        forge(log_path, lambda records: records, strip_signatures=True)
        assert verify(log_path).ok
        result = verify(log_path, signatures=checker(keys["a"]))
        assert "no record is signed" in (result.problem or "")

    def test_tampered_signature_fails(self, keys: dict[str, Path], log_path: Path) -> None:
        """A signature with one bit flipped (the hash untouched) is a bad signature."""
        signed_log(log_path, keys["a"], 2)
        lines = log_path.read_text(encoding="utf-8").splitlines(keepends=True)
        record = json.loads(lines[1])
        raw = bytearray(base64.b64decode(record["audit"]["signature"]))
        raw[0] ^= 1
        lines[1] = lines[1].replace(record["audit"]["signature"], base64.b64encode(bytes(raw)).decode())
        log_path.write_text("".join(lines), encoding="utf-8")
        result = verify(log_path, signatures=checker(keys["a"]))
        assert [f.line for f in result.findings] == [2]
        assert "bad signature" in result.findings[0].problem


@pytest.fixture
def sim(started: Callable[..., Simulator]) -> Simulator:
    started_simulator: Simulator = started(run_interval=None)
    return started_simulator


def mutation_env(sim: Simulator, log_path: Path, key: Path) -> dict[str, str]:
    return {
        "CCS_EXPORTER_URL": sim.url,
        "CCS_EXPORTER_USERNAME": sim.username,
        "CCS_EXPORTER_PASSWORD": sim.password,
        "CCS_EXPORTER_AUDIT_LOG": str(log_path),
        "CCS_EXPORTER_AUDIT_SIGNING_KEY_FILE": str(key),
        "CCS_EXPORTER_LOG_LEVEL": "debug",
        "CCS_EXPORTER_LOG_FORMAT": "json",
    }


@pytest.mark.integration
class TestSigningFromSettings:
    def test_cli_mutation_is_signed_and_verifies(
        self, sim: Simulator, keys: dict[str, Path], log_path: Path, tmp_path: Path
    ) -> None:
        """`jobs update` with the key set signs intent and result; verify --public-key says so."""
        spec = tmp_path / "update.json"
        spec.write_text(json.dumps({"JobDescription": "signed change"}))
        done = cli("jobs", "update", JOB_ID, "-f", str(spec), **mutation_env(sim, log_path, keys["a"]))
        assert done.returncode == 0, done.stderr
        assert all("signature" in r["audit"] for r in read_records(log_path))
        checked = cli("audit", "verify", str(log_path), "--public-key", f"{keys['a']}.pub")
        assert checked.returncode == 0, checked.stderr
        assert "intact (2 records); 2 signed (checked)" in checked.stdout
        unchecked = cli("audit", "verify", str(log_path))
        assert "2 signed (not checked: give --public-key)" in unchecked.stdout

    def test_key_material_never_leaves(
        self, sim: Simulator, keys: dict[str, Path], log_path: Path, tmp_path: Path
    ) -> None:
        """Canary: no form of the private key is in the output, the debug log or the audit records."""
        spec = tmp_path / "update.json"
        spec.write_text(json.dumps({"JobDescription": "canary run"}))
        env = mutation_env(sim, log_path, keys["a"])
        outputs = [cli("jobs", "update", JOB_ID, "-f", str(spec), **env)]
        outputs.append(cli("audit", "verify", str(log_path), "--public-key", f"{keys['a']}.pub"))
        outputs.append(
            cli("audit", "verify", str(log_path), "--public-key", str(keys["a"]))
        )  # the wrong file
        everything = "\n".join(
            [*(o.stdout + o.stderr for o in outputs), log_path.read_text(encoding="utf-8")]
        )
        assert outputs[0].returncode == 0 and outputs[2].returncode == 2
        for secret in key_material(keys["a"]):
            assert secret not in everything

    @pytest.mark.parametrize(
        ("content", "words"),
        [
            (
                "-----BEGIN PRIVATE KEY-----\nQ0FOQVJZLWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----\n",
                "not a PEM",
            ),
            ("CANARY-key-material not a key at all\n", "not a PEM Ed25519 private key"),
            ("public", "not a PEM Ed25519 private key"),
            ("ec", "not Ed25519"),
            ("encrypted", "encrypted"),
        ],
    )
    def test_unusable_key_exits_2_in_one_line_without_its_content(
        self, sim: Simulator, keys: dict[str, Path], log_path: Path, tmp_path: Path, content: str, words: str
    ) -> None:
        """serve and jobs refuse a key they cannot use at start, naming the setting, never the content."""
        key = tmp_path / "bad.key"
        key.write_text(_key_text(content, keys), encoding="ascii")
        for args in (["serve", "--listen-address", "127.0.0.1:0"], ["jobs", "delete", JOB_ID]):
            done = cli(*args, **mutation_env(sim, log_path, key))
            assert done.returncode == 2, done.stderr
            assert len(done.stderr.strip().splitlines()) == 1, done.stderr
            assert "CCS_EXPORTER_AUDIT_SIGNING_KEY_FILE" in done.stderr and words in done.stderr
            for line in key.read_text().splitlines():
                if len(line) > 8 and not line.startswith("-----"):
                    assert line not in done.stderr + done.stdout
        assert sim.request_count("delete_job") == 0
        assert not log_path.exists()

    def test_unreadable_key_file_exits_2(self, sim: Simulator, log_path: Path, tmp_path: Path) -> None:
        """A key file that does not exist stops the program at start with the setting's name."""
        done = cli("jobs", "delete", JOB_ID, **mutation_env(sim, log_path, tmp_path / "missing.key"))
        assert done.returncode == 2
        assert "CCS_EXPORTER_AUDIT_SIGNING_KEY_FILE" in done.stderr and "not a readable file" in done.stderr

    @pytest.mark.parametrize("content", ["garbage", "private"])
    def test_unusable_public_key_exits_2(
        self, keys: dict[str, Path], log_path: Path, tmp_path: Path, content: str
    ) -> None:
        """verify --public-key with a file that is no public key: exit 2, one line naming the file."""
        signed_log(log_path, keys["a"], 1)
        public = tmp_path / "given.pub"
        public.write_text("garbage" if content == "garbage" else keys["a"].read_text())
        done = cli("audit", "verify", str(log_path), "--public-key", str(public))
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
        assert str(public) in done.stderr and "not a PEM Ed25519 public key" in done.stderr


def _key_text(kind: str, keys: dict[str, Path]) -> str:
    if kind == "public":
        return Path(f"{keys['a']}.pub").read_text()
    if kind in ("ec", "encrypted"):
        if kind == "ec":
            key: Any = ec.generate_private_key(ec.SECP256R1())
            encryption: Any = serialization.NoEncryption()
        else:
            key = serialization.load_pem_private_key(keys["b"].read_bytes(), password=None)
            encryption = serialization.BestAvailableEncryption(b"CANARY-passphrase")
        return key.private_bytes(  # type: ignore[no-any-return]
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        ).decode()
    return kind
