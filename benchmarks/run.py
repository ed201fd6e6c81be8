"""Benchmarks for ccs-exporter against the CCS simulator in its own process; prints a table and PASS/MISS.

    python benchmarks/run.py                       # 1,000 and 10,000 jobs, 20 ms per request (~10 min)
    python benchmarks/run.py --jobs 1000           # one size
    python benchmarks/run.py --quick               # 50 jobs, no latency, a few seconds: a smoke run
    python benchmarks/run.py --update-readme       # also write the results into benchmarks/README.md

See benchmarks/README.md for what each figure means and the latest results.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout without installing

import requests  # noqa: E402

from benchmarks import measures  # noqa: E402
from benchmarks.processes import ExporterProcess, SimulatorProcess  # noqa: E402
from ccs_exporter.cli.logs import configure_logging  # noqa: E402

README = Path(__file__).resolve().parent / "README.md"
RESULTS_BEGIN = "<!-- results: written by benchmarks/run.py --update-readme -->"
RESULTS_END = "<!-- /results -->"
MB = 1024 * 1024


@dataclass(frozen=True)
class Plan:
    """What one run measures, and how hard."""

    sizes: list[int]
    latency_ms: float
    concurrencies: list[int]
    naive_sample: int
    scrapes: int
    scrape_gap: float
    slow_latency: float
    cycle_scrape_limit: float
    quick: bool


@dataclass
class SizeResult:
    """Every figure measured at one job count (None: not measured)."""

    jobs: int
    naive_jobs: int = 0
    naive_seconds: float = 0.0
    raw: dict[int, tuple[float, float]] = field(default_factory=dict)
    exporter: dict[int, tuple[float, float]] = field(default_factory=dict)
    running_jobs: int = 0
    steady_mix: list[measures.CycleFigures] = field(default_factory=list)
    steady_rest: list[measures.CycleFigures] = field(default_factory=list)
    scrapes: dict[str, measures.ScrapeFigures] = field(default_factory=dict)
    max_rss_kib: int = 0
    hwm_kib: int = 0

    @property
    def naive_total(self) -> float:
        """The naive cold poll for all jobs, extrapolated linearly from the sample."""
        return self.naive_seconds * self.jobs / max(1, self.naive_jobs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", default="1000,10000", help="job counts, comma-separated (1000,10000)")
    parser.add_argument(
        "--concurrency", default="8,32", help="cold-poll concurrencies; the first is the default"
    )
    parser.add_argument("--latency-ms", type=float, default=20.0, help="simulator latency per request (20)")
    parser.add_argument("--naive-sample", type=int, default=1000, help="jobs the naive client polls (1000)")
    parser.add_argument("--scrapes", type=int, default=300, help="scrapes per /metrics phase (300)")
    parser.add_argument("--quick", action="store_true", help="50 jobs, no latency, few scrapes: a smoke run")
    parser.add_argument("--update-readme", action="store_true", help="write the results into README.md")
    args = parser.parse_args(argv)
    if args.quick:
        plan = Plan([50], 0.0, [8], 50, 20, 0.01, 0.2, 20.0, True)
    else:
        plan = Plan(
            sizes=[int(value) for value in args.jobs.split(",")],
            latency_ms=args.latency_ms,
            concurrencies=[int(value) for value in args.concurrency.split(",")],
            naive_sample=args.naive_sample,
            scrapes=args.scrapes,
            scrape_gap=0.05,
            slow_latency=2.0,
            cycle_scrape_limit=300.0,
            quick=False,
        )
    configure_logging("error", "json")
    # Everything here talks to 127.0.0.1: never through a proxy from the environment (children inherit it).
    for name in ("NO_PROXY", "no_proxy"):
        os.environ[name] = ",".join(filter(None, (os.environ.get(name), "127.0.0.1", "localhost")))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ccs-bench-") as workdir:
        results = [measure_size(jobs, plan, Path(workdir)) for jobs in plan.sizes]
    report = render_report(results, plan, time.monotonic() - started)
    print(report)
    if args.update_readme:
        update_readme(report)
    return 0


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def measure_size(jobs: int, plan: Plan, workdir: Path) -> SizeResult:
    result = SizeResult(jobs)
    default = plan.concurrencies[0]
    with SimulatorProcess(jobs, plan.latency_ms, workdir) as sim:
        ids = sim.job_ids
        result.naive_jobs = min(jobs, plan.naive_sample)
        progress(f"{jobs} jobs: naive cold poll of {result.naive_jobs} jobs")
        result.naive_seconds = measures.naive_poll(
            sim.url, sim.username, sim.password, ids[: result.naive_jobs]
        )
        kept: measures.ExporterUnderTest | None = None
        for concurrency in plan.concurrencies:
            progress(f"{jobs} jobs: raw requests cold poll, concurrency {concurrency}")
            result.raw[concurrency] = measures.raw_poll(sim.url, sim.username, sim.password, ids, concurrency)
            progress(f"{jobs} jobs: exporter cold poll, concurrency {concurrency}")
            exporter = measures.ExporterUnderTest(sim.url, sim.username, sim.password, ids, concurrency)
            cold = exporter.cycle(sim.api_requests)
            _check(cold, f"cold poll at concurrency {concurrency}")
            result.exporter[concurrency] = (cold.wall_seconds, cold.cpu_seconds)
            if concurrency == default:
                kept = exporter
            else:
                exporter.close()
        assert kept is not None
        try:
            measure_steady(kept, sim, result)
        finally:
            kept.close()
        measure_scrapes(sim, plan, default, workdir, result)
    return result


def measure_steady(exporter: measures.ExporterUnderTest, sim: SimulatorProcess, result: SizeResult) -> None:
    """Two cycles with the simulator's mix (some runs in progress), then two with every job at rest."""
    snapshot = exporter.last_snapshot
    assert snapshot is not None
    running = [job.job_id for job in snapshot.jobs if job.data and job.data.runs and job.data.runs.running]
    result.running_jobs = len(running)
    for index in range(2):
        progress(f"{result.jobs} jobs: steady cycle {index + 1} (simulator mix, {len(running)} running)")
        result.steady_mix.append(_check(exporter.cycle(sim.api_requests), "steady cycle"))
    progress(f"{result.jobs} jobs: finishing the {len(running)} runs in progress")
    for job_id in running:
        sim.control("POST", f"jobs/{job_id}/finish-run", {"Status": 4})
    exporter.cycle(sim.api_requests)  # reads the finished runs once
    for index in range(2):
        progress(f"{result.jobs} jobs: steady cycle {index + 1} (every job at rest)")
        result.steady_rest.append(_check(exporter.cycle(sim.api_requests), "steady cycle"))


