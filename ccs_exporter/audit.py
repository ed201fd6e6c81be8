"""The tamper-evident audit log: hash-chained JSON lines for job mutations and observed job changes.

Each record is one line of canonical JSON (sorted keys, no spaces) with ECS-style nested fields. Its
``audit.hash`` is the SHA-256 of the record without that field, and ``audit.prev_hash`` is the previous
record's hash, so editing, inserting, deleting or reordering a line breaks the chain; ``event.sequence``
counts up from 1 without gaps. Appends take an exclusive ``flock`` on the file and read the tail under it,
so threads and processes sharing the file never fork the chain. A ``<log>.head`` file beside the log holds
the last sequence and hash, so records cut off the end are noticed too. Every failure to write raises
``AuditError``: callers refuse the mutation (fail-closed).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import getpass
import hashlib
import json
import os
import re
import socket
import stat
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import structlog

from ccs_exporter import __version__
from ccs_exporter.errors import AuditError
from ccs_exporter.models import Job, parse_ccs_datetime

log = structlog.get_logger(__name__)

RECORD_VERSION = 1
ECS_VERSION = "8.11.0"
GENESIS_HASH = "0" * 64
REDACTED = "[REDACTED]"
HEAD_SUFFIX = ".head"

# Actions and the ECS event.type each one carries.
ACTION_TYPES = {
    "job.create": "creation",
    "job.update": "change",
    "job.delete": "deletion",
    "job.changed": "change",
    "job.deleted": "deletion",
    "audit.recovered": "change",
}
MUTATION_ACTIONS = ("job.create", "job.update", "job.delete")

_SECRET_KEY_RE = re.compile(
    r"pass(word|wd|phrase)?$|^pwd$|secret|token|authori[sz]ation|api[_-]?key|credential|cookie|private[_-]?key",
    re.IGNORECASE,
)
# Secret-looking text inside ordinary values (a notification body, a server message).
_SECRET_VALUE_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]{6,}"), rf"\1\2{REDACTED}"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), REDACTED),
    (
        re.compile(
            r"(?i)\b(password|passwd|pwd|passphrase|secret|client_secret|[a-z_]*token|api[_-]?key|"
            r"access[_-]?key)(\s*[:=]\s*|\s+is\s+)(\"[^\"]*\"|'[^']*'|[^\s,;&]+)"
        ),
        rf"\1\2{REDACTED}",
    ),
    (re.compile(r"(://[^/\s:@]+):[^/\s@]+@"), rf"\1:{REDACTED}@"),
)
_TAIL_CHUNK = 65536


@dataclass(frozen=True)
class AuditStats:
    """Counters for ``ccs_audit_records_total{action,outcome}`` and ``ccs_audit_write_errors_total``.

    ``records`` counts completed records this ``AuditLog`` wrote: mutation results and observations
    (intents are not counted, so each mutation counts once, under its outcome).
    """

    records: dict[tuple[str, str], int] = field(default_factory=dict)
    write_errors: int = 0


@dataclass(frozen=True)
class MutationIntent:
    """An intent record that has been written and fsync'd; its result must follow."""

    audit_id: str
    action: str
    method: str
    url_path: str
    job_id: str | None
    job_name: str | None
    reason: str | None
    record: dict[str, Any]


@dataclass(frozen=True)
class VerifyResult:
    """What ``verify`` found: ``ok``, the number of intact records, and the first bad line and why."""

    ok: bool
    records: int
    line: int | None = None
    problem: str | None = None
    last_sequence: int = 0
    last_hash: str = GENESIS_HASH
    torn_last_line: bool = False


@dataclass
class _OwnMutation:
    """What observe() needs to know about one of our own update/delete mutations."""

    audit_id: str
    action: str
    started: datetime | None
    delete_job: bool
    outcome: str | None = None
    after_modified: datetime | None = None


@dataclass
class _Tail:
    inode: int
    device: int
    size: int
    sequence: int
    hash: str


def canonical_json(record: Mapping[str, Any]) -> str:
    """The canonical serialisation: sorted keys, no insignificant spaces, UTF-8 text."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical record with ``audit.hash`` left out."""
    audit = dict(record.get("audit") or {})
    audit.pop("hash", None)
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


