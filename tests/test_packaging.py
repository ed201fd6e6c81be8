"""Packaging: license and metadata, pinned dependency versions, and an image that matches the chart."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")

REPO_ROOT = Path(__file__).resolve().parent.parent
PYPROJECT: dict[str, Any] = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT: dict[str, Any] = PYPROJECT["project"]
CONSTRAINTS = REPO_ROOT / "constraints.txt"
DOCKERFILE = (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8")
CHART_DIR = REPO_ROOT / "helm" / "ccs-exporter"


def _pins() -> dict[str, str]:
    """constraints.txt as {canonical name: version}."""
    pins: dict[str, str] = {}
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, _, version = line.partition("==")
        assert version and re.fullmatch(r"[A-Za-z0-9._-]+", name), f"not name==version: {line!r}"
        assert canonicalize_name(name) not in pins, f"pinned twice: {name}"
        pins[canonicalize_name(name)] = version.strip()
    return pins


def _declared() -> list[Requirement]:
    extras = [req for group in PROJECT.get("optional-dependencies", {}).values() for req in group]
    return [Requirement(req) for req in PROJECT["dependencies"] + extras]


def _dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuations joined), split into stages at each FROM."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    instructions = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    stages: list[list[str]] = [[]]
    for instruction in instructions:
        if instruction.startswith("FROM "):
            stages.append([])
        stages[-1].append(instruction)
    return stages


def _stage(name: str) -> list[str]:
    """The Dockerfile stage named ``name`` (``FROM ... AS name``); "runtime" is the last, unnamed one."""
    stages = _dockerfile_stages()[1:]
    if name == "runtime":
        return stages[-1]
    (stage,) = [s for s in stages if s[0].lower().endswith(f" as {name}")]
    return stage


class TestLicense:
    """The project is Apache-2.0, declared the way current packaging tools expect."""

    def test_license_file_is_apache_2(self) -> None:
        """LICENSE holds the Apache License 2.0 terms."""
        text = (REPO_ROOT / "LICENSE").read_text(encoding="utf-8")
        assert "Apache License" in text and "Version 2.0, January 2004" in text
        assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
        assert "END OF TERMS AND CONDITIONS" in text

    def test_license_expression_and_files(self) -> None:
        """pyproject.toml declares the SPDX expression and the file, with a setuptools that supports both."""
        assert PROJECT["license"] == "Apache-2.0"
        assert PROJECT["license-files"] == ["LICENSE"]
        setuptools = next(Requirement(r) for r in PYPROJECT["build-system"]["requires"] if "setuptools" in r)
        assert not setuptools.specifier.contains("76.9"), "license expressions need setuptools >= 77"

    def test_no_license_classifier(self) -> None:
        """No "License ::" classifier: with a license expression, build tools reject it."""
        assert not [c for c in PROJECT["classifiers"] if c.startswith("License ::")]


class TestMetadata:
    """Classifiers, links and the changelog tell users what they install."""

    def test_python_classifiers_match_requires_python(self) -> None:
        """Every Python version classified is allowed by requires-python, the lowest one included."""
        versions = [
            c.rsplit(" :: ", 1)[1] for c in PROJECT["classifiers"] if re.search(r"Python :: 3\.\d+$", c)
        ]
        assert versions
        lowest = PROJECT["requires-python"].removeprefix(">=")
        assert lowest in versions
        assert all(Version(v) >= Version(lowest) for v in versions)

    def test_python_floor_is_what_ci_tests(self) -> None:
        """CI and the image run 3.11 only: the floor, the only classified version, ruff and mypy targets."""
        classified = {
            c.rsplit(" :: ", 1)[1] for c in PROJECT["classifiers"] if re.search(r"Python :: 3\.\d+$", c)
        }
        assert PROJECT["requires-python"] == ">=3.11" and classified == {"3.11"}
        assert PYPROJECT["tool"]["ruff"]["target-version"] == "py311"
        assert PYPROJECT["tool"]["mypy"]["python_version"] == "3.11"

    def test_typed_classifier_matches_the_package(self) -> None:
        """Typing :: Typed is claimed and the package ships py.typed."""
        assert "Typing :: Typed" in PROJECT["classifiers"]
        assert (REPO_ROOT / "ccs_exporter" / "py.typed").is_file()

    def test_project_urls(self) -> None:
        """The project links its home, source, issues and changelog, and the changelog exists."""
        urls = PROJECT["urls"]
        assert {"Homepage", "Source", "Issues", "Changelog"} <= set(urls)
        assert all(url.startswith("https://") for url in urls.values())
        assert urls["Changelog"].endswith("/CHANGELOG.md")

    def test_changelog_has_the_current_version_or_unreleased(self) -> None:
        """CHANGELOG.md has an Unreleased section or one for the version in pyproject.toml."""
        headings = re.findall(
            r"^## \[([^\]]+)\]", (REPO_ROOT / "CHANGELOG.md").read_text(encoding="utf-8"), re.M
        )
        assert "Unreleased" in headings or PROJECT["version"] in headings


class TestConstraints:
    """constraints.txt pins every dependency within pyproject.toml's ranges; CI and the image use it."""

    @pytest.mark.parametrize("requirement", _declared(), ids=lambda r: r.name)
    def test_dependency_is_pinned_within_its_range(self, requirement: Requirement) -> None:
        """Each runtime and test dependency has one exact pin that satisfies pyproject.toml's range."""
        pins = _pins()
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{requirement.name}=={pins[name]} is outside {requirement.specifier}"
        )

    def test_ci_and_image_install_with_it(self) -> None:
        """.ci/run and the Dockerfile's build stage install with --constraint constraints.txt."""
        ci = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
        assert re.search(r"pip install .*--constraint constraints\.txt -e '\.\[test\]'", ci)
        build = " ".join(_stage("build"))
        assert "COPY constraints.txt" in build and "pip install --constraint constraints.txt ." in build


