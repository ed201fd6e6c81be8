"""Flood benchmarks for the exporter's HTTP server: idle and slow connections, wrong-password floods.

    python benchmarks/web_floods.py            # 600 and 3,000 idle connections, 10 s password floods
    python benchmarks/web_floods.py --quick    # 100 idle connections, 2 s floods: a smoke run

``python -m ccs_exporter serve`` runs as its own process against the simulator (its own process too),
protected by basic auth (one user, a bcrypt hash of cost 10, the cost htpasswd examples use). For each
attack the script prints the exporter's thread count (from /proc), the latency of real scrapes made
meanwhile with the right password (a new connection each, as after a Prometheus restart), and for the
password floods the exporter's CPU (user + system, from /proc, in cores). Linux only. Every connection
goes to 127.0.0.1 (the password floods also come from 127.0.0.2-9: still loopback); every attack stops by
itself after a bounded time, and each process is stopped by its PID.
"""

from __future__ import annotations

import argparse
import http.client
import os
import secrets
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout without installing

import bcrypt  # noqa: E402
import requests  # noqa: E402

from benchmarks import measures  # noqa: E402
from benchmarks.processes import ExporterProcess, SimulatorProcess  # noqa: E402

USER, PASSWORD = "prometheus", "flood-benchmark-Pw-7"
FLOOD_CLIENTS = 8


@dataclass(frozen=True)
class Plan:
    """How hard each attack pushes."""

    idle_counts: list[int]
    hold_seconds: float
    slowloris_seconds: float
    flood_seconds: float
    scrapes: int


@dataclass
class AttackFigures:
    """What one attack did to the exporter."""

    name: str
    threads_max: int = 0
    scrape_seconds: list[float] = field(default_factory=list)
    scrape_failures: int = 0
    cpu_cores: float | None = None
    answers: Counter[str] = field(default_factory=Counter)
    note: str = ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--idle", default="600,3000", help="idle connection counts, comma-separated")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each password flood (10)")
    parser.add_argument("--quick", action="store_true", help="100 idle connections, 2 s floods: a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        plan = Plan([100], 1.0, 3.0, 2.0, 5)
    else:
        plan = Plan([int(n) for n in args.idle.split(",")], 5.0, 13.0, args.seconds, 30)
    for name in ("NO_PROXY", "no_proxy"):
        os.environ[name] = ",".join(filter(None, (os.environ.get(name), "127.0.0.1", "localhost")))
    with tempfile.TemporaryDirectory(prefix="ccs-floods-") as tmp:
        workdir = Path(tmp)
        web_config = workdir / "web.yml"
        hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()
        web_config.write_text(f"basic_auth_users:\n  {USER}: '{hashed}'\n", encoding="utf-8")
        with SimulatorProcess(jobs=20, latency_ms=0, workdir=workdir) as sim:
            exporter = ExporterProcess(
                sim, 4, workdir, poll_interval=5.0, extra_settings={"web_config_file": str(web_config)}
            )
            with exporter:
                exporter.wait_ready(60)
                figures = run_attacks(exporter, plan)
    print(render(figures))
    return 0


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_attacks(exporter: ExporterProcess, plan: Plan) -> list[AttackFigures]:
    results = [measure("at rest", exporter, plan, lambda: time.sleep(plan.hold_seconds))]
    for count in plan.idle_counts:
        progress(f"{count} idle connections")
        with idle_connections(exporter.port, count) as opened:
            result = measure(
                f"{count} idle connections", exporter, plan, lambda: time.sleep(plan.hold_seconds)
            )
            result.note = f"{len(opened())} opened, {closed_count(opened)} closed by the exporter"
        results.append(result)
        settle(exporter)
    count = plan.idle_counts[0]
    progress(f"{count} slowloris connections for {plan.slowloris_seconds:g} s")
    with slowloris(exporter.port, count, plan.slowloris_seconds) as state:
        result = measure(
            f"{count} slowloris connections (a header byte per second)",
            exporter,
            plan,
            lambda: state.finished.wait(plan.slowloris_seconds + 5),
        )
        result.note = f"{state.closed} of {count} closed by the exporter within {plan.slowloris_seconds:g} s"
    results.append(result)
    settle(exporter)
    for sources in (["127.0.0.1"], [f"127.0.0.{n}" for n in range(2, 2 + FLOOD_CLIENTS)]):
        where = "127.0.0.1" if len(sources) == 1 else f"{len(sources)} addresses"
        name = f"wrong-password flood, {FLOOD_CLIENTS} clients from {where}"
        progress(name)
        results.append(password_flood(name, exporter, plan, sources))
        settle(exporter)
    return results


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def settle(exporter: ExporterProcess, seconds: float = 2.0) -> None:
    """Give the exporter time to close what the last attack left behind."""
    time.sleep(seconds)


def scrape_once(url: str) -> float | None:
    """One authenticated scrape on a new connection; its latency, or None when it failed."""
    started = time.perf_counter()
    try:
        response = requests.get(f"{url}/metrics", auth=(USER, PASSWORD), timeout=10)
    except requests.RequestException:
        return None
    elapsed = time.perf_counter() - started
    return elapsed if response.status_code == 200 and b"ccs_up" in response.content else None


def measure(name: str, exporter: ExporterProcess, plan: Plan, during: Callable[[], object]) -> AttackFigures:
    """Run ``during`` while sampling threads and scraping; the figures of that stretch."""
    figures = AttackFigures(name)
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.1):
            figures.threads_max = max(figures.threads_max, threads_of(exporter.pid))

    def scrape() -> None:
        for _ in range(plan.scrapes):
            if done.is_set():
                break
            latency = scrape_once(exporter.url)
            if latency is None:
                figures.scrape_failures += 1
            else:
                figures.scrape_seconds.append(latency)
            time.sleep(0.1)

    figures.threads_max = threads_of(exporter.pid)
    sampler = threading.Thread(target=sample, daemon=True)
    scraper = threading.Thread(target=scrape, daemon=True)
    sampler.start()
    time.sleep(0.5)  # the attack is under way before the first scrape
    scraper.start()
    during()
    done.set()
    scraper.join(60)
    sampler.join(5)
    return figures


