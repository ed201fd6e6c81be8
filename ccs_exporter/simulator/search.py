"""Search Jobs for the simulator: the ``Attributes`` expression grammar, its matching, paging values.

The grammar accepted (the vendor documents only the attribute names and that commas separate
conditions; everything else is the simulator's assumption, written down in docs/simulator.md)::

    expression := [ "(" ] condition { "," condition } [ ")" ]
    condition  := attribute operator value
    attribute  := JobName | JobID | JobCategory | JobType            text, any case
                | JobCreationTime | JobModifiedTime | LastRunDate    DateTime
                | LastRunStatus                                      integer
    operator   := "=" | "!=" | "<" | ">" | "<=" | ">="               "<" ... ">=" for DateTimes and integers
                | Contains | StartsWith | EndsWith                   text only, any case, spaces around
    value      := the rest of the condition, trimmed, or a '...' / "..." quoted text (which may hold
                  commas and parentheses); no escapes inside quotes

Text compares without regard to case (``JobID`` also ignores braces); DateTimes take any shape the
vendor pages show (naive means UTC); ``LastRunStatus`` takes the status codes 0-7.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from ccs_exporter.simulator.records import StoredJob

MAX_EXPRESSION_LENGTH = 4096
MAX_CONDITIONS = 32
# .NET binds page/pagesize to Int32: bigger numbers do not bind at all.
INT32_MAX = 2_147_483_647

TEXT_ATTRIBUTES = ("JobName", "JobID", "JobCategory", "JobType")
DATE_ATTRIBUTES = ("JobCreationTime", "JobModifiedTime", "LastRunDate")
NUMBER_ATTRIBUTES = ("LastRunStatus",)
ATTRIBUTES = {name.lower(): name for name in (*TEXT_ATTRIBUTES, *DATE_ATTRIBUTES, *NUMBER_ATTRIBUTES)}
ORDER_OPERATORS = ("=", "!=", "<", ">", "<=", ">=")
TEXT_OPERATORS = {
    "=": "=",
    "!=": "!=",
    "contains": "Contains",
    "startswith": "StartsWith",
    "endswith": "EndsWith",
}

# JobCategory is not part of the job's properties; the simulator derives it from the internal type.
CATEGORIES = {
    "CHAINED_EVALUATIONJOB": "CollectionEvaluationJob",
    "COLLECTIONJOB": "CollectionJob",
    "EVALUATIONJOB": "EvaluationJob",
}

_CONDITION = re.compile(
    r"\s*(?P<attribute>[A-Za-z_]\w*)"
    r"(?:\s*(?P<symbol>!=|<=|>=|=|<|>)|\s+(?P<word>(?i:contains|startswith|endswith))(?=\s|\Z))"
    r"(?P<value>.*)\Z",
    re.DOTALL,
)
_WORD_THEN_REST = re.compile(r"\s*(?P<attribute>[A-Za-z_]\w*)\s*(?P<rest>\S*)")
_DATETIME = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[T ](?P<time>\d{2}:\d{2}(?::\d{2})?)(?:\.(?P<fraction>\d{1,7}))?)?"
    r"(?P<zone>Z|[+-]\d{2}:\d{2})?\Z"
)


class SearchError(ValueError):
    """A search request CCS would refuse with 400; the message is the answer's ``Message``."""


def category(job_type: str) -> str:
    """The ``JobCategory`` a job of this internal type is searched by."""
    return CATEGORIES.get(job_type, job_type)


def parse_datetime(text: str) -> float | None:
    """Seconds since the epoch for a CCS DateTime (naive is UTC); None for "never" or unreadable text."""
    match = _DATETIME.match(text.strip())
    if match is None:
        return None
    try:
        moment = datetime.fromisoformat(match["date"] + "T" + (match["time"] or "00:00"))
    except ValueError:
        return None
    if moment.year == 1:
        return None
    fraction = match["fraction"] or ""
    zone = match["zone"]
    if zone is None or zone == "Z":
        aware = moment.replace(tzinfo=timezone.utc)
    else:
        aware = datetime.fromisoformat(f"{moment.isoformat()}{zone}")
    return aware.timestamp() + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)


