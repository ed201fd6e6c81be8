"""Tests of the command line's usage and configuration errors: exit 2, one line on stderr, nothing sent."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import responses
import structlog

from ccs_exporter import cli

JOB_ID = "23c59087-f3d4-4e05-a39e-3440c58e58fb"
PASSWORD = "Canary-CLI-pw-4Rt9"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start every test without CCS_EXPORTER_* variables from the developer's shell."""
    for name in list(os.environ):
        if name.startswith("CCS_EXPORTER_"):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Undo the logging set-up main() does, which points at this test's captured (then closed) stderr."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def ccs_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A complete, valid connection configuration in the environment."""
    monkeypatch.setenv("CCS_EXPORTER_URL", "https://ccs.example.test:12431")
    monkeypatch.setenv("CCS_EXPORTER_USERNAME", "CORP\\svc-ccs")
    monkeypatch.setenv("CCS_EXPORTER_PASSWORD", PASSWORD)


def run_module(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m ccs_exporter`` with only the given CCS_EXPORTER_* variables."""
    base = {key: value for key, value in os.environ.items() if not key.startswith("CCS_EXPORTER_")}
    return subprocess.run(
        [sys.executable, "-m", "ccs_exporter", *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def stderr_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The single line the command wrote to stderr (fails if there is not exactly one)."""
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert captured.out == ""
    return lines[0]


@pytest.mark.integration
class TestProcess:
    def test_no_arguments_is_usage_error(self) -> None:
        """`python -m ccs_exporter` without a command prints usage and exits 2."""
        result = run_module()
        assert result.returncode == 2
        assert "usage: ccs-exporter" in result.stderr
        assert "Traceback" not in result.stderr

    def test_bad_setting_one_line_no_traceback(self) -> None:
        """A bad setting exits 2 with one stderr line naming it and its value, and no traceback."""
        result = run_module(
            "jobs",
            "get",
            JOB_ID,
            env={
                "CCS_EXPORTER_URL": "ccs.example.test:12431",
                "CCS_EXPORTER_USERNAME": "CORP\\svc-ccs",
                "CCS_EXPORTER_PASSWORD": PASSWORD,
            },
        )
        assert result.returncode == 2
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert "CCS_EXPORTER_URL" in lines[0] and "'ccs.example.test:12431'" in lines[0]
        assert PASSWORD not in result.stderr


class TestUsageErrors:
    def test_no_command(self, capsys: pytest.CaptureFixture[str]) -> None:
        """No command exits 2 with the usage on stderr."""
        assert cli.main([]) == 2
        assert "usage:" in capsys.readouterr().err

    def test_jobs_without_subcommand(self, capsys: pytest.CaptureFixture[str]) -> None:
        """`jobs` alone exits 2."""
        assert cli.main(["jobs"]) == 2

    @pytest.mark.parametrize(
        "argv",
        [
            ["no-such-command"],
            ["jobs", "get"],
            ["jobs", "runs", JOB_ID, "--count", "-1"],
            ["jobs", "runs", JOB_ID, "--count", "many"],
            ["jobs", "get", JOB_ID, "--request-timeout", "soon"],
            ["jobs", "get", JOB_ID, "--password-encoding", "hex"],
            ["demo", "--run-interval", "nan"],
            ["demo", "--run-interval", "-5"],
            ["demo", "--poll-interval", "inf"],
            ["demo", "--poll-interval", "0"],
        ],
    )
    def test_bad_arguments_exit_2(self, capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
        """Arguments argparse refuses exit 2 with a message and no traceback."""
        with pytest.raises(SystemExit) as caught:
            cli.main(argv)
        assert caught.value.code == 2
        err = capsys.readouterr().err
        assert "error:" in err and "Traceback" not in err


class TestConfigurationErrors:
    def test_missing_url(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
        """Without a URL the command exits 2, naming the missing setting."""
        monkeypatch.setenv("CCS_EXPORTER_USERNAME", "CORP\\svc-ccs")
        monkeypatch.setenv("CCS_EXPORTER_PASSWORD", PASSWORD)
        assert cli.main(["jobs", "get", JOB_ID]) == 2
        line = stderr_line(capsys)
        assert line.startswith("ccs-exporter: configuration error:")
        assert "CCS_EXPORTER_URL" in line

    def test_flag_overrides_environment(self, ccs_env: None, capsys: pytest.CaptureFixture[str]) -> None:
        """A bad --url flag overrides a good environment and is reported with its value."""
        assert cli.main(["jobs", "get", JOB_ID, "--url", "ftp://ccs"]) == 2
        line = stderr_line(capsys)
        assert "CCS_EXPORTER_URL" in line and "'ftp://ccs'" in line

    def test_unknown_key_in_config_file(
        self, ccs_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An unknown key in --config exits 2, naming the key."""
        config = tmp_path / "config.yaml"
        config.write_text("job_id: x\n", encoding="utf-8")
        assert cli.main(["jobs", "runs", JOB_ID, "--config", str(config)]) == 2
        assert "unknown key 'job_id'" in stderr_line(capsys)

    def test_missing_password_file(
        self, ccs_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A --password-file that does not exist exits 2, naming it."""
        monkeypatch.delenv("CCS_EXPORTER_PASSWORD")
        assert cli.main(["jobs", "get", JOB_ID, "--password-file", "/nonexistent/pw"]) == 2
        line = stderr_line(capsys)
        assert "CCS_EXPORTER_PASSWORD_FILE" in line and "/nonexistent/pw" in line

    def test_password_never_printed(
        self,
        ccs_env: None,
        monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Neither another setting's error nor an invalid password shows the password."""
        monkeypatch.setenv("CCS_EXPORTER_URL", "nope")
        assert cli.main(["jobs", "get", JOB_ID]) == 2
        assert PASSWORD not in stderr_line(capsys)
        monkeypatch.setenv("CCS_EXPORTER_URL", "https://ccs.example.test:12431")
        monkeypatch.delenv("CCS_EXPORTER_PASSWORD")
        config = tmp_path / "config.yaml"
        config.write_text(f"password: [{PASSWORD}]\n", encoding="utf-8")
        assert cli.main(["jobs", "get", JOB_ID, "--config", str(config)]) == 2
        line = stderr_line(capsys)
        assert "CCS_EXPORTER_PASSWORD" in line and PASSWORD not in line


class TestJobIdChecked:
    @pytest.mark.parametrize("command", ["get", "runs"])
    @pytest.mark.parametrize("job_id", ["not-a-guid", "23c59087", "'; DROP TABLE jobs; --"])
    def test_non_guid_sends_nothing(
        self, ccs_env: None, capsys: pytest.CaptureFixture[str], command: str, job_id: str
    ) -> None:
        """A job id that is not a GUID exits 2 before any request, with the id in the message."""
        with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
            assert cli.main(["jobs", command, job_id]) == 2
            assert len(mock.calls) == 0
        line = stderr_line(capsys)
        assert "is not a GUID" in line and repr(job_id) in line

    def test_a_name_gets_the_find_hint(self, ccs_env: None, capsys: pytest.CaptureFixture[str]) -> None:
        """`jobs get 'Nightly CER'` (a name, not an id) points to `jobs find`, which takes a name."""
        assert cli.main(["jobs", "get", "Nightly CER"]) == 2
        line = stderr_line(capsys)
        assert "'Nightly CER' is not a GUID" in line and "ccs-exporter jobs find NAME" in line


@pytest.mark.integration
class TestServeRefusesBadSettings:
    """`serve` with a bad setting exits 2 with one line naming it, before anything is sent to CCS."""

    @pytest.mark.parametrize(
        ("change", "named"),
        [
            (
                {"CCS_EXPORTER_JOB_IDS": "3f2a7c41-8e5b-4d09-a6c3-1b7e9d2f4a01,not-a-guid"},
                "CCS_EXPORTER_JOB_IDS",
            ),
            ({"CCS_EXPORTER_JOB_IDS": "3f2a7c41-8e5b-4d09-a6c3"}, "CCS_EXPORTER_JOB_IDS"),
            ({"CCS_EXPORTER_URL": "{url}/?debug=1"}, "CCS_EXPORTER_URL"),
            ({"CCS_EXPORTER_URL": "{hostport}"}, "CCS_EXPORTER_URL"),
            ({"CCS_EXPORTER_CA_BUNDLE": "/nonexistent/ca.pem"}, "CCS_EXPORTER_CA_BUNDLE"),
            (
                {"CCS_EXPORTER_PASSWORD": "", "CCS_EXPORTER_PASSWORD_FILE": "{tmp}"},
                "CCS_EXPORTER_PASSWORD_FILE",
            ),
            (
                {"CCS_EXPORTER_PASSWORD": "", "CCS_EXPORTER_PASSWORD_FILE": "{tmp}/utf16.txt"},
                "CCS_EXPORTER_PASSWORD_FILE",
            ),
            (
                {"CCS_EXPORTER_PASSWORD": "", "CCS_EXPORTER_PASSWORD_FILE": "{tmp}/empty.txt"},
                "CCS_EXPORTER_PASSWORD_FILE",
            ),
            ({"CCS_EXPORTER_PASSWORD": "EMPTY"}, "CCS_EXPORTER_PASSWORD "),
            ({"CCS_EXPORTER_URL": "http://127.0.0.1:99999"}, "CCS_EXPORTER_URL"),
            ({"CCS_EXPORTER_AUDIT_LOG": "{tmp}"}, "CCS_EXPORTER_AUDIT_LOG"),
            ({"CCS_EXPORTER_AUDIT_LOG": "{tmp}/missing/audit.jsonl"}, "CCS_EXPORTER_AUDIT_LOG"),
            ({"CCS_EXPORTER_REQUEST_TIMEOUT_SECONDS": "nan"}, "CCS_EXPORTER_REQUEST_TIMEOUT_SECONDS"),
            ({"CCS_EXPORTER_POLL_INTERVAL_SECONDS": "0"}, "CCS_EXPORTER_POLL_INTERVAL_SECONDS"),
            ({"CCS_EXPORTER_LISTEN_ADDRESS": "127.0.0.1"}, "CCS_EXPORTER_LISTEN_ADDRESS"),
            ({"CONFIG": "job_id: x\n"}, "'job_id'"),
        ],
        ids=[
            "bad-guid",
            "short-guid",
            "url-query",
            "url-no-scheme",
            "missing-ca",
            "password-file-dir",
            "password-file-utf16",
            "password-file-empty",
            "password-empty",
            "url-port-out-of-range",
            "audit-log-dir",
            "audit-log-no-parent",
            "timeout-nan",
            "zero-interval",
            "listen-no-port",
            "config-unknown-key",
        ],
    )
    def test_exit_2_and_nothing_sent(
        self, simulator: Any, tmp_path: Path, change: dict[str, str], named: str
    ) -> None:
        """The process exits 2, prints one line naming the setting, and the simulator saw no request."""
        env = {
            "CCS_EXPORTER_URL": simulator.url,
            "CCS_EXPORTER_USERNAME": simulator.username,
            "CCS_EXPORTER_PASSWORD": simulator.password,
            "CCS_EXPORTER_JOB_IDS": simulator.job_ids[0],
            "CCS_EXPORTER_LISTEN_ADDRESS": "127.0.0.1:0",
        }
        args = ["serve"]
        (tmp_path / "utf16.txt").write_bytes(simulator.password.encode("utf-16"))
        (tmp_path / "empty.txt").write_bytes(b"\n")
        for key, value in change.items():
            value = value.format(url=simulator.url, tmp=tmp_path, hostport=simulator.url.split("//")[1])
            if key == "CONFIG":
                config = tmp_path / "config.yaml"
                config.write_text(value, encoding="utf-8")
                args += ["--config", str(config)]
            elif value == "EMPTY":
                env[key] = ""
            elif value:
                env[key] = value
            else:
                env.pop(key)
        result = run_module(*args, env=env)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert named in lines[0] and simulator.password not in lines[0]
        assert simulator.request_count() == 0


@pytest.mark.integration
class TestJobsCommandsRefuseBadSecrets:
    """Every command that talks to CCS checks the password before anything is sent or written."""

    @pytest.mark.parametrize(
        "command",
        [
            ["jobs", "get", "{job}"],
            ["jobs", "runs", "{job}"],
            ["jobs", "create", "-f", "{tmp}/spec.json"],
            ["jobs", "update", "{job}", "-f", "{tmp}/spec.json"],
            ["jobs", "delete", "{job}"],
            ["jobs", "search", "(JobName Contains a)"],
            ["jobs", "run", "{job}"],
            ["audit", "reconcile", "{tmp}/audit.jsonl"],
        ],
        ids=["get", "runs", "create", "update", "delete", "search", "run", "audit-reconcile"],
    )
    @pytest.mark.parametrize(
        ("password", "named"),
        [
            ({"CCS_EXPORTER_PASSWORD_FILE": "{tmp}/utf16.txt"}, "CCS_EXPORTER_PASSWORD_FILE"),
            ({"CCS_EXPORTER_PASSWORD_FILE": "{tmp}/empty.txt"}, "CCS_EXPORTER_PASSWORD_FILE"),
            ({"CCS_EXPORTER_PASSWORD": ""}, "CCS_EXPORTER_PASSWORD "),
        ],
        ids=["file-utf16", "file-empty", "variable-empty"],
    )
    def test_bad_password_exit_2_nothing_sent(
        self, simulator: Any, tmp_path: Path, command: list[str], password: dict[str, str], named: str
    ) -> None:
        """A non-UTF-8 or empty password exits 2 with one line naming the setting, without a traceback."""
        (tmp_path / "utf16.txt").write_bytes(simulator.password.encode("utf-16"))
        (tmp_path / "empty.txt").write_bytes(b"")
        (tmp_path / "spec.json").write_text('{"JobDescription": "x"}', encoding="utf-8")
        env = {
            "CCS_EXPORTER_URL": simulator.url,
            "CCS_EXPORTER_USERNAME": simulator.username,
            "CCS_EXPORTER_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
            **{key: value.format(tmp=tmp_path) for key, value in password.items()},
        }
        args = [part.format(job=simulator.job_ids[0], tmp=tmp_path) for part in command]
        result = run_module(*args, env=env)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert named in lines[0] + " " and "Traceback" not in result.stderr
        assert simulator.request_count() == 0
        assert not (tmp_path / "audit.jsonl").exists()


@pytest.mark.integration
class TestUrlCredentials:
    """A URL with credentials in it is refused, and its password is never echoed."""

    @pytest.mark.parametrize("command", [["serve"], ["jobs", "get", JOB_ID, "--insecure"]])
    def test_refused_and_never_echoed(self, tmp_path: Path, command: list[str]) -> None:
        """Even with TLS verification off (whose warning names the URL), the URL's password is never shown."""
        result = run_module(
            *command,
            env={
                "CCS_EXPORTER_URL": "https://svc:Url-Canary-pw-88@127.0.0.1:9",
                "CCS_EXPORTER_USERNAME": "CORP\\svc-ccs",
                "CCS_EXPORTER_PASSWORD": PASSWORD,
                "CCS_EXPORTER_VERIFY_TLS": "false",
            },
        )
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "CCS_EXPORTER_URL" in lines[0]
        assert "Url-Canary-pw-88" not in result.stderr + result.stdout


# Every flag that sets a setting, and the variable its help must name. A new flag belongs here or in
# FLAGS_WITHOUT_SETTING, so a flag whose help forgets its variable fails the test below.
SETTING_FLAGS = {
    "--url": "CCS_EXPORTER_URL",
    "--username": "CCS_EXPORTER_USERNAME",
    "--password-file": "CCS_EXPORTER_PASSWORD_FILE",
    "--password-encoding": "CCS_EXPORTER_PASSWORD_ENCODING",
    "--ca-bundle": "CCS_EXPORTER_CA_BUNDLE",
    "--insecure": "CCS_EXPORTER_VERIFY_TLS",
    "--request-timeout": "CCS_EXPORTER_REQUEST_TIMEOUT_SECONDS",
    "--log-level": "CCS_EXPORTER_LOG_LEVEL",
    "--log-format": "CCS_EXPORTER_LOG_FORMAT",
    "--log.level": "CCS_EXPORTER_LOG_LEVEL",
    "--log.format": "CCS_EXPORTER_LOG_FORMAT",
    "--job-ids": "CCS_EXPORTER_JOB_IDS",
    "--listen-address": "CCS_EXPORTER_LISTEN_ADDRESS",
    "--web.listen-address": "CCS_EXPORTER_LISTEN_ADDRESS",
    "--poll-interval": "CCS_EXPORTER_POLL_INTERVAL_SECONDS",
    "--concurrency": "CCS_EXPORTER_CONCURRENCY",
    "--history-window": "CCS_EXPORTER_HISTORY_WINDOW",
    "--audit-log": "CCS_EXPORTER_AUDIT_LOG",
    "--web-config-file": "CCS_EXPORTER_WEB_CONFIG_FILE",
    "--web.config.file": "CCS_EXPORTER_WEB_CONFIG_FILE",
    "--page-size": "CCS_EXPORTER_SEARCH_PAGE_SIZE",
}
FLAGS_WITHOUT_SETTING = {
    "-h", "--help", "--config", "--config.file", "--connect", "-o", "--output", "--count", "--messages",
    "-f", "--file", "--reason", "--keep-job", "--dry-run", "--min-age", "--strict",
}  # fmt: skip
# `demo` brings its own settings and `simulate` has none, so their flags name no variable.
COMMANDS_READING_SETTINGS = [
    ["serve"],
    ["check-config"],
    ["jobs", "get"],
    ["jobs", "runs"],
    ["jobs", "create"],
    ["jobs", "update"],
    ["jobs", "delete"],
    ["jobs", "run"],
    ["jobs", "abort"],
    ["jobs", "search"],
    ["jobs", "find"],
    ["audit", "reconcile"],
]


def option_help(help_text: str) -> dict[str, str]:
    """Each option of a --help text mapped to its whole help entry, wrapped lines joined."""
    entries: list[list[str]] = []
    in_entry = False
    for line in help_text.splitlines():
        if line.startswith("  -"):
            entries.append([line])
            in_entry = True
        elif in_entry and line.startswith("   ") and line.strip():
            entries[-1].append(line)
        else:
            in_entry = False
    options: dict[str, str] = {}
    for entry in entries:
        header = re.split(r"\s{2,}", entry[0].strip(), maxsplit=1)[0]
        text = " ".join(" ".join(entry).split())
        for flag in re.findall(r"(?:^|, )(-{1,2}[\w.-]+)", header):
            options[flag] = text
    return options


class TestHelpNamesVariables:
    @pytest.mark.integration
    @pytest.mark.parametrize("command", COMMANDS_READING_SETTINGS, ids=" ".join)
    def test_every_setting_flag_names_its_variable(self, command: list[str]) -> None:
        """In --help, each flag that sets a setting names its CCS_EXPORTER_ variable; none is unaccounted."""
        result = run_module(*command, "--help", env={"COLUMNS": "90"})
        assert result.returncode == 0, result.stderr
        options = option_help(result.stdout)
        assert options, result.stdout
        for flag, text in options.items():
            if flag in SETTING_FLAGS:
                assert f"${SETTING_FLAGS[flag]}" in text, f"{' '.join(command)} {flag}: {text}"
            else:
                assert flag in FLAGS_WITHOUT_SETTING, f"{' '.join(command)}: {flag} is not accounted for"

    @pytest.mark.integration
    def test_every_setting_flag_is_offered(self) -> None:
        """Each flag of the table exists in some command's help (the table is not stale)."""
        seen: set[str] = set()
        for command in COMMANDS_READING_SETTINGS:
            result = run_module(*command, "--help", env={"COLUMNS": "90"})
            assert result.returncode == 0, result.stderr
            seen |= set(option_help(result.stdout))
        assert set(SETTING_FLAGS) - seen == set()

    def test_help_parser_sees_wrapped_entries(self) -> None:
        """The parser of help texts joins a wrapped entry and splits aliases (so the test above can fail)."""
        sample = (
            "options:\n"
            "  --listen-address HOST:PORT, --web.listen-address HOST:PORT\n"
            "                        host:port for /metrics\n"
            "                        ($CCS_EXPORTER_LISTEN_ADDRESS)\n"
            "  --bare                no variable here\n"
        )
        options = option_help(sample)
        assert set(options) == {"--listen-address", "--web.listen-address", "--bare"}
        assert "$CCS_EXPORTER_LISTEN_ADDRESS" in options["--web.listen-address"]
        assert "$CCS_EXPORTER" not in options["--bare"]
