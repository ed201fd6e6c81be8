"""The Helm chart: lints, renders valid Kubernetes manifests, runs hardened, never exposes the password.

CRDs (ServiceMonitor, PrometheusRule) have no schema in kubernetes-validate; they are left out of that
check and validated here instead: the PrometheusRule's groups with `promtool check rules` and against the
rules file, the ServiceMonitor against the Service it must select.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from conftest import free_port
from prometheus_client.parser import text_string_to_metric_families

from ccs_exporter.settings.config import Settings, load_settings
from ccs_exporter.simulator import Simulator

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parent.parent
CHART_DIR = REPO_ROOT / "helm" / "ccs-exporter"
FULL_VALUES = REPO_ROOT / "helm" / "ci-values-full.yaml"
SHARDING_VALUES = REPO_ROOT / "helm" / "ci-values-sharding.yaml"
RULES_FILE = REPO_ROOT / "prometheus" / "ccs-exporter.rules.yml"
NAMESPACE = "monitoring"
CRD_KINDS = frozenset({"ServiceMonitor", "PodMonitor", "PrometheusRule"})
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.25.0", "1.37.0")
FULL_PASSWORD = yaml.safe_load(FULL_VALUES.read_text(encoding="utf-8"))["ccs"]["password"]
# The least a user must set: CCS's URL, the account and where the password is (the chart refuses to render
# without them; the username's backslash doubled for --set, which drops one).
MINIMAL_SETTINGS = (
    "ccs.url=https://ccs.corp.example:12431",
    "ccs.username=CORP\\\\svc-ccs-exporter",
    "ccs.existingSecret=ccs-credentials",
)
# helm/ci-values-full.yaml turns TLS on (webConfig.tls); the others leave it off.
PROBE_SCHEMES = {"default": "HTTP", "full": "HTTPS", "sharding": "HTTP"}
WORKLOAD_KINDS = ("Deployment", "StatefulSet")
Manifests = list[dict[str, Any]]
Render = Callable[..., Manifests]


@pytest.fixture(scope="module")
def helm(require_tool: Callable[[str], str]) -> str:
    """The helm binary (skips outside CI when missing)."""
    return require_tool("helm")


def _run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, check=False, cwd=REPO_ROOT)


def _template_args(values_files: tuple[Path, ...], settings: tuple[str, ...]) -> list[str]:
    args = ["template", "ccs", str(CHART_DIR), "--namespace", NAMESPACE]
    for values_file in values_files:
        args += ["-f", str(values_file)]
    for setting in settings:
        args += ["--set", setting]
    return args


@pytest.fixture(scope="module")
def render(helm: str) -> Render:
    """A function rendering the chart with `helm template` and returning its documents.

    Without values files the minimal settings are added (the chart refuses to render without a password).
    """

    def render_chart(*values_files: Path, settings: tuple[str, ...] = ()) -> Manifests:
        if not values_files:
            settings = MINIMAL_SETTINGS + settings
        result = _run_helm(helm, *_template_args(values_files, settings))
        assert result.returncode == 0, result.stderr
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    return render_chart


@pytest.fixture(scope="module")
def refused(helm: str) -> Callable[..., str]:
    """A function rendering the chart with settings that must be refused; returns helm's error output."""

    def render_refused(*settings: str, values_files: tuple[Path, ...] = ()) -> str:
        result = _run_helm(helm, *_template_args(values_files, settings))
        assert result.returncode != 0, f"rendered although it should not: {settings}"
        return result.stderr

    return render_refused


@pytest.fixture(scope="module")
def default_manifests(render: Render) -> Manifests:
    """The chart rendered with its default values plus the password's Secret name."""
    return render()


@pytest.fixture(scope="module")
def full_manifests(render: Render) -> Manifests:
    """The chart rendered with helm/ci-values-full.yaml (every option on, Deployment mode)."""
    return render(FULL_VALUES)


@pytest.fixture(scope="module")
def sharding_manifests(render: Render) -> Manifests:
    """The chart rendered with helm/ci-values-sharding.yaml (three shards with audit volumes)."""
    return render(SHARDING_VALUES)


