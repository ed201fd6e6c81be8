"""Test helper: append N observation records to an audit log from a separate process.

Usage: ``python tests/audit_writer.py LOG_PATH COUNT LABEL``. Used by the concurrent-writer tests.
"""

from __future__ import annotations

import sys

from ccs_exporter.audit import AuditLog


def main() -> int:
    path, count, label = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    audit_log = AuditLog(path, user_name="CCS\\writer")
    for number in range(count):
        audit_log.append(
            {
                "event": {"kind": "state", "action": "job.changed", "outcome": "success"},
                "audit": {"id": f"{label}-{number}", "phase": "observation", "origin": "observed"},
                "labels": {"writer": label, "n": number},
            }
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