class SearchKeys:
    """What a job is searched by; DateTimes are parsed on first use (most searches are by text)."""

    __slots__ = ("_dates", "_raw_dates", "source", "status", "text")

    def __init__(
        self, job_id: str, name: str, job_type: str, created: str, modified: str, last_run: str, status: int
    ) -> None:
        # ``source`` tells whether cached keys still describe the job.
        self.source = (job_id, name, job_type, created, modified, last_run, status)
        self.text = {
            "JobName": name.casefold(),
            "JobID": job_id.casefold(),
            "JobCategory": category(job_type).casefold(),
            "JobType": job_type.casefold(),
        }
        self.status = status
        self._raw_dates = {"JobCreationTime": created, "JobModifiedTime": modified, "LastRunDate": last_run}
        self._dates: dict[str, float | None] = {}

    def date(self, attribute: str) -> float | None:
        """Seconds since the epoch of a DateTime attribute; None for "never"."""
        if attribute not in self._dates:
            self._dates[attribute] = parse_datetime(self._raw_dates[attribute])
        return self._dates[attribute]


@dataclass(frozen=True, slots=True)
class Condition:
    """One ``attribute operator value`` condition, its value already converted."""

    attribute: str
    operator: str
    value: str | float | int

    def matches(self, keys: SearchKeys) -> bool:
        if self.attribute in TEXT_ATTRIBUTES:
            return _TEXT_TESTS[self.operator](keys.text[self.attribute], str(self.value))
        if self.attribute in DATE_ATTRIBUTES:
            moment = keys.date(self.attribute)
            # "Never" (0001-01-01) is the earliest DateTime: before every value, equal to none.
            return _ORDER_TESTS[self.operator](float("-inf") if moment is None else moment, float(self.value))
        return _ORDER_TESTS[self.operator](keys.status, float(self.value))


_TEXT_TESTS: dict[str, Callable[[str, str], bool]] = {
    "=": lambda actual, wanted: actual == wanted,
    "!=": lambda actual, wanted: actual != wanted,
    "Contains": lambda actual, wanted: wanted in actual,
    "StartsWith": lambda actual, wanted: actual.startswith(wanted),
    "EndsWith": lambda actual, wanted: actual.endswith(wanted),
}
_ORDER_TESTS: dict[str, Callable[[float, float], bool]] = {
    "=": lambda actual, wanted: actual == wanted,
    "!=": lambda actual, wanted: actual != wanted,
    "<": lambda actual, wanted: actual < wanted,
    ">": lambda actual, wanted: actual > wanted,
    "<=": lambda actual, wanted: actual <= wanted,
    ">=": lambda actual, wanted: actual >= wanted,
}


def parse_expression(expression: str | None) -> tuple[Condition, ...]:
    """The conditions of an ``Attributes`` value, or SearchError naming what is wrong."""
    if expression is None or not expression.strip():
        raise SearchError(
            "Invalid input data. Attributes is mandatory, e.g. Attributes=(JobName Contains PCI)."
        )
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise SearchError(
            f"Invalid input data. Attributes is longer than {MAX_EXPRESSION_LENGTH} characters."
        )
    if any(ord(char) < 32 or ord(char) == 127 for char in expression):
        raise SearchError("Invalid input data. Attributes holds a control character.")
    body = _strip_parentheses(expression.strip())
    parts = _split_conditions(body)
    if len(parts) > MAX_CONDITIONS:
        raise SearchError(f"Invalid input data. Attributes has more than {MAX_CONDITIONS} conditions.")
    return tuple(_condition(part) for part in parts)


def _strip_parentheses(text: str) -> str:
    """The expression without the parentheses around it; stray ones outside quotes are refused."""
    if text.startswith("(") != text.endswith(")"):
        raise SearchError("Invalid input data. Attributes has unbalanced parentheses.")
    if text.startswith("("):
        text = text[1:-1].strip()
    quote = ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "()":
            raise SearchError(
                "Invalid input data. Attributes has unbalanced parentheses "
                "(only one pair around the whole expression; quote a value that holds them)."
            )
    if quote:
        raise SearchError("Invalid input data. Attributes has an unterminated quoted value.")
    return text


