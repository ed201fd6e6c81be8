"""Test helper: writes the sample audit log the SIEM export golden files are made from.

Usage: ``python tests/siem_sample.py DIR`` writes ``DIR/audit.log`` (with its head) and ``DIR/signing.pub``.
The log holds, signed, every mutation action with its intent and each outcome, every kind of observed
change, a reconciled result and a recovered torn line: every action and outcome a SIEM can receive.
The committed copy in ``tests/golden/siem`` is what the golden tests read; the private key is thrown away.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from ccs_exporter.audit import AuditLog
from ccs_exporter.audit.records import MUTATION_ACTIONS, OUTCOMES, AuditRecord, JobRef, Reconciliation
from ccs_exporter.audit.signing import RecordSigner
from ccs_exporter.models import Job

FIXTURES = Path(__file__).parent / "fixtures"
METHODS = {
    "job.create": "POST",
    "job.update": "PUT",
    "job.delete": "DELETE",
    "job.run": "PUT",
    "job.abort": "PUT",
}


def _clock() -> object:
    moment = [datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)]

    def tick() -> datetime:
        moment[0] += timedelta(seconds=1, microseconds=250)
        return moment[0]

    return tick


def _jobs() -> tuple[Job, Job]:
    raw = json.loads((FIXTURES / "search_job_by_id.json").read_text(encoding="utf-8"))
    before = Job.model_validate(raw)
    changed = json.loads(json.dumps(raw))
    changed["JobProperties"]["Name"] = "Nightly evaluation (renamed)"
    changed["JobProperties"]["JobModifiedTime"] = "2026-03-01T09:00:30"
    return before, Job.model_validate(changed)


def write_sample(directory: Path) -> Path:
    """Write the sample log and the public key into ``directory``; return the log's path."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (directory / "signing.pub").write_bytes(public)
    log_path = directory / "audit.log"
    audit = AuditLog(
        log_path,
        "CCS\\auditor",
        host_name="ccs-exporter-0",
        os_user="ccs",
        clock=_clock(),
        signer=RecordSigner(key),
    )  # type: ignore[arg-type]
    before, after = _jobs()
    job_id = before.JobProperties.JobID
    for action in MUTATION_ACTIONS:
        for outcome in OUTCOMES:
            intent = audit.intent(
                action,
                method=METHODS[action],
                url_path=f"/api/v1/jobs/{job_id}",
                job_id=None if action == "job.create" else job_id,
                job_name=before.JobProperties.Name,
                reason="CHG-1042 quarterly review",
                run_id="0b7d4c59-3f0e-4e8a-9d1c-6a2b8e4f7c13" if action == "job.abort" else None,
            )
            status = {"success": 200, "failure": 400, "unknown": None}[outcome]
            audit.result(
                intent,
                outcome,
                status_code=status,
                job_id=job_id,
                before=None if action == "job.create" else before,
                after=after if outcome == "success" and action in ("job.create", "job.update") else None,
                error_message="Job name already exists" if outcome == "failure" else None,
            )
    watched = "7e1d3c2a-5b4f-4a6e-8d9c-0f1e2d3c4b5a"  # changed by someone else in CCS
    audit.observe(watched, None, before)
    audit.observe(watched, before, after)
    audit.observe(watched, after, None)
    pending = audit.intent("job.run", method="PUT", url_path=f"/api/v1/jobs/{job_id}/run", job_id=job_id)
    audit.append(
        AuditRecord(
            action="job.run",
            phase="result",
            audit_id=pending.audit_id,
            outcome="success",
            user_name="CCS\\auditor",
            method="PUT",
            url_path=pending.url_path,
            job=JobRef(job_id, before.JobProperties.Name),
            reconciled=Reconciliation("a run started after the intent", {"run_ids": ["r-1"]}, "CCS\\auditor"),
        )
    )
    with open(log_path, "ab") as handle:
        handle.write(b'{"torn":')  # a write cut short by a crash: the next append records and removes it
    audit.observe(watched, None, after)
    return log_path


if __name__ == "__main__":
    print(write_sample(Path(sys.argv[1])))
