"""One replica at scale: jobs found by one search, scraped the way Prometheus scrapes, memory over time.

    python benchmarks/scale.py                          # 10,000 jobs, 5 minutes of soak at the end
    python benchmarks/scale.py --jobs 50000 --soak-minutes 2
    python benchmarks/scale.py --soak-minutes 30        # the flatness run
    python benchmarks/scale.py --quick                  # 50 jobs, no latency: a smoke run (about 30 s)

The simulator runs as its own process (generated jobs, runs frozen, 20 ms per request) and
``python -m ccs_exporter serve`` as another, watching every job through one search
(``JOB_SEARCH``, default page size), polling every 5 s. Two Prometheus-like scrapers ask for
``/metrics`` every 15 s all along, both with gzip, one in text 0.0.4 and one in OpenMetrics (what
Prometheus 2 asks for); in the stress phases a third scraper asks back to back, turning through text and
OpenMetrics, plain and gzip. One run reports: the time to the first published cycle (discovery of every
job and its runs), resident memory sampled from ``/proc`` all along (peak, by phase, growth per cycle
in the soak), ``/metrics`` latency (p50 / p99, request sent to whole body, never decompressed) per
format and encoding in each phase (cold start, cycles at rest, the cycle after every job changed), CPU
seconds of the exporter process per cycle at rest (from ``/proc``, no scraping meanwhile), and requests
per cycle (the exporter's own count, from its ``poll_cycle`` log lines). Linux only; traffic stays on
127.0.0.1; every process is stopped by its PID, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout without installing

import requests  # noqa: E402

from benchmarks import measures  # noqa: E402
from benchmarks.processes import ExporterProcess, SimulatorProcess  # noqa: E402
from benchmarks.run import machine  # noqa: E402

SEARCH = "(JobName StartsWith Generated)"  # every job the simulator generates
OPENMETRICS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)  # what Prometheus 2 sends
TEXT_ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"  # Prometheus asked for the text format only


@dataclass(frozen=True)
class Variant:
    label: str
    accept: str
    gzipped: bool

    @property
    def headers(self) -> dict[str, str]:
        return {"Accept": self.accept, "Accept-Encoding": "gzip" if self.gzipped else "identity"}


TEXT_GZIP = Variant("text, gzip", TEXT_ACCEPT, True)
OPENMETRICS_GZIP = Variant("OpenMetrics, gzip", OPENMETRICS_ACCEPT, True)
VARIANTS = (
    Variant("text, plain", TEXT_ACCEPT, False),
    TEXT_GZIP,
    Variant("OpenMetrics, plain", OPENMETRICS_ACCEPT, False),
    OPENMETRICS_GZIP,
)
PHASES = ("cold start", "at rest", "every job changed")


@dataclass(frozen=True)
class Plan:
    jobs: int
    latency_ms: float
    interval: float
    scrape_every: float
    rest_cycles: int
    soak_minutes: float
    soak_stress: bool
    concurrency: int
    env: dict[str, str]
    quick: bool


@dataclass(frozen=True)
class Cycle:
    """One published cycle, from the exporter's ``poll_cycle`` log line, and its CPU when seen."""

    seen_at: float
    cpu_seconds: float
    requests: int
    runs_fetched: int
    duration: float
    jobs: int


@dataclass(frozen=True)
class Scrape:
    phase: str
    variant: str
    seconds: float
    ok: bool
    size: int


@dataclass(frozen=True)
class RssSample:
    seconds: float
    phase: str
    cycles: int
    rss_kib: int


