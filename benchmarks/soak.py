"""Soak benchmark: run `ccs-exporter serve` for a long stretch against the simulator with faults switching.

    python benchmarks/soak.py --minutes 10

The exporter runs as a subprocess at a short poll interval while this script switches the simulator's
faults on and off (hangs, 500s, malformed JSON, dropped connections, revoked tokens, refused logins, CCS
down and back), scrapes /metrics all along, and samples the exporter's resident memory, threads, open
file descriptors and sockets from /proc. It prints the samples and a verdict: "flat" when the samples at
the end are within a tolerance of the warm-up ones, "GROWING" otherwise (exit code 1). Linux only.
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ccs_exporter.simulator import Simulator

# Faults in the order they are switched on; each is followed by a phase without faults.
FAULTS = ("hang", "errors", "malformed", "drop", "revoke", "wrong_password", "down", "latency")


@dataclass(frozen=True)
class Sample:
    """One reading of the exporter process."""

    seconds: float
    phase: str
    rss_kib: int
    threads: int
    fds: int
    sockets: int


def process_sample(pid: int, seconds: float, phase: str) -> Sample:
    """Resident memory and thread count from /proc/PID/status, descriptors and sockets from /proc/PID/fd."""
    status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    rss_kib = int(fields["VmRSS"].split()[0])
    threads = int(fields["Threads"])
    links = []
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            links.append(os.readlink(f"/proc/{pid}/fd/{name}"))
        except OSError:
            continue  # closed while we looked
    sockets = sum(1 for link in links if link.startswith("socket:"))
    return Sample(seconds, phase, rss_kib, threads, len(links), sockets)


def free_port() -> int:
    """A TCP port that is free right now on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Ccs:
    """The simulator, restartable on the same port to play "CCS down" and "CCS back"."""

    def __init__(self, run_interval: float) -> None:
        self._run_interval = run_interval
        self.sim = Simulator(port=0, run_interval=run_interval).start()
        self.port = self.sim.port

    def down(self) -> None:
        self.sim.stop()

    def up(self) -> None:
        deadline = time.monotonic() + 10
        while True:
            try:
                self.sim = Simulator(port=self.port, run_interval=self._run_interval).start()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def apply(self, fault: str) -> None:
        faults = self.sim.faults
        if fault == "hang":
            faults.hang = True
        elif fault == "errors":
            faults.error_rate = 1.0
        elif fault == "malformed":
            faults.malformed_json = True
        elif fault == "drop":
            faults.drop_connections = True
        elif fault == "revoke":
            self.sim.revoke_tokens()
        elif fault == "wrong_password":
            self.sim.revoke_tokens()
            faults.reject_logins = True
        elif fault == "latency":
            faults.latency_seconds = 0.3
        elif fault == "down":
            self.down()

    def clear(self, fault: str) -> None:
        if fault == "down":
            self.up()
        else:
            self.sim.faults.clear()


class Scraper(threading.Thread):
    """Scrapes /metrics every half second; counts failures and remembers the slowest answer."""

    def __init__(self, url: str) -> None:
        super().__init__(name="soak-scraper", daemon=True)
        self.url = url
        self.stopping = threading.Event()
        self.scrapes = 0
        self.failures = 0
        self.slowest = 0.0

    def run(self) -> None:
        while not self.stopping.wait(0.5):
            started = time.monotonic()
            try:
                ok = requests.get(self.url, timeout=5).status_code == 200
            except requests.RequestException:
                ok = False
            self.slowest = max(self.slowest, time.monotonic() - started)
            self.scrapes += 1
            self.failures += 0 if ok else 1


def start_exporter(ccs: Ccs, port: int, interval: float, log_path: Path) -> subprocess.Popen[bytes]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CCS_EXPORTER_")}
    env.update(
        CCS_EXPORTER_URL=ccs.sim.url,
        CCS_EXPORTER_USERNAME=ccs.sim.username,
        CCS_EXPORTER_PASSWORD=ccs.sim.password,
        CCS_EXPORTER_JOB_IDS=",".join(ccs.sim.job_ids),
        CCS_EXPORTER_LISTEN_ADDRESS=f"127.0.0.1:{port}",
        CCS_EXPORTER_POLL_INTERVAL_SECONDS=str(interval),
        CCS_EXPORTER_REQUEST_TIMEOUT_SECONDS="1",
        CCS_EXPORTER_LOG_LEVEL="warning",
        CCS_EXPORTER_LOG_FORMAT="json",
    )
    with log_path.open("wb") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "ccs_exporter", "serve"], env=env, stdout=log_file, stderr=log_file
        )


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the exporter exited early with code {process.returncode}")
        try:
            if requests.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit("the exporter did not become ready")


