"""The ``audit`` commands: verify a log (chain, head, witness), reconcile intents left without a result.

``audit verify`` exits 0 intact, 1 problems found, 2 usage, and 3 when its witness (a Prometheus) could
not be asked or had nothing to check against and the file itself showed no problem.
"""

from __future__ import annotations

import argparse
import time
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
from ccs_exporter.errors import ConfigError

EXIT_WITNESS = 3  # audit verify --witness: Prometheus could not be asked (and the log showed no problem)
# The history asked of a Prometheus that does not report a time-based retention.
DEFAULT_WITNESS_SECONDS = 365 * 86400.0


def add_audit_commands(commands: Any) -> None:
    """``audit verify|reconcile``."""
    audit = commands.add_parser("audit", help="work with the audit log").add_subparsers(
        title="audit commands", metavar="AUDIT_COMMAND"
    )
    verify = audit.add_parser("verify", help="check an audit log's hash chain, head and witness")
    verify.add_argument("file", type=Path)
    witness = verify.add_argument_group("witness (the heads a Prometheus scraped from the exporter)")
    witness.add_argument("--witness", metavar="PROMETHEUS_URL", help="check against this Prometheus")
    witness.add_argument(
        "--witness-selector", default="", metavar="SELECTOR", help='label matchers, e.g. instance="ccs:9879"'
    )
    witness.add_argument("--witness-start", type=_moment, metavar="TIME", help="default: its retention")
    witness.add_argument("--witness-end", type=_moment, metavar="TIME", help="default: now")
    witness.add_argument("--witness-ca-bundle", type=Path, metavar="FILE", help="CA of its certificate")
    witness.add_argument("--witness-timeout", type=float, default=30.0, help="seconds per request (30)")
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


def _moment(text: str) -> float:
    """A point in time given as RFC 3339 (``2026-01-31T12:00:00Z``) or Unix seconds."""
    from datetime import datetime, timezone

    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not RFC 3339 (2026-01-31T12:00:00Z) or Unix time"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    """Exit 0 intact, 1 problems found, 2 usage, 3 the witness could not be asked (and no problem found)."""
    from ccs_exporter.audit import verify
    from ccs_exporter.audit.report import verify_report

    api = _witness_api(args) if args.witness else None
    result = verify(args.file)
    witness, witness_error = None, None
    if api is not None:
        witness, witness_error = _ask_witness(api, args, result)
    report = verify_report(
        str(args.file),
        result,
        checked_signatures=False,
        witness_url=api.url if api else None,
        witness=witness,
    )
    for line in report.lines:
        if report.ok:
            print(line)
        else:
            fail(line)
    if witness_error is not None:
        fail(f"{args.file}: not checked against the witness: {witness_error}")
    if not report.ok:
        return EXIT_CCS
    return EXIT_WITNESS if witness_error is not None else EXIT_OK


def _witness_api(args: argparse.Namespace) -> Any:
    from ccs_exporter.client.prometheus import PrometheusApi, check_prometheus_url

    try:
        check_prometheus_url(args.witness)
    except ValueError as exc:
        raise ConfigError(f"--witness {exc}", field="witness") from None
    if args.witness_ca_bundle is not None and not args.witness_ca_bundle.is_file():
        raise ConfigError(f"--witness-ca-bundle {args.witness_ca_bundle} is not a file", field="witness")
    if not 0 < args.witness_timeout <= 3600:
        raise ConfigError("--witness-timeout must be more than 0 and at most 3600", field="witness")
    return PrometheusApi(args.witness, timeout=args.witness_timeout, ca_bundle=args.witness_ca_bundle)


def _ask_witness(api: Any, args: argparse.Namespace, result: Any) -> tuple[Any, str | None]:
    """The witness report, or the one-line reason it could not be made."""
    from ccs_exporter.audit.witness import WitnessError, check_witness
    from ccs_exporter.client.prometheus import PrometheusError

    end = args.witness_end if args.witness_end is not None else time.time()
    try:
        start = args.witness_start
        if start is None:
            start = end - (api.retention_seconds() or DEFAULT_WITNESS_SECONDS)
        if start >= end:
            raise ConfigError("--witness-start must be before --witness-end", field="witness")
        report = check_witness(result, api, args.witness_selector, start, end)
    except (PrometheusError, WitnessError) as exc:
        return None, str(exc)
    finally:
        api.close()
    if not report.scrapes:
        return None, (
            f"Prometheus has no ccs_audit_head_* samples matching {args.witness_selector or 'any labels'!r} "
            "in the time checked (is the exporter scraped, with an audit log?)"
        )
    return report, None


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