def _split_conditions(text: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quote = ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == ",":
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    if any(not part.strip() for part in parts):
        raise SearchError(
            "Invalid input data. Attributes has an empty condition (two commas, or one at an end)."
        )
    return parts


def _condition(text: str) -> Condition:
    match = _CONDITION.match(text)
    if match is None:
        word = _WORD_THEN_REST.match(text)
        if word is not None and word["attribute"].lower() not in ATTRIBUTES:
            raise _unknown_attribute(word["attribute"])
        shown = word["rest"] if word is not None and word["rest"] else text.strip()
        raise SearchError(
            f"Invalid input data. Unknown operator in condition {text.strip()!r} near {shown[:40]!r}; "
            "use =, !=, <, >, <=, >=, Contains, StartsWith or EndsWith."
        )
    attribute = ATTRIBUTES.get(match["attribute"].lower())
    if attribute is None:
        raise _unknown_attribute(match["attribute"])
    operator = (match["symbol"] or match["word"]).lower()
    if match["value"].lstrip()[:1] in ("=", "<", ">", "!"):
        raise SearchError(
            f"Invalid input data. Unknown operator in condition {text.strip()!r}; "
            "use =, !=, <, >, <=, >=, Contains, StartsWith or EndsWith."
        )
    value = _value(match["value"], attribute)
    if attribute in TEXT_ATTRIBUTES:
        if operator not in TEXT_OPERATORS:
            raise _unsupported(operator, attribute)
        wanted = value.strip("{}") if attribute == "JobID" else value
        return Condition(attribute, TEXT_OPERATORS[operator], wanted.casefold())
    if operator not in ORDER_OPERATORS:
        raise _unsupported(TEXT_OPERATORS.get(operator, operator), attribute)
    if attribute in DATE_ATTRIBUTES:
        moment = parse_datetime(value)
        if moment is None and not value.startswith("0001-01-01"):
            raise SearchError(
                f"Invalid input data. {value!r} is not a DateTime for {attribute} "
                "(e.g. 2026-11-20, 2026-11-20T01:00:00 or 2026-11-20T06:30:00+05:30)."
            )
        return Condition(attribute, operator, float("-inf") if moment is None else moment)
    if not re.fullmatch(r"[+-]?\d{1,9}", value):
        raise SearchError(f"Invalid input data. {value!r} is not a whole number for {attribute}.")
    return Condition(attribute, operator, int(value))


def _value(raw: str, attribute: str) -> str:
    text = raw.strip()
    if len(text) >= 2 and text[0] in "'\"" and text[-1] == text[0]:
        text = text[1:-1]
    elif any(char in text for char in "'\""):
        raise SearchError(f"Invalid input data. The value for {attribute} has a stray quote: {text!r}.")
    if not text:
        raise SearchError(f"Invalid input data. The condition on {attribute} has no value.")
    return text


def _unknown_attribute(name: str) -> SearchError:
    return SearchError(
        f"Invalid input data. Unknown attribute {name!r}; use one of {', '.join(ATTRIBUTES.values())}."
    )


def _unsupported(operator: str, attribute: str) -> SearchError:
    kind = (
        "text" if attribute in TEXT_ATTRIBUTES else "DateTime" if attribute in DATE_ATTRIBUTES else "number"
    )
    allowed = "=, !=, Contains, StartsWith, EndsWith" if kind == "text" else "=, !=, <, >, <=, >="
    return SearchError(
        f"Invalid input data. Operator {operator!r} is not supported for {attribute} ({kind}); use {allowed}."
    )


def paging_value(query: dict[str, str], key: str, default: int, minimum: int) -> int:
    """``page``/``pagesize`` from the query: a whole number from ``minimum`` to Int32's maximum."""
    text = query.get(key)
    if text is None or not text.strip():
        return default
    text = text.strip()
    if not re.fullmatch(r"[+-]?\d{1,12}", text) or not minimum <= int(text) <= INT32_MAX:
        raise SearchError(f"Invalid input data. {key} must be a whole number from {minimum} to {INT32_MAX}.")
    return int(text)


class SearchIndex:
    """Which jobs match: keys cached per job (rebuilt when its fields change), results per version.

    Paging through one search at 10,000 jobs scans the jobs once, not once per page; the store's
    ``version`` changes with every change of a job, which empties the result cache.
    """

    MAX_CACHED_RESULTS = 32

    def __init__(self) -> None:
        self._keys: dict[str, SearchKeys] = {}
        self._results: dict[tuple[Condition, ...], list[str]] = {}
        self._version = -1

    def matching(
        self, jobs: Mapping[str, StoredJob], conditions: tuple[Condition, ...], version: int
    ) -> list[str]:
        """The ids of the jobs matching every condition, in the order of ``jobs``."""
        if version != self._version:
            self._results.clear()
            self._version = version
        cached = self._results.get(conditions)
        if cached is not None:
            return cached
        if len(self._keys) > 2 * len(jobs) + 1000:
            self._keys = {job_id: keys for job_id, keys in self._keys.items() if job_id in jobs}
        found = [
            job_id for job_id, job in jobs.items() if all(c.matches(self._keys_of(job)) for c in conditions)
        ]
        if len(self._results) >= self.MAX_CACHED_RESULTS:
            self._results.clear()
        self._results[conditions] = found
        return found

    def _keys_of(self, job: StoredJob) -> SearchKeys:
        source = (
            job.job_id,
            job.name,
            job.job_type,
            job.created,
            job.modified,
            job.last_run_date,
            job.last_run_status,
        )
        keys = self._keys.get(job.job_id)
        if keys is None or keys.source != source:
            keys = SearchKeys(*source)
            self._keys[job.job_id] = keys
        return keys
