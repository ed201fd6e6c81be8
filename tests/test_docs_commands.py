"""Every shell command the documentation shows runs, and shows the output the docs say it shows.

One test per documented file (README.md, docs/**, the chart and rules READMEs, config.example.yaml): its
commands run in order, as a reader going down the page would type them, against a CCS simulator of its own
(TLS with a CA of its own, so the CA settings the docs show are exercised), in a work directory of its own.
The machinery and what it fills in for the reader: tests/docs_commands.py.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from docs_commands import (
    COPIED,
    REPO_ROOT,
    CannotRun,
    DocCommand,
    DocRunner,
    Outcome,
    PageServices,
    against_known,
    collect,
    documented_files,
    failures,
    output_problem,
    run_file,
)
from web_helpers import make_pki

from ccs_exporter.simulator import Simulator

pytestmark = pytest.mark.integration

# Sample jobs of the simulator the placeholders stand for: the nightly CER job, and the DMZ collection's run
# that is executing (what `jobs abort RUN_ID` can abort).
SAMPLE_JOB_ID = "3f2a7c41-8e5b-4d09-a6c3-1b7e9d2f4a01"
EXECUTING_RUN_ID = "3e9b5d43-8f0a-4c1b-8d2e-6f5a4b3c2d41"

# The one table of documented commands that truly cannot run on a test machine, and why. They are still
# parsed: `bash -n`, and ccs-exporter commands by the CLI's own parser. (pattern in the documented command,
# reason)
CANNOT_RUN: CannotRun = (
    (r"^docker |^podman ", "needs a container engine and a registry (the image's own tests build it)"),
    (r"^bash \.ci/build-image\.sh", "builds the container image: minutes, and the image's own tests run it"),
    (r"^kind |^minikube ", "needs a local Kubernetes cluster"),
    (
        r"^kubectl (?!.*\bexec\b)(?!.*\bcreate (secret|configmap)\b)",
        "needs a Kubernetes cluster (kubectl exec ... -- CMD runs CMD; kubectl create, --dry-run=client)",
    ),
    (r"^promtool query .*http://127\.0\.0\.1:9090", "queries the cluster's Prometheus (a port-forward)"),
    (r"^helm upgrade .*--reuse-values", "reuses the values of an installed release: needs a cluster"),
    (
        r"--witness http://prometheus:9090",
        "needs a Prometheus that scraped a running serve for a while (tests/test_e2e_witness.py does that)",
    ),
    (
        r"audit export .*--follow",
        "follows the log until stopped (test_audit_shipping.py, test_audit_syslog.py, test_audit_hec.py)",
    ),
    (r"^python3 -m pytest\b", "the test suite itself: .ci/run runs it (checked: the same as in .ci/run)"),
    (
        r"\.tools/image/built\.env|\$ENGINE|127\.0\.0\.1:19879",
        "runs the built image: tests/test_image.py runs docs/image.md's blocks after .ci/build-image.sh",
    ),
)

# Documented commands that fail today because of a defect being fixed, with the defect. Keys are
# "<file>: <command as documented>". Only temporarily: the test fails once a listed command passes.
KNOWN_FAILING: dict[str, str] = {}


@pytest.fixture
def page_services(tmp_path: Path) -> Iterator[PageServices]:
    """A simulator over TLS (the sample jobs, runs frozen) and what the placeholders stand for."""
    pki = make_pki(tmp_path)
    with Simulator(tls_cert=str(pki.server_cert), tls_key=str(pki.server_key)) as sim:
        yield PageServices(sim_url=sim.url, ca_file=pki.ca, job_id=SAMPLE_JOB_ID, run_id=EXECUTING_RUN_ID)


@pytest.fixture
def helm(require_tool: Callable[[str], str]) -> str:
    require_tool("kubectl")
    require_tool("promtool")
    require_tool("prometheus")
    return require_tool("helm")


@pytest.mark.parametrize("source", documented_files())
def test_documented_commands_run(
    source: str,
    page_services: PageServices,
    helm: str,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    """Each command of the file runs (or, listed in CANNOT_RUN, parses) and prints what the docs show."""
    outcomes = run_file(tmp_path / "work", page_services, source, known=KNOWN_FAILING, cannot_run=CANNOT_RUN)
    record_property("docs_commands_run", sum(1 for o in outcomes if o.ran and not o.command.writes_file))
    record_property("docs_commands_parsed", sum(1 for o in outcomes if not o.ran))
    problems = list(failures(outcomes))
    assert not problems, "\n".join(problems)


def test_every_documented_file_is_collected() -> None:
    """The pages the docs test runs include the README, every docs page, the chart and rules READMEs."""
    files = documented_files()
    for expected in ("README.md", "docs/runbooks.md", "docs/connect-to-ccs.md", "docs/kubernetes.md",
                     "helm/ccs-exporter/README.md", "prometheus/README.md", "config.example.yaml",
                     "docs/examples/collection-job.yaml"):  # fmt: skip
        assert expected in files
    commands = [c for source in files for c in collect(REPO_ROOT, source)]
    assert len(commands) >= 60


class TestCollecting:
    """What counts as a documented command, and its documented output."""

    def test_continuations_heredocs_and_output_blocks(self, tmp_path: Path) -> None:
        """Lines of a sh block are commands (continuations, here-documents); a text block after is output."""
        (tmp_path / "page.md").write_text(
            "```sh\n# a comment\nccs-exporter jobs get X \\\n  -o table\ncat > f <<EOF\na: 1\nEOF\n```\n\n"
            "```text\nintact (3 records)\n```\n",
            encoding="utf-8",
        )
        first, second = collect(tmp_path, "page.md")
        assert first.text == "ccs-exporter jobs get X \\\n  -o table" and first.line == 3
        assert second.text == "cat > f <<EOF\na: 1\nEOF" and second.expected == ("intact (3 records)",)

    def test_console_blocks_pair_commands_with_their_output(self, tmp_path: Path) -> None:
        """In a console block, `$ ` lines are commands and the lines under them their output."""
        (tmp_path / "page.md").write_text(
            "```console\n$ ccs-exporter audit verify a.jsonl\na.jsonl: intact (2 records)\n$ true\n```\n",
            encoding="utf-8",
        )
        first, second = collect(tmp_path, "page.md")
        assert first.expected == ("a.jsonl: intact (2 records)",) and second.expected is None

    def test_yaml_comments_show_commands(self, tmp_path: Path) -> None:
        """`#   ccs-exporter ...` in a YAML file's comments is a command, run from the file's directory."""
        (tmp_path / "ex").mkdir()
        (tmp_path / "ex" / "spec.yaml").write_text("#   ccs-exporter jobs create -f spec.yaml  # why\na: 1\n")
        (command,) = collect(tmp_path, "ex/spec.yaml")
        assert command.text == "ccs-exporter jobs create -f spec.yaml" and command.cwd == "ex"

    def test_output_comparison_ignores_volatile_parts_only(self) -> None:
        """GUIDs, times and hashes may differ from the docs; words may not."""
        expected = (
            "JOB ID  NAME",
            "3f2a7c41-8e5b-4d09-a6c3-1b7e9d2f4a01  Nightly ... 2026-11-20 01:00:00 UTC",
        )
        actual = (
            "JOB ID    NAME\n0d2f4b6e-8a1c-4e3b-b5d7-9f1a3c5e7b08  Nightly CER  2027-01-01 02:00:00 UTC\n"
        )
        assert output_problem(expected, actual) is None
        assert output_problem(("intact (3 records)",), "intact (4 records)") is not None


class TestCannotRun:
    """Commands that cannot run here are few, and still parsed."""

    def test_the_table_is_one_place_with_reasons(self) -> None:
        """Each entry gives the reason in words."""
        assert all(len(reason.split()) >= 4 for _pattern, reason in CANNOT_RUN)


class TestKnownFailing:
    """The known-failing table cannot hide a fixed command or a new failure."""

    def test_a_listed_command_that_passes_must_leave_the_table(self) -> None:
        """A command listed as failing that now passes is a failure saying to remove it."""
        command = DocCommand("README.md", 1, 1, "true")
        known = {"README.md: true": "a defect"}
        outcome = against_known(Outcome(command, ran=True), known)
        assert outcome.problem is not None and "remove it" in outcome.problem

    def test_a_listed_failure_is_noted_and_others_fail(self) -> None:
        """A listed command's failure is a note; an unlisted command's failure stays a failure."""
        listed, other = DocCommand("a.md", 1, 1, "false"), DocCommand("a.md", 2, 1, "false 2")
        known = {"a.md: false": "a defect"}
        assert against_known(Outcome(listed, ran=True, problem="exit 1"), known).problem is None
        assert against_known(Outcome(other, ran=True, problem="exit 1"), known).problem == "exit 1"


def _copy_of_docs(tmp_path: Path) -> Path:
    root = tmp_path / "copy"
    root.mkdir()
    for name in COPIED:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, root / name)
        elif source.is_file():
            shutil.copy2(source, root / name)
    (root / ".tools").symlink_to(REPO_ROOT / ".tools")
    return root


class TestBrokenDocsFail:
    """A doc whose command no longer works, or whose output changed, fails the collector and runner."""

    def test_a_renamed_flag_fails(self, tmp_path: Path, page_services: PageServices, helm: str) -> None:
        """`--reason` renamed to `--reasons` in a copy of the examples page: the commands using it fail."""
        root = _copy_of_docs(tmp_path)
        page = root / "docs" / "examples" / "README.md"
        page.write_text(page.read_text(encoding="utf-8").replace("--reason", "--reasons"), encoding="utf-8")
        outcomes = run_file(tmp_path / "work", page_services, "docs/examples/README.md", root=root)
        broken = list(failures(outcomes))
        creates = [line for line in broken if "jobs create" in line]
        assert len(creates) == 3, broken
        assert all("--reasons" in line and "unrecognized arguments" in line for line in creates)

    def test_a_changed_output_fails(self, tmp_path: Path, page_services: PageServices) -> None:
        """A documented output line the command no longer prints fails the command."""
        (tmp_path / "root").mkdir()
        (tmp_path / "root" / "page.md").write_text(
            "```console\n$ ccs-exporter jobs find 'Nightly CER - Windows servers' -o table\n"
            "JOB ID  NAME ...\n... Nightly CER - Linux servers ...\n```\n",
            encoding="utf-8",
        )
        runner = DocRunner(tmp_path / "work", page_services, root=tmp_path / "root")
        (outcome,) = runner.run(collect(tmp_path / "root", "page.md"), {})
        assert outcome.problem and "Nightly CER - Linux servers" in outcome.problem
        fixed = collect(tmp_path / "root", "page.md")[0]
        assert fixed.expected is not None


class TestChartInstall:
    """The documented chart installs, rendered by real helm, keep the backslash of DOMAIN\\user."""

    @pytest.mark.parametrize("source", ["helm/ccs-exporter/README.md", "docs/kubernetes.md"])
    def test_documented_install_renders_the_domain_user(self, source: str, helm: str, tmp_path: Path) -> None:
        """Each documented `helm install` renders `username: CORP\\svc-ccs-exporter`, one backslash."""
        commands = [c for c in collect(REPO_ROOT, source) if c.text.startswith("helm install")]
        assert len(commands) >= 2, "a values-file install and a --set install are documented"
        assert any("--set-string 'ccs.username=" in c.text for c in commands)
        for command in commands:
            text = command.text.replace("helm install", "helm template", 1)
            rendered = subprocess.run(
                ["bash", "-c", text], cwd=REPO_ROOT, capture_output=True, text=True, check=False, timeout=120,
                env={"PATH": f"{Path(helm).parent}:/usr/bin:/bin", "HOME": str(tmp_path)},
            )  # fmt: skip
            assert rendered.returncode == 0, rendered.stderr
            configs = [
                yaml.safe_load(doc["data"]["config.yaml"])
                for doc in yaml.safe_load_all(rendered.stdout)
                if doc and doc.get("kind") == "ConfigMap" and "config.yaml" in doc.get("data", {})
            ]
            assert configs and configs[0]["username"] == "CORP\\svc-ccs-exporter", (command.where, configs)
