"""The ``ccs-exporter`` command line: the composition root that builds settings once and passes objects down.

``main`` parses the command line and maps errors to exit codes (see ``options``); the commands live in
``exporter_commands`` (serve, check-config, demo), ``jobs_commands`` and ``audit_commands``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ccs_exporter import __version__
from ccs_exporter.cli.audit_commands import add_audit_commands
from ccs_exporter.cli.exporter_commands import cmd_check_config, cmd_demo, cmd_serve
from ccs_exporter.cli.jobs_commands import add_jobs_commands
from ccs_exporter.cli.options import (
    EXIT_CCS,
    EXIT_INTERRUPTED,
    EXIT_PIPE_CLOSED,
    EXIT_USAGE,
    LOG_LEVELS,
    CommandParser,
    add_connection_options,
    add_serve_options,
    fail,
    mark_commands,
    move_before_command_options,
    seconds,
)
from ccs_exporter.errors import AuditError, CcsError, ConfigError, MutationInterrupted

__all__ = ["build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code (141 when the reader of stdout went away, as ``head`` does)."""
    try:
        try:
            return _run(argv)
        finally:
            sys.stdout.flush()  # here, not at exit, so a closed pipe is caught below
    except BrokenPipeError:
        # `ccs-exporter ... | head -1`: the reader has what it wanted. End quietly, as a tool killed by
        # SIGPIPE would (the daemon keeps Python's SIGPIPE handling: a client's closed socket is no reason
        # to die); stdout goes to /dev/null so the interpreter's last flush cannot complain either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_PIPE_CLOSED


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    misplaced = move_before_command_options(parser, args)
    if misplaced is not None:
        fail(misplaced)
        return EXIT_USAGE
    try:
        return handler(args)
    except ConfigError as exc:
        for problem in exc.problems:  # every bad setting at once, one line each
            fail(_without_passwords(f"configuration error: {problem}", args))
        return EXIT_USAGE
    except CcsError as exc:
        fail(_without_passwords(f"CCS request failed: {exc}", args))
        return EXIT_CCS
    except AuditError as exc:
        fail(_without_passwords(f"audit error: {exc}", args))
        return EXIT_CCS
    except MutationInterrupted as exc:
        fail(_without_passwords(exc.message, args))
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _without_passwords(message: str, args: argparse.Namespace) -> str:
    """``message`` with any password the operator set removed: one pasted into a job id, a setting or a
    key of the config file would otherwise be echoed back in the error."""
    from ccs_exporter.redaction import redact_passwords
    from ccs_exporter.settings.config import password_candidates

    return redact_passwords(message, password_candidates(getattr(args, "config", None)))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for all commands."""
    parser = CommandParser(
        prog="ccs-exporter",
        description="Prometheus exporter and audited job mutations for the CCS jobs REST API.\n"
        "The setting flags and --config go before or after the command: "
        "ccs-exporter --config FILE jobs runs JOB_ID.",
    )
    parser.add_argument("--version", action="version", version=f"ccs-exporter {__version__}")
    add_connection_options(parser, before_command=True)
    add_serve_options(parser, before_command=True)
    parser.set_defaults(reads_settings=True)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    _add_serve_command(commands)
    _add_check_config_command(commands)
    _add_demo_command(commands)
    _add_simulate_command(commands)
    add_jobs_commands(commands)
    add_audit_commands(commands)
    mark_commands(parser)
    return parser


def _add_serve_command(commands: Any) -> None:
    """``serve``: poll CCS jobs and serve Prometheus metrics."""
    serve = commands.add_parser("serve", help="poll CCS jobs and serve Prometheus metrics")
    add_connection_options(serve)
    add_serve_options(serve)
    serve.set_defaults(handler=cmd_serve)


def _add_check_config_command(commands: Any) -> None:
    """``check-config``: check the settings and the web config and print them."""
    check = commands.add_parser(
        "check-config",
        help="check the settings and the web config and print them; only --connect sends to CCS",
    )
    check.add_argument(
        "--connect", action="store_true", help="also log in to CCS and read one job, or one job search page"
    )
    check.add_argument(
        "--strict",
        action="store_true",
        help="exit 2 on warnings too (no password, nothing to watch); without it they are printed, exit 0",
    )
    add_connection_options(check)
    add_serve_options(check)
    check.set_defaults(handler=cmd_check_config)


def _add_demo_command(commands: Any) -> None:
    """``demo``: the exporter against the built-in CCS simulator."""
    from ccs_exporter import simulator

    demo = commands.add_parser("demo", help="run the exporter against the built-in CCS simulator")
    demo.add_argument(
        "--listen-address", metavar="HOST:PORT", help="exporter address (default 127.0.0.1:9879)"
    )
    demo.add_argument(
        "--simulator-port",
        type=simulator.port_number,
        default=0,
        help="simulator port (default: any free port)",
    )
    demo.add_argument(
        "--run-interval",
        type=seconds,
        default=15.0,
        help="seconds between simulated runs of the jobs without a schedule (default 15)",
    )
    demo.add_argument(
        "--poll-interval",
        dest="poll_interval_seconds",
        type=seconds,
        metavar="SECONDS",
        help="seconds between poll cycles (default 5)",
    )
    demo.add_argument(
        "--log-level",
        "--log.level",
        type=str.lower,
        choices=LOG_LEVELS,
        help="the exporter's log level (default info)",
    )
    demo.set_defaults(
        handler=cmd_demo,
        reads_settings=True,
        settings_set_by_command=("url", "username", "password", "job_ids"),
    )


def _add_simulate_command(commands: Any) -> None:
    """``simulate``: the CCS simulator on its own."""
    from ccs_exporter import simulator

    simulate = commands.add_parser("simulate", help="run the CCS simulator (a stand-in CCS jobs API)")
    simulator.add_arguments(simulate)
    simulate.set_defaults(handler=simulator.run)
