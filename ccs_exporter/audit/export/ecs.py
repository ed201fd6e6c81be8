"""Audit records as Elastic Common Schema 8.11 events.

ECS fields where ECS has them (``event.*`` with ``event.sequence``, ``event.hash`` = the record's chain
hash and ``event.original`` = the whole record, ``user``, ``host``, ``process``, ``service``, ``http``,
``url``, ``error``, ``related``); what ECS has no field for is under the custom ``ccs`` namespace (no
ECS field set is called so): the job, the chain's other proof (``ccs.audit.prev_hash``, signature) and the
names of the changed fields. Job states stay in ``event.original`` only, so that arbitrary CCS keys never
become index mappings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ccs_exporter.audit.export.fields import number, path, pruned, text
from ccs_exporter.audit.records import ACTION_TYPES, ECS_VERSION

EXPORT_ECS_VERSION = ECS_VERSION
ECS_OUTCOMES = ("success", "failure", "unknown")
# ECS expects the configuration category's events to be of type access, change, creation, deletion or
# info: a job run or abort (start, end) is also in the process category, whose types start and end are.
_LIFECYCLE = ("start", "end")


def to_ecs(record: Mapping[str, Any], original: str) -> dict[str, Any]:
    """The ECS event of one audit record; ``original`` is the record's line as written."""
    action = text(record, "event.action") or "unknown"
    outcome = text(record, "event.outcome")
    user_name = text(record, "user.name")
    event: dict[str, Any] = {
        "@timestamp": text(record, "@timestamp"),
        "ecs": {"version": EXPORT_ECS_VERSION},
        "message": text(record, "message"),
        "event": {
            "kind": "event",
            "category": _categories(action),
            "type": [ACTION_TYPES.get(action, "info")],
            "action": action,
            "outcome": outcome if outcome in ECS_OUTCOMES else "unknown",
            "sequence": number(record, "event.sequence"),
            "hash": text(record, "audit.hash"),
            "original": original,
            "dataset": text(record, "event.dataset"),
            "provider": text(record, "event.provider"),
            "reason": text(record, "event.reason") or text(record, "reason"),
        },
        "user": {"name": user_name},
        "related": {"user": [user_name]} if user_name else None,
        "host": {"name": text(record, "host.name")},
        "process": {
            "pid": number(record, "process.pid"),
            "user": {"name": text(record, "process.user.name")},
        },
        "service": {"name": text(record, "service.name"), "version": text(record, "service.version")},
        "http": {
            "request": {"method": text(record, "http.request.method")},
            "response": {"status_code": number(record, "http.response.status_code")},
        },
        "url": {"path": text(record, "url.path")},
        "error": {"message": text(record, "error.message")},
        "observer": {"product": text(record, "observer.product")},
        "ccs": _ccs(record),
    }
    return pruned(event)


def _categories(action: str) -> list[str]:
    lifecycle = ACTION_TYPES.get(action) in _LIFECYCLE
    return ["configuration", "process"] if lifecycle else ["configuration"]


def _ccs(record: Mapping[str, Any]) -> dict[str, Any]:
    diff = path(record, "change.diff")
    return {
        "job": {
            "id": text(record, "ccs.job.id"),
            "name": text(record, "ccs.job.name"),
            "type": text(record, "ccs.job.type"),
            "owner": text(record, "ccs.job.owner"),
        },
        "job_run": {"id": text(record, "ccs.job_run.id")},
        "delete_job": path(record, "ccs.delete_job"),
        "observed_by": text(record, "observer.name"),
        "audit": {
            key: path(record, f"audit.{key}")
            for key in ("id", "phase", "origin", "version", "prev_hash", "key_id", "signature", "reconciled")
        },
        "change": {
            "fields": sorted(diff) if isinstance(diff, Mapping) and diff else None,
            "after_error": text(record, "change.after_error"),
        },
    }