def measure_scrapes(
    sim: SimulatorProcess, plan: Plan, concurrency: int, workdir: Path, result: SizeResult
) -> None:
    """/metrics from ``ccs-exporter serve`` in its own process: during cycles, CCS slow, CCS hung; RSS."""
    progress(f"{result.jobs} jobs: starting ccs-exporter serve (concurrency {concurrency})")
    with ExporterProcess(sim, concurrency, workdir) as exporter:
        with measures.MemorySampler(exporter.memory_kib) as memory:
            exporter.wait_ready(timeout=600)
            url = f"{exporter.url}/metrics"
            progress(f"{result.jobs} jobs: scraping while cycles run back to back (until one is published)")
            result.scrapes["cycle"] = measures.scrape(
                url,
                count=plan.scrapes,
                gap_seconds=plan.scrape_gap,
                max_seconds=plan.cycle_scrape_limit,
                until=lambda figures: len(figures.cycles_seen) >= 2,
            )
            progress(f"{result.jobs} jobs: scraping while CCS answers in {plan.slow_latency:g} s")
            sim.control("POST", "faults", {"latency_seconds": plan.slow_latency})
            result.scrapes["slow"] = measures.scrape(
                url, count=plan.scrapes, gap_seconds=plan.scrape_gap, max_seconds=120
            )
            progress(f"{result.jobs} jobs: scraping while CCS hangs")
            sim.control("POST", "faults", {"hang": True})
            result.scrapes["hung"] = measures.scrape(
                url, count=plan.scrapes, gap_seconds=plan.scrape_gap, max_seconds=120
            )
            sim.control("POST", "faults", {"clear": True})
        result.max_rss_kib = memory.max_rss_kib
        result.hwm_kib = memory.hwm_kib


def _check(figures: measures.CycleFigures, what: str) -> measures.CycleFigures:
    if figures.failed_jobs:
        raise RuntimeError(f"{what}: {figures.failed_jobs} jobs failed to poll; the figures would be wrong")
    return figures


# --- the report ------------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _seconds(value: float) -> str:
    return f"{value:.2f} s" if value < 100 else f"{value:.0f} s"


def _latency(figures: measures.ScrapeFigures | None, gzipped: bool) -> str:
    if figures is None:
        return "n/a"
    values = figures.gzipped if gzipped else figures.plain
    cell = f"{_ms(measures.median(values))} / {_ms(measures.percentile(values, 0.99))} (n={len(values)})"
    return cell + (f", {figures.errors} errors" if figures.errors else "")


