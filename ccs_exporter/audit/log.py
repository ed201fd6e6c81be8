"""``AuditLog``: the audit trail as the rest of the program sees it, built once by ``from_settings``.

It redacts and stamps records, appends them through the chain writer, writes mutation intents and
results, records observed changes unless they were our own, and counts what it wrote for metrics.
"""

from __future__ import annotations

import dataclasses
import getpass
import os
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from ccs_exporter.audit.mutations import MutationIntent, job_of_run
from ccs_exporter.audit.observer import OwnMutations, observation_record
from ccs_exporter.audit.records import MUTATION_ACTIONS, AuditRecord, JobRef, Stamp
from ccs_exporter.audit.signing import KeyFileError, RecordSigner, key_file_open_to_others
from ccs_exporter.audit.writer import ChainWriter, Precondition
from ccs_exporter.errors import AuditError, ConfigError
from ccs_exporter.models import Job
from ccs_exporter.redaction import Redactor, secret_variants

if TYPE_CHECKING:
    from ccs_exporter.settings.config import Settings

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class AuditStats:
    """Counters for ``ccs_audit_records_total{action,outcome}`` and ``ccs_audit_write_errors_total``.

    ``records`` counts completed records this ``AuditLog`` wrote: mutation results and observations
    (intents are not counted, so each mutation counts once, under its outcome).
    """

    records: dict[tuple[str, str], int] = field(default_factory=dict)
    write_errors: int = 0


def _signer_of(settings: Settings) -> tuple[RecordSigner | None, tuple[str, ...]]:
    """The signer of ``audit_signing_key_file`` (None when unset) and warnings about it."""
    key_file = settings.audit_signing_key_file
    if key_file is None:
        return None, ()
    try:
        signer = RecordSigner.from_file(key_file)
    except KeyFileError as exc:
        raise ConfigError(
            f"CCS_EXPORTER_AUDIT_SIGNING_KEY_FILE (audit_signing_key_file): {exc}",
            field="audit_signing_key_file",
        ) from None
    warnings: tuple[str, ...] = ()
    if key_file_open_to_others(key_file):
        warnings = (
            f"CCS_EXPORTER_AUDIT_SIGNING_KEY_FILE (audit_signing_key_file): {key_file} may be read by "
            "other users (group or world bits set); chmod 600 it",
        )
    return signer, warnings


def _recreated(before: Job, after: Job) -> bool:
    """True when ``after`` is another job than ``before`` under the same id: its creation time moved."""
    created_before = before.JobProperties.JobCreationTime
    created_after = after.JobProperties.JobCreationTime
    return created_before is not None and created_after is not None and created_before != created_after


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # getpass raises assorted errors when no user name is known (containers)
        return str(os.getuid())


