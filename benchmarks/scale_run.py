"""The scale benchmark's run: serve and the simulator in their own processes, scraped and sampled by phase.

``benchmarks/scale.py`` is the entry point and says what is measured; this module measures it and
returns a ``Result`` for ``scale_report`` to render.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import os
import re
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests

from benchmarks.processes import ChildProcess, ExporterProcess, SimulatorProcess
from benchmarks.scrapers import OPENMETRICS_GZIP, TEXT_GZIP, VARIANTS, ScrapeLine, Variant

SCRIPT = Path(__file__).resolve().parent / "scale.py"
SEARCH = "(JobName StartsWith Generated)"  # every job the simulator generates
PHASES = ("cold start", "at rest", "every job changed")


@dataclass(frozen=True)
class Pinning:
    """The CPUs of each process with ``--pin``: the exporter alone on one, everything else on another."""

    exporter: frozenset[int]
    others: frozenset[int]  # the simulator, the stress scraper, this process (Prometheus-like scrapers)

    @classmethod
    def two_cpus(cls) -> Pinning:
        """The first two CPUs this process may use; ValueError where there are fewer, or no affinity."""
        if not hasattr(os, "sched_setaffinity"):
            raise ValueError("--pin needs Linux (os.sched_setaffinity)")
        usable = sorted(os.sched_getaffinity(0))
        if len(usable) < 2:
            raise ValueError(
                f"--pin needs 2 CPUs; this process may run on {len(usable)} ({cpu_list(usable)})"
            )
        return cls(frozenset(usable[:1]), frozenset(usable[1:2]))


@contextlib.contextmanager
def pinned(cpus: frozenset[int] | None) -> Iterator[None]:
    """This process on ``cpus`` while it measures (the threads it starts meanwhile inherit it), then back."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def cpu_list(cpus: Iterable[int]) -> str:
    return ",".join(str(cpu) for cpu in sorted(cpus))


@dataclass(frozen=True)
class Plan:
    jobs: int
    latency_ms: float
    interval: float
    scrape_every: float
    rest_cycles: int
    soak_minutes: float
    soak_stress: bool
    stress_gzip_only: bool
    pin: Pinning | None
    audit: bool  # the exporter writes an audit log: it keeps each job's definition to record its changes
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
    back_to_back: bool  # the stress scraper's, not a Prometheus-like one's


@dataclass(frozen=True)
class RssSample:
    seconds: float
    phase: str
    cycles: int
    rss_kib: int


class StressScraper:
    """The back-to-back scraper: ``scale.py --scrape-loop`` in a process of its own for each stress phase.

    In this process it would wait for the GIL behind the Prometheus-like scrapers, the log follower and
    the memory sampler, and its latencies with it. Each start writes a file of its own, one line per scrape.
    """

    def __init__(self, url: str, workdir: Path, gzip_only: bool, cpus: frozenset[int] | None) -> None:
        self._url = f"{url}/metrics"
        self._options = ["--stress-gzip-only"] if gzip_only else []
        self._cpus = cpus
        self._workdir = workdir
        self._outputs: list[Path] = []
        self._process: ChildProcess | None = None
        self.ran_on: frozenset[int] = frozenset()  # the CPUs its last process could use

    def start(self) -> None:
        output = self._workdir / f"stress-{len(self._outputs) + 1}.tsv"
        argv = [sys.executable, str(SCRIPT), "--scrape-loop", self._url, "--scrape-out", str(output)]
        argv += self._options
        self._process = ChildProcess(argv, output.with_suffix(".log"), cpus=self._cpus)
        self._outputs.append(output)
        self.ran_on = frozenset(os.sched_getaffinity(self._process.pid))

    def stop(self) -> None:
        """Stop it by its PID (SIGTERM, then SIGKILL); RuntimeError if it had stopped by itself."""
        process, self._process = self._process, None
        if process is None:
            return
        exited = process.popen.poll()
        process.stop(grace_seconds=5.0)
        if exited is not None:
            raise RuntimeError(f"the stress scraper exited by itself ({exited}); see {process.log_path}")

    def scrapes(self) -> list[ScrapeLine]:
        return [
            ScrapeLine.parse(line)
            for output in self._outputs
            if output.exists()
            for line in output.read_text(encoding="utf-8").splitlines()
        ]