def table_rows(results: list[SizeResult], plan: Plan) -> list[tuple[str, list[str]]]:
    """(label, one cell per size) for every figure, in the order printed."""
    default = plan.concurrencies[0]
    rows: list[tuple[str, Callable[[SizeResult], str]]] = [
        (
            "cold poll, naive: sequential, new connection each",
            lambda r: (
                _seconds(r.naive_total)
                + ("" if r.naive_jobs == r.jobs else f" (extrapolated from {r.naive_jobs} jobs)")
            ),
        ),
    ]
    for concurrency in plan.concurrencies:
        rows.append(
            (f"cold poll, tuned raw requests (pooled), concurrency {concurrency}", _cell_raw(concurrency))
        )
        rows.append((f"cold poll, exporter Poller, concurrency {concurrency}", _cell_exporter(concurrency)))
    rows += [
        (
            f"cold poll, exporter / raw at concurrency {default}",
            lambda r: f"{r.exporter[default][0] / r.raw[default][0]:.2f}x",
        ),
        (
            f"cold poll, naive / exporter at concurrency {default}",
            lambda r: f"{r.naive_total / r.exporter[default][0]:.1f}x",
        ),
        (
            f"cold poll CPU s per 1,000 jobs, raw / exporter (c={default})",
            lambda r: (
                f"{r.raw[default][1] * 1000 / r.jobs:.2f} / {r.exporter[default][1] * 1000 / r.jobs:.2f}"
            ),
        ),
        (
            "steady, simulator mix: requests per job per cycle",
            lambda r: f"{_per_job(r.steady_mix, r.jobs):.3f} ({r.running_jobs} runs in progress)",
        ),
        ("steady, simulator mix: CPU s per cycle per 1,000 jobs", lambda r: _cpu(r.steady_mix, r.jobs)),
        (
            "steady, every job at rest: requests per job per cycle",
            lambda r: f"{_per_job(r.steady_rest, r.jobs):.3f}",
        ),
        ("steady, every job at rest: CPU s per cycle per 1,000 jobs", lambda r: _cpu(r.steady_rest, r.jobs)),
        ("steady cycle wall time (at rest)", lambda r: _seconds(max(c.wall_seconds for c in r.steady_rest))),
        ("/metrics during cycles, plain: p50 / p99 ms", lambda r: _latency(r.scrapes.get("cycle"), False)),
        ("/metrics during cycles, gzip: p50 / p99 ms", lambda r: _latency(r.scrapes.get("cycle"), True)),
        (
            f"/metrics CCS slow ({plan.slow_latency:g} s/request), plain: p50 / p99 ms",
            lambda r: _latency(r.scrapes.get("slow"), False),
        ),
        (
            f"/metrics CCS slow ({plan.slow_latency:g} s/request), gzip: p50 / p99 ms",
            lambda r: _latency(r.scrapes.get("slow"), True),
        ),
        ("/metrics CCS hung, plain: p50 / p99 ms", lambda r: _latency(r.scrapes.get("hung"), False)),
        ("/metrics CCS hung, gzip: p50 / p99 ms", lambda r: _latency(r.scrapes.get("hung"), True)),
        (
            "exporter RSS: max sampled / peak (VmHWM), MiB",
            lambda r: f"{r.max_rss_kib / 1024:.0f} / {r.hwm_kib / 1024:.0f}",
        ),
        ("exposition size, plain / gzip", _cell_sizes),
    ]
    return [(label, [_safe(cell, result) for result in results]) for label, cell in rows]


def _cell_raw(concurrency: int) -> Callable[[SizeResult], str]:
    return lambda r: _seconds(r.raw[concurrency][0])


def _cell_exporter(concurrency: int) -> Callable[[SizeResult], str]:
    return lambda r: _seconds(r.exporter[concurrency][0])


def _cell_sizes(result: SizeResult) -> str:
    figures = result.scrapes["cycle"]
    return f"{figures.plain_bytes / 1024:,.0f} KiB / {figures.gzip_bytes / 1024:,.0f} KiB"


def _safe(cell: Callable[[SizeResult], str], result: SizeResult) -> str:
    try:
        return cell(result)
    except (KeyError, ZeroDivisionError, ValueError):
        return "n/a"


def _per_job(cycles: list[measures.CycleFigures], jobs: int) -> float:
    return max(cycle.requests for cycle in cycles) / jobs


def _cpu(cycles: list[measures.CycleFigures], jobs: int) -> str:
    values = [cycle.cpu_seconds * 1000 / jobs for cycle in cycles]
    return f"{min(values):.3f} to {max(values):.3f}"


