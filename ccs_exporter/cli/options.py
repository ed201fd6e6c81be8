"""The flags the commands share, the settings they give, and the exit codes and error line of every command.

Exit codes: 0 success, 1 CCS refused or failed (one line on stderr), 2 usage or configuration error
(nothing was sent to CCS), 130 interrupted.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_CCS = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# Settings the flags of every CCS-talking command set (each flag's dest is its setting's name).
CONNECTION_SETTINGS = (
    "url",
    "username",
    "password_file",
    "password_encoding",
    "ca_bundle",
    "request_timeout_seconds",
    "log_level",
    "log_format",
)
# Settings the flags of `serve` and `check-config` set.
SERVE_SETTINGS = (
    "job_ids",
    "listen_address",
    "poll_interval_seconds",
    "concurrency",
    "history_window",
    "audit_log",
    "web_config_file",
)


def fail(message: str) -> None:
    """Print ``message`` as the one ``ccs-exporter: ...`` line on stderr (whitespace folded)."""
    print(f"ccs-exporter: {' '.join(message.split())}", file=sys.stderr)


def seconds(text: str) -> float:
    """An argparse type: a finite number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a finite number of seconds above 0")
    return value


def non_negative_int(text: str) -> int:
    """An argparse type: a whole number, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    """``--config`` and the flags of every command that talks to CCS."""
    group = parser.add_argument_group("connection (flags override $CCS_EXPORTER_* variables and --config)")
    group.add_argument(
        "--config",
        "--config.file",
        type=Path,
        dest="config",
        metavar="FILE",
        help="YAML settings file: keys are the setting names in lower case (see config.example.yaml)",
    )
    _setting(group, "--url", "url", help="CCS base URL, e.g. https://ccs.example.com:12431")
    _setting(group, "--username", "username", help="CCS account, DOMAIN\\user")
    _setting(group, "--password-file", "password_file", help="file holding the CCS password", type=Path)
    _setting(
        group,
        "--password-encoding",
        "password_encoding",
        help="how the token request sends the password (default base64)",
        choices=("base64", "plain"),
    )
    _setting(group, "--ca-bundle", "ca_bundle", help="CA certificates for CCS's TLS certificate", type=Path)
    group.add_argument(
        "--insecure",
        action="store_true",
        help="do not verify CCS's TLS certificate ($CCS_EXPORTER_VERIFY_TLS=false)",
    )
    _setting(
        group,
        "--request-timeout",
        "request_timeout_seconds",
        help="seconds per request (default 30)",
        type=float,
    )
    _setting(group, "--log-level", "log_level", help="debug, info, warning, error (default info)")
    _setting(
        group,
        "--log-format",
        "log_format",
        help="default auto: JSON unless stderr is a terminal",
        choices=("json", "console", "auto"),
    )


def add_serve_options(parser: argparse.ArgumentParser) -> None:
    """The flags of the exporter's settings (``serve`` and ``check-config``)."""
    group = parser.add_argument_group("exporter (flags override $CCS_EXPORTER_* variables and --config)")
    _setting(group, "--job-ids", "job_ids", help="job GUIDs, comma-separated")
    _setting(
        group,
        "--listen-address",
        "--web.listen-address",
        "listen_address",
        help="host:port for /metrics (default 0.0.0.0:9879)",
        metavar="HOST:PORT",
    )
    _setting(
        group,
        "--poll-interval",
        "poll_interval_seconds",
        help="seconds between poll cycles (default 60)",
        type=float,
    )
    _setting(group, "--concurrency", "concurrency", help="parallel job polls (default 8)", type=int)
    _setting(
        group,
        "--history-window",
        "history_window",
        help="job runs read when a job changed (default 10)",
        type=int,
    )
    _setting(group, "--audit-log", "audit_log", help="audit log for observed job changes", type=Path)
    _setting(
        group,
        "--web-config-file",
        "--web.config.file",
        "web_config_file",
        help="TLS and basic auth for the exporter's endpoints",
        type=Path,
    )


def _setting(group: Any, *flags_and_setting: str, help: str, **options: Any) -> None:
    """A flag (and its aliases) for a setting; its help names the variable, where users look first."""
    *flags, setting = flags_and_setting
    metavars: dict[Any, str] = {float: "SECONDS", int: "N", Path: "FILE"}
    if "choices" not in options:
        options.setdefault("metavar", metavars.get(options.get("type"), setting.upper()))
    group.add_argument(*flags, dest=setting, help=f"{help} ($CCS_EXPORTER_{setting.upper()})", **options)


def settings_from(args: argparse.Namespace, **extra: Any) -> Any:
    """Build Settings once from --config, the environment and the flags, and set up logging."""
    from ccs_exporter.cli.logs import configure_logging
    from ccs_exporter.settings.config import load_settings

    settings = load_settings(getattr(args, "config", None), flag_overrides(args, **extra))
    configure_logging(settings.log_level, settings.log_format)
    return settings


def flag_overrides(args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    """The settings the command line gives (None where a flag was not used), plus ``extra``."""
    overrides: dict[str, Any] = {setting: getattr(args, setting, None) for setting in CONNECTION_SETTINGS}
    if getattr(args, "insecure", False):
        overrides["verify_tls"] = False
    overrides.update(extra)
    return overrides
