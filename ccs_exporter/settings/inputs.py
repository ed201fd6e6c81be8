"""Operator input read one way: input files, YAML, and the first validation error as one line.

The settings file, job specs and the web config all go through these, so a bad file or value gives the
same kind of one-line ``ConfigError`` naming the file or the field, never a traceback and never the
content (a secret may be in it). ``config.py`` re-exports them.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import yaml
from pydantic import ValidationError

from ccs_exporter.errors import ConfigError

# What an operator's YAML needs, and far below what hurts: a billion-laughs file expands aliases into
# gigabytes, and 100,000 nested brackets exhaust Python's recursion. Aliases are refused outright (none of
# our files needs one), nesting and the number of values are capped while the document is composed. The
# pure-Python loader is used on purpose: libyaml cannot be stopped early and is quadratic in flow nesting.
MAX_YAML_DEPTH = 64
MAX_YAML_NODES = 100_000


class YamlLimitError(yaml.MarkedYAMLError):
    """A YAML document refused for its shape (an alias, too deep, too many values), not its syntax."""


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses aliases and caps nesting depth and the number of values."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def fetch_flow_collection_start(self, TokenClass: type[yaml.Token]) -> None:
        # Checked in the scanner too: it looks ahead for a key past every open bracket, which is
        # quadratic in 100,000 "[" before the composer ever sees a node.
        if self.flow_level >= MAX_YAML_DEPTH:
            self._refuse(f"is nested deeper than {MAX_YAML_DEPTH} levels", self.get_mark())
        super().fetch_flow_collection_start(TokenClass)

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            self._refuse("uses an alias (*name); aliases are not allowed", event.start_mark)
        self._depth += 1
        self._nodes += 1
        if self._depth > MAX_YAML_DEPTH:
            self._refuse(f"is nested deeper than {MAX_YAML_DEPTH} levels", event.start_mark)
        if self._nodes > MAX_YAML_NODES:
            self._refuse(f"holds more than {MAX_YAML_NODES} values", event.start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    @staticmethod
    def _refuse(problem: str, mark: Any) -> NoReturn:
        raise YamlLimitError(problem=problem, problem_mark=mark)


def load_yaml_text(text: str) -> Any:
    """``text`` parsed as YAML with the safe loader, no aliases, bounded depth and size.

    Raises ``yaml.YAMLError`` (``YamlLimitError`` for a refused shape); ``describe_yaml_error`` says which.
    """
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def describe_yaml_error(exc: yaml.YAMLError) -> str:
    """``not valid YAML at line N`` (the line when PyYAML knows it), without echoing the file's content."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}" if mark is not None else ""
    if isinstance(exc, YamlLimitError):
        return f"YAML that {exc.problem}{where}"
    return f"not valid YAML{where}"


# Config, spec and web config files are small; the cap keeps /dev/zero or a huge file from eating memory.
MAX_INPUT_FILE_BYTES = 8 * 1024 * 1024


def read_regular_file(path: Path, limit: int) -> bytes:
    """At most ``limit`` + 1 bytes of the regular file at ``path`` (one more than allowed says "too big").

    Opened with ``O_NONBLOCK`` and checked on the open descriptor: a FIFO, socket or device in place of
    the file raises OSError ("not a regular file") at once. Files read while serving (the web config on
    a reload, cursors at each scrape, the password before each login) must never wait for a writer.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        chunks: list[bytes] = []
        remaining = limit + 1
        while remaining > 0 and (chunk := os.read(fd, remaining)):
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_input_file(path: Path, what: str, field: str) -> str:
    """The text of an input file (``what``: "config", "spec"...); a one-line ConfigError if unreadable."""
    try:
        data = read_regular_file(path, MAX_INPUT_FILE_BYTES)
        if len(data) > MAX_INPUT_FILE_BYTES:
            limit = MAX_INPUT_FILE_BYTES // (1024 * 1024)
            raise ConfigError(f"{what} file {path}: larger than {limit} MiB", field=field)
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"{what} file {path}: cannot read it ({reason})", field=field) from None


def load_yaml_file(path: Path, what: str, field: str) -> Any:
    """An input file parsed as YAML (JSON is YAML too); a one-line ConfigError naming the line if not."""
    text = read_input_file(path, what, field)
    try:
        return load_yaml_text(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} file {path}: {describe_yaml_error(exc)}", field=field) from None


@dataclass(frozen=True)
class FirstError:
    """The first error of a pydantic ``ValidationError``, for a one-line message."""

    loc: tuple[int | str, ...]
    location: str  # the dotted path, after the prefix; "" for the whole input
    message: str  # pydantic's message without its "Value error, " prefix
    type: str
    input: Any
    others: int  # how many more errors there were


def validation_errors(exc: ValidationError, prefix: str = "") -> list[FirstError]:
    """Every error of ``exc``, each located under ``prefix`` (``others`` counts the rest)."""
    errors = exc.errors(include_url=False)
    found: list[FirstError] = []
    for error in errors:
        loc = tuple(error.get("loc", ()))
        path = ".".join(str(part) for part in loc)
        found.append(
            FirstError(
                loc=loc,
                location=".".join(part for part in (prefix, path) if part),
                message=str(error.get("msg", "invalid")).removeprefix("Value error, "),
                type=str(error.get("type", "")),
                input=error.get("input"),
                others=len(errors) - 1,
            )
        )
    return found


def first_validation_error(exc: ValidationError, prefix: str = "") -> FirstError:
    """The first error of ``exc``, located under ``prefix`` (e.g. ``JobDetails``)."""
    errors = validation_errors(exc, prefix)
    return errors[0] if errors else FirstError((), prefix, "invalid", "", None, 0)


def describe_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """One line naming the first invalid field and why, e.g. ``JobDetails.AssetTimeOut: ...``.

    Input values are not echoed, so a secret in a spec cannot leak into the message.
    """
    first = first_validation_error(exc, prefix)
    message = first.message
    if first.type == "extra_forbidden":
        message = "unknown field (check its spelling against the CCS API reference)"
    elif first.type == "literal_error" and first.location.endswith("JobType"):
        message = "must be one of CollectionEvaluationJob, CollectionJob, EvaluationJob (case-sensitive)"
    more = f" (and {first.others} more)" if first.others else ""
    return f"{first.location or 'input'}: {message}{more}"
