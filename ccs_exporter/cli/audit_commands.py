"""The ``audit`` commands: verify a log (chain, head, witness, signatures), reconcile open intents, keygen.

``audit verify`` exits 0 intact, 1 problems found, 2 usage, and 3 when its witness (a Prometheus) could
not be asked or had nothing to check against and the file itself showed no problem.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ccs_exporter.cli.export_commands import (
    add_export_command,
    add_verify_format_option,
    verify_export_command,
)
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


def add_audit_commands(commands: Any) -> None:
    """``audit verify|reconcile|keygen|export``."""
    group = commands.add_parser("audit", help="work with the audit log")
    add_connection_options(group, before_command=True)  # `audit --config FILE reconcile LOG` works too
    audit = group.add_subparsers(title="audit commands", metavar="AUDIT_COMMAND")
    _add_verify_command(audit)
    _add_reconcile_command(audit)
    _add_keygen_command(audit)
    add_export_command(audit)


def _add_verify_command(audit: Any) -> None:
    """``audit verify``: the hash chain, signatures, head and witness of an audit log."""
    verify = audit.add_parser("verify", help="check an audit log's hash chain, head and witness")
    verify.add_argument("file", type=Path, metavar="FILE", help="the audit log (JSON lines) to check")
    verify.add_argument(
        "--public-key",
        dest="public_keys",
        action="append",
        type=Path,
        default=[],
        metavar="KEYFILE.pub",
        help="check every signature; repeat for rotated keys (chosen by key id)",
    )
    _add_witness_options(verify)
    add_verify_format_option(verify)
    verify.set_defaults(handler=_cmd_audit_verify)


def _add_witness_options(verify: Any) -> None:
    """``audit verify --witness*``: which Prometheus to check the heads against, and how to reach it."""
    witness = verify.add_argument_group("witness (the heads a Prometheus scraped from the exporter)")
    witness.add_argument("--witness", metavar="PROMETHEUS_URL", help="check against this Prometheus")
    witness.add_argument(
        "--witness-selector", default="", metavar="SELECTOR", help='label matchers, e.g. instance="ccs:9879"'
    )
    witness.add_argument("--witness-start", type=_moment, metavar="TIME", help="default: its retention")
    witness.add_argument("--witness-end", type=_moment, metavar="TIME", help="default: now")
    witness.add_argument("--witness-ca-bundle", type=Path, metavar="FILE", help="CA of its certificate")
    witness.add_argument(
        "--witness-timeout", type=float, default=30.0, help="seconds for each whole request and answer (30)"
    )
    witness.add_argument(
        "--witness-bearer-token-file", type=Path, metavar="FILE", help="send the token in this file as Bearer"
    )
    witness.add_argument("--witness-basic-auth-user", metavar="USER", help="basic auth user name")
    witness.add_argument(
        "--witness-basic-auth-password-file", type=Path, metavar="FILE", help="basic auth password (a file)"
    )
    witness.add_argument("--witness-cert-file", type=Path, metavar="FILE", help="client certificate (PEM)")
    witness.add_argument("--witness-key-file", type=Path, metavar="FILE", help="its private key (PEM)")
    witness.add_argument(
        "--witness-header",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra request header, repeatable (e.g. X-Scope-OrgID=team-a for Mimir, Cortex, Thanos)",
    )


def _add_reconcile_command(audit: Any) -> None:
    """``audit reconcile``: close the intents a crash left open."""
    reconcile = audit.add_parser(
        "reconcile", help="record the outcome CCS shows for intents left without a result (a crash)"
    )
    reconcile.add_argument(
        "file", type=Path, metavar="FILE", help="the audit log whose open intents to close (written to)"
    )
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


def _add_keygen_command(audit: Any) -> None:
    """``audit keygen``: a new Ed25519 signing key pair."""
    keygen = audit.add_parser("keygen", help="write an Ed25519 signing key (KEYFILE, 0600) and KEYFILE.pub")
    keygen.add_argument(
        "keyfile",
        type=Path,
        metavar="KEYFILE",
        help="where to write the private key; the public key goes to KEYFILE.pub (neither may exist)",
    )
    keygen.set_defaults(handler=_cmd_audit_keygen)


def _moment(text: str) -> float:
    from ccs_exporter.audit.witness import parse_moment

    try:
        return parse_moment(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not RFC 3339 (2026-01-31T12:00:00Z) or Unix time"
        ) from None


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    """Exit 0 intact, 1 problems found, 2 usage, 3 the witness could not be asked (and no problem found)."""
    from ccs_exporter.audit import verify
    from ccs_exporter.audit.report import verify_report

    if not args.file.exists():  # a mistyped name is a usage error, not a damaged log
        raise ConfigError(f"{args.file}: no such file", field="file")
    checker = _signature_checker(args.public_keys) if args.public_keys else None
    if args.export_format is not None:
        if args.witness:
            raise ConfigError("--witness checks a log, not an export (--format)", field="witness")
        return verify_export_command(args, checker)
    api = _witness_api(args) if args.witness else None
    result = verify(args.file, signatures=checker)
    witness, witness_error = None, None
    if api is not None:
        from ccs_exporter.audit.witness import ask_witness

        end = args.witness_end if args.witness_end is not None else time.time()
        try:
            witness, witness_error = ask_witness(result, api, args.witness_selector, args.witness_start, end)
        finally:
            api.close()
    report = verify_report(
        str(args.file),
        result,
        checked_signatures=checker is not None,
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


def _signature_checker(paths: list[Path]) -> Any:
    from ccs_exporter.audit.signing import KeyFileError, SignatureChecker

    try:
        return SignatureChecker.from_files(paths)
    except KeyFileError as exc:
        raise ConfigError(f"--public-key {exc}", field="public_key") from None


def _witness_api(args: argparse.Namespace) -> Any:
    from ccs_exporter.client.prometheus import PrometheusAccess, PrometheusApi, check_prometheus_url

    try:
        check_prometheus_url(args.witness)
    except ValueError as exc:
        raise ConfigError(f"--witness {exc}", field="witness") from None
    access = PrometheusAccess.from_options(
        ca_bundle=args.witness_ca_bundle,
        bearer_token_file=args.witness_bearer_token_file,
        basic_auth_user=args.witness_basic_auth_user,
        basic_auth_password_file=args.witness_basic_auth_password_file,
        cert_file=args.witness_cert_file,
        key_file=args.witness_key_file,
        headers=args.witness_header,
    )
    if not 0 < args.witness_timeout <= 3600:
        raise ConfigError("--witness-timeout must be more than 0 and at most 3600", field="witness")
    if None not in (args.witness_start, args.witness_end) and args.witness_start >= args.witness_end:
        raise ConfigError("--witness-start must be before --witness-end", field="witness")
    return PrometheusApi(args.witness, timeout=args.witness_timeout, access=access)


def _cmd_audit_keygen(args: argparse.Namespace) -> int:
    from ccs_exporter.audit.signing import PUBLIC_SUFFIX, generate_key_files

    try:
        key_id = generate_key_files(args.keyfile)
    except FileExistsError as exc:
        raise ConfigError(f"{exc.args[0]} exists; a key is never overwritten", field="keyfile") from None
    except OSError as exc:
        raise ConfigError(f"cannot write {args.keyfile}: {exc.strerror or exc}", field="keyfile") from None
    print(
        f"wrote {args.keyfile} (private key, mode 0600) and {args.keyfile}{PUBLIC_SUFFIX}; key id {key_id}\n"
        f"sign with CCS_EXPORTER_AUDIT_SIGNING_KEY_FILE={args.keyfile}, "
        f"check with: ccs-exporter audit verify FILE --public-key {args.keyfile}{PUBLIC_SUFFIX}"
    )
    return EXIT_OK


def _cmd_audit_reconcile(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from ccs_exporter.audit import AuditLog
    from ccs_exporter.audit.reconcile import reconcile
    from ccs_exporter.client import CcsClient

    settings = settings_from(args, audit_log=args.file)
    audit_log = AuditLog.from_settings(settings)
    closed, still_open = 0, 0
    with CcsClient.from_settings(settings) as client:
        audit_log.also_redact(client.secrets)  # the evidence is CCS's text, which may echo our tokens
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