def _one(manifests: Manifests, kind: str) -> dict[str, Any]:
    found = [doc for doc in manifests if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {[doc['kind'] for doc in manifests]}"
    return found[0]


def _kinds(manifests: Manifests) -> list[str]:
    return sorted(doc["kind"] for doc in manifests)


def _workload(manifests: Manifests) -> dict[str, Any]:
    (workload,) = [doc for doc in manifests if doc["kind"] in WORKLOAD_KINDS]
    return workload


def _pod(manifests: Manifests) -> dict[str, Any]:
    spec: dict[str, Any] = _workload(manifests)["spec"]["template"]["spec"]
    return spec


def _container(manifests: Manifests) -> dict[str, Any]:
    containers = _pod(manifests)["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _env(manifests: Manifests) -> dict[str, Any]:
    return {
        var["name"]: var.get("value", var.get("valueFrom")) for var in _container(manifests).get("env", [])
    }


def _config(manifests: Manifests) -> dict[str, Any]:
    """The exporter's configuration file as the ConfigMap holds it."""
    config: dict[str, Any] = yaml.safe_load(_one(manifests, "ConfigMap")["data"]["config.yaml"])
    return config


def _mount_for(manifests: Manifests, path: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The volume mount holding ``path`` and its pod volume (None when a volumeClaimTemplate provides it)."""
    mounts = [
        m for m in _container(manifests)["volumeMounts"] if path.startswith(m["mountPath"].rstrip("/") + "/")
    ]
    assert len(mounts) == 1, f"no single volume mount holds {path}"
    volume = next((v for v in _pod(manifests)["volumes"] if v["name"] == mounts[0]["name"]), None)
    return mounts[0], volume


def _kubernetes_validate(
    manifests: Manifests, version: str, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    manifest_file = tmp_path / f"manifests-{version}.yaml"
    manifest_file.write_text(yaml.safe_dump_all(manifests), encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "-k", version, str(manifest_file)],
        capture_output=True,
        text=True,
        check=False,
    )


class TestLint:
    """`helm lint --strict` passes; bad values are refused by the schema."""

    @pytest.mark.parametrize(
        "args",
        [
            [arg for setting in MINIMAL_SETTINGS for arg in ("--set", setting)],
            ["-f", str(FULL_VALUES)],
            ["-f", str(SHARDING_VALUES)],
        ],
        ids=["default", "full", "sharding"],
    )
    def test_lint_strict(self, helm: str, args: list[str]) -> None:
        """The chart lints without warnings with the defaults, every option on, and sharded."""
        result = _run_helm(helm, "lint", "--strict", str(CHART_DIR), *args)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "0 chart(s) failed" in result.stdout

    @pytest.mark.parametrize(
        "setting",
        [
            "exporter.logLevel=verbose",
            "extraEnv[0].name=CCS_EXPORTER_PASSWORD",
            "exporter.statusMetric=dense",
            "sharding.replicas=0",
            "jobSearch[0]=",
            "searchPageSize=5000",
            "networkPolicy.ccsPort=70000",
        ],
    )
    def test_schema_rejects_bad_values(self, refused: Callable[..., str], setting: str) -> None:
        """The schema refuses bad levels, modes, counts and ports, and a password passed through extraEnv."""
        stderr = refused(*MINIMAL_SETTINGS, setting)
        assert "values don't meet the specifications of the schema" in stderr or "at '/" in stderr

    def test_old_extra_env_location_is_refused(self, refused: Callable[..., str]) -> None:
        """exporter.extraEnv (moved to extraEnv) is an unknown key, not silently ignored."""
        stderr = refused(*MINIMAL_SETTINGS, "exporter.extraEnv[0].name=TZ")
        assert "extraEnv" in stderr


class TestPasswordIsRequired:
    """The default install never renders an empty password Secret."""

    def test_bare_default_install_fails_saying_what_to_set(self, refused: Callable[..., str]) -> None:
        """A bare install fails with one message naming all it needs: the URL, the account, the password
        (no example.com placeholder renders a release that can never log in)."""
        stderr = refused()
        assert "required values not set" in stderr
        assert "ccs.url" in stderr and "ccs.username" in stderr
        assert "ccs.existingSecret" in stderr and "ccs.password" in stderr
        assert "kubectl create secret generic" in stderr

    @pytest.mark.parametrize("missing", ["ccs.url", "ccs.username"])
    def test_url_and_username_have_no_default(self, refused: Callable[..., str], missing: str) -> None:
        """With the password set, leaving out the URL or the account still fails, naming it alone."""
        stderr = refused(*[setting for setting in MINIMAL_SETTINGS if not setting.startswith(missing)])
        assert f"required values not set: {missing}:" in stderr
        assert "ccs.existingSecret" not in stderr

    def test_existing_secret_is_used_as_is(self, render: Render) -> None:
        """With ccs.existingSecret the chart creates no Secret and mounts the named one's key."""
        manifests = render(settings=("ccs.existingSecret=corp-ccs", "ccs.passwordKey=ccs-pw"))
        assert "Secret" not in _kinds(manifests)
        _, volume = _mount_for(manifests, _config(manifests)["password_file"])
        assert volume is not None
        assert volume["secret"]["secretName"] == "corp-ccs"
        assert volume["secret"]["items"] == [{"key": "ccs-pw", "path": "password"}]

    def test_password_value_creates_the_secret(self, full_manifests: Manifests) -> None:
        """With ccs.password the chart creates a Secret holding it, mounted where password_file points."""
        password_file = _config(full_manifests)["password_file"]
        mount, volume = _mount_for(full_manifests, password_file)
        assert mount["readOnly"] is True and volume is not None
        secret = _one(full_manifests, "Secret")
        assert volume["secret"]["secretName"] == secret["metadata"]["name"]
        assert volume["secret"]["defaultMode"] == 0o440
        (item,) = volume["secret"]["items"]
        assert item["path"] == Path(password_file).name
        assert base64.b64decode(secret["data"][item["key"]]).decode() == FULL_PASSWORD

    def test_password_appears_only_in_its_secret(self, full_manifests: Manifests) -> None:
        """Neither the workload, the ConfigMap nor any other object holds the password or its variable."""
        others = [doc for doc in full_manifests if doc["kind"] != "Secret"]
        assert FULL_PASSWORD not in yaml.safe_dump_all(others)
        assert "CCS_EXPORTER_PASSWORD" not in _env(full_manifests)
        assert "password" not in _config(full_manifests)
        assert all(isinstance(value, str) for value in _env(full_manifests).values()), "no env from a Secret"


class TestKubernetesValidity:
    """The rendered manifests are valid Kubernetes objects."""

    def test_default_renders_core_objects(self, default_manifests: Manifests) -> None:
        """Default values render a ServiceAccount, ConfigMap, Service and Deployment, and no CRD objects."""
        assert _kinds(default_manifests) == ["ConfigMap", "Deployment", "Service", "ServiceAccount"]

    def test_full_renders_every_object(self, full_manifests: Manifests) -> None:
        """Every option on adds the Secret, audit PVC, PDB, NetworkPolicy, ServiceMonitor, PrometheusRule."""
        assert _kinds(full_manifests) == [
            "ConfigMap",
            "Deployment",
            "NetworkPolicy",
            "PersistentVolumeClaim",
            "PodDisruptionBudget",
            "PrometheusRule",
            "Secret",
            "Service",
            "ServiceAccount",
            "ServiceMonitor",
        ]

    def test_sharding_renders_a_statefulset(self, sharding_manifests: Manifests) -> None:
        """Sharding renders a StatefulSet and a PodDisruptionBudget instead of the Deployment and the PVC."""
        assert _kinds(sharding_manifests) == [
            "ConfigMap",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "PrometheusRule",
            "Service",
            "ServiceAccount",
            "ServiceMonitor",
            "StatefulSet",
        ]

    @pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
    @pytest.mark.parametrize("which", ["default", "full", "sharding"])
    def test_kubernetes_validate_strict(
        self, which: str, version: str, request: pytest.FixtureRequest, tmp_path: Path
    ) -> None:
        """kubernetes-validate --strict passes every non-CRD object, offline, for the given version."""
        manifests: Manifests = request.getfixturevalue(f"{which}_manifests")
        core = [doc for doc in manifests if doc["kind"] not in CRD_KINDS]
        result = _kubernetes_validate(core, version, tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.count("passed for resource") == len(core), result.stdout + result.stderr

    def test_kubernetes_validate_catches_unknown_fields(
        self, full_manifests: Manifests, tmp_path: Path
    ) -> None:
        """The strict check is real: a misspelt container field fails it."""
        broken = yaml.safe_load(yaml.safe_dump(_one(full_manifests, "Deployment")))
        broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"periodSeconds": 5}
        result = _kubernetes_validate([broken], KUBERNETES_VERSIONS[-1], tmp_path)
        assert result.returncode != 0

    def test_common_labels_are_on_every_object(self, full_manifests: Manifests) -> None:
        """commonLabels appear on every rendered object and on the pods."""
        for doc in full_manifests:
            assert doc["metadata"]["labels"]["example.com/cost-center"] == "compliance", doc["kind"]
        pod_labels = _workload(full_manifests)["spec"]["template"]["metadata"]["labels"]
        assert pod_labels["example.com/cost-center"] == "compliance"


@pytest.mark.parametrize("which", ["default", "full", "sharding"])
class TestHardening:
    """The exporter runs unprivileged, with health probes and bounded resources, in every mode."""

    def test_pod_runs_as_non_root(self, which: str, request: pytest.FixtureRequest) -> None:
        """The pod runs as a non-root uid with the RuntimeDefault seccomp profile and no API token."""
        pod = _pod(request.getfixturevalue(f"{which}_manifests"))
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False

    def test_container_is_locked_down(self, which: str, request: pytest.FixtureRequest) -> None:
        """The container has a read-only root, no privilege escalation and drops all capabilities."""
        context = _container(request.getfixturevalue(f"{which}_manifests"))["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["privileged"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}

    def test_probes_use_health_endpoints(self, which: str, request: pytest.FixtureRequest) -> None:
        """Liveness asks /healthz and readiness /readyz on the metrics port, over HTTPS when TLS is on."""
        container = _container(request.getfixturevalue(f"{which}_manifests"))
        scheme = PROBE_SCHEMES[which]
        assert container["livenessProbe"]["httpGet"] == {
            "path": "/healthz",
            "port": "http-metrics",
            "scheme": scheme,
        }
        assert container["readinessProbe"]["httpGet"] == {
            "path": "/readyz",
            "port": "http-metrics",
            "scheme": scheme,
        }
        assert [port["name"] for port in container["ports"]] == ["http-metrics"]

    def test_resources_are_bounded(self, which: str, request: pytest.FixtureRequest) -> None:
        """The container requests CPU and memory and has a memory limit."""
        resources = _container(request.getfixturevalue(f"{which}_manifests"))["resources"]
        assert resources["requests"]["cpu"] and resources["requests"]["memory"]
        assert resources["limits"]["memory"]


class TestConfigFile:
    """The settings live in a ConfigMap mounted as the exporter's --config file."""

    @pytest.mark.parametrize("which", ["default", "full", "sharding"])
    def test_serve_reads_the_mounted_config_map(self, which: str, request: pytest.FixtureRequest) -> None:
        """`serve --config` names config.yaml in a read-only directory mount (no subPath) of the ConfigMap."""
        manifests: Manifests = request.getfixturevalue(f"{which}_manifests")
        args = _container(manifests)["args"]
        assert args[:2] == ["serve", "--config"]
        mount, volume = _mount_for(manifests, args[2])
        assert mount["readOnly"] is True and "subPath" not in mount
        assert volume is not None
        assert volume["configMap"]["name"] == _one(manifests, "ConfigMap")["metadata"]["name"]
        assert Path(args[2]).name == "config.yaml"

    def test_full_values_become_settings(self, full_manifests: Manifests) -> None:
        """Jobs, searches, intervals, logging and extraConfig are written under the exporter's YAML keys."""
        config = _config(full_manifests)
        assert config["job_ids"] == [
            "23c59087-f3d4-4e05-a39e-3440c58e58fb",
            "ff761384-4b49-40b4-97d8-0de38669075a",
        ]
        assert config["job_search"] == ["(JobType = COLLECTIONJOB)", "(JobName Contains PCI)"]
        assert config["search_page_size"] == 250
        assert config["url"] == "https://ccs.corp.example.com:12431"
        assert config["username"] == "CORP\\svc-ccs-exporter"
        assert config["poll_interval_seconds"] == 30
        assert config["listen_address"] == "0.0.0.0:9879"
        assert config["password_encoding"] == "plain"
        assert config["log_level"] == "debug"
        assert config["status_metric"] == "sparse"
        assert config["max_response_bytes"] == 16777216

    def test_unset_options_leave_the_exporters_defaults(self, default_manifests: Manifests) -> None:
        """Without searches, a status mode, CA, audit log or web config, their keys are not written."""
        config = _config(default_manifests)
        assert not {"job_search", "search_page_size", "status_metric", "ca_bundle", "audit_log"} & set(config)
        assert "web_config_file" not in config
        assert config["verify_tls"] is True

    @pytest.mark.parametrize("which", ["default", "full", "sharding"])
    def test_exporter_accepts_the_config_file(
        self, which: str, request: pytest.FixtureRequest, tmp_path: Path
    ) -> None:
        """The exporter's settings loader accepts the rendered file (mounted paths made local files)."""
        config = _config(request.getfixturevalue(f"{which}_manifests"))
        unknown = set(config) - set(Settings.model_fields)
        assert not unknown, f"keys the exporter does not know: {sorted(unknown)}"
        config_file = _local_config_file(config, tmp_path)
        settings = load_settings(config_file)
        assert settings.job_ids == config["job_ids"]
        assert settings.poll_interval_seconds == config["poll_interval_seconds"]

    @pytest.mark.parametrize(
        ("settings", "message"),
        [
            (("exporter.extraConfig.password=x",), "exporter.extraConfig.password"),
            (("exporter.extraConfig.job_ids=x",), "exporter.extraConfig.job_ids"),
            (("exporter.extraConfig.poll_interval_seconds=5",), "exporter.extraConfig.poll_interval_seconds"),
        ],
        ids=["password", "job-ids", "chart-key"],
    )
    def test_extra_config_cannot_take_over_chart_keys(
        self, refused: Callable[..., str], settings: tuple[str, ...], message: str
    ) -> None:
        """extraConfig may not hold the password nor keys the chart sets; the error names the key."""
        assert message in refused(*MINIMAL_SETTINGS, *settings)

    def test_pod_template_carries_no_config_checksum(self, full_manifests: Manifests) -> None:
        """A changed job list does not roll the pods: no pod template annotation depends on the config."""
        annotations = _workload(full_manifests)["spec"]["template"]["metadata"].get("annotations", {})
        assert not [name for name in annotations if "checksum" in name]


def _local_config_file(config: dict[str, Any], tmp_path: Path) -> Path:
    """The rendered settings written as a local file, the paths the pod would have mounted made local."""
    config = dict(config)
    for key in ("password_file", "ca_bundle", "web_config_file"):
        if key in config:
            config[key] = str(_local_stand_in(key, tmp_path))
    if "audit_log" in config:  # the pod's volume; its directory must exist and be writable
        config["audit_log"] = str(tmp_path / "audit.jsonl")
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    return config_file


def _local_stand_in(key: str, tmp_path: Path) -> Path:
    """A readable local file for a path the pod would have mounted."""
    path = tmp_path / key
    if key == "ca_bundle":
        shutil.copy(Path(requests.certs.where()), path)
    elif key == "web_config_file":
        path.write_text("basic_auth_users: {}\n", encoding="utf-8")
    else:
        path.write_text("not-the-real-password\n", encoding="utf-8")
    return path


class _KubeletVolume:
    """A ConfigMap volume laid out as the kubelet writes it: config.yaml -> ..data/config.yaml, where
    ..data is a symlink to a timestamped directory that an update replaces atomically."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._version = 0

    @property
    def file(self) -> Path:
        return self.directory / "config.yaml"

    def write(self, content: str) -> None:
        self._version += 1
        target = self.directory / f"..2030_01_01_00_00_0{self._version}.000000000"
        target.mkdir()
        (target / "config.yaml").write_text(content, encoding="utf-8")
        old = (self.directory / "..data").resolve() if (self.directory / "..data").exists() else None
        temporary = self.directory / "..data_tmp"
        temporary.symlink_to(target.name)
        os.replace(temporary, self.directory / "..data")
        if not self.file.is_symlink():
            self.file.symlink_to("..data/config.yaml")
        if old is not None:
            shutil.rmtree(old)


def _watched_job_ids(base: str) -> set[str]:
    try:
        response = requests.get(f"{base}/metrics", timeout=2)
    except requests.ConnectionError:
        return set()
    return {
        sample.labels["job_id"]
        for family in text_string_to_metric_families(response.text)
        if family.name == "ccs_job_info"
        for sample in family.samples
    }


@pytest.fixture
def exporter_on_chart_config(
    default_manifests: Manifests, tmp_path: Path
) -> Iterator[tuple[Simulator, _KubeletVolume, Callable[[list[str]], str], str]]:
    """The simulator, a kubelet-style volume holding the chart's config.yaml pointed at it, a function
    rendering that file for a job list, and the base URL of `serve --config` running on it."""
    chart_config = _config(default_manifests)
    port = free_port()
    password_file = tmp_path / "password"
    with Simulator(port=0, run_interval=None) as simulator:
        password_file.write_text(simulator.password + "\n", encoding="utf-8")

        def content(job_ids: list[str]) -> str:
            config = dict(chart_config)
            config.update(
                url=simulator.url,
                username=simulator.username,
                password_file=str(password_file),
                listen_address=f"127.0.0.1:{port}",
                poll_interval_seconds=0.3,
                job_ids=job_ids,
            )
            return yaml.safe_dump(config)

        volume_dir = tmp_path / "config"
        volume_dir.mkdir()
        volume = _KubeletVolume(volume_dir)
        volume.write(content(simulator.job_ids[:1]))
        env = {key: value for key, value in os.environ.items() if not key.startswith("CCS_EXPORTER_")}
        process = subprocess.Popen(
            [sys.executable, "-m", "ccs_exporter", "serve", "--config", str(volume.file)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            yield simulator, volume, content, f"http://127.0.0.1:{port}"
        finally:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(10)


def _wait_until(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


class TestConfigReload:
    """What the chart README promises: a new job list in the ConfigMap reaches the running exporter."""

    def test_kubelet_update_of_the_config_map_reloads_the_job_list(
        self, exporter_on_chart_config: tuple[Simulator, _KubeletVolume, Callable[[list[str]], str], str]
    ) -> None:
        """After the kubelet swaps the ConfigMap's ..data symlink, the exporter watches the new job list."""
        simulator, volume, content, base = exporter_on_chart_config
        first = set(simulator.job_ids[:1])
        assert _wait_until(lambda: _watched_job_ids(base) == first, 20), "exporter did not start on the file"
        volume.write(content(simulator.job_ids[:3]))
        assert _wait_until(lambda: _watched_job_ids(base) == set(simulator.job_ids[:3]), 20), (
            "the job list of the updated ConfigMap was not picked up without a restart"
        )


class TestSettingsFromValues:
    """Values become mounts, arguments and variables of the pod."""

    def test_ca_bundle_is_mounted_where_the_setting_points(self, full_manifests: Manifests) -> None:
        """ca_bundle names the key of the mounted ConfigMap."""
        ca_file = _config(full_manifests)["ca_bundle"]
        _, volume = _mount_for(full_manifests, ca_file)
        assert volume is not None
        assert volume["configMap"]["name"] == "corp-internal-ca"
        assert volume["configMap"]["items"] == [{"key": "corp-ca.pem", "path": Path(ca_file).name}]

    def test_ca_bundle_from_a_secret(self, render: Render) -> None:
        """The CA bundle can come from a Secret instead."""
        manifests = render(settings=("ccs.caBundle.secret=corp-ca", "ccs.caBundle.key=ca.crt"))
        _, volume = _mount_for(manifests, _config(manifests)["ca_bundle"])
        assert volume is not None
        assert volume["secret"]["secretName"] == "corp-ca"

    def test_two_ca_sources_are_refused(self, refused: Callable[..., str]) -> None:
        """A CA bundle from both a ConfigMap and a Secret is an error naming the setting."""
        assert "ccs.caBundle" in refused(
            *MINIMAL_SETTINGS, "ccs.caBundle.configMap=a", "ccs.caBundle.secret=b"
        )

    def test_audit_log_lives_on_the_claim(self, full_manifests: Manifests) -> None:
        """The audit log file is on the chart's PVC, kept on uninstall, and the rollout recreates the pod."""
        _, volume = _mount_for(full_manifests, _config(full_manifests)["audit_log"])
        claim = _one(full_manifests, "PersistentVolumeClaim")
        assert volume is not None
        assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
        assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert _one(full_manifests, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}

    def test_extra_args_env_and_volumes(self, full_manifests: Manifests) -> None:
        """extraArgs follow --config; extraEnv, extraEnvFrom, extraVolumes and extraVolumeMounts are added."""
        container = _container(full_manifests)
        assert container["args"][3:] == ["--log-level=debug"]
        assert _env(full_manifests) == {"TZ": "UTC"}
        assert container["envFrom"] == [{"configMapRef": {"name": "corp-proxy-settings"}}]
        mount, volume = _mount_for(full_manifests, "/etc/corp-trust/ca.pem")
        assert mount["readOnly"] is True and volume is not None
        assert volume["configMap"] == {"name": "corp-trust-bundle"}

    def test_host_aliases(self, full_manifests: Manifests) -> None:
        """hostAliases give the pod CCS's internal name."""
        assert _pod(full_manifests)["hostAliases"] == [
            {"ip": "10.20.30.40", "hostnames": ["ccs.corp.example.com"]}
        ]

    def test_topology_spread_gets_the_pod_selector(self, full_manifests: Manifests) -> None:
        """A topology spread constraint without labelSelector selects the chart's own pods."""
        (constraint,) = _pod(full_manifests)["topologySpreadConstraints"]
        selector = _workload(full_manifests)["spec"]["selector"]
        assert constraint["labelSelector"] == selector
        assert constraint["topologyKey"] == "topology.kubernetes.io/zone"

    def test_no_ccs_exporter_variables_without_sharding(self, default_manifests: Manifests) -> None:
        """Without sharding the container has no environment at all: everything is in the file."""
        assert "env" not in _container(default_manifests)

    def test_pod_disruption_budget(self, full_manifests: Manifests, render: Render) -> None:
        """The PDB selects the pods with maxUnavailable, or minAvailable when that is set."""
        budget = _one(full_manifests, "PodDisruptionBudget")["spec"]
        assert budget == {"maxUnavailable": 1, "selector": _workload(full_manifests)["spec"]["selector"]}
        manifests = render(
            settings=("podDisruptionBudget.enabled=true", "podDisruptionBudget.minAvailable=1")
        )
        assert _one(manifests, "PodDisruptionBudget")["spec"]["minAvailable"] == 1

    def test_service_labels(self, full_manifests: Manifests) -> None:
        """service.labels are added to the Service; its selector still matches the pods."""
        service = _one(full_manifests, "Service")
        assert service["metadata"]["labels"]["example.com/scrape-group"] == "compliance"
        pod_labels = _workload(full_manifests)["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items()


class TestNetworkPolicy:
    """The NetworkPolicy lets Prometheus in and the exporter out to CCS and DNS only."""

    def test_ingress_to_the_metrics_port_from_prometheus(self, full_manifests: Manifests) -> None:
        """Only the metrics port is open, to the configured peers; the policy selects the chart's pods."""
        policy = _one(full_manifests, "NetworkPolicy")["spec"]
        assert policy["podSelector"] == _workload(full_manifests)["spec"]["selector"]
        assert policy["policyTypes"] == ["Ingress", "Egress"]
        (ingress,) = policy["ingress"]
        assert ingress["ports"] == [{"port": "http-metrics", "protocol": "TCP"}]
        assert ingress["from"][0]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}

    def test_egress_to_ccs_dns_and_extra(self, full_manifests: Manifests) -> None:
        """Egress goes to CCS's address on the URL's port, DNS, and the extra rules; nothing else."""
        egress = _one(full_manifests, "NetworkPolicy")["spec"]["egress"]
        assert egress[0] == {
            "ports": [{"port": 12431, "protocol": "TCP"}],
            "to": [{"ipBlock": {"cidr": "10.20.30.40/32"}}],
        }
        assert egress[1] == {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
        assert egress[2]["ports"] == [{"port": 3128, "protocol": "TCP"}]
        assert len(egress) == 3

    @pytest.mark.parametrize(
        ("settings", "port"),
        [
            (("ccs.url=https://ccs.example.com",), 443),
            (("ccs.url=http://ccs.example.com/",), 80),
            (("ccs.url=https://ccs.example.com:8443",), 8443),
            (("ccs.url=https://ccs.example.com:8443", "networkPolicy.ccsPort=443"), 443),
        ],
        ids=["https-default", "http-default", "url-port", "override"],
    )
    def test_ccs_port(self, render: Render, settings: tuple[str, ...], port: int) -> None:
        """CCS's port comes from the URL (443/80 by scheme without one) unless networkPolicy.ccsPort says."""
        manifests = render(settings=("networkPolicy.enabled=true", *settings))
        egress = _one(manifests, "NetworkPolicy")["spec"]["egress"]
        assert egress[0] == {"ports": [{"port": port, "protocol": "TCP"}]}


class TestSharding:
    """sharding.enabled: a StatefulSet of shards, as kube-state-metrics runs them."""

    def test_statefulset_shards_by_pod_ordinal(self, sharding_manifests: Manifests) -> None:
        """The StatefulSet runs `replicas` pods taking their shard from the host name, out of `replicas`."""
        statefulset = _one(sharding_manifests, "StatefulSet")
        assert statefulset["spec"]["replicas"] == 3
        assert statefulset["spec"]["podManagementPolicy"] == "Parallel"
        assert _env(sharding_manifests) == {
            "CCS_EXPORTER_SHARD_FROM_HOSTNAME": "true",
            "CCS_EXPORTER_TOTAL_SHARDS": "3",
        }

    def test_each_pod_is_told_a_different_shard(
        self, sharding_manifests: Manifests, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With the rendered config file and environment, pods <name>-0..2 load as shards 0/3, 1/3, 2/3."""
        config = _config(sharding_manifests)
        config_file = _local_config_file(config, tmp_path)
        for name, value in _env(sharding_manifests).items():
            monkeypatch.setenv(name, value)
        name = _one(sharding_manifests, "StatefulSet")["metadata"]["name"]
        shards = []
        for ordinal in range(3):
            monkeypatch.setattr("socket.gethostname", lambda ordinal=ordinal: f"{name}-{ordinal}")
            shards.append(str(load_settings(config_file).shard_of_replica))
        assert shards == ["0/3", "1/3", "2/3"]

    def test_total_follows_replicas(self, render: Render) -> None:
        """Another replica count changes the total every shard is told."""
        manifests = render(settings=("sharding.enabled=true", "sharding.replicas=5"))
        assert _one(manifests, "StatefulSet")["spec"]["replicas"] == 5
        assert _env(manifests)["CCS_EXPORTER_TOTAL_SHARDS"] == "5"

    def test_headless_service_is_the_statefulsets(self, sharding_manifests: Manifests) -> None:
        """The one Service is headless, named as the StatefulSet's serviceName, and the ServiceMonitor's."""
        service = _one(sharding_manifests, "Service")
        assert service["spec"]["clusterIP"] == "None"
        assert _one(sharding_manifests, "StatefulSet")["spec"]["serviceName"] == service["metadata"]["name"]
        monitor = _one(sharding_manifests, "ServiceMonitor")
        assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()

    def test_each_shard_has_its_own_audit_volume(self, sharding_manifests: Manifests) -> None:
        """The audit log is on a per-pod claim from a volumeClaimTemplate with the selector labels only."""
        statefulset = _one(sharding_manifests, "StatefulSet")
        mount, volume = _mount_for(sharding_manifests, _config(sharding_manifests)["audit_log"])
        assert volume is None, "the audit volume must come from the volumeClaimTemplate, not the pod spec"
        (template,) = statefulset["spec"]["volumeClaimTemplates"]
        assert template["metadata"]["name"] == mount["name"]
        assert template["metadata"]["labels"] == statefulset["spec"]["selector"]["matchLabels"]
        assert template["spec"]["resources"]["requests"]["storage"] == "2Gi"
        assert template["spec"]["storageClassName"] == "standard"

    def test_disruption_budget_takes_one_shard_at_a_time(self, sharding_manifests: Manifests) -> None:
        """Sharding renders a PodDisruptionBudget over the shards with maxUnavailable 1."""
        budget = _one(sharding_manifests, "PodDisruptionBudget")["spec"]
        assert budget["maxUnavailable"] == 1
        assert budget["selector"] == _one(sharding_manifests, "StatefulSet")["spec"]["selector"]

    @pytest.mark.parametrize(
        ("settings", "message"),
        [
            (
                (
                    "auditLog.enabled=true",
                    "auditLog.persistence.enabled=true",
                    "auditLog.persistence.existingClaim=shared",
                ),
                "auditLog.persistence.existingClaim",
            ),
            (("service.type=NodePort",), "service.type"),
        ],
        ids=["shared-claim", "node-port"],
    )
    def test_impossible_settings_are_refused(
        self, refused: Callable[..., str], settings: tuple[str, ...], message: str
    ) -> None:
        """A claim shared by every shard and a non-headless Service type are errors naming the value."""
        assert message in refused(*MINIMAL_SETTINGS, "sharding.enabled=true", *settings)

    def test_deployment_stays_the_default(self, default_manifests: Manifests) -> None:
        """Without sharding there is a Deployment, a normal ClusterIP Service and no StatefulSet or PDB."""
        assert "StatefulSet" not in _kinds(default_manifests)
        assert "PodDisruptionBudget" not in _kinds(default_manifests)
        assert "clusterIP" not in _one(default_manifests, "Service")["spec"]


class TestPrometheusRule:
    """The chart's PrometheusRule carries the rules file, with the selector and runbook address in values."""

    def test_groups_equal_the_rules_file(self, render: Render) -> None:
        """With default settings the PrometheusRule's groups are exactly the rules file's."""
        rule = _one(render(settings=("prometheusRule.enabled=true",)), "PrometheusRule")
        assert rule["spec"]["groups"] == yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))["groups"]

    def test_selector_and_runbooks_as_render_rules_makes_them(self, full_manifests: Manifests) -> None:
        """The chart replaces selector and runbook address exactly as prometheus/render_rules.py does."""
        values = yaml.safe_load(FULL_VALUES.read_text(encoding="utf-8"))["prometheusRule"]
        script = subprocess.run(
            [
                sys.executable,
                str(REPO_ROOT / "prometheus" / "render_rules.py"),
                "--selector",
                values["scrapeJobSelector"],
                "--runbook-url",
                values["runbookUrl"],
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        groups = _one(full_manifests, "PrometheusRule")["spec"]["groups"]
        assert groups[:-1] == yaml.safe_load(script.stdout)["groups"]
        down = next(r for g in groups for r in g["rules"] if r.get("alert") == "CcsExporterDown")
        assert down["expr"] == 'up{job="ccs-exporter-prod",namespace="monitoring"} == 0'
        assert (
            down["annotations"]["runbook_url"]
            == "https://wiki.corp.example.com/ccs/runbooks.md#ccsexporterdown"
        )

    def test_per_job_overrides(self, full_manifests: Manifests) -> None:
        """Staleness and grace overrides become lower-case job_id recording rules in one extra group."""
        groups = _one(full_manifests, "PrometheusRule")["spec"]["groups"]
        overrides = next(group for group in groups if group["name"] == "ccs-exporter.overrides")
        assert {(r["record"], r["labels"]["job_id"], r["expr"]) for r in overrides["rules"]} == {
            (
                "ccs_job_success_max_age_seconds_override",
                "23c59087-f3d4-4e05-a39e-3440c58e58fb",
                "vector(691200)",
            ),
            (
                "ccs_job_success_max_age_seconds_override",
                "ff761384-4b49-40b4-97d8-0de38669075a",
                "vector(46800)",
            ),
            (
                "ccs_job_schedule_grace_seconds_override",
                "23c59087-f3d4-4e05-a39e-3440c58e58fb",
                "vector(14400)",
            ),
        }

    def test_malformed_selector_is_refused(self, refused: Callable[..., str]) -> None:
        """A selector that is not label matchers fails the render, naming the value."""
        stderr = refused(
            *MINIMAL_SETTINGS, "prometheusRule.enabled=true", "prometheusRule.scrapeJobSelector=ccs"
        )
        assert "scrapeJobSelector" in stderr

    def test_rendered_rules_pass_promtool(
        self, full_manifests: Manifests, require_tool: Callable[[str], str], tmp_path: Path
    ) -> None:
        """promtool accepts the PrometheusRule's groups (the CRD's real validation)."""
        promtool = require_tool("promtool")
        rules_file = tmp_path / "rendered.rules.yml"
        rules_file.write_text(
            yaml.safe_dump({"groups": _one(full_manifests, "PrometheusRule")["spec"]["groups"]}),
            encoding="utf-8",
        )
        result = subprocess.run(
            [promtool, "check", "rules", str(rules_file)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr


class TestServiceMonitor:
    """The ServiceMonitor scrapes the chart's Service."""

    def test_selects_the_service_port(self, full_manifests: Manifests) -> None:
        """Its selector matches the Service's labels and its endpoint names the Service's port."""
        monitor = _one(full_manifests, "ServiceMonitor")
        service = _one(full_manifests, "Service")
        assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
        assert endpoint["path"] == "/metrics"
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"

    def test_relabelings_are_passed_through(self, full_manifests: Manifests) -> None:
        """relabelings and metricRelabelings reach the endpoint unchanged."""
        (endpoint,) = _one(full_manifests, "ServiceMonitor")["spec"]["endpoints"]
        assert endpoint["relabelings"] == [
            {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"}
        ]
        assert endpoint["metricRelabelings"] == [
            {"sourceLabels": ["__name__"], "regex": "process_.*", "action": "drop"}
        ]


def _probe_schemes(manifests: Manifests) -> set[str]:
    container = _container(manifests)
    return {container[probe]["httpGet"]["scheme"] for probe in ("livenessProbe", "readinessProbe")}


def _endpoint(manifests: Manifests) -> dict[str, Any]:
    (endpoint,) = _one(manifests, "ServiceMonitor")["spec"]["endpoints"]
    return dict(endpoint)


class TestWebConfig:
    """The web-config file reaches the exporter as a read-only Secret mount, and TLS switches the probes."""

    def test_off_by_default(self, default_manifests: Manifests) -> None:
        """Default values set no web config and mount no web-config volume."""
        assert "web_config_file" not in _config(default_manifests)
        assert "web-config" not in {volume["name"] for volume in _pod(default_manifests)["volumes"]}

    def test_setting_points_at_the_mounted_secret(self, render: Render) -> None:
        """web_config_file names the configured key inside the read-only Secret volume."""
        manifests = render(settings=("webConfig.existingSecret=exporter-web", "webConfig.configKey=web.yml"))
        web_config_file = _config(manifests)["web_config_file"]
        assert Path(web_config_file).name == "web.yml"
        mount, volume = _mount_for(manifests, web_config_file)
        assert mount["readOnly"] is True and volume is not None
        assert volume["secret"] == {"secretName": "exporter-web", "defaultMode": 0o440}

    def test_tls_secret_is_projected_beside_the_config(self, full_manifests: Manifests) -> None:
        """With webConfig.tlsSecret both Secrets are projected, read-only, into the web config's directory."""
        mount, volume = _mount_for(full_manifests, _config(full_manifests)["web_config_file"])
        assert mount["readOnly"] is True and volume is not None
        assert volume["projected"]["defaultMode"] == 0o440
        assert [source["secret"]["name"] for source in volume["projected"]["sources"]] == [
            "ccs-exporter-web-config",
            "ccs-exporter-tls",
        ]

    @pytest.mark.parametrize(("tls", "scheme"), [("true", "HTTPS"), ("false", "HTTP")])
    def test_probes_follow_tls(self, render: Render, tls: str, scheme: str) -> None:
        """Both probes use HTTPS when the web config enables TLS and HTTP when it only has basic auth."""
        manifests = render(settings=("webConfig.existingSecret=exporter-web", f"webConfig.tls={tls}"))
        assert _probe_schemes(manifests) == {scheme}

    def test_only_the_path_is_in_the_config_map(self, full_manifests: Manifests) -> None:
        """The ConfigMap holds only the web config's path, nothing read from its Secret."""
        config = _config(full_manifests)
        mentioning = {key for key, value in config.items() if "/etc/ccs-exporter/web" in str(value)}
        assert mentioning == {"web_config_file"}

    @pytest.mark.parametrize(
        ("settings", "message"),
        [
            (("webConfig.tls=true",), "webConfig.existingSecret"),
            (("webConfig.tlsSecret=tls",), "webConfig.existingSecret"),
            (
                (
                    "serviceMonitor.enabled=true",
                    "serviceMonitor.tlsConfig.ca.secret=a",
                    "serviceMonitor.tlsConfig.ca.configMap=b",
                ),
                "serviceMonitor.tlsConfig.ca",
            ),
            (("webConfig.existingSecret=Not_A_Name",), "existingSecret"),
            (("webConfig.certFile=tls.crt",), "certFile"),
        ],
        ids=["tls-without-secret", "tls-secret-without-secret", "two-ca-sources", "bad-name", "unknown-key"],
    )
    def test_bad_settings_are_refused(
        self, refused: Callable[..., str], settings: tuple[str, ...], message: str
    ) -> None:
        """Settings that cannot work, bad Secret names and unknown keys are errors naming the setting."""
        assert message in refused(*MINIMAL_SETTINGS, *settings)

    @pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
    def test_secret_volume_is_valid(self, render: Render, version: str, tmp_path: Path) -> None:
        """The plain Secret volume (no tlsSecret) passes kubernetes-validate --strict too."""
        manifests = render(settings=("webConfig.existingSecret=exporter-web", "webConfig.tls=true"))
        result = _kubernetes_validate([_one(manifests, "Deployment")], version, tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr


class TestServiceMonitorWebConfig:
    """The ServiceMonitor scrapes over HTTPS and with basic auth as the values say."""

    def test_full_values_scrape_https_with_credentials(self, full_manifests: Manifests) -> None:
        """Every option on gives scheme https, the CA, server name and client certificate, and basic auth."""
        endpoint = _endpoint(full_manifests)
        assert endpoint["scheme"] == "https"
        assert endpoint["tlsConfig"] == {
            "serverName": "ccs-exporter-prod.monitoring.svc",
            "insecureSkipVerify": False,
            "ca": {"secret": {"name": "ccs-exporter-tls", "key": "ca.crt"}},
            "cert": {"secret": {"name": "prometheus-scrape-client-tls", "key": "tls.crt"}},
            "keySecret": {"name": "prometheus-scrape-client-tls", "key": "tls.key"},
        }
        assert endpoint["basicAuth"] == {
            "username": {"name": "ccs-exporter-scrape-auth", "key": "user"},
            "password": {"name": "ccs-exporter-scrape-auth", "key": "pass"},
        }

    def test_plain_http_by_default(self, render: Render) -> None:
        """Without a web config the ServiceMonitor scrapes plain HTTP with no TLS settings or credentials."""
        endpoint = _endpoint(render(settings=("serviceMonitor.enabled=true",)))
        assert endpoint["scheme"] == "http"
        assert "tlsConfig" not in endpoint and "basicAuth" not in endpoint

    def test_server_name_defaults_to_the_service(self, render: Render) -> None:
        """With TLS and no serverName, the certificate is checked for the Service's cluster DNS name."""
        manifests = render(
            settings=(
                "serviceMonitor.enabled=true",
                "webConfig.existingSecret=exporter-web",
                "webConfig.tls=true",
                "serviceMonitor.tlsConfig.ca.configMap=exporter-ca",
            )
        )
        service = _one(manifests, "Service")["metadata"]
        assert _endpoint(manifests)["tlsConfig"] == {
            "serverName": f"{service['name']}.{service['namespace']}.svc",
            "insecureSkipVerify": False,
            "ca": {"configMap": {"name": "exporter-ca", "key": "ca.crt"}},
        }

    def test_basic_auth_without_tls(self, render: Render) -> None:
        """Basic auth alone keeps scheme http and sends the credentials from the named Secret."""
        endpoint = _endpoint(
            render(
                settings=(
                    "serviceMonitor.enabled=true",
                    "webConfig.existingSecret=exporter-web",
                    "serviceMonitor.basicAuth.secretName=scrape-auth",
                )
            )
        )
        assert endpoint["scheme"] == "http"
        assert "tlsConfig" not in endpoint
        assert endpoint["basicAuth"] == {
            "username": {"name": "scrape-auth", "key": "username"},
            "password": {"name": "scrape-auth", "key": "password"},
        }

    def test_insecure_skip_verify(self, render: Render) -> None:
        """insecureSkipVerify is passed through for testing setups without a CA."""
        endpoint = _endpoint(
            render(
                settings=(
                    "serviceMonitor.enabled=true",
                    "webConfig.existingSecret=exporter-web",
                    "webConfig.tls=true",
                    "serviceMonitor.tlsConfig.insecureSkipVerify=true",
                )
            )
        )
        assert endpoint["tlsConfig"]["insecureSkipVerify"] is True
        assert "ca" not in endpoint["tlsConfig"]


class TestChartReadme:
    """The chart README's parameter tables are what readme-generator-for-helm makes of values.yaml."""

    def test_readme_is_up_to_date(self, require_tool: Callable[[str], str], tmp_path: Path) -> None:
        """Regenerating the README from values.yaml changes nothing (every value has a documented @param)."""
        generator = require_tool("readme-generator")
        readme = tmp_path / "README.md"
        shutil.copy(CHART_DIR / "README.md", readme)
        result = subprocess.run(
            [generator, "--values", str(CHART_DIR / "values.yaml"), "--readme", str(readme)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert readme.read_text(encoding="utf-8") == (CHART_DIR / "README.md").read_text(encoding="utf-8"), (
            "helm/ccs-exporter/README.md is stale; run: .tools/bin/readme-generator "
            "--values helm/ccs-exporter/values.yaml --readme helm/ccs-exporter/README.md"
        )

    def test_every_value_is_in_the_readme(self) -> None:
        """Each leaf of values.yaml appears in the README's parameter tables."""
        values = yaml.safe_load((CHART_DIR / "values.yaml").read_text(encoding="utf-8"))
        readme = (CHART_DIR / "README.md").read_text(encoding="utf-8")
        missing = [key for key in _leaf_keys(values) if f"| `{key}`" not in readme]
        assert not missing


def _leaf_keys(values: dict[str, Any], prefix: str = "") -> list[str]:
    keys: list[str] = []
    for key, value in values.items():
        if isinstance(value, dict) and value:
            keys += _leaf_keys(value, f"{prefix}{key}.")
        else:
            keys.append(f"{prefix}{key}")
    return keys


SHIPPING_SETTINGS = (
    "auditLog.enabled=true",
    "auditLog.persistence.enabled=true",
    "auditShipping.enabled=true",
    "auditShipping.format=ecs",
    "auditShipping.existingSecret=siem-shipping",
    "auditShipping.destinationKey=destination",
    "auditShipping.hecTokenKey=hec-token",
    "auditShipping.caBundleKey=ca.pem",
    "auditShipping.clientCertKey=client.pem",
    "auditShipping.clientKeyKey=client.key",
)


class TestAuditShipping:
    """The optional shipping sidecar and generic extraContainers."""

    def test_sidecar_follows_the_audit_log_with_its_cursor_on_the_audit_volume(self, render: Render) -> None:
        """Same image, `audit export --follow`, cursor beside the log, destination and token from a Secret."""
        manifests = render(settings=SHIPPING_SETTINGS)
        pod = _pod(manifests)
        exporter, sidecar = pod["containers"]
        assert sidecar["image"] == exporter["image"]
        args = sidecar["args"]
        assert args[:3] == ["audit", "export", "/var/lib/ccs-exporter/audit.jsonl"]
        assert args[args.index("--format") + 1] == "ecs" and "--follow" in args
        cursor = args[args.index("--cursor") + 1]
        assert cursor.startswith("/var/lib/ccs-exporter/")
        assert args[args.index("--destination") + 1] == "$(CCS_AUDIT_DESTINATION)"
        (env,) = sidecar["env"]
        assert env["valueFrom"]["secretKeyRef"] == {"name": "siem-shipping", "key": "destination"}
        token = args[args.index("--hec-token-file") + 1]
        mounts = {m["name"]: m for m in sidecar["volumeMounts"]}
        assert (
            token.startswith(mounts["audit-shipping"]["mountPath"] + "/")
            and mounts["audit-shipping"]["readOnly"]
        )
        assert mounts["audit-log"]["mountPath"] == "/var/lib/ccs-exporter"
        volume = next(v for v in pod["volumes"] if v["name"] == "audit-shipping")
        assert volume["secret"] == {"secretName": "siem-shipping", "defaultMode": 0o440}
        assert sidecar["securityContext"] == exporter["securityContext"]
        for flag, key in (("--destination-cert", "client.pem"), ("--destination-key", "client.key")):
            assert args[args.index(flag) + 1] == f"{mounts['audit-shipping']['mountPath']}/{key}"
        assert _config(manifests)["audit_export_cursors"] == [cursor]

    def test_sidecar_manifests_are_valid_kubernetes(self, render: Render, tmp_path: Path) -> None:
        """kubernetes-validate --strict accepts the pod with the sidecar and an extra container."""
        manifests = render(
            settings=(
                *SHIPPING_SETTINGS,
                "extraContainers[0].name=vector",
                "extraContainers[0].image=timberio/vector:0.40.0-debian",
            )
        )
        result = _kubernetes_validate(
            [m for m in manifests if m["kind"] not in CRD_KINDS], KUBERNETES_VERSIONS[-1], tmp_path
        )
        assert result.returncode == 0, result.stdout + result.stderr

    def test_extra_containers_are_added_as_given(self, render: Render) -> None:
        """extraContainers: your own shipper, next to the exporter."""
        manifests = render(
            settings=("extraContainers[0].name=fluent-bit", "extraContainers[0].image=fluent/fluent-bit:3.1")
        )
        names = [c["name"] for c in _pod(manifests)["containers"]]
        assert names == ["ccs-exporter", "fluent-bit"]

    def test_off_by_default(self, default_manifests: Manifests) -> None:
        """No sidecar and no cursor setting unless asked for."""
        assert [c["name"] for c in _pod(default_manifests)["containers"]] == ["ccs-exporter"]
        assert "audit_export_cursors" not in _config(default_manifests)

    @pytest.mark.parametrize(
        ("settings", "named"),
        [
            (("auditShipping.enabled=true",), "auditLog.enabled"),
            (
                ("auditLog.enabled=true", "auditShipping.enabled=true", "auditShipping.hecTokenKey=t"),
                "existingSecret",
            ),
            (("auditLog.enabled=true", "auditShipping.enabled=true", "auditShipping.format=cef"), "format"),
            (
                (
                    "auditLog.enabled=true",
                    "auditShipping.enabled=true",
                    "auditShipping.existingSecret=s",
                    "auditShipping.clientCertKey=c",
                ),
                "clientKeyKey",
            ),
            (
                (
                    "auditLog.enabled=true",
                    "auditShipping.enabled=true",
                    "auditShipping.destination=https://u:p@h",
                ),
                "destination",
            ),
        ],
    )
    def test_bad_values_are_refused(
        self, refused: Callable[..., str], settings: tuple[str, ...], named: str
    ) -> None:
        """Values that cannot work are refused, naming the value."""
        assert named in refused(*MINIMAL_SETTINGS, *settings)


ECOSYSTEM_SETTINGS = (
    "dashboards.enabled=true",
    "dashboards.folder=Compliance",
    "dashboards.sidecarLabel=grafana_dashboard_ccs",
    "dashboards.sidecarLabelValue=yes",
    "image.registry=registry.example.com/",
    "prometheusRule.enabled=true",
    "prometheusRule.disabled.CcsJobRunAborted=true",
    "prometheusRule.additionalAlertLabels.team=compliance",
    "prometheusRule.additionalAlertAnnotations.dashboard=https://grafana.example.com/d/ccs",
    "prometheusRule.alerts.CcsJobRunFaulted.labels.severity=critical",
    "prometheusRule.alerts.CcsJobRunFaulted.labels.team=audit",
    "podMonitor.enabled=true",
    "podMonitor.labels.release=kps",
    "initContainers[0].name=wait",
    "initContainers[0].image=busybox:1.36",
    "initContainers[0].command[0]=sleep",
    "extraContainers[0].name=proxy",
    "extraContainers[0].image=nginx:1.27",
    "extraManifests[0]=apiVersion: v1\nkind: ConfigMap\n"
    "metadata:\n  name: '{{ .Release.Name }}-extra'\ndata: {a: b}",
)


@pytest.fixture(scope="module")
def ecosystem_manifests(render: Render) -> Manifests:
    """The chart with dashboards, a PodMonitor, tuned alerts, a registry, init and extra containers."""
    return render(settings=ECOSYSTEM_SETTINGS)


class TestEcosystemOptions:
    """What other charts of the ecosystem offer: Grafana sidecar dashboards, alert tuning, PodMonitor, ..."""

    def test_dashboard_configmap_for_the_sidecar(self, ecosystem_manifests: Manifests) -> None:
        """The dashboard ships as a ConfigMap with the sidecar's label and folder annotation, JSON intact."""
        dashboards = next(
            doc
            for doc in ecosystem_manifests
            if doc["kind"] == "ConfigMap" and doc["metadata"]["name"].endswith("-dashboards")
        )
        assert dashboards["metadata"]["labels"]["grafana_dashboard_ccs"] == "yes"
        assert dashboards["metadata"]["annotations"] == {"grafana_folder": "Compliance"}
        shipped = json.loads((REPO_ROOT / "grafana" / "ccs-exporter.json").read_text(encoding="utf-8"))
        assert json.loads(dashboards["data"]["ccs-exporter.json"]) == shipped

    def test_chart_dashboard_is_a_copy_of_grafana_json(self) -> None:
        """helm/ccs-exporter/files/ccs-exporter.json is byte for byte grafana/ccs-exporter.json
        (after editing the dashboard: cp grafana/ccs-exporter.json helm/ccs-exporter/files/)."""
        copy = CHART_DIR / "files" / "ccs-exporter.json"
        assert copy.read_bytes() == (REPO_ROOT / "grafana" / "ccs-exporter.json").read_bytes()

    def test_no_dashboard_by_default(self, default_manifests: Manifests) -> None:
        assert not [doc for doc in default_manifests if doc["metadata"]["name"].endswith("-dashboards")]

    def test_alerts_disabled_and_labelled(self, ecosystem_manifests: Manifests) -> None:
        """A disabled alert is gone; extra labels and annotations reach every alert; its own entry wins."""
        rules = [
            rule
            for group in _one(ecosystem_manifests, "PrometheusRule")["spec"]["groups"]
            for rule in group["rules"]
        ]
        alerts = {rule["alert"]: rule for rule in rules if "alert" in rule}
        shipped = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
        shipped_alerts = {
            rule["alert"] for group in shipped["groups"] for rule in group["rules"] if "alert" in rule
        }
        assert set(alerts) == shipped_alerts - {"CcsJobRunAborted"}
        assert all(rule["labels"]["team"] in ("compliance", "audit") for rule in alerts.values())
        assert all(
            rule["annotations"]["dashboard"] == "https://grafana.example.com/d/ccs"
            for rule in alerts.values()
        )
        assert alerts["CcsJobRunFaulted"]["labels"]["severity"] == "critical"
        assert alerts["CcsJobRunFaulted"]["labels"]["team"] == "audit"
        assert alerts["CcsExporterDown"]["labels"] == {"severity": "critical", "team": "compliance"}
        recorded = [rule for rule in rules if "record" in rule]
        assert recorded and all("team" not in rule.get("labels", {}) for rule in recorded)

    def test_rendered_rules_pass_promtool(
        self, ecosystem_manifests: Manifests, require_tool: Callable[[str], str], tmp_path: Path
    ) -> None:
        """The tuned rules are still valid rules."""
        rules_file = tmp_path / "tuned.rules.yml"
        rules_file.write_text(
            yaml.safe_dump({"groups": _one(ecosystem_manifests, "PrometheusRule")["spec"]["groups"]})
        )
        result = subprocess.run(
            [require_tool("promtool"), "check", "rules", str(rules_file)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr

    @pytest.mark.parametrize(
        ("settings", "image"),
        [
            ((), "ccs-exporter:"),
            (("image.registry=registry.example.com",), "registry.example.com/ccs-exporter:"),
            (
                ("image.registry=a.example", "global.imageRegistry=mirror.example/"),
                "mirror.example/ccs-exporter:",
            ),
            (
                ("global.imageRegistry=mirror.example", "image.digest=sha256:" + "a" * 64),
                "mirror.example/ccs-exporter@sha256:",
            ),
        ],
    )
    def test_image_registry(self, render: Render, settings: tuple[str, ...], image: str) -> None:
        """global.imageRegistry, else image.registry, goes before the repository, as in Bitnami's charts."""
        pod = _pod(render(settings=(*settings, "auditLog.enabled=true", "auditShipping.enabled=true")))
        images = {container["name"]: container["image"] for container in pod["containers"]}
        assert images["ccs-exporter"].startswith(image)
        assert len(set(images.values())) == 1  # the shipping sidecar runs the same image

    def test_init_and_extra_containers_and_manifests(self, ecosystem_manifests: Manifests) -> None:
        pod = _pod(ecosystem_manifests)
        assert [c["name"] for c in pod["initContainers"]] == ["wait"]
        assert [c["name"] for c in pod["containers"]] == ["ccs-exporter", "proxy"]
        extra = next(doc for doc in ecosystem_manifests if doc["metadata"]["name"] == "ccs-extra")
        assert extra["data"] == {"a": "b"}

    def test_pod_monitor(self, ecosystem_manifests: Manifests) -> None:
        """The PodMonitor scrapes the container's port with serviceMonitor's settings; no ServiceMonitor."""
        monitor = _one(ecosystem_manifests, "PodMonitor")
        assert monitor["metadata"]["labels"]["release"] == "kps"
        (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
        assert endpoint["port"] == "http-metrics" and endpoint["path"] == "/metrics"
        assert not [doc for doc in ecosystem_manifests if doc["kind"] == "ServiceMonitor"]

    def test_pod_and_service_monitor_together_are_refused(self, refused: Callable[..., str]) -> None:
        error = refused(*MINIMAL_SETTINGS, "podMonitor.enabled=true", "serviceMonitor.enabled=true")
        assert "choose one" in error

    @pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
    def test_kubernetes_validate_strict(
        self, ecosystem_manifests: Manifests, version: str, tmp_path: Path
    ) -> None:
        core = [doc for doc in ecosystem_manifests if doc["kind"] not in CRD_KINDS]
        result = _kubernetes_validate(core, version, tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
