"""A small client of one Prometheus server's HTTP API, for ``audit verify --witness``.

It sends GET requests to the URL it is given and nowhere else: no proxy from the environment, no
redirect followed. Answers are read up to a size cap; every failure is a ``PrometheusError`` with one
line saying what went wrong (never a traceback, never a ``requests`` exception above this module).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from ccs_exporter import __version__
from ccs_exporter.errors import WitnessError

# A bounded answer: the witness asks for windows small enough to stay far below this.
MAX_ANSWER_BYTES = 64 * 1024 * 1024
_DURATION_RE = re.compile(r"(\d+)(ms|y|w|d|h|m|s)")
_UNIT_SECONDS = {"y": 365 * 86400, "w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}


class PrometheusError(WitnessError):
    """Prometheus could not be asked, or answered with an error; the message is one line."""


def check_prometheus_url(url: str) -> str:
    """The base URL without a trailing slash; ValueError naming what is wrong with it."""
    text = url.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be http:// or https:// and a host, e.g. http://prometheus:9090")
    if "@" in parts.netloc:
        raise ValueError("must not hold a user name or password")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or fragment")
    return text.rstrip("/")


def parse_duration(text: str) -> float | None:
    """Seconds of a Prometheus duration such as ``15d`` or ``1y2w``; None when ``text`` is not one."""
    text = text.strip()
    if not text or _DURATION_RE.sub("", text):
        return None
    return float(sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_RE.findall(text)))


class PrometheusApi:
    """Queries of one Prometheus: instant, range, and its runtime information."""

    def __init__(self, url: str, *, timeout: float = 30.0, ca_bundle: Path | None = None) -> None:
        self._root = check_prometheus_url(url)
        self._timeout = timeout
        self._session = requests.Session()
        self._session.trust_env = False  # only the URL given: no proxy or CA from the environment
        self._session.verify = str(ca_bundle) if ca_bundle is not None else True
        self._session.headers["User-Agent"] = f"ccs-exporter/{__version__}"

    @property
    def url(self) -> str:
        """The base URL asked."""
        return self._root

    def close(self) -> None:
        """Release the connection pool."""
        self._session.close()

    def query(self, expr: str, at: float) -> Any:
        """The ``data`` of an instant query at Unix time ``at``."""
        return self._get("/api/v1/query", {"query": expr, "time": f"{at:.3f}"})

    def query_range(self, expr: str, start: float, end: float, step: float) -> Any:
        """The ``data`` of a range query."""
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:.3f}"}
        return self._get("/api/v1/query_range", params)

    def retention_seconds(self) -> float | None:
        """The time-based retention Prometheus reports (``storageRetention``), None if it has none."""
        try:
            info = self._get("/api/v1/status/runtimeinfo", {})
        except PrometheusError:
            return None  # older servers and some compatible ones lack the endpoint
        retention = info.get("storageRetention") if isinstance(info, dict) else None
        if not isinstance(retention, str):
            return None
        for part in retention.split(" or "):
            seconds = parse_duration(part)
            if seconds:
                return seconds
        return None

    def _get(self, path: str, params: dict[str, str]) -> Any:
        url = self._root + path
        try:
            response = self._session.get(
                url, params=params, timeout=self._timeout, stream=True, allow_redirects=False
            )
        except requests.exceptions.SSLError:
            raise PrometheusError(f"{url}: TLS handshake failed (certificate not trusted?)") from None
        except requests.exceptions.Timeout:
            raise PrometheusError(f"{url}: no answer within {self._timeout:g} s") from None
        except requests.exceptions.RequestException as exc:
            raise PrometheusError(f"{url}: cannot connect ({_reason(exc)})") from None
        body = self._read(response, url)
        try:
            payload = response.json() if body else None
        except ValueError:
            payload = None
        if not isinstance(payload, dict) or payload.get("status") not in ("success", "error"):
            raise PrometheusError(
                f"{url}: HTTP {response.status_code}, not an answer of the Prometheus API "
                "(is this Prometheus?)"
            )
        if payload["status"] == "error":
            error = " ".join(str(payload.get("error", "")).split())[:300]
            raise PrometheusError(f"{url}: HTTP {response.status_code}: {payload.get('errorType')}: {error}")
        return payload.get("data")

    def _read(self, response: requests.Response, url: str) -> bytes:
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_content(64 * 1024):
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:
                    raise PrometheusError(f"{url}: answer larger than {MAX_ANSWER_BYTES} bytes; not read")
                chunks.append(chunk)
        except requests.exceptions.RequestException as exc:
            raise PrometheusError(f"{url}: answer cut off ({_reason(exc)})") from None
        finally:
            response.close()
        response._content = b"".join(chunks)
        return response._content


def _reason(exc: requests.exceptions.RequestException) -> str:
    """A short reason without the URL's query (which could be long) or nested tracebacks."""
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "No route to host", "timed out"):
        if marker in text:
            return marker.lower()
    return type(exc).__name__
