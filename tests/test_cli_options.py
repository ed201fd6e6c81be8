"""The command line as an on-call person types it: setting flags before or after the command, no
abbreviated flags, and output piped into ``head``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ccs_exporter.simulator import Simulator

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sim(started_for_module: Callable[..., Simulator]) -> Simulator:
    started_simulator: Simulator = started_for_module(run_interval=None)
    return started_simulator


@pytest.fixture
def config(sim: Simulator, tmp_path: Path) -> Path:
    """A settings file for the simulator, as the chart mounts one."""
    password = tmp_path / "password"
    password.write_text(sim.password, encoding="utf-8")
    path = tmp_path / "config.yaml"
    path.write_text(
        f"url: {sim.url}\nusername: '{sim.username}'\npassword_file: {password}\n", encoding="utf-8"
    )
    return path


def run(*args: str, shell: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``ccs-exporter ARGS`` (or a shell line) without CCS_EXPORTER_* variables from this shell."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CCS_EXPORTER_")}
    env["CCS_EXPORTER_LOG_FORMAT"] = "json"
    command: list[str] | str = shell if shell is not None else [sys.executable, "-m", "ccs_exporter", *args]
    return subprocess.run(
        command,
        shell=shell is not None,
        executable="/bin/bash" if shell is not None else None,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


class TestOptionsBeforeTheCommand:
    """`ccs-exporter --config FILE jobs runs JOB_ID`, the runbooks' command, works."""

    def test_runbook_command(self, sim: Simulator, config: Path) -> None:
        """--config before `jobs runs` is used (not overwritten by the command's default)."""
        result = run("--config", str(config), "jobs", "runs", sim.job_ids[0], "--count", "1")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["JobID"] == sim.job_ids[0]

    def test_between_jobs_and_its_command(self, sim: Simulator, config: Path) -> None:
        """`jobs --config FILE runs JOB_ID` works as well."""
        result = run("jobs", "--config", str(config), "runs", sim.job_ids[0])
        assert result.returncode == 0, result.stderr

    def test_after_the_command_too(self, sim: Simulator, config: Path) -> None:
        """The same flag after the command works as before."""
        result = run("jobs", "get", sim.job_ids[0], "--config", str(config))
        assert result.returncode == 0, result.stderr

    def test_after_wins_over_before(self, sim: Simulator, config: Path, tmp_path: Path) -> None:
        """A flag given on both sides: the one after the command counts."""
        wrong = tmp_path / "wrong.yaml"
        wrong.write_text("url: http://127.0.0.1:1\nusername: x\npassword: y\n", encoding="utf-8")
        result = run("--config", str(wrong), "jobs", "get", sim.job_ids[0], "--config", str(config))
        assert result.returncode == 0, result.stderr

    def test_log_level_before_the_command(self, sim: Simulator, config: Path) -> None:
        """--log-level error before the command silences the info line a login writes."""
        quiet = run("--log-level", "error", "--config", str(config), "jobs", "get", sim.job_ids[0])
        chatty = run("--log-level", "debug", "--config", str(config), "jobs", "get", sim.job_ids[0])
        assert quiet.returncode == 0 and chatty.returncode == 0, quiet.stderr + chatty.stderr
        assert '"level": "debug"' in chatty.stderr
        assert '"level": "debug"' not in quiet.stderr and '"level": "info"' not in quiet.stderr

    def test_serve_flags_before_check_config(self, sim: Simulator, config: Path) -> None:
        """An exporter flag before check-config reaches it."""
        result = run("--job-ids", sim.job_ids[1], "--config", str(config), "check-config")
        assert result.returncode == 0, result.stderr
        assert sim.job_ids[1] in result.stdout

    def test_flag_the_command_does_not_read(self, sim: Simulator) -> None:
        """--job-ids before `jobs get` is a usage error naming the flag, not silently dropped."""
        result = run("--job-ids", sim.job_ids[0], "jobs", "get", sim.job_ids[0])
        assert result.returncode == 2
        assert result.stderr.strip() == "ccs-exporter: --job-ids: jobs get does not read this setting"

    def test_config_before_audit_verify(self, config: Path, tmp_path: Path) -> None:
        """audit verify reads only its FILE: --config before it says so instead of being ignored."""
        result = run("--config", str(config), "audit", "verify", str(tmp_path / "audit.jsonl"))
        assert result.returncode == 2
        assert result.stderr.strip() == (
            "ccs-exporter: --config: audit verify reads no settings (no --config, no setting flags)"
        )


class TestNoAbbreviations:
    """A flag is spelt out: `--pass` is not a prefix of two others, `--password` does not exist."""

    def test_prefix_is_unknown(self, sim: Simulator) -> None:
        result = run("jobs", "get", sim.job_ids[0], "--password-enc", "plain")
        assert result.returncode == 2
        assert "unrecognized arguments: --password-enc" in result.stderr
        assert "ambiguous" not in result.stderr

    def test_password_flag_says_where_the_password_goes(self, sim: Simulator) -> None:
        """--password is refused with the two ways to give one, and its value is never echoed."""
        result = run("jobs", "get", sim.job_ids[0], "--password", "Canary-pw-81")
        assert result.returncode == 2
        assert "$CCS_EXPORTER_PASSWORD" in result.stderr and "--password-file" in result.stderr
        assert "Canary-pw-81" not in result.stderr


class TestClosedPipe:
    """`... | head -1` ends quietly: no traceback, exit 141 as a tool killed by SIGPIPE."""

    @pytest.mark.parametrize(
        "command",
        [
            "check-config --config {config}",
            "jobs search '(JobName Contains a)' --config {config} -o table",
            "jobs search '(JobName Contains a)' --config {config}",
            "--config {config} jobs get {job}",
            "--config {config} jobs runs {job} --count 0 --messages",
        ],
    )
    def test_head_one(self, sim: Simulator, config: Path, command: str) -> None:
        line = command.format(config=config, job=sim.job_ids[0])
        # The reader closes before the command writes (the writer starts a second later): what `head -1`
        # does to a long listing.
        writer = f"{{ sleep 1; exec {sys.executable} -m ccs_exporter {line}; }}"
        result = run(shell=f"set -o pipefail; {writer} | (exec 0<&-; true)")
        assert "Traceback" not in result.stderr and "Error" not in result.stderr, result.stderr
        assert result.stderr == ""
        assert result.returncode == 141
