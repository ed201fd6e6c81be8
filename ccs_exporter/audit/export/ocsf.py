"""Audit records as OCSF 1.5.0 Entity Management events (class 3004, category Identity & Access Management).

Job create/update/delete and their observed counterparts map to the activities Create (1), Update (3) and
Delete (4); a job run, an abort and a recovered torn line have no activity of their own and are Other (99)
with their own ``activity_name``. The whole record is in ``raw_data``; its sequence is
``metadata.sequence``, its chain hash ``metadata.uid`` (unique per record), its ``audit.id`` (shared by a
mutation's intent and result) ``metadata.correlation_uid``. The chain's other proof (previous hash,
signature) and what OCSF has no attribute for are under ``unmapped``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ccs_exporter.audit.export.fields import epoch_ms, number, path, pruned, text

OCSF_VERSION = "1.5.0"
CLASS_UID = 3004
CLASS_NAME = "Entity Management"
CATEGORY_UID = 3
CATEGORY_NAME = "Identity & Access Management"
ENTITY_TYPE = "CCS job"
PRODUCT = {"name": "ccs-exporter", "vendor_name": "ccs-exporter"}

# (activity_id, activity_name) of each action; the names of 1, 3 and 4 are the schema's captions.
ACTIVITIES: dict[str, tuple[int, str]] = {
    "job.create": (1, "Create"),
    "job.created": (1, "Create"),
    "job.update": (3, "Update"),
    "job.changed": (3, "Update"),
    "job.delete": (4, "Delete"),
    "job.deleted": (4, "Delete"),
    "job.run": (99, "Run"),
    "job.abort": (99, "Abort"),
    "audit.recovered": (99, "Recover"),
}
# (status_id, status) by event.outcome; no outcome (an intent) is Unknown.
STATUSES: dict[str | None, tuple[int, str]] = {
    "success": (1, "Success"),
    "failure": (2, "Failure"),
}
UNKNOWN_STATUS = (0, "Unknown")
INFORMATIONAL, LOW, MEDIUM = (1, "Informational"), (2, "Low"), (3, "Medium")


def to_ocsf(record: Mapping[str, Any], original: str) -> dict[str, Any]:
    """The OCSF event of one audit record; ``original`` is the record's line as written."""
    action = text(record, "event.action") or "unknown"
    activity_id, activity_name = ACTIVITIES.get(action, (99, action))
    outcome = text(record, "event.outcome")
    status_id, status = STATUSES.get(outcome, UNKNOWN_STATUS)
    severity_id, severity = _severity(record, outcome)
    performed = text(record, "audit.origin") != "observed"
    event: dict[str, Any] = {
        "activity_id": activity_id,
        "activity_name": activity_name,
        "category_uid": CATEGORY_UID,
        "category_name": CATEGORY_NAME,
        "class_uid": CLASS_UID,
        "class_name": CLASS_NAME,
        "type_uid": CLASS_UID * 100 + activity_id,
        "type_name": f"{CLASS_NAME}: {activity_name}",
        "severity_id": severity_id,
        "severity": severity,
        "status_id": status_id,
        "status": status,
        "time": epoch_ms(text(record, "@timestamp")),
        "message": _message(record, action, outcome),
        "metadata": _metadata(record, action),
        "entity": _entity(record, "before"),
        "entity_result": _entity(record, "after") if path(record, "change.after") else None,
        "actor": _actor(record) if performed else None,
        "src_endpoint": {"hostname": text(record, "host.name")} if performed else None,
        "http_request": _http_request(record),
        "http_response": _http_response(record),
        "status_code": _status_code(record),
        "status_detail": text(record, "error.message"),
        "unmapped": _unmapped(record),
        "raw_data": original,
        "raw_data_size": len(original.encode("utf-8")),
    }
    return pruned(event)


def _severity(record: Mapping[str, Any], outcome: str | None) -> tuple[int, str]:
    if text(record, "audit.phase") == "recovery":
        return MEDIUM  # a writer crashed mid-record: worth a look
    return LOW if outcome == "failure" else INFORMATIONAL


def _message(record: Mapping[str, Any], action: str, outcome: str | None) -> str:
    own = text(record, "message")
    if own:
        return own
    phase = text(record, "audit.phase") or "record"
    job = text(record, "ccs.job.name") or text(record, "ccs.job.id") or "a job"
    return f"{action} {phase} for {job}" + (f": {outcome}" if outcome else "")


def _metadata(record: Mapping[str, Any], action: str) -> dict[str, Any]:
    return {
        "version": OCSF_VERSION,
        "product": {**PRODUCT, "version": text(record, "service.version")},
        "sequence": number(record, "event.sequence"),
        "uid": text(record, "audit.hash"),
        "correlation_uid": text(record, "audit.id"),
        "event_code": action,
        "log_name": text(record, "event.dataset"),
        "log_provider": text(record, "event.provider"),
        "original_time": text(record, "@timestamp"),
    }


def _entity(record: Mapping[str, Any], state: str) -> dict[str, Any]:
    if text(record, "audit.phase") == "recovery":
        return {"name": "audit log", "type": "Audit log"}
    uid, name = text(record, "ccs.job.id"), text(record, "ccs.job.name")
    entity: dict[str, Any] = {"uid": uid, "name": name, "type": ENTITY_TYPE}
    if uid is None and name is None:
        entity["name"] = "(not known yet)"  # a create intent before CCS named the job
    data = path(record, f"change.{state}")
    if state == "before" and data is None:
        data = path(record, "change.requested")
    entity["data"] = data
    return entity


def _actor(record: Mapping[str, Any]) -> dict[str, Any]:
    process = {"pid": number(record, "process.pid"), "user": {"name": text(record, "process.user.name")}}
    return {
        "app_name": text(record, "service.name"),
        "user": {"name": text(record, "user.name")},
        "process": process,
    }


def _http_request(record: Mapping[str, Any]) -> dict[str, Any] | None:
    method = text(record, "http.request.method")
    if method is None:
        return None
    return {"http_method": method, "url": {"path": text(record, "url.path")}}


def _http_response(record: Mapping[str, Any]) -> dict[str, Any] | None:
    code = number(record, "http.response.status_code")
    return None if code is None else {"code": code}


def _status_code(record: Mapping[str, Any]) -> str | None:
    code = number(record, "http.response.status_code")
    return None if code is None else str(code)


def _unmapped(record: Mapping[str, Any]) -> dict[str, Any]:
    audit = {
        key: path(record, f"audit.{key}")
        for key in ("prev_hash", "phase", "origin", "version", "key_id", "signature", "reconciled")
    }
    return {
        "audit": audit,
        "ccs": {
            "job_owner": text(record, "ccs.job.owner"),
            "job_type": text(record, "ccs.job.type"),
            "job_run_id": text(record, "ccs.job_run.id"),
            "delete_job": path(record, "ccs.delete_job"),
        },
        "reason": path(record, "reason") or path(record, "event.reason"),
    }
