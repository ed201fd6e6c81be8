"""The flags the commands share, the settings they give, and the exit codes and error line of every command.

Exit codes: 0 success, 1 CCS refused or failed (one line on stderr), 2 usage or configuration error
(nothing was sent to CCS), 130 interrupted, 141 the reader of stdout went away (``| head``; quietly, as a
tool killed by SIGPIPE).
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
EXIT_PIPE_CLOSED = 141  # 128 + SIGPIPE, what a shell shows for `cat big | head -1`

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


class CommandParser(argparse.ArgumentParser):
    """An argument parser that takes no abbreviated flags and ends each command's help with its settings.

    ``--pass`` must not quietly mean ``--password-file`` (or be "ambiguous" once another flag starts the
    same way), so every parser and sub-parser is built with ``allow_abbrev=False``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def format_help(self) -> str:
        """The usual help, then where the password and every setting come from (when this parser has a
        command: the top level and the commands themselves, not the ``jobs`` and ``audit`` groups)."""
        text = super().format_help()
        if self.get_default("handler") is None and self.get_default("reads_settings") is None:
            return text
        return f"{text}\n{settings_help(self)}"


def add_connection_options(parser: argparse.ArgumentParser, *, before_command: bool = False) -> None:
    """``--config`` and the flags of every command that talks to CCS.

    ``before_command``: the copies the top-level parser takes before the command's name; they are stored
    under ``BEFORE_COMMAND`` + the setting's name and only when given, and ``main`` moves them to the
    command's own names (a value given after the command wins).
    """
    group = parser.add_argument_group("connection (flags override $CCS_EXPORTER_* variables and --config)")
    add = _adder(group, before_command)
    add(
        "--config",
        "--config.file",
        "config",
        type=Path,
        metavar="FILE",
        help="YAML settings file: keys are the setting names in lower case (see config.example.yaml)",
    )
    add("--url", "url", help=_named("CCS base URL, e.g. https://ccs.example.com:12431", "url"))
    add("--username", "username", help=_named("CCS account, DOMAIN\\user", "username"))
    add(
        "--password-file",
        "password_file",
        help=_named("file holding the CCS password (e.g. a mounted Kubernetes Secret)", "password_file"),
        type=Path,
    )
    group.add_argument("--password", nargs="?", action=_NoPasswordFlag, help=argparse.SUPPRESS)
    add(
        "--password-encoding",
        "password_encoding",
        help=_named("how the token request sends the password (default base64)", "password_encoding"),
        choices=("base64", "plain"),
    )
    add(
        "--ca-bundle",
        "ca_bundle",
        help=_named("CA certificates for CCS's TLS certificate", "ca_bundle"),
        type=Path,
    )
    add(
        "--insecure",
        "insecure",
        action="store_true",
        help="do not verify CCS's TLS certificate ($CCS_EXPORTER_VERIFY_TLS=false)",
    )
    add(
        "--request-timeout",
        "request_timeout_seconds",
        help=_named("seconds per request (default 30)", "request_timeout_seconds"),
        type=float,
    )
    _add_log_options(add)
    _reads_settings(parser, before_command)


def _add_log_options(add: Any) -> None:
    """``--log-level`` and ``--log-format`` (``add`` from ``_adder``)."""
    add(
        "--log-level",
        "--log.level",
        "log_level",
        help=_named(f"{', '.join(LOG_LEVELS)} (default info)", "log_level"),
        type=str.lower,
        choices=LOG_LEVELS,
    )
    add(
        "--log-format",
        "--log.format",
        "log_format",
        help=_named("default auto: JSON unless stderr is a terminal; logfmt as node_exporter", "log_format"),
        choices=LOG_FORMATS,
    )


def add_serve_options(parser: argparse.ArgumentParser, *, before_command: bool = False) -> None:
    """The flags of the exporter's settings (``serve`` and ``check-config``)."""
    group = parser.add_argument_group("exporter (flags override $CCS_EXPORTER_* variables and --config)")
    add = _adder(group, before_command)
    add("--job-ids", "job_ids", help=_named("job GUIDs, comma-separated", "job_ids"))
    add(
        "--listen-address",
        "--web.listen-address",
        "listen_address",
        help=_named("host:port for /metrics (default 0.0.0.0:9879)", "listen_address"),
        metavar="HOST:PORT",
    )
    add(
        "--poll-interval",
        "poll_interval_seconds",
        help=_named("seconds between poll cycles (default 60)", "poll_interval_seconds"),
        type=float,
    )
    add(
        "--concurrency", "concurrency", help=_named("parallel job polls (default 8)", "concurrency"), type=int
    )
    add(
        "--history-window",
        "history_window",
        help=_named("job runs read when a job changed (default 10)", "history_window"),
        type=int,
    )
    add("--audit-log", "audit_log", help=_named("audit log for observed job changes", "audit_log"), type=Path)
    add(
        "--web-config-file",
        "--web.config.file",
        "web_config_file",
        help=_named("TLS and basic auth for the exporter's endpoints", "web_config_file"),
        type=Path,
    )
    _reads_settings(parser, before_command)


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("json", "logfmt", "console", "auto")
# Stored under this prefix by the top-level parser, so a value given before the command cannot be
# overwritten by the command's own default, and a flag the command does not read is caught.
BEFORE_COMMAND = "before_command_"
# Flags whose dest is not the setting's name.
SETTING_OF_DEST = {"insecure": "verify_tls", "page_size": "search_page_size"}


