"""Logging set-up: structlog events to stderr, JSON lines unless stderr is a terminal (or logfmt).

Events are snake_case names with keyword context. A processor redacts any key that names a secret
(the shared vocabulary of ``redaction.py``: password, token, authorization...), so a careless
``log.info(..., token=...)`` cannot leak one. Libraries' own ``logging`` lines (urllib3, asyncio) and
Python warnings come through the same chain as ``library_log`` events, their text scrubbed of anything
that looks like a secret, so every line on stderr has one format.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

from ccs_exporter.redaction import REDACTED, names_secret, scrub_text

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def _redacted(value: Any) -> Any:
    """A copy of ``value`` with secret-named keys of nested mappings (headers, forms) redacted."""
    if isinstance(value, Mapping):
        return {key: REDACTED if names_secret(key) else _redacted(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_redacted(item) for item in value]
    if type(value) is tuple:  # keeps exc_info=(type, value, traceback) a tuple for format_exc_info
        return tuple(_redacted(item) for item in value)
    return value


def redact_secrets(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace the value of every key that names a secret, at any depth, with ``[REDACTED]``."""
    for key in list(event_dict):
        event_dict[key] = REDACTED if names_secret(key) else _redacted(event_dict[key])
    return event_dict


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time of the write, not at configuration time.

    A logger bound to one stream object outlives it when the stream is swapped and closed (pytest's
    capture, a daemon redirecting its output); this one follows the swap.
    """

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


class _LibraryLogs(logging.Handler):
    """Hands the standard library's log records (urllib3, asyncio, warnings) to structlog."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a library's bad format string: its template is still worth a line
            message = str(record.msg)
        fields: dict[str, Any] = {"logger": record.name, "message": scrub_text(message)[:2000]}
        if record.exc_info and record.exc_info[0] is not None:
            fields["error"] = record.exc_info[0].__name__
        structlog.get_logger(record.name).log(record.levelno, "library_log", **fields)


def _route_library_logging(level: int) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _LibraryLogs):
            root.removeHandler(handler)
    root.addHandler(_LibraryLogs())
    root.setLevel(level)
    logging.captureWarnings(True)


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Route structlog events at ``level`` or above to ``stream`` (stderr), as JSON, logfmt or for a
    console, and the standard library's log records (libraries) through the same chain."""
    out: Any = stream if stream is not None else _CurrentStderr()
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    renderer: Any
    if fmt == "logfmt":
        renderer = structlog.processors.LogfmtRenderer(key_order=["timestamp", "level", "event"])
    elif use_json:
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_secrets,
            structlog.processors.format_exc_info
            if use_json or fmt == "logfmt"
            else structlog.processors.StackInfoRenderer(),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    _route_library_logging(_LEVELS.get(level, logging.INFO))
