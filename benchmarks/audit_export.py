"""Audit export benchmark: records per second mapped and shipped, and the follow latency append -> ack.

    python benchmarks/audit_export.py            # 20,000 records per destination (about a minute)
    python benchmarks/audit_export.py --quick    # 300 records: a smoke run of a few seconds

Measured in one process on 127.0.0.1: mapping alone (OCSF, ECS); shipping a log of N records (each about
1.6 KB, an observed change with the job's diff) to standard output (into /dev/null), to a TLS syslog
receiver (an in-process RFC 5425 reader, so the figure is the exporter's cost, not rsyslog's), and to the
stand-in HTTP Event Collector of the tests (TLS, indexer acknowledgement on); then a follower shipping to
the HEC stand-in while records are appended one by one: the time from each append (fsync'd) to its
acknowledgement, with the default --poll-interval of 0.2 s and with 0.05 s.
"""

from __future__ import annotations

import argparse
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from hec_standin import Collector, running_collector
from web_helpers import Pki, make_pki

from ccs_exporter.audit import AuditLog
from ccs_exporter.audit.export import format_named
from ccs_exporter.audit.export.cursor import Cursor
from ccs_exporter.audit.export.destinations import DestinationOptions, destination_from
from ccs_exporter.audit.export.shipper import Shipper, ShipSettings

TOKEN = "bench-token"


def write_log(path: Path, count: int) -> None:
    audit = AuditLog(path, user_name="CCS\\bench", fsync=False)
    change = {f"JobProperties.Field{n}": {"before": "x" * 40, "after": "y" * 40} for n in range(12)}
    for number in range(count):
        audit.append(
            {
                "event": {"kind": "state", "action": "job.changed", "outcome": "success"},
                "audit": {"id": f"b-{number}", "phase": "observation", "origin": "observed"},
                "ccs": {"job": {"id": "7e1d3c2a-5b4f-4a6e-8d9c-0f1e2d3c4b5a", "name": "Nightly CER"}},
                "change": {"diff": change},
            }
        )


@contextmanager
def syslog_sink(pki: Pki) -> Iterator[tuple[int, list[int]]]:
    """A TLS listener reading RFC 5425 frames; yields its port and a one-item list counting messages."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    listener = socket.create_server(("127.0.0.1", 0))
    count = [0]

    def serve() -> None:
        try:
            raw, _ = listener.accept()
        except OSError:
            return
        with context.wrap_socket(raw, server_side=True) as conn:
            buffer = b""
            while True:
                data = conn.recv(1 << 20)
                if not data:
                    return
                buffer += data
                while b" " in buffer[:12]:
                    length, rest = buffer.split(b" ", 1)
                    if len(rest) < int(length):
                        break
                    buffer = rest[int(length) :]
                    count[0] += 1

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], count
    finally:
        listener.close()


def ship_rate(log: Path, fmt: str, spec: str, options: DestinationOptions) -> float:
    destination = destination_from(spec, options)
    started = time.perf_counter()
    report = Shipper(ShipSettings(log, format_named(fmt)), destination).run()
    return report.events / (time.perf_counter() - started)


def map_rate(log: Path, fmt: str) -> float:
    import json

    lines = log.read_text(encoding="utf-8").splitlines()
    mapper = format_named(fmt)
    started = time.perf_counter()
    for line in lines:
        mapper.event_line(json.loads(line), line)
    return len(lines) / (time.perf_counter() - started)


def follow_latency(directory: Path, pki: Pki, appends: int, poll: float) -> list[float]:
    """Milliseconds from each append to the HEC stand-in's acknowledgement of it, following."""
    log = directory / f"follow-{poll}.log"
    write_log(log, 1)
    appended: dict[int, float] = {}
    acked: dict[int, float] = {}
    collector = Collector(TOKEN, ack=True)
    with running_collector(collector, pki.server_cert, pki.server_key):
        options = DestinationOptions(
            ca_bundle=pki.ca, hec_token_file=directory / "token", sourcetype="ccs:audit:ecs"
        )
        destination = destination_from(f"https://127.0.0.1:{collector.port}", options)

        def on_ack(cursor: Cursor) -> None:
            acked.setdefault(cursor.sequence, time.perf_counter())

        settings = ShipSettings(log, format_named("ecs"), follow=True, poll_seconds=poll)
        shipper = Shipper(settings, destination, on_acknowledged=on_ack)
        thread = threading.Thread(target=shipper.run, daemon=True)
        thread.start()
        audit = AuditLog(log, user_name="CCS\\bench")
        for number in range(appends):
            record = audit.append(
                {
                    "event": {"kind": "state", "action": "job.changed", "outcome": "success"},
                    "audit": {"id": f"f-{number}", "phase": "observation", "origin": "observed"},
                }
            )
            appended[record["event"]["sequence"]] = time.perf_counter()
            deadline = time.monotonic() + 30
            while record["event"]["sequence"] not in acked and time.monotonic() < deadline:
                time.sleep(0.001)
        shipper.stop()
        thread.join(timeout=30)
    return [(acked[s] - appended[s]) * 1000 for s in appended if s in acked]


