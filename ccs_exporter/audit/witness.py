"""Prometheus as an outside witness of an audit log: check every head it scraped against the file.

The exporter exposes the log's head at each scrape (``ccs_audit_head_sequence``, ``ccs_audit_head_hash48``),
so Prometheus' storage holds a history of the log that whoever can write the log file cannot rewrite.
``check_witness`` reads that history back as raw samples, never through a query step that could skip a
value: one range query of ``count_over_time`` (one point per window) finds the windows that hold samples,
then one instant query of a range selector per window (split further when it holds many samples) returns
every sample in it. The two gauges of one scrape share a timestamp and are paired on it. Each pair is
compared with the log as it is read and only disagreements are kept, so memory stays bounded whatever the
retention; the answers themselves are capped in size.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from ccs_exporter.audit.verify import MAX_FINDINGS, NO_HASH, Finding, VerifyResult
from ccs_exporter.errors import WitnessError

__all__ = ["WitnessError", "WitnessReport", "ask_witness", "check_witness", "parse_moment", "utc"]

SEQUENCE_METRIC = "ccs_audit_head_sequence"
HASH48_METRIC = "ccs_audit_head_hash48"
# The history asked of a Prometheus that reports no time-based retention.
DEFAULT_HISTORY_SECONDS = 365 * 86400.0
# Prometheus' blocks are 2 hours long; a window this size is cheap to read back.
WINDOW_SECONDS = 7200.0
# A range query returns at most 11,000 points per series; stay below it.
_MAX_POINTS = 10_000
# Samples asked for in one instant query (both gauges, all matching series): about 3 MB of JSON.
MAX_SAMPLES_PER_QUERY = 50_000
_MIN_WINDOW_SECONDS = 1.0
_HASH48_LIMIT = 2**48
# Sample times Prometheus can hold (Unix seconds up to the year 5138), and samples a window can count.
_MAX_TIMESTAMP = 1e11
_MAX_WINDOW_SAMPLES = 1e12


class WitnessSource(Protocol):
    """What the witness check needs of a Prometheus HTTP API (``client.prometheus.PrometheusApi``)."""

    def query(self, expr: str, at: float) -> Any: ...

    def query_range(self, expr: str, start: float, end: float, step: float) -> Any: ...

    def retention_seconds(self) -> float | None: ...


@dataclass
class _Disagreement:
    series: str
    sequence: int
    witnessed: int
    first_seen: float
    last_seen: float
    scrapes: int = 1


@dataclass
class WitnessReport:
    """What the witness saw and where it disagrees with the log."""

    start: float
    end: float
    scrapes: int = 0
    series: set[str] = field(default_factory=set)
    first_seen: float | None = None
    last_seen: float | None = None
    highest_sequence: int = 0
    unpaired: int = 0
    findings: list[Finding] = field(default_factory=list)
    unlisted_findings: int = 0
    _disagreements: dict[tuple[str, int, int], _Disagreement] = field(default_factory=dict)
    # The last scrape taken of each series: windows are read in time order and may share an edge.
    _latest: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every witnessed head is in the log as it was seen."""
        return not self.findings and not self.unlisted_findings


def selector_expr(selector: str, metrics: Sequence[str]) -> str:
    """A vector selector of ``metrics`` with the user's label matchers (with or without braces)."""
    matchers = selector.strip()
    if matchers.startswith("{") and matchers.endswith("}"):
        matchers = matchers[1:-1].strip()
    names = "|".join(metrics)
    name_matcher = f'__name__=~"{names}"' if len(metrics) > 1 else f'__name__="{names}"'
    return "{" + ", ".join(part for part in (name_matcher, matchers) if part) + "}"


def ask_witness(
    log: VerifyResult, source: WitnessSource, selector: str, start: float | None, end: float
) -> tuple[WitnessReport | None, str | None]:
    """The witness report from ``start`` (default: over the retention) to ``end``, or why there is none."""
    try:
        if start is None:
            start = end - (source.retention_seconds() or DEFAULT_HISTORY_SECONDS)
        report = check_witness(log, source, selector, start, end)
    except WitnessError as exc:
        return None, str(exc)
    except (ArithmeticError, ValueError, TypeError, RecursionError) as exc:  # an answer no check foresaw
        return None, f"Prometheus answered something that cannot be used ({type(exc).__name__})"
    if not report.scrapes:
        return None, (
            f"Prometheus has no ccs_audit_head_* samples matching {selector or 'any labels'!r} from "
            f"{utc(start)} to {utc(end)} (is the exporter scraped, with an audit log?)"
        )
    return report, None