class Bench:
    """The shared state of one run: the phase, the cycles seen, scrapes and memory samples."""

    def __init__(self, exporter: ExporterProcess) -> None:
        self.exporter = exporter
        self.started = time.monotonic()
        self.phase = "starting"  # until the first cycle is published
        self.cycles: list[Cycle] = []
        self.scrapes: list[Scrape] = []
        self.rss: list[RssSample] = []
        self.stop = threading.Event()
        self.stress = threading.Event()
        self.periodic = threading.Event()
        self.periodic.set()
        self._changed = threading.Condition()
        self.threads = [
            threading.Thread(target=self._follow_log, daemon=True),
            threading.Thread(target=self._sample_memory, daemon=True),
            threading.Thread(target=self._stress, daemon=True),
        ]

    def start(self, scrape_every: float) -> None:
        for variant in (TEXT_GZIP, OPENMETRICS_GZIP):
            self.threads.append(
                threading.Thread(target=self._periodic, args=(variant, scrape_every), daemon=True)
            )
        for thread in self.threads:
            thread.start()

    def close(self) -> None:
        self.stop.set()
        self.stress.set()  # wake it so it sees the stop
        self.periodic.set()
        for thread in self.threads:
            thread.join(30)

    # --- cycles, from the exporter's log --------------------------------------------------------------

    def _follow_log(self) -> None:
        with self.exporter.log_path.open("rb") as log:
            pending = b""
            while not self.stop.is_set():
                chunk = log.readline()
                if not chunk:
                    time.sleep(0.05)
                    continue
                pending += chunk
                if not pending.endswith(b"\n"):
                    continue
                line, pending = pending, b""
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("event") != "poll_cycle":
                    continue
                cycle = Cycle(
                    time.monotonic(),
                    self.exporter.cpu_seconds(),
                    int(event["requests"]),
                    int(event["runs_fetched"]),
                    float(event["duration_seconds"]),
                    int(event["jobs"]),
                )
                with self._changed:
                    self.cycles.append(cycle)
                    self._changed.notify_all()

    def wait_cycles(self, count: int, timeout: float) -> list[Cycle]:
        """Wait for ``count`` more published cycles; return them."""
        with self._changed:
            first = len(self.cycles)
            if not self._changed.wait_for(lambda: len(self.cycles) >= first + count, timeout):
                raise RuntimeError(
                    f"{count} cycles did not come within {timeout:g} s; see {self.exporter.log_path}"
                )
            return self.cycles[first : first + count]

    def first_cycle(self, timeout: float) -> Cycle:
        """The first published cycle (its log line comes just after /readyz turns ready)."""
        with self._changed:
            if not self._changed.wait_for(lambda: bool(self.cycles), timeout):
                raise RuntimeError(f"no cycle was logged; see {self.exporter.log_path}")
            return self.cycles[0]

    # --- memory -------------------------------------------------------------------------------------

    def _sample_memory(self) -> None:
        while not self.stop.wait(0.5):
            try:
                rss = self.exporter.memory_kib()["VmRSS"]
            except (OSError, KeyError):
                continue
            self.rss.append(RssSample(time.monotonic() - self.started, self.phase, len(self.cycles), rss))

    # --- scrapers -----------------------------------------------------------------------------------

    def _scrape(self, session: requests.Session, variant: Variant) -> None:
        phase = self.phase
        started = time.perf_counter()
        try:
            response = session.get(
                f"{self.exporter.url}/metrics", headers=variant.headers, stream=True, timeout=30
            )
            body = response.raw.read(decode_content=False)
            elapsed = time.perf_counter() - started
            response.close()
        except requests.RequestException:
            self.scrapes.append(Scrape(phase, variant.label, time.perf_counter() - started, False, 0))
            return
        self.scrapes.append(Scrape(phase, variant.label, elapsed, response.status_code == 200, len(body)))

    def _periodic(self, variant: Variant, every: float) -> None:
        with requests.Session() as session:
            while not self.stop.wait(every):
                self.periodic.wait()
                if not self.stop.is_set():
                    self._scrape(session, variant)

    def _stress(self) -> None:
        with requests.Session() as session:
            turn = 0
            while not self.stop.is_set():
                self.stress.wait()
                if self.stop.is_set():
                    return
                self._scrape(session, VARIANTS[turn % len(VARIANTS)])
                turn += 1


