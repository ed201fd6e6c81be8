"""The tamper-evident audit log: hash-chained JSON lines for job mutations and observed job changes.

Each record is one line of canonical JSON (sorted keys, no spaces) with ECS-style nested fields. Its
``audit.hash`` is the SHA-256 of the record without that field, and ``audit.prev_hash`` is the previous
record's hash, so editing, inserting, deleting or reordering a line breaks the chain; ``event.sequence``
counts up from 1 without gaps. Appends take an exclusive ``flock`` on the file and read the tail under it,
so threads and processes sharing the file never fork the chain. A ``<log>.head`` file beside the log holds
the last sequence and hash, so records cut off the end are noticed too. Every failure to write raises
``AuditError``: callers refuse the mutation (fail-closed).

Modules: ``records`` (the typed record, hashing), ``mutations`` (intent and result), ``observer``
(observations, matching our own mutations), ``writer`` (the append engine), ``verify``, ``reconcile``
and ``evidence`` (closing intents a crash left open), and ``log``
(``AuditLog``, which composes them). Secrets are removed with the shared ``ccs_exporter.redaction``.
"""

from __future__ import annotations

from ccs_exporter.audit.log import AuditLog, AuditStats
from ccs_exporter.audit.mutations import MutationIntent, intent_record
from ccs_exporter.audit.records import (
    ACTION_TYPES,
    ECS_VERSION,
    GENESIS_HASH,
    MUTATION_ACTIONS,
    RECORD_VERSION,
    AuditRecord,
    JobRef,
    canonical_json,
    diff_snapshots,
    job_snapshot,
    record_hash,
)
from ccs_exporter.audit.verify import HEAD_SUFFIX, Finding, VerifyResult, verify
from ccs_exporter.redaction import REDACTED, Redactor, secret_variants

__all__ = [
    "ACTION_TYPES",
    "ECS_VERSION",
    "GENESIS_HASH",
    "HEAD_SUFFIX",
    "MUTATION_ACTIONS",
    "RECORD_VERSION",
    "REDACTED",
    "AuditLog",
    "AuditRecord",
    "AuditStats",
    "Finding",
    "JobRef",
    "MutationIntent",
    "Redactor",
    "VerifyResult",
    "canonical_json",
    "diff_snapshots",
    "intent_record",
    "job_snapshot",
    "record_hash",
    "secret_variants",
    "verify",
]
