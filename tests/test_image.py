"""The image users deploy, built by .ci/build-image.sh from the Dockerfile and run the way the chart runs it.

These tests start containers of ``localhost/ccs-exporter:<version>`` with the engine the script used (docker,
or podman with the configuration the script wrote to .tools/podman/). They run when selected with
``-m container`` (CI does, after building the image: missing, it is a failure there) and in a plain ``pytest``
on a machine where the image exists; otherwise they are skipped, saying how to build it.
Servers listen on 127.0.0.1 (host network) on free ports; every container is removed by its own name.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from conftest import free_port
from prometheus_client.parser import text_string_to_metric_families

from ccs_exporter.simulator import Simulator

pytestmark = [pytest.mark.container, pytest.mark.integration]

REPO_ROOT = Path(__file__).resolve().parent.parent
CHART_DIR = REPO_ROOT / "helm" / "ccs-exporter"
BUILT_ENV = REPO_ROOT / ".tools" / "image" / "built.env"
PODMAN_CONF_DIR = REPO_ROOT / ".tools" / "podman"
VERSION = importlib.metadata.version("ccs-exporter")
IMAGE = f"localhost/ccs-exporter:{VERSION}"
DOCS_PAGE = REPO_ROOT / "docs" / "image.md"
NOT_RUN = "# not run in tests: needs a registry"
BUILD_HINT = "bash .ci/build-image.sh, then python3 -m pytest -m container tests/test_image.py"
# The chart's user, group and fsGroup (values.yaml securityContext / podSecurityContext).
UID = GID = 10001


@dataclass(frozen=True)
class Engine:
    """A container engine command (docker or podman) with the environment it needs."""

    name: str
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.name, *args], capture_output=True, text=True, env=self.env, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"{self.name} {' '.join(args)} exited {result.returncode}: {result.stderr.strip()[-2000:]}"
            )
        return result

    def stream(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [self.name, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=self.env
        )


def _built() -> dict[str, str]:
    """What .ci/build-image.sh recorded in .tools/image/built.env (empty when it never ran here)."""
    if not BUILT_ENV.is_file():
        return {}
    lines = BUILT_ENV.read_text(encoding="utf-8").splitlines()
    pairs = (line.removeprefix("export ").split("=", 1) for line in lines if "=" in line and line[:1] != "#")
    return {key: value for key, value in pairs}


def _selected_explicitly(config: pytest.Config) -> bool:
    expression = str(config.getoption("markexpr") or "")
    return bool(re.search(r"\bcontainer\b", expression)) and "not container" not in expression


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return (
            subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False).returncode == 0
        )
    except subprocess.TimeoutExpired:
        return False


def _find_engine() -> Engine | None:
    env, built = dict(os.environ), _built()
    name = built.get("ENGINE") or ("docker" if _docker_answers() else "podman")
    if shutil.which(name) is None:
        return None
    if name == "podman":  # the configuration the script ran podman with
        for variable, file in (
            ("CONTAINERS_CONF", "containers.conf"),
            ("CONTAINERS_STORAGE_CONF", "storage.conf"),
        ):
            if variable in built:
                env[variable] = built[variable]
            elif (PODMAN_CONF_DIR / file).is_file():
                env[variable] = str(PODMAN_CONF_DIR / file)
    return Engine(name, env)


@pytest.fixture(scope="module")
def engine(request: pytest.FixtureRequest) -> Engine:
    """The engine holding the built image; skips (fails in CI when selected with -m container) without it."""
    explicit = _selected_explicitly(request.config)
    if os.environ.get("CI") and not explicit:
        pytest.skip("CI runs the container tests after building the image (.ci/run: pytest -m container)")
    found = _find_engine()
    if found is not None and found.run("image", "inspect", IMAGE, check=False).returncode == 0:
        return found
    reason = (
        f"no container engine to run image {IMAGE}: install podman (apt-get install podman runc) or Docker, "
        f"then {BUILD_HINT}"
        if found is None
        else f"image {IMAGE} is not in {found.name}'s images: {BUILD_HINT}"
    )
    if os.environ.get("CI") and explicit:
        pytest.fail(f"{reason}. CI is set, so a missing image is a failure, not a skip.")
    pytest.skip(reason)


@contextmanager
def _container(engine: Engine, *args: str) -> Iterator[str]:
    """A detached container of the image (``args``: run options, then the image and its arguments),
    removed by its name afterwards."""
    name = f"ccs-exporter-test-{uuid.uuid4().hex[:12]}"
    engine.run("run", "--detach", "--name", name, *args)
    try:
        yield name
    finally:
        engine.run("rm", "--force", name, check=False, timeout=60)


def _logs(engine: Engine, name: str) -> str:
    result = engine.run("logs", name, check=False)
    return (result.stdout + result.stderr)[-3000:]


def _wait_until(
    check: Callable[[], bool], timeout: float, engine: Engine | None = None, name: str = ""
) -> bool:
    """True once ``check()`` is; False at the timeout or once container ``name`` has stopped."""
    deadline = time.monotonic() + timeout
    next_look = time.monotonic() + 2
    while time.monotonic() < deadline:
        if check():
            return True
        if engine is not None and time.monotonic() >= next_look:
            next_look = time.monotonic() + 2
            state = engine.run("inspect", "--format", "{{.State.Running}}", name, check=False)
            if state.stdout.strip() != "true":
                return check()
        time.sleep(0.3)
    return False


def _families(url: str) -> dict[str, Any]:
    """The metric families /metrics serves, or {} while it does not answer."""
    try:
        response = requests.get(url, timeout=3)
    except requests.RequestException:
        return {}
    if response.status_code != 200:
        return {}
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def _job_ids(families: dict[str, Any]) -> set[str]:
    info = families.get("ccs_job_info")
    return {sample.labels["job_id"] for sample in info.samples} if info is not None else set()


@pytest.fixture(scope="module")
def demo(engine: Engine) -> Iterator[tuple[str, str]]:
    """``ccs-exporter demo`` in a container on the host network: (container name, /metrics URL)."""
    port = free_port()
    with _container(
        engine,
        "--network=host",
        IMAGE,
        "demo",
        "--listen-address",
        f"127.0.0.1:{port}",
        "--poll-interval",
        "1",
    ) as name:
        url = f"http://127.0.0.1:{port}/metrics"
        if not _wait_until(lambda: bool(_job_ids(_families(url))), 90, engine, name):
            pytest.fail(f"demo in the container never served jobs on {url}; its log:\n{_logs(engine, name)}")
        yield name, url


class TestImage:
    """The image's own promises: its version, its user, what it leaves out."""

    def test_version_matches_the_package(self, engine: Engine) -> None:
        """`--version` in the container prints the installed package's version, which the label repeats."""
        result = engine.run("run", "--rm", IMAGE, "--version")
        assert result.stdout.strip() == f"ccs-exporter {VERSION}"
        label = engine.run(
            "image",
            "inspect",
            "--format",
            '{{index .Config.Labels "org.opencontainers.image.version"}}',
            IMAGE,
        )
        assert label.stdout.strip() == VERSION

    def test_demo_answers_metrics_on_the_host(self, demo: tuple[str, str]) -> None:
        """The demo inside the container serves the simulator's jobs on a port the host reaches."""
        _, url = demo
        families = _families(url)
        assert len(_job_ids(families)) >= 10, sorted(families)
        (up,) = families["ccs_up"].samples
        assert up.value == 1

    def test_process_runs_as_the_charts_user(self, engine: Engine, demo: tuple[str, str]) -> None:
        """The exporter (the container's first process) runs as uid and gid 10001: real, effective, saved."""
        name, _ = demo
        status = engine.run("exec", name, "cat", "/proc/1/status").stdout
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        assert fields["Uid"].split() == [str(UID)] * 4, fields["Uid"]
        assert fields["Gid"].split() == [str(GID)] * 4, fields["Gid"]
        assert "ccs-exporter" in engine.run("exec", name, "cat", "/proc/1/cmdline").stdout

    def test_sigterm_stops_it_within_seconds(self, engine: Engine) -> None:
        """SIGTERM to the container (what the kubelet sends first) ends the exporter cleanly within 5 s."""
        port = free_port()
        with _container(
            engine, "--network=host", IMAGE, "demo", "--listen-address", f"127.0.0.1:{port}"
        ) as name:
            url = f"http://127.0.0.1:{port}/metrics"
            assert _wait_until(lambda: bool(_families(url)), 90, engine, name), _logs(engine, name)
            started = time.monotonic()
            engine.run("kill", "--signal", "TERM", name)
            try:
                waited = engine.run("wait", name, timeout=30)
            except subprocess.TimeoutExpired:
                pytest.fail(f"still running 30 s after SIGTERM; log:\n{_logs(engine, name)}")
            elapsed = time.monotonic() - started
            assert elapsed < 5, f"took {elapsed:.1f} s to stop after SIGTERM"
            assert waited.stdout.strip() == "0", (
                f"exit status {waited.stdout.strip()}; log:\n{_logs(engine, name)}"
            )

    def test_no_compiler_pip_cache_tests_or_sources(self, engine: Engine) -> None:
        """The runtime image's filesystem holds no compiler, no pip cache, no tests, no sources or wheels."""
        name = f"ccs-exporter-test-{uuid.uuid4().hex[:12]}"
        engine.run("create", "--name", name, IMAGE)
        try:
            process = engine.stream("export", name)
            assert process.stdout is not None
            with tarfile.open(fileobj=process.stdout, mode="r|") as archive:
                paths = ["/" + member.name.lstrip("./") for member in archive]
            assert process.wait(120) == 0
        finally:
            engine.run("rm", "--force", name, check=False)
        assert any(path.startswith("/opt/ccs-exporter/bin/ccs-exporter") for path in paths), "not the image"
        compiler = re.compile(r"/(s?bin)/(gcc|g\+\+|c\+\+|cc|cpp|clang|tcc|[\w-]+-gcc)(-[\d.]+)?$")
        assert not [p for p in paths if compiler.search(p)], "a compiler is installed"
        assert not [p for p in paths if "/.cache/pip" in p or re.search(r"/pip-(req|build|install)", p)], (
            "a pip cache or pip build directory is left"
        )
        our_tests = {f.name for f in (REPO_ROOT / "tests").glob("test_*.py")} | {"conftest.py"}
        assert not [p for p in paths if p.rsplit("/", 1)[-1] in our_tests], (
            "the project's tests are in the image"
        )
        sources = [
            p
            for p in paths
            if p == "/src"
            or p.startswith("/src/")
            or p.rsplit("/", 1)[-1] in {"pyproject.toml", "constraints.txt", "setup.cfg"}
            or "/.git/" in p
        ]
        assert not sources, f"sources or build files are in the image: {sources[:5]}"
        wheels = [
            p
            for p in paths
            if p.endswith(".whl") and "/ensurepip/_bundled/" not in p and "/usr/share/python-wheels/" not in p
        ]
        assert not wheels, f"wheels are left in the image: {wheels[:5]}"
        package_dirs = {
            p.rsplit("/ccs_exporter/", 1)[0] for p in paths if p.endswith("/ccs_exporter/__init__.py")
        }
        assert package_dirs == {"/opt/ccs-exporter/lib/python3.11/site-packages"}, package_dirs


