"""Sharding: the stable job hash, the shard settings and their one-line errors, and the shard metrics."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import uuid
from collections import Counter
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ccs_exporter import cli
from ccs_exporter.errors import ConfigError
from ccs_exporter.exposition.live import LiveMetrics, RequestStats
from ccs_exporter.settings.config import load_settings
from ccs_exporter.sharding import (
    UNSHARDED,
    Shard,
    ordinal_from_hostname,
    parse_shard,
    shard_of,
    stable_hash,
)

REQUIRED = {"url": "https://ccs.example.com:12431", "username": "CORP\\svc-ccs", "password": "Canary-Pa55"}
JOB = "23c59087-f3d4-4e05-a39e-3440c58e58fb"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start every test without CCS_EXPORTER_* variables from the developer's shell."""
    for name in list(os.environ):
        if name.startswith("CCS_EXPORTER_"):
            monkeypatch.delenv(name)


def _hostname(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: name)


def _guids(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(count)]


class TestStableHash:
    """The job hash is fixed forever: changing it would move every job to another replica."""

    @pytest.mark.parametrize(
        ("job_id", "expected"),
        [
            # printf %s GUID | sha256sum | cut -c1-16
            ("23c59087-f3d4-4e05-a39e-3440c58e58fb", 0xE55E15D4EDE899F2),
            ("3f2a7c41-8e5b-4d09-a6c3-1b7e9d2f4a01", 0xA18D7ACA24AF3468),
            ("00000000-0000-0000-0000-000000000000", 0x12B9377CBE7E5C94),
            ("ffffffff-ffff-ffff-ffff-ffffffffffff", 0x13984AB878F91502),
        ],
    )
    def test_known_values(self, job_id: str, expected: int) -> None:
        """The hash is the first 8 bytes of the SHA-256 of the GUID text, big-endian."""
        assert stable_hash(job_id) == expected

    @pytest.mark.parametrize(
        ("job_id", "total", "shard"),
        [
            ("23c59087-f3d4-4e05-a39e-3440c58e58fb", 3, 1),
            ("23c59087-f3d4-4e05-a39e-3440c58e58fb", 7, 4),
            ("3f2a7c41-8e5b-4d09-a6c3-1b7e9d2f4a01", 3, 0),
            ("3f2a7c41-8e5b-4d09-a6c3-1b7e9d2f4a01", 5, 3),
            ("00000000-0000-0000-0000-000000000000", 3, 2),
        ],
    )
    def test_known_shards(self, job_id: str, total: int, shard: int) -> None:
        """Known jobs land on known shards (hash modulo the total)."""
        assert shard_of(job_id, total) == shard

    def test_case_braces_and_spaces_do_not_move_a_job(self) -> None:
        """An id in upper case, in braces or with spaces around it hashes as its canonical form."""
        forms = [JOB.upper(), "{" + JOB + "}", " {" + JOB.upper() + "} "]
        assert {stable_hash(form) for form in forms} == {stable_hash(JOB)}

    @pytest.mark.integration
    def test_same_in_another_process_with_another_hash_seed(self) -> None:
        """A fresh interpreter with a different PYTHONHASHSEED computes the same shards."""
        guids = _guids(50, seed=7)
        code = (
            "import sys; from ccs_exporter.sharding import shard_of; "
            "print(' '.join(str(shard_of(g, 7)) for g in sys.argv[1:]))"
        )
        outputs = set()
        for seed in ("1", "12345"):
            env = {**os.environ, "PYTHONHASHSEED": seed}
            result = subprocess.run(
                [sys.executable, "-c", code, *guids], env=env, capture_output=True, text=True, timeout=60
            )
            assert result.returncode == 0, result.stderr
            outputs.add(result.stdout.strip())
        assert outputs == {" ".join(str(shard_of(guid, 7)) for guid in guids)}

    @pytest.mark.parametrize("total", [2, 3, 5, 7, 10])
    def test_random_guids_spread_evenly(self, total: int) -> None:
        """10,000 random GUIDs give every shard within 10% of an equal share."""
        counts = Counter(shard_of(guid, total) for guid in _guids(10_000, seed=total))
        share = 10_000 / total
        assert sorted(counts) == list(range(total))
        assert all(abs(count - share) < 0.1 * share for count in counts.values()), counts

    def test_sequential_guids_spread_evenly(self) -> None:
        """GUIDs that differ only in their last bytes (SQL Server's sequential ids) still spread evenly."""
        base = uuid.UUID("6a8c0e2f-4d6b-4a9c-9e1f-000000000000").int
        guids = [str(uuid.UUID(int=base + number)) for number in range(10_000)]
        counts = Counter(shard_of(guid, 3) for guid in guids)
        assert all(abs(count - 10_000 / 3) < 0.1 * 10_000 / 3 for count in counts.values()), counts


