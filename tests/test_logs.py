"""Tests of the logging set-up: one JSON object per line, and secret-named keys never written."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from ccs_exporter.cli.logs import configure_logging

SECRET = "Canary-Log-Secret-8Kd"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Put back the structlog configuration each test changes."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    """Every line of the stream, each parsed as one JSON object."""
    lines = stream.getvalue().splitlines()
    parsed = [json.loads(line) for line in lines]
    assert all(isinstance(item, dict) for item in parsed)
    return parsed


class TestConfigureLogging:
    def test_json_one_object_per_line(self) -> None:
        """With JSON format each event is one JSON object on its own line, with level and UTC timestamp."""
        stream = io.StringIO()
        configure_logging("info", "json", stream=stream)
        log = structlog.get_logger("test")
        log.info("poll_finished", job_id="23c59087-f3d4-4e05-a39e-3440c58e58fb", runs=3)
        log.warning("poll_failed", status=500, message="line one\nline two")
        events = json_lines(stream)
        assert [event["event"] for event in events] == ["poll_finished", "poll_failed"]
        assert events[0]["runs"] == 3 and events[0]["level"] == "info"
        assert events[1]["message"] == "line one\nline two"
        assert all(event["timestamp"].endswith("Z") for event in events)

    def test_auto_is_json_when_not_a_terminal(self) -> None:
        """The auto format writes JSON when the stream is not a terminal (a container's stderr)."""
        stream = io.StringIO()
        configure_logging("info", "auto", stream=stream)
        structlog.get_logger().info("started", port=9879)
        assert json_lines(stream)[0]["port"] == 9879

    def test_console_format_is_not_json(self) -> None:
        """The console format writes a readable line with the event name."""
        stream = io.StringIO()
        configure_logging("info", "console", stream=stream)
        structlog.get_logger().info("started", port=9879)
        text = stream.getvalue()
        assert "started" in text and "9879" in text
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)

    def test_level_filters(self) -> None:
        """Events below the configured level are not written."""
        stream = io.StringIO()
        configure_logging("warning", "json", stream=stream)
        log = structlog.get_logger()
        log.debug("noise")
        log.info("chatter")
        log.error("broken")
        assert [event["event"] for event in json_lines(stream)] == ["broken"]

    def test_debug_level(self) -> None:
        """At debug level, debug events are written."""
        stream = io.StringIO()
        configure_logging("debug", "json", stream=stream)
        structlog.get_logger().debug("token_granted", grant="login")
        assert json_lines(stream)[0]["level"] == "debug"

    def test_exception_stays_on_one_line(self) -> None:
        """A logged exception's traceback is inside the one JSON object, not on extra lines."""
        stream = io.StringIO()
        configure_logging("info", "json", stream=stream)
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            structlog.get_logger().exception("poll_crashed")
        (event,) = json_lines(stream)
        assert "RuntimeError: boom" in event["exception"]