class TestChart:
    """The image as the chart runs it: its pod's security context, volumes and arguments."""

    def test_runs_with_the_charts_security_context(
        self, engine: Engine, require_tool: Callable[[str], str], tmp_path: Path
    ) -> None:
        """With the rendered pod's security context (read-only root, no capabilities, no privilege
        escalation), its config and password mounts, tmpfs for its emptyDir and the audit log on a mounted
        volume, the exporter serves the jobs and an audited job run lands in the volume's hash chain."""
        helm = require_tool("helm")
        port = free_port()
        with Simulator(port=0, run_interval=None) as simulator:
            values = {
                "ccs": {
                    "url": simulator.url,
                    "username": simulator.username,
                    "existingSecret": "ccs-credentials",
                },
                "jobIds": simulator.job_ids[:3],
                "exporter": {"port": port, "pollIntervalSeconds": 1},
                "auditLog": {"enabled": True, "persistence": {"enabled": True}},
            }
            values_file = tmp_path / "values.yaml"
            values_file.write_text(yaml.safe_dump(values), encoding="utf-8")
            rendered = subprocess.run(
                [helm, "template", "ccs", str(CHART_DIR), "-f", str(values_file)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            manifests = [doc for doc in yaml.safe_load_all(rendered) if doc]
            (deployment,) = [doc for doc in manifests if doc["kind"] == "Deployment"]
            (config_map,) = [doc for doc in manifests if doc["kind"] == "ConfigMap"]
            pod = deployment["spec"]["template"]["spec"]
            (container,) = pod["containers"]
            options = _security_options(pod["securityContext"], container["securityContext"])
            options += _volume_options(pod, container, config_map, simulator.password, tmp_path, port)
            options += [
                f"--env={var['name']}={var['value']}" for var in container.get("env", []) if "value" in var
            ]
            audit_file = tmp_path / "volumes" / "audit-log" / "audit.jsonl"
            base = f"http://127.0.0.1:{port}"
            with _container(engine, "--network=host", *options, IMAGE, *container["args"]) as name:
                assert _wait_until(
                    lambda: _job_ids(_families(f"{base}/metrics")) == set(values["jobIds"]), 90, engine, name
                ), _logs(engine, name)
                assert requests.get(f"{base}/readyz", timeout=3).status_code == 200
                config_path = container["args"][container["args"].index("--config") + 1]
                job = simulator.job_ids[0]
                run = engine.run(
                    "exec",
                    name,
                    "ccs-exporter",
                    "jobs",
                    "run",
                    "--config",
                    config_path,
                    "--reason",
                    "CHG-1",
                    job,
                    check=False,
                )
                assert run.returncode == 0, run.stderr[-2000:]
            records = [json.loads(line) for line in audit_file.read_text(encoding="utf-8").splitlines()]
            assert len(records) >= 2 and all(isinstance(record, dict) for record in records)
            assert job in audit_file.read_text(encoding="utf-8")
            if os.geteuid() == 0:
                assert audit_file.stat().st_uid == UID
            verify = subprocess.run(
                ["ccs-exporter", "audit", "verify", str(audit_file)],
                capture_output=True,
                text=True,
                check=False,
            )
            assert verify.returncode == 0, verify.stdout + verify.stderr

    def test_helm_template_renders_the_built_image(
        self, engine: Engine, require_tool: Callable[[str], str]
    ) -> None:
        """`helm template` with the image's repository and tag renders the reference the script built, and
        with the tag left empty (the chart's appVersion) the same one."""
        helm = require_tool("helm")
        built = _built().get("IMAGE", IMAGE)
        repository, tag = built.rsplit(":", 1)
        label = engine.run(
            "image",
            "inspect",
            "--format",
            '{{index .Config.Labels "org.opencontainers.image.version"}}',
            built,
        ).stdout.strip()
        assert tag == label
        for settings in (
            [f"image.repository={repository}", f"image.tag={tag}"],
            [f"image.repository={repository}"],
        ):
            args = [helm, "template", "ccs", str(CHART_DIR), "--set", "ccs.existingSecret=ccs-credentials"]
            args += ["--set", "ccs.url=https://ccs.corp.example:12431", "--set", "ccs.username=CORP\\\\svc"]
            for setting in settings:
                args += ["--set", setting]
            rendered = subprocess.run(args, capture_output=True, text=True, check=True).stdout
            (deployment,) = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "Deployment"]
            (container,) = deployment["spec"]["template"]["spec"]["containers"]
            assert container["image"] == built, settings
        recorded = _built().get("IMAGE_ID")
        if recorded:
            assert engine.run("image", "inspect", "--format", "{{.Id}}", built).stdout.strip() == recorded


class TestDocs:
    """docs/image.md's commands, run here: they need the built image (the docs test only parses them)."""

    def test_documented_image_commands_run(self, engine: Engine, require_tool: Callable[[str], str]) -> None:
        """Every shell block of docs/image.md not marked as needing a registry runs, in order, from the
        repository root: the build script, the checks of the image, the demo in it, helm template."""
        require_tool("helm")
        blocks = _shell_blocks(DOCS_PAGE.read_text(encoding="utf-8"))
        runnable = [block for block in blocks if not block.startswith(NOT_RUN)]
        assert len(runnable) >= 4 and len(blocks) > len(runnable), "docs/image.md's blocks moved"
        port = str(free_port())
        name = f"ccs-exporter-test-{uuid.uuid4().hex[:12]}"  # not the page's name: runs may overlap
        tools = REPO_ROOT / ".tools" / "bin"
        env = {**engine.env, "PATH": f"{tools}{os.pathsep}{engine.env.get('PATH', '')}"}
        for block in runnable:
            script = block.replace("19879", port).replace("ccs-exporter-demo", name)
            try:
                result = subprocess.run(
                    ["bash", "-euo", "pipefail", "-c", script],
                    cwd=REPO_ROOT,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=900,
                    check=False,
                )
            finally:
                engine.run("rm", "--force", name, check=False)
            assert result.returncode == 0, f"{script}\n--- exit {result.returncode}:\n{result.stderr[-3000:]}"
            if "ccs_up" in script:
                assert "ccs_up 1.0" in result.stdout
            if "--version" in script:
                assert f"ccs-exporter {VERSION}" in result.stdout
            if "helm template" in script:
                assert f'image: "{IMAGE}"' in result.stdout


def _shell_blocks(text: str) -> list[str]:
    """The bodies of the ```sh blocks of a Markdown page."""
    return [match.group(1) for match in re.finditer(r"^```sh\n(.*?)^```$", text, re.M | re.S)]


def _security_options(pod_context: dict[str, Any], context: dict[str, Any]) -> list[str]:
    """Engine options for the chart's security contexts; fails on a setting this translation does not know,
    so a new one in the chart is not silently left out of the test."""
    known = {
        "runAsNonRoot", "runAsUser", "runAsGroup", "allowPrivilegeEscalation", "privileged",
        "readOnlyRootFilesystem", "capabilities", "seccompProfile",
    }  # fmt: skip
    assert set(context) <= known, f"container securityContext keys not translated: {set(context) - known}"
    assert set(pod_context) <= known | {"fsGroup"}, set(pod_context) - known
    assert context["runAsNonRoot"] and context["runAsUser"] != 0
    assert context["privileged"] is False
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}  # the engines' default profile
    options = [f"--user={context['runAsUser']}:{context['runAsGroup']}"]
    if context["readOnlyRootFilesystem"]:
        options.append("--read-only")
    options += [f"--cap-drop={capability}" for capability in context["capabilities"]["drop"]]
    options += [f"--cap-add={capability}" for capability in context["capabilities"].get("add", [])]
    if not context["allowPrivilegeEscalation"]:
        options.append("--security-opt=no-new-privileges")
    if "fsGroup" in pod_context:
        options.append(f"--group-add={pod_context['fsGroup']}")
    return options


