"""``ccs-exporter simulate``: run the CCS simulator in the foreground until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from ccs_exporter.simulator.core import DEFAULT_PASSWORD, DEFAULT_USERNAME, Simulator
from ccs_exporter.simulator.faults import DEFAULT_SEARCH_PAGE_SIZE_CAP

DEFAULT_PORT = 12431  # CCS's default REST API port


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 0 (any free port) to 65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (0-65535)")
    return port


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``simulate`` command's options."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=port_number, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any)"
    )
    parser.add_argument(
        "--jobs", type=int, default=None, metavar="N", help="N generated jobs instead of the 12 samples"
    )
    parser.add_argument(
        "--run-interval",
        type=float,
        default=None,
        metavar="SECONDS",
        help="every job starts a run about this often (default: runs never progress)",
    )
    parser.add_argument(
        "--live",
        action="store_true",
        help="move the samples to now and run jobs on their schedules (default: as of 2026-11-23T08:00Z)",
    )
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every request (default 0)")
    parser.add_argument(
        "--search-page-size-cap",
        type=int,
        default=DEFAULT_SEARCH_PAGE_SIZE_CAP,
        metavar="N",
        help=f"Search Jobs answers at most N jobs a page, silently (default {DEFAULT_SEARCH_PAGE_SIZE_CAP})",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for ids, outcomes and messages (default 0)")
    parser.add_argument(
        "--username", default=DEFAULT_USERNAME, help=f"account to accept (default {DEFAULT_USERNAME})"
    )
    parser.add_argument(
        "--password", default=DEFAULT_PASSWORD, help=f"password to accept (default {DEFAULT_PASSWORD})"
    )
    parser.add_argument(
        "--password-encoding",
        choices=("base64", "plain"),
        default="base64",
        help="how the token request must send the password (default base64)",
    )
    parser.add_argument(
        "--access-token-seconds", type=float, default=3600.0, help="access token lifetime (3600)"
    )
    parser.add_argument(
        "--refresh-token-seconds", type=float, default=5400.0, help="refresh token lifetime (5400)"
    )
    parser.add_argument("--tls-cert", help="PEM certificate: serve HTTPS (with --tls-key)")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    parser.add_argument(
        "--job-ids-file", type=Path, help="write the job ids here, one a line, once listening"
    )


def _argument_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the options, in one line, or None."""
    if (args.tls_cert is None) != (args.tls_key is None):
        return "--tls-cert and --tls-key go together"
    if args.jobs is not None and args.jobs < 0:
        return "--jobs must be 0 or more"
    if args.live and args.jobs is not None:
        return "--live applies to the sample jobs, not to --jobs"
    if args.search_page_size_cap < 1:
        return "--search-page-size-cap must be 1 or more"
    for option, path in (("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)):
        if path is not None and not Path(path).is_file():
            return f"{option} {path}: not a readable file"
    if args.job_ids_file is not None and (
        args.job_ids_file.is_dir() or not args.job_ids_file.parent.is_dir()
    ):
        return f"--job-ids-file {args.job_ids_file}: cannot write a file there"
    return None


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; print where and how to log in; return 0."""
    problem = _argument_problem(args)
    if problem is not None:
        print(f"ccs-exporter: {problem}", file=sys.stderr)
        return 2
    try:
        simulator = Simulator(
            host=args.host,
            port=args.port,
            username=args.username,
            password=args.password,
            password_encoding=args.password_encoding,
            access_token_seconds=args.access_token_seconds,
            refresh_token_seconds=args.refresh_token_seconds,
            jobs=args.jobs,
            run_interval=args.run_interval,
            seed=args.seed,
            latency_seconds=args.latency_ms / 1000.0,
            search_page_size_cap=args.search_page_size_cap,
            live=args.live,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
        ).start()
    except OSError as exc:
        print(
            f"ccs-exporter: cannot start the simulator on {args.host}:{args.port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        ids = simulator.job_ids
        if args.job_ids_file is not None:
            args.job_ids_file.write_text("".join(f"{job_id}\n" for job_id in ids), encoding="utf-8")
        print(
            f"CCS simulator listening on {simulator.url} ({len(ids)} jobs; "
            f"user {simulator.username}, password {simulator.password})",
            flush=True,
        )
        while not done.wait(0.5):
            pass
    finally:
        simulator.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
