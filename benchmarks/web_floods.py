"""Flood benchmarks for the exporter's HTTP server: idle and slow connections, wrong-password floods,
TLS handshakes that never finish, and slow readers.

    python benchmarks/web_floods.py            # 600 and 3,000 idle connections, 10 s password floods
    python benchmarks/web_floods.py --quick    # 100 idle connections, 2 s floods: a smoke run

``python -m ccs_exporter serve`` runs as its own process against the simulator (its own process too),
protected by basic auth (one user, a bcrypt hash of cost 10, the cost htpasswd examples use). For each
attack the script prints the exporter's thread count (from /proc), the latency of real scrapes made
meanwhile with the right password (a new connection each, as after a Prometheus restart), and for the
password floods the exporter's CPU (user + system, from /proc, in cores). A second table gives the
exporter's resident memory (VmRSS) before, at most during, and after two memory attacks: rounds of
connections that send half a TLS ClientHello and close (against a TLS exporter, and the same bytes
against the plain one), and slow readers that each take 64 KiB of /metrics now and then while cycles
go by (an exporter of its own with more jobs and short cycles). Linux only. Every connection
goes to 127.0.0.1 (the password floods also come from 127.0.0.2-9: still loopback); every attack stops by
itself after a bounded time, and each process is stopped by its PID.
"""

from __future__ import annotations

import argparse
import http.client
import os
import secrets
import socket
import ssl
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
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
    handshake_connections: int = 500
    handshake_rounds: int = 10
    slow_readers: int = 30
    slow_reader_jobs: int = 2000
    slow_reader_seconds: float = 100.0  # readers start over the first third, all stop at the end
    slow_reader_interval: float = 10.0  # each takes 64 KiB this often
    memory_settle_seconds: float = 5.0  # after a memory attack, before the "after" figure


@dataclass
class MemoryFigures:
    """The exporter's resident memory around one attack, in MiB."""

    name: str
    before: float = 0.0
    peak: float = 0.0
    after: float = 0.0
    note: str = ""


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
        plan = Plan([100], 1.0, 3.0, 2.0, 5, 100, 2, 5, 200, 6.0, 1.0, 1.0)
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
                memory = [handshake_flood("plain HTTP", exporter, plan)]
            ca_file, tls_config = self_signed_tls(workdir)
            tls_web_config = workdir / "web-tls.yml"
            tls_web_config.write_text(tls_config, encoding="utf-8")
            tls_exporter = ExporterProcess(
                sim, 4, workdir, 5.0, {"web_config_file": str(tls_web_config)}, ca_file=ca_file
            )
            with tls_exporter:
                tls_exporter.wait_ready(60)
                memory.insert(0, handshake_flood("TLS", tls_exporter, plan))
        with (
            SimulatorProcess(jobs=plan.slow_reader_jobs, latency_ms=0, workdir=workdir) as sim,
            ExporterProcess(sim, 8, workdir, poll_interval=2.0) as exporter,
        ):
            exporter.wait_ready(120)
            memory.append(slow_readers(exporter, plan))
    print(render(figures))
    print()
    print(render_memory(memory))
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


def rss_mib(exporter: ExporterProcess) -> float:
    return exporter.memory_kib().get("VmRSS", 0) / 1024


def watch_memory(
    name: str, exporter: ExporterProcess, attack: Callable[[], str], settle_seconds: float
) -> MemoryFigures:
    """Run ``attack`` while sampling the exporter's RSS; the figures, ``after`` once it has settled."""
    figures = MemoryFigures(name, before=rss_mib(exporter))
    figures.peak = figures.before
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            figures.peak = max(figures.peak, rss_mib(exporter))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        figures.note = attack()
        time.sleep(settle_seconds)
    finally:
        done.set()
        sampler.join(5)
    figures.after = rss_mib(exporter)
    figures.peak = max(figures.peak, figures.after)
    return figures


