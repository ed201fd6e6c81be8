"""The Helm chart: lints, renders valid Kubernetes manifests, runs hardened, never exposes the password.

CRDs (ServiceMonitor, PrometheusRule) have no schema in kubernetes-validate; they are left out of that
check and validated here instead: the PrometheusRule's groups with `promtool check rules` and against the
rules file, the ServiceMonitor against the Service it must select.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
CHART_DIR = REPO_ROOT / "helm" / "ccs-exporter"
FULL_VALUES = REPO_ROOT / "helm" / "ci-values-full.yaml"
RULES_FILE = REPO_ROOT / "prometheus" / "ccs-exporter.rules.yml"
NAMESPACE = "monitoring"
CRD_KINDS = frozenset({"ServiceMonitor", "PrometheusRule"})
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.25.0", "1.37.0")
FULL_PASSWORD = yaml.safe_load(FULL_VALUES.read_text(encoding="utf-8"))["ccs"]["password"]
# helm/ci-values-full.yaml turns TLS on (webConfig.tls); the default values leave it off.
PROBE_SCHEMES = {"default": "HTTP", "full": "HTTPS"}

Manifests = list[dict[str, Any]]
Render = Callable[..., Manifests]


@pytest.fixture(scope="module")
def helm(require_tool: Callable[[str], str]) -> str:
    """The helm binary (skips outside CI when missing)."""
    return require_tool("helm")


def _run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, check=False, cwd=REPO_ROOT)


@pytest.fixture(scope="module")
def render(helm: str) -> Render:
    """A function rendering the chart with `helm template` and returning its documents."""

    def render_chart(*values_files: Path, settings: tuple[str, ...] = ()) -> Manifests:
        args = ["template", "ccs", str(CHART_DIR), "--namespace", NAMESPACE]
        for values_file in values_files:
            args += ["-f", str(values_file)]
        for setting in settings:
            args += ["--set", setting]
        result = _run_helm(helm, *args)
        assert result.returncode == 0, result.stderr
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    return render_chart


@pytest.fixture(scope="module")
def default_manifests(render: Render) -> Manifests:
    """The chart rendered with its default values."""
    return render()


@pytest.fixture(scope="module")
def full_manifests(render: Render) -> Manifests:
    """The chart rendered with helm/ci-values-full.yaml (every option on)."""
    return render(FULL_VALUES)


def _one(manifests: Manifests, kind: str) -> dict[str, Any]:
    found = [doc for doc in manifests if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {[doc['kind'] for doc in manifests]}"
    return found[0]


def _container(manifests: Manifests) -> dict[str, Any]:
    containers = _one(manifests, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _env(manifests: Manifests) -> dict[str, Any]:
    return {var["name"]: var.get("value", var.get("valueFrom")) for var in _container(manifests)["env"]}


def _mount_for(manifests: Manifests, path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The volume mount holding ``path`` and its volume."""
    pod = _one(manifests, "Deployment")["spec"]["template"]["spec"]
    mounts = [
        m for m in _container(manifests)["volumeMounts"] if path.startswith(m["mountPath"].rstrip("/") + "/")
    ]
    assert len(mounts) == 1, f"no single volume mount holds {path}"
    volume = next(v for v in pod["volumes"] if v["name"] == mounts[0]["name"])
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
    """`helm lint --strict` passes."""

    @pytest.mark.parametrize("values", [None, FULL_VALUES], ids=["default", "full"])
    def test_lint_strict(self, helm: str, values: Path | None) -> None:
        """The chart lints without warnings with the default and with every option on."""
        args = ["lint", "--strict", str(CHART_DIR)] + (["-f", str(values)] if values else [])
        result = _run_helm(helm, *args)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "0 chart(s) failed" in result.stdout

    def test_schema_rejects_bad_values(self, helm: str) -> None:
        """values.schema.json refuses an unknown log level and a password passed through extraEnv."""
        for setting in ("exporter.logLevel=verbose", "exporter.extraEnv[0].name=CCS_EXPORTER_PASSWORD"):
            result = _run_helm(helm, "template", "ccs", str(CHART_DIR), "--set", setting)
            assert result.returncode != 0, setting
            assert (
                "values don't meet the specifications of the schema" in result.stderr
                or "at '/" in result.stderr
            )

    def test_two_ca_sources_are_refused(self, helm: str) -> None:
        """A CA bundle from both a ConfigMap and a Secret is an error naming the setting."""
        result = _run_helm(
            helm,
            "template",
            "ccs",
            str(CHART_DIR),
            "--set",
            "ccs.caBundle.configMap=a",
            "--set",
            "ccs.caBundle.secret=b",
        )
        assert result.returncode != 0
        assert "ccs.caBundle" in result.stderr