class Redactor:
    """Removes secrets from record data: known secret values, secret-named keys, secret-looking text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        known = {value for value in secrets if value and len(value) >= 4}
        # Longest first, so a secret that contains another is removed whole.
        self._known = sorted(known, key=len, reverse=True)

    def __call__(self, value: Any, key: str = "") -> Any:
        if (
            key
            and _SECRET_KEY_RE.search(key)
            and value not in (None, "", [], {})
            and not isinstance(value, bool)
        ):
            return REDACTED
        if isinstance(value, Mapping):
            return {str(k): self(v, str(k)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self(item) for item in value]
        if isinstance(value, str):
            return self.text(value)
        return value

    def text(self, text: str) -> str:
        """``text`` with known secrets and secret-looking fragments replaced by ``[REDACTED]``."""
        for secret in self._known:
            if secret in text:
                text = text.replace(secret, REDACTED)
        for pattern, replacement in _SECRET_VALUE_PATTERNS:
            text = pattern.sub(replacement, text)
        return text


def secret_variants(secret: str) -> list[str]:
    """A secret and the forms it is sent in (Base64), for ``AuditLog(secrets=...)``."""
    if not secret:
        return []
    return [secret, base64.b64encode(secret.encode("utf-8")).decode("ascii")]


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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
    same job may be (clock skew between us and CCS) for ``observe`` to treat the change as ours.
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
    ) -> None:
        self._path = Path(path)
        self._head_path = Path(f"{self._path}{HEAD_SUFFIX}")
        self._user_name = user_name
        self._redact = Redactor(secrets)
        self._host = host_name if host_name is not None else socket.gethostname()
        self._os_user = os_user if os_user is not None else _os_user()
        self._clock = clock
        self._window = timedelta(seconds=match_window_seconds)
        self._fsync = fsync
        self._lock = threading.Lock()
        self._tail: _Tail | None = None
        self._stream_tail: _Tail | None = None
        self._records: dict[tuple[str, str], int] = {}
        self._write_errors = 0
        # observe(): an index of our own mutations, read incrementally from the log.
        self._index_lock = threading.Lock()
        self._index_offset = 0
        self._index_inode: tuple[int, int] | None = None
        self._own: dict[str, list[_OwnMutation]] = {}
        self._own_by_id: dict[str, _OwnMutation] = {}
        self._matched: set[str] = set()

    @property
    def path(self) -> Path:
        """The audit log file."""
        return self._path

    @property
    def user_name(self) -> str:
        """The CCS account recorded as ``user.name`` of our mutations."""
        return self._user_name

    def redact(self, value: Any) -> Any:
        """``value`` with every secret removed, as it would be written."""
        return self._redact(value)

    def stats(self) -> AuditStats:
        """A snapshot of the record and write-error counters."""
        with self._lock:
            return AuditStats(records=dict(self._records), write_errors=self._write_errors)

    # --- mutations: intent, then result --------------------------------------------------------------

    def intent(
        self,
        action: str,
        *,
        method: str,
        url_path: str,
        job_id: str | None = None,
        job_name: str | None = None,
        reason: str | None = None,
        requested: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> MutationIntent:
        """Write and fsync the intent record of a mutation about to be sent; raise AuditError if not."""
        if action not in MUTATION_ACTIONS:
            raise ValueError(f"unknown mutation action {action!r}")
        audit_id = str(uuid.uuid4())
        fields: dict[str, Any] = {
            "event": {"kind": "event", "action": action},
            "audit": {"id": audit_id, "phase": "intent", "origin": "performed"},
            "user": {"name": self._user_name},
            "http": {"request": {"method": method}},
            "url": {"path": url_path},
            "ccs": {"job": _job_fields(job_id, job_name)},
            "reason": reason,
        }
        if requested is not None:
            fields["change"] = {"requested": dict(requested)}
        if extra:
            _merge(fields, extra)
        record = self.append(fields)
        return MutationIntent(
            audit_id=audit_id,
            action=action,
            method=method,
            url_path=url_path,
            job_id=job_id,
            job_name=job_name,
            reason=reason,
            record=record,
        )

    def result(
        self,
        intent: MutationIntent,
        outcome: str,
        *,
        status_code: int | None = None,
        job_id: str | None = None,
        job_name: str | None = None,
        before: Job | None = None,
        after: Job | None = None,
        error_message: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Write and fsync the result record of ``intent``; raise AuditError if it cannot be written."""
        if outcome not in ("success", "failure", "unknown"):
            raise ValueError(f"unknown outcome {outcome!r}")
        before_data, after_data = job_snapshot(before), job_snapshot(after)
        change: dict[str, Any] = {"before": before_data, "after": after_data}
        if before_data is not None and after_data is not None:
            change["diff"] = diff_snapshots(before_data, after_data)
        fields: dict[str, Any] = {
            "event": {"kind": "event", "action": intent.action, "outcome": outcome},
            "audit": {"id": intent.audit_id, "phase": "result", "origin": "performed"},
            "user": {"name": self._user_name},
            "http": {"request": {"method": intent.method}},
            "url": {"path": intent.url_path},
            "ccs": {"job": _job_fields(job_id or intent.job_id, job_name or intent.job_name)},
            "reason": intent.reason,
            "change": change,
        }
        if status_code is not None:
            fields["http"]["response"] = {"status_code": status_code}
        if error_message:
            fields["error"] = {"message": error_message}
        if extra:
            _merge(fields, extra)
        return self.append(fields)

    # --- changes made elsewhere ------------------------------------------------------------------------

    def observe(self, job_id: str, before: Job | None, after: Job | None) -> None:
        """Record a change the poller saw on a watched job, unless it was one of our own mutations.

        ``after=None`` means the job disappeared. Never raises: a failure is logged and counted as a
        write error.
        """
        try:
            self._observe(job_id, before, after)
        except Exception as exc:
            if not isinstance(exc, AuditError):  # append() has already counted its own failures
                with self._lock:
                    self._write_errors += 1
            log.error("audit_observe_failed", job_id=job_id, path=str(self._path), error=str(exc))

    def _observe(self, job_id: str, before: Job | None, after: Job | None) -> None:
        job_id = job_id.lower()
        if before is None and after is None:
            return
        if before is None:
            # Nothing to compare with (a cold start): not a change we can describe.
            log.debug("audit_observe_skipped", job_id=job_id, reason="no previous snapshot")
            return
        with self._index_lock:
            self._refresh_index()
            ours = self._match_own(job_id, before, after)
        if ours is not None:
            log.debug("audit_observed_own_mutation", job_id=job_id, audit_id=ours)
            return
        before_data, after_data = job_snapshot(before), job_snapshot(after)
        props = (after or before).JobProperties
        change: dict[str, Any] = {"before": before_data, "after": after_data}
        if before_data is not None and after_data is not None:
            change["diff"] = diff_snapshots(before_data, after_data)
        action = "job.changed" if after is not None else "job.deleted"
        fields: dict[str, Any] = {
            "event": {"kind": "state", "action": action, "outcome": "success"},
            "audit": {"id": str(uuid.uuid4()), "phase": "observation", "origin": "observed"},
            "observer": {"product": "ccs-exporter", "name": self._user_name},
            "ccs": {"job": {**_job_fields(job_id, props.Name or None), "owner": props.Owner}},
            "change": change,
        }
        self.append(fields)
        log.info("audit_observed_change", job_id=job_id, action=action)

    def _match_own(self, job_id: str, before: Job, after: Job | None) -> str | None:
        """The audit id of our own mutation that explains this observed change, or None."""
        candidates = [
            own
            for own in self._own.get(job_id, ())
            if own.audit_id not in self._matched and own.outcome in (None, "success", "unknown")
        ]
        if after is None:
            for own in candidates:
                if own.action == "job.delete" and own.delete_job:
                    self._matched.add(own.audit_id)
                    return own.audit_id
            return None
        seen_before = before.JobProperties.JobModifiedTime
        seen_after = after.JobProperties.JobModifiedTime
        found: str | None = None
        for own in candidates:
            if own.action != "job.update":
                continue
            if own.after_modified is not None and seen_after is not None:
                if own.after_modified == seen_after:
                    found = own.audit_id
                if own.after_modified <= seen_after:
                    # Ours happened and this observation covers it, whether or not more happened after.
                    self._matched.add(own.audit_id)
                continue
            # Outcome unknown or still in flight: match by time, allowing for clock skew.
            if own.started is None or seen_after is None:
                in_window = True
            else:
                low = (seen_before or seen_after) - self._window
                in_window = low <= own.started <= seen_after + self._window
            if in_window and found is None:
                found = own.audit_id
                self._matched.add(own.audit_id)
        return found

    def _refresh_index(self) -> None:
        """Read records appended since the last call and index our own update/delete mutations."""
        try:
            handle = open(self._path, "rb")  # noqa: SIM115 - closed below; fstat needs the handle
        except FileNotFoundError:
            return
        with handle:
            info = os.fstat(handle.fileno())
            identity = (info.st_dev, info.st_ino)
            if not stat.S_ISREG(info.st_mode):
                return
            if identity != self._index_inode or info.st_size < self._index_offset:
                self._index_inode = identity
                self._index_offset = 0
                self._own.clear()
                self._own_by_id.clear()
            handle.seek(self._index_offset)
            data = handle.read()
        end = data.rfind(b"\n")
        if end < 0:
            return
        self._index_offset += end + 1
        for line in data[: end + 1].splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                self._index_record(record)

    def _index_record(self, record: dict[str, Any]) -> None:
        event = record.get("event") or {}
        audit = record.get("audit") or {}
        action = event.get("action")
        if action not in ("job.update", "job.delete") or not isinstance(audit, dict):
            return
        audit_id = str(audit.get("id"))
        if audit.get("phase") == "intent":
            job_id = str(((record.get("ccs") or {}).get("job") or {}).get("id") or "").lower()
            if not job_id:
                return
            try:
                started = parse_ccs_datetime(record.get("@timestamp"))
            except ValueError:
                started = None
            delete_job = bool((record.get("ccs") or {}).get("delete_job", True))
            own = _OwnMutation(audit_id, str(action), started, delete_job)
            self._own_by_id[audit_id] = own
            mutations = self._own.setdefault(job_id, [])
            mutations.append(own)
            if len(mutations) > 64:
                del mutations[:-64]
        elif audit.get("phase") == "result":
            known = self._own_by_id.pop(audit_id, None)
            if known is None:
                return
            known.outcome = str(event.get("outcome"))
            after = (record.get("change") or {}).get("after") or {}
            modified = (after.get("JobProperties") or {}).get("JobModifiedTime")
            try:
                known.after_modified = parse_ccs_datetime(modified)
            except ValueError:
                known.after_modified = None

    # --- appending -------------------------------------------------------------------------------------

    def append(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Append one record built from ``fields`` (redacted, stamped, chained); return it as written.

        Raises ``AuditError`` when the record cannot be written and fsync'd; the file is left as it was.
        """
        with self._lock:
            try:
                record = self._append_locked(fields)
            except AuditError as exc:
                self._write_errors += 1
                log.error("audit_write_failed", path=str(self._path), error=str(exc))
                raise
            phase = record["audit"].get("phase")
            if phase != "intent":
                key = (str(record["event"].get("action")), str(record["event"].get("outcome", "")))
                self._records[key] = self._records.get(key, 0) + 1
            return record

    def _append_locked(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        path = self._path
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            raise AuditError(f"cannot open audit log {path}: {exc.strerror or exc}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as exc:
                raise AuditError(f"cannot lock audit log {path}: {exc.strerror or exc}") from None
            info = os.fstat(fd)
            regular = stat.S_ISREG(info.st_mode)
            if regular and not _same_file(path, info):
                raise AuditError(f"audit log {path} was deleted or replaced while it was being written")
            if regular:
                tail = self._read_tail(fd, info)
            else:
                # A device or pipe (e.g. /dev/stdout): nothing to read back, so the chain lives in memory.
                tail = self._stream_tail or _Tail(0, 0, 0, 0, GENESIS_HASH)
            records: list[dict[str, Any]] = []
            if regular and tail.size < info.st_size:
                records.append(self._recovery_fields(fd, tail, info.st_size))
            records.append(dict(fields))
            written: dict[str, Any] = {}
            lines: list[str] = []
            for item in records:
                written = self._stamp(item, tail.sequence + 1, tail.hash)
                tail = _Tail(
                    tail.inode, tail.device, tail.size, written["event"]["sequence"], written["audit"]["hash"]
                )
                lines.append(canonical_json(written) + "\n")
            data = "".join(lines).encode("utf-8")
            if regular and tail.size < info.st_size:
                self._truncate(fd, tail.size)
            self._write_all(fd, data, tail.size if regular else None)
            if regular:
                self._tail = _Tail(info.st_ino, info.st_dev, tail.size + len(data), tail.sequence, tail.hash)
                self._write_head(tail.sequence, tail.hash, new_file=info.st_size == 0)
            else:
                self._stream_tail = tail
            return written
        finally:
            os.close(fd)  # also releases the flock

    def _stamp(self, fields: dict[str, Any], sequence: int, prev_hash: str) -> dict[str, Any]:
        record: dict[str, Any] = self._redact(fields)
        action = str(record["event"]["action"])
        record["@timestamp"] = _timestamp(self._clock())
        record["ecs"] = {"version": ECS_VERSION}
        record["service"] = {"name": "ccs-exporter", "version": __version__}
        record["host"] = {"name": self._host}
        record["process"] = {"pid": os.getpid(), "user": {"name": self._os_user}}
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

    def _read_tail(self, fd: int, info: os.stat_result) -> _Tail:
        """The last complete record's sequence and hash; ``size`` is where complete records end."""
        cached = self._tail
        if cached is not None and (cached.inode, cached.device, cached.size) == (
            info.st_ino,
            info.st_dev,
            info.st_size,
        ):
            return cached
        size = info.st_size
        end, last_line = _last_complete_line(fd, size)
        head = self._read_head()
        if last_line is None:
            tail = _Tail(info.st_ino, info.st_dev, 0, 0, GENESIS_HASH)
        else:
            try:
                record = json.loads(last_line)
                sequence = int(record["event"]["sequence"])
                last_hash = str(record["audit"]["hash"])
            except (ValueError, KeyError, TypeError):
                raise AuditError(
                    f"the last record of audit log {self._path} is unreadable; run `ccs-exporter audit "
                    f"verify {self._path}`"
                ) from None
            tail = _Tail(info.st_ino, info.st_dev, end, sequence, last_hash)
        if head is not None and head[0] > tail.sequence:
            raise AuditError(
                f"audit log {self._path} ends at sequence {tail.sequence} but {self._head_path} records "
                f"sequence {head[0]}: records were deleted or the file was replaced; refusing to write"
            )
        return tail

    def _read_head(self) -> tuple[int, str] | None:
        try:
            text = self._head_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise AuditError(f"cannot read {self._head_path}: {exc.strerror or exc}") from None
        try:
            head = json.loads(text)
            return int(head["sequence"]), str(head["hash"])
        except (ValueError, KeyError, TypeError):
            raise AuditError(f"{self._head_path} is unreadable") from None

    def _write_head(self, sequence: int, last_hash: str, new_file: bool) -> None:
        """Best effort: the record is already durable; a stale head only weakens truncation checks."""
        temp = Path(f"{self._head_path}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            temp.write_text(json.dumps({"sequence": sequence, "hash": last_hash}) + "\n", encoding="utf-8")
            os.replace(temp, self._head_path)
            if new_file and self._fsync:
                _fsync_directory(self._path.parent)
        except OSError as exc:
            self._write_errors += 1
            log.warning("audit_head_write_failed", path=str(self._head_path), error=exc.strerror or str(exc))
            temp.unlink(missing_ok=True)

    def _recovery_fields(self, fd: int, tail: _Tail, size: int) -> dict[str, Any]:
        """A record of the torn last line (a write interrupted by a crash) that is about to be removed."""
        os.lseek(fd, tail.size, os.SEEK_SET)
        torn = os.read(fd, size - tail.size)
        log.warning("audit_torn_line_removed", path=str(self._path), bytes=len(torn))
        return {
            "event": {"kind": "event", "action": "audit.recovered", "outcome": "success"},
            "audit": {
                "id": str(uuid.uuid4()),
                "phase": "recovery",
                "origin": "performed",
                "removed": {"bytes": len(torn), "sha256": hashlib.sha256(torn).hexdigest()},
            },
            "message": "removed a torn last line left by an interrupted write",
        }

    def _truncate(self, fd: int, size: int) -> None:
        try:
            os.ftruncate(fd, size)
        except OSError as exc:
            raise AuditError(f"cannot repair audit log {self._path}: {exc.strerror or exc}") from None

    def _write_all(self, fd: int, data: bytes, size_before: int | None) -> None:
        """Write ``data`` and fsync; on failure, cut the file back so no partial record remains."""
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if self._fsync:
                os.fsync(fd)
        except OSError as exc:
            if size_before is not None:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size_before)
            raise AuditError(f"cannot write audit log {self._path}: {exc.strerror or exc}") from None


def _job_fields(job_id: str | None, job_name: str | None) -> dict[str, Any]:
    return {"id": job_id, "name": job_name}


def _merge(target: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


def _same_file(path: Path, info: os.stat_result) -> bool:
    try:
        current = os.stat(path)
    except OSError:
        return False
    return (current.st_dev, current.st_ino) == (info.st_dev, info.st_ino)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _last_complete_line(fd: int, size: int) -> tuple[int, bytes | None]:
    """(offset just past the last newline, the last newline-terminated line) of the file."""
    position = size
    buffer = b""
    end: int | None = None
    while position > 0:
        step = min(_TAIL_CHUNK, position)
        position -= step
        os.lseek(fd, position, os.SEEK_SET)
        buffer = os.read(fd, step) + buffer
        if end is None:
            newline = buffer.rfind(b"\n")
            if newline < 0:
                continue
            end = position + newline + 1
            buffer = buffer[: newline + 1]
        start = buffer.rfind(b"\n", 0, len(buffer) - 1)
        if start >= 0:
            return end, buffer[start + 1 : -1]
    if end is None:
        return 0, None
    return end, buffer[:-1] if buffer else None


# --- verification ------------------------------------------------------------------------------------------


def verify(path: str | os.PathLike[str]) -> VerifyResult:
    """Recompute the hash chain and sequence of an audit log and report the first bad line.

    Catches edited, inserted, deleted and reordered lines, an intent without its result, a torn last
    line (an interrupted write) and, when ``<log>.head`` exists, records removed from the end.
    """
    log_path = Path(path)
    try:
        data = log_path.read_bytes()
    except OSError as exc:
        return VerifyResult(ok=False, records=0, problem=f"cannot read: {exc.strerror or exc}")
    lines = data.split(b"\n")
    torn = lines.pop() if lines else b""  # the text after the last newline: empty unless torn
    prev_hash = GENESIS_HASH
    sequence = 0
    hashes: list[str] = []
    open_intents: dict[str, tuple[int, str]] = {}

    def bad(line: int, problem: str) -> VerifyResult:
        return VerifyResult(False, sequence, line, problem, sequence, prev_hash)

    for number, raw in enumerate(lines, start=1):
        try:
            text = raw.decode("utf-8")
            record = json.loads(text)
        except ValueError:
            return bad(number, "not a JSON record (the line was edited or damaged)")
        if not isinstance(record, dict) or not isinstance(record.get("audit"), dict):
            return bad(number, "not an audit record")
        audit = record["audit"]
        raw_event = record.get("event")
        event: dict[str, Any] = raw_event if isinstance(raw_event, dict) else {}
        try:
            intact = audit.get("hash") == record_hash(record) and canonical_json(record) == text
        except ValueError:  # NaN or Infinity smuggled in: not something we ever write
            intact = False
        if not intact:
            return bad(number, "record was edited: its hash does not match its content")
        if audit.get("prev_hash") != prev_hash:
            return bad(
                number,
                "hash chain broken: prev_hash does not match the previous record "
                "(a line was inserted, deleted or reordered here)",
            )
        if event.get("sequence") != sequence + 1:
            return bad(number, f"sequence {event.get('sequence')} where {sequence + 1} was expected")
        sequence += 1
        prev_hash = str(audit["hash"])
        hashes.append(prev_hash)
        audit_id = str(audit.get("id"))
        if audit.get("phase") == "intent":
            open_intents[audit_id] = (number, str(event.get("action")))
        elif audit.get("phase") == "result":
            if audit_id not in open_intents:
                return bad(number, f"result without an earlier intent (audit.id {audit_id})")
            del open_intents[audit_id]
    if open_intents:
        number, action = min(open_intents.values())
        audit_id = next(key for key, value in open_intents.items() if value[0] == number)
        problem = f"{action} intent without a result record (audit.id {audit_id}): its outcome is unknown"
        if torn:
            problem += "; the last line is also torn"
        return VerifyResult(False, sequence, number, problem, sequence, prev_hash, bool(torn))
    if torn:
        return VerifyResult(
            False,
            sequence,
            len(lines) + 1,
            f"torn last line ({len(torn)} bytes without a newline): a write was interrupted, e.g. by a crash",
            sequence,
            prev_hash,
            True,
        )
    head_problem = _check_head(Path(f"{log_path}{HEAD_SUFFIX}"), hashes)
    if head_problem is not None:
        return VerifyResult(False, sequence, head_problem[0], head_problem[1], sequence, prev_hash)
    return VerifyResult(True, sequence, None, None, sequence, prev_hash)


def _check_head(head_path: Path, hashes: list[str]) -> tuple[int, str] | None:
    try:
        head = json.loads(head_path.read_text(encoding="utf-8"))
        head_sequence, head_hash = int(head["sequence"]), str(head["hash"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return max(1, len(hashes)), f"{head_path} is unreadable"
    if head_sequence > len(hashes):
        return (
            len(hashes) + 1,
            f"the log ends at sequence {len(hashes)} but {head_path.name} records sequence {head_sequence}: "
            "records were removed from the end (truncated)",
        )
    if head_sequence >= 1 and hashes[head_sequence - 1] != head_hash:
        return head_sequence, f"record does not match the hash in {head_path.name}: the log was rewritten"
    return None
