"""The exporter's commands, ``serve``, ``check-config`` and ``demo``, and the daemon run until a signal."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ccs_exporter.cli.options import (
    EXIT_CCS,
    EXIT_OK,
    EXIT_USAGE,
    SERVE_SETTINGS,
    fail,
    flag_overrides,
    settings_from,
)
from ccs_exporter.errors import ConfigError


def _serve_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the exporter options give (None where a flag was not used)."""
    return {setting: getattr(args, setting, None) for setting in SERVE_SETTINGS}


def cmd_check_config(args: argparse.Namespace) -> int:
    """``check-config``: exit 0 (warnings printed), 1 when ``--connect`` could not reach something, 2 for
    bad settings, and for warnings with ``--strict``."""
    from ccs_exporter.cli.config_check import check_config, findings

    # Without --connect a file can be checked before its password exists: a warning, not an error.
    settings = settings_from(args, require_password=args.connect, **_serve_overrides(args))
    warnings = findings(settings)
    if settings.audit_log is not None:  # what serve and jobs refuse at start, refused here too
        from ccs_exporter.audit import AuditLog

        warnings.extend(AuditLog.check_settings(settings))
    steps = check_config(
        settings, config_file=args.config, connect=args.connect, out=sys.stdout, warnings=len(warnings)
    )
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    failed = [step for step in steps if not step.ok]
    if failed:
        fail(f"CCS request failed: {failed[0].detail}")
        return EXIT_CCS
    if warnings and args.strict:
        fail(f"--strict: {len(warnings)} warning(s), see above")
        return EXIT_USAGE
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    """``serve``: the exporter until SIGTERM/SIGINT; the job list reloads on SIGHUP or a changed file."""
    from ccs_exporter.settings.config import load_settings

    overrides = _serve_overrides(args)
    settings = settings_from(args, **overrides)
    config_file: Path | None = args.config

    def reload() -> Any:
        from ccs_exporter.polling.discovery import WatchList
        from ccs_exporter.redaction import redact_passwords
        from ccs_exporter.settings.config import password_candidates

        try:
            fresh = load_settings(config_file, flag_overrides(args, **overrides))
        except ConfigError as exc:  # logged as reload_failed: a pasted password must not be echoed
            message = redact_passwords(str(exc), password_candidates(config_file))
            raise ConfigError(message, field=exc.field) from None
        return WatchList.from_settings(fresh)

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
    from ccs_exporter.polling.heap import pace_cycle_collector

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
    pace_cycle_collector()
    exporter.start()
    if banner is not None:
        banner(exporter.url)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        exporter.stop()
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    """``demo``: the simulator and the exporter against it, until Ctrl-C."""
    from ccs_exporter.cli.logs import configure_logging
    from ccs_exporter.settings.config import load_settings
    from ccs_exporter.simulator import Simulator

    log_level = args.log_level or "info"
    listen_address = args.listen_address or "127.0.0.1:9879"
    poll_interval = args.poll_interval_seconds or 5.0
    configure_logging(log_level, "auto")
    # Live: the samples stand as at their capture instant, so a new user sees a missed schedule and a run
    # past its time limit at once; scheduled jobs run on their schedules, the others on the interval.
    try:
        sim = Simulator(port=args.simulator_port, run_interval=args.run_interval, live=True).start()
    except OSError as exc:
        fail(f"--simulator-port {args.simulator_port}: cannot listen there ({exc.strerror or exc})")
        return EXIT_USAGE
    try:
        settings = load_settings(
            None,
            {
                "url": sim.url,
                "username": sim.username,
                "password": sim.password,
                "job_ids": sim.job_ids,
                "listen_address": listen_address,
                "poll_interval_seconds": poll_interval,
                "log_level": log_level,
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