def row(name: str, value: str) -> None:
    print(f"{name:<58} {value}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--appends", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="300 records, 20 appends: a smoke run")
    args = parser.parse_args(argv)
    records, appends = (300, 20) if args.quick else (args.records, args.appends)
    with tempfile.TemporaryDirectory() as temp:
        directory = Path(temp)
        (directory / "token").write_text(TOKEN, encoding="utf-8")
        pki_dir = directory / "pki"
        pki_dir.mkdir()
        pki = make_pki(pki_dir)
        log = directory / "audit.log"
        print(f"writing {records} records ...", file=sys.stderr)
        write_log(log, records)
        row("records", f"{records} ({log.stat().st_size // records} bytes each)")
        for fmt in ("ocsf", "ecs"):
            row(f"map only, {fmt}: records/s", f"{map_rate(log, fmt):,.0f}")

        with open("/dev/null", "wb") as null:
            from ccs_exporter.audit.export.destinations.stdout import StdoutDestination

            for fmt in ("ocsf", "ecs"):
                started = time.perf_counter()
                report = Shipper(ShipSettings(log, format_named(fmt)), StdoutDestination(null)).run()
                row(
                    f"ship to stdout, {fmt}: records/s",
                    f"{report.events / (time.perf_counter() - started):,.0f}",
                )
        options = DestinationOptions(
            ca_bundle=pki.ca, hec_token_file=directory / "token", sourcetype="ccs:audit:ocsf"
        )
        with syslog_sink(pki) as (port, received):
            rate = ship_rate(log, "ocsf", f"syslog+tls://127.0.0.1:{port}", options)
            deadline = time.monotonic() + 30  # acknowledged by TCP; the reader may still be parsing
            while received[0] < records and time.monotonic() < deadline:
                time.sleep(0.01)
            row(
                "ship to syslog over TLS (RFC 5425), ocsf: records/s", f"{rate:,.0f} ({received[0]} received)"
            )
        for ack in (False, True):
            collector = Collector(TOKEN, ack=ack)
            with running_collector(collector, pki.server_cert, pki.server_key):
                rate = ship_rate(log, "ocsf", f"https://127.0.0.1:{collector.port}", options)
            label = "with indexer acks" if ack else "no acks"
            row(
                f"ship to HEC stand-in ({label}), ocsf: records/s",
                f"{rate:,.0f} ({len(collector.events)} received)",
            )

        for poll in (0.2, 0.05):
            latencies = sorted(follow_latency(directory, pki, appends, poll))
            p50 = statistics.median(latencies)
            p95 = latencies[int(len(latencies) * 0.95) - 1]
            row(
                f"follow, append -> HEC ack, poll {poll} s: p50 / p95 / max ms",
                f"{p50:.0f} / {p95:.0f} / {latencies[-1]:.0f}",
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
