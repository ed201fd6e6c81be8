"""What /metrics costs by format and selection: text or OpenMetrics, plain or gzip, whole or name[]-filtered,
with the full or the sparse status metric; and what rendering both formats costs at publish.

    python benchmarks/exposition.py                   # 10,000 jobs, 200 scrapes per variant (~4 min)
    python benchmarks/exposition.py --quick           # 200 jobs, 10 scrapes per variant: a smoke run
    python benchmarks/exposition.py --update-readme   # also write the results into benchmarks/README.md

The simulator runs as its own process (no latency). Publish: one cold poll in this process, then
``render_exposition`` of that snapshot (both formats, gzip) timed in CPU seconds, best of three, and its
peak allocation (tracemalloc). Scrapes: ``python -m ccs_exporter serve`` in its own process, after its
first cycle (poll interval one day, so nothing else runs), scraped from this process with a pooled
keep-alive session, one variant after the other; latency from sending the request to having the whole
body (never decompressed), and the exporter's CPU per scrape (user + system from /proc). Linux only;
traffic stays on 127.0.0.1; each process is stopped by its PID.
"""

from __future__ import annotations

import argparse
import gzip
import os
import signal
import statistics
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout without installing

import requests  # noqa: E402

from benchmarks import measures  # noqa: E402
from benchmarks.processes import ExporterProcess, SimulatorProcess  # noqa: E402
from benchmarks.run import machine  # noqa: E402
from ccs_exporter.cli.logs import configure_logging  # noqa: E402
from ccs_exporter.exposition.renderer import render_exposition  # noqa: E402
from ccs_exporter.polling.snapshot import PollSnapshot  # noqa: E402

README = Path(__file__).resolve().parent / "README.md"
RESULTS_BEGIN = "<!-- exposition results: written by benchmarks/exposition.py --update-readme -->"
RESULTS_END = "<!-- /exposition results -->"
OPENMETRICS = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)  # what Prometheus 2 sends
TWO_FAMILIES = "?name[]=ccs_up&name[]=ccs_job_last_run_status"
# (label, query, Accept, gzip)
VARIANTS = (
    ("text, plain", "", "", False),
    ("text, gzip", "", "", True),
    ("OpenMetrics, plain", "", OPENMETRICS, False),
    ("OpenMetrics, gzip", "", OPENMETRICS, True),
    ("name[]=ccs_up & ccs_job_last_run_status, text, plain", TWO_FAMILIES, "", False),
    ("name[]=ccs_up & ccs_job_last_run_status, OpenMetrics, gzip", TWO_FAMILIES, OPENMETRICS, True),
    ("name[]=ccs_up, OpenMetrics, gzip", "?name[]=ccs_up", OPENMETRICS, True),
)
MODES = ("full", "sparse")


@dataclass
class VariantFigures:
    """One variant's scrapes: latencies (s), the exporter's CPU per scrape (s), the body on the wire."""

    latencies: list[float] = field(default_factory=list)
    cpu_per_scrape: float = 0.0
    wire_bytes: int = 0
    series: int = 0
    errors: int = 0


@dataclass
class ModeResult:
    """Every figure of one status-metric mode."""

    mode: str
    publish_cpu: float = 0.0
    publish_peak_bytes: int = 0
    variants: dict[str, VariantFigures] = field(default_factory=dict)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=10_000, help="simulated jobs (10,000)")
    parser.add_argument("--scrapes", type=int, default=200, help="scrapes per variant (200)")
    parser.add_argument("--quick", action="store_true", help="200 jobs, 10 scrapes: a smoke run")
    parser.add_argument("--update-readme", action="store_true", help="write the results into README.md")
    args = parser.parse_args(argv)
    jobs, scrapes = (200, 10) if args.quick else (args.jobs, args.scrapes)
    configure_logging("warning", "json")
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="ccs-exposition-bench-") as tmp:
        workdir = Path(tmp)
        with SimulatorProcess(jobs, 0.0, workdir) as simulator:
            progress(f"{jobs:,} jobs: one cold poll in this process")
            snapshot = cold_poll(simulator)
            results = [ModeResult(mode) for mode in MODES]
            for result in results:
                measure_publish(snapshot, result)
                measure_scrapes(simulator, workdir, scrapes, result)
    load = (load_before, os.getloadavg()[0])
    report = render_report(results, jobs, scrapes, time.monotonic() - started, load, args.quick)
    print(report)
    if args.update_readme and not args.quick:
        update_readme(report)
    return 0


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def cold_poll(simulator: SimulatorProcess) -> PollSnapshot:
    exporter = measures.ExporterUnderTest(
        simulator.url, simulator.username, simulator.password, simulator.job_ids, concurrency=16
    )
    try:
        exporter.cycle(simulator.api_requests)
    finally:
        exporter.close()
    assert exporter.last_snapshot is not None
    return exporter.last_snapshot


def measure_publish(snapshot: PollSnapshot, result: ModeResult) -> None:
    """CPU seconds (best of three) and peak allocation of rendering both formats, plain and gzip."""
    sparse = result.mode == "sparse"
    progress(f"{result.mode}: publish (render both formats and gzip)")
    timings = []
    for _ in range(3):
        cpu = time.process_time()
        render_exposition(snapshot, sparse_status=sparse)
        timings.append(time.process_time() - cpu)
    result.publish_cpu = min(timings)
    tracemalloc.start()
    render_exposition(snapshot, sparse_status=sparse)
    result.publish_peak_bytes = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()