class TestRedaction:
    @pytest.mark.parametrize(
        "key",
        ["password", "Password", "access_token", "refresh_token", "Authorization", "client_secret", "cookie"],
    )
    def test_secret_named_keys_redacted(self, key: str) -> None:
        """A value under a key naming a secret is replaced, and never written."""
        stream = io.StringIO()
        configure_logging("info", "json", stream=stream)
        structlog.get_logger().info("careless", **{key: SECRET, "job_id": "kept"})
        (event,) = json_lines(stream)
        assert event[key] == "[REDACTED]"
        assert event["job_id"] == "kept"
        assert SECRET not in stream.getvalue()

    def test_nested_secret_keys_redacted(self) -> None:
        """Secret-named keys inside a logged mapping (request headers, a form) are redacted too."""
        stream = io.StringIO()
        configure_logging("info", "json", stream=stream)
        structlog.get_logger().info(
            "request_sent",
            headers={"Authorization": f"Bearer {SECRET}", "Accept": "application/json"},
            forms=[{"grant_type": "password", "password": SECRET}],
        )
        (event,) = json_lines(stream)
        assert SECRET not in stream.getvalue()
        assert event["headers"]["Accept"] == "application/json"
        assert event["forms"][0]["grant_type"] == "password"

    def test_bound_context_redacted(self) -> None:
        """A secret bound into the logger's context is redacted as well."""
        stream = io.StringIO()
        configure_logging("info", "json", stream=stream)
        structlog.get_logger().bind(token=SECRET).info("bound")
        assert SECRET not in stream.getvalue()

    def test_caller_values_not_modified(self) -> None:
        """Redaction does not change the caller's own objects."""
        stream = io.StringIO()
        configure_logging("info", "json", stream=stream)
        headers = {"Authorization": SECRET}
        structlog.get_logger().info("request_sent", headers=headers)
        assert headers == {"Authorization": SECRET}

    def test_exc_info_tuple_still_rendered(self) -> None:
        """An exc_info tuple passes redaction intact, so the traceback is still written."""
        stream = io.StringIO()
        configure_logging("info", "json", stream=stream)
        try:
            raise ValueError("bad value")
        except ValueError:
            exc_info = sys.exc_info()
        structlog.get_logger().error("failed_later", exc_info=exc_info)
        assert "ValueError: bad value" in json_lines(stream)[0]["exception"]


class TestLibraryLogging:
    """Libraries' standard-library log lines come out as our events: one format, secrets scrubbed."""

    @pytest.fixture(autouse=True)
    def restore_root_logger(self) -> Iterator[None]:
        import logging

        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        yield
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.captureWarnings(False)

    def test_urllib3_line_is_json_and_redacted(self) -> None:
        """A urllib3 warning is a JSON library_log event naming its logger, a password in it scrubbed."""
        import logging

        stream = io.StringIO()
        configure_logging("info", "json", stream=stream)
        logging.getLogger("urllib3.connectionpool").warning(
            "Retrying after error: %s", f"POST /token password={SECRET} Authorization: Bearer {SECRET}"
        )
        (event,) = json_lines(stream)
        assert event["event"] == "library_log" and event["level"] == "warning"
        assert event["logger"] == "urllib3.connectionpool" and "Retrying after error" in event["message"]
        assert SECRET not in stream.getvalue()

    def test_library_lines_follow_the_level(self) -> None:
        """Below the configured level a library's line is dropped, as ours are."""
        import logging

        stream = io.StringIO()
        configure_logging("warning", "json", stream=stream)
        logging.getLogger("urllib3").info("Starting new HTTPS connection")
        logging.getLogger("asyncio").error("Task exception was never retrieved")
        assert [event["logger"] for event in json_lines(stream)] == ["asyncio"]

    def test_python_warnings_come_through(self) -> None:
        """A Python warning (DeprecationWarning shown, say) is a library_log event too."""
        import warnings

        stream = io.StringIO()
        configure_logging("info", "json", stream=stream)
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("old API", UserWarning, stacklevel=1)
        (event,) = json_lines(stream)
        assert event["logger"] == "py.warnings" and "old API" in event["message"]


class TestLogFlags:
    """node_exporter's flag names work: --log.level and --log.format (logfmt too)."""

    def test_logfmt(self) -> None:
        stream = io.StringIO()
        configure_logging("info", "logfmt", stream=stream)
        structlog.get_logger().info("started", port=9879)
        line = stream.getvalue().strip()
        assert line.startswith("timestamp=") and "level=info event=started port=9879" in line

    @pytest.mark.parametrize(
        "command",
        [["serve"], ["check-config"], ["audit", "export", "x.log", "--format", "ecs"]],
    )
    def test_dotted_aliases(self, command: list[str]) -> None:
        """--log.level and --log.format are the same options as --log-level and --log-format."""
        from ccs_exporter.cli import build_parser

        args = build_parser().parse_args([*command, "--log.level", "DEBUG", "--log.format", "logfmt"])
        assert args.log_level == "debug" and args.log_format == "logfmt"

    def test_demo_takes_log_level(self) -> None:
        from ccs_exporter.cli import build_parser

        assert build_parser().parse_args(["demo", "--log.level", "error"]).log_level == "error"
