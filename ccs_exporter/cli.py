"""The ``ccs-exporter`` command line: the composition root that builds settings once and passes objects down.

Exit codes for every command: 0 success, 1 CCS refused or failed (one line on stderr), 2 usage or
configuration error (nothing was sent to CCS).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ccs_exporter import __version__
from ccs_exporter.errors import AuditError, CcsError, ConfigError, MutationInterrupted

EXIT_OK = 0
EXIT_CCS = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# Settings the flags of every CCS-talking command set (each flag's dest is its setting's name).
_CONNECTION_SETTINGS = (
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
_SERVE_SETTINGS = (
    "job_ids",
    "listen_address",
    "poll_interval_seconds",
    "concurrency",
    "history_window",
    "audit_log",
    "web_config_file",
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return handler(args)
    except ConfigError as exc:
        _fail(f"configuration error: {exc}")
        return EXIT_USAGE
    except CcsError as exc:
        _fail(f"CCS request failed: {exc}")
        return EXIT_CCS
    except AuditError as exc:
        _fail(f"audit error: {exc}")
        return EXIT_CCS
    except MutationInterrupted as exc:
        _fail(exc.message)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _fail(message: str) -> None:
    print(f"ccs-exporter: {' '.join(message.split())}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for all commands."""
    parser = argparse.ArgumentParser(
        prog="ccs-exporter",
        description="Prometheus exporter and audited job mutations for the CCS jobs REST API.",
    )
    parser.add_argument("--version", action="version", version=f"ccs-exporter {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    serve = commands.add_parser("serve", help="poll CCS jobs and serve Prometheus metrics")
    _add_connection_options(serve)
    _add_serve_options(serve)
    serve.set_defaults(handler=_cmd_serve)

    check = commands.add_parser(
        "check-config",
        help="check the settings and the web config and print them; only --connect sends to CCS",
    )
    check.add_argument(
        "--connect", action="store_true", help="also log in to CCS and read one job, or one job search page"
    )
    _add_connection_options(check)
    _add_serve_options(check)
    check.set_defaults(handler=_cmd_check_config)

    from ccs_exporter import simulator

    demo = commands.add_parser("demo", help="run the exporter against the built-in CCS simulator")
    demo.add_argument("--listen-address", default="127.0.0.1:9879", help="exporter address (127.0.0.1:9879)")
    demo.add_argument(
        "--simulator-port",
        type=simulator.port_number,
        default=0,
        help="simulator port (default: any free port)",
    )
    demo.add_argument(
        "--run-interval", type=_seconds, default=15.0, help="seconds between simulated job runs (default 15)"
    )
    demo.add_argument(
        "--poll-interval", type=_seconds, default=5.0, help="seconds between poll cycles (default 5)"
    )
    demo.add_argument("--log-level", default="info")
    demo.set_defaults(handler=_cmd_demo)

    simulate = commands.add_parser("simulate", help="run the CCS simulator (a stand-in CCS jobs API)")
    simulator.add_arguments(simulate)
    simulate.set_defaults(handler=simulator.run)

    _add_jobs_commands(commands)

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
        type=_non_negative_int,
        default=900,
        help="seconds before an intent written on another host is looked up (default 900)",
    )
    _add_connection_options(reconcile)
    reconcile.set_defaults(handler=_cmd_audit_reconcile)
    return parser