@contextmanager
def idle_connections(port: int, count: int) -> Iterator[Callable[[], list[socket.socket]]]:
    """``count`` TCP connections to the exporter that send nothing; closed on exit."""
    opened: list[socket.socket] = []
    for _ in range(count):
        try:
            opened.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        except OSError:
            break
    try:
        yield lambda: opened
    finally:
        for connection in opened:
            connection.close()


def closed_count(opened: Callable[[], list[socket.socket]]) -> int:
    """How many of the connections the server has closed (a read sees EOF or a reset at once)."""
    closed = 0
    for connection in opened():
        connection.setblocking(False)
        try:
            if connection.recv(1, socket.MSG_PEEK) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    return closed


@dataclass
class SlowlorisState:
    finished: threading.Event = field(default_factory=threading.Event)
    closed: int = 0


@contextmanager
def slowloris(port: int, count: int, seconds: float) -> Iterator[SlowlorisState]:
    """``count`` connections that start a request and send one more header byte per second each."""
    state = SlowlorisState()
    connections: list[socket.socket] = []
    for _ in range(count):
        try:
            connection = socket.create_connection(("127.0.0.1", port), timeout=5)
            connection.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            connections.append(connection)
        except OSError:
            break
    alive = set(range(len(connections)))

    def trickle() -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and alive:
            for index in list(alive):
                try:
                    connections[index].send(b"a")
                except OSError:
                    alive.discard(index)
            time.sleep(1.0)
        state.closed = len(connections) - len(alive)
        state.finished.set()

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        thread.join(seconds + 10)
        for connection in connections:
            connection.close()


def password_flood(name: str, exporter: ExporterProcess, plan: Plan, sources: list[str]) -> AttackFigures:
    """``FLOOD_CLIENTS`` clients sending requests with a new wrong password each, for a bounded time."""
    answers: Counter[str] = Counter()
    lock = threading.Lock()
    stop = threading.Event()

    def client(source: str) -> None:
        connection: http.client.HTTPConnection | None = None
        while not stop.is_set():
            if connection is None:
                connection = http.client.HTTPConnection(
                    "127.0.0.1", exporter.port, timeout=10, source_address=(source, 0)
                )
            token = _basic(USER, "wrong-" + secrets.token_hex(8))
            try:
                connection.request("GET", "/metrics", headers={"Authorization": token})
                response = connection.getresponse()
                response.read()
                outcome = str(response.status)
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException):
                outcome = "connection error"
                connection.close()
                connection = None
            with lock:
                answers[outcome] += 1
        if connection is not None:
            connection.close()

    clients = [
        threading.Thread(target=client, args=(sources[n % len(sources)],), daemon=True)
        for n in range(FLOOD_CLIENTS)
    ]
    cpu: list[float] = []

    def flood() -> None:
        cpu_before, started = exporter.cpu_seconds(), time.monotonic()
        for thread in clients:
            thread.start()
        stop.wait(plan.flood_seconds)
        stop.set()
        for thread in clients:
            thread.join(30)
        cpu.append((exporter.cpu_seconds() - cpu_before) / (time.monotonic() - started))

    figures = measure(name, exporter, plan, flood)
    figures.cpu_cores = cpu[0]
    figures.answers = answers
    return figures


def _basic(user: str, password: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def render(results: list[AttackFigures]) -> str:
    header = ("attack", "threads (max)", "scrapes: p50 / max ms (failed)", "exporter CPU", "notes")
    rows = [header]
    for figures in results:
        latencies = figures.scrape_seconds
        scrapes = (
            f"{measures.median(latencies) * 1000:.1f} / {max(latencies) * 1000:.1f}"
            f" ({figures.scrape_failures})"
            if latencies
            else f"none answered ({figures.scrape_failures})"
        )
        cpu = f"{figures.cpu_cores:.2f} cores" if figures.cpu_cores is not None else ""
        notes = figures.note
        if figures.answers:
            notes = ", ".join(f"{count} x {status}" for status, count in sorted(figures.answers.items()))
        rows.append((figures.name, str(figures.threads_max), scrapes, cpu, notes))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + " |"
        for row in rows
    ]
    lines.insert(1, "| " + " | ".join("-" * width for width in widths) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
