"""``audit export`` (map, follow and ship the audit trail to a SIEM) and ``audit verify --format`` (check a
SIEM's copy). Exit codes as for the other audit commands: 0 done or intact, 1 problems found or shipping
stopped (a cursor that no longer matches the log, a broken chain, a destination that refused), 2 usage.
"""

from __future__ import annotations

import argparse
import signal
import ssl
from pathlib import Path
from types import FrameType
from typing import Any

from ccs_exporter.cli.options import (
    EXIT_CCS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    LOG_FORMATS,
    LOG_LEVELS,
    fail,
    seconds,
)
from ccs_exporter.errors import ConfigError


def add_export_command(audit: Any) -> None:
    """``audit export FILE --format ocsf|ecs|jsonl [--follow] [--cursor] [--destination] ...``."""
    export = audit.add_parser(
        "export", help="map the audit log to OCSF, ECS or JSON lines and ship it (to stdout, syslog, HEC)"
    )
    export.add_argument("file", type=Path, metavar="FILE", help="the audit log (JSON lines) to map and ship")
    export.add_argument("--format", dest="export_format", required=True, metavar="ocsf|ecs|jsonl")
    export.add_argument("--follow", action="store_true", help="keep shipping records as they are appended")
    export.add_argument(
        "--cursor", type=Path, metavar="CURSOR_FILE", help="where the last acknowledged record is kept"
    )
    export.add_argument(
        "--destination",
        default="-",
        metavar="DEST",
        help="'-' (standard output, the default), syslog+tls://HOST:PORT or https://HEC-HOST:8088",
    )
    export.add_argument(
        "--destination-ca-bundle", type=Path, metavar="PEM", help="CA of the destination's cert"
    )
    export.add_argument("--hec-token-file", type=Path, metavar="FILE", help="file holding the HEC token")
    export.add_argument(
        "--destination-cert", type=Path, metavar="PEM", help="client certificate (mutual TLS)"
    )
    export.add_argument("--destination-key", type=Path, metavar="PEM", help="its private key")
    export.add_argument(
        "--poll-interval", type=seconds, default=0.2, help="seconds between looks at the log (0.2)"
    )
    export.add_argument("--timeout", type=seconds, default=30.0, help="seconds per delivery attempt (30)")
    export.add_argument(
        "--log-level",
        "--log.level",
        type=str.lower,
        choices=LOG_LEVELS,
        help=f"{', '.join(LOG_LEVELS)} (default info)",
    )
    export.add_argument(
        "--log-format", "--log.format", choices=LOG_FORMATS, help="default auto: JSON unless a terminal"
    )
    export.set_defaults(handler=_cmd_audit_export)


def add_verify_format_option(verify: argparse.ArgumentParser) -> None:
    """``audit verify --format ocsf|ecs|jsonl EXPORT``: check a SIEM's copy instead of a log."""
    verify.add_argument(
        "--format",
        dest="export_format",
        metavar="ocsf|ecs|jsonl",
        help="FILE is an export (one event per line, as the SIEM gives it back): check its records",
    )


def export_format(name: str) -> Any:
    """The export format called ``name``; ConfigError naming --format otherwise."""
    from ccs_exporter.audit.export import format_named

    try:
        return format_named(name)
    except ValueError as exc:
        raise ConfigError(f"--format: {exc}", field="format") from None


def verify_export_command(args: argparse.Namespace, checker: Any) -> int:
    """``audit verify --format``: exit 0 intact, 1 problems found."""
    from ccs_exporter.audit.export.verify_export import export_report, verify_export

    fmt = export_format(args.export_format)
    result = verify_export(args.file, fmt, signatures=checker)
    ok, lines = export_report(str(args.file), result, checked_signatures=checker is not None)
    for line in lines:
        if ok:
            print(line)
        else:
            fail(line)
    return EXIT_OK if ok else EXIT_CCS


