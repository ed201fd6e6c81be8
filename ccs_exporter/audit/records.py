"""The audit record: a typed model of the four kinds of record, their ECS-style fields, hash and chain.

``AuditRecord`` describes what happened (a mutation's intent or result, an observation, a recovery);
``fields()`` lays it out as nested ECS-style data and ``stamp`` adds what every record carries (time,
host, process, sequence, the hash chain). Canonical JSON makes the hash reproducible.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from ccs_exporter import __version__
from ccs_exporter.models import Job

RECORD_VERSION = 1
ECS_VERSION = "8.11.0"
GENESIS_HASH = "0" * 64

# Actions and the ECS event.type each one carries.
ACTION_TYPES = {
    "job.create": "creation",
    "job.update": "change",
    "job.delete": "deletion",
    "job.created": "creation",
    "job.run": "start",
    "job.abort": "end",
    "job.changed": "change",
    "job.deleted": "deletion",
    "audit.recovered": "change",
}
MUTATION_ACTIONS = ("job.create", "job.update", "job.delete", "job.run", "job.abort")
OUTCOMES = ("success", "failure", "unknown")

Phase = Literal["intent", "result", "observation", "recovery"]

_SURROGATE = re.compile("[\ud800-\udfff]")


def new_audit_id() -> str:
    """A fresh audit.id (shared by a mutation's intent and result)."""
    return str(uuid.uuid4())


@dataclass(frozen=True)
class JobRef:
    """``ccs.job``: the job a record is about (``type`` on create intents, ``owner`` on observations)."""

    id: str | None
    name: str | None
    type: str | None = None
    owner: str | None = None


@dataclass(frozen=True)
class Reconciliation:
    """How a result written after the fact was found: why (``event.reason``), the evidence, who looked."""

    reason: str
    evidence: Mapping[str, Any]
    checked_by: str


@dataclass(frozen=True)
class AuditRecord:
    """One audit record before it is redacted, stamped and chained.

    Mutations (``intent``/``result``) carry the CCS account, the request and the reason; observations
    carry the observer and the job's previous and new state; a recovery carries what it removed.
    """

    action: str
    phase: Phase
    audit_id: str = field(default_factory=new_audit_id)
    outcome: str | None = None
    user_name: str | None = None
    method: str | None = None
    url_path: str | None = None
    job: JobRef | None = None
    run_id: str | None = None  # ccs.job_run.id: the run a job.run started or a job.abort ends
    delete_job: bool | None = None
    reason: str | None = None
    requested: Mapping[str, Any] | None = None
    before: Job | None = None
    after: Job | None = None
    after_error: str | None = None
    status_code: int | None = None
    error_message: str | None = None
    message: str | None = None
    removed: tuple[int, str] | None = None  # (bytes, sha256) of a torn line
    reconciled: Reconciliation | None = None  # a result looked up in CCS later (audit reconcile)

    @property
    def performed(self) -> bool:
        """True for records of our own doing; False for changes observed on CCS."""
        return self.phase != "observation"

    def fields(self) -> dict[str, Any]:
        """The record as nested ECS-style data, without the stamp (time, host, sequence, hashes)."""
        event: dict[str, Any] = {"kind": "event" if self.performed else "state", "action": self.action}
        if self.outcome is not None:
            event["outcome"] = self.outcome
        audit: dict[str, Any] = {
            "id": self.audit_id,
            "phase": self.phase,
            "origin": "performed" if self.performed else "observed",
        }
        if self.removed is not None:
            audit["removed"] = {"bytes": self.removed[0], "sha256": self.removed[1]}
        fields: dict[str, Any] = {"event": event, "audit": audit}
        if self.reconciled is not None:
            audit["reconciled"] = True
            event["reason"] = self.reconciled.reason
            fields["reconcile"] = {
                "evidence": dict(self.reconciled.evidence),
                "checked_by": {"name": self.reconciled.checked_by},
            }
        if self.phase in ("intent", "result"):
            fields.update(self._mutation_fields())
        elif self.phase == "observation":
            fields["observer"] = {"product": "ccs-exporter", "name": self.user_name}
            fields["ccs"] = {"job": self._job_fields()}
            fields["change"] = self._change_fields()
        if self.message:
            fields["message"] = self.message
        return fields

    def _mutation_fields(self) -> dict[str, Any]:
        http: dict[str, Any] = {"request": {"method": self.method}}
        if self.status_code is not None:
            http["response"] = {"status_code": self.status_code}
        ccs: dict[str, Any] = {"job": self._job_fields()}
        if self.run_id is not None:
            ccs["job_run"] = {"id": self.run_id}
        if self.delete_job is not None:
            ccs["delete_job"] = self.delete_job
        fields: dict[str, Any] = {
            "user": {"name": self.user_name},
            "http": http,
            "url": {"path": self.url_path},
            "ccs": ccs,
            "reason": self.reason,
        }
        if self.phase == "result":
            fields["change"] = self._change_fields()
        elif self.requested is not None:
            fields["change"] = {"requested": dict(self.requested)}
        if self.error_message:
            fields["error"] = {"message": self.error_message}
        return fields

    def _job_fields(self) -> dict[str, Any]:
        job = self.job if self.job is not None else JobRef(None, None)
        fields: dict[str, Any] = {"id": job.id, "name": job.name}
        if job.type is not None:
            fields["type"] = job.type
        if not self.performed:
            fields["owner"] = job.owner
        return fields

    def _change_fields(self) -> dict[str, Any]:
        before, after = job_snapshot(self.before), job_snapshot(self.after)
        change: dict[str, Any] = {"before": before, "after": after}
        if before is not None and after is not None:
            change["diff"] = diff_snapshots(before, after)
        if self.after_error:
            change["after_error"] = self.after_error
        return change


@dataclass(frozen=True)
class Stamp:
    """What every record carries besides its own fields: who wrote it, where, when."""

    host_name: str
    os_user: str

    def apply(
        self, fields: dict[str, Any], *, moment: datetime, sequence: int, prev_hash: str
    ) -> dict[str, Any]:
        """``fields`` (already redacted) completed with time, host, process, sequence and hashes."""
        record = fields
        action = str(record["event"]["action"])
        record["@timestamp"] = moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        record["ecs"] = {"version": ECS_VERSION}
        record["service"] = {"name": "ccs-exporter", "version": __version__}
        record["host"] = {"name": self.host_name}
        record["process"] = {"pid": os.getpid(), "user": {"name": self.os_user}}
        record["event"].update(
            {
                "sequence": sequence,
                "category": ["configuration"],
                "type": [ACTION_TYPES.get(action, "info")],
                "dataset": "ccs_exporter.audit",
                "provider": "ccs-exporter",
            }
        )
        record["audit"].update({"version": RECORD_VERSION, "prev_hash": prev_hash})
        record["audit"]["hash"] = record_hash(record)
        return record


def canonical_json(record: Mapping[str, Any]) -> str:
    """The canonical serialisation: sorted keys, no insignificant spaces, UTF-8 text.

    Text is kept as it came, even text that is not valid Unicode: a lone UTF-16 surrogate (JSON
    ``"\\udcff"``, which a .NET server can send) is written as that JSON escape, so the line is valid
    UTF-8 and reads back to the same string. A surrogate pair split into two code points is joined into
    the character it encodes first, as reading the line back would, so the hash is the same both ways.
    """
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    if _SURROGATE.search(text) is None:
        return text
    text = json.dumps(
        _joined_pairs(record), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return _SURROGATE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def _joined_pairs(value: Any) -> Any:
    """``value`` with every string's surrogate pairs joined; lone surrogates stay as they are."""
    if isinstance(value, str):
        return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    if isinstance(value, Mapping):
        return {_joined_pairs(key): _joined_pairs(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_joined_pairs(item) for item in value]
    return value


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical record with ``audit.hash`` and ``audit.signature`` left out.

    The signature signs the hash, so it cannot be part of it; ``audit.key_id`` is.
    """
    audit = dict(record.get("audit") or {})
    audit.pop("hash", None)
    audit.pop("signature", None)
    body = dict(record)
    body["audit"] = audit
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def job_snapshot(job: Job | None) -> dict[str, Any] | None:
    """A job as plain JSON data for ``change.before`` / ``change.after``."""
    return None if job is None else job.model_dump(mode="json")


def diff_snapshots(before: Any, after: Any, prefix: str = "") -> dict[str, dict[str, Any]]:
    """Changed fields as ``{"dotted.path": {"before": old, "after": new}}``; lists compare whole."""
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        changes: dict[str, dict[str, Any]] = {}
        for key in sorted(set(before) | set(after), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            changes.update(diff_snapshots(before.get(key), after.get(key), path))
        return changes
    if before == after:
        return {}
    return {prefix or "$": {"before": before, "after": after}}
