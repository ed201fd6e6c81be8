"""The scale benchmark's report: one Markdown table of a run's figures, as benchmarks/README.md shows them."""

from __future__ import annotations

import statistics

from benchmarks import measures
from benchmarks.run import machine
from benchmarks.scale_run import PHASES, SEARCH, Plan, Result, RssSample, Scrape, cpu_list
from benchmarks.scrapers import OPENMETRICS_GZIP, TEXT_GZIP, VARIANTS, stress_variants


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
    lines += latency_rows(result)
    if plan.audit:
        lines += audit_rows(result)
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


def latency_rows(result: Result) -> list[tuple[str, str]]:
    """p50 / p99 of the back-to-back scrapes by phase and variant, and of the periodic ones elsewhere."""
    plan = result.plan
    lines: list[tuple[str, str]] = []
    stressed = (*PHASES, "soak") if plan.soak_stress else PHASES
    back_to_back = [scrape for scrape in result.scrapes if scrape.back_to_back]
    periodic = [scrape for scrape in result.scrapes if not scrape.back_to_back]
    for phase in stressed:
        for variant in stress_variants(plan.stress_gzip_only):
            scrapes = [s for s in back_to_back if s.phase == phase and s.variant == variant.label]
            lines.append(
                (f"/metrics {phase}, {variant.label} (back to back): p50 / p99 ms", latency_cell(scrapes))
            )
    for variant in (TEXT_GZIP, OPENMETRICS_GZIP):
        scrapes = [s for s in periodic if s.variant == variant.label and s.phase not in stressed]
        lines.append(
            (
                f"/metrics every {plan.scrape_every:g} s, {variant.label}, other phases: p50 / p99 ms",
                latency_cell(scrapes),
            )
        )
    return lines


def audit_rows(result: Result) -> list[tuple[str, str]]:
    counts = result.audit_counts
    records = sum(value for action, value in counts.items() if action != "write errors")
    return [
        (
            "audit: jobs created / deleted elsewhere, recorded as observed",
            f"{counts.get('job.created', 0):g} / {counts.get('job.deleted', 0):g} "
            f"of {result.changed_elsewhere} each",
        ),
        (
            "audit log at the end: records / KiB / write errors",
            f"{records:g} / {result.audit_log_bytes / 1024:,.0f} / {counts.get('write errors', 0):g}",
        ),
    ]


def minute_maxima(samples: list[RssSample]) -> list[int]:
    maxima: dict[int, int] = {}
    for sample in samples:
        minute = int(sample.seconds // 60)
        maxima[minute] = max(maxima.get(minute, 0), sample.rss_kib)
    return [maxima[minute] for minute in sorted(maxima)]


def cpu_placement(result: Result) -> str:
    """Where each process could run, as read from the system during the run."""
    placed = ", ".join(f"{name} {cpu_list(cpus)}" for name, cpus in result.cpus.items())
    return f"{'pinned' if result.plan.pin else 'not pinned'} ({placed})"


def scrape_pattern(plan: Plan) -> str:
    soak = f"{plan.soak_minutes:g} min of soak{' with the stress scraper' if plan.soak_stress else ''}"
    encodings = "gzip only (as Prometheus asks)" if plan.stress_gzip_only else "plain and gzip"
    return (
        f"stress {'gzip only' if plan.stress_gzip_only else 'plain+gzip'}: two scrapers every "
        f"{plan.scrape_every:g} s all along (text + gzip, OpenMetrics + gzip); in the stress phases a third, "
        f"in its own process, back to back turning through text and OpenMetrics, {encodings}; {soak}"
    )


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
            f"{plan.interval:g} s; extra environment: {env}; audit log "
            f"{'on (observed changes recorded)' if plan.audit else 'off'}",
            f"- CPUs: {cpu_placement(result)}",
            f"- scrape pattern: {scrape_pattern(plan)}",
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
