"""Test helper: what an attacker who can write the audit log (but not read a signing key) would do.

``forge`` reads the records, lets the caller edit, insert or drop some, renumbers the sequence,
recomputes every hash and prev_hash with the project's own canonical form, and writes the log and, unless
told not to, its head file. Signatures cannot be recomputed without the key: a forged record keeps the
signature of the record it replaces (now wrong) unless ``strip_signatures`` removes them all.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ccs_exporter.audit import GENESIS_HASH, canonical_json, record_hash

Records = list[dict[str, Any]]


def read_records(path: Path) -> Records:
    """Every record of a log."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def forge(
    path: Path,
    edit: Callable[[Records], Records],
    *,
    update_head: bool = True,
    strip_signatures: bool = False,
) -> Records:
    """Rewrite the log at ``path`` with ``edit(records)``, chained and hashed as our writer would."""
    records = edit(read_records(path))
    prev_hash = GENESIS_HASH
    for sequence, record in enumerate(records, start=1):
        if strip_signatures:
            record["audit"].pop("signature", None)
            record["audit"].pop("key_id", None)
        record["event"]["sequence"] = sequence
        record["audit"]["prev_hash"] = prev_hash
        record["audit"]["hash"] = record_hash(record)
        prev_hash = record["audit"]["hash"]
    path.write_text("".join(canonical_json(record) + "\n" for record in records), encoding="utf-8")
    if update_head:
        head = {"sequence": len(records), "hash": prev_hash}
        Path(f"{path}.head").write_text(json.dumps(head) + "\n", encoding="utf-8")
    return records


def edit_reason(number: int, reason: str) -> Callable[[Records], Records]:
    """An edit that changes the ``reason`` of the record on line ``number``."""

    def edit(records: Records) -> Records:
        records[number - 1]["reason"] = reason
        return records

    return edit


def append_copy_of(number: int, reason: str) -> Callable[[Records], Records]:
    """An edit that appends a copy of line ``number`` with another ``reason`` and a new audit.id."""

    def edit(records: Records) -> Records:
        forged = json.loads(json.dumps(records[number - 1]))
        forged["reason"] = reason
        forged["audit"]["id"] = f"forged-{len(records) + 1}"
        return [*records, forged]

    return edit