class _NoPasswordFlag(argparse.Action):
    """``--password``: refused with where the password goes instead (not an unknown or ambiguous flag)."""

    def __call__(self, parser: argparse.ArgumentParser, *_: Any, **__: Any) -> None:
        parser.error(
            "there is no --password flag (other users can read a process's arguments): set "
            "$CCS_EXPORTER_PASSWORD or give a file with --password-file"
        )


def _named(text: str, setting: str) -> str:
    """A flag's help naming its setting's variable, where users look first."""
    return f"{text} ($CCS_EXPORTER_{setting.upper()})"


def _adder(group: Any, before_command: bool) -> Any:
    """``add(*flags, dest, **options)`` for ``group``: metavars by type, and the before-command form."""
    metavars: dict[Any, str] = {float: "SECONDS", int: "N", Path: "FILE"}

    def add(*flags_and_dest: str, **options: Any) -> None:
        *flags, dest = flags_and_dest
        if "choices" not in options and options.get("action") != "store_true":
            options.setdefault("metavar", metavars.get(options.get("type"), dest.upper()))
        if before_command:
            group.add_argument(*flags, dest=BEFORE_COMMAND + dest, default=argparse.SUPPRESS, **options)
        else:
            group.add_argument(*flags, dest=dest, **options)

    return add


def _reads_settings(parser: argparse.ArgumentParser, before_command: bool) -> None:
    if not before_command:
        parser.set_defaults(reads_settings=True)


def move_before_command_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str | None:
    """Give the command the setting flags typed before its name (a value typed after it wins); the error
    line when the command does not read one of them (``--job-ids`` before ``jobs get``)."""
    flag_of = {
        action.dest: action.option_strings[0]
        for action in parser._actions
        if action.dest.startswith(BEFORE_COMMAND)
    }
    command_dests: frozenset[str] = getattr(args, "command_dests", frozenset())
    for key in sorted(vars(args)):
        if not key.startswith(BEFORE_COMMAND):
            continue
        dest = key.removeprefix(BEFORE_COMMAND)
        value = getattr(args, key)
        delattr(args, key)
        if dest not in command_dests:
            flag, command = flag_of.get(key, dest), getattr(args, "command_name", "this command")
            if not args.reads_settings:
                return f"{flag}: {command} reads no settings (no --config, no setting flags)"
            return f"{flag}: {command} does not read this setting"
        if getattr(args, dest, None) in (None, False):
            setattr(args, dest, value)
    return None


def mark_commands(parser: argparse.ArgumentParser) -> None:
    """Give each command (a parser without sub-commands) the list of its flags' dests, as a default."""
    sub_actions = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    if not sub_actions:
        parser.set_defaults(
            command_dests=frozenset(action.dest for action in parser._actions),
            command_name=parser.prog.removeprefix("ccs-exporter "),
            reads_settings=bool(parser.get_default("reads_settings")),  # not the top level's
        )
    for action in sub_actions:
        for child in set(action.choices.values()):
            mark_commands(child)


def settings_help(parser: argparse.ArgumentParser) -> str:
    """Where the password and each setting come from, for the end of a command's --help."""
    if not parser.get_default("reads_settings"):
        return "settings: this command reads none (no --config, no $CCS_EXPORTER_* variable)\n"
    from ccs_exporter.settings.config import Settings, env_name

    flags: dict[str, str] = {}
    for action in parser._actions:
        setting = SETTING_OF_DEST.get(action.dest, action.dest)
        if setting in Settings.model_fields and action.option_strings and action.help != argparse.SUPPRESS:
            flags.setdefault(setting, action.option_strings[0])
    for name in parser.get_default("settings_set_by_command") or ():
        flags[name] = "set by this command"
    rows = []
    width = max(len(env_name(name)) for name in Settings.model_fields)
    for name in Settings.model_fields:
        how = flags.get(name, "env/config only (no flag here)")
        rows.append(f"  {env_name(name):<{width}}  {how}")
    return (
        "password: from $CCS_EXPORTER_PASSWORD, or from a file named by --password-file or\n"
        "$CCS_EXPORTER_PASSWORD_FILE (e.g. a Kubernetes Secret mounted as a file, as the chart does),\n"
        "or from the keys password / password_file of the --config file. There is no --password flag:\n"
        "other users of the host can read a process's arguments.\n\n"
        "settings: each is a $CCS_EXPORTER_<NAME> variable and a key <name> of the --config file;\n"
        "flags override variables, which override the file. Empty variable = unset.\n"
        + "\n".join(rows)
        + "\n"
    )


def settings_from(args: argparse.Namespace, *, require_password: bool = True, **extra: Any) -> Any:
    """Build Settings once from --config, the environment and the flags, and set up logging."""
    from ccs_exporter.cli.logs import configure_logging
    from ccs_exporter.settings.config import load_settings

    settings = load_settings(
        getattr(args, "config", None), flag_overrides(args, **extra), require_password=require_password
    )
    configure_logging(settings.log_level, settings.log_format)
    return settings


def flag_overrides(args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    """The settings the command line gives (None where a flag was not used), plus ``extra``."""
    overrides: dict[str, Any] = {setting: getattr(args, setting, None) for setting in CONNECTION_SETTINGS}
    if getattr(args, "insecure", False):
        overrides["verify_tls"] = False
    overrides.update(extra)
    return overrides
