"""Reading Prometheus' answers: bounded JSON (depth, number length, no NaN) and its durations.

An answer is parsed only when it could be Prometheus': ``decode_answer`` caps the nesting before the
parser could recurse too deep and refuses numbers Prometheus never writes; ``parse_duration`` reads
durations such as ``15d`` from its runtime information.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

# Prometheus' answers nest five levels deep; anything far deeper is not one.
MAX_JSON_DEPTH = 64
_DURATION_RE = re.compile(r"(\d+)(ms|y|w|d|h|m|s)")
_UNIT_SECONDS = {"y": 365 * 86400, "w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}


def parse_duration(text: str) -> float | None:
    """Seconds of a Prometheus duration such as ``15d`` or ``1y2w``; None when ``text`` is not one."""
    text = text.strip()
    if not text or _DURATION_RE.sub("", text):
        return None
    return float(sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_RE.findall(text)))


def decode_answer(body: bytes) -> Any:
    """Parsed JSON, or None when ``body`` is not JSON Prometheus could have sent.

    NaN and infinities are not JSON (Prometheus writes sample values as strings), numbers of more than 30
    digits are not Prometheus' either, and nesting is capped before the parser could recurse too deep.
    """
    if _nesting_depth(body) > MAX_JSON_DEPTH:
        return None
    try:
        return json.loads(
            body, parse_constant=_no_constant, parse_int=_bounded_int, parse_float=_bounded_float
        )
    except (ValueError, RecursionError):
        return None


def _nesting_depth(body: bytes) -> int:
    """The deepest bracket nesting of ``body`` (brackets inside strings count too: an upper bound)."""
    depth = deepest = 0
    for match in re.finditer(rb"[\[\]{}]", body):
        depth += 1 if match.group() in (b"[", b"{") else -1
        if depth > deepest:
            deepest = depth
            if deepest > MAX_JSON_DEPTH:
                break
    return deepest


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _bounded_int(text: str) -> int:
    if len(text) > 30:
        raise ValueError("number too long")
    return int(text)


def _bounded_float(text: str) -> float:
    value = float(text[:64]) if len(text) <= 64 else math.inf
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value