@dataclass
class Result:
    plan: Plan
    discovery_seconds: float = 0.0
    first_cycle: Cycle | None = None
    rss_at_ready_kib: int = 0
    hwm_kib: int = 0
    rest: list[Cycle] = field(default_factory=list)
    rest_cpu_per_cycle: float = 0.0
    changed: Cycle | None = None
    changed_cpu: float = 0.0
    scrapes: list[Scrape] = field(default_factory=list)
    rss: list[RssSample] = field(default_factory=list)
    soak_cycles: int = 0
    sizes: dict[str, int] = field(default_factory=dict)
    load: tuple[float, float] = (0.0, 0.0)
    elapsed: float = 0.0


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def measure(plan: Plan, workdir: Path) -> Result:
    result = Result(plan)
    result.load = (os.getloadavg()[0], 0.0)
    started = time.monotonic()
    # A cycle may take as long as reading every job's runs one request after another on the workers.
    slow = 120 + plan.jobs * (plan.latency_ms / 1000 + 0.004) * 2
    with SimulatorProcess(plan.jobs, plan.latency_ms, workdir) as sim:
        settings = {"job_ids": [], "job_search": [SEARCH], "log_level": "info"}
        progress(f"{plan.jobs:,} jobs: serve, discovery (cold start), scraped every {plan.scrape_every:g} s")
        launched = time.monotonic()
        with ExporterProcess(
            sim, plan.concurrency, workdir, plan.interval, extra_settings=settings, env=plan.env
        ) as exporter:
            bench = Bench(exporter)
            bench.start(plan.scrape_every)
            try:
                exporter.wait_ready(slow)
                result.discovery_seconds = time.monotonic() - launched
                bench.phase = "cold start"
                result.rss_at_ready_kib = exporter.memory_kib()["VmRSS"]
                result.first_cycle = bench.first_cycle(slow)
                progress("cold start: scraped back to back for two more cycles")
                bench.stress.set()
                bench.wait_cycles(2, slow)
                bench.stress.clear()
                bench.phase = "settling"
                sim.control("POST", "finish-runs", {"Status": 4, "RunningOnly": True})
                bench.wait_cycles(2, slow)  # the first reads the finished runs once
                progress(f"at rest: {plan.rest_cycles} cycles without scraping (CPU)")
                bench.phase = "at rest (no scraping)"
                bench.periodic.clear()
                time.sleep(1.0)  # a periodic scrape under way finishes
                window = bench.wait_cycles(plan.rest_cycles + 1, slow)
                bench.periodic.set()
                result.rest = window[1:]
                result.rest_cpu_per_cycle = (
                    window[-1].cpu_seconds - window[0].cpu_seconds
                ) / plan.rest_cycles
                progress(f"at rest: scraped back to back for {plan.rest_cycles} cycles")
                bench.phase = "at rest"
                bench.stress.set()
                bench.wait_cycles(plan.rest_cycles, slow)
                progress("every job changed: a new run for each, scraped back to back")
                bench.phase = "every job changed"
                before = bench.wait_cycles(1, slow)[0]
                sim.control("POST", "finish-runs", {"Status": 5, "Messages": {"Error": 1}})
                seen = [before]
                while seen[-1].runs_fetched < plan.jobs * 0.5:
                    seen += bench.wait_cycles(1, slow)
                result.changed = seen[-1]
                result.changed_cpu = seen[-1].cpu_seconds - seen[-2].cpu_seconds
                bench.wait_cycles(1, slow)  # and the publish after it, at rest again
                bench.stress.clear()
                if plan.soak_minutes > 0:
                    progress(f"soak: {plan.soak_minutes:g} min, scraped every {plan.scrape_every:g} s")
                    bench.phase = "soak"
                    if plan.soak_stress:
                        bench.stress.set()
                    first = len(bench.cycles)
                    time.sleep(plan.soak_minutes * 60)
                    bench.stress.clear()
                    result.soak_cycles = len(bench.cycles) - first
                result.hwm_kib = exporter.memory_kib()["VmHWM"]
                result.sizes = body_sizes(exporter.url)
            finally:
                bench.close()
            result.scrapes = list(bench.scrapes)
            result.rss = list(bench.rss)
    result.load = (result.load[0], os.getloadavg()[0])
    result.elapsed = time.monotonic() - started
    return result