class TestDockerfile:
    """A two-stage image on a digest-pinned base, labelled, running as the chart expects."""

    def test_every_stage_uses_the_pinned_base(self) -> None:
        """Build and runtime start from PYTHON_IMAGE, a python:3.11-slim digest, with a comment on refreshing
        it; the only other stage is the empty wheelhouse a build may replace with a directory of wheels."""
        stages = _dockerfile_stages()
        assert len(stages) == 4, "a wheelhouse, a build stage and a runtime stage"
        (image,) = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE, re.M)
        assert re.fullmatch(r"python:3\.11-slim@sha256:[0-9a-f]{64}", image)
        assert [stage[0] for stage in stages[1:]] == [
            "FROM scratch AS wheelhouse",
            "FROM ${PYTHON_IMAGE} AS build",
            "FROM ${PYTHON_IMAGE}",
        ]
        assert _stage("wheelhouse") == ["FROM scratch AS wheelhouse"], "the wheelhouse stage stays empty"
        assert "docker buildx imagetools inspect python:3.11-slim" in DOCKERFILE
        assert "Programming Language :: Python :: 3.11" in PROJECT["classifiers"]

    def test_runtime_stage_copies_only_the_environment(self) -> None:
        """The runtime stage takes the virtual environment from the build stage, not the sources."""
        runtime = _stage("runtime")
        copies = [line for line in runtime if line.startswith("COPY")]
        assert copies == [
            "COPY --from=build /opt/ccs-exporter /opt/ccs-exporter",
            "COPY LICENSE /usr/share/doc/ccs-exporter/LICENSE",
        ]

    def test_oci_labels(self) -> None:
        """The image carries the OCI labels, with the project's license and version."""
        labels = dict(re.findall(r'(org\.opencontainers\.image\.[a-z]+)="([^"]*)"', DOCKERFILE))
        for key in ("title", "description", "version", "revision", "created", "licenses", "source"):
            assert f"org.opencontainers.image.{key}" in labels, key
        assert labels["org.opencontainers.image.licenses"] == PROJECT["license"]
        assert labels["org.opencontainers.image.version"] == "${VERSION}"
        (version,) = re.findall(r"^ARG VERSION=(\S+)$", DOCKERFILE, re.M)
        assert version == PROJECT["version"]

    def test_image_runs_serve_as_the_charts_user(self) -> None:
        """The image runs `ccs-exporter serve` as the chart's runAsUser/runAsGroup and exposes 9879."""
        values = yaml.safe_load((CHART_DIR / "values.yaml").read_text(encoding="utf-8"))
        runtime = _stage("runtime")
        context = values["securityContext"]
        assert f"USER {context['runAsUser']}:{context['runAsGroup']}" in runtime
        assert f"EXPOSE {values['exporter']['port']}" in runtime
        assert 'ENTRYPOINT ["ccs-exporter"]' in runtime and 'CMD ["serve"]' in runtime

    def test_dockerignore_admits_what_is_copied(self) -> None:
        """Everything the build stage copies from the context is let through by .dockerignore."""
        ignore = (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        admitted = {line.removeprefix("!").rstrip("/") for line in ignore if line.startswith("!")}
        sources = {
            source
            for stage in _dockerfile_stages()
            for line in stage
            if line.startswith("COPY ") and "--from=" not in line
            for source in line.split()[1:-1]
        }
        assert sources <= admitted, sorted(sources - admitted)

    def test_chart_default_image_is_the_documented_build(self) -> None:
        """The chart's default image, <repository>:<appVersion>, is what the documented docker build tags."""
        values = yaml.safe_load((CHART_DIR / "values.yaml").read_text(encoding="utf-8"))
        chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text(encoding="utf-8"))
        assert chart["appVersion"] == PROJECT["version"]
        assert values["image"]["tag"] == "" and values["image"]["digest"] == ""
        image = f"{values['image']['repository']}:{chart['appVersion']}"
        assert f"docker build -t {image} ." in DOCKERFILE
        assert f"docker build -t {image} ." in (CHART_DIR / "README.md").read_text(encoding="utf-8")
