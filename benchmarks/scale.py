"""One replica at scale: jobs found by one search, scraped the way Prometheus scrapes, memory over time.

    python benchmarks/scale.py                          # 10,000 jobs, 5 minutes of soak at the end
    python benchmarks/scale.py --jobs 50000 --soak-minutes 2
    python benchmarks/scale.py --soak-minutes 30        # the flatness run
    python benchmarks/scale.py --stress-gzip-only       # back to back in gzip only, as Prometheus asks
    python benchmarks/scale.py --pin                    # the exporter alone on one CPU, the rest on another
    python benchmarks/scale.py --audit                  # with the audit log: memory with the trail on
    python benchmarks/scale.py --quick                  # 50 jobs, no latency: a smoke run (about 30 s)

The simulator runs as its own process (generated jobs, runs frozen, 20 ms per request) and
``python -m ccs_exporter serve`` as another, watching every job through one search
(``JOB_SEARCH``, default page size), polling every 5 s. Two Prometheus-like scrapers ask for
``/metrics`` every 15 s all along, both with gzip, one in text 0.0.4 and one in OpenMetrics (what
Prometheus 2 asks for); in the stress phases a third scraper asks back to back, turning through text and
OpenMetrics, plain and gzip (gzip only with ``--stress-gzip-only``), in a process of its own (this
script's ``--scrape-loop``: one keep-alive ``http.client`` connection, one line per scrape), so that it
does not wait for this process's GIL. One run reports: the time to the first published cycle (discovery
of every job and its runs), resident memory sampled from ``/proc`` all along (peak, by phase, growth per
cycle in the soak), ``/metrics`` latency (p50 / p99, request sent to whole body, never decompressed) per
format and encoding in each phase (cold start, cycles at rest, the cycle after every job changed), CPU
seconds of the exporter process per cycle at rest (from ``/proc``, no scraping meanwhile), and requests
per cycle (the exporter's own count, from its ``poll_cycle`` log lines). Linux only; traffic stays on
127.0.0.1; every process is stopped by its PID, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from benchmarks import scrapers  # noqa: E402  (the standard library only)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=10_000, help="simulated jobs (10,000)")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="simulator latency per request (20)")
    parser.add_argument("--interval", type=float, default=5.0, help="exporter poll interval, s (5)")
    parser.add_argument("--scrape-every", type=float, default=15.0, help="Prometheus-like scrape period (15)")
    parser.add_argument("--rest-cycles", type=int, default=4, help="cycles measured at rest (4)")
    parser.add_argument("--soak-minutes", type=float, default=5.0, help="soak at the end, minutes (5)")
    parser.add_argument("--soak-stress", action="store_true", help="scrape back to back in the soak too")
    parser.add_argument(
        "--stress-gzip-only",
        action="store_true",
        help="the back-to-back scraper asks for gzip only, text and OpenMetrics in turn (as Prometheus does)",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="pin the exporter alone to one CPU and the simulator, the scrapers and this process to another "
        "(the first two this process may use; Linux)",
    )
    parser.add_argument(
        "--audit",
        action="store_true",
        help="the exporter writes an audit log (observed changes recorded); jobs are created and deleted "
        "behind its back before the soak",
    )
    parser.add_argument("--concurrency", type=int, default=8, help="exporter concurrency (8, the default)")
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="environment of the exporter"
    )
    parser.add_argument("--quick", action="store_true", help="50 jobs, no latency: a smoke run")
    internal = parser.add_argument_group(
        "internal", "the back-to-back scraper's own process, which the benchmark starts and stops itself"
    )
    internal.add_argument(
        "--scrape-loop",
        metavar="URL",
        help="scrape URL (http://HOST:PORT/metrics) back to back until stopped, one line per scrape: "
        "monotonic send time, variant, ms, bytes, status (tab-separated)",
    )
    internal.add_argument("--scrape-out", metavar="FILE", type=Path, help="append those lines to FILE")
    args = parser.parse_args(argv)
    if args.scrape_loop:
        scrapers.run_scrape_loop(
            args.scrape_loop, scrapers.stress_variants(args.stress_gzip_only), args.scrape_out
        )
        return 0
    # Imported here rather than at the top: the measurement and its report need requests, pydantic and the
    # exporter's modules, which a process of this script that only scrapes has no use for.
    import requests

    from benchmarks.scale_report import render_report
    from benchmarks.scale_run import Pinning, Plan, measure

    try:
        pin = Pinning.two_cpus() if args.pin else None
    except ValueError as exc:
        parser.error(str(exc))

    plan = Plan(
        jobs=args.jobs,
        latency_ms=args.latency_ms,
        interval=args.interval,
        scrape_every=args.scrape_every,
        rest_cycles=args.rest_cycles,
        soak_minutes=args.soak_minutes,
        soak_stress=args.soak_stress,
        stress_gzip_only=args.stress_gzip_only,
        pin=pin,
        audit=args.audit,
        concurrency=args.concurrency,
        env=dict(item.split("=", 1) for item in args.env),
        quick=args.quick,
    )
    if args.quick:  # the size and the pace of a smoke run; the other options apply as given
        plan = dataclasses.replace(
            plan, jobs=50, latency_ms=0.0, interval=1.0, scrape_every=1.0, rest_cycles=2, soak_minutes=0.2
        )
    for name in ("NO_PROXY", "no_proxy"):  # 127.0.0.1 only, never through a proxy from the environment
        os.environ[name] = ",".join(filter(None, (os.environ.get(name), "127.0.0.1", "localhost")))
    try:
        with tempfile.TemporaryDirectory(prefix="ccs-scale-bench-") as workdir:
            result = measure(plan, Path(workdir))
    except (requests.RequestException, RuntimeError) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    print(render_report(result))
    return 0


if __name__ == "__main__":
    # SIGTERM unwinds like Ctrl-C, so the simulator and exporter processes are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    sys.exit(main())
