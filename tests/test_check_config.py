"""`ccs-exporter check-config` as an operator runs it: a summary without secrets, exit 0 or 2, `--connect`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from pydantic_core import PydanticUndefined

from ccs_exporter.settings.config import Settings, env_name

MISSING_JOB = "00000000-0000-4000-8000-000000000000"


def run_check(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m ccs_exporter check-config` with only the given CCS_EXPORTER_* variables."""
    base = {key: value for key, value in os.environ.items() if not key.startswith("CCS_EXPORTER_")}
    return subprocess.run(
        [sys.executable, "-m", "ccs_exporter", "check-config", *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def summary(stdout: str) -> dict[str, str]:
    """The SETTING/VALUE table as a mapping of environment variable to the value shown."""
    rows: dict[str, str] = {}
    for line in stdout.splitlines():
        name, _, value = line.partition(" ")
        if name.startswith("CCS_EXPORTER_"):
            rows[name] = value.strip()
    return rows


@pytest.fixture
def config_for(tmp_path: Path) -> Callable[..., Path]:
    """Write a config file for a simulator (password in a file) with extra keys; return its path."""

    def write(sim: Any, **extra: Any) -> Path:
        password_file = tmp_path / "password"
        password_file.write_text(sim.password + "\n", encoding="utf-8")
        values = {
            "url": sim.url,
            "username": sim.username,
            "password_file": str(password_file),
            "job_ids": sim.job_ids[:3],
            "listen_address": "127.0.0.1:0",
            **extra,
        }
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(values), encoding="utf-8")
        return path

    return write


@pytest.mark.integration
class TestWithoutConnect:
    """Checking the configuration never talks to CCS."""

    def test_valid_configuration_summary(self, simulator: Any, config_for: Callable[..., Path]) -> None:
        """Exit 0 and one row per setting; the password shown as set, never its value; nothing sent."""
        config = config_for(simulator, poll_interval_seconds=15)
        result = run_check("--config", str(config), env={"CCS_EXPORTER_PASSWORD": simulator.password})
        assert result.returncode == 0, result.stderr
        rows = summary(result.stdout)
        assert set(rows) == {env_name(name) for name in Settings.model_fields}
        assert rows["CCS_EXPORTER_PASSWORD"] == "set"
        assert rows["CCS_EXPORTER_URL"] == simulator.url
        assert rows["CCS_EXPORTER_POLL_INTERVAL_SECONDS"] == "15"
        assert rows["CCS_EXPORTER_CONCURRENCY"] == "8 (default)"
        assert rows["CCS_EXPORTER_JOB_IDS"].startswith("3: " + simulator.job_ids[0])
        assert simulator.password not in result.stdout + result.stderr
        assert simulator.request_count() == 0

    def test_password_unset_when_only_a_file(self, simulator: Any, config_for: Callable[..., Path]) -> None:
        """With only a password file, the password row says unset and the file row names the file."""
        config = config_for(simulator)
        result = run_check("--config", str(config))
        assert result.returncode == 0, result.stderr
        rows = summary(result.stdout)
        assert rows["CCS_EXPORTER_PASSWORD"] == "unset"
        assert rows["CCS_EXPORTER_PASSWORD_FILE"] == str(config.parent / "password")
        assert simulator.request_count() == 0

    @pytest.mark.parametrize(
        ("extra", "named"),
        [
            ({"job_ids": ["not-a-guid"]}, "CCS_EXPORTER_JOB_IDS"),
            ({"url": "https://ccs.example.com:99999"}, "CCS_EXPORTER_URL"),
            ({"listen_address": "nowhere"}, "CCS_EXPORTER_LISTEN_ADDRESS"),
            ({"request_timeout_seconds": ".nan"}, "CCS_EXPORTER_REQUEST_TIMEOUT_SECONDS"),
            ({"job_idz": []}, "'job_idz'"),
        ],
        ids=["bad-guid", "bad-port", "bad-listen", "nan-timeout", "unknown-key"],
    )
    def test_bad_setting_exit_2(
        self, simulator: Any, config_for: Callable[..., Path], extra: dict[str, Any], named: str
    ) -> None:
        """A bad setting exits 2 with one line naming it; no summary, nothing sent."""
        config = config_for(simulator, **extra)
        if extra.get("request_timeout_seconds") == ".nan":  # a YAML NaN, not the string
            config.write_text(config.read_text(encoding="utf-8").replace("'.nan'", ".nan"), encoding="utf-8")
        result = run_check("--config", str(config))
        assert result.returncode == 2
        assert result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and named in lines[0], result.stderr
        assert simulator.request_count() == 0

    def test_web_config_is_loaded(
        self, simulator: Any, config_for: Callable[..., Path], tmp_path: Path
    ) -> None:
        """A valid web config is summarised; a bad one exits 2 naming the key."""
        web = tmp_path / "web.yml"
        web.write_text("basic_auth_users:\n  prometheus: $2y$10$" + "a" * 53 + "\n", encoding="utf-8")
        config = config_for(simulator, web_config_file=str(web))
        result = run_check("--config", str(config))
        assert result.returncode == 0, result.stderr
        assert summary(result.stdout)["CCS_EXPORTER_WEB_CONFIG_FILE"] == (
            f"{web}: plain HTTP, basic auth for 1 user(s)"
        )
        web.write_text("basic_auth_users:\n  prometheus: hunter2\n", encoding="utf-8")
        result = run_check("--config", str(config))
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "web config" in lines[0] and "basic_auth_users" in lines[0]
        assert "hunter2" not in result.stderr
        assert simulator.request_count() == 0

    def test_flags_and_aliases(self, simulator: Any, config_for: Callable[..., Path], tmp_path: Path) -> None:
        """--config.file, --web.listen-address and --web.config.file work as the long names do."""
        web = tmp_path / "web.yml"
        web.write_text("{}\n", encoding="utf-8")
        config = config_for(simulator)
        result = run_check(
            "--config.file",
            str(config),
            "--web.listen-address",
            "127.0.0.1:19879",
            "--web.config.file",
            str(web),
            "--poll-interval",
            "7.5",
        )
        assert result.returncode == 0, result.stderr
        rows = summary(result.stdout)
        assert rows["CCS_EXPORTER_LISTEN_ADDRESS"] == "127.0.0.1:19879"
        assert rows["CCS_EXPORTER_WEB_CONFIG_FILE"].startswith(str(web))
        assert rows["CCS_EXPORTER_POLL_INTERVAL_SECONDS"] == "7.5"

    def test_url_credentials_never_shown(self, config_for: Callable[..., Path], simulator: Any) -> None:
        """A URL holding credentials is refused and its password appears nowhere."""
        config = config_for(simulator, url="https://svc:Check-Canary-91@ccs.example.com")
        result = run_check("--config", str(config))
        assert result.returncode == 2
        assert "Check-Canary-91" not in result.stdout + result.stderr


@pytest.mark.integration
class TestConnect:
    """`--connect` logs in and reads one page, and says what it reached."""

    def test_login_and_one_job(self, simulator: Any, config_for: Callable[..., Path]) -> None:
        """Exit 0 after exactly one login and one read of the first job."""
        result = run_check("--config", str(config_for(simulator)), "--connect")
        assert result.returncode == 0, result.stderr
        assert "login" in result.stdout and f"logged in as {simulator.username}" in result.stdout
        assert f"job {simulator.job_ids[0]}" in result.stdout and "ok: readable" in result.stdout
        assert simulator.request_count() == 2
        assert simulator.request_count("token") == 1

    def test_wrong_password(self, started: Callable[..., Any], config_for: Callable[..., Path]) -> None:
        """A refused login exits 1, reports the login as failed, reads nothing, and shows no password."""
        sim = started(password="The-Real-Password-1")
        config = config_for(sim)
        (config.parent / "password").write_text("Wrong-Canary-Password-2\n", encoding="utf-8")
        result = run_check("--config", str(config), "--connect")
        assert result.returncode == 1
        assert "login" in result.stdout and "FAILED" in result.stdout
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "CCS request failed" in lines[0]
        assert "Wrong-Canary-Password-2" not in result.stdout + result.stderr
        assert sim.request_count() == sim.request_count("token") == 1

    def test_unknown_job(self, simulator: Any, config_for: Callable[..., Path]) -> None:
        """A first job CCS does not know exits 1 after a good login, saying the job was not found."""
        result = run_check("--config", str(config_for(simulator, job_ids=[MISSING_JOB])), "--connect")
        assert result.returncode == 1
        assert "ok: logged in" in result.stdout
        assert f"job {MISSING_JOB}" in result.stdout and "404" in result.stdout
        assert simulator.request_count() == 2

    def test_one_search_page(self, simulator: Any, config_for: Callable[..., Path]) -> None:
        """With searches set, one page of the first search is read (not the job ids), and counted."""
        config = config_for(
            simulator,
            job_search=["(JobType = COLLECTIONJOB)", "(JobName Contains PCI)"],
            search_page_size=2,
        )
        result = run_check("--config", str(config), "--connect")
        assert result.returncode == 0, result.stderr
        assert "search '(JobType = COLLECTIONJOB)', page 0" in result.stdout
        assert "ok: 2 job(s) on the first page" in result.stdout
        assert simulator.request_count("search_jobs") == 1
        assert simulator.request_count() == 2

    def test_search_refused(self, simulator: Any, config_for: Callable[..., Path]) -> None:
        """A search CCS refuses (a malformed expression) exits 1 with CCS's 400 on one line."""
        config = config_for(simulator, job_search=["(NoSuchAttribute = 1)"])
        result = run_check("--config", str(config), "--connect")
        assert result.returncode == 1
        assert "FAILED" in result.stdout and "400" in result.stdout
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "400" in lines[0]

    def test_no_jobs_configured(self, simulator: Any, config_for: Callable[..., Path]) -> None:
        """Without job ids or searches only the login is checked, and the report says so."""
        result = run_check("--config", str(config_for(simulator, job_ids=[])), "--connect")
        assert result.returncode == 0, result.stderr
        assert "only the login was checked" in result.stdout
        assert simulator.request_count() == 1

    def test_unreachable(self, config_for: Callable[..., Path], started: Callable[..., Any]) -> None:
        """A CCS that refuses connections exits 1 with one line; the login is reported as failed."""
        sim = started()
        config = config_for(sim)
        sim.stop()
        result = run_check("--config", str(config), "--connect", "--request-timeout", "2")
        assert result.returncode == 1
        assert "FAILED" in result.stdout
        assert len(result.stderr.strip().splitlines()) == 1


EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.yaml"
# Paths the example points at on a real host; the test gives local stand-ins through the environment.
EXAMPLE_PATHS = ("password_file", "ca_bundle", "audit_log")


class TestExampleFile:
    """config.example.yaml cannot go stale: every setting is in it and check-config accepts it."""

    def test_every_setting_documented(self) -> None:
        """Each setting appears as a key, set or commented out, after a comment that explains it."""
        lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
        for name in Settings.model_fields:
            found = [i for i, line in enumerate(lines) if re.match(rf"^(# )?{name}:", line)]
            assert len(found) == 1, f"{name} is not in config.example.yaml exactly once"
            assert lines[found[0] - 1].startswith("# "), f"{name} has no comment above it"

    def test_commented_defaults_are_the_defaults(self) -> None:
        """A commented-out `# key: value` shows the real default (where the setting has one)."""
        checked = 0
        for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
            match = re.match(r"^# ([a-z_]+): (.+)$", line)
            if not match or match.group(1) not in Settings.model_fields:
                continue
            field = Settings.model_fields[match.group(1)]
            if field.default is None or field.default is PydanticUndefined:
                continue
            assert yaml.safe_load(match.group(2)) == field.default, line
            checked += 1
        assert checked >= 8

    @pytest.mark.integration
    def test_check_config_accepts_it_as_is(self) -> None:
        """`check-config --config config.example.yaml`, the command the file suggests, passes in one run
        on any machine: exit 0, only the missing password as a warning, every set key shown as set."""
        result = run_check("--config", str(EXAMPLE))
        assert result.returncode == 0, result.stderr
        warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
        assert len(warnings) == 1 and "no password" in warnings[0], result.stderr
        rows = summary(result.stdout)
        example = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
        for name, value in example.items():
            shown = rows[env_name(name)]
            assert not shown.endswith("(default)"), name
            expected = f"{len(value)}: {', '.join(value)}" if isinstance(value, list) else str(value)
            assert shown == expected, name

    @pytest.mark.integration
    def test_check_config_accepts_its_commented_paths(self, tmp_path: Path) -> None:
        """The example's commented host paths, given as local files, load too (--strict: no warning)."""
        password = tmp_path / "password"
        password.write_text("example-password\n", encoding="utf-8")
        ca = tmp_path / "ca.pem"
        ca.write_bytes(Path(requests.certs.where()).read_bytes())
        text = EXAMPLE.read_text(encoding="utf-8")
        for name in EXAMPLE_PATHS:
            assert f"\n# {name}: /" in text, name
        env = {
            "CCS_EXPORTER_PASSWORD_FILE": str(password),
            "CCS_EXPORTER_CA_BUNDLE": str(ca),
            "CCS_EXPORTER_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
        }
        result = run_check("--config", str(EXAMPLE), "--strict", env=env)
        assert result.returncode == 0, result.stderr
        assert "warning" not in result.stderr


@pytest.mark.integration
class TestEveryProblemAtOnce:
    """One run of check-config lists every problem of the file, the environment and the flags."""

    def test_all_problems_one_line_each(self, tmp_path: Path) -> None:
        """Five problems from three sources: five lines, each naming its setting; exit 2, nothing else."""
        config = tmp_path / "config.yaml"
        config.write_text(
            "url: ftp://ccs.example.com\nusername: CORP\\svc\ncolour: blue\nconcurrency: 0\n",
            encoding="utf-8",
        )
        result = run_check(
            "--config",
            str(config),
            "--poll-interval",
            "-5",
            env={"CCS_EXPORTER_CA_BUNDLE": str(tmp_path / "no.pem")},
        )
        assert result.returncode == 2
        assert result.stdout == ""
        lines = result.stderr.strip().splitlines()
        named = ["'colour'", "CCS_EXPORTER_URL", "CCS_EXPORTER_CA_BUNDLE", "CCS_EXPORTER_CONCURRENCY",
                 "CCS_EXPORTER_POLL_INTERVAL_SECONDS"]  # fmt: skip
        assert len(lines) == len(named), result.stderr
        for name in named:
            assert sum(name in line for line in lines) == 1, (name, result.stderr)
        assert all(line.startswith("ccs-exporter: configuration error: ") for line in lines)

    def test_password_missing_is_an_error_with_connect(self, tmp_path: Path) -> None:
        """--connect needs the password: its absence is an error there, listed with the others."""
        config = tmp_path / "config.yaml"
        config.write_text("url: https://ccs.example.com\nusername: u\nconcurrency: 0\n", encoding="utf-8")
        result = run_check("--config", str(config), "--connect")
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 2 and "no password" in lines[1] and "CONCURRENCY" in lines[0]

    def test_listen_address_port_alone(self, tmp_path: Path) -> None:
        """`listen_address: 9879` (a YAML number) asks for host:port, not "a valid string"."""
        config = tmp_path / "config.yaml"
        config.write_text("url: https://c.example.com\nusername: u\nlisten_address: 9879\n", encoding="utf-8")
        result = run_check("--config", str(config))
        assert result.returncode == 2
        assert "CCS_EXPORTER_LISTEN_ADDRESS" in result.stderr and "host:port" in result.stderr
        assert "0.0.0.0:9879" in result.stderr and "valid string" not in result.stderr

    def test_empty_variable_unsets_a_file_setting(self, tmp_path: Path) -> None:
        """`CCS_EXPORTER_CA_BUNDLE=` switches off the file's ca_bundle (which points nowhere here)."""
        config = tmp_path / "config.yaml"
        config.write_text(
            "url: https://c.example.com\nusername: u\nca_bundle: /nonexistent/ca.pem\njob_ids: []\n"
            "poll_interval_seconds: 30\n",
            encoding="utf-8",
        )
        assert run_check("--config", str(config)).returncode == 2
        env = {"CCS_EXPORTER_CA_BUNDLE": "", "CCS_EXPORTER_POLL_INTERVAL_SECONDS": ""}
        result = run_check("--config", str(config), env=env)
        assert result.returncode == 0, result.stderr
        rows = summary(result.stdout)
        assert rows["CCS_EXPORTER_CA_BUNDLE"].startswith("unset")
        assert rows["CCS_EXPORTER_POLL_INTERVAL_SECONDS"] == "60 (default)"


@pytest.mark.integration
class TestWarnings:
    """Valid settings that will not work as meant are warnings: exit 0, or 2 with --strict."""

    def test_nothing_to_watch(self, simulator: Any, config_for: Callable[..., Path]) -> None:
        """No job ids and no search: a warning naming both settings; --strict fails on it."""
        config = config_for(simulator, job_ids=[])
        result = run_check("--config", str(config))
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[0].endswith("with 1 warning(s) (on stderr)")
        warning = result.stderr.strip()
        assert warning.startswith("warning: nothing to watch")
        assert "CCS_EXPORTER_JOB_IDS" in warning and "CCS_EXPORTER_JOB_SEARCH" in warning
        strict = run_check("--config", str(config), "--strict")
        assert strict.returncode == 2
        assert strict.stderr.strip().splitlines()[-1] == "ccs-exporter: --strict: 1 warning(s), see above"

    def test_no_warning_with_a_search(self, simulator: Any, config_for: Callable[..., Path]) -> None:
        """A search alone is something to watch."""
        config = config_for(simulator, job_ids=[], job_search="(JobName Contains a)")
        result = run_check("--config", str(config), "--strict")
        assert result.returncode == 0, result.stderr
        assert "warning" not in result.stderr
