"""Where the exporter's memory goes at N jobs found by one search: a tracemalloc breakdown by holder.

    python benchmarks/memory_profile.py                 # 10,000 jobs (a few minutes: tracing is slow)
    python benchmarks/memory_profile.py --jobs 1000

The simulator runs as its own process (no latency); this process runs the exporter's pipeline
(``CcsClient`` + ``Poller`` with one search + ``ExpositionStore``) under tracemalloc: a cold cycle, then
cycles at rest. It prints what is held between cycles (after the last publish) by the part of the code
that allocated it, the exposition's own bytes by kind (sample parts, headers, gzip members), the peak
traced during a cycle at rest and during its publish, and what a listing holds while a cycle runs; then a
cycle where every job changed (a new run for each: every search item parsed again, every job's runs read),
its peak and what it holds on top of the state at rest when it ends, before its publish.
Python objects only: what the allocator keeps beyond them (fragmentation, arenas) shows as the
difference to the process's RSS, printed too.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
import tracemalloc
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from pydantic import SecretStr  # noqa: E402

from benchmarks.processes import SimulatorProcess  # noqa: E402
from ccs_exporter.cli.logs import configure_logging  # noqa: E402
from ccs_exporter.client import CcsClient  # noqa: E402
from ccs_exporter.exposition.renderer import ExpositionStore  # noqa: E402
from ccs_exporter.polling.cycle import Poller  # noqa: E402
from ccs_exporter.polling.workers import WorkerPool  # noqa: E402

SEARCH = "(JobName StartsWith Generated)"
MB = 1024 * 1024


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def holder(trace: tracemalloc.Trace | tracemalloc.StatisticDiff | tracemalloc.Statistic) -> str:
    """The innermost frame in the package (or the benchmark), as module:function-ish file:line."""
    frames = list(reversed(trace.traceback))  # most recent first
    for frame in frames:
        if "/ccs_exporter/" in frame.filename:
            return f"{frame.filename.split('/ccs_exporter/')[1]}:{frame.lineno}"
    first = frames[0]
    return f"{Path(first.filename).name}:{first.lineno}"


def breakdown(snapshot: tracemalloc.Snapshot, top: int) -> list[tuple[str, int, int]]:
    sizes: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for stat in snapshot.statistics("traceback"):
        entry = sizes[holder(stat)]
        entry[0] += stat.size
        entry[1] += stat.count
    ordered = sorted(sizes.items(), key=lambda item: -item[1][0])
    return [(name, size, count) for name, (size, count) in ordered[:top]]


def exposition_bytes(store: ExpositionStore) -> dict[str, int]:
    current = store.current
    assert current is not None
    seen: set[int] = set()
    kinds: dict[str, int] = defaultdict(int)
    for family in current.families:
        for kind, parts in (
            ("text", family.text),
            ("openmetrics", family.openmetrics),
            ("text gzip", family.text_gzip),
            ("openmetrics gzip", family.openmetrics_gzip),
        ):
            for part in parts:
                if id(part) in seen:
                    continue
                seen.add(id(part))
                kinds[kind] += sys.getsizeof(part)
    return dict(kinds)


def print_diff(diff: list[tracemalloc.StatisticDiff], top: int) -> None:
    sizes: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for stat in diff:
        entry = sizes[holder(stat)]
        entry[0] += stat.size_diff
        entry[1] += stat.count_diff
    for name, (size, count) in sorted(sizes.items(), key=lambda item: -item[1][0])[:top]:
        print(f"  {size / MB:8.2f} MiB {count:9,} blocks  {name}")


def print_changed_cycle(poller: Poller, store: ExpositionStore, sim: SimulatorProcess, top: int) -> None:
    """The cycle where every job changed: its peak, its publish's, and what it holds when it ends."""
    sim.control("POST", "finish-runs", {"Status": 5, "Messages": {"Error": 1}})
    gc.collect()
    rest = tracemalloc.take_snapshot()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    snapshot = poller.poll_cycle()
    held, cycle_peak = tracemalloc.get_traced_memory()
    ended = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    tracemalloc.reset_peak()
    before_publish = tracemalloc.get_traced_memory()[0]
    store.publish(snapshot)
    publish_peak = tracemalloc.get_traced_memory()[1] - before_publish
    print("\nthe cycle where every job changed (a new run for each)")
    print(f"- peak added during the cycle: {(cycle_peak - before) / MB:.1f} MiB")
    print(f"- held when it ends, before its publish: {(held - before) / MB:.1f} MiB more than at rest")
    print(f"- peak added during its publish (render + gzip): {publish_peak / MB:.1f} MiB")
    print(f"- process RSS now: {rss_mib():.0f} MiB")
    print("held when it ends on top of the state at rest, by where it was allocated:")
    print_diff(ended.compare_to(rest, "traceback"), top)
    del snapshot, ended
    for _ in range(2):  # at rest again: what stays is held for good (or kept by the allocator)
        store.publish(poller.poll_cycle())
    gc.collect()
    after = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    added = sum(stat.size_diff for stat in after.compare_to(rest, "filename"))
    print(f"- two cycles later, at rest: {added / MB:.1f} MiB more than before it; RSS {rss_mib():.0f} MiB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--rest-cycles", type=int, default=3)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    configure_logging("error", "json")
    with (
        tempfile.TemporaryDirectory(prefix="ccs-memory-profile-") as workdir,
        SimulatorProcess(args.jobs, 0.0, Path(workdir)) as sim,
    ):
        client = CcsClient(sim.url, sim.username, SecretStr(sim.password), pool_size=8, timeout=60.0)
        poller = Poller(client, [], searches=[SEARCH], page_size=100, concurrency=8)
        store = ExpositionStore()
        print(f"RSS before tracing: {rss_mib():.0f} MiB", flush=True)
        tracemalloc.start(12)
        gc.collect()
        base = tracemalloc.take_snapshot()
        started = time.monotonic()
        store.publish(poller.poll_cycle())
        print(f"cold cycle: {time.monotonic() - started:.0f} s (traced)", flush=True)
        sim.control("POST", "finish-runs", {"Status": 4, "RunningOnly": True})
        store.publish(poller.poll_cycle())
        cycle_peaks, publish_peaks = [], []
        for _ in range(args.rest_cycles):
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            snapshot = poller.poll_cycle()
            cycle_peaks.append(tracemalloc.get_traced_memory()[1] - before)
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            store.publish(snapshot)
            publish_peaks.append(tracemalloc.get_traced_memory()[1] - before)
            del snapshot
        gc.collect()
        held = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        total_held = sum(stat.size for stat in held.compare_to(base, "filename"))
        # What a listing holds while a cycle runs: the search items of every job.
        pool = WorkerPool(1)
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        discovery = poller._discoverer.discover(pool, time.time())
        listing_held = tracemalloc.get_traced_memory()[0] - before
        listing_peak = tracemalloc.get_traced_memory()[1] - before
        items = len(discovery.fresh)
        item_text = sum(len(item.text) for item in discovery.fresh.values())
        del discovery
        pool.close()
        print(f"\n{args.jobs:,} jobs, after {args.rest_cycles} cycles at rest (traced Python objects)")
        print(f"- held between cycles, traced since before the first cycle: {total_held / MB:.1f} MiB")
        print(f"- process RSS now: {rss_mib():.0f} MiB (tracemalloc's own bookkeeping included)")
        print(f"- peak added during a cycle at rest: {max(cycle_peaks) / MB:.1f} MiB")
        print(f"- peak added during its publish (render + gzip): {max(publish_peaks) / MB:.1f} MiB")
        print(
            f"- a listing held while the cycle runs: {listing_held / MB:.1f} MiB "
            f"({items:,} items, {item_text / MB:.1f} MiB of JSON text; peak {listing_peak / MB:.1f} MiB)"
        )
        print("- the exposition's bytes objects by kind:")
        for kind, size in exposition_bytes(store).items():
            print(f"    {kind}: {size / 1024:,.0f} KiB")
        print("\nheld between cycles, by where it was allocated (innermost package frame):")
        print_diff(held.compare_to(base, "traceback"), args.top)
        print_changed_cycle(poller, store, sim, args.top)
        tracemalloc.stop()
        poller.close()
        client.close()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    sys.exit(main())
