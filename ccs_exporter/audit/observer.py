"""Observed job changes: tell changes made elsewhere from our own mutations, and describe them as records.

``OwnMutations`` reads our create/update/delete/run/abort records from the log incrementally (other
processes write there too) and matches an observed change to at most one of them: an update whose
recorded after-state has the observed JobModifiedTime, or, for an update whose outcome is unknown or in
flight, one started within the match window of the change; a change of the run state only
(LastRunDate, LastRunStatus, with JobModifiedTime) to a run or abort of ours started within the
window; a disappearance to a delete without ``--keep-job``; an appearance to a create whose result
names the job, or, for a create whose outcome is unknown or in flight, one of the same job name
started within the match window of JobCreationTime.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ccs_exporter.audit.records import AuditRecord, JobRef, diff_snapshots, job_snapshot
from ccs_exporter.models import Job, parse_ccs_datetime

# Our own mutations remembered per job: enough for any realistic burst between two poll cycles.
_MAX_OWN_PER_JOB = 64
# Our own intents still waiting for their result (a crash leaves some for good): bounded as well.
_MAX_PENDING = 4096
_INDEXED_ACTIONS = ("job.create", "job.update", "job.delete", "job.run", "job.abort")
_RUN_OPERATIONS = ("job.run", "job.abort")
# What a run changes on the job as search by id shows it; JobModifiedTime may move with it.
_RUN_STATE_FIELDS = frozenset({"JobProperties.LastRunDate", "JobProperties.LastRunStatus"})
_MODIFIED_FIELD = "JobProperties.JobModifiedTime"


@dataclass
class _OwnMutation:
    """What matching needs to know about one of our own mutations."""

    audit_id: str
    action: str
    started: datetime | None
    delete_job: bool
    job_name: str | None = None
    outcome: str | None = None
    after_modified: datetime | None = None
    job_id: str | None = None


def observation_record(job_id: str, before: Job | None, after: Job | None, observer_name: str) -> AuditRecord:
    """``job.changed`` (with the diff), ``job.deleted`` (``after`` None: the last state) or ``job.created``
    (``before`` None: the job as CCS returned it)."""
    job = after if after is not None else before
    if job is None:
        raise ValueError("an observation needs the job before or after the change")
    props = job.JobProperties
    action = "job.created" if before is None else "job.changed" if after is not None else "job.deleted"
    return AuditRecord(
        action=action,
        phase="observation",
        outcome="success",
        user_name=observer_name,
        job=JobRef(job_id, props.Name or None, owner=props.Owner),
        before=before,
        after=after,
    )


class OwnMutations:
    """An index of our own mutations in the log, read incrementally; callers serialise calls."""

    def __init__(self, path: Path, match_window: timedelta) -> None:
        self._path = path
        self._window = match_window
        self._offset = 0
        self._identity: tuple[int, int] | None = None
        self._by_job: dict[str, list[_OwnMutation]] = {}
        self._by_id: dict[str, _OwnMutation] = {}
        self._creates_by_name: dict[str, list[_OwnMutation]] = {}
        self._matched: set[str] = set()

    def match(self, job_id: str, before: Job | None, after: Job | None) -> str | None:
        """The audit id of our own mutation that explains this observed change, or None."""
        self._refresh()
        candidates = [
            own
            for own in self._by_job.get(job_id, ())
            if own.audit_id not in self._matched and own.outcome in (None, "success", "unknown")
        ]
        if before is None:
            return self._match_create(candidates, after) if after is not None else None
        if after is None:
            for own in candidates:
                if own.action == "job.delete" and own.delete_job:
                    self._matched.add(own.audit_id)
                    return own.audit_id
            return None
        if run_state_only(before, after):
            found = self._match_operation(candidates, before, after)
            if found is not None:
                return found
        return self._match_update(candidates, before, after)

    def _match_create(self, candidates: list[_OwnMutation], after: Job) -> str | None:
        for own in candidates:  # a create whose result named this job
            if own.action == "job.create":
                self._matched.add(own.audit_id)
                return own.audit_id
        # Outcome unknown or still in flight (no JobID known): the same name, created in the window.
        created = after.JobProperties.JobCreationTime
        for own in self._creates_by_name.get(after.JobProperties.Name.casefold(), ()):
            if own.audit_id in self._matched or own.outcome not in (None, "unknown"):
                continue
            if own.started is None or created is None or abs(own.started - created) <= self._window:
                self._matched.add(own.audit_id)
                return own.audit_id
        return None

    def _match_operation(self, candidates: list[_OwnMutation], before: Job, after: Job) -> str | None:
        """A run or abort of ours started within the window of a change that only moved the run state."""
        for own in candidates:
            if own.action in _RUN_OPERATIONS and self._in_window(own, before, after):
                self._matched.add(own.audit_id)
                return own.audit_id
        return None

    def _in_window(self, own: _OwnMutation, before: Job, after: Job) -> bool:
        """True when ``own`` started within the match window around the change (clock skew allowed)."""
        seen_before = before.JobProperties.JobModifiedTime
        seen_after = after.JobProperties.JobModifiedTime
        if own.started is None or seen_after is None:
            return True
        low = (seen_before or seen_after) - self._window
        return low <= own.started <= seen_after + self._window

    def _match_update(self, candidates: list[_OwnMutation], before: Job, after: Job) -> str | None:
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
            if self._in_window(own, before, after) and found is None:
                found = own.audit_id
                self._matched.add(own.audit_id)
        return found

    def _refresh(self) -> None:
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
            if identity != self._identity or info.st_size < self._offset:
                self._identity = identity
                self._offset = 0
                self._by_job.clear()
                self._by_id.clear()
                self._creates_by_name.clear()
            handle.seek(self._offset)
            data = handle.read()
        end = data.rfind(b"\n")
        if end < 0:
            return
        self._offset += end + 1
        for line in data[: end + 1].splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                self._index(record)

    def _index(self, record: dict[str, Any]) -> None:
        event = record.get("event") or {}
        audit = record.get("audit") or {}
        action = event.get("action")
        if action not in _INDEXED_ACTIONS or not isinstance(audit, dict) or not isinstance(event, dict):
            return
        audit_id = str(audit.get("id"))
        if audit.get("phase") == "intent":
            self._index_intent(record, audit_id, str(action))
        elif audit.get("phase") == "result":
            known = self._by_id.pop(audit_id, None)
            if known is None:
                return
            known.outcome = str(event.get("outcome"))
            if known.action == "job.create":
                job_id = str(((record.get("ccs") or {}).get("job") or {}).get("id") or "").lower()
                if job_id and known.outcome == "success":
                    _remember(self._by_job, job_id, known)
                return
            if known.job_id is None:  # an abort whose job only CCS's answer named
                job_id = str(((record.get("ccs") or {}).get("job") or {}).get("id") or "").lower()
                if job_id:
                    known.job_id = job_id
                    _remember(self._by_job, job_id, known)
            after = (record.get("change") or {}).get("after") or {}
            modified = (after.get("JobProperties") or {}).get("JobModifiedTime")
            known.after_modified = _datetime_or_none(modified)

    def _index_intent(self, record: dict[str, Any], audit_id: str, action: str) -> None:
        ccs = record.get("ccs") or {}
        job = ccs.get("job") or {}
        started = _datetime_or_none(record.get("@timestamp"))
        if action == "job.create":  # no JobID before CCS answers: known by name until the result
            name = job.get("name")
            if isinstance(name, str) and name:
                own = _OwnMutation(audit_id, action, started, False, job_name=name)
                self._pending(own)
                _remember(self._creates_by_name, name.casefold(), own)
            return
        job_id = str(job.get("id") or "").lower()
        if not job_id and action != "job.abort":  # an abort may learn its job from CCS's answer
            return
        delete_job = bool(ccs.get("delete_job", True))
        own = _OwnMutation(audit_id, action, started, delete_job, job_id=job_id or None)
        self._pending(own)
        if job_id:
            _remember(self._by_job, job_id, own)

    def _pending(self, own: _OwnMutation) -> None:
        """Remember an intent until its result; crashed intents never get one, so keep a bounded number."""
        self._by_id[own.audit_id] = own
        if len(self._by_id) > _MAX_PENDING:
            del self._by_id[next(iter(self._by_id))]


def _remember(index: dict[str, list[_OwnMutation]], key: str, own: _OwnMutation) -> None:
    """Add ``own`` under ``key``, keeping the newest ``_MAX_OWN_PER_JOB`` of them."""
    mutations = index.setdefault(key, [])
    mutations.append(own)
    if len(mutations) > _MAX_OWN_PER_JOB:
        del mutations[:-_MAX_OWN_PER_JOB]


def run_state_only(before: Job, after: Job) -> bool:
    """True when only the run state moved between two readings (JobModifiedTime may move with it)."""
    changed = set(diff_snapshots(job_snapshot(before), job_snapshot(after))) - {_MODIFIED_FIELD}
    return bool(changed) and changed <= _RUN_STATE_FIELDS


def _datetime_or_none(value: Any) -> datetime | None:
    try:
        return parse_ccs_datetime(value)
    except ValueError:
        return None
