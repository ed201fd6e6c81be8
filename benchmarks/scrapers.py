"""How the scale benchmark asks for ``/metrics``: the variants, and the back-to-back scraper in its process.

The back-to-back scraper (``scale.py --scrape-loop URL``) imports nothing beyond the standard library, so
its process starts in milliseconds, and writes one tab-separated line per scrape for the benchmark to read.
"""

from __future__ import annotations

import http.client
import itertools
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

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


def stress_variants(gzip_only: bool) -> tuple[Variant, ...]:
    """What the back-to-back scraper turns through: all four, or gzip only as Prometheus asks."""
    return (TEXT_GZIP, OPENMETRICS_GZIP) if gzip_only else VARIANTS


@dataclass(frozen=True)
class ScrapeLine:
    """One back-to-back scrape, as the scraper's process writes it and the benchmark reads it back."""

    sent_at: float  # time.monotonic() when the request was sent: one clock for every process of the machine
    variant: str
    milliseconds: float  # request sent to whole body (as sent: never decompressed)
    size: int
    status: int  # 0: no answer (refused, reset, timed out)

    def line(self) -> str:
        return f"{self.sent_at:.6f}\t{self.variant}\t{self.milliseconds:.3f}\t{self.size}\t{self.status}\n"

    @classmethod
    def parse(cls, line: str) -> ScrapeLine:
        sent_at, variant, milliseconds, size, status = line.rstrip("\n").split("\t")
        return cls(float(sent_at), variant, float(milliseconds), int(size), int(status))


class MetricsConnection:
    """One keep-alive HTTP connection to ``/metrics``, opened again after an error or a server's close."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or not parts.port or not parts.path:
            raise ValueError(f"expected http://HOST:PORT/PATH, not {url!r}")
        self._host, self._port, self._path = parts.hostname, parts.port, parts.path
        self._timeout = timeout
        self._connection: http.client.HTTPConnection | None = None

    def scrape(self, variant: Variant) -> ScrapeLine:
        sent_at = time.monotonic()
        started = time.perf_counter()
        try:
            if self._connection is None:
                self._connection = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
            self._connection.request("GET", self._path, headers=variant.headers)
            response = self._connection.getresponse()
            body = response.read()  # http.client never decodes a Content-Encoding
            elapsed = time.perf_counter() - started
        except (OSError, http.client.HTTPException):
            self.close()
            return ScrapeLine(sent_at, variant.label, (time.perf_counter() - started) * 1000, 0, 0)
        if response.will_close:
            self.close()
        return ScrapeLine(sent_at, variant.label, elapsed * 1000, len(body), response.status)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def scrape_back_to_back(url: str, variants: Sequence[Variant], out: TextIO) -> None:
    """Scrape ``url`` until the process is stopped, turning through ``variants``; one line per scrape."""
    connection = MetricsConnection(url)
    for turn in itertools.count():
        scrape = connection.scrape(variants[turn % len(variants)])
        out.write(scrape.line())
        if scrape.status == 0:
            time.sleep(0.1)  # nothing answers: try again, without spinning


def run_scrape_loop(url: str, variants: Sequence[Variant], output: Path | None) -> None:
    """``scale.py --scrape-loop``: lines to ``output`` (appended) or stdout, each written when complete."""
    # Ctrl-C reaches the whole process group: the benchmark stops this process by its PID, once its phase
    # is over, and tells an early exit from that.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if output is None:
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        scrape_back_to_back(url, variants, sys.stdout)
        return
    with output.open("a", encoding="utf-8", buffering=1) as out:
        scrape_back_to_back(url, variants, out)