class TestKubernetesValidity:
    """The rendered manifests are valid Kubernetes objects."""

    def test_default_renders_core_objects(self, default_manifests: Manifests) -> None:
        """Default values render a ServiceAccount, Secret, Service and Deployment, and no CRD objects."""
        assert sorted(doc["kind"] for doc in default_manifests) == [
            "Deployment",
            "Secret",
            "Service",
            "ServiceAccount",
        ]

    def test_full_renders_every_object(self, full_manifests: Manifests) -> None:
        """Every option on adds the audit PVC, the ServiceMonitor and the PrometheusRule."""
        assert sorted(doc["kind"] for doc in full_manifests) == [
            "Deployment",
            "PersistentVolumeClaim",
            "PrometheusRule",
            "Secret",
            "Service",
            "ServiceAccount",
            "ServiceMonitor",
        ]

    @pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
    @pytest.mark.parametrize("which", ["default", "full"])
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


@pytest.mark.parametrize("which", ["default", "full"])
class TestHardening:
    """The exporter runs unprivileged with the probes and resources the issue asks for."""

    def test_pod_runs_as_non_root(self, which: str, request: pytest.FixtureRequest) -> None:
        """The pod runs as a non-root uid with the RuntimeDefault seccomp profile and no API token."""
        manifests: Manifests = request.getfixturevalue(f"{which}_manifests")
        pod = _one(manifests, "Deployment")["spec"]["template"]["spec"]
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


class TestCredentials:
    """The password reaches the exporter as a file from a Secret, never through the environment."""

    def test_password_is_not_in_the_environment(self, full_manifests: Manifests) -> None:
        """No env var holds the password or CCS_EXPORTER_PASSWORD, and the Deployment never shows it."""
        env = _env(full_manifests)
        assert "CCS_EXPORTER_PASSWORD" not in env
        assert all(not isinstance(value, dict) for value in env.values()), "no env var may come from a Secret"
        assert FULL_PASSWORD not in yaml.safe_dump(_one(full_manifests, "Deployment"))
        assert FULL_PASSWORD not in str(env.values())

    def test_password_arrives_as_a_file(self, full_manifests: Manifests) -> None:
        """CCS_EXPORTER_PASSWORD_FILE names a file of the read-only Secret volume holding the password."""
        password_file = _env(full_manifests)["CCS_EXPORTER_PASSWORD_FILE"]
        mount, volume = _mount_for(full_manifests, password_file)
        assert mount["readOnly"] is True
        secret = _one(full_manifests, "Secret")
        assert volume["secret"]["secretName"] == secret["metadata"]["name"]
        (item,) = volume["secret"]["items"]
        assert item["path"] == Path(password_file).name
        assert base64.b64decode(secret["data"][item["key"]]).decode() == FULL_PASSWORD

    def test_existing_secret_is_used_as_is(self, render: Render) -> None:
        """With ccs.existingSecret the chart creates no Secret and mounts the named one's key."""
        manifests = render(settings=("ccs.existingSecret=corp-ccs", "ccs.passwordKey=ccs-pw"))
        assert "Secret" not in {doc["kind"] for doc in manifests}
        _, volume = _mount_for(manifests, _env(manifests)["CCS_EXPORTER_PASSWORD_FILE"])
        assert volume["secret"]["secretName"] == "corp-ccs"
        assert volume["secret"]["items"] == [{"key": "ccs-pw", "path": "password"}]


class TestSettingsFromValues:
    """Values become the exporter's CCS_EXPORTER_* settings."""

    def test_full_values_become_env(self, full_manifests: Manifests) -> None:
        """Job ids, URL, intervals and log settings are passed as the documented variables."""
        env = _env(full_manifests)
        assert (
            env["CCS_EXPORTER_JOB_IDS"]
            == "23c59087-f3d4-4e05-a39e-3440c58e58fb,ff761384-4b49-40b4-97d8-0de38669075a"
        )
        assert env["CCS_EXPORTER_URL"] == "https://ccs.corp.example.com:12431"
        assert env["CCS_EXPORTER_USERNAME"] == "CORP\\svc-ccs-exporter"
        assert env["CCS_EXPORTER_POLL_INTERVAL_SECONDS"] == "30"
        assert env["CCS_EXPORTER_LISTEN_ADDRESS"] == "0.0.0.0:9879"
        assert env["CCS_EXPORTER_PASSWORD_ENCODING"] == "plain"
        assert env["CCS_EXPORTER_LOG_LEVEL"] == "debug"
        assert env["TZ"] == "UTC"

    def test_ca_bundle_is_mounted_where_the_setting_points(self, full_manifests: Manifests) -> None:
        """CCS_EXPORTER_CA_BUNDLE names the key of the mounted ConfigMap."""
        ca_file = _env(full_manifests)["CCS_EXPORTER_CA_BUNDLE"]
        _, volume = _mount_for(full_manifests, ca_file)
        assert volume["configMap"]["name"] == "corp-internal-ca"
        assert volume["configMap"]["items"] == [{"key": "corp-ca.pem", "path": Path(ca_file).name}]

    def test_ca_bundle_from_a_secret(self, render: Render) -> None:
        """The CA bundle can come from a Secret instead."""
        manifests = render(settings=("ccs.caBundle.secret=corp-ca", "ccs.caBundle.key=ca.crt"))
        _, volume = _mount_for(manifests, _env(manifests)["CCS_EXPORTER_CA_BUNDLE"])
        assert volume["secret"]["secretName"] == "corp-ca"

    def test_audit_log_lives_on_the_claim(self, full_manifests: Manifests) -> None:
        """The audit log file is on the chart's PVC, kept on uninstall, and the rollout recreates the pod."""
        _, volume = _mount_for(full_manifests, _env(full_manifests)["CCS_EXPORTER_AUDIT_LOG"])
        claim = _one(full_manifests, "PersistentVolumeClaim")
        assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
        assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert _one(full_manifests, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}

    def test_default_has_no_audit_log_or_ca(self, default_manifests: Manifests) -> None:
        """By default there is no audit log and CCS's certificate is checked against the system CAs."""
        env = _env(default_manifests)
        assert "CCS_EXPORTER_AUDIT_LOG" not in env and "CCS_EXPORTER_CA_BUNDLE" not in env
        assert env["CCS_EXPORTER_VERIFY_TLS"] == "true"