def body_sizes(url: str) -> dict[str, int]:
    """The body of each variant on the wire (checks the formats: OpenMetrics ends in # EOF, text not)."""
    sizes = {}
    with requests.Session() as session:
        for variant in VARIANTS:
            response = session.get(f"{url}/metrics", headers=variant.headers, timeout=60)
            text = response.content
            if text.endswith(b"# EOF\n") != variant.label.startswith("OpenMetrics"):
                raise RuntimeError(f"{variant.label}: not the format asked for")
            sizes[variant.label] = int(response.headers.get("Content-Length", len(text)))
    return sizes


# --- the report --------------------------------------------------------------------------------------


def _mib(kib: float) -> str:
    return f"{kib / 1024:.0f}"


def growth_per_cycle(samples: list[RssSample]) -> float:
    """The least-squares slope of RSS (KiB) over cycles; NaN with fewer than two cycles."""
    if len({sample.cycles for sample in samples}) < 2:
        return float("nan")
    xs = [float(sample.cycles) for sample in samples]
    ys = [float(sample.rss_kib) for sample in samples]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread


def latency_cell(scrapes: list[Scrape]) -> str:
    times = [scrape.seconds * 1000 for scrape in scrapes if scrape.ok]
    if not times:
        return "n/a"
    p99 = measures.percentile(times, 0.99)
    return f"{statistics.median(times):.1f} / {p99:.1f} (n={len(times)})"


