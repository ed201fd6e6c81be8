"""The ``audit`` commands: verify a log's hash chain, reconcile intents left without a result."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ccs_exporter.cli.options import (
    EXIT_CCS,
    EXIT_OK,
    add_connection_options,
    fail,
    non_negative_int,
    settings_from,
)


def add_audit_commands(commands: Any) -> None:
    """``audit verify|reconcile``."""
    audit = commands.add_parser("audit", help="work with the audit log").add_subparsers(
        title="audit commands", metavar="AUDIT_COMMAND"
    )
    verify = audit.add_parser("verify", help="check an audit log's hash chain and sequence")
    verify.add_argument("file", type=Path)
    verify.set_defaults(handler=_cmd_audit_verify)

    reconcile = audit.add_parser(
        "reconcile", help="record the outcome CCS shows for intents left without a result (a crash)"
    )
    reconcile.add_argument("file", type=Path)
    reconcile.add_argument(
        "--dry-run", action="store_true", help="show what would be recorded; write nothing"
    )
    reconcile.add_argument(
        "--min-age",
        type=non_negative_int,
        default=900,
        help="seconds before an intent written on another host is looked up (default 900)",
    )
    add_connection_options(reconcile)
    reconcile.set_defaults(handler=_cmd_audit_reconcile)


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    from ccs_exporter.audit import verify

    result = verify(args.file)
    if result.ok:
        print(f"{args.file}: intact ({result.records} records)")
        return EXIT_OK
    for finding in result.findings:
        where = f"line {finding.line}: " if finding.line is not None else ""
        fail(f"{args.file}: {where}{finding.problem}")
    if result.unlisted_findings:
        fail(f"{args.file}: and {result.unlisted_findings} more problems")
    count = result.problem_count
    fail(
        f"{args.file}: {count} problem{'s' if count != 1 else ''} in {result.records} records "
        f"({result.open_intents} open intent{'s' if result.open_intents != 1 else ''})"
    )
    return EXIT_CCS


def _cmd_audit_reconcile(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from ccs_exporter.audit import AuditLog
    from ccs_exporter.audit.reconcile import reconcile
    from ccs_exporter.client import CcsClient

    settings = settings_from(args, audit_log=args.file)
    audit_log = AuditLog.from_settings(settings)
    closed, still_open = 0, 0
    with CcsClient.from_settings(settings) as client:
        steps = reconcile(
            audit_log,
            client,
            checked_by=settings.username,
            dry_run=args.dry_run,
            min_age=timedelta(seconds=args.min_age),
        )
        for step in steps:
            pending = step.pending
            what = f"{args.file}: line {pending.line}: {pending.action} (audit.id {pending.audit_id})"
            if step.finding is not None and step.problem is None:
                verb = "recorded" if step.written else "would record"
                closed += 1
                print(f"{what}: {verb} {step.finding.outcome}: {step.finding.reason}")
            else:
                still_open += 1
                print(f"{what}: left open: {step.problem}")
    if closed == 0 and still_open == 0:
        print(f"{args.file}: no intent without a result; nothing to reconcile")
        return EXIT_OK
    if still_open:
        fail(f"{args.file}: {still_open} intent(s) left without a result (see above)")
        return EXIT_CCS
    return EXIT_OK