def _options(args: argparse.Namespace, fmt: Any) -> Any:
    from ccs_exporter.audit.export.destinations import DestinationOptions, check_destination

    try:
        check_destination(args.destination)
    except ValueError as exc:
        raise ConfigError(f"--destination {exc}", field="destination") from None
    for flag, path in (
        ("--destination-ca-bundle", args.destination_ca_bundle),
        ("--hec-token-file", args.hec_token_file),
        ("--destination-cert", args.destination_cert),
        ("--destination-key", args.destination_key),
    ):
        if path is not None and not path.is_file():
            raise ConfigError(f"{flag} {path} is not a file", field=flag.lstrip("-"))
    if (args.destination_cert is None) != (args.destination_key is None):
        raise ConfigError("--destination-cert and --destination-key go together", field="destination_cert")
    if args.destination_cert is not None and args.destination in ("", "-"):
        raise ConfigError("--destination-cert is for a TLS destination, not stdout", field="destination_cert")
    if args.destination_cert is not None:
        _check_client_certificate(args.destination_cert, args.destination_key)
    is_hec = args.destination.startswith("https://")
    if is_hec and args.hec_token_file is None:
        raise ConfigError("--hec-token-file is needed for an https:// (Splunk HEC) destination", field="hec")
    if not is_hec and args.hec_token_file is not None:
        raise ConfigError("--hec-token-file is only for an https:// (Splunk HEC) destination", field="hec")
    if args.cursor is not None and not args.cursor.parent.is_dir():
        raise ConfigError(f"--cursor {args.cursor}: its directory does not exist", field="cursor")
    return DestinationOptions(
        ca_bundle=args.destination_ca_bundle,
        client_cert=args.destination_cert,
        client_key=args.destination_key,
        hec_token_file=args.hec_token_file,
        sourcetype=fmt.sourcetype,
        timeout=args.timeout,
    )


def _check_client_certificate(cert: Path, key: Path) -> None:
    """ConfigError unless ``cert`` and ``key`` are a PEM certificate and its unencrypted private key."""
    try:
        # A password callback, so an encrypted key fails here instead of prompting on a terminal.
        ssl.create_default_context().load_cert_chain(cert, key, password=lambda: b"")
    except (ssl.SSLError, OSError):
        raise ConfigError(
            "--destination-cert/--destination-key: not a PEM certificate with its unencrypted private key",
            field="destination_cert",
        ) from None


def _cmd_audit_export(args: argparse.Namespace) -> int:
    from ccs_exporter.audit.export.cursor import CursorError, read_cursor
    from ccs_exporter.audit.export.destinations import DeliveryError, DestinationError, destination_from
    from ccs_exporter.audit.export.shipper import RetryPolicy, Shipper, ShipSettings
    from ccs_exporter.audit.export.source import SourceError
    from ccs_exporter.cli.logs import configure_logging

    configure_logging(args.log_level or "info", args.log_format or "auto")
    fmt = export_format(args.export_format)
    options = _options(args, fmt)
    if args.cursor is not None:
        try:
            read_cursor(args.cursor)
        except CursorError as exc:
            raise ConfigError(f"--cursor {exc}", field="cursor") from None
    try:
        destination = destination_from(args.destination, options)
    except ValueError as exc:
        raise ConfigError(f"--hec-token-file {exc}", field="hec_token_file") from None
    settings = ShipSettings(
        log_path=args.file,
        format=fmt,
        cursor_path=args.cursor,
        follow=args.follow,
        poll_seconds=args.poll_interval,
        retry=RetryPolicy(attempts=None if args.follow else 5),
    )
    shipper = Shipper(settings, destination)
    interrupted: list[int] = []

    def stop(signum: int, frame: FrameType | None) -> None:
        interrupted.append(signum)
        shipper.stop()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if args.follow:
            _wait_for_log(args.file, shipper, args.poll_interval)
        report = shipper.run()
    except (SourceError, DeliveryError, DestinationError, OSError) as exc:
        fail(f"{args.file}: shipping stopped: {_why(exc)}")
        return EXIT_CCS
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _log_report(args, destination.name, report)
    return EXIT_INTERRUPTED if signal.SIGINT in interrupted else EXIT_OK


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not type(exc).__module__.startswith("ccs_exporter"):
        return f"{exc.strerror or exc} ({getattr(exc, 'filename', '') or 'file'})"
    return str(exc)


def _wait_for_log(path: Path, shipper: Any, poll: float) -> None:
    """A sidecar may start before the first record is written: wait for the log to exist."""
    import time

    while not path.exists() and not shipper.stopped():
        time.sleep(poll)


def _log_report(args: argparse.Namespace, destination: str, report: Any) -> None:
    import structlog

    structlog.get_logger(__name__).info(
        "audit_export_done",
        file=str(args.file),
        destination=destination,
        events=report.events,
        batches=report.batches,
        last_sequence=report.last.sequence,
        retries=report.retries,
    )
