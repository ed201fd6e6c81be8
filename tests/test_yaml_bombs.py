"""YAML bombs in operator files: refused in one line, quickly and in little memory (issue 23, finding 7).

A billion-laughs config reached 1.6 GB RSS (1.5 GB in a running serve on reload, /metrics unanswered); a
bomb in a job spec burned CPU; 100,000 levels of nesting ended in a RecursionError traceback with exit 1.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from ccs_exporter.errors import ConfigError
from ccs_exporter.settings.config import load_settings
from ccs_exporter.settings.inputs import MAX_YAML_DEPTH, load_yaml_text

ROOT = Path(__file__).parent.parent
JOB_ID = "23c59087-f3d4-4e05-a39e-3440c58e58fb"


def billion_laughs() -> str:
    """Nine levels of nine aliases each: 9**9 strings (gigabytes) when expanded."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, 9):
        name, previous = chr(ord("a") + level), chr(ord("a") + level - 1)
        lines.append(f"{name}: &{name} [{','.join(['*' + previous] * 9)}]")
    return "\n".join(lines) + "\n"


BOMBS = {
    "billion-laughs": billion_laughs(),
    "flow-nesting-100000": "url: " + "[" * 100_000,
    "mapping-nesting-100000": "url: " + "{a: " * 100_000,
    "block-nesting-100000": "job_ids:\n  " + "- " * 100_000 + "x\n",
}


class TestLoader:
    """The one YAML loader every operator file goes through."""

    @pytest.mark.parametrize("name", sorted(BOMBS))
    def test_bomb_is_refused_quickly(self, name: str) -> None:
        """Each bomb raises a YAMLError saying why, within seconds and without a RecursionError."""
        started = time.monotonic()
        with pytest.raises(yaml.YAMLError) as caught:
            load_yaml_text(BOMBS[name])
        assert time.monotonic() - started < 10
        reason = str(caught.value)
        assert "alias" in reason if name == "billion-laughs" else f"deeper than {MAX_YAML_DEPTH}" in reason

    def test_ordinary_documents_still_load(self) -> None:
        """Mappings, lists, anchors without aliases and 64 levels of nesting load as before."""
        assert load_yaml_text("a: &x 1\nb: [1, {c: d}]\n") == {"a": 1, "b": [1, {"c": "d"}]}
        deep = "[" * (MAX_YAML_DEPTH - 1) + "]" * (MAX_YAML_DEPTH - 1)
        assert load_yaml_text(deep) is not None

    def test_too_many_values_are_refused(self) -> None:
        """A flat list of 100,001 values is refused rather than built."""
        with pytest.raises(yaml.YAMLError, match="more than 100000 values"):
            load_yaml_text("[" + "1," * 100_001 + "]")

    @pytest.mark.parametrize("name", sorted(BOMBS))
    def test_settings_file_bomb_is_a_one_line_config_error(self, tmp_path: Path, name: str) -> None:
        """``load_settings`` raises ConfigError naming the file and the reason, on one line."""
        config = tmp_path / "config.yaml"
        config.write_text(BOMBS[name], encoding="utf-8")
        with pytest.raises(ConfigError) as caught:
            load_settings(config)
        message = str(caught.value)
        assert str(config) in message and "\n" not in message and "YAML" in message

    def test_alias_in_a_list_setting_from_the_environment_is_refused(self) -> None:
        """``CCS_EXPORTER_JOB_IDS='[*a]'``-style text goes through the same loader."""
        with pytest.raises(ConfigError, match="job_ids"):
            load_settings(None, {"url": "https://ccs.example", "username": "u", "password": "p" * 8,
                                 "job_ids": "[&a x, *a]"})  # fmt: skip


def _run(args: list[str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CCS_EXPORTER_")}
    env.update(
        CCS_EXPORTER_URL="http://127.0.0.1:9",
        CCS_EXPORTER_USERNAME="CCS\\demo",
        CCS_EXPORTER_PASSWORD="Bomb-Test-Pw1",
        PYTHONPATH=str(ROOT),
    )

    def limit_memory() -> None:  # a bomb that expanded would fail here instead of eating the machine
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    return subprocess.run(
        [sys.executable, "-m", "ccs_exporter", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
        check=False,
        preexec_fn=limit_memory,
    )


@pytest.mark.integration
class TestCommands:
    @pytest.mark.parametrize("name", sorted(BOMBS))
    @pytest.mark.parametrize("command", ["check-config", "serve"])
    def test_config_bomb_exits_2_with_one_line(self, tmp_path: Path, name: str, command: str) -> None:
        """``check-config``/``serve --config BOMB``: exit 2, one line, no traceback (was 1.6 GB or exit 1)."""
        config = tmp_path / "bomb.yaml"
        config.write_text(BOMBS[name], encoding="utf-8")
        result = _run([command, "--config", str(config)], tmp_path)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert "YAML" in result.stderr

    @pytest.mark.parametrize("name", ["billion-laughs", "flow-nesting-100000"])
    def test_job_spec_bomb_exits_2_before_any_request(self, tmp_path: Path, name: str) -> None:
        """``jobs create -f BOMB``: exit 2 with one line, nothing sent (CCS is unreachable here anyway)."""
        spec = tmp_path / "spec.yaml"
        spec.write_text(BOMBS[name], encoding="utf-8")
        result = _run(["jobs", "create", "-f", str(spec)], tmp_path)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert "spec" in result.stderr and "YAML" in result.stderr


@pytest.mark.integration
def test_reload_of_a_bomb_is_rejected_while_metrics_keep_answering(tmp_path: Path) -> None:
    """serve given a billion-laughs config on SIGHUP: reload_failed, the old jobs kept, RSS stays small."""
    from ccs_exporter.simulator import Simulator

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    with Simulator(port=0, run_interval=None) as sim:
        config = tmp_path / "config.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "url": sim.url,
                    "username": sim.username,
                    "job_ids": sim.job_ids[:2],
                    "poll_interval_seconds": 0.5,
                    "listen_address": f"127.0.0.1:{port}",
                }
            ),
            encoding="utf-8",
        )
        env = {key: value for key, value in os.environ.items() if not key.startswith("CCS_EXPORTER_")}
        env.update(CCS_EXPORTER_PASSWORD=sim.password, PYTHONPATH=str(ROOT))
        process = subprocess.Popen(
            [sys.executable, "-m", "ccs_exporter", "serve", "--config", str(config)],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if requests.get(f"{base}/readyz", timeout=2).status_code == 200:
                        break
                except requests.ConnectionError:
                    pass
                time.sleep(0.2)
            config.write_text(billion_laughs(), encoding="utf-8")
            os.kill(process.pid, signal.SIGHUP)
            slowest = 0.0
            for _ in range(10):
                started = time.monotonic()
                response = requests.get(f"{base}/metrics", timeout=5)
                slowest = max(slowest, time.monotonic() - started)
                assert response.status_code == 200
                assert sim.job_ids[0] in response.text
                time.sleep(0.2)
            assert slowest < 2.0
            status = Path(f"/proc/{process.pid}/status").read_text(encoding="ascii")
            rss_kib = int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])
            assert rss_kib < 300 * 1024, f"RSS {rss_kib} KiB after the bomb"
        finally:
            os.kill(process.pid, signal.SIGTERM)
            _, stderr = process.communicate(timeout=20)
        assert b"reload_failed" in stderr and b"alias" in stderr
