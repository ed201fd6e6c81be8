"""The measurements: three ways to poll every job once, the exporter's steady state, /metrics scrapes.

Every client fetches the same thing per job: search job by id, then the latest runs (``count=10``,
``showmessages=true``), after one token request. Wall times are ``time.perf_counter``; CPU is
``time.process_time`` of this process, so nothing else may run in it while a cycle is measured.
"""

from __future__ import annotations

import base64
import gzip
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import requests
from pydantic import SecretStr
from requests.adapters import HTTPAdapter

from ccs_exporter.client import CcsClient
from ccs_exporter.exposition.live import RequestStats
from ccs_exporter.exposition.renderer import ExpositionStore
from ccs_exporter.polling.cycle import Poller
from ccs_exporter.polling.snapshot import PollSnapshot

API = "/ccs/api/v1"
HISTORY_WINDOW = 10
RUNS_QUERY = {"count": str(HISTORY_WINDOW), "showmessages": "true"}


def _token_form(username: str, password: str) -> dict[str, str]:
    encoded = base64.b64encode(password.encode("utf-8")).decode("ascii")
    return {"grant_type": "password", "username": username, "password": encoded}


def naive_poll(
    url: str, username: str, password: str, job_ids: Sequence[str], timeout: float = 60.0
) -> float:
    """The vendor samples' way: one request after another, a new connection each; return seconds."""
    started = time.perf_counter()
    token = requests.request(
        "POST", f"{url}{API}/oauth/tokens", data=_token_form(username, password), timeout=timeout
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    for job_id in job_ids:
        job = requests.request("GET", f"{url}{API}/jobs/{job_id}", headers=headers, timeout=timeout)
        job.raise_for_status()
        job.json()
        runs = requests.request(
            "GET", f"{url}{API}/Jobs/{job_id}/jobruns", params=RUNS_QUERY, headers=headers, timeout=timeout
        )
        runs.raise_for_status()
        runs.json()
    return time.perf_counter() - started


def raw_poll(
    url: str, username: str, password: str, job_ids: Sequence[str], concurrency: int, timeout: float = 60.0
) -> tuple[float, float]:
    """A tuned raw client: one pooled Session, ``concurrency`` threads, JSON decoded.

    Returns (wall seconds, CPU seconds of this process).
    """
    started = time.perf_counter()
    cpu = time.process_time()
    with requests.Session() as session:
        session.trust_env = False  # no per-request scan of the environment for proxies and .netrc
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=concurrency, max_retries=0)
        session.mount("http://", adapter)
        token = session.post(
            f"{url}{API}/oauth/tokens", data=_token_form(username, password), timeout=timeout
        ).json()["access_token"]
        session.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/json"})

        def fetch(job_id: str) -> None:
            job = session.get(f"{url}{API}/jobs/{job_id}", timeout=timeout)
            job.raise_for_status()
            job.json()
            runs = session.get(f"{url}{API}/Jobs/{job_id}/jobruns", params=RUNS_QUERY, timeout=timeout)
            runs.raise_for_status()
            runs.json()

        with ThreadPoolExecutor(concurrency) as pool:
            for _ in pool.map(fetch, job_ids):
                pass
    return time.perf_counter() - started, time.process_time() - cpu


@dataclass
class CycleFigures:
    """One exporter cycle: wall and CPU seconds (poll + render), requests CCS served, failures."""

    wall_seconds: float
    cpu_seconds: float
    requests: int
    failed_jobs: int