def wait_up(url: str, timeout: float) -> bool:
    """Wait until /metrics says ccs_up 1; False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if "\nccs_up 1.0" in requests.get(url, timeout=5).text:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.5)
    return False


def verdict(
    warmup: list[Sample], end: list[Sample], rss_ratio: float, rss_slack_kib: int, threads: int, fds: int
) -> list[str]:
    """Problems found comparing the end samples with the warm-up ones (empty: flat)."""
    problems = []
    warm_rss = max(sample.rss_kib for sample in warmup)
    end_rss = statistics.median(sample.rss_kib for sample in end)
    if end_rss > max(warm_rss * rss_ratio, warm_rss + rss_slack_kib):
        problems.append(f"RSS {warm_rss / 1024:.1f} MiB -> {end_rss / 1024:.1f} MiB")
    for name, bound in (("threads", threads), ("fds", fds), ("sockets", fds)):
        warm = max(getattr(sample, name) for sample in warmup)
        last = min(getattr(sample, name) for sample in end)
        if last > warm + bound:
            problems.append(f"{name} {warm} -> {last}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to run (default 10)")
    parser.add_argument("--interval", type=float, default=0.5, help="exporter poll interval (default 0.5 s)")
    parser.add_argument("--phase-seconds", type=float, default=20.0, help="length of each fault phase")
    parser.add_argument("--sample-seconds", type=float, default=15.0, help="seconds between samples")
    parser.add_argument("--warmup-minutes", type=float, default=2.0, help="samples before this are warm-up")
    parser.add_argument("--run-interval", type=float, default=3.0, help="simulated job run interval")
    args = parser.parse_args(argv)

    ccs = Ccs(args.run_interval)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = Path(tempfile.mkdtemp(prefix="ccs-soak-")) / "exporter.log"
    process = start_exporter(ccs, port, args.interval, log_path)
    scraper = Scraper(f"{url}/metrics")
    samples: list[Sample] = []
    started = time.monotonic()
    duration = args.minutes * 60
    try:
        wait_ready(url, process)
        scraper.start()
        phases = itertools.cycle(itertools.chain.from_iterable((fault, "none") for fault in FAULTS))
        next_sample = time.monotonic()
        print(f"soak: exporter pid {process.pid}, {args.minutes:g} min, interval {args.interval:g} s")
        print(f"{'t (s)':>7} {'phase':<15} {'RSS MiB':>8} {'threads':>7} {'fds':>5} {'sockets':>7}")
        while time.monotonic() - started < duration:
            phase = next(phases)
            ccs.apply(phase)
            phase_end = min(time.monotonic() + args.phase_seconds, started + duration)
            while time.monotonic() < phase_end:
                if process.poll() is not None:
                    raise SystemExit(f"the exporter died with code {process.returncode} (log: {log_path})")
                if time.monotonic() >= next_sample:
                    sample = process_sample(process.pid, time.monotonic() - started, phase)
                    samples.append(sample)
                    print(
                        f"{sample.seconds:7.0f} {phase:<15} {sample.rss_kib / 1024:8.1f} "
                        f"{sample.threads:7d} {sample.fds:5d} {sample.sockets:7d}",
                        flush=True,
                    )
                    next_sample += args.sample_seconds
                time.sleep(0.2)
            ccs.clear(phase)
        # End on a quiet exporter: faults off, recovered (a refused login first waits out its backoff),
        # then the final readings.
        up = wait_up(f"{url}/metrics", timeout=90)
        time.sleep(max(5.0, 4 * args.interval))
        end = []
        for _ in range(3):
            end.append(process_sample(process.pid, time.monotonic() - started, "end"))
            time.sleep(1)
    finally:
        scraper.stopping.set()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        ccs.sim.stop()

    warmup = [sample for sample in samples if sample.seconds <= args.warmup_minutes * 60] or samples[:1]
    problems = verdict(warmup, end, rss_ratio=1.15, rss_slack_kib=8 * 1024, threads=3, fds=6)
    first, last = warmup[0], end[-1]
    print()
    print(f"duration: {(time.monotonic() - started) / 60:.1f} min, {len(samples)} samples, log {log_path}")
    print(
        f"start:    RSS {first.rss_kib / 1024:.1f} MiB, threads {first.threads}, fds {first.fds}, "
        f"sockets {first.sockets}"
    )
    print(
        f"warm-up:  RSS max {max(s.rss_kib for s in warmup) / 1024:.1f} MiB, "
        f"threads max {max(s.threads for s in warmup)}, fds max {max(s.fds for s in warmup)}"
    )
    print(
        f"end:      RSS {last.rss_kib / 1024:.1f} MiB, threads {last.threads}, fds {last.fds}, "
        f"sockets {last.sockets}"
    )
    print(
        f"scrapes:  {scraper.scrapes}, failed {scraper.failures}, slowest {scraper.slowest:.3f} s; "
        f"ccs_up at the end: {1 if up else 0}; exporter exit code {process.returncode}"
    )
    print("verdict:  " + ("flat" if not problems else "GROWING: " + "; ".join(problems)))
    return 0 if not problems and scraper.failures == 0 and up else 1


if __name__ == "__main__":
    raise SystemExit(main())