def rows(result: Result) -> list[tuple[str, str]]:
    plan = result.plan
    per_1000 = 1000 / plan.jobs
    first = result.first_cycle
    assert first is not None and result.changed is not None
    rest = result.rest
    rss_by_phase: dict[str, list[int]] = {}
    for sample in result.rss:
        rss_by_phase.setdefault(sample.phase, []).append(sample.rss_kib)
    soak = [sample for sample in result.rss if sample.phase == "soak"]
    settled = soak[len(soak) // 4 :]  # the first quarter is warm-up
    lines: list[tuple[str, str]] = [
        ("discovery: start to first published cycle, s", f"{result.discovery_seconds:.1f}"),
        (
            "first cycle: wall s / requests",
            f"{first.duration:.1f} / {first.requests:,} ({first.jobs:,} jobs)",
        ),
        ("RSS when the first cycle is published, MiB", _mib(result.rss_at_ready_kib)),
        ("RSS peak (VmHWM), MiB", _mib(result.hwm_kib)),
    ]
    for phase, values in rss_by_phase.items():
        lines.append(
            (
                f"RSS {phase}: min / median / max MiB",
                " / ".join(_mib(v) for v in (min(values), statistics.median(values), max(values))),
            )
        )
    if soak:
        slope = growth_per_cycle(settled)
        lines.append(
            (
                "RSS soak growth per cycle, KiB (after a quarter of warm-up)",
                f"{slope:+.1f} over {result.soak_cycles} cycles "
                f"({_mib(settled[0].rss_kib)} -> {_mib(settled[-1].rss_kib)} MiB)",
            )
        )
    lines += [
        (
            "at rest: CPU s per cycle per 1,000 jobs (no scraping)",
            f"{result.rest_cpu_per_cycle * per_1000:.3f} ({result.rest_cpu_per_cycle:.2f} s a cycle)",
        ),
        ("at rest: requests per cycle", " / ".join(f"{cycle.requests}" for cycle in rest)),
        ("at rest: cycle wall s", " / ".join(f"{cycle.duration:.2f}" for cycle in rest)),
        (
            "every job changed: the cycle's wall s / requests / runs read / CPU s",
            f"{result.changed.duration:.1f} / {result.changed.requests:,} / "
            f"{result.changed.runs_fetched:,} / {result.changed_cpu:.1f}",
        ),
    ]
    for phase in PHASES:
        for variant in VARIANTS:
            scrapes = [s for s in result.scrapes if s.phase == phase and s.variant == variant.label]
            lines.append(
                (f"/metrics {phase}, {variant.label} (back to back): p50 / p99 ms", latency_cell(scrapes))
            )
    for variant in (TEXT_GZIP, OPENMETRICS_GZIP):
        scrapes = [s for s in result.scrapes if s.variant == variant.label and s.phase not in PHASES]
        lines.append(
            (
                f"/metrics every {plan.scrape_every:g} s, {variant.label}, other phases: p50 / p99 ms",
                latency_cell(scrapes),
            )
        )
    counted = [scrape for scrape in result.scrapes if scrape.phase != "starting"]
    errors = sum(1 for scrape in counted if not scrape.ok)
    lines.append(("scrapes after the first cycle: all / failed", f"{len(counted):,} / {errors}"))
    lines.append(
        (
            "exposition on the wire: text plain / gzip, KiB",
            " / ".join(f"{result.sizes[v.label] / 1024:,.0f}" for v in VARIANTS[:2]),
        )
    )
    return lines


def minute_maxima(samples: list[RssSample]) -> list[int]:
    maxima: dict[int, int] = {}
    for sample in samples:
        minute = int(sample.seconds // 60)
        maxima[minute] = max(maxima.get(minute, 0), sample.rss_kib)
    return [maxima[minute] for minute in sorted(maxima)]


def render_report(result: Result) -> str:
    plan = result.plan
    table = rows(result)
    width = max(len(label) for label, _ in table)
    value_width = max(len(value) for _, value in table)
    env = " ".join(f"{key}={value}" for key, value in plan.env.items()) or "none"
    return "\n".join(
        [
            "### Scale results" + (" (--quick: a smoke run, the figures mean nothing)" if plan.quick else ""),
            "",
            *(f"- {text}" for text in machine()),
            f"- setup: {plan.jobs:,} simulated jobs, {plan.latency_ms:g} ms per request, one search "
            f"`{SEARCH}`, default page size (100), concurrency {plan.concurrency}, poll interval "
            f"{plan.interval:g} s; extra environment: {env}",
            f"- scrape pattern: two scrapers every {plan.scrape_every:g} s all along (text + gzip, "
            "OpenMetrics + gzip); in the stress phases a third back to back turning through text and "
            "OpenMetrics, plain and gzip; "
            f"{plan.soak_minutes:g} min of soak{' with the stress scraper' if plan.soak_stress else ''}",
            f"- load average {result.load[0]:.1f} at the start, {result.load[1]:.1f} at the end (2 shared "
            f"cores); whole run {result.elapsed / 60:.1f} min",
            "",
            f"| {'figure'.ljust(width)} | {'value'.ljust(value_width)} |",
            f"| {'-' * width} | {'-' * value_width} |",
            *(f"| {label.ljust(width)} | {value.ljust(value_width)} |" for label, value in table),
            "",
            "RSS by minute (max, MiB): " + " ".join(_mib(kib) for kib in minute_maxima(result.rss)),
        ]
    )


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
    parser.add_argument("--concurrency", type=int, default=8, help="exporter concurrency (8, the default)")
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="environment of the exporter"
    )
    parser.add_argument("--quick", action="store_true", help="50 jobs, no latency: a smoke run")
    args = parser.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)
    if args.quick:
        plan = Plan(50, 0.0, 1.0, 1.0, 2, 0.2, False, args.concurrency, env, True)
    else:
        plan = Plan(
            args.jobs,
            args.latency_ms,
            args.interval,
            args.scrape_every,
            args.rest_cycles,
            args.soak_minutes,
            args.soak_stress,
            args.concurrency,
            env,
            False,
        )
    for name in ("NO_PROXY", "no_proxy"):  # 127.0.0.1 only, never through a proxy from the environment
        os.environ[name] = ",".join(filter(None, (os.environ.get(name), "127.0.0.1", "localhost")))
    with tempfile.TemporaryDirectory(prefix="ccs-scale-bench-") as workdir:
        result = measure(plan, Path(workdir))
    print(render_report(result))
    return 0


if __name__ == "__main__":
    # SIGTERM unwinds like Ctrl-C, so the simulator and exporter processes are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        sys.exit(main())
    except (requests.RequestException, RuntimeError) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        sys.exit(1)