def _add_jobs_commands(commands: Any) -> None:
    """``jobs get|runs|create|update|delete``."""
    jobs = commands.add_parser("jobs", help="read and change CCS jobs").add_subparsers(
        title="jobs commands", metavar="JOBS_COMMAND"
    )
    get = jobs.add_parser("get", help="print a job (search job by id)")
    get.add_argument("job_id")
    _add_output_option(get)
    _add_connection_options(get)
    get.set_defaults(handler=_cmd_jobs_get)

    runs = jobs.add_parser("runs", help="print a job's latest runs")
    runs.add_argument("job_id")
    _add_output_option(runs)
    runs.add_argument(
        "--count", type=_non_negative_int, default=1, help="runs to fetch, 0 for all (default 1)"
    )
    runs.add_argument("--messages", action="store_true", help="include run messages")
    _add_connection_options(runs)
    runs.set_defaults(handler=_cmd_jobs_runs)

    search = jobs.add_parser("search", help="print every job a Search Jobs expression matches (all pages)")
    search.add_argument("expression", help="sent verbatim as Attributes, e.g. '(JobName Contains PCI)'")
    search.add_argument(
        "--page-size",
        type=_page_size,
        metavar="N",
        help="jobs asked for per page, 1-1000 (default 100) ($CCS_EXPORTER_SEARCH_PAGE_SIZE)",
    )
    _add_connection_options(search)
    search.set_defaults(handler=_cmd_jobs_search)

    find = jobs.add_parser("find", help="print the job with exactly this name (search by name)")
    find.add_argument("name")
    _add_connection_options(find)
    find.set_defaults(handler=_cmd_jobs_find)

    create = jobs.add_parser("create", help="create a job from a JSON/YAML spec (audited)")
    create.add_argument("-f", "--file", dest="spec", type=Path, required=True, help="Create Job body")
    _add_mutation_options(create)
    create.set_defaults(handler=_cmd_jobs_create)

    update = jobs.add_parser("update", help="change fields of a job (audited)")
    update.add_argument("job_id")
    update.add_argument("-f", "--file", dest="spec", type=Path, required=True, help="JobDetails to change")
    _add_mutation_options(update)
    update.set_defaults(handler=_cmd_jobs_update)

    delete = jobs.add_parser("delete", help="delete a job (audited)")
    delete.add_argument("job_id")
    delete.add_argument(
        "--keep-job", action="store_true", help="delete only the run history (DeleteJob=False)"
    )
    _add_mutation_options(delete)
    delete.set_defaults(handler=_cmd_jobs_delete)

    run = jobs.add_parser("run", help="run a job now (audited)")
    run.add_argument("job_id")
    _add_mutation_options(run)
    run.set_defaults(handler=_cmd_jobs_run)

    abort = jobs.add_parser("abort", help="abort a run in progress by its JobRunID (audited)")
    abort.add_argument("run_id")
    _add_mutation_options(abort)
    abort.set_defaults(handler=_cmd_jobs_abort)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a finite number of seconds above 0")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _add_connection_options(parser: argparse.ArgumentParser) -> None:
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


def _add_serve_options(parser: argparse.ArgumentParser) -> None:
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


def _add_output_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output",
        choices=("json", "table"),
        default="json",
        help="json (default, for scripts) or table (status names, local times, durations)",
    )


def _add_mutation_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", help="why (a change ticket); recorded in the audit log")
    parser.add_argument(
        "--audit-log", type=Path, metavar="FILE", help="audit log file ($CCS_EXPORTER_AUDIT_LOG)"
    )
    _add_connection_options(parser)


def _settings_from(args: argparse.Namespace, **extra: Any) -> Any:
    """Build Settings once from --config, the environment and the flags, and set up logging."""
    from ccs_exporter.config import load_settings
    from ccs_exporter.logs import configure_logging

    settings = load_settings(getattr(args, "config", None), _flag_overrides(args, **extra))
    configure_logging(settings.log_level, settings.log_format)
    return settings