@dataclass
class ExporterUnderTest:
    """The exporter's own pipeline in this process: CcsClient -> Poller -> ExpositionStore."""

    url: str
    username: str
    password: str
    job_ids: Sequence[str]
    concurrency: int
    store: ExpositionStore = field(default_factory=ExpositionStore)

    def __post_init__(self) -> None:
        self.last_snapshot: PollSnapshot | None = None
        self.stats = RequestStats()
        self.client = CcsClient(
            self.url,
            self.username,
            SecretStr(self.password),
            pool_size=self.concurrency,
            timeout=60.0,
            observer=self.stats.observe,
        )
        self.poller = Poller(
            self.client, self.job_ids, history_window=HISTORY_WINDOW, concurrency=self.concurrency
        )

    def cycle(self, served_requests: Callable[[], int]) -> CycleFigures:
        """Run one poll cycle and publish it, as the poll loop does; ``served_requests`` reads CCS's count."""
        before = served_requests()
        wall = time.perf_counter()
        cpu = time.process_time()
        snapshot = self.poller.poll_cycle()
        self.store.publish(snapshot)
        cpu = time.process_time() - cpu
        wall = time.perf_counter() - wall
        self.last_snapshot = snapshot
        return CycleFigures(wall, cpu, served_requests() - before, snapshot.failed_jobs)

    def close(self) -> None:
        self.poller.close()
        self.client.close()


@dataclass
class ScrapeFigures:
    """Latencies (seconds) of scrapes, plain and gzip, and the body sizes seen."""

    plain: list[float] = field(default_factory=list)
    gzipped: list[float] = field(default_factory=list)
    plain_bytes: int = 0
    gzip_bytes: int = 0
    errors: int = 0
    cycles_seen: set[int] = field(default_factory=set)


def scrape(
    url: str,
    *,
    count: int,
    gap_seconds: float,
    max_seconds: float,
    until: Callable[[ScrapeFigures], bool] | None = None,
) -> ScrapeFigures:
    """Scrape ``url`` about ``count`` times, alternating plain and gzip, like Prometheus (pooled, keep-alive).

    A latency is from sending the request to having the whole body; the client never decompresses
    (``Accept-Encoding: identity`` for plain: requests asks for gzip by default). Goes on past ``count``
    while ``until`` is false, for at most ``max_seconds``.
    """
    figures = ScrapeFigures()
    deadline = time.monotonic() + max_seconds
    with requests.Session() as session:
        index = 0
        while time.monotonic() < deadline:
            if index >= count and (until is None or until(figures)):
                break
            use_gzip = index % 2 == 1
            headers = {"Accept-Encoding": "gzip" if use_gzip else "identity"}
            started = time.perf_counter()
            try:
                response = session.get(url, headers=headers, stream=True, timeout=10)
                body = response.raw.read(decode_content=False)
                elapsed = time.perf_counter() - started
                response.close()
            except requests.RequestException:
                figures.errors += 1
                index += 1
                continue
            if response.status_code != 200:
                figures.errors += 1
            elif use_gzip:
                figures.gzipped.append(elapsed)
                figures.gzip_bytes = len(body)
            else:
                figures.plain.append(elapsed)
                figures.plain_bytes = len(body)
                figures.cycles_seen.add(_cycles(body))
            index += 1
            time.sleep(gap_seconds)
    return figures


def _cycles(body: bytes) -> int:
    marker = b"\nccs_poll_cycles_total "
    start = body.find(marker)
    if start < 0:
        return -1
    end = body.index(b"\n", start + 1)
    return int(float(body[start + len(marker) : end]))


def gzip_size(body: bytes) -> int:
    return len(gzip.compress(body, compresslevel=1, mtime=0))


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


class MemorySampler:
    """Samples a process's resident memory in the background (the maximum is what matters)."""

    def __init__(self, read: Callable[[], dict[str, int]], interval: float = 0.25) -> None:
        self._read = read
        self._interval = interval
        self._stop = threading.Event()
        self.max_rss_kib = 0
        self.hwm_kib = 0
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def _sample(self) -> None:
        try:
            values = self._read()
        except OSError:
            return
        self.max_rss_kib = max(self.max_rss_kib, values.get("VmRSS", 0))
        self.hwm_kib = max(self.hwm_kib, values.get("VmHWM", 0))