def measure_scrapes(simulator: SimulatorProcess, workdir: Path, scrapes: int, result: ModeResult) -> None:
    settings = {"status_metric": result.mode}
    with ExporterProcess(simulator, 8, workdir, poll_interval=86_400, extra_settings=settings) as exporter:
        progress(f"{result.mode}: serve, first cycle")
        exporter.wait_ready(900)
        with requests.Session() as session:
            for label, query, accept, use_gzip in VARIANTS:
                progress(f"{result.mode}: {scrapes} scrapes, {label}")
                result.variants[label] = scrape_variant(
                    session, exporter, f"{exporter.url}/metrics{query}", accept, use_gzip, scrapes
                )


def scrape_variant(
    session: requests.Session, exporter: ExporterProcess, url: str, accept: str, use_gzip: bool, scrapes: int
) -> VariantFigures:
    figures = VariantFigures()
    headers = {"Accept": accept or "*/*", "Accept-Encoding": "gzip" if use_gzip else "identity"}
    body = b""
    for _ in range(3):  # warm up the connection and the allocator
        body = session.get(url, headers=headers, timeout=30).content
    figures.series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    cpu = exporter.cpu_seconds()
    for _ in range(scrapes):
        started = time.perf_counter()
        try:
            response = session.get(url, headers=headers, stream=True, timeout=30)
            raw = response.raw.read(decode_content=False)
            elapsed = time.perf_counter() - started
            response.close()
        except requests.RequestException:
            figures.errors += 1
            continue
        if response.status_code != 200:
            figures.errors += 1
            continue
        figures.latencies.append(elapsed)
        figures.wire_bytes = len(raw)
        if use_gzip:
            gzip.decompress(raw)  # a broken stream fails the benchmark rather than being timed
    figures.cpu_per_scrape = (exporter.cpu_seconds() - cpu) / max(1, scrapes)
    return figures


def _kib(size: int) -> str:
    return f"{size / 1024:,.0f} KiB" if size >= 10 * 1024 else f"{size:,} B"


def _latency(figures: VariantFigures) -> str:
    if not figures.latencies:
        return "n/a"
    p50 = statistics.median(figures.latencies) * 1000
    p99 = measures.percentile(figures.latencies, 0.99) * 1000
    return f"{p50:.1f} / {p99:.1f}"


def table(results: list[ModeResult]) -> list[str]:
    header = ["scrape", *(f"{what}, {r.mode}" for r in results for what in ("p50 / p99 ms", "CPU ms"))]
    header += [f"body, {r.mode}" for r in results] + [f"series, {r.mode}" for r in results]
    rows = []
    for label, *_ in VARIANTS:
        cells = [label]
        cells += [
            cell
            for r in results
            for cell in (_latency(r.variants[label]), f"{r.variants[label].cpu_per_scrape * 1000:.1f}")
        ]
        cells += [_kib(r.variants[label].wire_bytes) for r in results]
        cells += [f"{r.variants[label].series:,}" for r in results]
        rows.append(cells)
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(cells)) + " |"

    return [line(header), line(["-" * width for width in widths]), *(line(row) for row in rows)]


def render_report(
    results: list[ModeResult], jobs: int, scrapes: int, elapsed: float, load: tuple[float, float], quick: bool
) -> str:
    errors = sum(figures.errors for r in results for figures in r.variants.values())
    series = [r.variants["text, plain"].series for r in results]
    bodies = " / ".join(_kib(r.variants["text, plain"].wire_bytes) for r in results)
    lines = [
        "### Exposition results" + (" (--quick: a smoke run, the figures mean nothing)" if quick else ""),
        "",
        *(f"- {text}" for text in machine()),
        f"- setup: {jobs:,} simulated jobs, {scrapes} scrapes per variant, {errors} errors; "
        f"whole run {elapsed / 60:.1f} min; load average {load[0]:.1f} at the start, {load[1]:.1f} at "
        "the end (the machine is shared)",
        "",
        *(
            f"- publish, {r.mode} (both formats, plain and gzip): {r.publish_cpu:.2f} CPU s, "
            f"peak allocation {r.publish_peak_bytes / 1e6:.0f} MB"
            for r in results
        ),
        f"- series: full {series[0]:,}, sparse {series[1]:,}: {series[0] - series[1]:,} fewer "
        f"({(series[0] - series[1]) / max(1, jobs):.2f} per job); body, text plain: {bodies}",
        "",
        *table(results),
    ]
    return "\n".join(lines)


def update_readme(report: str) -> None:
    text = README.read_text(encoding="utf-8")
    before, found, rest = text.partition(RESULTS_BEGIN)
    _, found_end, after = rest.partition(RESULTS_END)
    if not found or not found_end:
        raise SystemExit(f"{README}: the exposition results markers are missing")
    README.write_text(f"{before}{RESULTS_BEGIN}\n{report}\n{RESULTS_END}{after}", encoding="utf-8")


if __name__ == "__main__":
    # SIGTERM unwinds like Ctrl-C, so the simulator and exporter processes are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        sys.exit(main())
    except requests.RequestException as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        sys.exit(1)