def check_witness(
    log: VerifyResult, source: WitnessSource, selector: str, start: float, end: float
) -> WitnessReport:
    """Every head Prometheus scraped between ``start`` and ``end``, checked against the verified log."""
    report = WitnessReport(start, end)
    for window_start, window_end, samples in _windows_with_data(source, selector, start, end):
        for sub_start, sub_end in _split(window_start, window_end, samples):
            both = selector_expr(selector, (SEQUENCE_METRIC, HASH48_METRIC))
            matrix = source.query(f"{both}[{_duration(sub_end - sub_start)}]", sub_end)
            for series, timestamp, sequence, witnessed in _pairs(matrix, report):
                _check_pair(log, report, series, timestamp, sequence, witnessed)
    _list_disagreements(log, report)
    return report


def _windows_with_data(
    source: WitnessSource, selector: str, start: float, end: float
) -> Iterator[tuple[float, float, int]]:
    """(start, end, samples) of each window in (start, end] that holds samples of the sequence gauge."""
    span = max(end - start, _MIN_WINDOW_SECONDS)
    step = max(WINDOW_SECONDS, math.ceil(span / _MAX_POINTS))
    windows = max(1, math.ceil(span / step))
    first_end = end - (windows - 1) * step
    data = source.query_range(
        f"sum(count_over_time({selector_expr(selector, (SEQUENCE_METRIC,))}[{_duration(step)}]))",
        first_end,
        end,
        step,
    )
    counts: dict[float, int] = {}
    for series in _result(data, "matrix"):
        for point in _values(series):
            timestamp, value = _point(point)
            if not (value.is_integer() and 0 <= value <= _MAX_WINDOW_SAMPLES):
                raise WitnessError(f"Prometheus answered a sample count that is not one: {value!r}")
            counts[timestamp] = counts.get(timestamp, 0) + int(value)
    for window_end in sorted(counts):
        yield max(start, window_end - step), window_end, counts[window_end]


def _split(start: float, end: float, samples: int) -> Iterator[tuple[float, float]]:
    """Sub-windows of (start, end] expected to hold at most ``MAX_SAMPLES_PER_QUERY`` samples."""
    parts = max(1, math.ceil(2 * samples / MAX_SAMPLES_PER_QUERY))
    width = max((end - start) / parts, _MIN_WINDOW_SECONDS)
    edge = start
    while edge < end:
        upper = min(end, edge + width)
        yield edge, upper
        edge = upper


def _duration(seconds: float) -> str:
    """A PromQL duration of whole milliseconds."""
    return f"{max(1, round(seconds * 1000))}ms"


def _result(data: Any, kind: str) -> list[dict[str, Any]]:
    if (
        not isinstance(data, dict)
        or data.get("resultType") != kind
        or not isinstance(data.get("result"), list)
    ):
        raise WitnessError(f"Prometheus did not answer with a {kind} as the query asks")
    return [item for item in data["result"] if isinstance(item, dict)]


def _values(series: dict[str, Any]) -> list[Any]:
    values = series.get("values", [])
    if not isinstance(values, list):
        raise WitnessError("Prometheus answered a series whose values are not a list")
    return values


def _point(point: Any) -> tuple[float, float]:
    """(time, value) of a ``[time, "value"]`` pair; WitnessError when it is not one a Prometheus keeps."""
    try:
        if not isinstance(point, list) or len(point) != 2 or len(str(point[1])) > 64:
            raise ValueError
        timestamp, value = float(point[0]), float(point[1])
    except (TypeError, ValueError, OverflowError):
        raise WitnessError("Prometheus answered a sample that is not [time, value]") from None
    if not 0 <= timestamp <= _MAX_TIMESTAMP:  # NaN fails too
        raise WitnessError(f"Prometheus answered a sample time that is not a Unix time: {timestamp!r}")
    return timestamp, value