class AuditLog:
    """Appends hash-chained audit records to one JSON-lines file; safe across threads and processes.

    ``user_name`` is the CCS account mutations are made as. ``secrets`` are values that must never be
    written (the password and its Base64 form); secret-named keys and secret-looking text are redacted
    as well. ``match_window_seconds`` is how far apart our own mutation and an observed change of the
    same job may be (clock skew between us and CCS) for ``observe`` to treat the change as ours. With a
    ``signer``, every record carries ``audit.key_id`` (hashed with the record) and ``audit.signature``
    (of its hash).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        user_name: str,
        *,
        secrets: Iterable[str] = (),
        host_name: str | None = None,
        os_user: str | None = None,
        clock: Callable[[], datetime] = _utc_now,
        match_window_seconds: float = 300.0,
        fsync: bool = True,
        signer: RecordSigner | None = None,
    ) -> None:
        self._path = Path(path)
        self._signer = signer
        self._user_name = user_name
        self._secrets = list(secrets)
        self._redact = Redactor(self._secrets)
        self._more_secrets: Callable[[], Iterable[str]] | None = None
        self._stamp = Stamp(
            host_name if host_name is not None else socket.gethostname(),
            os_user if os_user is not None else _os_user(),
        )
        self._clock = clock
        self._writer = ChainWriter(self._path, self._stamped, fsync=fsync)
        self._lock = threading.Lock()
        self._records: dict[tuple[str, str], int] = {}
        self._write_errors = 0
        self._own = OwnMutations(self._path, timedelta(seconds=match_window_seconds))
        self._own_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> AuditLog:
        """The audit log of ``settings.audit_log``, as the CCS account, never writing the password.

        With ``audit_signing_key_file`` set, records are signed with that key. ``check_settings`` runs
        first: what it refuses is a ``ConfigError``, what it warns about is logged.
        """
        if settings.audit_log is None:
            raise ValueError("no audit log configured")
        signer, warnings = _signer_of(settings)
        for warning in warnings:
            log.warning("audit_signing_key_readable_by_others", warning=warning)
        return cls(
            settings.audit_log,
            user_name=settings.username,
            secrets=secret_variants(settings.password_value()),
            signer=signer,
        )

    @staticmethod
    def check_settings(settings: Settings) -> tuple[str, ...]:
        """The checks ``serve``, ``jobs`` and ``check-config`` share for the audit settings.

        Raises ``ConfigError`` for a signing key that cannot be used (a public key, an RSA key...); returns
        warnings (a key file others may read). The audit log path itself is checked by ``Settings``.
        """
        return _signer_of(settings)[1]

    @property
    def path(self) -> Path:
        """The audit log file."""
        return self._path

    @property
    def user_name(self) -> str:
        """The CCS account recorded as ``user.name`` of our mutations."""
        return self._user_name

    def also_redact(self, secrets: Callable[[], Iterable[str]]) -> None:
        """Redact what ``secrets()`` gives too, asked at each append (the client's tokens change)."""
        self._more_secrets = secrets

    def signature_problem(self, record: Mapping[str, Any]) -> str | None:
        """Why ``record`` is not signed by this log's key, or None (also None when records are not signed).

        What we append vouches for what it chains onto; ``reconcile`` must not sign a result for an
        intent someone without the key wrote.
        """
        if self._signer is None:
            return None
        audit = record.get("audit")
        if not isinstance(audit, Mapping):
            return "not an audit record"
        return self._signer.problem(audit.get("key_id"), audit.get("signature"), str(audit.get("hash")))

    def redact(self, value: Any) -> Any:
        """``value`` with every secret removed, as it would be written."""
        return self._redact(value)

    def stats(self) -> AuditStats:
        """A snapshot of the record and write-error counters."""
        with self._lock:
            errors = self._write_errors + self._writer.head_write_errors
            return AuditStats(records=dict(self._records), write_errors=errors)

    # --- mutations: intent, then result --------------------------------------------------------------

    def intent(self, record: AuditRecord) -> MutationIntent:
        """Write and fsync the intent record of a mutation about to be sent; raise AuditError if not.

        The record is the one the operation built (``intent_record``); the log adds the account.
        """
        if record.phase != "intent" or record.action not in MUTATION_ACTIONS:
            raise ValueError(f"not the intent of a mutation: {record.action!r} {record.phase!r}")
        stamped = dataclasses.replace(record, user_name=self._user_name)
        return MutationIntent(stamped, self.append(stamped))

    def result(self, record: AuditRecord) -> dict[str, Any]:
        """Write and fsync the result record of a mutation (``MutationIntent.result``); AuditError if not."""
        if record.phase != "result":
            raise ValueError(f"not the result of a mutation: {record.phase!r}")
        return self.append(record)

    def job_of_run(self, run_id: str) -> JobRef | None:
        """The job of a run one of our own ``job.run`` results names (a local read), or None."""
        return job_of_run(self._path, run_id)

    # --- changes made elsewhere ------------------------------------------------------------------------

    def observe(self, job_id: str, before: Job | None, after: Job | None) -> None:
        """Record a change the poller saw on a watched job, unless it was one of our own mutations.

        ``after=None`` means the job disappeared. Never raises: a failure is logged and counted as a
        write error.
        """
        try:
            self._observe(job_id.lower(), before, after)
        except Exception as exc:
            if not isinstance(exc, AuditError):  # append() has already counted its own failures
                with self._lock:
                    self._write_errors += 1
            log.error("audit_observe_failed", job_id=job_id, path=str(self._path), error=str(exc))

    def _observe(self, job_id: str, before: Job | None, after: Job | None) -> None:
        if before is None and after is None:
            return
        if before is not None and after is not None and _recreated(before, after):
            # Deleted and created again under the same id between two readings: two records, not a
            # change (the one that was deleted and the one that is new have nothing to diff).
            self._observe(job_id, before, None)
            self._observe(job_id, None, after)
            return
        with self._own_lock:
            ours = self._own.match(job_id, before, after)
        if ours is not None:
            log.debug("audit_observed_own_mutation", job_id=job_id, audit_id=ours)
            return
        record = observation_record(job_id, before, after, self._user_name)
        self.append(record)
        log.info("audit_observed_change", job_id=job_id, action=record.action)

    # --- appending -------------------------------------------------------------------------------------

    def append(
        self, record: AuditRecord | Mapping[str, Any], precondition: Precondition | None = None
    ) -> dict[str, Any]:
        """Append one record (redacted, stamped, chained); return it as written.

        Raises ``AuditError`` when the record cannot be written and fsync'd; the file is left as it was.
        ``precondition`` is checked under the file lock first; whatever it raises is raised unchanged.
        """
        fields = record.fields() if isinstance(record, AuditRecord) else record
        with self._lock:
            try:
                written = self._writer.append(fields, precondition)
            except AuditError as exc:
                self._write_errors += 1
                # Debug only: the caller reports it (the command's one line, audit_observe_failed).
                log.debug("audit_write_failed", path=str(self._path), error=str(exc))
                raise
            if written["audit"].get("phase") != "intent":
                key = (str(written["event"].get("action")), str(written["event"].get("outcome", "")))
                self._records[key] = self._records.get(key, 0) + 1
            return written

    def _stamped(self, fields: Mapping[str, Any], sequence: int, prev_hash: str) -> dict[str, Any]:
        redact = self._redact
        if self._more_secrets is not None:
            redact = Redactor([*self._secrets, *self._more_secrets()])
        record: dict[str, Any] = redact(fields)
        if self._signer is not None:
            record["audit"]["key_id"] = self._signer.key_id
        record = self._stamp.apply(record, moment=self._clock(), sequence=sequence, prev_hash=prev_hash)
        if self._signer is not None:
            record["audit"]["signature"] = self._signer.sign(record["audit"]["hash"])
        return record
