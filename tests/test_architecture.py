"""The package's one-way data flow, checked on the source: which module may import which."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "ccs_exporter"
AUDIT_TRAIL = ("ccs_exporter.audit", "ccs_exporter.auditor", "ccs_exporter.jobs")


def _imports(module: Path) -> set[str]:
    """Every module name ``module`` imports (``from x import y`` gives x and x.y)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _product_modules() -> list[Path]:
    return [path for path in PACKAGE.rglob("*.py") if "simulator" not in path.relative_to(PACKAGE).parts]


class TestLayers:
    """Imports point down the house, never up."""

    @pytest.mark.parametrize(
        "name",
        [
            "poller.py",
            "discovery.py",
            "loop.py",
            "metrics.py",
            "snapshot.py",
            "workers.py",
            "schedule_reading.py",
        ],
    )
    def test_poll_path_does_not_know_the_audit_trail(self, name: str) -> None:
        """The poller, the snapshot and the metrics import nothing of the audit trail or the mutations."""
        imported = _imports(PACKAGE / name)
        assert not {found for found in imported if found.startswith(AUDIT_TRAIL)}

    @pytest.mark.parametrize("name", ["models.py", "errors.py"])
    def test_bottom_layer_imports_nothing_of_the_package(self, name: str) -> None:
        """models.py and errors.py stand alone."""
        assert not {found for found in _imports(PACKAGE / name) if found.startswith("ccs_exporter")}

    def test_product_never_imports_the_simulator(self) -> None:
        """Only the CLI's demo and simulate commands may reach the simulator."""
        importers = {
            path.relative_to(PACKAGE).as_posix()
            for path in _product_modules()
            if any(found.startswith("ccs_exporter.simulator") for found in _imports(path))
            or "from ccs_exporter import simulator" in path.read_text(encoding="utf-8")
        }
        assert importers <= {"cli/__init__.py", "cli/exporter_commands.py"}

    def test_only_the_client_imports_requests(self) -> None:
        """HTTP to CCS happens only in the client."""
        importers = {
            path.relative_to(PACKAGE).as_posix()
            for path in _product_modules()
            if any(found == "requests" or found.startswith("requests.") for found in _imports(path))
        }
        assert importers and all(name.startswith("client") for name in importers)