class TestPrometheusRule:
    """The chart's PrometheusRule carries the rules file unchanged, plus per-job overrides."""

    def test_groups_equal_the_rules_file(self, render: Render) -> None:
        """With default settings the PrometheusRule's groups are exactly the rules file's."""
        rule = _one(render(settings=("prometheusRule.enabled=true",)), "PrometheusRule")
        assert rule["spec"]["groups"] == yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))["groups"]

    def test_overrides_and_selector(self, full_manifests: Manifests) -> None:
        """Overrides become lower-case job_id recording rules; the exporter-down selector is replaced."""
        groups = _one(full_manifests, "PrometheusRule")["spec"]["groups"]
        overrides = next(group for group in groups if group["name"] == "ccs-exporter.overrides")
        assert {(r["labels"]["job_id"], r["expr"]) for r in overrides["rules"]} == {
            ("23c59087-f3d4-4e05-a39e-3440c58e58fb", "vector(691200)"),
            ("ff761384-4b49-40b4-97d8-0de38669075a", "vector(46800)"),
        }
        down = next(r for g in groups for r in g["rules"] if r.get("alert") == "CcsExporterDown")
        assert down["expr"] == 'up{job=~".*ccs-exporter.*"} == 0'

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
        assert "CCS_EXPORTER_WEB_CONFIG_FILE" not in _env(default_manifests)
        pod = _one(default_manifests, "Deployment")["spec"]["template"]["spec"]
        assert "web-config" not in {volume["name"] for volume in pod["volumes"]}

    def test_setting_points_at_the_mounted_secret(self, render: Render) -> None:
        """CCS_EXPORTER_WEB_CONFIG_FILE names the configured key inside the read-only Secret volume."""
        manifests = render(settings=("webConfig.existingSecret=exporter-web", "webConfig.configKey=web.yml"))
        web_config_file = _env(manifests)["CCS_EXPORTER_WEB_CONFIG_FILE"]
        assert Path(web_config_file).name == "web.yml"
        mount, volume = _mount_for(manifests, web_config_file)
        assert mount["readOnly"] is True
        assert volume["secret"] == {"secretName": "exporter-web", "defaultMode": 0o440}

    def test_tls_secret_is_projected_beside_the_config(self, full_manifests: Manifests) -> None:
        """With webConfig.tlsSecret both Secrets are projected, read-only, into the web config's directory."""
        mount, volume = _mount_for(full_manifests, _env(full_manifests)["CCS_EXPORTER_WEB_CONFIG_FILE"])
        assert mount["readOnly"] is True
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

    def test_no_web_config_content_in_env(self, full_manifests: Manifests) -> None:
        """The environment holds only the web config's path: no value from a Secret, no ConfigMap."""
        env = _env(full_manifests)
        assert all(isinstance(value, str) for value in env.values()), "no env var may come from a Secret"
        mentioning = {name for name, value in env.items() if "/etc/ccs-exporter/web" in value}
        assert mentioning == {"CCS_EXPORTER_WEB_CONFIG_FILE"}
        assert "ConfigMap" not in {doc["kind"] for doc in full_manifests}

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
    def test_bad_settings_are_refused(self, helm: str, settings: tuple[str, ...], message: str) -> None:
        """Settings that cannot work, bad Secret names and unknown keys are errors naming the setting."""
        args = ["template", "ccs", str(CHART_DIR)]
        for setting in settings:
            args += ["--set", setting]
        result = _run_helm(helm, *args)
        assert result.returncode != 0, settings
        assert message in result.stderr

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


class TestDockerfile:
    """The image matches what the chart expects of it."""

    def test_image_runs_serve_as_the_charts_user(self) -> None:
        """The Dockerfile's user is the chart's runAsUser, it exposes 9879 and runs `ccs-exporter serve`."""
        dockerfile = (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8")
        values = yaml.safe_load((CHART_DIR / "values.yaml").read_text(encoding="utf-8"))
        uid = values["securityContext"]["runAsUser"]
        assert dockerfile.startswith("#") and "FROM python:3.11-slim" in dockerfile
        assert f"USER {uid}:{values['securityContext']['runAsGroup']}" in dockerfile
        assert "EXPOSE 9879" in dockerfile
        assert 'ENTRYPOINT ["ccs-exporter"]' in dockerfile and 'CMD ["serve"]' in dockerfile