class Bench:
    """The shared state of one run: the phase, the cycles seen, scrapes and memory samples."""

    def __init__(self, exporter: ExporterProcess, workdir: Path, plan: Plan) -> None:
        self.exporter = exporter
        self.started = time.monotonic()
        # (monotonic time, phase) from each change on: the stress scraper's lines are placed by their time.
        self._marks: list[tuple[float, str]] = [(self.started, "starting")]  # until the first cycle
        self.cycles: list[Cycle] = []
        self.scrapes: list[Scrape] = []
        self.rss: list[RssSample] = []
        self.stop = threading.Event()
        self.stress = StressScraper(
            exporter.url, workdir, plan.stress_gzip_only, plan.pin.others if plan.pin else None
        )
        self.periodic = threading.Event()
        self.periodic.set()
        self._changed = threading.Condition()
        self.threads = [
            threading.Thread(target=self._follow_log, daemon=True),
            threading.Thread(target=self._sample_memory, daemon=True),
        ]

    @property
    def phase(self) -> str:
        return self._marks[-1][1]

    @phase.setter
    def phase(self, name: str) -> None:
        self._marks.append((time.monotonic(), name))

    def phase_at(self, moment: float) -> str:
        index = bisect.bisect_right(self._marks, moment, key=lambda mark: mark[0])
        return self._marks[max(index - 1, 0)][1]

    def all_scrapes(self) -> list[Scrape]:
        """The Prometheus-like scrapes and the stress scraper's, each in the phase it was sent in."""
        back_to_back = [
            Scrape(
                self.phase_at(line.sent_at),
                line.variant,
                line.milliseconds / 1000,
                line.status == 200,
                line.size,
                True,
            )
            for line in self.stress.scrapes()
        ]
        return [*self.scrapes, *back_to_back]

    def start(self, scrape_every: float) -> None:
        for variant in (TEXT_GZIP, OPENMETRICS_GZIP):
            self.threads.append(
                threading.Thread(target=self._periodic, args=(variant, scrape_every), daemon=True)
            )
        for thread in self.threads:
            thread.start()

    def close(self) -> None:
        self.stop.set()
        self.periodic.set()
        try:
            self.stress.stop()
        finally:
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
            self.scrapes.append(Scrape(phase, variant.label, time.perf_counter() - started, False, 0, False))
            return
        self.scrapes.append(
            Scrape(phase, variant.label, elapsed, response.status_code == 200, len(body), False)
        )

    def _periodic(self, variant: Variant, every: float) -> None:
        with requests.Session() as session:
            while not self.stop.wait(every):
                self.periodic.wait()
                if not self.stop.is_set():
                    self._scrape(session, variant)


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
    cpus: dict[str, frozenset[int]] = field(default_factory=dict)  # what each process could run on
    changed_elsewhere: int = 0  # with the audit log: jobs created, and as many deleted, behind its back
    audit_counts: dict[str, float] = field(default_factory=dict)  # ccs_audit_* at the end, by action
    audit_log_bytes: int = 0


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def measure(plan: Plan, workdir: Path) -> Result:
    result = Result(plan)
    result.load = (os.getloadavg()[0], 0.0)
    started = time.monotonic()
    # A cycle may take as long as reading every job's runs one request after another on the workers.
    slow = 120 + plan.jobs * (plan.latency_ms / 1000 + 0.004) * 2
    exporter_cpus, other_cpus = (plan.pin.exporter, plan.pin.others) if plan.pin else (None, None)
    with pinned(other_cpus), SimulatorProcess(plan.jobs, plan.latency_ms, workdir, other_cpus) as sim:
        settings: dict[str, object] = {"job_ids": [], "job_search": [SEARCH], "log_level": "info"}
        audit_log = workdir / "audit.jsonl"
        if plan.audit:  # with an audit log, serve records the changes it observes (docs/audit-trail.md)
            settings["audit_log"] = str(audit_log)
        progress(f"{plan.jobs:,} jobs: serve, discovery (cold start), scraped every {plan.scrape_every:g} s")
        launched = time.monotonic()
        with ExporterProcess(
            sim,
            plan.concurrency,
            workdir,
            plan.interval,
            extra_settings=settings,
            env=plan.env,
            cpus=exporter_cpus,
        ) as exporter:
            result.cpus = {
                name: frozenset(os.sched_getaffinity(pid))
                for name, pid in (("exporter", exporter.pid), ("simulator", sim.pid), ("this process", 0))
            }
            bench = Bench(exporter, workdir, plan)
            bench.start(plan.scrape_every)
            try:
                exporter.wait_ready(slow)
                result.discovery_seconds = time.monotonic() - launched
                bench.phase = "cold start"
                result.rss_at_ready_kib = exporter.memory_kib()["VmRSS"]
                result.first_cycle = bench.first_cycle(slow)
                progress("cold start: scraped back to back for two more cycles")
                bench.stress.start()
                bench.wait_cycles(2, slow)
                bench.stress.stop()
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
                bench.stress.start()
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
                bench.stress.stop()
                if plan.audit:
                    result.changed_elsewhere = change_elsewhere(bench, sim, plan, slow)
                if plan.soak_minutes > 0:
                    progress(f"soak: {plan.soak_minutes:g} min, scraped every {plan.scrape_every:g} s")
                    bench.phase = "soak"
                    if plan.soak_stress:
                        bench.stress.start()
                    first = len(bench.cycles)
                    time.sleep(plan.soak_minutes * 60)
                    bench.stress.stop()
                    result.soak_cycles = len(bench.cycles) - first
                result.hwm_kib = exporter.memory_kib()["VmHWM"]
                # Its own phase: a plain scrape makes the exposition's plain copy (22 MB at 10,000 jobs),
                # which a gzip-only soak never held.
                bench.phase = "the end (each variant once, plain included)"
                result.sizes = body_sizes(exporter.url)
                if plan.audit:
                    result.audit_counts = audit_counts(exporter.url)
                    result.audit_log_bytes = audit_log.stat().st_size
            finally:
                bench.close()
            result.scrapes = bench.all_scrapes()
            result.cpus["stress scraper"] = bench.stress.ran_on
            result.rss = list(bench.rss)
    result.load = (result.load[0], os.getloadavg()[0])
    result.elapsed = time.monotonic() - started
    return result


