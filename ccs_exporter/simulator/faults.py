"""Fault injection and request counting for the simulator: what tests switch on and what they count."""

from __future__ import annotations

import threading
from collections import Counter, deque
from typing import Any, NamedTuple

# Only the newest records are kept (counts stay exact), so a long benchmark does not grow memory.
MAX_RECORDS = 100_000
ENDPOINTS = (
    "token",
    "job",
    "jobruns",
    "create_job",
    "update_job",
    "delete_job",
    "search_jobs",
    "search_job_name",
    "job_operation",
    "control",
    "unknown",
)
FAULT_FIELDS = (
    "latency_seconds",
    "error_rate",
    "hang",
    "malformed_json",
    "drop_connections",
    "reject_logins",
    "token_errors",
    "search_unsupported",
    "search_ignores_page",
    "search_page_size_cap",
    "operation_status",
)
DEFAULT_SEARCH_PAGE_SIZE_CAP = 1000
# What run/abort answers on success: 200 with a JSON body, 202 or 204 without one.
OPERATION_STATUSES = (200, 202, 204)


class Faults:
    """Faults to inject, settable at any time from any thread; the simulator reads them per request.

    ``latency_seconds`` and ``hang`` apply to every request but control requests; ``error_rate``,
    ``malformed_json`` and ``drop_connections`` apply to API requests, and to token requests only when
    ``token_errors`` is true; ``reject_logins`` makes the token endpoint refuse password grants.

    Search Jobs: ``search_unsupported`` makes ``GET /Jobs`` (search and search by name) answer 404 as
    a CCS without these endpoints would; ``search_ignores_page`` answers page 0 whatever ``page`` says;
    ``search_page_size_cap`` silently shortens bigger pages. ``operation_status`` is what run and abort
    answer on success: 200 (with a JSON body), 202 or 204 (without one).
    """

    latency_seconds: float
    error_rate: float
    hang: bool
    malformed_json: bool
    drop_connections: bool
    reject_logins: bool
    token_errors: bool
    search_unsupported: bool
    search_ignores_page: bool
    search_page_size_cap: int
    operation_status: int

    def __init__(
        self, latency_seconds: float = 0.0, search_page_size_cap: int = DEFAULT_SEARCH_PAGE_SIZE_CAP
    ) -> None:
        if search_page_size_cap < 1:
            raise ValueError("search_page_size_cap must be 1 or more")
        self._baseline_latency = latency_seconds
        self._baseline_cap = search_page_size_cap
        self.clear()

    def clear(self) -> None:
        """No faults; the latency and page size cap go back to what the simulator was started with."""
        self.latency_seconds = self._baseline_latency
        self.error_rate = 0.0
        self.hang = False
        self.malformed_json = False
        self.drop_connections = False
        self.reject_logins = False
        self.token_errors = False
        self.search_unsupported = False
        self.search_ignores_page = False
        self.search_page_size_cap = self._baseline_cap
        self.operation_status = 200

    def update(self, changes: dict[str, Any]) -> None:
        """Set fields from a JSON object (the control API); ``"clear": true`` clears first.

        Raises ``ValueError`` naming an unknown field or a value of the wrong type.
        """
        unknown = set(changes) - set(FAULT_FIELDS) - {"clear"}
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
        if changes.get("clear"):
            self.clear()
        for name in FAULT_FIELDS:
            if name not in changes:
                continue
            value = changes[name]
            if name in ("latency_seconds", "error_rate"):
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                    raise ValueError(f"{name} must be a number >= 0")
                if name == "error_rate" and value > 1:
                    raise ValueError("error_rate must be between 0 and 1")
                setattr(self, name, float(value))
            elif name == "search_page_size_cap":
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ValueError("search_page_size_cap must be a whole number >= 1")
                self.search_page_size_cap = value
            elif name == "operation_status":
                if isinstance(value, bool) or value not in OPERATION_STATUSES:
                    raise ValueError("operation_status must be 200, 202 or 204")
                self.operation_status = int(value)
            else:
                if not isinstance(value, bool):
                    raise ValueError(f"{name} must be true or false")
                setattr(self, name, value)

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in FAULT_FIELDS}


class RequestRecord(NamedTuple):
    """One request the simulator received; ``status`` is 0 when it closed the connection unanswered."""

    method: str
    path: str
    endpoint: str
    status: int


class RequestLog:
    """Counts of requests by endpoint template and status, and the newest records; thread-safe."""

    def __init__(self, max_records: int = MAX_RECORDS) -> None:
        self._lock = threading.Lock()
        self._records: deque[RequestRecord] = deque(maxlen=max_records)
        self._counts: Counter[tuple[str, int]] = Counter()
        self._generation = 0

    @property
    def generation(self) -> int:
        """Changes on every reset; read it when a request arrives and pass it to ``add``."""
        return self._generation

    def add(self, record: RequestRecord, generation: int | None = None) -> None:
        """Record an answered request, unless it arrived before the last reset.

        A request still in flight (e.g. sleeping on latency) when a test resets the counts must not be
        counted afterwards: "zero requests reached CCS since the reset" has to hold.
        """
        with self._lock:
            if generation is not None and generation != self._generation:
                return
            self._records.append(record)
            self._counts[(record.endpoint, record.status)] += 1

    def records(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def count(self, endpoint: str | None = None) -> int:
        """Requests to ``endpoint``, or to every endpoint but the control API when None."""
        with self._lock:
            return sum(
                number
                for (name, _), number in self._counts.items()
                if (name == endpoint if endpoint is not None else name != "control")
            )

    def stats(self) -> dict[str, Any]:
        """``{"requests": {endpoint: {status: count}}, "total": n}`` (total without control requests)."""
        with self._lock:
            by_endpoint: dict[str, dict[str, int]] = {}
            for (name, status), number in sorted(self._counts.items()):
                by_endpoint.setdefault(name, {})[str(status)] = number
            total = sum(number for (name, _), number in self._counts.items() if name != "control")
        return {"requests": by_endpoint, "total": total}

    def reset(self) -> None:
        with self._lock:
            self._generation += 1
            self._records.clear()
            self._counts.clear()
