"""The package's one-way data flow, checked on the source: which package may import which."""

from __future__ import annotations

import ast
import socket
import subprocess
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "ccs_exporter"
AUDIT_TRAIL = ("ccs_exporter.audit", "ccs_exporter.operations")

# What each part may import of the package, beyond the vocabulary at the top (errors, models, schedule,
# sharding, redaction, the version). Everything not listed is a layer above it.
VOCABULARY = {"errors", "models", "schedule", "sharding", "redaction", "__version__"}
ALLOWED = {
    "settings": set(),
    "client": {"settings"},
    "polling": {"settings", "client"},
    "exposition": {"polling"},
    "web": {"settings", "exposition"},
    "audit": {"settings", "client", "polling"},
    "operations": {"settings", "client", "audit"},
    "exporter": {"settings", "client", "polling", "exposition", "web", "audit"},
    "cli": {
        "settings",
        "client",
        "polling",
        "exposition",
        "web",
        "audit",
        "operations",
        "exporter",
        "simulator",
    },
    "simulator": set(),
}


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


def _part(path: Path) -> str:
    """The part of the house a module belongs to: its package, or its own name at the top."""
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")


def _parts_imported(path: Path) -> set[str]:
    """The parts of the package ``path`` imports, other than its own."""
    parts = set()
    for found in _imports(path):
        pieces = found.split(".")
        if pieces[0] == "ccs_exporter" and len(pieces) > 1:
            parts.add(pieces[1])
    return parts - {_part(path)}


def _modules(part: str) -> list[Path]:
    folder = PACKAGE / part
    return sorted(folder.rglob("*.py")) if folder.is_dir() else [PACKAGE / f"{part}.py"]


def _product_modules() -> list[Path]:
    return [path for path in PACKAGE.rglob("*.py") if "simulator" not in path.relative_to(PACKAGE).parts]


class TestLayers:
    """Imports point down the house, never up."""

    @pytest.mark.parametrize("part", ["polling", "exposition"])
    def test_poll_path_does_not_know_the_audit_trail(self, part: str) -> None:
        """Nothing in the polling or exposition packages imports the audit trail or the operations."""
        for module in _modules(part):
            imported = _imports(module)
            assert not {found for found in imported if found.startswith(AUDIT_TRAIL)}, module.name

    @pytest.mark.parametrize("part", sorted(ALLOWED))
    def test_each_part_imports_only_the_layers_below(self, part: str) -> None:
        """A package imports the vocabulary and the parts below it, never a part above."""
        for module in _modules(part):
            extra = _parts_imported(module) - VOCABULARY - ALLOWED[part]
            assert not extra, f"{module.relative_to(PACKAGE)} imports {sorted(extra)}"

    @pytest.mark.parametrize("part", ["models", "errors"])
    def test_bottom_layer_imports_nothing_of_the_package(self, part: str) -> None:
        """The models and the errors stand alone: they import nothing of the package but themselves."""
        for module in _modules(part):
            found = {name for name in _imports(module) if name.startswith("ccs_exporter")}
            assert all(name.startswith(f"ccs_exporter.{part}") for name in found), module.name

    def test_every_part_is_known(self) -> None:
        """A new package or top-level module is placed in the layers above before it is used."""
        parts = {_part(path) for path in PACKAGE.rglob("*.py")} - {"__init__", "__main__"}
        assert parts <= set(ALLOWED) | VOCABULARY

    def test_few_modules_at_the_top(self) -> None:
        """The top of the package holds the vocabulary and the assembly; everything else sits in a part."""
        top = [path.name for path in PACKAGE.glob("*.py") if path.name not in {"__init__.py", "__main__.py"}]
        assert len(top) <= 10, top

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


class TestIntegrationMarker:
    """A test without the integration marker may start no process and no server: conftest refuses it."""

    def test_starting_a_process_fails_naming_the_marker(self) -> None:
        """What ``-m "not integration"`` promises is checked, not trusted: a process start is refused."""
        with pytest.raises(RuntimeError, match=r"starts a process: mark it @pytest.mark.integration"):
            subprocess.Popen(["true"])

    def test_listening_fails_naming_the_marker(self) -> None:
        """A server (a listening socket) is refused the same way."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            with pytest.raises(RuntimeError, match=r"starts a server: mark it @pytest.mark.integration"):
                sock.listen()


# "About 400 lines a module, 60 a function": past that a module or a function usually does two jobs.
MAX_MODULE_LINES = 420
MAX_FUNCTION_LINES = 60


class TestSizes:
    """Modules and functions stay small enough to read whole (the simulator included)."""

    def test_no_module_is_over_the_limit(self) -> None:
        """Every module of the package is at most MAX_MODULE_LINES lines."""
        sizes = {path: len(path.read_text(encoding="utf-8").splitlines()) for path in PACKAGE.rglob("*.py")}
        over = {
            path.relative_to(PACKAGE).as_posix(): lines
            for path, lines in sizes.items()
            if lines > MAX_MODULE_LINES
        }
        assert not over

    def test_no_function_is_over_the_limit(self) -> None:
        """Every function and method of the package is at most MAX_FUNCTION_LINES lines."""
        over = []
        for path in PACKAGE.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = (node.end_lineno or node.lineno) - node.lineno + 1
                    if lines > MAX_FUNCTION_LINES:
                        over.append(f"{path.relative_to(PACKAGE).as_posix()}:{node.name} ({lines})")
        assert not over