def _volume_options(
    pod: dict[str, Any],
    container: dict[str, Any],
    config_map: dict[str, Any],
    password: str,
    tmp_path: Path,
    port: int,
) -> list[str]:
    """Engine options for the pod's volumes: ConfigMap and Secret as read-only host directories, emptyDir as
    tmpfs, a PersistentVolumeClaim as a host directory owned by the fsGroup (what the kubelet does)."""
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    fs_group = pod["securityContext"].get("fsGroup")
    options: list[str] = []
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        host_dir = tmp_path / "volumes" / mount["name"]
        host_dir.mkdir(parents=True)
        if "configMap" in volume:
            for key, content in config_map["data"].items():
                if key == "config.yaml":  # point the chart's config at the simulator and loopback
                    config = yaml.safe_load(content)
                    config["listen_address"] = f"127.0.0.1:{port}"
                    content = yaml.safe_dump(config)
                (host_dir / key).write_text(content, encoding="utf-8")
                (host_dir / key).chmod(0o644)
        elif "secret" in volume:
            for item in volume["secret"]["items"]:
                secret_file = host_dir / item["path"]
                secret_file.write_text(password + "\n", encoding="utf-8")
                _give_to_group(secret_file, fs_group, volume["secret"].get("defaultMode", 0o644))
        elif "emptyDir" in volume:
            size = volume["emptyDir"].get("sizeLimit", "16Mi").replace("Mi", "m")
            options.append(f"--tmpfs={mount['mountPath']}:rw,size={size},mode=1777")
            continue
        elif "persistentVolumeClaim" in volume:
            _give_to_group(host_dir, fs_group, 0o2770)
        else:
            pytest.fail(f"volume {mount['name']} of a kind this test does not translate: {sorted(volume)}")
        if "persistentVolumeClaim" not in volume:
            host_dir.chmod(0o755)
        read_only = ",ro" if mount.get("readOnly") else ""
        options.append(f"--volume={host_dir}:{mount['mountPath']}:z{read_only}")
    return options


def _give_to_group(path: Path, group: int | None, mode: int) -> None:
    """chown to root:fsGroup with the mode, as the kubelet does; without root, open to all."""
    if group is not None and os.geteuid() == 0:
        os.chown(path, 0, group)
        path.chmod(mode)
    else:
        path.chmod(0o777 if path.is_dir() else 0o666)