def _flag_overrides(args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    """The settings the command line gives (None where a flag was not used), plus ``extra``."""
    overrides: dict[str, Any] = {setting: getattr(args, setting, None) for setting in _CONNECTION_SETTINGS}
    if getattr(args, "insecure", False):
        overrides["verify_tls"] = False
    overrides.update(extra)
    return overrides


def _print_json(payload: Any) -> None:
    from ccs_exporter.output import json_text

    print(json_text(payload))


def _print_ccs_data(args: argparse.Namespace, settings: Any, model: Any, table: Callable[[Any], str]) -> None:
    """``model`` scrubbed of secrets, as JSON or as the table ``-o table`` asks for."""
    from ccs_exporter.output import scrubbed
    from ccs_exporter.redaction import secret_variants

    clean = scrubbed(model, secret_variants(settings.password_value()))
    if args.output == "table":
        sys.stdout.write(table(clean))
    else:
        _print_json(clean.model_dump(mode="json"))


def _cmd_jobs_get(args: argparse.Namespace) -> int:
    from ccs_exporter.client import CcsClient
    from ccs_exporter.output import jobs_table

    settings = _settings_from(args)
    with CcsClient.from_settings(settings) as client:
        job = client.get_job(args.job_id)
    _print_ccs_data(args, settings, job, lambda one: jobs_table([one], datetime.now(timezone.utc)))
    return EXIT_OK


def _cmd_jobs_runs(args: argparse.Namespace) -> int:
    from ccs_exporter.client import CcsClient
    from ccs_exporter.output import runs_table

    settings = _settings_from(args)
    with CcsClient.from_settings(settings) as client:
        runs = client.get_job_runs(args.job_id, count=args.count, show_messages=args.messages)
    _print_ccs_data(args, settings, runs, lambda shown: runs_table(shown, messages=args.messages))
    return EXIT_OK


def _cmd_jobs_search(args: argparse.Namespace) -> int:
    from ccs_exporter.client import CcsClient
    from ccs_exporter.config import checked_job_search
    from ccs_exporter.discovery import MAX_SEARCH_JOBS, MAX_SEARCH_PAGES, list_search

    expression = checked_job_search(args.expression)
    settings = _settings_from(args, search_page_size=args.page_size)
    size = settings.search_page_size
    with CcsClient.from_settings(settings) as client:
        listing = list_search(lambda page: client.search_jobs(expression, page, size))
    assert listing is not None  # no stop event: a listing ends or raises
    _print_jobs(settings, list(listing.jobs.values()))
    problems = _unread_items(listing.bad, listing.unreadable)
    if listing.page_ignored:
        _fail(
            f"CCS answered page {listing.pages - 1} with jobs of earlier pages: it ignores paging, so "
            "jobs beyond the first page may be missing (a larger --page-size gets more of them)"
        )
    if listing.truncated:
        problems.append(
            f"the listing stopped at {listing.pages} pages, {listing.size} jobs "
            f"(bounds: {MAX_SEARCH_PAGES} pages, {MAX_SEARCH_JOBS} jobs): more jobs may match"
        )
    for problem in problems:
        _fail(problem)
    return EXIT_CCS if problems else EXIT_OK


def _cmd_jobs_find(args: argparse.Namespace) -> int:
    from ccs_exporter.client import CcsClient

    settings = _settings_from(args)
    with CcsClient.from_settings(settings) as client:
        page = client.search_job_name(args.name)
    bad = {item.job_id or f"item {index}": item.message for index, item in enumerate(page.bad_items)}
    if not page.jobs and not bad:
        _fail(f"no job is named {args.name!r} (search by name matches the exact name)")
        return EXIT_CCS
    _print_jobs(settings, list(page.jobs))
    problems = _unread_items(bad, 0)
    for problem in problems:
        _fail(problem)
    return EXIT_CCS if problems else EXIT_OK


def _print_jobs(settings: Any, jobs: list[Any]) -> None:
    """Jobs from a search as one JSON array, with secrets removed as the audit log removes them."""
    from ccs_exporter.redaction import Redactor, secret_variants

    redact = Redactor(secret_variants(settings.password_value()))
    _print_json([redact(job.model_dump(mode="json")) for job in jobs])


def _unread_items(bad: dict[str, str], unreadable: int) -> list[str]:
    """One line about the search items that could not be read, if any (the first one's reason)."""
    count = len(bad) + unreadable
    if not count:
        return []
    first = next(iter(bad.items()), None)
    why = f"; first: {first[0]}: {first[1]}" if first is not None else ""
    return [f"{count} job(s) in CCS's answer could not be read and are not printed{why}"]


def _page_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError("must be 1-1000")
    return value


def _job_service(args: argparse.Namespace) -> Any:
    """The audited job service; refuses to start without an audit log (mutations fail closed)."""
    from ccs_exporter.audit import AuditLog
    from ccs_exporter.client import CcsClient
    from ccs_exporter.jobs import JobService

    settings = _settings_from(args, audit_log=args.audit_log)
    if settings.audit_log is None:
        raise ConfigError(
            "job changes are audited: set CCS_EXPORTER_AUDIT_LOG or --audit-log", field="audit_log"
        )
    client = CcsClient.from_settings(settings)
    return JobService(client, AuditLog.from_settings(settings))


def _cmd_jobs_create(args: argparse.Namespace) -> int:
    from ccs_exporter.jobs import load_spec

    spec = load_spec(args.spec)
    service = _job_service(args)
    job_id = service.create(spec, reason=args.reason)
    print(job_id)
    return EXIT_OK


def _cmd_jobs_update(args: argparse.Namespace) -> int:
    from ccs_exporter.jobs import load_spec

    details = load_spec(args.spec)
    service = _job_service(args)
    service.update(args.job_id, details, reason=args.reason)
    return EXIT_OK


def _cmd_jobs_delete(args: argparse.Namespace) -> int:
    service = _job_service(args)
    service.delete(args.job_id, keep_job=args.keep_job, reason=args.reason)
    return EXIT_OK


def _cmd_jobs_run(args: argparse.Namespace) -> int:
    service = _job_service(args)
    _print_operation(service.run(args.job_id, reason=args.reason))
    return EXIT_OK


def _cmd_jobs_abort(args: argparse.Namespace) -> int:
    service = _job_service(args)
    _print_operation(service.abort(args.run_id, reason=args.reason))
    return EXIT_OK


def _print_operation(done: Any) -> None:
    """What CCS answered a run or an abort with, and what it concerned, as one JSON object."""
    _print_json(
        {
            "JobID": done.job_id,
            "JobName": done.job_name,
            "JobRunID": done.run_id,
            "StatusCode": done.status_code,
            "Message": done.message,
            "AuditID": done.audit_id,
        }
    )


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    from ccs_exporter.audit import verify

    result = verify(args.file)
    if result.ok:
        print(f"{args.file}: intact ({result.records} records)")
        return EXIT_OK
    where = f"line {result.line}: " if result.line is not None else ""
    _fail(f"{args.file}: {where}{result.problem}")
    return EXIT_CCS


def _cmd_audit_reconcile(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from ccs_exporter.audit import AuditLog
    from ccs_exporter.audit.reconcile import reconcile
    from ccs_exporter.client import CcsClient

    settings = _settings_from(args, audit_log=args.file)
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
        _fail(f"{args.file}: {still_open} intent(s) left without a result (see above)")
        return EXIT_CCS
    return EXIT_OK


def _serve_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the exporter options give (None where a flag was not used)."""
    return {setting: getattr(args, setting) for setting in _SERVE_SETTINGS}


def _cmd_check_config(args: argparse.Namespace) -> int:
    from ccs_exporter.config_check import check_config

    settings = _settings_from(args, **_serve_overrides(args))
    steps = check_config(settings, config_file=args.config, connect=args.connect, out=sys.stdout)
    failed = [step for step in steps if not step.ok]
    if failed:
        _fail(f"CCS request failed: {failed[0].detail}")
        return EXIT_CCS
    return EXIT_OK


def _cmd_serve(args: argparse.Namespace) -> int:
    from ccs_exporter.config import load_settings

    overrides = _serve_overrides(args)
    settings = _settings_from(args, **overrides)
    config_file: Path | None = args.config

    def reload() -> Any:
        from ccs_exporter.discovery import WatchList

        return WatchList.from_settings(load_settings(config_file, _flag_overrides(args, **overrides)))

    return _run_exporter(settings, reload=reload, source_changed=_file_watcher(config_file))


def _file_watcher(path: Path | None) -> Callable[[], bool] | None:
    """A check that says True once each time ``path`` changed on disk (None without a file)."""
    if path is None:
        return None
    last = [_mtime(path)]

    def changed() -> bool:
        current = _mtime(path)
        if current != last[0]:
            last[0] = current
            return True
        return False

    return changed


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _run_exporter(
    settings: Any,
    *,
    reload: Callable[[], Any] | None = None,
    source_changed: Callable[[], bool] | None = None,
    banner: Callable[[str], None] | None = None,
) -> int:
    """Run the exporter until SIGTERM or SIGINT; SIGHUP reloads the job list."""
    import signal
    import threading

    from ccs_exporter.exporter import Exporter

    audit_log = None
    if settings.audit_log is not None:
        from ccs_exporter.audit import AuditLog

        audit_log = AuditLog.from_settings(settings)
    try:
        exporter = Exporter(settings, audit_log=audit_log, reload=reload, source_changed=source_changed)
    except OSError as exc:
        raise ConfigError(
            f"CCS_EXPORTER_LISTEN_ADDRESS (listen_address) = {settings.listen_address!r}: "
            f"cannot listen there ({exc.strerror})",
            field="listen_address",
        ) from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda *_: exporter.request_reload())
    exporter.start()
    if banner is not None:
        banner(exporter.url)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        exporter.stop()
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from ccs_exporter.config import load_settings
    from ccs_exporter.logs import configure_logging
    from ccs_exporter.simulator import Simulator

    configure_logging(args.log_level, "auto")
    # Live: the samples stand as at their capture instant, so a new user sees a missed schedule and a run
    # past its time limit at once; scheduled jobs run on their schedules, the others on the interval.
    try:
        sim = Simulator(port=args.simulator_port, run_interval=args.run_interval, live=True).start()
    except OSError as exc:
        _fail(f"--simulator-port {args.simulator_port}: cannot listen there ({exc.strerror or exc})")
        return EXIT_USAGE
    try:
        settings = load_settings(
            None,
            {
                "url": sim.url,
                "username": sim.username,
                "password": sim.password,
                "job_ids": sim.job_ids,
                "listen_address": args.listen_address,
                "poll_interval_seconds": args.poll_interval,
                "log_level": args.log_level,
            },
        )

        def banner(url: str) -> None:
            print(
                f"CCS simulator: {sim.url} ({len(sim.job_ids)} jobs: scheduled ones run on their "
                f"schedules, the others every ~{args.run_interval:g} s; one has missed its schedule and "
                "one run is past its time limit)\n"
                f"Metrics:       {url}/metrics\n"
                "Ctrl-C stops both.",
                flush=True,
            )

        return _run_exporter(settings, banner=banner)
    finally:
        sim.stop()