class TestShard:
    """A replica's place among the shards."""

    def test_every_job_has_exactly_one_owner(self) -> None:
        """For each total, exactly one of the shards 0..total-1 owns any job."""
        for total in (1, 2, 3, 8):
            shards = [Shard(index, total) for index in range(total)]
            for guid in _guids(200, seed=total):
                assert sum(shard.owns(guid) for shard in shards) == 1

    def test_unsharded_owns_every_job(self) -> None:
        """0/1, the default, watches every job."""
        assert all(UNSHARDED.owns(guid) for guid in _guids(100, seed=1))
        assert not UNSHARDED.sharded and Shard(0, 2).sharded

    @pytest.mark.parametrize(("text", "expected"), [("1/3", Shard(1, 3)), (" 0 / 1 ", Shard(0, 1))])
    def test_parse(self, text: str, expected: Shard) -> None:
        """INDEX/TOTAL reads as a 0-based index out of a total."""
        assert parse_shard(text) == expected
        assert str(expected) == text.replace(" ", "")

    @pytest.mark.parametrize(
        ("text", "problem"),
        [
            ("3/3", "index 3 is not below the total 3"),
            ("1/0", "the total must be 1-50, not 0"),
            ("0/51", "the total must be 1-50, not 51"),
            ("-1/3", "INDEX/TOTAL"),
            ("1", "INDEX/TOTAL"),
            ("1/3/5", "INDEX/TOTAL"),
            ("one/three", "INDEX/TOTAL"),
            ("\u0661/\u0663", "INDEX/TOTAL"),  # Arabic-Indic digits are no index
            ("99999999999999999999/3", "INDEX/TOTAL"),
        ],
    )
    def test_parse_refuses(self, text: str, problem: str) -> None:
        """Anything but an index below a total of 1-50 is refused, saying what is wrong."""
        with pytest.raises(ValueError, match=problem):
            parse_shard(text)

    @pytest.mark.parametrize(
        ("hostname", "ordinal"),
        [
            ("ccs-exporter-0", 0),
            ("ccs-exporter-2", 2),
            ("ccs-exporter-12.ccs-exporter.monitoring.svc.cluster.local", 12),
            ("prod-ccs-exporter-1\n", 1),
        ],
    )
    def test_ordinal_from_statefulset_host_names(self, hostname: str, ordinal: int) -> None:
        """A StatefulSet pod's host name ends in its ordinal (the first label of an FQDN counts)."""
        assert ordinal_from_hostname(hostname) == ordinal

    @pytest.mark.parametrize(
        "hostname", ["ccs-exporter", "ccs-exporter-7d9f8b6c5-x2k4p", "laptop", "ccs-2x", "ccs-exporter-", ""]
    )
    def test_host_names_without_an_ordinal(self, hostname: str) -> None:
        """A Deployment pod or a laptop has no ordinal: refused, naming the host name."""
        with pytest.raises(ValueError, match="does not end in a StatefulSet pod ordinal"):
            ordinal_from_hostname(hostname)