def targets(results: list[SizeResult], plan: Plan) -> list[tuple[str, bool, str]]:
    """(target, met, evidence) for each issue-6 target; /metrics and RSS are judged at the largest size."""
    default = plan.concurrencies[0]
    checks: list[tuple[str, bool, str]] = []
    for r in results:
        rest = _per_job(r.steady_rest, r.jobs)
        mix = _per_job(r.steady_mix, r.jobs)
        checks.append(
            (
                f"steady state <= 1.05 requests/job/cycle, jobs at rest ({r.jobs:,} jobs)",
                rest <= 1.05,
                f"{rest:.3f}",
            )
        )
        checks.append(
            (
                f"steady state <= 1.05 requests/job/cycle, simulator mix ({r.jobs:,} jobs, "
                f"{r.running_jobs} runs in progress, re-read every cycle by design)",
                mix <= 1.05,
                f"{mix:.3f}",
            )
        )
        ratio = r.exporter[default][0] / r.raw[default][0]
        checks.append(
            (
                f"cold poll within 1.25x of tuned raw, c={default} ({r.jobs:,} jobs)",
                ratio <= 1.25,
                f"{ratio:.2f}x",
            )
        )
        speedup = r.naive_total / r.exporter[default][0]
        checks.append(
            (
                f"cold poll >= 5x faster than naive, c={default} ({r.jobs:,} jobs)",
                speedup >= 5,
                f"{speedup:.1f}x",
            )
        )
    largest = max(results, key=lambda r: r.jobs)
    worst = max(
        measures.percentile(values, 0.99)
        for figures in largest.scrapes.values()
        for values in (figures.plain, figures.gzipped)
    )
    errors = sum(figures.errors for figures in largest.scrapes.values())
    checks.append(
        (
            f"/metrics p99 < 50 ms in every phase ({largest.jobs:,} jobs)",
            worst < 0.050 and errors == 0,
            f"worst p99 {_ms(worst)} ms, {errors} errors",
        )
    )
    checks.append(
        (
            f"RSS < 150 MB ({largest.jobs:,} jobs, peak VmHWM)",
            largest.hwm_kib * 1024 < 150e6,
            f"{largest.hwm_kib * 1024 / 1e6:.0f} MB",
        )
    )
    return checks


def machine() -> list[str]:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo", encoding="utf-8") as meminfo:
        total_kib = int(next(line for line in meminfo if line.startswith("MemTotal")).split()[1])
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    versions = ", ".join(
        f"{name} {_version(name)}" for name in ("requests", "urllib3", "pydantic", "prometheus_client")
    )
    return [
        f"date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; commit {commit or 'unknown'}",
        f"machine: {len(os.sched_getaffinity(0))} CPUs (nproc), {cpu}, {total_kib / MB:.1f} GiB memory",
        f"software: Python {platform.python_version()}, {platform.system()} {platform.release()}; {versions}",
    ]


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


def render_report(results: list[SizeResult], plan: Plan, elapsed: float) -> str:
    rows = table_rows(results, plan)
    header = ["figure", *(f"{r.jobs:,} jobs" for r in results)]
    widths = [
        max(len(header[i]), *(len(cells[i - 1] if i else label) for label, cells in rows))
        for i in range(len(header))
    ]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(cells)) + " |"

    lines = [
        "## Results" + (" (--quick: a smoke run, the figures mean nothing)" if plan.quick else ""),
        "",
        *(f"- {text}" for text in machine()),
        f"- setup: simulator in its own process, {plan.latency_ms:g} ms per request; exporter default "
        f"concurrency {plan.concurrencies[0]}; history window {measures.HISTORY_WINDOW}; "
        f"whole run {elapsed / 60:.1f} min",
        "",
        line(header),
        line(["-" * width for width in widths]),
        *(line([label, *cells]) for label, cells in rows),
        "",
        "Targets:",
        "",
        *(
            f"- {'PASS' if met else 'MISS'}: {name}: {evidence}"
            for name, met, evidence in targets(results, plan)
        ),
    ]
    return "\n".join(lines)


def update_readme(report: str) -> None:
    text = README.read_text(encoding="utf-8")
    before, found, rest = text.partition(RESULTS_BEGIN)
    _, found_end, after = rest.partition(RESULTS_END)
    if not found or not found_end:
        raise SystemExit(f"{README}: the results markers are missing")
    README.write_text(f"{before}{RESULTS_BEGIN}\n{report}\n{RESULTS_END}{after}", encoding="utf-8")


if __name__ == "__main__":
    # SIGTERM unwinds like Ctrl-C, so the simulator and exporter processes are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        sys.exit(main())
    except requests.RequestException as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        sys.exit(1)
