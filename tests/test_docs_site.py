"""The documentation site builds with `mkdocs build --strict`, which fails on a dead link or #anchor.

The site is the whole repository (mkdocs.yml, .ci/mkdocs_hooks.py), so links between README.md, docs/, the
chart and rules READMEs and the files they name are all checked. .ci/run runs the same build.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parent.parent
SKIPPED = shutil.ignore_patterns(
    ".git", ".venv", ".tools", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis",
    "*.egg-info", "node_modules", "site",
)  # fmt: skip


def _build(root: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """A copy of the repository's files, to break on purpose."""
    root = tmp_path / "repo"
    shutil.copytree(REPO_ROOT, root, ignore=SKIPPED)
    return root


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} is not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


class TestDocsSite:
    """mkdocs --strict passes on the docs as they are, and fails on a broken link."""

    def test_the_docs_build_strict(self, repo_copy: Path, tmp_path: Path) -> None:
        """Every link and anchor of README.md, docs/ and the other READMEs resolves."""
        built = _build(repo_copy, tmp_path / "site")
        assert built.returncode == 0, built.stderr
        assert (tmp_path / "site" / "index.html").is_file()
        assert (tmp_path / "site" / "docs" / "connect-to-ccs.html").is_file()

    def test_a_renamed_heading_breaks_the_links_to_it(self, repo_copy: Path, tmp_path: Path) -> None:
        """A heading renamed in docs/metrics.md leaves dead #anchors in the pages linking to it: it fails."""
        _replace(repo_copy / "docs" / "metrics.md", "## The sparse status metric", "## Sparse status")
        built = _build(repo_copy, tmp_path / "site")
        assert built.returncode != 0
        assert "#the-sparse-status-metric" in built.stderr

    def test_a_moved_page_breaks_the_links_to_it(self, repo_copy: Path, tmp_path: Path) -> None:
        """A page moved away leaves the README's link to it dead: the build fails and names the link."""
        (repo_copy / "docs" / "sharding.md").rename(repo_copy / "docs" / "scaling.md")
        built = _build(repo_copy, tmp_path / "site")
        assert built.returncode != 0
        assert "docs/sharding.md" in built.stderr