class TestShardSettings:
    """CCS_EXPORTER_SHARD, CCS_EXPORTER_SHARD_FROM_HOSTNAME and CCS_EXPORTER_TOTAL_SHARDS."""

    def test_not_sharded_by_default(self) -> None:
        """Without shard settings the replica is shard 0 of 1."""
        assert load_settings(None, REQUIRED).shard_of_replica == UNSHARDED

    def test_explicit_shard_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """CCS_EXPORTER_SHARD=1/3 makes the replica shard 1 of 3."""
        monkeypatch.setenv("CCS_EXPORTER_SHARD", "1/3")
        assert load_settings(None, REQUIRED).shard_of_replica == Shard(1, 3)

    def test_explicit_shard_from_the_config_file(self, tmp_path: Any) -> None:
        """`shard: 2/3` in the YAML file works the same."""
        config = tmp_path / "config.yaml"
        config.write_text("shard: 2/3\n", encoding="utf-8")
        assert load_settings(config, REQUIRED).shard_of_replica == Shard(2, 3)

    def test_empty_shard_variable_means_not_sharded(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A blank CCS_EXPORTER_SHARD (a template leaving it empty) is no shard."""
        monkeypatch.setenv("CCS_EXPORTER_SHARD", " ")
        assert load_settings(None, REQUIRED).shard_of_replica == UNSHARDED

    def test_ordinal_from_the_host_name(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """SHARD_FROM_HOSTNAME with TOTAL_SHARDS takes the index from the pod name's ordinal."""
        _hostname(monkeypatch, "ccs-exporter-2")
        monkeypatch.setenv("CCS_EXPORTER_SHARD_FROM_HOSTNAME", "true")
        monkeypatch.setenv("CCS_EXPORTER_TOTAL_SHARDS", "3")
        assert load_settings(None, REQUIRED).shard_of_replica == Shard(2, 3)

    @pytest.mark.parametrize(
        ("hostname", "values", "message"),
        [
            (
                "ccs-exporter-0",
                {"shard": "3/3"},
                "CCS_EXPORTER_SHARD (shard) = '3/3': index 3 is not below the total 3",
            ),
            (
                "ccs-exporter-0",
                {"shard": "0/0"},
                "CCS_EXPORTER_SHARD (shard) = '0/0': the total must be 1-50, not 0",
            ),
            ("ccs-exporter-0", {"shard": 1}, "CCS_EXPORTER_SHARD (shard) = 1: must be INDEX/TOTAL"),
            (
                "ccs-exporter-0",
                {"shard": "1/3", "shard_from_hostname": True, "total_shards": 3},
                "CCS_EXPORTER_SHARD (shard) and CCS_EXPORTER_SHARD_FROM_HOSTNAME (shard_from_hostname) "
                "are both set",
            ),
            (
                "ccs-exporter-0",
                {"shard": "1/3", "total_shards": 3},
                "CCS_EXPORTER_TOTAL_SHARDS (total_shards) goes with CCS_EXPORTER_SHARD_FROM_HOSTNAME",
            ),
            (
                "ccs-exporter-0",
                {"total_shards": 3},
                "CCS_EXPORTER_TOTAL_SHARDS (total_shards) = 3 is read only with "
                "CCS_EXPORTER_SHARD_FROM_HOSTNAME=true",
            ),
            (
                "ccs-exporter-0",
                {"shard_from_hostname": True},
                "CCS_EXPORTER_SHARD_FROM_HOSTNAME (shard_from_hostname) needs CCS_EXPORTER_TOTAL_SHARDS",
            ),
            (
                "ccs-exporter-0",
                {"shard_from_hostname": True, "total_shards": 0},
                "CCS_EXPORTER_TOTAL_SHARDS (total_shards) = 0: must be 1-50",
            ),
            (
                "ccs-exporter-7d9f8b6c5-x2k4p",
                {"shard_from_hostname": True, "total_shards": 3},
                "CCS_EXPORTER_SHARD_FROM_HOSTNAME (shard_from_hostname): host name "
                "'ccs-exporter-7d9f8b6c5-x2k4p' does not end in a StatefulSet pod ordinal",
            ),
            (
                "ccs-exporter-3",
                {"shard_from_hostname": True, "total_shards": 3},
                "the pod ordinal 3 of host name 'ccs-exporter-3' is not below "
                "CCS_EXPORTER_TOTAL_SHARDS (total_shards) = 3",
            ),
        ],
        ids=[
            "index-not-below-total",
            "total-zero",
            "not-a-string",
            "both-forms",
            "total-with-explicit-shard",
            "total-alone",
            "hostname-without-total",
            "total-shards-zero",
            "hostname-without-ordinal",
            "ordinal-not-below-total",
        ],
    )
    def test_refused_with_one_line(
        self, monkeypatch: pytest.MonkeyPatch, hostname: str, values: dict[str, Any], message: str
    ) -> None:
        """Each contradiction is a ConfigError of one line naming the settings involved."""
        _hostname(monkeypatch, hostname)
        with pytest.raises(ConfigError) as caught:
            load_settings(None, {**REQUIRED, **values})
        text = str(caught.value)
        assert message in text
        assert "\n" not in text and REQUIRED["password"] not in text

    @pytest.mark.integration
    def test_serve_exits_2_before_sending_anything(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], simulator: Any
    ) -> None:
        """`serve` on a Deployment pod told to shard by host name exits 2, one line, nothing sent to CCS."""
        _hostname(monkeypatch, "ccs-exporter-7d9f8b6c5-x2k4p")
        for name, value in {
            "URL": simulator.url,
            "USERNAME": simulator.username,
            "PASSWORD": simulator.password,
            "JOB_IDS": simulator.job_ids[0],
            "LISTEN_ADDRESS": "127.0.0.1:0",
            "SHARD_FROM_HOSTNAME": "true",
            "TOTAL_SHARDS": "3",
        }.items():
            monkeypatch.setenv(f"CCS_EXPORTER_{name}", value)
        assert cli.main(["serve"]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and "CCS_EXPORTER_SHARD_FROM_HOSTNAME" in lines[0], lines
        assert simulator.request_count() == 0


@pytest.mark.integration
class TestCommandsAreNotSharded:
    """The jobs commands act on the job named, whatever shard the settings give."""

    def test_get_and_delete_a_job_of_another_shard(
        self,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
        simulator: Any,
        tmp_path: Any,
    ) -> None:
        """With the settings of shard 1/3, a job of another shard is read and deleted (audited) as usual."""
        job = next(job for job in simulator.job_ids if shard_of(job, 3) != 1)
        for name, value in {
            "URL": simulator.url,
            "USERNAME": simulator.username,
            "PASSWORD": simulator.password,
            "SHARD": "1/3",
            "AUDIT_LOG": str(tmp_path / "audit.jsonl"),
        }.items():
            monkeypatch.setenv(f"CCS_EXPORTER_{name}", value)
        assert cli.main(["jobs", "get", job]) == 0
        assert job in capsys.readouterr().out
        assert cli.main(["jobs", "delete", job, "--keep-job", "--reason", "CHG-18"]) == 0
        assert simulator.request_count("delete_job") == 1


class TestShardMetrics:
    """ccs_exporter_shard_ordinal and ccs_exporter_total_shards, on every replica."""

    @staticmethod
    def _values(text: bytes) -> dict[str, float]:
        return {
            sample.name: sample.value
            for family in text_string_to_metric_families(text.decode())
            for sample in family.samples
            if sample.name in ("ccs_exporter_shard_ordinal", "ccs_exporter_total_shards")
        }

    def test_unsharded_replica_reports_0_of_1(self) -> None:
        """Without sharding the series are still there: ordinal 0, total 1."""
        text = LiveMetrics(RequestStats()).render()
        assert self._values(text) == {"ccs_exporter_shard_ordinal": 0.0, "ccs_exporter_total_shards": 1.0}

    def test_sharded_replica_reports_its_shard(self) -> None:
        """Shard 2 of 3 reports ordinal 2 and total 3."""
        text = LiveMetrics(RequestStats(), shard=Shard(2, 3)).render()
        assert self._values(text) == {"ccs_exporter_shard_ordinal": 2.0, "ccs_exporter_total_shards": 3.0}

    @pytest.mark.integration
    def test_promtool_finds_nothing(self, require_tool: Any) -> None:
        """The shard families lint clean."""
        promtool = require_tool("promtool")
        body = LiveMetrics(RequestStats(), shard=Shard(1, 3)).render()
        result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=60)
        assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), result