def self_signed_tls(workdir: Path) -> tuple[Path, str]:
    """A self-signed certificate for 127.0.0.1 (its own CA) and the web config that serves it."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = workdir / "tls.pem", workdir / "tls.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, f"tls_server_config:\n  cert_file: {cert_file}\n  key_file: {key_file}\n"


def half_client_hello() -> bytes:
    """The first half of a real TLS ClientHello: a handshake that has started and will never finish."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    outgoing = ssl.MemoryBIO()
    client = context.wrap_bio(ssl.MemoryBIO(), outgoing)
    with suppress(ssl.SSLWantReadError):
        client.do_handshake()
    hello = outgoing.read()
    return hello[: len(hello) // 2]


def handshake_flood(kind: str, exporter: ExporterProcess, plan: Plan) -> MemoryFigures:
    """Rounds of connections that send half a ClientHello, wait half a second and close."""
    count, rounds = plan.handshake_connections, plan.handshake_rounds
    name = f"partial-handshake flood, {kind}: {count} connections x {rounds} rounds"
    progress(name)
    half = half_client_hello()

    def attack() -> str:
        opened = 0
        for _ in range(rounds):
            flood: list[socket.socket] = []
            for _ in range(count):
                try:
                    connection = socket.create_connection(("127.0.0.1", exporter.port), timeout=5)
                    connection.sendall(half)
                    flood.append(connection)
                except OSError:
                    break
            opened += len(flood)
            time.sleep(0.5)
            for connection in flood:
                connection.close()
            time.sleep(1.5)
        return f"{opened} connections opened"

    return watch_memory(name, exporter, attack, settle_seconds=plan.memory_settle_seconds)


def slow_readers(exporter: ExporterProcess, plan: Plan) -> MemoryFigures:
    """Readers that each ask for /metrics and take 64 KiB of it every ``slow_reader_interval`` seconds."""
    count, jobs = plan.slow_readers, plan.slow_reader_jobs
    name = f"{count} slow readers (64 KiB every {plan.slow_reader_interval:g} s), {jobs:,} jobs, 2 s cycles"
    progress(f"{name} for {plan.slow_reader_seconds:g} s")
    end = time.monotonic() + plan.slow_reader_seconds
    closed: list[float] = []
    lock = threading.Lock()

    def reader(start_after: float) -> None:
        time.sleep(start_after)
        started = time.monotonic()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.settimeout(10)
        try:
            sock.connect(("127.0.0.1", exporter.port))
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: identity\r\n\r\n")
            while time.monotonic() < end:
                if not sock.recv(64 * 1024):
                    with lock:
                        closed.append(time.monotonic() - started)
                    return
                time.sleep(min(plan.slow_reader_interval, max(0.0, end - time.monotonic())))
        except OSError:
            with lock:
                closed.append(time.monotonic() - started)
        finally:
            sock.close()

    spread = plan.slow_reader_seconds / 3
    readers = [threading.Thread(target=reader, args=(n * spread / count,), daemon=True) for n in range(count)]

    def attack() -> str:
        for thread in readers:
            thread.start()
        for thread in readers:
            thread.join(plan.slow_reader_seconds + 30)
        size = len(
            requests.get(
                f"{exporter.url}/metrics", timeout=30, headers={"Accept-Encoding": "identity"}
            ).content
        )
        # A reader sees its connection end only once it has read what the kernel had already taken,
        # well after the exporter closed it and let the exposition go.
        ended = f"after {min(closed):.0f}-{max(closed):.0f} s" if closed else "none"
        return f"exposition {size / 2**20:.1f} MiB; readers that saw their connection end: {ended}"

    return watch_memory(name, exporter, attack, settle_seconds=plan.memory_settle_seconds)


def render_memory(results: list[MemoryFigures]) -> str:
    header = ("memory attack", "RSS before MiB", "RSS max MiB", "RSS after MiB", "notes")
    rows = [header] + [
        (f.name, f"{f.before:.0f}", f"{f.peak:.0f}", f"{f.after:.0f}", f.note) for f in results
    ]
    return _table(rows)


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
    return _table(rows)


def _table(rows: Sequence[tuple[str, ...]]) -> str:
    header = rows[0]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + " |"
        for row in rows
    ]
    lines.insert(1, "| " + " | ".join("-" * width for width in widths) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
