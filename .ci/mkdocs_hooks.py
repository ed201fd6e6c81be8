"""mkdocs hook: the site is the whole repository, so `mkdocs build --strict` checks every link between
README.md, docs/, the chart and rules READMEs and the files they name (config.example.yaml, grafana/, ...).

mkdocs reads only `docs_dir`; this hook swaps that file list for every file of the repository (skipping
caches, virtualenvs and the tools CI downloads), keeping the theme's own files. README.md becomes the home
page.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

# Not the project's files: version control, virtualenvs, caches, downloaded tools, builds.
SKIPPED_DIRS = {
    ".git",
    ".venv",
    ".tools",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    "__pycache__",
    "node_modules",
    "site",
    "build",
    "dist",
}


def _repository_files(root: Path) -> list[str]:
    found: list[str] = []
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in SKIPPED_DIRS and not d.endswith(".egg-info"))
        for name in sorted(names):
            found.append(Path(directory, name).relative_to(root).as_posix())
    return found


def on_files(files: Files, config: Any) -> Files:
    root = Path(config.config_file_path).resolve().parent
    docs_dir = Path(config.docs_dir).resolve()
    site_dir = Path(config.site_dir).resolve()
    kept = [f for f in files if not Path(f.abs_src_path or "/").resolve().is_relative_to(docs_dir)]
    repo = [
        File(path, str(root), config.site_dir, config.use_directory_urls)
        for path in _repository_files(root)
        if not (root / path).resolve().is_relative_to(site_dir)
    ]
    return Files(kept + repo)