def _pairs(matrix: Any, report: WitnessReport) -> Iterator[tuple[str, float, float, float]]:
    """(series, time, sequence, hash48) for each scrape in which both gauges were recorded."""
    by_series: dict[str, dict[str, dict[float, float]]] = {}
    for item in _result(matrix, "matrix"):
        labels = item.get("metric")
        if not isinstance(labels, dict):
            continue
        name = str(labels.get("__name__"))
        key = _series_name(labels)
        samples = by_series.setdefault(key, {}).setdefault(name, {})
        for point in _values(item):
            timestamp, value = _point(point)
            samples[timestamp] = value
    for key, metrics in sorted(by_series.items()):
        latest = report._latest.get(key, -math.inf)
        sequences, hashes = metrics.get(SEQUENCE_METRIC, {}), metrics.get(HASH48_METRIC, {})
        report.unpaired += sum(1 for t in sequences.keys() ^ hashes.keys() if t > latest)
        for timestamp in sorted(t for t in sequences.keys() & hashes.keys() if t > latest):
            report._latest[key] = timestamp
            yield key, timestamp, sequences[timestamp], hashes[timestamp]


def _series_name(labels: dict[str, Any]) -> str:
    pairs = sorted((str(k), str(v)) for k, v in labels.items() if k != "__name__")
    return "{" + ",".join(f'{k}="{v}"' for k, v in pairs) + "}"


def _check_pair(
    log: VerifyResult, report: WitnessReport, series: str, timestamp: float, sequence: float, witnessed: float
) -> None:
    report.scrapes += 1
    report.series.add(series)
    report.first_seen = timestamp if report.first_seen is None else min(report.first_seen, timestamp)
    report.last_seen = timestamp if report.last_seen is None else max(report.last_seen, timestamp)
    valid = (
        sequence.is_integer() and sequence >= 0 and witnessed.is_integer() and 0 <= witnessed < _HASH48_LIMIT
    )
    if not valid:
        _disagree(report, series, -1, -1, timestamp)
        return
    number, value = int(sequence), int(witnessed)
    report.highest_sequence = max(report.highest_sequence, number)
    if number == 0:
        expected: int | None = 0  # the empty log's head: the genesis hash
    elif number <= len(log.hash48s):
        expected = log.hash48s[number - 1]
    else:
        expected = None
    if expected != value:
        _disagree(report, series, number, value, timestamp)


def _disagree(report: WitnessReport, series: str, sequence: int, witnessed: int, timestamp: float) -> None:
    key = (series, sequence, witnessed)
    found = report._disagreements.get(key)
    if found is not None:
        found.first_seen = min(found.first_seen, timestamp)
        found.last_seen = max(found.last_seen, timestamp)
        found.scrapes += 1
    elif len(report._disagreements) < MAX_FINDINGS:
        report._disagreements[key] = _Disagreement(series, sequence, witnessed, timestamp, timestamp)
    else:
        report.unlisted_findings += 1


def _list_disagreements(log: VerifyResult, report: WitnessReport) -> None:
    records = len(log.hash48s)
    for found in sorted(report._disagreements.values(), key=lambda d: (d.sequence, d.first_seen)):
        seen = f"at {utc(found.first_seen)}"
        if found.scrapes > 1:
            seen += f" (and {found.scrapes - 1} more scrapes until {utc(found.last_seen)})"
        where = f" in {found.series}" if len(report.series) > 1 else ""
        if found.sequence < 0:
            problem = f"Prometheus recorded a head that is no sequence and hash {seen}{where}"
            report.findings.append(Finding(None, problem))
            continue
        said = f"Prometheus saw sequence {found.sequence} with hash {found.witnessed:012x}... {seen}{where}"
        if found.sequence > records:
            problem = f"{said}, but the log ends at sequence {records}: records were removed from the end"
        else:
            ours = log.hash48s[found.sequence - 1] if found.sequence else 0
            has = "an unreadable record" if ours == NO_HASH else f"hash {ours:012x}..."
            problem = f"{said}, but the log has {has} there: the log was rewritten"
        report.findings.append(Finding(found.sequence or None, problem))


def parse_moment(text: str) -> float:
    """Unix time of RFC 3339 text (``2026-01-31T12:00:00Z``; UTC when no offset) or of Unix seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def utc(timestamp: float) -> str:
    """A Unix time as RFC 3339 UTC, to the second."""
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
