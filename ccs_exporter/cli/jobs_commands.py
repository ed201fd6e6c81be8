"""The ``jobs`` commands: read jobs (get, runs, search, find), change them through the audited service."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import datetime, timezone
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
from ccs_exporter.errors import CcsError, ConfigError

JOB_ID_HELP = "the job's GUID (JobID); `jobs find NAME` or `jobs search EXPRESSION` shows it"


def add_jobs_commands(commands: Any) -> None:
    """``jobs get|runs|create|update|delete``."""
    group = commands.add_parser("jobs", help="read and change CCS jobs")
    add_connection_options(group, before_command=True)  # `jobs --config FILE runs JOB_ID` works too
    jobs = group.add_subparsers(title="jobs commands", metavar="JOBS_COMMAND")
    _add_reading_commands(jobs)
    _add_audited_commands(jobs)


def _add_reading_commands(jobs: Any) -> None:
    """``jobs get|runs|search|find``: read-only, nothing recorded."""
    get = jobs.add_parser("get", help="print a job (search job by id)")
    get.add_argument("job_id", metavar="JOB_ID", help=JOB_ID_HELP)
    _add_output_option(get)
    add_connection_options(get)
    get.set_defaults(handler=_cmd_jobs_get)

    runs = jobs.add_parser("runs", help="print a job's latest runs")
    runs.add_argument("job_id", metavar="JOB_ID", help=JOB_ID_HELP)
    _add_output_option(runs)
    runs.add_argument(
        "--count", type=non_negative_int, default=1, help="runs to fetch, 0 for all (default 1)"
    )
    runs.add_argument("--messages", action="store_true", help="include run messages")
    add_connection_options(runs)
    runs.set_defaults(handler=_cmd_jobs_runs)

    search = jobs.add_parser("search", help="print every job a Search Jobs expression matches (all pages)")
    search.add_argument(
        "expression",
        metavar="EXPRESSION",
        help="a Search Jobs expression, sent verbatim as Attributes, e.g. '(JobName Contains PCI)'",
    )
    search.add_argument(
        "--page-size",
        type=_page_size,
        metavar="N",
        help="jobs asked for per page, 1-1000 (default 100) ($CCS_EXPORTER_SEARCH_PAGE_SIZE)",
    )
    _add_output_option(search)
    add_connection_options(search)
    search.set_defaults(handler=_cmd_jobs_search)

    find = jobs.add_parser("find", help="print the job with exactly this name (search by name)")
    find.add_argument("name", metavar="NAME", help="the job's name, exactly (quote it if it has spaces)")
    _add_output_option(find)
    add_connection_options(find)
    find.set_defaults(handler=_cmd_jobs_find)


def _add_audited_commands(jobs: Any) -> None:
    """``jobs create|update|delete|run|abort``: each call recorded in the audit trail before and after."""
    create = jobs.add_parser("create", help="create a job from a JSON/YAML spec (audited)")
    create.add_argument(
        "-f",
        "--file",
        dest="spec",
        type=Path,
        required=True,
        metavar="SPEC",
        help="JSON or YAML file holding the Create Job body (JobProperties, JobDetails)",
    )
    _add_mutation_options(create)
    create.set_defaults(handler=_cmd_jobs_create)

    update = jobs.add_parser("update", help="change fields of a job (audited)")
    update.add_argument("job_id", metavar="JOB_ID", help=JOB_ID_HELP)
    update.add_argument(
        "-f",
        "--file",
        dest="spec",
        type=Path,
        required=True,
        metavar="DETAILS",
        help="JSON or YAML file holding the JobDetails fields to change",
    )
    _add_mutation_options(update)
    update.set_defaults(handler=_cmd_jobs_update)

    delete = jobs.add_parser("delete", help="delete a job (audited)")
    delete.add_argument("job_id", metavar="JOB_ID", help=JOB_ID_HELP)
    delete.add_argument(
        "--keep-job", action="store_true", help="delete only the run history (DeleteJob=False)"
    )
    _add_mutation_options(delete)
    delete.set_defaults(handler=_cmd_jobs_delete)

    run = jobs.add_parser("run", help="run a job now (audited)")
    run.add_argument("job_id", metavar="JOB_ID", help=JOB_ID_HELP)
    _add_mutation_options(run)
    run.set_defaults(handler=_cmd_jobs_run)

    abort = jobs.add_parser("abort", help="abort a run in progress by its JobRunID (audited)")
    abort.add_argument(
        "run_id", metavar="RUN_ID", help="the run's JobRunID, as `jobs runs JOB_ID` or `jobs run` print it"
    )
    _add_mutation_options(abort)
    abort.set_defaults(handler=_cmd_jobs_abort)


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
    add_connection_options(parser)


def _page_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError("must be 1-1000")
    return value


def _print_json(payload: Any) -> None:
    from ccs_exporter.cli.output import json_text

    print(json_text(payload))


def _print_ccs_data(
    args: argparse.Namespace, secrets: list[str], model: Any, table: Callable[[Any], str]
) -> None:
    """``model`` scrubbed of ``secrets`` (the client's: password forms and tokens), as JSON or a table."""
    from ccs_exporter.cli.output import scrubbed

    clean = scrubbed(model, secrets)
    if args.output == "table":
        sys.stdout.write(table(clean))
    else:
        _print_json(clean.model_dump(mode="json"))


def _cmd_jobs_get(args: argparse.Namespace) -> int:
    from ccs_exporter.cli.output import jobs_table
    from ccs_exporter.client import CcsClient

    settings = settings_from(args)
    with CcsClient.from_settings(settings) as client:
        job = client.get_job(args.job_id)
        secrets = client.secrets()
    _print_ccs_data(args, secrets, job, lambda one: jobs_table([one], datetime.now(timezone.utc)))
    return EXIT_OK


def _cmd_jobs_runs(args: argparse.Namespace) -> int:
    from ccs_exporter.cli.output import runs_table
    from ccs_exporter.client import CcsClient

    settings = settings_from(args)
    with CcsClient.from_settings(settings) as client:
        # The table counts each run's messages by category, so it asks for them; only --messages lists them.
        show_messages = args.messages or args.output == "table"
        runs = client.get_job_runs(args.job_id, count=args.count, show_messages=show_messages)
        secrets = client.secrets()
    _print_ccs_data(args, secrets, runs, lambda shown: runs_table(shown, messages=args.messages))
    return EXIT_OK


def _cmd_jobs_search(args: argparse.Namespace) -> int:
    from ccs_exporter.client import CcsClient
    from ccs_exporter.polling.listing import MAX_SEARCH_JOBS, MAX_SEARCH_PAGES, list_search
    from ccs_exporter.settings.values import checked_job_search

    expression = checked_job_search(args.expression)
    settings = settings_from(args, search_page_size=args.page_size)
    size = settings.search_page_size
    bad: dict[str, str] = {}
    jobs = []
    with CcsClient.from_settings(settings) as client:
        listing = list_search(lambda page: client.search_jobs(expression, page, size))
        assert listing is not None  # no stop event: a listing ends or raises
        bad.update(listing.bad)
        for item in listing.jobs.values():
            try:
                jobs.append(client.search_item_job(item))
            except CcsError as exc:
                bad[item.job_id] = exc.message
        secrets = client.secrets()
    _print_jobs(args, secrets, jobs)
    problems = _unread_items(bad, listing.unreadable)
    if listing.page_ignored:
        fail(
            f"CCS answered page {listing.pages - 1} with jobs of earlier pages: it ignores paging, so "
            "jobs beyond the first page may be missing (a larger --page-size gets more of them)"
        )
    if listing.truncated:
        problems.append(
            f"the listing stopped at {listing.pages} pages, {listing.size} jobs "
            f"(bounds: {MAX_SEARCH_PAGES} pages, {MAX_SEARCH_JOBS} jobs): more jobs may match"
        )
    for problem in problems:
        fail(problem)
    return EXIT_CCS if problems else EXIT_OK


def _cmd_jobs_find(args: argparse.Namespace) -> int:
    from ccs_exporter.client import CcsClient

    settings = settings_from(args)
    with CcsClient.from_settings(settings) as client:
        page = client.search_job_name(args.name)
        secrets = client.secrets()
    bad = {item.job_id or f"item {index}": item.message for index, item in enumerate(page.bad_items)}
    if not page.jobs and not bad:
        fail(f"no job is named {args.name!r} (search by name matches the exact name)")
        return EXIT_CCS
    _print_jobs(args, secrets, list(page.jobs))
    problems = _unread_items(bad, 0)
    for problem in problems:
        fail(problem)
    return EXIT_CCS if problems else EXIT_OK


def _print_jobs(args: argparse.Namespace, secrets: list[str], jobs: list[Any]) -> None:
    """Jobs from a search, scrubbed of ``secrets``: one JSON array, or one table row per job."""
    from ccs_exporter.cli.output import jobs_table, scrubbed

    clean = [scrubbed(job, secrets) for job in jobs]
    if args.output == "table":
        sys.stdout.write(jobs_table(clean, datetime.now(timezone.utc)))
    else:
        _print_json([job.model_dump(mode="json") for job in clean])


def _unread_items(bad: dict[str, str], unreadable: int) -> list[str]:
    """One line about the search items that could not be read, if any (the first one's reason)."""
    count = len(bad) + unreadable
    if not count:
        return []
    first = next(iter(bad.items()), None)
    why = f"; first: {first[0]}: {first[1]}" if first is not None else ""
    return [f"{count} job(s) in CCS's answer could not be read and are not printed{why}"]


def _job_service(args: argparse.Namespace) -> Any:
    """The audited job service; refuses to start without an audit log (mutations fail closed)."""
    from ccs_exporter.audit import AuditLog
    from ccs_exporter.client import CcsClient
    from ccs_exporter.operations.interrupts import terminate_as_interrupt
    from ccs_exporter.operations.service import JobService

    settings = settings_from(args, audit_log=args.audit_log)
    if settings.audit_log is None:
        raise ConfigError(
            "job changes are audited: set CCS_EXPORTER_AUDIT_LOG or --audit-log", field="audit_log"
        )
    client = CcsClient.from_settings(settings)
    terminate_as_interrupt()  # SIGTERM closes the intent as Ctrl-C does, or says it is open
    return JobService(client, AuditLog.from_settings(settings))


def _cmd_jobs_create(args: argparse.Namespace) -> int:
    from ccs_exporter.operations.specs import load_spec

    spec = load_spec(args.spec)
    service = _job_service(args)
    job_id = service.create(spec, reason=args.reason)
    print(job_id)
    return EXIT_OK


def _cmd_jobs_update(args: argparse.Namespace) -> int:
    from ccs_exporter.operations.specs import load_spec

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
    _print_operation(service.run(args.job_id, reason=args.reason), service.secrets())
    return EXIT_OK


def _cmd_jobs_abort(args: argparse.Namespace) -> int:
    service = _job_service(args)
    _print_operation(service.abort(args.run_id, reason=args.reason), service.secrets())
    return EXIT_OK


def _print_operation(done: Any, secrets: list[str]) -> None:
    """What CCS answered a run or an abort with, and what it concerned, as one JSON object (scrubbed)."""
    from ccs_exporter.redaction import Redactor

    _print_json(
        Redactor(secrets)(
            {
                "JobID": done.job_id,
                "JobName": done.job_name,
                "JobRunID": done.run_id,
                "StatusCode": done.status_code,
                "Message": done.message,
                "AuditID": done.audit_id,
            }
        )
    )