def change_elsewhere(bench: Bench, sim: SimulatorProcess, plan: Plan, slow: float) -> int:
    """Create jobs and delete as many behind the exporter's back; wait until it recorded them (audit log)."""
    count = max(5, plan.jobs // 100)
    progress(f"audit: {count} jobs created and {count} deleted elsewhere, recorded as observed changes")
    bench.phase = "changed elsewhere (audit)"
    for index in range(count):
        sim.control("POST", "jobs", {"Name": f"Generated elsewhere {index}"})  # found by the search
    for job_id in sim.job_ids[:count]:
        sim.control("DELETE", f"jobs/{job_id}")
    for _ in range(5):  # the next listing shows both; a job gone is looked up by id once (404)
        bench.wait_cycles(1, slow)
        counts = audit_counts(bench.exporter.url)
        if min(counts.get("job.created", 0), counts.get("job.deleted", 0)) >= count:
            break
    return count


def audit_counts(url: str) -> dict[str, float]:
    """The exporter's own count of audit records by action (``ccs_audit_records_total``), and write errors."""
    counts: dict[str, float] = {}
    wanted = {
        "name[]": ["ccs_audit_records_total", "ccs_audit_write_errors_total"]
    }  # not 10,000 jobs' series
    response = requests.get(f"{url}/metrics", params=wanted, headers=TEXT_GZIP.headers, timeout=60)
    response.raise_for_status()
    for line in response.text.splitlines():
        if line.startswith("ccs_audit_records_total{"):
            match = re.search(r'action="([^"]*)"', line)
            action = match[1] if match else "?"
            counts[action] = counts.get(action, 0.0) + float(line.rsplit(" ", 1)[1])
        elif line.startswith("ccs_audit_write_errors_total "):
            counts["write errors"] = float(line.rsplit(" ", 1)[1])
    return counts


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
